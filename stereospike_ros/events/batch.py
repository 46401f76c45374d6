"""Queue one camera's raw ``dvs_msgs/EventArray`` messages and decode them together.

A DAVIS driver publishes a message every millisecond or so, a few hundred events each. Decoding
each one on arrival costs a dozen numpy calls per message, ~100 us, whatever its size: at two
cameras that alone is most of a core. The node instead validates each message's header as it
arrives (a few ``struct`` reads: bad messages are still rejected one by one, with the same
error ``decode_event_array`` gives) and decodes all queued messages in one vectorized pass when
a window needs them.

With numba (``kernels.HAVE_NUMBA``) the queued messages are joined as they are and one compiled
loop decodes every event block of the joined buffer. Without it, decoding the joined blocks in
one numpy pass needs one record layout: in CDR the first event of a sequence is packed
differently from the rest (see ``encode.py``), so each message's first event is re-laid out
like the others (16 bytes) while the bytes are joined.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from stereospike_ros.events import kernels
from stereospike_ros.events.decode import _copy_events, decode_event_array
from stereospike_ros.events.encode import _LATER, EVENT_STRIDE, _event_dtype
from stereospike_ros.events.errors import DecodeError
from stereospike_ros.events.types import EVENT_DTYPE

__all__ = ["EventArrayHeader", "EventArrayQueue", "parse_event_array_header"]

Buffer = bytes | bytearray | memoryview

_HEAD = {False: struct.Struct("<iII"), True: struct.Struct(">iII")}  # sec, nanosec, strlen
_DIMS = {False: struct.Struct("<III"), True: struct.Struct(">III")}  # height, width, count
_TIME = {False: struct.Struct("<iI"), True: struct.Struct(">iI")}  # an event's sec, nanosec
_LAYOUT = {big: _event_dtype((_LATER[0], EVENT_STRIDE), big) for big in (False, True)}
_PAD2, _PAD1 = b"\x00\x00", b"\x00"


class EventArrayHeader(NamedTuple):
    """What the node needs of a message before (and without) decoding its events."""

    stamp_ns: int
    frame_id: str
    height: int
    width: int
    count: int
    first_t: int | None  # ns; None without events
    last_t: int | None
    big_endian: bool
    start: int  # byte offset of the first event


def parse_event_array_header(buf: Buffer) -> EventArrayHeader:
    """Header, size and first/last event time of a ``dvs_msgs/EventArray`` (CDR bytes).

    Checks everything ``decode_event_array`` checks except the events themselves (every byte
    pattern is a valid event); on any inconsistency the full decoder runs to raise its error.
    """
    try:
        return _parse(buf)
    except (struct.error, IndexError, ValueError, TypeError):
        pass
    batch = decode_event_array(buf)  # raises the precise DecodeError
    raise DecodeError(  # pragma: no cover - only if the two parsers disagree
        f"dvs_msgs/EventArray: header parse failed on a message the full decoder accepts "
        f"({len(batch.events)} events)"
    )


def _parse(buf: Buffer) -> EventArrayHeader:
    size = len(buf)
    if size < 16 or buf[0] != 0 or buf[1] > 1:
        raise ValueError
    big = buf[1] == 0
    sec, nanosec, length = _HEAD[big].unpack_from(buf, 4)
    end_id = 16 + length
    if length == 0 or end_id > size or buf[end_id - 1] != 0:
        raise ValueError
    frame_id = bytes(buf[16 : end_id - 1]).decode("utf-8")  # UnicodeDecodeError is a ValueError
    pos = end_id + (-end_id) % 4
    height, width, count = _DIMS[big].unpack_from(buf, pos)
    start = pos + 12
    end = start + (EVENT_STRIDE * count - 3 if count else 0)
    if end > size or size - end > 3:
        raise ValueError
    first_t = last_t = None
    if count:
        s, ns = _TIME[big].unpack_from(buf, start + 4)
        first_t = s * 1_000_000_000 + ns
        s, ns = _TIME[big].unpack_from(buf, start + EVENT_STRIDE * (count - 1) + 4)
        last_t = s * 1_000_000_000 + ns
    stamp = sec * 1_000_000_000 + nanosec
    return EventArrayHeader(stamp, frame_id, height, width, count, first_t, last_t, big, start)


class EventArrayQueue:
    """Validated, not yet decoded EventArray messages of one camera, in arrival order.

    ``add`` raises ``DecodeError`` for a bad message and queues nothing; ``drain`` returns the
    events of every queued message as one ``EVENT_DTYPE`` array, exactly what concatenating
    ``decode_event_array(buf).events`` would give, and empties the queue. The queue holds a
    reference to each queued buffer until then; ``pending_events`` is for bounding memory.
    """

    def __init__(self) -> None:
        self._pieces: list[memoryview | bytes] = []  # numpy path: re-laid-out event blocks
        self._blocks: list[tuple[memoryview, int, int]] = []  # numba: (message, start, count)
        self._big: bool | None = None
        self._done: list[np.ndarray] = []  # decoded runs of the other byte order
        self.pending_events = 0
        self.pending_messages = 0

    def add(self, buf: Buffer, header: EventArrayHeader | None = None) -> EventArrayHeader:
        """Queue ``buf``; ``header`` is its ``parse_event_array_header`` when already parsed."""
        if header is None:
            header = parse_event_array_header(buf)
        n = header.count
        self.pending_messages += 1
        if not n:
            return header
        if self._big is not None and header.big_endian != self._big:
            self._done.append(self._decode_pending())
        self._big = header.big_endian
        mem = memoryview(buf)
        s = header.start
        if kernels.HAVE_NUMBA:
            self._blocks.append((mem, s, n))
        else:
            pieces = self._pieces
            pieces += (mem[s : s + 4], _PAD2, mem[s + 4 : s + 13], _PAD1)
            if n > 1:
                pieces += (mem[s + 14 : s + EVENT_STRIDE * n - 3], _PAD1)
        self.pending_events += n
        return header

    def add_decoded(self, events: np.ndarray) -> None:
        """Queue events already decoded (another message type), keeping arrival order."""
        if self._pieces or self._blocks:
            self._done.append(self._decode_pending())
        self._done.append(events)
        self.pending_events += len(events)
        self.pending_messages += 1

    def drain(self) -> np.ndarray:
        runs = self._done
        runs.append(self._decode_pending())
        self._done = []
        self._big = None
        self.pending_events = self.pending_messages = 0
        runs = [r for r in runs if len(r)]
        if not runs:
            return np.empty(0, dtype=EVENT_DTYPE)
        if len(runs) == 1:
            return runs[0]
        # As raw bytes: np.concatenate promotes the fields of every structured array it is
        # given (~15 us each), which for 1 ms EventPackets cost more than decoding them.
        out = np.empty(sum(len(r) for r in runs), dtype=EVENT_DTYPE)
        flat, pos = out.view(np.uint8), 0
        for run in runs:
            raw = np.ascontiguousarray(run, dtype=EVENT_DTYPE).view(np.uint8)
            flat[pos : pos + len(raw)] = raw
            pos += len(raw)
        return out

    def _decode_pending(self) -> np.ndarray:
        """Decode what was queued since the last call (one byte order) in one pass."""
        if self._blocks:
            return self._decode_blocks()
        if not self._pieces:
            return np.empty(0, dtype=EVENT_DTYPE)
        joined = b"".join(self._pieces)
        self._pieces = []
        n = len(joined) // EVENT_STRIDE
        block = np.ndarray((n,), _LAYOUT[bool(self._big)], buffer=joined, strides=(EVENT_STRIDE,))
        out = np.empty(n, dtype=EVENT_DTYPE)
        _copy_events(block, out)
        return out

    def _decode_blocks(self) -> np.ndarray:
        blocks, self._blocks = self._blocks, []
        sizes = [len(mem) for mem, _, _ in blocks]
        offsets = np.cumsum([0, *sizes[:-1]], dtype=np.int64)
        starts = offsets + np.fromiter((s for _, s, _ in blocks), np.int64, len(blocks))
        counts = np.fromiter((n for _, _, n in blocks), np.int64, len(blocks))
        joined = np.frombuffer(b"".join(mem for mem, _, _ in blocks), dtype=np.uint8)
        out = np.empty(int(counts.sum()), dtype=EVENT_DTYPE)
        kernels.decode_event_array_blocks(joined, starts, counts, bool(self._big), out)
        return out
