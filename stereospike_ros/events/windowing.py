"""Pair left/right event streams into fixed windows of spike counts, with bounded memory.

StereoSpike sees both cameras over the same 50 ms; the two cameras' messages arrive in any
interleaving and batch size, so each side is buffered until both have delivered events past a
window's end, and only then is the window counted. Scheduling rules (what the node relies on):

- Window ends come from a fixed grid (multiples of ``period_ns``; the first end is the first
  grid point at least ``window_ns`` after BOTH cameras' first events) or, in ``"trigger"``
  mode, from stamps given to ``add_triggers`` (e.g. ground-truth depth stamps, as in the
  MVSEC protocol). The window for end ``e`` is ``[e - window_ns, e)``.
- A window is emitted once both cameras have delivered an event with ``t >= e``. While one
  camera is silent nothing is emitted; ``silent_sides()`` says which camera has delivered
  nothing for ``silence_timeout_ns`` (on the caller's clock). Meanwhile the other camera is
  buffered up to ``max_buffered_events``, dropping its oldest events (``dropped_memory``).
  When the silent camera comes back, pending windows whose data was dropped, and windows in
  which neither camera has any event, are skipped (``windows_skipped``), not emitted half-empty.
  In trigger mode an empty window is still emitted: every trigger gets its answer, as the
  offline evaluation predicts on every ground-truth frame.
- ``advance(side, t)`` is a promise that ``side`` has delivered every event before ``t`` (a
  replay's watermark): windows ending by ``t`` then complete without waiting for a later event,
  so the last window of a recording is not lost.
- Events outside the sensor are dropped on arrival (``dropped_out_of_bounds``).
- An event more than ``backwards_tolerance_ns`` before its camera's newest event (a bag that
  loops) restarts that camera and the schedule, with a logged warning; the other camera, if it
  is still more than a window ahead, is forgotten and its old-timeline events are ignored
  (``dropped_stale``) until it jumps back too, or jumps forward far past its old timeline to
  within ``SAME_TIMELINE_NS`` of the other camera's, so one loop is one reset and no window
  mixes the two timelines. A camera that returns to the other's timeline (a burst of old
  stamps, not a loop) lifts that.
- Work is linear in the events pushed, never in the time their stamps span: all backward
  jumps of a push are found in one pass; a push with more than ``MAX_JUMPS_PER_PUSH`` of them
  is garbage, and only its events after the last jump are kept (``dropped_discontinuity``);
  slightly unordered runs are sorted once; an empty stretch of the schedule, however long, is
  crossed in one step to the next buffered event.
- With ``outlier_ns``, an event more than ``outlier_ns`` away from both of its neighbours in
  the push (the camera's newest event time stands in for the first one's predecessor) is an
  isolated outlier: dropped and counted (``dropped_outlier``) instead of dragging the
  schedule or resetting the camera. A missing neighbour counts as far, so one stray event at
  either end of a push is dropped too; a stream that really jumps moves with its neighbours.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from stereospike_ros.events import kernels
from stereospike_ros.events.errors import EventsError
from stereospike_ros.events.histogram import accumulate_into, event_histogram
from stereospike_ros.events.types import EVENT_DTYPE, SIDES

log = logging.getLogger(__name__)
_WARN_EVERY_S = 5.0  #: a windower logs each kind of warning at most this often


NEVER = 2**63 - 1  #: ``due_ns()`` when nothing can complete until a trigger arrives
#: a forgotten camera whose events come this close to the other camera's joins its timeline
SAME_TIMELINE_NS = 1_000_000_000
#: backward jumps one push may hold before it counts as garbage (see the module docstring)
MAX_JUMPS_PER_PUSH = 8


@dataclass
class StereoWindow:
    """Spike counts of both cameras over ``[t_end_ns - window_ns, t_end_ns)``; (2, H, W) uint16."""

    t_end_ns: int
    window_ns: int
    left: np.ndarray
    right: np.ndarray

    @property
    def t_start_ns(self) -> int:
        return self.t_end_ns - self.window_ns


@dataclass
class WindowerCounters:
    """What happened to the events and windows so far (per camera where it differs)."""

    events_in: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIDES, 0))
    dropped_out_of_bounds: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIDES, 0))
    dropped_memory: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIDES, 0))
    dropped_stale: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIDES, 0))
    dropped_outlier: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIDES, 0))
    dropped_discontinuity: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIDES, 0))
    windows_emitted: int = 0
    windows_skipped: int = 0
    resets: int = 0


_RECORD = np.dtype((np.void, EVENT_DTYPE.itemsize))


def _select(events: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``events[index]`` through an opaque record view: numpy copies each 13-byte void as one
    block, where it would gather a structured array field by field."""
    if not events.flags.c_contiguous:
        return events[index]
    return events.view(_RECORD)[index].view(EVENT_DTYPE)


class _Chunk(NamedTuple):
    events: np.ndarray  # sorted by time: windows are cut by binary search, never a mask
    t_min: int
    t_max: int


class _Side:
    """One camera's buffered events: time-ordered chunks, their count, and what was lost."""

    def __init__(self) -> None:
        self.chunks: deque[_Chunk] = deque()
        self.count = 0
        self.first_t: int | None = None
        self.frontier: int | None = None  # newest event time received
        self.lost_until: int | None = None  # newest time among events dropped for memory
        self.last_arrival: int | None = None  # caller's clock
        self.stale_until: int | None = None  # old-timeline frontier, until this camera loops
        self.stale_since = 0


class StereoWindower:
    """Feed rectified events per camera with ``push``; collect finished ``StereoWindow``s."""

    def __init__(
        self,
        height: int,
        width: int,
        window_ns: int = 50_000_000,
        period_ns: int | None = None,
        max_buffered_events: int = 5_000_000,
        silence_timeout_ns: int = 1_000_000_000,
        schedule: str = "rate",
        backwards_tolerance_ns: int = 1_000_000,
        outlier_ns: int | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
        late_trigger_ns: int = 0,
    ) -> None:
        if height <= 0 or width <= 0 or window_ns <= 0:
            raise EventsError(f"bad geometry/window: {height} x {width}, window {window_ns} ns")
        if schedule not in ("rate", "trigger"):
            raise EventsError(f"schedule must be 'rate' or 'trigger', got {schedule!r}")
        self.height, self.width = int(height), int(width)
        self.window_ns = int(window_ns)
        self.period_ns = self.window_ns if period_ns is None else int(period_ns)
        if self.period_ns <= 0:
            raise EventsError(f"period_ns must be positive, got {period_ns}")
        if max_buffered_events <= 0:
            raise EventsError(f"max_buffered_events must be positive, got {max_buffered_events}")
        self.max_buffered_events = int(max_buffered_events)
        self.silence_timeout_ns = int(silence_timeout_ns)
        self.schedule = schedule
        self.backwards_tolerance_ns = int(backwards_tolerance_ns)
        if outlier_ns is not None and outlier_ns <= self.backwards_tolerance_ns:
            raise EventsError(
                f"outlier_ns ({outlier_ns}) must exceed backwards_tolerance_ns "
                f"({self.backwards_tolerance_ns})"
            )
        self.outlier_ns = None if outlier_ns is None else int(outlier_ns)
        self.clock = clock
        # Trigger mode keeps this much sensor time of events beyond the frontier's window, so
        # a trigger that arrives after the events passing it (another topic) still finds them.
        self.late_trigger_ns = max(0, int(late_trigger_ns))
        self.counters = WindowerCounters()
        self._warned: dict[str, float] = {}
        self._triggers: list[int] = []
        self._sides = {name: _Side() for name in SIDES}
        self._next_end: int | None = None
        self._created = self.clock()

    # ---- public API
    def pending_triggers(self) -> list[int]:
        """Trigger stamps not yet used as a window end, in order."""
        return list(self._triggers)

    def add_triggers(self, stamps_ns: Iterable[int]) -> None:
        """Window ends for ``schedule="trigger"`` (any order; duplicates are kept once)."""
        for stamp in stamps_ns:
            i = bisect.bisect_left(self._triggers, int(stamp))
            if i == len(self._triggers) or self._triggers[i] != int(stamp):
                self._triggers.insert(i, int(stamp))

    def push(self, side: str, events: np.ndarray) -> list[StereoWindow]:
        """Add one camera's rectified events; return the windows this completes, oldest first."""
        if side not in SIDES:
            raise EventsError(f"side must be 'left' or 'right', got {side!r}")
        if events.dtype != EVENT_DTYPE:
            raise EventsError(f"events must have EVENT_DTYPE, got {events.dtype}")
        s = self._sides[side]
        s.last_arrival = self.clock()
        self.counters.events_in[side] += len(events)
        windows: list[StereoWindow] = []
        if not len(events):
            return windows
        steps = np.diff(events["t"])
        if self.outlier_ns is not None and len(events) > 1:
            keep = self._outlier_free(side, events["t"], steps)
            if keep is not None:
                events = _select(events, keep)
                if not len(events):
                    return windows
                steps = np.diff(events["t"])
        jumps = np.flatnonzero(steps < -self.backwards_tolerance_ns)
        if len(jumps) > MAX_JUMPS_PER_PUSH:
            cut = int(jumps[-1]) + 1
            self.counters.dropped_discontinuity[side] += cut
            self._warn(
                "garbage",
                "%s camera: %d backward time jumps in one batch: keeping its last %d events",
                side,
                len(jumps),
                len(events) - cut,
            )
            events, steps, jumps = events[cut:], steps[cut:], jumps[:0]
        bounds = [0, *(int(j) + 1 for j in jumps), len(events)]
        for lo, hi in itertools.pairwise(bounds):
            self._push_run(side, events[lo:hi], steps[lo : hi - 1], windows)
        return windows

    def advance(self, side: str, t_ns: int) -> list[StereoWindow]:
        """``side`` has delivered every event before ``t_ns``: complete the windows it allows."""
        s = self._sides[side]
        if s.stale_until is not None or (s.frontier is not None and s.frontier >= t_ns):
            return []
        s.frontier = int(t_ns)
        return self._emit()

    def due_ns(self) -> int | None:
        """Sensor time both cameras must reach before a ``push`` can complete a window.

        Lets a caller hold incoming events back and push them in a few large batches (the
        results are the same for any batching). ``None`` while that time is not known yet (the
        rate schedule starts at both cameras' first events): push everything then. In trigger
        mode with no trigger pending, no push can complete anything: ``NEVER``.
        """
        end = self._pending_end()
        if end is None and self.schedule == "trigger":
            return NEVER
        return end

    def silent_sides(self, now_ns: int | None = None) -> list[str]:
        """Cameras that delivered nothing for ``silence_timeout_ns`` (caller's clock)."""
        now = self.clock() if now_ns is None else now_ns
        silent = []
        for name, s in self._sides.items():
            ref = s.last_arrival if s.last_arrival is not None else self._created
            if now - ref > self.silence_timeout_ns:
                silent.append(name)
        return silent

    # ---- internals
    def _warn(self, kind: str, text: str, *args: object) -> None:
        """``log.warning``, at most once per ``_WARN_EVERY_S`` per kind (counters keep all)."""
        now = time.monotonic()
        if now - self._warned.get(kind, -_WARN_EVERY_S) >= _WARN_EVERY_S:
            self._warned[kind] = now
            log.warning(text, *args)

    def _outlier_free(self, side: str, t: np.ndarray, steps: np.ndarray) -> np.ndarray | None:
        """Mask of the events that are no isolated outliers (see the module docstring), or
        None when all are kept; one vectorized pass over ``steps`` (= ``np.diff(t)``)."""
        limit = self.outlier_ns
        far_next = np.empty(len(t), dtype=bool)
        far_next[-1] = True
        np.greater(np.abs(steps), limit, out=far_next[:-1])
        if not far_next[:-1].any():
            return None  # the usual case: no step that large at all
        far_prev = np.empty(len(t), dtype=bool)
        frontier = self._sides[side].frontier
        far_prev[0] = frontier is None or abs(int(t[0]) - frontier) > limit
        far_prev[1:] = far_next[:-1]
        outlier = far_prev & far_next
        n_out = int(np.count_nonzero(outlier))
        if not n_out:
            return None
        self.counters.dropped_outlier[side] += n_out
        return ~outlier

    def _push_run(
        self, side: str, events: np.ndarray, steps: np.ndarray, windows: list[StereoWindow]
    ) -> None:
        """Ingest a run without backward jumps beyond the tolerance (``steps``: its diffs)."""
        s = self._sides[side]
        tol = self.backwards_tolerance_ns
        if (steps < 0).any():  # jitter within the tolerance: sort once (stable, nearly sorted)
            events = _select(events, np.argsort(events["t"], kind="stable"))
        t0 = int(events["t"][0])
        if s.stale_until is not None:
            waited = self.clock() - s.stale_since
            other = self._sides[SIDES[1 - SIDES.index(side)]]
            joined = (  # far past its old timeline, beside the other camera's new one
                t0 > s.stale_until + SAME_TIMELINE_NS
                and other.frontier is not None
                and abs(t0 - other.frontier) <= SAME_TIMELINE_NS
            )
            if t0 >= s.stale_until - tol and waited <= self.silence_timeout_ns and not joined:
                self.counters.dropped_stale[side] += len(events)  # still before its own loop
                return
            if t0 >= s.stale_until - tol and not joined:
                self._warn("stale", "%s camera never jumped back after the other one did", side)
            s.stale_until = None
        elif s.frontier is not None and t0 < s.frontier - tol:
            self._warn(
                "reset",
                "%s camera time jumped back from %d ns to %d ns: resetting the stereo windower",
                side,
                s.frontier,
                t0,
            )
            self.counters.resets += 1
            self._restart(side, t0)
        other = self._sides[SIDES[1 - SIDES.index(side)]]
        if other.stale_until is not None and t0 >= other.stale_until - self.window_ns:
            other.stale_until = None  # back on the other camera's timeline: a burst, no loop
        self._ingest(side, events)
        windows.extend(self._emit())

    def _restart(self, side: str, new_t: int) -> None:
        """Forget ``side`` and the schedule after its jump back to ``new_t``.

        The other camera, if it is more than a window ahead of ``new_t``, is still on the old
        timeline (a looping bag replays both): forget it too and ignore it until it jumps back
        (or for ``silence_timeout_ns``), so the second camera's loop costs no second reset.
        """
        fresh = _Side()
        fresh.last_arrival = self._sides[side].last_arrival
        self._sides[side] = fresh
        other_name = SIDES[1 - SIDES.index(side)]
        other = self._sides[other_name]
        if other.frontier is not None and other.frontier > new_t + self.window_ns:
            stale = _Side()
            stale.last_arrival = other.last_arrival
            stale.stale_until = other.frontier
            stale.stale_since = self.clock()
            self._sides[other_name] = stale
        self._next_end = None

    def _ingest(self, side: str, events: np.ndarray) -> None:
        s = self._sides[side]
        inside = (events["x"] < self.width) & (events["y"] < self.height)
        n_in = int(np.count_nonzero(inside))
        if n_in < len(events):
            self.counters.dropped_out_of_bounds[side] += len(events) - n_in
            events = _select(events, inside)
        if not len(events):
            return
        t = events["t"]
        t_min, t_max = int(t[0]), int(t[-1])
        s.frontier = t_max if s.frontier is None else max(s.frontier, t_max)
        if s.first_t is None:
            s.first_t = t_min
        s.chunks.append(_Chunk(events, t_min, t_max))
        s.count += len(events)
        self._bound_memory(side)

    def _bound_memory(self, side: str) -> None:
        s = self._sides[side]
        excess = s.count - self.max_buffered_events
        while excess > 0:
            chunk, _, t_max = s.chunks[0]
            k = min(excess, len(chunk))
            lost = t_max if k == len(chunk) else int(chunk["t"][k - 1])
            s.lost_until = lost if s.lost_until is None else max(s.lost_until, lost)
            if k == len(chunk):
                s.chunks.popleft()
            else:
                rest = chunk[k:]
                s.chunks[0] = _Chunk(rest, int(rest["t"][0]), t_max)
            s.count -= k
            excess -= k
            self.counters.dropped_memory[side] += k

    def _pending_end(self) -> int | None:
        left, right = self._sides["left"], self._sides["right"]
        if self.schedule == "trigger":
            return self._triggers[0] if self._triggers else None
        if self._next_end is None:
            if left.first_t is None or right.first_t is None:
                return None
            start = max(left.first_t, right.first_t) + self.window_ns
            self._next_end = -(-start // self.period_ns) * self.period_ns
        return self._next_end

    def _advance(self) -> None:
        if self.schedule == "trigger":
            self._triggers.pop(0)
        else:
            assert self._next_end is not None
            self._next_end += self.period_ns

    def _emit(self) -> list[StereoWindow]:
        left, right = self._sides["left"], self._sides["right"]
        out: list[StereoWindow] = []
        while left.frontier is not None and right.frontier is not None:
            end = self._pending_end()
            if end is None:
                break
            if self.schedule == "rate":
                end = self._skip_empty_grid(end)
            if min(left.frontier, right.frontier) < end:
                break
            start = end - self.window_ns
            lost = any(s.lost_until is not None and s.lost_until >= start for s in (left, right))
            hist_l = self._histogram(left, start, end)
            hist_r = self._histogram(right, start, end)
            self._advance()
            empty = self.schedule == "rate" and not hist_l.any() and not hist_r.any()
            if lost or empty:
                self.counters.windows_skipped += 1
            else:
                self.counters.windows_emitted += 1
                out.append(StereoWindow(end, self.window_ns, hist_l, hist_r))
            self._evict()
        return out

    def _skip_empty_grid(self, end: int) -> int:
        """Jump the rate grid to the first window holding a buffered event (after a pause or
        a jump forward): one step, whatever the time crossed."""
        start = end - self.window_ns
        nxt = None
        for s in self._sides.values():
            for chunk, t_min, t_max in s.chunks:
                if t_max < start:
                    continue
                first = (
                    t_min if t_min >= start else int(chunk["t"][np.searchsorted(chunk["t"], start)])
                )
                nxt = first if nxt is None else min(nxt, first)
        if nxt is None or nxt < end:
            return end
        first_end = (nxt // self.period_ns + 1) * self.period_ns
        self.counters.windows_skipped += (first_end - end) // self.period_ns
        self._next_end = first_end
        return first_end

    def _histogram(self, s: _Side, start: int, end: int) -> np.ndarray:
        # numpy: one bincount over the window's events, not one full-sensor pass per buffered
        # chunk (a 50 ms window of 1 ms messages would pay ~100 sensor-sized passes). With the
        # compiled scatter each chunk is counted where it lies: concatenating 13-byte records
        # cost more than counting them.
        parts = []
        for chunk, t_min, t_max in s.chunks:
            if start <= t_min and t_max < end:  # wholly inside: no per-event time test
                parts.append(chunk)
            elif t_min < end and t_max >= start:
                i, j = np.searchsorted(chunk["t"], (start, end))
                parts.append(chunk[i:j])
        if not parts:
            return np.zeros((2, self.height, self.width), dtype=np.uint16)
        if kernels.HAVE_NUMBA and len(parts) > 1:
            hist = np.zeros((2, self.height, self.width), dtype=np.uint16)
            for part in parts:
                accumulate_into(hist, part)
            return hist
        events = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return event_histogram(events, self.height, self.width)[0]

    def _evict(self) -> None:
        """Drop chunks that no pending or future window can use."""
        end = self._pending_end()
        frontier = min(s.frontier for s in self._sides.values() if s.frontier is not None)
        keep_from = (frontier if end is None else min(end, frontier)) - self.window_ns
        if self.schedule == "trigger":
            keep_from -= self.late_trigger_ns
        for s in self._sides.values():
            while s.chunks and s.chunks[0].t_max < keep_from:
                s.count -= len(s.chunks.popleft().events)
