"""The temporal filter: a running mean of log depth that restarts where time breaks."""

from __future__ import annotations

import numpy as np
import pytest

from stereospike_ros.model.errors import ModelError
from stereospike_ros.model.temporal import TemporalFilter

MS = 1_000_000


def _maps(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.5, 20.0, (6, 8)).astype(np.float32) for _ in range(n)]


def test_it_is_an_exponential_moving_average_of_log_depth():
    maps = _maps(5)
    f = TemporalFilter(0.6)
    state = np.log(maps[0])
    np.testing.assert_allclose(f(maps[0], 50 * MS), maps[0], rtol=1e-6)
    for k, depth in enumerate(maps[1:], start=2):
        state = 0.6 * state + 0.4 * np.log(depth)
        np.testing.assert_allclose(f(depth, 50 * MS * k), np.exp(state), rtol=1e-5)
    assert f.resets == 0


def test_zero_smoothing_passes_each_map_through():
    f = TemporalFilter(0.0)
    for k, depth in enumerate(_maps(3), start=1):
        np.testing.assert_array_equal(f(depth, 50 * MS * k), depth)


def test_noise_shrinks_and_a_constant_scene_stays_put():
    # Independent relative noise around 4 m: the filter's error is well below one map's.
    rng = np.random.default_rng(1)
    f = TemporalFilter(0.7)
    raw, smoothed = [], []
    for k in range(1, 200):
        depth = (4.0 * np.exp(rng.normal(0.0, 0.2, (16, 16)))).astype(np.float32)
        out = f(depth, 50 * MS * k)
        if k > 20:
            raw.append(np.abs(depth - 4.0).mean())
            smoothed.append(np.abs(out - 4.0).mean())
    assert np.mean(smoothed) < 0.5 * np.mean(raw)
    assert np.median(out) == pytest.approx(4.0, rel=0.05)


@pytest.mark.parametrize(
    ("second_ns", "why"),
    [(40 * MS, "time went back"), (50 * MS, "the same stamp"), (700 * MS, "a gap over 0.5 s")],
)
def test_the_state_restarts_where_time_breaks(second_ns, why):
    first, second = _maps(2)
    f = TemporalFilter(0.9)
    f(first, 50 * MS)
    np.testing.assert_allclose(f(second, second_ns), second, rtol=1e-6, err_msg=why)
    assert f.resets == 1


def test_a_map_of_another_size_restarts_it():
    f = TemporalFilter(0.5)
    f(np.full((4, 4), 2.0, np.float32), 50 * MS)
    bigger = np.full((5, 5), 8.0, np.float32)
    np.testing.assert_allclose(f(bigger, 100 * MS), bigger)
    assert f.resets == 1


def test_pixels_without_an_estimate_stay_without_one_and_keep_their_past():
    f = TemporalFilter(0.5)
    f(np.full((2, 2), 4.0, np.float32), 50 * MS)
    holes = np.array([[np.nan, 0.0], [-1.0, 1.0]], np.float32)
    out = f(holes, 100 * MS)
    assert np.isnan(out[0, 0]) and np.isnan(out[0, 1]) and np.isnan(out[1, 0])
    assert out[1, 1] == pytest.approx(2.0)  # exp(mean(log 4, log 1))
    # The holes kept 4 m in the state: the next estimate is averaged with it, not taken raw.
    out = f(np.full((2, 2), 1.0, np.float32), 150 * MS)
    assert out[0, 0] == pytest.approx(2.0)
    assert out[1, 1] == pytest.approx(np.sqrt(2.0), rel=1e-5)


def test_a_hole_in_the_first_map_takes_the_next_estimate_as_it_is():
    f = TemporalFilter(0.5)
    f(np.array([[np.nan, 4.0]], np.float32), 50 * MS)
    out = f(np.array([[3.0, 1.0]], np.float32), 100 * MS)
    assert out[0, 0] == pytest.approx(3.0)
    assert out[0, 1] == pytest.approx(2.0)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_smoothing_outside_zero_to_one_is_refused(bad):
    with pytest.raises(ModelError, match="temporal smoothing must be in"):
        TemporalFilter(bad)


def test_smoothing_can_change_between_maps():
    f = TemporalFilter(0.5)
    f(np.full((1, 1), 1.0, np.float32), 50 * MS)
    f.smoothing = 0.0
    assert f(np.full((1, 1), 9.0, np.float32), 100 * MS)[0, 0] == pytest.approx(9.0)
    f.smoothing = 0.5
    assert f(np.full((1, 1), 1.0, np.float32), 150 * MS)[0, 0] == pytest.approx(3.0)
