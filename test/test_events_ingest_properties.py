"""Property tests of the ingest path (hypothesis): arbitrary message sequences never raise,
never cost more than linear work in their events, and leave no state that changes the windows
of good input that follows."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stereospike_ros.events import EVENT_DTYPE, encode_event_array, encode_event_packet
from stereospike_ros.events.ingest import DroppedMessageError, StereoIngest
from stereospike_ros.events.types import SIDES
from stereospike_ros.events.windowing import StereoWindower

H, W = 12, 16
MS = 1_000_000
GOOD_T0 = 10_000_000 * MS  # good input starts at 10,000 s of sensor time ...
GOOD_MS = 400  # ... and lasts this long; garbage times stay 10 s away from it
MARGIN = 10_000 * MS


class Work:
    """Counts the windower's per-window steps (each costs a histogram or a grid jump)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps = 0
        for name in ("_histogram", "_skip_empty_grid"):
            original = getattr(StereoWindower, name)

            def counted(*args, _original=original, **kwargs):
                self.steps += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(StereoWindower, name, counted)


@st.composite
def messages(draw: st.DrawFn, packet: bool) -> list[tuple[str, bytes, int]]:
    """(side, bytes, events) of messages good and bad: random stamps, sizes, jumps, garbage."""
    out = []
    for _ in range(draw(st.integers(0, 12))):
        side = draw(st.sampled_from(SIDES))
        kind = draw(st.sampled_from(["events", "events", "garbage", "size"]))
        if kind == "garbage":
            out.append((side, draw(st.binary(max_size=200)), 0))
            continue
        n = draw(st.integers(0, 300))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        ev = np.zeros(n, dtype=EVENT_DTYPE)
        span = draw(st.sampled_from([MS, 50 * MS, 10**12, 10**15]))
        base = draw(st.sampled_from([0, GOOD_T0 - MARGIN - 10**15, GOOD_T0 + MARGIN + 10**12]))
        base = max(base, 0)
        ev["t"] = base + rng.integers(0, span, n) // 1000 * 1000
        if draw(st.booleans()):
            ev["t"] = np.sort(ev["t"])
        ev["x"], ev["y"] = rng.integers(0, W + 3, n), rng.integers(0, H + 3, n)
        ev["p"] = rng.integers(0, 2, n)
        height, width = (H, W) if kind == "events" else draw(st.sampled_from([(0, 0), (2, 2)]))
        if packet:
            if len(ev):
                ev["t"] = np.sort(ev["t"])  # the EVT3 encoder needs sorted times
            buf = encode_event_packet(ev, height, width, base, "cam", seq=draw(st.integers(0, 9)))
        else:
            buf = encode_event_array(ev, height, width, base, "cam")
        out.append((side, buf, n))
    return out


def good_messages() -> list[tuple[str, bytes]]:
    """GOOD_MS of both cameras in 2 ms EventArrays, interleaved as they would arrive."""
    rng = np.random.default_rng(7)
    out = []
    for k in range(GOOD_MS // 2):
        t0 = GOOD_T0 + k * 2 * MS
        for side in SIDES:
            ev = np.zeros(40, dtype=EVENT_DTYPE)
            ev["t"] = np.sort(rng.integers(t0, t0 + 2 * MS, 40))
            ev["x"], ev["y"] = rng.integers(0, W, 40), rng.integers(0, H, 40)
            ev["p"] = rng.integers(0, 2, 40)
            out.append((side, encode_event_array(ev, H, W, t0 + 2 * MS, "cam")))
    return out


GOOD = good_messages()


def ingest(event_type: str = "dvs_msgs/EventArray") -> StereoIngest:
    return StereoIngest(event_type, outlier_ns=1_000 * MS, max_queue_age_s=0.0)


def feed(ing: StereoIngest, msgs) -> list:
    windows = []
    for side, buf, *_ in msgs:
        with contextlib.suppress(DroppedMessageError):  # counted drops are fine
            ing.accept(side, buf)
        windows += ing.poll()
    return windows + ing.flush()


FRESH = feed(ingest(), GOOD)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(bad=messages(packet=False))
def test_any_event_arrays_then_good_input_give_the_fresh_windows(bad, monkeypatch):
    work = Work(monkeypatch)
    dirty = ingest()
    feed(dirty, bad)  # never raises anything but counted drops
    n_events = sum(n for *_, n in bad)
    assert work.steps <= 2 * (n_events + len(bad)) + 4, (work.steps, n_events)
    after = feed(dirty, GOOD)
    # the windows of the good input, once both cameras resynchronised, are the fresh ones
    assert len(FRESH) >= 6
    tail = {w.t_end_ns: w for w in after}
    for window in FRESH[-5:]:
        got = tail.get(window.t_end_ns)
        assert got is not None, [w.t_end_ns for w in after][-8:]
        np.testing.assert_array_equal(got.left, window.left)
        np.testing.assert_array_equal(got.right, window.right)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(bad=messages(packet=True), words=st.binary(max_size=400))
def test_any_event_packets_never_raise_and_cost_linear_work(bad, words, monkeypatch):
    work = Work(monkeypatch)
    ing = ingest("event_camera_msgs/EventPacket")
    head = encode_event_packet(np.zeros(0, EVENT_DTYPE), H, W, 0, "cam", time_base=0)
    payload = words[: len(words) // 2 * 2]  # random EVT3 words (undefined types: dropped)
    garbage = head[:-4] + len(payload).to_bytes(4, "little") + payload
    msgs = [*bad, ("left", garbage, len(payload)), ("right", garbage, len(payload))]
    feed(ing, msgs)
    # an EVT3 word emits at most 12 events (a vector word)
    n_events = sum(n for *_, n in bad) + 12 * len(payload)
    assert work.steps <= 2 * (n_events + len(msgs)) + 4, (work.steps, n_events)
