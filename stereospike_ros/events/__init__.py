"""Event ingestion: bytes -> events -> rectified events -> spike histograms -> stereo windows.

numpy only; no ROS import.
"""

from stereospike_ros.events.errors import CalibrationError, DecodeError, EventsError
from stereospike_ros.events.types import EVENT_DTYPE, EventBatch, empty_events

__all__ = [
    "EVENT_DTYPE",
    "CalibrationError",
    "DecodeError",
    "EventBatch",
    "EventsError",
    "empty_events",
]
