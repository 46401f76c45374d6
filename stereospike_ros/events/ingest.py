"""Two cameras' serialized event messages in, finished stereo windows out (no ROS).

This is the depth node's ingest path, kept here so that it is tested with bytes alone: each
message is checked on arrival (a bad one is counted and reported, never kept), EventArray
events wait undecoded in a queue (``EventArrayQueue``), and both queues are decoded, rectified
and pushed into the ``StereoWindower`` only when a window can complete (``due``), at most
every ``max_queue_age_s`` otherwise. The windows are the ones pushing every message at once
would give (tested); the cost is a few large numpy/numba passes per window instead of a dozen
small ones per message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from stereospike_ros.events import kernels
from stereospike_ros.events.batch import EventArrayQueue, parse_event_array_header
from stereospike_ros.events.decode import EventPacketDecoder
from stereospike_ros.events.errors import DecodeError, EventsError
from stereospike_ros.events.rectify import Rectifier
from stereospike_ros.events.windowing import SIDES, StereoWindow, StereoWindower

__all__ = ["DroppedMessageError", "SideCounters", "StereoIngest"]

#: the message types ``accept`` reads (the node's ``event_type`` parameter)
EVENT_TYPES = ("dvs_msgs/EventArray", "event_camera_msgs/EventPacket")


class DroppedMessageError(EventsError):
    """A message that was counted and not used; ``reason``: decode, geometry or uncalibrated."""

    def __init__(self, side: str, reason: str, text: str) -> None:
        super().__init__(text)
        self.side = side
        self.reason = reason


@dataclass
class SideCounters:
    """Per camera, since start; the ``period_*`` fields are for the caller to read and reset."""

    messages: int = 0
    events: int = 0
    decode_errors: int = 0
    geometry_errors: int = 0
    uncalibrated: int = 0
    last_arrival: float | None = None  # caller's clock (``now`` of ``accept``)
    period_messages: int = 0
    period_events: int = 0


class StereoIngest:
    """``accept`` each message of either camera, then ``poll`` for the windows it completed.

    The first accepted message fixes the geometry (and ``frame_id``) and creates the windower
    (``on_start(geometry, frame_id)`` runs then); later messages of another size are dropped.
    With ``rectify``, messages of a camera without a rectifier (``set_rectifier``) are dropped.
    Not thread-safe except ``lock``, which guards ``windower`` for readers in other threads.
    """

    def __init__(
        self,
        event_type: str,
        *,
        window_ns: int = 50_000_000,
        period_ns: int | None = None,
        schedule: str = "rate",
        max_buffered_events: int = 4_000_000,
        silence_timeout_ns: int = 1_000_000_000,
        rectify: bool = False,
        backwards_tolerance_ns: int = 1_000_000,
        flush_events: int = 500_000,
        max_queue_age_s: float = 0.25,
        on_start: Callable[[tuple[int, int], str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        watermarks: bool = False,
        late_trigger_ns: int = 0,
    ) -> None:
        if event_type not in EVENT_TYPES:
            raise EventsError(f"event_type {event_type!r} is not one of {EVENT_TYPES}")
        self.event_type = event_type
        self._raw = event_type == EVENT_TYPES[0]
        self.windower_options = {
            "window_ns": window_ns,
            "period_ns": period_ns,
            "schedule": schedule,
            "max_buffered_events": max_buffered_events,
            "silence_timeout_ns": silence_timeout_ns,
            "backwards_tolerance_ns": backwards_tolerance_ns,
            "late_trigger_ns": late_trigger_ns,
        }
        # Replay only (event_player): a message's header stamp promises that every event of
        # its camera before it was sent, so windows complete at it (StereoWindower.advance).
        self.watermarks = watermarks
        self._watermark: dict[str, int] = {}
        self.rectify = rectify
        self.rectifiers: dict[str, Rectifier | None] = dict.fromkeys(SIDES)
        self.tolerance_ns = backwards_tolerance_ns
        self.flush_events = min(flush_events, max_buffered_events)
        self.max_queue_age_s = max_queue_age_s
        self.on_start = on_start
        self.clock = clock
        self.geometry: tuple[int, int] | None = None
        self.frame_id = ""
        self.windower: StereoWindower | None = None
        self.lock = threading.Lock()
        self.counters = {side: SideCounters() for side in SIDES}
        # EVT3 streams carry state (time high, row) from packet to packet: one per camera.
        self._decoders = {side: EventPacketDecoder() for side in SIDES}
        self._queues = {side: EventArrayQueue() for side in SIDES}
        self._newest_t: dict[str, int] = {}  # last event time of each camera's newest message
        self._queued_since: dict[str, float] = {}  # arrival of each camera's oldest queued one
        self._flush_now = False
        self._triggers: list[int] = []  # before the windower exists

    def set_rectifier(self, side: str, rectifier: Rectifier) -> None:
        self.rectifiers[side] = rectifier

    def add_triggers(self, stamps_ns: Iterable[int]) -> None:
        """Window ends for the trigger schedule (kept until the windower exists)."""
        if self.windower is None:
            self._triggers.extend(int(s) for s in stamps_ns)
        else:
            with self.lock:
                self.windower.add_triggers(stamps_ns)

    def accept(self, side: str, buf: bytes | memoryview, now: float | None = None) -> int | None:
        """Check one message and queue its events; the time of its last event, if any.

        Raises ``DroppedMessageError`` (already counted) for a message it does not use.
        """
        now = self.clock() if now is None else now
        c = self.counters[side]
        c.messages += 1
        c.period_messages += 1
        c.last_arrival = now
        try:
            if self._raw:
                header = parse_event_array_header(buf)
                geometry, frame_id = (header.height, header.width), header.frame_id
                count, first_t, last_t = header.count, header.first_t, header.last_t
                stamp = header.stamp_ns
            else:
                batch = self._decoders[side].decode(buf)
                geometry, frame_id = (int(batch.height), int(batch.width)), batch.frame_id
                events = batch.events
                stamp = int(batch.stamp_ns)
                count = len(events)
                first_t = int(events["t"][0]) if count else None
                last_t = int(events["t"][-1]) if count else None
        except DecodeError as err:
            c.decode_errors += 1
            raise DroppedMessageError(side, "decode", str(err)) from err
        if self.geometry is None:
            self._start(geometry, frame_id)
        elif geometry != self.geometry:
            c.geometry_errors += 1
            raise DroppedMessageError(
                side,
                "geometry",
                f"{geometry[1]}x{geometry[0]} events, but the windows are "
                f"{self.geometry[1]}x{self.geometry[0]}",
            )
        if self.rectify and self.rectifiers[side] is None:
            c.uncalibrated += 1
            raise DroppedMessageError(side, "uncalibrated", f"no {side} calibration yet")
        if self._raw:
            self._queues[side].add(buf, header)
        else:
            self._queues[side].add_decoded(events)
        c.events += count
        c.period_events += count
        if self.watermarks:  # the latest, not the largest: a looping replay starts again
            self._watermark[side] = stamp
            self._queued_since.setdefault(side, now)
        if last_t is None:
            return None
        newest = self._newest_t.get(side)
        if newest is not None and first_t < newest - self.tolerance_ns:
            self._flush_now = True  # a bag looped: let the windower see it at once
        self._newest_t[side] = last_t
        self._queued_since.setdefault(side, now)
        return last_t

    def poll(self) -> list[StereoWindow]:
        """The windows the queued events complete, if it is time to push them."""
        return self.flush() if self.due() else []

    def due(self) -> bool:
        """Whether the queued events can complete a window (or must not wait any longer)."""
        if not self._queued_since:
            return False
        if self._flush_now or self.clock() - min(self._queued_since.values()) > (
            self.max_queue_age_s
        ):
            return True
        if any(q.pending_events > self.flush_events for q in self._queues.values()):
            return True
        with self.lock:
            due = self.windower.due_ns()  # type: ignore[union-attr]
        if due is None:
            return True
        newest = {
            side: max(self._newest_t.get(side, -1), self._watermark.get(side, -1)) for side in SIDES
        }
        return min(newest.values()) >= due

    def flush(self) -> list[StereoWindow]:
        """Decode every queued message in one pass per camera and push it to the windower."""
        self._flush_now = False
        self._queued_since.clear()
        windows: list[StereoWindow] = []
        for side in SIDES:
            events = self._queues[side].drain()
            if not len(events):
                continue
            if self.rectify:  # a fresh array: rectified in place, one compiled loop
                events = kernels.rectify_events(self.rectifiers[side], events, inplace=True)
            with self.lock:
                windows += self.windower.push(side, events)  # type: ignore[union-attr]
        for side, stamp in self._watermark.items():
            with self.lock:
                windows += self.windower.advance(side, stamp)  # type: ignore[union-attr]
        return windows

    def pending_events(self) -> dict[str, int]:
        return {side: q.pending_events for side, q in self._queues.items()}

    def _start(self, geometry: tuple[int, int], frame_id: str) -> None:
        windower = StereoWindower(*geometry, **self.windower_options)  # type: ignore[arg-type]
        if self._triggers:
            windower.add_triggers(self._triggers)
            self._triggers = []
        self.geometry, self.frame_id = geometry, frame_id
        with self.lock:
            self.windower = windower
        if self.on_start is not None:
            self.on_start(geometry, frame_id)
