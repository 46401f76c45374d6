"""Stereo windowing: batching and interleaving invariance, triggers, loops, silence, floods."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from stereospike_ros.events import EVENT_DTYPE, EventsError, StereoWindower, event_histogram
from stereospike_ros.events.windowing import NEVER

H, W = 6, 8
MS = 1_000_000


def stream(rng: np.random.Generator, n: int, t0: int, t1: int) -> np.ndarray:
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["t"] = np.sort(rng.integers(t0, t1, n))
    events["x"], events["y"] = rng.integers(0, W, n), rng.integers(0, H, n)
    events["p"] = rng.integers(0, 2, n)
    return events


def split_random(rng: np.random.Generator, events: np.ndarray, parts: int) -> list[np.ndarray]:
    cuts = np.sort(rng.integers(0, len(events), parts))
    return np.split(events, cuts)


def run(windower: StereoWindower, pushes: list[tuple[str, np.ndarray]]) -> list:
    out = []
    for side, events in pushes:
        out.extend(windower.push(side, events))
    return out


class FakeClock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def assert_windows_match_direct_histograms(windows, left, right) -> None:
    for win in windows:
        for events, hist in ((left, win.left), (right, win.right)):
            expected, _ = event_histogram(events, H, W, win.t_start_ns, win.t_end_ns)
            np.testing.assert_array_equal(hist, expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_any_batching_and_interleaving_gives_the_same_windows(seed):
    rng = np.random.default_rng(seed)
    left = stream(rng, 30_000, 3 * MS, 1000 * MS)
    right = stream(rng, 20_000, 7 * MS, 1000 * MS)
    one = run(StereoWindower(H, W), [("left", left), ("right", right)])
    pushes = [("left", b) for b in split_random(rng, left, 300)]
    pushes += [("right", b) for b in split_random(rng, right, 200)]
    order = rng.permutation(len(pushes))
    # each camera keeps its own order; the interleaving between cameras is random
    by_side = {
        "left": iter(p for p in pushes if p[0] == "left"),
        "right": iter(p for p in pushes if p[0] == "right"),
    }
    shuffled = [next(by_side[pushes[i][0]]) for i in order]
    many = run(StereoWindower(H, W), shuffled)
    assert [w.t_end_ns for w in one] == [w.t_end_ns for w in many]
    # ends 100, 150, ..., 950 ms: from the grid point after both first events + 50 ms, up to
    # the last end that both cameras have passed (1000 ms would need an event at >= 1000 ms)
    assert len(one) == 18
    assert one[0].t_end_ns == 100 * MS
    for a, b in zip(one, many, strict=True):
        np.testing.assert_array_equal(a.left, b.left)
        np.testing.assert_array_equal(a.right, b.right)
    assert_windows_match_direct_histograms(many, left, right)


@pytest.mark.parametrize("schedule", ["rate", "trigger"])
def test_holding_events_until_due_gives_the_same_windows(schedule):
    # The node queues raw messages and pushes only when both cameras have passed due_ns():
    # pushing the same events that way must give the windows of pushing each message at once.
    rng = np.random.default_rng(11)
    left = stream(rng, 20_000, 3 * MS, 700 * MS)
    right = stream(rng, 20_000, 9 * MS, 700 * MS)
    messages = [("left", b) for b in np.array_split(left, 350)]
    messages += [("right", b) for b in np.array_split(right, 350)]
    messages.sort(key=lambda m: int(m[1]["t"][-1]))  # arrival order: by sensor time
    triggers = [60 * MS, 61 * MS, 200 * MS + 3, 650 * MS]

    def make() -> StereoWindower:
        windower = StereoWindower(H, W, schedule=schedule)
        windower.add_triggers(triggers)
        return windower

    eager = run(make(), messages)
    held = make()
    queued: dict[str, list[np.ndarray]] = {"left": [], "right": []}
    newest: dict[str, int] = {}
    pushes, out = 0, []
    for side, events in messages:
        queued[side].append(events)
        newest[side] = int(events["t"][-1])
        due = held.due_ns()
        if due is None or (len(newest) == 2 and min(newest.values()) >= due):
            for name in ("left", "right"):
                if queued[name]:
                    out += held.push(name, np.concatenate(queued[name]))
                    queued[name] = []
                    pushes += 1
    assert [w.t_end_ns for w in out] == [w.t_end_ns for w in eager]
    assert len(out) == (12 if schedule == "rate" else 4)  # rate: ends 100, 150, ..., 650 ms
    for a, b in zip(out, eager, strict=True):
        np.testing.assert_array_equal(a.left, b.left)
        np.testing.assert_array_equal(a.right, b.right)
    assert pushes < len(messages) / 5  # and it did batch
    if schedule == "trigger":
        assert held.due_ns() == NEVER  # every trigger used: nothing can complete


def test_events_slightly_out_of_order_are_binned_by_their_own_time():
    # Drivers may deliver events a few microseconds out of order (below the backwards-jump
    # tolerance): such chunks are cut by a time mask, sorted ones by binary search.
    rng = np.random.default_rng(12)
    left, right = stream(rng, 8000, 0, 400 * MS), stream(rng, 8000, 0, 400 * MS)
    jittered = left.copy()
    jittered["t"] += rng.integers(-200_000, 200_000, len(left))  # +-0.2 ms, tolerance 1 ms
    assert (np.diff(jittered["t"]) < 0).any()
    windower = StereoWindower(H, W)
    pushes = [("left", b) for b in np.array_split(jittered, 40)]
    pushes += [("right", b) for b in np.array_split(right, 40)]
    pushes.sort(key=lambda m: int(m[1]["t"].max()))
    windows = run(windower, pushes)
    assert len(windows) == 6 and windower.counters.resets == 0
    assert_windows_match_direct_histograms(windows, jittered, right)


def test_overlapping_windows_with_a_shorter_period():
    rng = np.random.default_rng(3)
    left, right = stream(rng, 5000, 0, 300 * MS), stream(rng, 5000, 0, 300 * MS)
    windower = StereoWindower(H, W, window_ns=50 * MS, period_ns=20 * MS)
    windows = run(windower, [("left", left), ("right", right)])
    ends = [w.t_end_ns // MS for w in windows]
    assert ends == list(range(60, 300, 20))
    assert_windows_match_direct_histograms(windows, left, right)


def test_trigger_stamps_set_window_ends():
    rng = np.random.default_rng(4)
    left, right = stream(rng, 8000, 0, 500 * MS), stream(rng, 8000, 0, 500 * MS)
    windower = StereoWindower(H, W, schedule="trigger")
    windower.add_triggers([420 * MS + 7, 60 * MS, 133 * MS, 60 * MS])
    windows = run(windower, [("left", left[:4000]), ("right", right), ("left", left[4000:])])
    assert [w.t_end_ns for w in windows] == [60 * MS, 133 * MS, 420 * MS + 7]
    assert_windows_match_direct_histograms(windows, left, right)
    windower.add_triggers([500 * MS + 500_000])
    assert windower.push("left", stream(rng, 10, 501 * MS, 502 * MS)) == []  # right not past
    later = windower.push("right", stream(rng, 10, 501 * MS, 502 * MS))
    assert [w.t_end_ns for w in later] == [500 * MS + 500_000]


def test_a_looping_bag_resets_once_and_replays_the_same_windows(caplog):
    rng = np.random.default_rng(5)
    left, right = stream(rng, 4000, 0, 400 * MS), stream(rng, 4000, 0, 400 * MS)
    windower = StereoWindower(H, W)
    first = run(windower, [("left", left), ("right", right)])
    # the bag loops: each camera's stream goes back to 0, the left one inside a batch
    pushes = [("left", np.concatenate([stream(rng, 10, 400 * MS, 401 * MS), left[:1500]]))]
    pushes += [("right", stream(rng, 10, 400 * MS, 401 * MS)), ("right", right[:1000])]
    pushes += [("left", left[1500:]), ("right", right[1000:])]
    with caplog.at_level(logging.WARNING, logger="stereospike_ros.events.windowing"):
        second = run(windower, pushes)
    assert "jumped back" in caplog.text
    assert windower.counters.resets == 1
    assert windower.counters.dropped_stale == {"left": 0, "right": 10}
    assert [w.t_end_ns for w in second] == [w.t_end_ns for w in first]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.left, b.left)
        np.testing.assert_array_equal(a.right, b.right)


def test_silent_camera_is_reported_and_windows_resume_when_it_returns():
    rng = np.random.default_rng(6)
    clock = FakeClock()
    windower = StereoWindower(H, W, silence_timeout_ns=500 * MS, clock=clock)
    left, right = stream(rng, 6000, 0, 600 * MS), stream(rng, 6000, 0, 600 * MS)
    assert run(windower, [("left", left[:2000]), ("right", right[:2000])])
    clock.now = 300 * MS
    assert windower.silent_sides() == []
    assert windower.push("left", left[2000:]) == []  # right is silent: nothing can be paired
    clock.now = 700 * MS
    assert windower.silent_sides() == ["right"]  # left pushed at 300 ms, right at 0
    assert windower.silent_sides(now_ns=1500 * MS) == ["left", "right"]
    resumed = windower.push("right", right[2000:])
    assert windower.silent_sides() == []
    assert resumed and resumed[-1].t_end_ns == 550 * MS
    assert_windows_match_direct_histograms(resumed, left, right)


def test_flood_keeps_memory_bounded_and_skips_incomplete_windows():
    rng = np.random.default_rng(7)
    windower = StereoWindower(H, W, max_buffered_events=20_000)
    left, right = stream(rng, 100_000, 0, 1000 * MS), stream(rng, 1000, 0, 1000 * MS)
    windower.push("right", right[:10])
    c = windower.counters
    pushed = 0
    for part in np.array_split(left, 50):
        assert windower.push("left", part) == []  # the right camera lags: nothing completes
        pushed += len(part)
        # nothing was consumed yet, so what is held is at most what was not dropped
        assert pushed - c.dropped_memory["left"] <= 20_000
    assert c.dropped_memory["left"] == 80_000
    windows = windower.push("right", right[10:])
    # only windows whose left events were all kept are emitted, each exact
    assert windows and c.windows_skipped > 0
    assert all(w.t_start_ns >= 800 * MS for w in windows)
    assert_windows_match_direct_histograms(windows, left, right)
    assert c.windows_emitted == len(windows)
    assert c.events_in == {"left": 100_000, "right": 1000}


def test_off_sensor_events_are_counted_once_and_bad_input_rejected():
    windower = StereoWindower(H, W)
    events = np.zeros(3, dtype=EVENT_DTYPE)
    events["x"] = [0, W, 1]
    windower.push("left", events)
    assert windower.counters.dropped_out_of_bounds == {"left": 1, "right": 0}
    with pytest.raises(EventsError, match="'middle'"):
        windower.push("middle", events)
    with pytest.raises(EventsError, match="EVENT_DTYPE"):
        windower.push("left", np.zeros(3))
    with pytest.raises(EventsError, match="schedule"):
        StereoWindower(H, W, schedule="sometimes")


def test_pause_in_both_cameras_skips_empty_windows_without_emitting_them():
    rng = np.random.default_rng(8)
    left = np.concatenate(
        [stream(rng, 500, 0, 200 * MS), stream(rng, 500, 60_000 * MS, 60_200 * MS)]
    )
    right = np.concatenate(
        [stream(rng, 500, 0, 200 * MS), stream(rng, 500, 60_000 * MS, 60_200 * MS)]
    )
    windower = StereoWindower(H, W)
    windows = run(windower, [("left", left), ("right", right)])
    assert all(w.left.any() or w.right.any() for w in windows)
    assert windower.counters.windows_skipped >= 1000
    assert windows[-1].t_end_ns == 60_200 * MS - 50 * MS or windows[-1].t_end_ns <= 60_200 * MS
    assert_windows_match_direct_histograms(windows, left, right)
