"""Queue one camera's raw ``dvs_msgs/EventArray`` messages and decode them together.

A DAVIS driver publishes a message every millisecond or so, a few hundred events each.
Decoding each one on arrival costs a dozen numpy calls per message whatever its size, so at
two cameras the per-call overhead, not the events, would dominate. The node instead validates
each message's header as it arrives (``cdr.read_event_array_header``: bad messages are still
rejected one by one, with the error ``decode_event_array`` gives) and decodes all queued
messages in one vectorized pass when a window needs them.

With numba (``kernels.HAVE_NUMBA``) the queued messages are joined as they are and one compiled
loop decodes every event block of the joined buffer. Without it, decoding the joined blocks in
one numpy pass needs one record layout: in CDR the first event of a sequence is packed
differently from the rest, so each message's first event is re-laid out like the others
(``cdr.padded_event_block``) while the bytes are joined.
"""

from __future__ import annotations

import numpy as np

from stereospike_ros.events import fallbacks, kernels
from stereospike_ros.events.cdr import (
    EVENT_STRIDE,
    Buffer,
    EventArrayHeader,
    padded_event_block,
    padded_event_dtype,
    read_event_array_header,
)
from stereospike_ros.events.types import EVENT_DTYPE

__all__ = ["EventArrayQueue"]

_LAYOUT = {big: padded_event_dtype(big) for big in (False, True)}


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
        """Queue ``buf``; ``header`` is its ``read_event_array_header`` when already read."""
        if header is None:
            header = read_event_array_header(buf)
        n = header.count
        self.pending_messages += 1
        if not n:
            return header
        if self._big is not None and header.big_endian != self._big:
            self._done.append(self._decode_pending())
        self._big = header.big_endian
        mem = memoryview(buf).cast("B")
        if kernels.HAVE_NUMBA:
            self._blocks.append((mem, header.start, n))
        else:
            self._pieces += padded_event_block(mem, header.start, n)
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
        # given, a fixed cost per array that for many small EventPackets exceeds decoding them.
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
        fallbacks.copy_events(block, out)
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
