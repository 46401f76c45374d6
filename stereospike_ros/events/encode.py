"""Serialize events as ROS 2 messages (CDR bytes), without ROS installed.

The simulator, bag writers and tests need byte-exact ``dvs_msgs/EventArray`` and
``event_camera_msgs/EventPacket`` messages of many events; rclpy would build one Python object
per event, so the event block is written here as one padded numpy structured array instead,
in the layouts of ``cdr.py``. Output is byte-identical to
``rclpy.serialization.serialize_message`` except that alignment padding is zero here (rclpy
leaves whatever was in memory).
"""

from __future__ import annotations

import numpy as np

from stereospike_ros.events.cdr import (
    event_block_size,
    event_block_views,
    write_event_array_header,
    write_event_packet_header,
)
from stereospike_ros.events.errors import EncodeError
from stereospike_ros.events.evt3 import encode_evt3
from stereospike_ros.events.libcaer import encode_libcaer


def _check_events(events: np.ndarray) -> np.ndarray:
    events = np.asarray(events)
    missing = {"x", "y", "t", "p"} - set(events.dtype.names or ())
    if missing:
        raise EncodeError(f"events need fields x, y, t, p; missing {sorted(missing)}")
    return events


def encode_event_array(
    events: np.ndarray,
    height: int,
    width: int,
    stamp_ns: int,
    frame_id: str,
    big_endian: bool = False,
) -> bytes:
    """CDR bytes of a ``dvs_msgs/EventArray`` (with the 4-byte encapsulation header)."""
    events = _check_events(events)
    n = len(events)
    head = write_event_array_header(height, width, stamp_ns, frame_id, n, big_endian)
    start = len(head)
    out = np.zeros(start + event_block_size(n), dtype=np.uint8)
    out[:start] = np.frombuffer(head, dtype=np.uint8)
    if n:
        t = events["t"].astype(np.int64, copy=False)
        sec_arr, nsec_arr = np.divmod(t, 1_000_000_000)
        if sec_arr.min() < -(2**31) or sec_arr.max() >= 2**31:
            raise EncodeError("event times do not fit builtin_interfaces/Time (int32 seconds)")
        first, rest = event_block_views(out, start, n, big_endian)
        for view, part in ((first, slice(0, 1)), (rest, slice(1, None))):
            view["x"] = events["x"][part]
            view["y"] = events["y"][part]
            view["sec"] = sec_arr[part]
            view["nanosec"] = nsec_arr[part]
            view["polarity"] = events["p"][part] != 0
    return out.tobytes()


#: encoding name -> payload encoder(events, time_base_ns, big_endian=...)
PAYLOAD_ENCODERS = {"evt3": encode_evt3, "libcaer": encode_libcaer}


def encode_event_packet(
    events: np.ndarray,
    height: int,
    width: int,
    stamp_ns: int,
    frame_id: str,
    encoding: str = "evt3",
    seq: int = 0,
    time_base: int | None = None,
    big_endian: bool = False,
) -> bytes:
    """CDR bytes of an ``event_camera_msgs/EventPacket`` carrying ``events`` in ``encoding``.

    ``time_base`` (ns) defaults to the first event's time floored to a microsecond (0 when
    there are no events); payload times are written relative to it in microseconds, so
    ``decode_event_packet`` returns ``t`` exactly when events sit on whole microseconds.
    ``big_endian`` sets both the CDR byte order and the payload's ``is_bigendian``.
    """
    events = _check_events(events)
    if encoding not in PAYLOAD_ENCODERS:
        raise EncodeError(
            f"cannot encode EventPacket encoding {encoding!r}; supported: "
            f"{', '.join(sorted(PAYLOAD_ENCODERS))}"
        )
    if time_base is None:
        time_base = int(events["t"][0]) // 1000 * 1000 if len(events) else 0
    payload = PAYLOAD_ENCODERS[encoding](events, time_base, big_endian=big_endian)
    head = write_event_packet_header(
        height, width, stamp_ns, frame_id, seq, time_base, encoding, big_endian, len(payload)
    )
    return head + payload
