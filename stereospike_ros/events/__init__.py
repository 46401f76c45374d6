"""Event ingestion: bytes -> events -> rectified events -> spike histograms -> stereo windows.

numpy only; no ROS import.
"""

from stereospike_ros.events.decode import (
    EventPacketDecoder,
    decode_event_array,
    decode_event_packet,
)
from stereospike_ros.events.encode import encode_event_array, encode_event_packet
from stereospike_ros.events.errors import CalibrationError, DecodeError, EncodeError, EventsError
from stereospike_ros.events.evt3 import Evt3State, decode_evt3, encode_evt3
from stereospike_ros.events.histogram import accumulate_into, event_histogram
from stereospike_ros.events.ingest import DroppedMessageError, StereoIngest
from stereospike_ros.events.libcaer import decode_libcaer, encode_libcaer
from stereospike_ros.events.rectify import Rectifier
from stereospike_ros.events.types import EVENT_DTYPE, EventBatch, empty_events
from stereospike_ros.events.windowing import StereoWindow, StereoWindower, WindowerCounters

__all__ = [
    "EVENT_DTYPE",
    "CalibrationError",
    "DecodeError",
    "DroppedMessageError",
    "EncodeError",
    "EventBatch",
    "EventPacketDecoder",
    "EventsError",
    "Evt3State",
    "Rectifier",
    "StereoIngest",
    "StereoWindow",
    "StereoWindower",
    "WindowerCounters",
    "accumulate_into",
    "decode_event_array",
    "decode_event_packet",
    "decode_evt3",
    "decode_libcaer",
    "empty_events",
    "encode_event_array",
    "encode_event_packet",
    "encode_evt3",
    "encode_libcaer",
    "event_histogram",
]
