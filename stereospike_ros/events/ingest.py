"""Two cameras' serialized event messages in, finished stereo windows out (no ROS).

This is the depth node's ingest path, kept here so that it is tested with bytes alone: each
message is checked on arrival (a bad one is counted and reported, never kept), EventArray
events wait undecoded in a queue (``EventArrayQueue``), and both queues are decoded, rectified
and pushed into the ``StereoWindower`` only when a window can complete (``due``), at most
every ``max_queue_age_s`` otherwise. The windows are the ones pushing every message at once
would give (tested); the cost is a few large numpy/numba passes per window instead of a dozen
small ones per message.

Nothing one message says is taken for good. The geometry comes from the caller (parameters,
calibration, the weights: ``geometry``/``set_geometry``); without one, the first message with
a non-zero size sets it, and ``GEOMETRY_SWITCH_AFTER`` consecutive messages of another
non-zero size replace it (a tiny or empty first message cannot lock the node). Work per
message is linear in its bytes; jumps and outliers are the windower's counted policies
(``outlier_ns``). Losses are counted per camera and reason (``SideCounters``): EventPacket
``seq`` gaps, decode errors, geometry mismatches, time discontinuities the decoders refused.
``take_clock_skew_ns`` compares the cameras' sensor clocks at arrival, for the caller's check.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from stereospike_ros.events import kernels
from stereospike_ros.events.batch import EventArrayQueue
from stereospike_ros.events.cdr import read_event_array_header
from stereospike_ros.events.decode import EventPacketDecoder
from stereospike_ros.events.errors import DecodeError, EventsError
from stereospike_ros.events.rectify import Rectifier
from stereospike_ros.events.types import SIDES
from stereospike_ros.events.windowing import StereoWindow, StereoWindower

__all__ = ["DroppedMessageError", "SideCounters", "StereoIngest"]

#: the message types ``accept`` reads (the node's ``event_type`` parameter)
EVENT_TYPES = ("dvs_msgs/EventArray", "event_camera_msgs/EventPacket")
#: consecutive messages of one other size that replace a geometry learnt from the stream
GEOMETRY_SWITCH_AFTER = 20
#: a message spanning longer (or going back) is no guide to when windows are due
LOOP_MESSAGE_SPAN_NS = 1_000_000_000
#: the cameras' clocks are compared only on messages arriving at most this far apart (s)
SKEW_PAIR_S = 0.05


class DroppedMessageError(EventsError):
    """A message that was counted and not used; ``reason``: decode, geometry or uncalibrated."""

    def __init__(self, side: str, reason: str, text: str) -> None:
        super().__init__(text)
        self.side = side
        self.reason = reason


@dataclass
class SideCounters:
    """Per camera, since start; the ``period_*`` fields are for the caller to read and reset.

    ``messages``/``events``: received (every message, and the events of those accepted);
    ``*_errors``, ``uncalibrated``: messages dropped for that reason (``dropped_events``: their
    events, where the header told); ``seq_lost``: messages missing from EventPacket ``seq``;
    ``seq_restarts``: ``seq`` going back (a driver restart or a loop); ``transport_lost``:
    what the transport reported lost (set by the caller); ``time_discontinuities``: time steps
    the EVT3/libcaer decoders refused as rollovers; ``events_without_time``: EVT3 events
    dropped because no TIME_HIGH had come yet (a stream that starts mid-stream, or restarts).
    """

    messages: int = 0
    events: int = 0
    decode_errors: int = 0
    geometry_errors: int = 0
    uncalibrated: int = 0
    dropped_events: int = 0
    seq_lost: int = 0
    seq_restarts: int = 0
    transport_lost: int = 0
    time_discontinuities: int = 0
    events_without_time: int = 0
    bytes: int = 0
    largest_message: int = 0  # bytes
    history_full: int = 0  # times the caller found its receive queue full (set by the caller)
    last_arrival: float | None = None  # caller's clock (``now`` of ``accept``)
    period_messages: int = 0
    period_events: int = 0
    period_geometry_errors: int = 0


class StereoIngest:
    """``accept`` each message of either camera, then ``poll`` for the windows it completed.

    The geometry (``geometry`` or ``set_geometry``; else learnt from the stream, see the module
    docstring) creates the windower; ``on_start(geometry, frame_id)`` runs when it does (again
    after a learnt geometry changed); messages of another size are dropped and counted.
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
        outlier_ns: int | None = None,
        geometry: tuple[int, int] | None = None,
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
            "outlier_ns": outlier_ns,
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
        self.geometry_fixed = geometry is not None  # by the caller: never learnt from messages
        self._candidate: tuple[int, int] | None = None  # another size seen in a row ...
        self._candidate_count = 0  # ... this many times
        self._arrival_offset: dict[str, float] = {}  # newest event time - arrival, seconds
        self._arrival: dict[str, float] = {}  # arrival of each camera's newest timed message
        self._skew_ns: int | None = None  # smallest-magnitude sample since the last take
        self.geometry_changes = 0
        self.last_geometry_error = ""
        if geometry is not None:
            self._start(geometry, "")

    def set_geometry(self, geometry: tuple[int, int]) -> bool:
        """Fix the geometry from a trusted source (calibration); True when it changed."""
        self.geometry_fixed = True
        if geometry == self.geometry:
            return False
        self._restart_geometry(geometry, self.frame_id)
        return True

    def take_clock_skew_ns(self) -> int | None:
        """Left minus right sensor clock since the last call (None: no sample), then forget.

        Each sample differences (newest event time - arrival) of two messages, one per
        camera, that arrived within ``SKEW_PAIR_S`` of each other, so transport delays and a
        replay's speed cancel up to that much. The sample of smallest magnitude is kept: a real
        skew shows in every sample, a burst of one camera's backlog not.
        """
        skew, self._skew_ns = self._skew_ns, None
        return skew

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
        """Check one message and queue its events; the time of its last event, if any (None
        also when its times are implausible: spanning over a second, or going back).

        Raises ``DroppedMessageError`` (already counted) for a message it does not use.
        """
        now = self.clock() if now is None else now
        c = self.counters[side]
        c.messages += 1
        c.period_messages += 1
        c.last_arrival = now
        c.bytes += len(buf)
        c.largest_message = max(c.largest_message, len(buf))
        try:
            if self._raw:
                header = read_event_array_header(buf)
                geometry, frame_id = (header.height, header.width), header.frame_id
                count, first_t, last_t = header.count, header.first_t, header.last_t
                stamp = header.stamp_ns
            else:
                decoder = self._decoders[side]
                seq_before, discont_before = decoder.last_seq, decoder.discontinuities
                untimed_before = decoder.evt3_state.events_without_time
                batch = decoder.decode(buf)
                c.time_discontinuities += decoder.discontinuities - discont_before
                c.events_without_time += decoder.evt3_state.events_without_time - untimed_before
                self._count_seq(c, seq_before, decoder.last_seq)
                geometry, frame_id = (int(batch.height), int(batch.width)), batch.frame_id
                events = batch.events
                stamp = int(batch.stamp_ns)
                count = len(events)
                first_t = int(events["t"][0]) if count else None
                last_t = int(events["t"][-1]) if count else None
        except DecodeError as err:
            c.decode_errors += 1
            raise DroppedMessageError(side, "decode", str(err)) from err
        if geometry != self.geometry:
            self._check_geometry(side, c, geometry, frame_id, count)
        elif self._candidate is not None:
            self._candidate, self._candidate_count = None, 0  # "in a row" was broken
        if not self.frame_id and side == "left":
            self.frame_id = frame_id
        if self.rectify and self.rectifiers[side] is None:
            c.uncalibrated += 1
            c.dropped_events += count
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
        self._queued_since.setdefault(side, now)
        if not 0 <= last_t - first_t <= LOOP_MESSAGE_SPAN_NS:
            return None  # garbage times say nothing of when windows are due, nor of the
            # camera's clock: the windower sorts them out at the next regular flush
        self._sample_skew(side, last_t, now)
        newest = self._newest_t.get(side)
        if newest is not None and first_t < newest - self.tolerance_ns:
            self._flush_now = True  # a bag looped: let the windower see it at once
        self._newest_t[side] = last_t
        return last_t

    def _sample_skew(self, side: str, last_t: int, now: float) -> None:
        self._arrival_offset[side] = last_t * 1e-9 - now
        self._arrival[side] = now
        other = SIDES[1 - SIDES.index(side)]
        if other in self._arrival and abs(now - self._arrival[other]) <= SKEW_PAIR_S:
            skew = round((self._arrival_offset["left"] - self._arrival_offset["right"]) * 1e9)
            if self._skew_ns is None or abs(skew) < abs(self._skew_ns):
                self._skew_ns = skew

    @staticmethod
    def _count_seq(c: SideCounters, before: int | None, seq: int | None) -> None:
        """EventPacket ``seq``: a gap is messages lost; a step back, a restart (0s: unused)."""
        if before is None or seq is None or (seq == 0 and before == 0):
            return
        if seq > before + 1:
            c.seq_lost += seq - before - 1
        elif seq <= before:
            c.seq_restarts += 1

    def _check_geometry(
        self, side: str, c: SideCounters, geometry: tuple[int, int], frame_id: str, count: int
    ) -> None:
        """Adopt, or learn a new, geometry; or count and raise the drop (see the class doc)."""
        usable = geometry[0] > 0 and geometry[1] > 0
        if usable and self.geometry is None:
            self._start(geometry, frame_id)
            return
        if usable and not self.geometry_fixed:
            if geometry == self._candidate:
                self._candidate_count += 1
            else:
                self._candidate, self._candidate_count = geometry, 1
            if self._candidate_count >= GEOMETRY_SWITCH_AFTER:
                self._restart_geometry(geometry, frame_id)
                return
        c.geometry_errors += 1
        c.period_geometry_errors += 1
        c.dropped_events += count
        expected = (
            "none yet" if self.geometry is None else (f"{self.geometry[1]}x{self.geometry[0]}")
        )
        self.last_geometry_error = (
            f"{geometry[1]}x{geometry[0]} events, but the windows are {expected}"
        )
        raise DroppedMessageError(side, "geometry", self.last_geometry_error)

    def _restart_geometry(self, geometry: tuple[int, int], frame_id: str) -> None:
        """Drop what is queued and start a windower of the new size (triggers carried)."""
        if self.windower is not None:
            self.geometry_changes += 1
            self._triggers = self.windower.pending_triggers()
        for q in self._queues.values():
            q.drain()
        self._queued_since.clear()
        self._newest_t.clear()
        self._candidate, self._candidate_count = None, 0
        self._start(geometry, frame_id or self.frame_id)

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
        if geometry[0] <= 0 or geometry[1] <= 0:
            raise EventsError(f"sensor size {geometry[1]}x{geometry[0]} is empty")
        windower = StereoWindower(*geometry, **self.windower_options)  # type: ignore[arg-type]
        if self._triggers:
            windower.add_triggers(self._triggers)
            self._triggers = []
        self.geometry, self.frame_id = geometry, frame_id
        with self.lock:
            self.windower = windower
        if self.on_start is not None:
            self.on_start(geometry, frame_id)
