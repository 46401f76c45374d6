"""Per-pixel spike counts: exact, polarity channels, time window, saturation, off-sensor drops."""

from __future__ import annotations

import numpy as np
import pytest

from stereospike_ros.events import EVENT_DTYPE, EventsError, accumulate_into, event_histogram


def events_of(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    return np.array(rows, dtype=EVENT_DTYPE)


def test_counts_are_exact_per_pixel_and_polarity():
    rng = np.random.default_rng(0)
    n, h, w = 20_000, 7, 9
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"], events["y"] = rng.integers(0, w, n), rng.integers(0, h, n)
    events["p"] = rng.integers(0, 2, n)
    hist, dropped = event_histogram(events, h, w)
    assert hist.dtype == np.uint16 and hist.shape == (2, h, w) and dropped == 0
    expected = np.zeros((2, h, w), dtype=int)
    for e in events:  # the slow obvious way
        expected[0 if e["p"] else 1, e["y"], e["x"]] += 1
    np.testing.assert_array_equal(hist, expected)


def test_time_window_is_half_open():
    events = events_of([(1, 1, 10, 1), (1, 1, 20, 1), (1, 1, 29, 0), (1, 1, 30, 1)])
    hist, _ = event_histogram(events, 3, 3, t_start=20, t_end=30)
    assert hist[0, 1, 1] == 1 and hist[1, 1, 1] == 1 and hist.sum() == 2
    hist, _ = event_histogram(events, 3, 3, t_end=20)
    assert hist.sum() == 1
    hist, _ = event_histogram(events, 3, 3, t_start=30)
    assert hist.sum() == 1


def test_off_sensor_events_are_dropped_and_counted_never_wrapped():
    events = events_of([(3, 0, 0, 1), (0, 2, 0, 1), (2, 1, 0, 0), (65535, 65535, 0, 1)])
    hist, dropped = event_histogram(events, 2, 3)
    assert dropped == 3
    assert hist.sum() == 1 and hist[1, 1, 2] == 1


def test_counts_saturate_at_uint16_max_only():
    events = np.zeros(70_000, dtype=EVENT_DTYPE)
    events["p"] = 1
    events["x"][:65_535] = 1
    hist, _ = event_histogram(events, 1, 2)
    assert hist[0, 0, 1] == 65_535 and hist[0, 0, 0] == 70_000 - 65_535
    events["x"] = 0
    hist, _ = event_histogram(events, 1, 2)
    assert hist[0, 0, 0] == 65_535


def test_accumulate_into_adds_in_place_and_saturates():
    hist = np.zeros((2, 2, 2), dtype=np.uint16)
    hist[0, 0, 0] = 65_530
    events = events_of([(0, 0, 5, 1)] * 10 + [(1, 1, 5, 0), (1, 1, 99, 0), (9, 9, 5, 0)])
    dropped = accumulate_into(hist, events, t_start=0, t_end=50)
    assert dropped == 1
    assert hist[0, 0, 0] == 65_535 and hist[1, 1, 1] == 1 and hist.sum() == 65_536
    split = np.zeros((2, 2, 2), dtype=np.uint16)
    for part in np.array_split(events, 5):
        accumulate_into(split, part, 0, 50)
    whole, _ = event_histogram(events, 2, 2, 0, 50)
    np.testing.assert_array_equal(split, whole)


def test_bad_targets_raise():
    with pytest.raises(EventsError, match="uint16"):
        accumulate_into(np.zeros((2, 2, 2), dtype=np.int32), events_of([]))
    with pytest.raises(EventsError, match="C-contiguous"):
        accumulate_into(np.zeros((2, 4, 4), dtype=np.uint16)[:, ::2], events_of([]))
    with pytest.raises(EventsError, match="positive"):
        event_histogram(events_of([]), 0, 3)


def test_large_batches_match_a_plain_add_at_reference():
    rng = np.random.default_rng(1)
    n, h, w = 300_000, 26, 34  # several internal chunks
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"], events["y"] = rng.integers(0, w + 2, n), rng.integers(0, h + 2, n)
    events["t"], events["p"] = rng.integers(0, 1000, n), rng.integers(0, 2, n)
    hist, dropped = event_histogram(events, h, w, t_start=100, t_end=900)
    sel = (events["t"] >= 100) & (events["t"] < 900)
    on = sel & (events["x"] < w) & (events["y"] < h)
    expected = np.zeros((2, h, w), dtype=np.int64)
    np.add.at(expected, (1 - events["p"][on], events["y"][on], events["x"][on]), 1)
    np.testing.assert_array_equal(hist, expected)
    assert dropped == int(sel.sum() - on.sum())


def test_stereo_channels_stack_left_then_right_and_split_back():
    from stereospike_ros.events.histogram import (
        LEFT_CHANNELS,
        STEREO_CHANNELS,
        split_stereo_channels,
        stereo_channels,
    )

    left = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    right = left + 100
    x = stereo_channels(left, right)
    assert STEREO_CHANNELS == ("L_ON", "L_OFF", "R_ON", "R_OFF")
    assert x.shape == (4, 3, 4) and x.dtype == np.uint16
    assert (x[0] == left[0]).all() and (x[1] == left[1]).all() and (x[2] == right[0]).all()
    assert (x[LEFT_CHANNELS] == left).all()
    back_left, back_right = split_stereo_channels(x)
    assert (back_left == left).all() and (back_right == right).all()
