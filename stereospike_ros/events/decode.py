"""Decode serialized ROS 2 event messages into ``EventBatch`` without rclpy.

rclpy builds one Python object per event (~13 us each); a ``raw=True`` subscription instead
hands over the CDR bytes, which are read here as strided numpy views: the header fields with
``struct``, the event block in a handful of vectorized copies, or in one compiled loop when
numba is installed (``kernels.py``; same result). Alignment padding is never read (Fast DDS
does not zero it), and every length is checked against the buffer before use.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from stereospike_ros.events import kernels
from stereospike_ros.events.cdr import CdrReader
from stereospike_ros.events.encode import EVENT_STRIDE, event_block_size, event_block_views
from stereospike_ros.events.errors import DecodeError
from stereospike_ros.events.evt3 import Evt3State, decode_evt3
from stereospike_ros.events.libcaer import LibcaerState, decode_libcaer
from stereospike_ros.events.types import EVENT_DTYPE, EventBatch

if TYPE_CHECKING:
    from stereospike_ros.events.rectify import Rectifier

Buffer = bytes | bytearray | memoryview


def _stamp_ns(reader: CdrReader) -> int:
    sec = reader.scalar("i", "header.stamp.sec")
    nanosec = reader.scalar("I", "header.stamp.nanosec")
    return sec * 1_000_000_000 + nanosec


def _event_array_header(buf: Buffer) -> tuple[CdrReader, int, str, int, int, int, int]:
    """Reader, stamp, frame_id, height, width, event count, byte offset of the first event."""
    r = CdrReader(buf, "dvs_msgs/EventArray")
    stamp = _stamp_ns(r)
    frame_id = r.string("header.frame_id")
    height = r.scalar("I", "height")
    width = r.scalar("I", "width")
    n, start = r.sequence_start(EVENT_STRIDE, 4, "events")
    r.expect_end(start + event_block_size(n), f"events[{n}]")
    return r, stamp, frame_id, height, width, n, start


def decode_event_array(buf: Buffer) -> EventBatch:
    """``dvs_msgs/EventArray`` CDR bytes (encapsulation header included) -> EventBatch.

    Either byte order; ``t`` = sec * 1e9 + nanosec as int64 ns; ``p`` = 1 for ON.
    """
    r, stamp, frame_id, height, width, n, start = _event_array_header(buf)
    out = np.empty(n, dtype=EVENT_DTYPE)
    if n:
        mem = np.frombuffer(r.mem, dtype=np.uint8)
        if kernels.HAVE_NUMBA:
            kernels.decode_event_array_blocks(mem, [start], [n], r.big_endian, out)
        else:
            first, rest = event_block_views(mem, start, n, r.big_endian)
            _copy_events(first, out[:1])
            _copy_events(rest, out[1:])
    return EventBatch(height, width, stamp, frame_id, out)


def accumulate_event_array(
    buf: Buffer,
    hist: np.ndarray,
    rectifier: Rectifier | None = None,
    t_start: int | None = None,
    t_end: int | None = None,
) -> tuple[int, int]:
    """Count a ``dvs_msgs/EventArray``'s events into ``hist`` without building them.

    The same counts as ``accumulate_into(hist, rectifier(decode_event_array(buf).events,
    inplace=True), t_start, t_end)``, in one compiled pass with numba (``kernels.HAVE_NUMBA``).
    Returns (events the rectifier dropped, in-window events that fell off ``hist``).
    """
    r, _, _, _, _, n, start = _event_array_header(buf)
    mem = np.frombuffer(r.mem, dtype=np.uint8)
    return kernels.count_event_array(mem, start, n, r.big_endian, rectifier, hist, t_start, t_end)


_CHUNK = 32768  # events per pass: keeps each slice of the CDR block in cache across fields

#: x and y of one EVENT_DTYPE record read as one little-endian uint32 (y << 16 | x)
_XY_OUT = np.dtype({"names": ["xy"], "formats": ["<u4"], "offsets": [0], "itemsize": 13})


def _copy_events(block: np.ndarray, out: np.ndarray) -> None:
    """Serialized events -> EVENT_DTYPE, chunk by chunk through contiguous temporaries.

    Field-to-field copies between two strided record arrays are ~3x slower than going through
    a contiguous array, and one chunk of the CDR block stays in cache for all fields. In
    little-endian CDR, x and y sit side by side exactly as in EVENT_DTYPE, so they travel as
    one uint32 (one strided read and one strided write instead of two each).
    """
    n = len(block)
    c = min(n, _CHUNK)
    le_xy = block.dtype["x"].byteorder != ">" and block.dtype.fields["y"][1] == 2
    src_xy = _xy_view(block) if le_xy else None
    out_xy = out.view(_XY_OUT)["xy"]
    xy = np.empty(c, dtype=np.uint32 if le_xy else np.uint16)
    t = np.empty(c, dtype=np.int64)
    out_p = out["p"].view(np.bool_)  # 0/1 bytes: the comparison writes them in place
    for s in range(0, n, _CHUNK):
        src = block[s : s + _CHUNK]
        dst = out[s : s + _CHUNK]
        k = len(src)
        xy_k, t_k = xy[:k], t[:k]
        if src_xy is not None:
            xy_k[...] = src_xy[s : s + _CHUNK]
            out_xy[s : s + k] = xy_k
        else:
            xy_k[...] = src["x"]
            dst["x"] = xy_k
            xy_k[...] = src["y"]
            dst["y"] = xy_k
        np.multiply(src["sec"], 1_000_000_000, out=t_k, dtype=np.int64)
        t_k += src["nanosec"]
        dst["t"] = t_k
        np.not_equal(src["polarity"], 0, out=out_p[s : s + k])


def _xy_view(block: np.ndarray) -> np.ndarray:
    """The x and y fields of a little-endian serialized event block as one strided uint32."""
    dtype = np.dtype(
        {"names": ["xy"], "formats": ["<u4"], "offsets": [0], "itemsize": block.dtype.itemsize}
    )
    return block.view(dtype)["xy"]


#: encoding -> payload decoder(payload, time_base_ns, big_endian=...)
PAYLOAD_DECODERS: dict[str, Callable[..., np.ndarray]] = {
    "evt3": decode_evt3,
    "libcaer": decode_libcaer,
}


class EventPacketDecoder:
    """Decodes the ``event_camera_msgs/EventPacket`` stream of ONE camera, keeping EVT3 state.

    A real evt3 driver cuts its word stream anywhere, so time-high, row and vector base carry
    over from one packet to the next; feed every packet of a topic, in order, to one instance.
    ``t`` = ``time_base`` + decoded sensor time (evt3: microseconds since the sensor's counter
    started, times 1000; libcaer: timestamp us * 1000). ``reset()`` forgets the carried state
    (use it when a bag loops). ``last_seq`` is the ``seq`` field of the last packet decoded;
    ``discontinuities`` counts time steps the decoders did not trust (see evt3 and libcaer).
    """

    def __init__(self) -> None:
        self.evt3_state = Evt3State()
        self.libcaer_state = LibcaerState()
        self.last_seq: int | None = None

    def reset(self) -> None:
        self.evt3_state = Evt3State()

    @property
    def discontinuities(self) -> int:
        return self.evt3_state.discontinuities + self.libcaer_state.discontinuities

    def decode(self, buf: Buffer) -> EventBatch:
        try:  # a few struct reads; any inconsistency takes the checked path for its error
            head = _packet_head(buf)
        except (struct.error, IndexError, ValueError, TypeError):
            head = _checked_packet_head(buf)
        stamp, frame_id, height, width, time_base, encoding, is_bigendian, start, n, seq = head
        payload = np.frombuffer(buf, dtype=np.uint8, count=n, offset=start)
        if encoding == "evt3":
            events = decode_evt3(payload, time_base, big_endian=is_bigendian, state=self.evt3_state)
        elif encoding == "libcaer":
            events = decode_libcaer(
                payload, time_base, big_endian=is_bigendian, state=self.libcaer_state
            )
        elif encoding in PAYLOAD_DECODERS:
            events = PAYLOAD_DECODERS[encoding](payload, time_base, big_endian=is_bigendian)
        else:
            raise DecodeError(
                f"event_camera_msgs/EventPacket: unsupported encoding {encoding!r} "
                f"(frame_id {frame_id!r}); supported: {', '.join(sorted(PAYLOAD_DECODERS))}"
            )
        self.last_seq = seq
        return EventBatch(height, width, stamp, frame_id, events)


_PacketHead = tuple[int, str, int, int, int, str, bool, int, int, int]


def _packet_head(buf: Buffer) -> _PacketHead:
    """The EventPacket header by fixed offsets (~10x cheaper than CdrReader per packet)."""
    size = len(buf)
    if size < 16 or buf[0] != 0 or buf[1] > 1:
        raise ValueError
    o = "<" if buf[1] == 1 else ">"
    sec, nanosec, length = struct.unpack_from(o + "iII", buf, 4)
    pos = 16 + length
    if length == 0 or pos > size or buf[pos - 1] != 0:
        raise ValueError
    frame_id = bytes(buf[16 : pos - 1]).decode("utf-8")
    pos += -pos % 4
    height, width = struct.unpack_from(o + "II", buf, pos)
    pos += 8
    pos += -(pos - 4) % 8  # CDR aligns to 8 counting from the byte after the 4-byte header
    seq, time_base, length = struct.unpack_from(o + "QQI", buf, pos)
    pos += 20
    end = pos + length
    if length == 0 or end > size or buf[end - 1] != 0:
        raise ValueError
    encoding = bytes(buf[pos : end - 1]).decode("utf-8")
    is_bigendian = buf[end] != 0
    pos = end + 1
    pos += -pos % 4
    (n,) = struct.unpack_from(o + "I", buf, pos)
    start = pos + 4
    if start + n > size or size - (start + n) > 3:
        raise ValueError
    stamp = sec * 1_000_000_000 + nanosec
    return stamp, frame_id, height, width, time_base, encoding, is_bigendian, start, n, seq


def _checked_packet_head(buf: Buffer) -> _PacketHead:
    """The same through CdrReader, which names the field at fault."""
    r = CdrReader(buf, "event_camera_msgs/EventPacket")
    stamp = _stamp_ns(r)
    frame_id = r.string("header.frame_id")
    height = r.scalar("I", "height")
    width = r.scalar("I", "width")
    seq = r.scalar("Q", "seq")
    time_base = r.scalar("Q", "time_base")
    encoding = r.string("encoding")
    is_bigendian = r.scalar("B", "is_bigendian") != 0
    n, start = r.sequence_start(1, 1, "events")
    r.expect_end(start + n, f"events[{n}]")
    return stamp, frame_id, height, width, time_base, encoding, is_bigendian, start, n, seq


def decode_event_packet(buf: Buffer) -> EventBatch:
    """One ``event_camera_msgs/EventPacket`` decoded as the start of its stream.

    For a live evt3 topic use one ``EventPacketDecoder`` per camera instead: a packet cut in
    the middle of the stream needs the state the previous packets left.
    """
    return EventPacketDecoder().decode(buf)
