"""Minimal XCDR1 (plain CDR) reading and writing for the two event messages we handle.

ROS 2 over Fast DDS serializes with a 4-byte encapsulation header (``00 01`` little-endian,
``00 00`` big-endian, then two option bytes) and aligns every primitive to its own size,
counted from the byte after that header. Only the header fields are parsed here with
``struct``; the bulk arrays are read by the callers as numpy views, never byte by byte.
Alignment padding is skipped, never read: Fast DDS leaves garbage in it.
"""

from __future__ import annotations

import struct

from stereospike_ros.events.errors import DecodeError, EncodeError

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
