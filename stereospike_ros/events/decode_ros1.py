"""ROS 1 ``dvs_msgs/EventArray``: vectorized decoding and encoding of the serialized bytes.

MVSEC ships ROS 1 bags; building one Python object per event (what rosbags' or rospy's generic
deserializers do) is far too slow for millions of events, so the event block is viewed in place
as a packed structured array. ROS 1 serialization is little-endian and unaligned:

``uint32 seq, uint32 sec, uint32 nsec, uint32 len + frame_id bytes`` (std_msgs/Header),
``uint32 height, uint32 width, uint32 count``, then ``count`` events of 13 bytes each:
``uint16 x, uint16 y, uint32 sec, uint32 nsec, uint8 polarity``.
"""

from __future__ import annotations

import struct

import numpy as np

from stereospike_ros.events.errors import DecodeError, EncodeError
from stereospike_ros.events.types import EVENT_DTYPE, EventBatch

#: One serialized ROS 1 dvs_msgs/Event (13 bytes, no padding).
ROS1_EVENT_DTYPE = np.dtype(
    [("x", "<u2"), ("y", "<u2"), ("sec", "<u4"), ("nsec", "<u4"), ("polarity", "u1")]
)
assert ROS1_EVENT_DTYPE.itemsize == 13

_U32 = struct.Struct("<I")
_HEADER = struct.Struct("<III")  # seq, sec, nsec
_GEOMETRY = struct.Struct("<III")  # height, width, count
_MAX_STAMP_NS = (2**32) * 1_000_000_000 - 1


def _read_u32(view: memoryview, offset: int, what: str) -> int:
    if offset + 4 > len(view):
        raise DecodeError(
            f"ROS 1 EventArray truncated: {what} at byte {offset} needs 4 bytes, "
            f"buffer has {len(view)}"
        )
    return _U32.unpack_from(view, offset)[0]


def decode_event_array_ros1(buf: bytes | bytearray | memoryview | np.ndarray) -> EventBatch:
    """Decode one serialized ROS 1 ``dvs_msgs/EventArray`` into an :class:`EventBatch`.

    ``t`` is ``sec * 1e9 + nsec`` (int64 ns, the sensor time the driver wrote); ``p`` is 1 for any
    non-zero polarity byte. The events are copied once into ``EVENT_DTYPE``; nothing per event
    runs in Python. Truncated buffers, trailing bytes and non-UTF-8 frame ids raise
    :class:`DecodeError` naming the offset at fault.
    """
    if isinstance(buf, np.ndarray):
        buf = np.ascontiguousarray(buf).view(np.uint8).reshape(-1)
    view = memoryview(buf).cast("B")
    if len(view) < _HEADER.size:
        raise DecodeError(f"ROS 1 EventArray truncated: {len(view)} bytes, header needs 16+")
    _seq, sec, nsec = _HEADER.unpack_from(view, 0)
    id_len = _read_u32(view, 12, "frame_id length")
    id_end = 16 + id_len
    if id_end > len(view):
        raise DecodeError(
            f"ROS 1 EventArray truncated: frame_id of {id_len} bytes runs past the end "
            f"of the {len(view)}-byte buffer"
        )
    try:
        frame_id = bytes(view[16:id_end]).decode("utf-8")
    except UnicodeDecodeError as err:
        raise DecodeError(f"ROS 1 EventArray frame_id is not UTF-8: {err}") from err
    if id_end + _GEOMETRY.size > len(view):
        raise DecodeError(
            f"ROS 1 EventArray truncated: height/width/count at byte {id_end} need 12 bytes, "
            f"buffer has {len(view)}"
        )
    height, width, count = _GEOMETRY.unpack_from(view, id_end)
    start = id_end + _GEOMETRY.size
    expected = start + count * ROS1_EVENT_DTYPE.itemsize
    if expected != len(view):
        raise DecodeError(
            f"ROS 1 EventArray claims {count} events ({count * 13} bytes from byte {start}) "
            f"but the buffer has {len(view)} bytes, expected {expected}"
        )
    raw = np.frombuffer(view, dtype=ROS1_EVENT_DTYPE, count=count, offset=start)
    events = np.empty(count, dtype=EVENT_DTYPE)
    events["x"] = raw["x"]
    events["y"] = raw["y"]
    t = events["t"]
    np.multiply(raw["sec"], 1_000_000_000, out=t, dtype=np.int64, casting="unsafe")
    t += raw["nsec"]
    np.not_equal(raw["polarity"], 0, out=events["p"], casting="unsafe")
    return EventBatch(int(height), int(width), sec * 1_000_000_000 + nsec, frame_id, events)


def encode_event_array_ros1(
    events: np.ndarray,
    height: int,
    width: int,
    stamp_ns: int,
    frame_id: str = "",
    seq: int = 0,
) -> bytes:
    """Serialize events as a ROS 1 ``dvs_msgs/EventArray`` (what a ROS 1 bag stores).

    ``events`` needs fields ``x``, ``y``, ``t`` (ns), ``p``; ROS 1 ``time`` is unsigned 32-bit
    seconds, so times must lie in ``[0, 2**32 s)``. Vectorized: one packed array, one copy.
    """
    for name in ("x", "y", "t", "p"):
        if events.dtype.names is None or name not in events.dtype.names:
            raise EncodeError(f"events need fields x, y, t, p; got dtype {events.dtype}")
    stamp_ns = int(stamp_ns)
    if not 0 <= stamp_ns <= _MAX_STAMP_NS:
        raise EncodeError(f"stamp_ns {stamp_ns} does not fit a ROS 1 time (uint32 seconds)")
    t = np.asarray(events["t"], dtype=np.int64)
    if len(t) and (int(t.min()) < 0 or int(t.max()) > _MAX_STAMP_NS):
        raise EncodeError(
            f"event times [{int(t.min())}, {int(t.max())}] ns do not fit a ROS 1 time "
            "(uint32 seconds, non-negative)"
        )
    packed = np.empty(len(events), dtype=ROS1_EVENT_DTYPE)
    packed["x"] = events["x"]
    packed["y"] = events["y"]
    sec, nsec = np.divmod(t, 1_000_000_000)
    packed["sec"] = sec
    packed["nsec"] = nsec
    packed["polarity"] = np.asarray(events["p"]) != 0
    name = frame_id.encode("utf-8")
    head = _HEADER.pack(seq & 0xFFFFFFFF, stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000)
    geometry = _GEOMETRY.pack(int(height), int(width), len(events))
    return b"".join((head, _U32.pack(len(name)), name, geometry, packed.tobytes()))
