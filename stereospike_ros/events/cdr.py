"""Plain CDR (XCDR1) and the wire layouts of the event messages, for decoder and encoder alike.

ROS 2 over Fast DDS serializes with a 4-byte encapsulation header (``00 01`` little-endian,
``00 00`` big-endian, then two option bytes) and aligns every primitive to its own size,
counted from the byte after that header. The layouts of ``dvs_msgs/EventArray``,
``dvs_msgs/Event`` and ``event_camera_msgs/EventPacket`` live here once: ``decode.py``,
``encode.py``, ``batch.py`` and the numpy fallbacks all read them from this module. Header
fields go through ``struct``; the bulk arrays are read by the callers as numpy views, never
byte by byte. Alignment padding is skipped, never read: Fast DDS leaves garbage in it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from stereospike_ros.events.errors import DecodeError, EncodeError

Buffer = bytes | bytearray | memoryview

#: encapsulation id -> big_endian
_ENCAPSULATIONS = {0x0000: True, 0x0001: False}
_HEADER = 4


class CdrReader:
    """Cursor over a serialized message; every read is bounds-checked."""

    def __init__(self, buf: bytes | bytearray | memoryview, what: str) -> None:
        self.what = what
        try:
            self.mem = memoryview(buf).cast("B")
        except TypeError as err:
            raise DecodeError(f"{what}: expected a bytes-like buffer, got {type(buf)!r}") from err
        if len(self.mem) < _HEADER:
            raise DecodeError(
                f"{what}: {len(self.mem)} bytes is shorter than the 4-byte CDR encapsulation header"
            )
        encapsulation = (self.mem[0] << 8) | self.mem[1]
        if encapsulation not in _ENCAPSULATIONS:
            raise DecodeError(
                f"{what}: unsupported CDR encapsulation id 0x{encapsulation:04x} "
                "(supported: 0x0000 CDR_BE, 0x0001 CDR_LE)"
            )
        self.big_endian = _ENCAPSULATIONS[encapsulation]
        self.order = ">" if self.big_endian else "<"
        self.pos = _HEADER

    def remaining(self) -> int:
        return len(self.mem) - self.pos

    def align(self, n: int) -> None:
        self.pos += (-(self.pos - _HEADER)) % n

    def _need(self, n: int, field: str) -> None:
        if self.pos + n > len(self.mem):
            raise DecodeError(
                f"{self.what}: truncated at {field}: needs {n} bytes at offset {self.pos}, "
                f"buffer has {len(self.mem)}"
            )

    def scalar(self, fmt: str, field: str) -> int:
        size = struct.calcsize(fmt)
        self.align(size)
        self._need(size, field)
        (value,) = struct.unpack_from(self.order + fmt, self.mem, self.pos)
        self.pos += size
        return value

    def string(self, field: str) -> str:
        length = self.scalar("I", f"{field} length")
        if length == 0:
            raise DecodeError(f"{self.what}: {field} has length 0 (a CDR string holds its NUL)")
        self._need(length, field)
        raw = self.mem[self.pos : self.pos + length]
        if raw[-1] != 0:
            raise DecodeError(f"{self.what}: {field} of length {length} is not NUL-terminated")
        self.pos += length
        try:
            return bytes(raw[:-1]).decode("utf-8")
        except UnicodeDecodeError as err:
            raise DecodeError(f"{self.what}: {field} is not valid UTF-8: {err}") from err

    def fields(self, layout: Sequence[tuple[str, str]]) -> list[int | str]:
        """The values of ``layout``'s fields (``EVENT_ARRAY_FIELDS``...), in order."""
        return [
            self.string(name) if fmt == STRING else self.scalar(fmt, name) for fmt, name in layout
        ]

    def sequence_start(self, element_size: int, element_align: int, field: str) -> tuple[int, int]:
        """Read a sequence length; return (count, byte offset of the first element)."""
        count = self.scalar("I", f"{field} length")
        if count:
            self.align(element_align)
        if count > self.remaining() // max(element_size, 1) + 1:
            raise DecodeError(
                f"{self.what}: {field} claims {count} elements but only {self.remaining()} bytes "
                "follow"
            )
        return count, self.pos

    def expect_end(self, end: int, field: str) -> None:
        """Allow at most 3 trailing bytes (RTPS pads payloads to 4), nothing else."""
        if end > len(self.mem):
            raise DecodeError(
                f"{self.what}: truncated {field}: needs {end} bytes, buffer has {len(self.mem)}"
            )
        if len(self.mem) - end > 3:
            raise DecodeError(
                f"{self.what}: {len(self.mem) - end} unexpected bytes after {field} "
                f"(message ends at {end}, buffer has {len(self.mem)})"
            )


class CdrWriter:
    """Builds the fixed-size head of a message; padding is written as zeros."""

    def __init__(self, big_endian: bool) -> None:
        self.order = ">" if big_endian else "<"
        self.buf = bytearray(b"\x00\x00\x00\x00" if big_endian else b"\x00\x01\x00\x00")

    def align(self, n: int) -> None:
        self.buf += b"\x00" * ((-(len(self.buf) - _HEADER)) % n)

    def scalar(self, fmt: str, value: int, field: str) -> None:
        size = struct.calcsize(fmt)
        self.align(size)
        try:
            self.buf += struct.pack(self.order + fmt, value)
        except struct.error as err:
            raise EncodeError(f"{field}={value!r} does not fit CDR type {fmt!r}: {err}") from err

    def string(self, value: str, field: str) -> None:
        raw = value.encode("utf-8")
        if b"\x00" in raw:
            raise EncodeError(f"{field}={value!r} contains a NUL character")
        self.scalar("I", len(raw) + 1, f"{field} length")
        self.buf += raw + b"\x00"

    def fields(self, layout: Sequence[tuple[str, str]], values: Sequence[Any]) -> None:
        """Write ``values`` as ``layout``'s fields, in order."""
        for (fmt, name), value in zip(layout, values, strict=True):
            if fmt == STRING:
                self.string(value, name)
            else:
                self.scalar(fmt, value, name)

    def sequence_start(self, count: int, element_align: int, field: str) -> int:
        """Write a sequence length; return the byte offset where the elements start."""
        self.scalar("I", count, f"{field} length")
        if count:
            self.align(element_align)
        return len(self.buf)


def split_stamp(stamp_ns: int) -> tuple[int, int]:
    """builtin_interfaces/Time from integer nanoseconds (sec may be negative, nanosec not)."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return sec, nanosec


# ---------------------------------------------------------------- message layouts
#
# (struct format or STRING, field name) of each message's fields before its event sequence, in
# wire order. The checked reader and the writer walk these tuples; ``_array_head`` and
# ``_packet_head`` are the same layouts unrolled into fixed offsets, because a node reads one
# header per message and CdrReader's per-field bookkeeping would cost more than the decode of a
# small message. Whenever the unrolled reader meets anything unexpected, the checked reader
# reads the buffer again and names the field at fault.

STRING = "string"
_HEADER_FIELDS = (
    ("i", "header.stamp.sec"),
    ("I", "header.stamp.nanosec"),
    (STRING, "header.frame_id"),
)
#: dvs_msgs/EventArray; ``sequence<dvs_msgs/Event> events`` follows
EVENT_ARRAY_FIELDS = (*_HEADER_FIELDS, ("I", "height"), ("I", "width"))
#: event_camera_msgs/EventPacket; ``sequence<uint8> events`` (the encoded payload) follows
EVENT_PACKET_FIELDS = (
    *EVENT_ARRAY_FIELDS,
    ("Q", "seq"),
    ("Q", "time_base"),
    (STRING, "encoding"),
    ("B", "is_bigendian"),
)
_NOT_AS_LAID_OUT = (struct.error, IndexError, ValueError, TypeError)  # UnicodeDecodeError too


def read_header_stamp_ns(buf: Buffer) -> int:
    """The header stamp of any message whose first field is a std_msgs/Header, from CDR bytes.

    Reading 8 bytes instead of deserialising lets a node take trigger stamps from a depth image
    topic without copying the image into Python.
    """
    if len(buf) < 12:
        raise DecodeError(f"{len(buf)} bytes is too short for a CDR header stamp")
    if buf[0] != 0 or buf[1] not in (0, 1):
        raise DecodeError(f"unknown CDR encapsulation {bytes(buf[:2]).hex()}")
    endian = "<" if buf[1] == 1 else ">"
    sec, nanosec = struct.unpack_from(endian + "iI", buf, 4)
    if nanosec >= 1_000_000_000:
        raise DecodeError(f"header stamp nanosec {nanosec} is out of range")
    return sec * 1_000_000_000 + nanosec


class EventArrayHeader(NamedTuple):
    """A ``dvs_msgs/EventArray`` but its events: what a node needs before (and without) decoding
    them. ``first_t``, ``last_t``: ns of the first and last event (None without events);
    ``start``: byte offset of the first event."""

    stamp_ns: int
    frame_id: str
    height: int
    width: int
    count: int
    first_t: int | None
    last_t: int | None
    big_endian: bool
    start: int


class EventPacketHeader(NamedTuple):
    """An ``event_camera_msgs/EventPacket`` up to its payload of ``count`` bytes at ``start``."""

    stamp_ns: int
    frame_id: str
    height: int
    width: int
    seq: int
    time_base: int
    encoding: str
    is_bigendian: bool
    count: int
    start: int


def read_event_array_header(buf: Buffer) -> EventArrayHeader:
    """All but the events of ``dvs_msgs/EventArray`` CDR bytes, and its first and last event time.

    Checks everything ``decode_event_array`` checks except the events themselves (any byte
    pattern is a valid event); raises ``DecodeError`` naming the field at fault.
    """
    try:
        return _array_head(_bytes_view(buf))
    except _NOT_AS_LAID_OUT:
        r = CdrReader(buf, "dvs_msgs/EventArray")
        sec, nanosec, frame_id, height, width = r.fields(EVENT_ARRAY_FIELDS)
        n, start = r.sequence_start(EVENT_STRIDE, 4, "events")
        r.expect_end(start + event_block_size(n), f"events[{n}]")
        stamp = int(sec) * 1_000_000_000 + int(nanosec)
        first_t, last_t = _first_last(r.mem, start, n, r.big_endian)
        return EventArrayHeader(
            stamp, str(frame_id), int(height), int(width), n, first_t, last_t, r.big_endian, start
        )


def read_event_packet_header(buf: Buffer) -> EventPacketHeader:
    """All but the payload of ``event_camera_msgs/EventPacket`` CDR bytes; its size is checked
    against ``buf``.

    Raises ``DecodeError`` naming the field at fault.
    """
    try:
        return _packet_head(_bytes_view(buf))
    except _NOT_AS_LAID_OUT:
        r = CdrReader(buf, "event_camera_msgs/EventPacket")
        sec, nanosec, frame_id, height, width, seq, time_base, encoding, is_bigendian = r.fields(
            EVENT_PACKET_FIELDS
        )
        n, start = r.sequence_start(1, 1, "events")
        r.expect_end(start + n, f"events[{n}]")
        stamp = int(sec) * 1_000_000_000 + int(nanosec)
        return EventPacketHeader(
            stamp, str(frame_id), int(height), int(width), int(seq), int(time_base),
            str(encoding), is_bigendian != 0, n, start,
        )  # fmt: skip


def write_event_array_header(
    height: int, width: int, stamp_ns: int, frame_id: str, count: int, big_endian: bool
) -> bytes:
    """A ``dvs_msgs/EventArray`` up to its first event, with ``count`` as the sequence length."""
    w = CdrWriter(big_endian)
    w.fields(EVENT_ARRAY_FIELDS, (*split_stamp(stamp_ns), frame_id, height, width))
    w.sequence_start(count, 4, "events")
    return bytes(w.buf)


def write_event_packet_header(
    height: int,
    width: int,
    stamp_ns: int,
    frame_id: str,
    seq: int,
    time_base: int,
    encoding: str,
    big_endian: bool,
    payload_size: int,
) -> bytes:
    """An ``event_camera_msgs/EventPacket`` up to its payload of ``payload_size`` bytes."""
    w = CdrWriter(big_endian)
    values = (*split_stamp(stamp_ns), frame_id, height, width, seq, time_base, encoding)
    w.fields(EVENT_PACKET_FIELDS, (*values, int(big_endian)))
    w.sequence_start(payload_size, 1, "events")
    return bytes(w.buf)


_HEAD = {False: struct.Struct("<iII"), True: struct.Struct(">iII")}  # sec, nanosec, strlen
_SIZE = {False: struct.Struct("<II"), True: struct.Struct(">II")}  # height, width
_PACKET = {False: struct.Struct("<QQI"), True: struct.Struct(">QQI")}  # seq, time_base, strlen
_U32 = {False: struct.Struct("<I"), True: struct.Struct(">I")}
_TIME = {False: struct.Struct("<iI"), True: struct.Struct(">iI")}  # an event's sec, nanosec


def _bytes_view(buf: Buffer) -> Buffer:
    """``buf`` indexable by byte (a memoryview of wider items would index by item)."""
    return buf if isinstance(buf, bytes | bytearray) else memoryview(buf).cast("B")


def _head_string(buf: Buffer, pos: int, length: int) -> tuple[str, int]:
    """A CDR string of ``length`` bytes (NUL included) at ``pos``; (text, position after it)."""
    end = pos + length
    if length == 0 or end > len(buf) or buf[end - 1] != 0:
        raise ValueError
    return bytes(buf[pos : end - 1]).decode("utf-8"), end


def _common_head(buf: Buffer) -> tuple[bool, int, str, int, int, int]:
    """(big_endian, stamp_ns, frame_id, height, width, offset after width): the fields both
    messages start with, at fixed offsets; ValueError (or a struct error) on any doubt."""
    if len(buf) < 16 or buf[0] != 0 or buf[1] > 1:
        raise ValueError
    big = buf[1] == 0
    sec, nanosec, length = _HEAD[big].unpack_from(buf, 4)
    frame_id, pos = _head_string(buf, 16, length)
    pos += -pos % 4
    height, width = _SIZE[big].unpack_from(buf, pos)
    return big, sec * 1_000_000_000 + nanosec, frame_id, height, width, pos + 8


def _array_head(buf: Buffer) -> EventArrayHeader:
    """``EVENT_ARRAY_FIELDS`` at fixed offsets; ValueError (or a struct error) on any doubt."""
    big, stamp, frame_id, height, width, pos = _common_head(buf)
    (count,) = _U32[big].unpack_from(buf, pos)
    start = pos + 4
    end = start + event_block_size(count)
    if end > len(buf) or len(buf) - end > 3:
        raise ValueError
    first_t, last_t = _first_last(buf, start, count, big)
    return EventArrayHeader(stamp, frame_id, height, width, count, first_t, last_t, big, start)


def _first_last(buf: Buffer, start: int, count: int, big: bool) -> tuple[int | None, int | None]:
    """ns of the first and last event of a block already checked against ``buf``."""
    if not count:
        return None, None
    time = _TIME[big]
    sec, nanosec = time.unpack_from(buf, start + 4)
    first = sec * 1_000_000_000 + nanosec
    sec, nanosec = time.unpack_from(buf, start + EVENT_STRIDE * (count - 1) + 4)
    return first, sec * 1_000_000_000 + nanosec


def _packet_head(buf: Buffer) -> EventPacketHeader:
    """``EVENT_PACKET_FIELDS`` at fixed offsets; ValueError (or a struct error) on any doubt."""
    big, stamp, frame_id, height, width, pos = _common_head(buf)
    pos += -(pos - 4) % 8  # CDR aligns to 8 counting from the byte after the 4-byte header
    seq, time_base, length = _PACKET[big].unpack_from(buf, pos)
    encoding, pos = _head_string(buf, pos + 20, length)
    is_bigendian = buf[pos] != 0
    pos += 1
    pos += -pos % 4
    (n,) = _U32[big].unpack_from(buf, pos)
    start = pos + 4
    if start + n > len(buf) or len(buf) - (start + n) > 3:
        raise ValueError
    return EventPacketHeader(
        stamp, frame_id, height, width, seq, time_base, encoding, is_bigendian, n, start
    )


# ---------------------------------------------------------------- dvs_msgs/Event records
#
# Plain CDR aligns each primitive, not the struct, so the events of a sequence come in two
# phases: the first starts 4-aligned (x@0 y@2 sec@4 nanosec@8 pol@12, 13 bytes); every later
# one starts 2 mod 4, after one padding byte (x@0 y@2, 2 padding bytes, sec@6 nanosec@10
# pol@14, 15 bytes), and they repeat every 16 bytes. Event i's sec is at byte 16 * i + 4 of the
# block either way.

EVENT_STRIDE = 16
_FIRST = ([0, 2, 4, 8, 12], 13)
_LATER = ([0, 2, 6, 10, 14], 15)
_LATER_OFFSET = 14
_PAD2, _PAD1 = b"\x00\x00", b"\x00"


def _event_dtype(offsets: list[int], itemsize: int, big_endian: bool) -> np.dtype:
    o = ">" if big_endian else "<"
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
    first_dtype = _event_dtype(*_FIRST, big_endian)
    later_dtype = _event_dtype(*_LATER, big_endian)
    if count == 0:
        empty = np.zeros(0, dtype=first_dtype)
        return empty, empty
    first = np.ndarray((1,), first_dtype, buffer=buf, offset=offset)
    if count == 1:
        return first, np.zeros(0, dtype=later_dtype)
    rest = np.ndarray(
        (count - 1,),
        dtype=later_dtype,
        buffer=buf,
        offset=offset + _LATER_OFFSET,
        strides=(EVENT_STRIDE,),
    )
    return first, rest


def padded_event_dtype(big_endian: bool) -> np.dtype:
    """One serialized event laid out as every event after the first, padded to EVENT_STRIDE."""
    return _event_dtype(_LATER[0], EVENT_STRIDE, big_endian)


def padded_event_block(mem: memoryview, start: int, count: int) -> tuple[memoryview | bytes, ...]:
    """Byte pieces that, joined, hold the ``count`` events at ``start`` as ``padded_event_dtype``.

    The first event is re-laid out like the others (its x, y, 2 padding bytes, the rest, 1
    padding byte), so that the blocks of several messages join into one uniform array.
    """
    s = start
    pieces: tuple[memoryview | bytes, ...] = (mem[s : s + 4], _PAD2, mem[s + 4 : s + 13], _PAD1)
    if count > 1:
        pieces += (mem[s + _LATER_OFFSET : s + event_block_size(count)], _PAD1)
    return pieces
