"""Serialize events as ROS 2 messages (CDR bytes), without ROS installed.

The simulator, bag writers and tests need byte-exact ``dvs_msgs/EventArray`` and
``event_camera_msgs/EventPacket`` messages; building them through rclpy costs ~13 us per event,
so the event block is written here as one padded numpy structured array instead.
Output is byte-identical to ``rclpy.serialization.serialize_message`` except that alignment
padding is zero here (rclpy leaves whatever was in memory).
"""

from __future__ import annotations

import numpy as np

from stereospike_ros.events.cdr import CdrWriter, split_stamp
from stereospike_ros.events.errors import EncodeError
from stereospike_ros.events.evt3 import encode_evt3
from stereospike_ros.events.libcaer import encode_libcaer

# dvs_msgs/Event in CDR. Plain CDR aligns each primitive, not the struct, so the events of a
# sequence come in two phases: the first starts 4-aligned (x@0 y@2 sec@4 nanosec@8 pol@12,
# 13 bytes); every later one starts 2 mod 4, after one padding byte (x@0 y@2, 2 padding bytes,
# sec@6 nanosec@10 pol@14, 15 bytes), and they repeat every 16 bytes.
EVENT_STRIDE = 16
_FIRST = ([0, 2, 4, 8, 12], 13)
_LATER = ([0, 2, 6, 10, 14], 15)
_LATER_OFFSET = 14


def _event_dtype(layout: tuple[list[int], int], big_endian: bool) -> np.dtype:
    o = ">" if big_endian else "<"
    offsets, itemsize = layout
    return np.dtype(
        {
            "names": ["x", "y", "sec", "nanosec", "polarity"],
            "formats": [o + "u2", o + "u2", o + "i4", o + "u4", "u1"],
            "offsets": offsets,
            "itemsize": itemsize,
        }
    )


def event_block_size(count: int) -> int:
    """Bytes of ``count`` serialized dvs_msgs/Event, from the first x to the last polarity."""
    return EVENT_STRIDE * count - 3 if count else 0


def event_block_views(
    buf: np.ndarray, offset: int, count: int, big_endian: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Views of the first serialized event and of the rest (strided) in ``buf`` (uint8)."""
    if count == 0:
        empty = np.zeros(0, dtype=_event_dtype(_FIRST, big_endian))
        return empty, empty
    first = np.ndarray((1,), _event_dtype(_FIRST, big_endian), buffer=buf, offset=offset)
    if count == 1:
        return first, np.zeros(0, dtype=_event_dtype(_LATER, big_endian))
    rest = np.ndarray(
        (count - 1,),
        dtype=_event_dtype(_LATER, big_endian),
        buffer=buf,
        offset=offset + _LATER_OFFSET,
        strides=(EVENT_STRIDE,),
    )
    return first, rest


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
    w = CdrWriter(big_endian)
    sec, nanosec = split_stamp(stamp_ns)
    w.scalar("i", sec, "header.stamp.sec")
    w.scalar("I", nanosec, "header.stamp.nanosec")
    w.string(frame_id, "header.frame_id")
    w.scalar("I", height, "height")
    w.scalar("I", width, "width")
    start = w.sequence_start(n, 4, "events")
    out = np.zeros(start + event_block_size(n), dtype=np.uint8)
    out[:start] = np.frombuffer(bytes(w.buf), dtype=np.uint8)
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
    w = CdrWriter(big_endian)
    sec, nanosec = split_stamp(stamp_ns)
    w.scalar("i", sec, "header.stamp.sec")
    w.scalar("I", nanosec, "header.stamp.nanosec")
    w.string(frame_id, "header.frame_id")
    w.scalar("I", height, "height")
    w.scalar("I", width, "width")
    w.scalar("Q", seq, "seq")
    w.scalar("Q", time_base, "time_base")
    w.string(encoding, "encoding")
    w.scalar("B", int(big_endian), "is_bigendian")
    w.sequence_start(len(payload), 1, "events")
    return bytes(w.buf) + payload
