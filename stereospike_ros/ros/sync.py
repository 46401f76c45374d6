"""Small thread-safe pieces the nodes share: a newest-only mailbox, stamp pairing, clock offset.

Plain Python (no rclpy), so their behaviour is pinned by unit tests without a ROS graph.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["ClockOffset", "LatestSlot", "StampMatcher", "Timings"]

T = TypeVar("T")
U = TypeVar("U")


class LatestSlot(Generic[T]):
    """A one-item mailbox: ``put`` replaces an item not yet taken and counts it as skipped.

    The inference thread takes the newest window only, so a node slower than real time falls
    behind by at most one window instead of queueing without bound.
    """

    def __init__(self) -> None:
        self._item: T | None = None
        self._cond = threading.Condition()
        self._closed = False
        self.put_count = 0
        self.skipped = 0

    def put(self, item: T) -> bool:
        """Store ``item``; True when it replaced one that was never taken (a skip)."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self.put_count += 1
            self.skipped += int(replaced)
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item (removing it), or None after ``timeout`` s or once closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake every waiting ``take`` for good (shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


@dataclass
class _Pending(Generic[U]):
    stamp_ns: int
    item: U


class StampMatcher(Generic[T, U]):
    """Pairs two streams by header stamp, exactly or within ``tolerance_ns``.

    Each side keeps at most ``max_pending`` unpaired items; older unpaired items are dropped
    and counted once the other stream has moved past them by more than the tolerance.
    """

    def __init__(self, tolerance_ns: int = 0, max_pending: int = 200) -> None:
        if tolerance_ns < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance_ns} ns")
        self.tolerance_ns = int(tolerance_ns)
        self.max_pending = int(max_pending)
        self._a: deque[_Pending[T]] = deque()
        self._b: deque[_Pending[U]] = deque()
        self.unmatched_a = 0
        self.unmatched_b = 0
        self._lock = threading.Lock()

    def add_a(self, stamp_ns: int, item: T) -> list[tuple[int, T, U]]:
        """Add to stream A (e.g. predictions); returns the pairs completed (stamp_a, a, b)."""
        with self._lock:
            return self._add(stamp_ns, item, self._a, self._b, first=True)

    def add_b(self, stamp_ns: int, item: U) -> list[tuple[int, T, U]]:
        """Add to stream B (e.g. ground truth); returns the pairs completed (stamp_a, a, b)."""
        with self._lock:
            return self._add(stamp_ns, item, self._b, self._a, first=False)

    def _add(
        self, stamp_ns: int, item: object, mine: deque, other: deque, first: bool
    ) -> list[tuple[int, object, object]]:
        best = None
        for i, pending in enumerate(other):
            gap = abs(pending.stamp_ns - stamp_ns)
            if gap <= self.tolerance_ns and (best is None or gap < best[1]):
                best = (i, gap)
        if best is not None:
            partner = other[best[0]]
            del other[best[0]]
            self._expire(other, stamp_ns, first=not first)
            if first:
                return [(stamp_ns, item, partner.item)]
            return [(partner.stamp_ns, partner.item, item)]
        mine.append(_Pending(stamp_ns, item))
        self._expire(other, stamp_ns, first=not first)
        while len(mine) > self.max_pending:
            mine.popleft()
            self._count(first)
        return []

    def _expire(self, queue: deque, now_ns: int, first: bool) -> None:
        # Items of the other stream older than the newest stamp here minus the tolerance can
        # no longer be paired (both streams arrive in stamp order).
        while queue and queue[0].stamp_ns < now_ns - self.tolerance_ns:
            queue.popleft()
            self._count(first)

    def _count(self, first: bool) -> None:
        if first:
            self.unmatched_a += 1
        else:
            self.unmatched_b += 1

    @property
    def pending(self) -> tuple[int, int]:
        return len(self._a), len(self._b)


class ClockOffset:
    """Estimates wall clock minus sensor clock from message arrivals, for latency figures.

    When the sensor clock is the wall clock (a live driver stamping with ROS time on this
    host), the offset is zero and latency is wall(publication) - window end. Otherwise (a
    replay of old data, a device clock), the offset is the smallest (arrival wall time - newest
    event time) seen over the last ``horizon_s`` seconds: the fastest message is taken to have
    had no transport delay, so latency then excludes that floor. ``auto`` picks zero when the
    first offsets are within ``same_clock_s`` of zero.
    """

    def __init__(
        self,
        horizon_s: float = 2.0,
        same_clock_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.horizon_s = horizon_s
        self.same_clock_s = same_clock_s
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()
        self.same_clock: bool | None = None

    def observe(self, newest_event_ns: int, arrival_wall_s: float | None = None) -> None:
        wall = self._clock() if arrival_wall_s is None else arrival_wall_s
        offset = wall - newest_event_ns * 1e-9
        with self._lock:
            if self.same_clock is None:
                self.same_clock = abs(offset) < self.same_clock_s
            while self._samples and self._samples[0][0] < wall - self.horizon_s:
                self._samples.popleft()
            # Keep a monotone deque of minima: newer, smaller offsets evict larger older ones.
            while self._samples and self._samples[-1][1] >= offset:
                self._samples.pop()
            self._samples.append((wall, offset))

    def offset_s(self) -> float | None:
        """Seconds to add to sensor time to get wall time (None before the first message)."""
        with self._lock:
            if self.same_clock is None:
                return None
            if self.same_clock:
                return 0.0
            return self._samples[0][1] if self._samples else None

    def latency_s(self, sensor_ns: int, wall_s: float | None = None) -> float | None:
        """Wall time ``wall_s`` (default now) minus sensor time ``sensor_ns`` on the wall clock."""
        offset = self.offset_s()
        if offset is None:
            return None
        wall = self._clock() if wall_s is None else wall_s
        return wall - (sensor_ns * 1e-9 + offset)


@dataclass
class Timings:
    """Per-period samples of named durations (seconds), summarised and cleared by the reporter."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.samples.setdefault(name, []).append(seconds)

    def drain(self) -> dict[str, dict[str, float]]:
        """{name: {mean_ms, max_ms, n}} since the last drain."""
        with self._lock:
            samples, self.samples = self.samples, {}
        return {
            name: {
                "mean_ms": 1e3 * sum(values) / len(values),
                "max_ms": 1e3 * max(values),
                "n": float(len(values)),
            }
            for name, values in samples.items()
            if values
        }
