"""Cutting a recording into driver-like messages in time order, without ROS.

The player publishes what this yields; keeping it pure lets tests check the exact messages
(every event once, in order, each depth frame in the slot of its stamp) without a graph.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from stereospike_ros.events.types import EVENT_DTYPE, SIDES
from stereospike_ros.ros.errors import PlayerError

__all__ = ["EventCursor", "Slot", "slots"]


class EventCursor:
    """Reads a time-ordered stream of event chunks up to a given time, chunk by chunk."""

    def __init__(self, chunks: Iterator[np.ndarray]) -> None:
        self._chunks = chunks
        self._buffer = np.zeros(0, dtype=EVENT_DTYPE)
        self._done = False

    def _fill(self) -> bool:
        for chunk in self._chunks:
            if len(chunk):
                self._buffer = np.concatenate([self._buffer, chunk]) if len(self._buffer) else chunk
                return True
        self._done = True
        return False

    def first_time(self) -> int | None:
        """Time of the next event, or None at the end."""
        if not len(self._buffer) and not self._fill():
            return None
        return int(self._buffer["t"][0])

    def take_before(self, t_ns: int) -> np.ndarray:
        """All remaining events with t < ``t_ns`` (they must come sorted by t)."""
        while not self._done and (not len(self._buffer) or self._buffer["t"][-1] < t_ns):
            if not self._fill():
                break
        cut = int(np.searchsorted(self._buffer["t"], t_ns, side="left"))
        taken, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return taken

    @property
    def exhausted(self) -> bool:
        return self._done and not len(self._buffer)


@dataclass
class Slot:
    """One message period: events with t in [t_start, t_end) and the depth frames due then."""

    t_start_ns: int
    t_end_ns: int
    left: np.ndarray
    right: np.ndarray
    depth: list[tuple[int, np.ndarray]] = field(default_factory=list)


def slots(
    sequence: object, message_ns: int, chunk_size: int = 1 << 18, depth_lead_ns: int = 0
) -> Iterator[Slot]:
    """Slots of ``message_ns`` covering ``sequence`` (any ``StereoSequence``) from its first stamp.

    Empty slots are skipped, like a driver that has nothing to send. Out-of-order events
    within a camera would break the cut; the MVSEC files and our writers are sorted. A depth
    frame goes in the slot that contains ``stamp - depth_lead_ns``: with a lead, a node whose
    windows end at the ground-truth stamps hears each stamp before the events that pass it.
    """
    if message_ns <= 0:
        raise PlayerError(f"message duration must be positive, got {message_ns} ns")
    cursors = {side: EventCursor(sequence.iter_events(side, chunk_size)) for side in SIDES}
    frames = iter(sequence.depth_frames())
    next_frame = next(frames, None)
    starts = [c.first_time() for c in cursors.values()]
    if next_frame is not None:
        starts.append(int(next_frame.t_ns) - depth_lead_ns)
    starts = [t for t in starts if t is not None]
    if not starts:
        raise PlayerError(f"recording {getattr(sequence, 'name', sequence)!r} holds no events")
    t = min(starts)
    while True:
        t_end = t + message_ns
        left = cursors["left"].take_before(t_end)
        right = cursors["right"].take_before(t_end)
        depth = []
        while next_frame is not None and next_frame.t_ns - depth_lead_ns < t_end:
            depth.append((int(next_frame.t_ns), next_frame.depth))
            next_frame = next(frames, None)
        if len(left) or len(right) or depth:
            yield Slot(t, t_end, left, right, depth)
        if next_frame is None and all(c.exhausted for c in cursors.values()):
            return
        # Jump over long gaps (a silent stretch) instead of stepping through empty slots.
        upcoming = [c.first_time() for c in cursors.values()]
        if next_frame is not None:
            upcoming.append(int(next_frame.t_ns) - depth_lead_ns)
        upcoming = [u for u in upcoming if u is not None]
        t = (
            t_end
            if not upcoming
            else max(t_end, t + (min(upcoming) - t) // message_ns * message_ns)
        )
