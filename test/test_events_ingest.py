"""The depth node's ingest path, bytes in, windows out: the same windows as eager windowing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from stereospike_ros.events import (
    EVENT_DTYPE,
    Rectifier,
    StereoWindower,
    encode_event_array,
    encode_event_packet,
    encode_evt3,
)
from stereospike_ros.events.cdr import write_event_packet_header
from stereospike_ros.events.ingest import DroppedMessageError, StereoIngest

H, W = 20, 30
MS = 1_000_000


def _stream(rng: np.random.Generator, n: int, t0: int, t1: int) -> np.ndarray:
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["t"] = np.sort(rng.integers(t0, t1, n)) // 1000 * 1000  # whole us: EVT3 keeps them
    events["x"], events["y"] = rng.integers(0, W, n), rng.integers(0, H, n)
    events["p"] = rng.integers(0, 2, n)
    return events


def _messages(rng, streams, message_ms, encode):
    """(side, bytes, events) for every message of both cameras, in arrival (time) order."""
    out = []
    for side, events in streams.items():
        edges = np.arange(0, int(events["t"][-1]) + message_ms * MS, message_ms * MS)
        for lo, hi in itertools.pairwise(edges):
            chunk = events[(events["t"] >= lo) & (events["t"] < hi)]
            out.append((int(hi) + int(rng.integers(0, MS)), side, encode(chunk, hi, side), chunk))
    out.sort(key=lambda m: m[0])
    return [(side, buf, chunk) for _, side, buf, chunk in out]


def _eager(messages, schedule="rate", triggers=()):
    windower = StereoWindower(H, W, schedule=schedule)
    windower.add_triggers(triggers)
    windows = []
    for side, _, chunk in messages:
        windows += windower.push(side, chunk)
    return windows


def _assert_same(got, expected):
    assert [w.t_end_ns for w in got] == [w.t_end_ns for w in expected]
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.left, b.left)
        np.testing.assert_array_equal(a.right, b.right)


@pytest.mark.parametrize("message_ms", [1, 7])
@pytest.mark.parametrize("big_endian", [False, True])
def test_event_arrays_give_the_windows_of_eager_windowing(message_ms, big_endian):
    rng = np.random.default_rng(message_ms)
    streams = {
        "left": _stream(rng, 30_000, 0, 600 * MS),
        "right": _stream(rng, 25_000, 0, 600 * MS),
    }

    def encode(chunk, stamp, side):
        return encode_event_array(chunk, H, W, stamp, f"cam_{side}", big_endian)

    messages = _messages(rng, streams, message_ms, encode)
    started = []
    ingest = StereoIngest("dvs_msgs/EventArray", on_start=lambda g, f: started.append((g, f)))
    windows = []
    for side, buf, _ in messages:
        ingest.accept(side, buf, now=0.0)
        windows += ingest.poll()
    assert started == [((H, W), f"cam_{messages[0][0]}")]
    _assert_same(windows, _eager(messages))
    assert len(windows) == 10  # ends 100 .. 550 ms
    pushes = ingest.windower.counters.events_in["left"]
    assert pushes == len(streams["left"]) - ingest.pending_events()["left"]
    assert ingest.counters["left"].messages == sum(1 for m in messages if m[0] == "left")


def test_evt3_packets_give_the_windows_of_eager_windowing():
    rng = np.random.default_rng(3)
    streams = {
        "left": _stream(rng, 20_000, 0, 400 * MS),
        "right": _stream(rng, 20_000, 0, 400 * MS),
    }

    def encode(chunk, stamp, side):
        return encode_event_packet(chunk, H, W, stamp, side, "evt3", time_base=0)

    messages = _messages(rng, streams, 2, encode)
    ingest = StereoIngest("event_camera_msgs/EventPacket")
    windows = []
    for side, buf, _ in messages:
        ingest.accept(side, buf, now=0.0)
        windows += ingest.poll()
    _assert_same(windows, _eager(messages))
    assert len(windows) == 6


def test_trigger_stamps_given_before_the_first_message_end_the_windows():
    rng = np.random.default_rng(4)
    streams = {
        "left": _stream(rng, 10_000, 0, 300 * MS),
        "right": _stream(rng, 10_000, 0, 300 * MS),
    }
    messages = _messages(rng, streams, 1, lambda c, t, s: encode_event_array(c, H, W, t, s))
    triggers = [60 * MS, 61 * MS, 200 * MS + 17]
    ingest = StereoIngest("dvs_msgs/EventArray", schedule="trigger")
    ingest.add_triggers(triggers[:2])
    windows = []
    for i, (side, buf, _) in enumerate(messages):
        ingest.accept(side, buf, now=0.0)
        if i == 10:
            ingest.add_triggers(triggers[2:])
        windows += ingest.poll()
    _assert_same(windows, _eager(messages, "trigger", triggers))
    assert [w.t_end_ns for w in windows] == triggers


def test_bad_messages_are_counted_and_dropped_and_good_ones_still_go_through():
    rng = np.random.default_rng(5)
    ingest = StereoIngest("dvs_msgs/EventArray", rectify=True)
    good = encode_event_array(_stream(rng, 50, 0, MS), H, W, MS, "cam")
    with pytest.raises(DroppedMessageError, match="truncated") as err:
        ingest.accept("left", good[:-7], now=0.0)
    assert (err.value.side, err.value.reason) == ("left", "decode")
    with pytest.raises(DroppedMessageError, match="no left calibration") as err:
        ingest.accept("left", good, now=0.0)
    assert err.value.reason == "uncalibrated"
    other = encode_event_array(_stream(rng, 5, 0, MS), H + 1, W, MS, "cam")
    with pytest.raises(DroppedMessageError, match=f"{W}x{H + 1} events, but the windows are"):
        ingest.accept("left", other, now=0.0)
    identity = Rectifier.identity(H, W)
    ingest.set_rectifier("left", identity)
    assert ingest.accept("left", good, now=0.0) is not None
    c = ingest.counters["left"]
    assert (c.messages, c.decode_errors, c.uncalibrated, c.geometry_errors) == (4, 1, 1, 1)
    assert c.events == 50 and ingest.pending_events()["left"] == 50


def test_a_silent_camera_does_not_hold_the_other_ones_events_back():
    rng = np.random.default_rng(6)
    now = [0.0]
    ingest = StereoIngest("dvs_msgs/EventArray", max_queue_age_s=0.25, clock=lambda: now[0])
    right = encode_event_array(_stream(rng, 10, 0, MS), H, W, MS, "cam")
    ingest.accept("right", right)
    for k in range(1, 40):
        now[0] = k * 0.01
        ingest.accept(
            "left", encode_event_array(_stream(rng, 10, k * MS, (k + 1) * MS), H, W, 0, "c")
        )
        ingest.poll()
    # the rate schedule cannot start without right's later events, but left was pushed anyway
    # (at least every 0.25 s), so the windower's view of it stays current
    assert ingest.windower.counters.events_in["left"] >= 240
    assert ingest.pending_events()["left"] < 150


def test_a_looping_recording_resets_the_windower_once():
    rng = np.random.default_rng(7)
    streams = {"left": _stream(rng, 8000, 0, 300 * MS), "right": _stream(rng, 8000, 0, 300 * MS)}
    messages = _messages(rng, streams, 3, lambda c, t, s: encode_event_array(c, H, W, t, s))
    ingest = StereoIngest("dvs_msgs/EventArray")
    first, second = [], []
    for side, buf, _ in messages:
        ingest.accept(side, buf, now=0.0)
        first += ingest.poll()
    for side, buf, _ in messages:  # the bag plays again from the start
        ingest.accept(side, buf, now=0.0)
        second += ingest.poll()
    assert ingest.windower.counters.resets == 1
    assert len(first) == 4  # ends 100 .. 250 ms
    _assert_same(second[-3:], first[-3:])


def _timed(t0: int, n: int = 50, height: int = H, width: int = W) -> np.ndarray:
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["t"] = t0 + np.arange(n) * 10_000
    ev["x"], ev["y"] = np.arange(n) % width, np.arange(n) % height
    return ev


def test_a_tiny_first_message_is_replaced_by_the_size_the_stream_keeps_sending():
    from stereospike_ros.events.ingest import GEOMETRY_SWITCH_AFTER

    ing = StereoIngest("dvs_msgs/EventArray")
    with pytest.raises(DroppedMessageError, match="0x0 events, but the windows are none yet"):
        ing.accept("left", encode_event_array(_timed(0, 0), 0, 0, 0, "cam"))
    ing.accept("left", encode_event_array(_timed(0, 3, 2, 2), 2, 2, 0, "cam"))
    assert ing.geometry == (2, 2)
    for k in range(GEOMETRY_SWITCH_AFTER):
        try:
            ing.accept("right", encode_event_array(_timed(k * MS), H, W, 0, "cam"))
        except DroppedMessageError as err:
            assert err.reason == "geometry"
    assert ing.geometry == (H, W) and ing.geometry_changes == 1
    assert ing.counters["right"].geometry_errors == GEOMETRY_SWITCH_AFTER - 1


def test_a_geometry_from_the_caller_is_never_replaced_by_messages():
    ing = StereoIngest("dvs_msgs/EventArray", geometry=(H, W))
    for _ in range(50):
        with pytest.raises(DroppedMessageError):
            ing.accept("left", encode_event_array(_timed(0, 3, 2, 2), 2, 2, 0, "cam"))
    assert ing.geometry == (H, W) and ing.counters["left"].dropped_events == 150


def test_event_packet_seq_gaps_and_restarts_are_counted():
    ing = StereoIngest("event_camera_msgs/EventPacket", geometry=(H, W))
    for seq in (1, 2, 5, 6, 1):
        ing.accept("left", encode_event_packet(_timed(seq * 10 * MS), H, W, 0, "cam", seq=seq))
    assert ing.counters["left"].seq_lost == 2 and ing.counters["left"].seq_restarts == 1


def test_a_looping_evt3_recording_counts_its_untimed_events_on_every_pass():
    # Recorded mid-stream: the first packet opens between TIME_HIGH words. Each pass of the
    # loop (seq back to 1) must decode the same events and count the same untimed ones.
    events = _stream(np.random.default_rng(4), 400, 0, 200 * MS)
    payload = encode_evt3(events, 0)[6:]
    cuts = [*range(0, len(payload), 200), len(payload)]
    bufs = [
        write_event_packet_header(H, W, 0, "cam", seq, 0, "evt3", False, b - a) + payload[a:b]
        for seq, (a, b) in enumerate(itertools.pairwise(cuts), start=1)
    ]
    ing = StereoIngest("event_camera_msgs/EventPacket", geometry=(H, W))
    c = ing.counters["left"]
    for buf in bufs:
        ing.accept("left", buf)
    first = (c.events, c.events_without_time)
    assert first[1] > 0 and first[0] + first[1] <= len(events)
    for buf in bufs:
        ing.accept("left", buf)
    assert (c.events, c.events_without_time) == (2 * first[0], 2 * first[1])
    assert c.seq_restarts == 1 and c.time_discontinuities == 0


def test_clock_skew_is_the_smallest_difference_of_messages_arriving_together():
    ing = StereoIngest("dvs_msgs/EventArray", geometry=(H, W))
    assert ing.take_clock_skew_ns() is None
    ing.accept("left", encode_event_array(_timed(10_000 * MS), H, W, 0, "cam"), now=5.0)
    ing.accept("right", encode_event_array(_timed(12_000 * MS), H, W, 0, "cam"), now=5.01)
    assert ing.take_clock_skew_ns() == pytest.approx(-2_000 * MS + 10 * MS, abs=1e3)
    assert ing.take_clock_skew_ns() is None  # taken
    ing.accept("left", encode_event_array(_timed(20_000 * MS), H, W, 0, "cam"), now=9.0)
    assert ing.take_clock_skew_ns() is None  # the right camera's last message is too old


def test_outliers_are_dropped_without_walking_the_time_they_span():
    windower = StereoWindower(H, W, outlier_ns=1_000 * MS)
    windows = []
    for k in range(20):
        for side in ("left", "right"):
            ev = _timed(10**15 + k * 5 * MS, 50)
            ev["t"][25] = 0 if k % 2 else 2 * 10**15  # far in the past, far in the future
            windows += windower.push(side, ev)
    assert len(windows) >= 1
    assert windower.counters.dropped_outlier == {"left": 20, "right": 20}
    assert windower.counters.resets == 0


def test_a_batch_of_random_times_keeps_its_last_run_only():
    windower = StereoWindower(H, W)
    ev = _timed(0, 100_000)
    ev["t"] = np.random.default_rng(0).integers(0, 10**15, len(ev))
    windower.push("left", ev)
    dropped = windower.counters.dropped_discontinuity["left"]
    assert dropped > 99_900 and windower.counters.resets <= 1
