"""The stereo event simulator: geometry (disparity = f B / Z), event physics, ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stereospike_ros.cli import main
from stereospike_ros.data import open_sequence
from stereospike_ros.data.errors import SimulationError
from stereospike_ros.data.sequence import MVSEC_FOCAL_BASELINE
from stereospike_ros.sim.simulator import EventPixelArray, SimConfig, simulate

MS = 1_000_000
# Small images keep the tests fast; focal length and baseline stay MVSEC's.
SMALL = {"width": 120, "height": 90}


def signed_count_image(events: np.ndarray, height: int, width: int) -> np.ndarray:
    img = np.zeros((height, width))
    np.add.at(img, (events["y"], events["x"]), np.where(events["p"] == 1, 1.0, -1.0))
    return img


def measured_disparity(recording, max_disparity: int = 40) -> float:
    """Shift of the right event image against the left one with the best correlation (px)."""
    h, w = recording.height, recording.width
    left = signed_count_image(recording.left_events, h, w)
    right = signed_count_image(recording.right_events, h, w)
    scores = []
    for d in range(max_disparity):
        a, b = left[:, d:], right[:, : w - d]  # left x matches right x - d
        scores.append((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))
    scores = np.array(scores)
    k = int(scores.argmax())
    if 0 < k < max_disparity - 1:  # sub-pixel: vertex of the parabola through the peak
        s0, s1, s2 = scores[k - 1 : k + 2]
        return k + 0.5 * (s0 - s2) / (s0 - 2 * s1 + s2)
    return float(k)


@pytest.mark.parametrize("depth_m", [1.0, 2.5, 6.0])
def test_plane_disparity_is_focal_baseline_over_depth(depth_m):
    config = SimConfig(
        scene="plane", motion="vertical", motion_scale=2.0, plane_depth_m=depth_m,
        duration_s=0.15, seed=3, **SMALL,
    )  # fmt: skip
    recording = simulate(config)
    assert len(recording.left_events) > 300 and len(recording.right_events) > 300
    expected = MVSEC_FOCAL_BASELINE / depth_m
    assert measured_disparity(recording) == pytest.approx(expected, abs=1.0)


def test_calibration_is_rectified_with_mvsec_focal_baseline():
    recording = simulate(SimConfig(scene="plane", motion="static", duration_s=0.05, **SMALL))
    assert recording.focal_baseline == pytest.approx(MVSEC_FOCAL_BASELINE, abs=1e-3)
    left, right = recording.left_calibration, recording.right_calibration
    assert left.P[0, 3] == 0.0 and right.P[0, 3] < 0
    np.testing.assert_array_equal(left.K, right.K)
    np.testing.assert_array_equal(left.R, np.eye(3))
    assert not left.D.any()


def test_one_event_per_threshold_crossing_at_interpolated_times():
    shape = (1, 2)
    pixels = EventPixelArray(
        np.zeros(shape), np.full(shape, 0.25), np.full(shape, 0.25), refractory_ns=0
    )
    # pixel 0 brightens by 1 (four ON crossings), pixel 1 darkens by 0.625 (two OFF crossings)
    events = pixels.step(np.array([[1.0, -0.625]]), 0, 1000)
    on = events[events["x"] == 0]
    off = events[events["x"] == 1]
    np.testing.assert_array_equal(on["t"], [250, 500, 750, 1000])
    np.testing.assert_array_equal(off["t"], [400, 800])
    assert on["p"].all() and not off["p"].any()
    assert np.all(np.diff(events["t"]) >= 0)
    # the reference (-0.5) carries over: -0.625 -> -1.125 crosses -0.75 and -1.0
    events = pixels.step(np.array([[1.0, -1.125]]), 1000, 2000)
    np.testing.assert_array_equal(events["t"], [1250, 1750])
    assert not events["p"].any() and np.all(events["x"] == 1)


def test_refractory_period_spaces_each_pixels_events():
    refractory = 5 * MS
    config = SimConfig(refractory_s=refractory / 1e9, duration_s=0.2, seed=2, **SMALL)
    events = simulate(config).left_events
    pixel = events["y"].astype(np.int64) * SMALL["width"] + events["x"]
    order = np.lexsort((events["t"], pixel))
    same_pixel = np.diff(pixel[order]) == 0
    gaps = np.diff(events["t"][order])[same_pixel]
    assert same_pixel.any() and gaps.min() >= refractory


def test_lower_threshold_gives_more_events():
    counts = [
        len(simulate(SimConfig(threshold=c, duration_s=0.15, seed=4, **SMALL)).left_events)
        for c in (0.15, 0.3)
    ]
    assert counts[0] > 1.5 * counts[1] > 0


def test_higher_texture_contrast_gives_more_events():
    counts = [
        len(simulate(SimConfig(contrast=c, duration_s=0.15, seed=4, **SMALL)).left_events)
        for c in (0.25, 0.75)
    ]
    assert counts[1] > 1.5 * counts[0] > 0


def test_static_scene_without_noise_makes_no_events():
    recording = simulate(SimConfig(motion="static", duration_s=0.2, **SMALL))
    assert len(recording.left_events) == 0 and len(recording.right_events) == 0
    assert len(recording.depth) == 4


def test_background_noise_alone_has_the_requested_rate():
    rate, duration = 4.0, 1.0
    config = SimConfig(motion="static", noise_rate_hz=rate, duration_s=duration, **SMALL)
    recording = simulate(config)
    expected = rate * SMALL["width"] * SMALL["height"] * duration  # 43,200
    for events in (recording.left_events, recording.right_events):
        assert len(events) == pytest.approx(expected, rel=0.03)  # > 6 sigma of Poisson
        assert events["p"].mean() == pytest.approx(0.5, abs=0.02)
        assert np.all(np.diff(events["t"]) >= 0)
        assert events["t"].min() > 0 and events["t"].max() <= duration * 1e9
    assert not np.array_equal(recording.left_events, recording.right_events)


def test_plane_depth_is_its_distance_and_nan_where_nothing_is_hit():
    config = SimConfig(
        scene="plane", plane_depth_m=3.0, plane_size_m=1.0, motion="vertical",
        duration_s=0.1, **SMALL,
    )  # fmt: skip
    recording = simulate(config)
    for frame in recording.depth:
        hit = np.isfinite(frame)
        np.testing.assert_allclose(frame[hit], 3.0, rtol=1e-5)
        # a 1 m square at 3 m spans f / 3 = 75 px a side
        assert hit.sum() == pytest.approx((config.focal_px / 3.0) ** 2, rel=0.05)
        assert (~hit).sum() > 0
    full = simulate(SimConfig(scene="plane", plane_depth_m=2.0, motion="static", **SMALL))
    np.testing.assert_allclose(full.depth, 2.0, rtol=1e-5)


def test_room_depth_is_finite_and_agrees_with_events_disparity_range():
    recording = simulate(SimConfig(scene="room", duration_s=0.1, seed=5, **SMALL))
    assert np.isfinite(recording.depth).all()
    assert recording.depth.min() > 0.3 and recording.depth.max() < 20.0


def test_depth_stamps_every_50_ms_after_the_start():
    config = SimConfig(motion="static", duration_s=0.26, start_ns=7 * MS, **SMALL)
    recording = simulate(config)
    np.testing.assert_array_equal(recording.depth_ts_ns, 7 * MS + 50 * MS * np.arange(1, 6))
    assert recording.depth.shape == (5, SMALL["height"], SMALL["width"])
    assert recording.depth.dtype == np.float32


def test_same_seed_gives_identical_recordings_and_another_seed_differs():
    config = SimConfig(duration_s=0.1, seed=11, noise_rate_hz=1.0, **SMALL)
    first, second = simulate(config), simulate(config)
    np.testing.assert_array_equal(first.left_events, second.left_events)
    np.testing.assert_array_equal(first.right_events, second.right_events)
    np.testing.assert_array_equal(first.depth, second.depth)
    other = simulate(SimConfig(duration_s=0.1, seed=12, noise_rate_hz=1.0, **SMALL))
    assert len(other.left_events) != len(first.left_events) or not np.array_equal(
        other.left_events, first.left_events
    )
    assert not np.array_equal(other.depth, first.depth)


@pytest.mark.parametrize("scene", ["room", "corridor", "boxes"])
@pytest.mark.parametrize("motion", ["hover", "forward", "sweep"])
def test_events_are_sorted_in_bounds_and_balanced(scene, motion):
    config = SimConfig(scene=scene, motion=motion, duration_s=0.1, seed=1, **SMALL)
    recording = simulate(config)
    for events in (recording.left_events, recording.right_events):
        assert len(events) > 1000
        t = events["t"]
        assert np.all(np.diff(t) >= 0)
        assert t.min() > 0 and t.max() <= 100 * MS
        assert events["x"].max() < SMALL["width"] and events["y"].max() < SMALL["height"]
        assert 0.25 < events["p"].mean() < 0.75


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"duration_s": -1.0}, "duration_s"),
        ({"noise_rate_hz": float("nan")}, "noise_rate_hz"),
        ({"scene": "castle"}, "castle"),
        ({"motion": "loop"}, "loop"),
        ({"name": "a/b"}, "name"),
    ],
)
def test_invalid_config_is_refused_naming_the_field(changes, field):
    with pytest.raises(SimulationError, match=field):
        simulate(SimConfig(**{**SMALL, **changes}))


def test_a_flight_through_the_plane_is_refused():
    config = SimConfig(scene="plane", plane_depth_m=1.0, motion="forward", duration_s=5.0)
    with pytest.raises(SimulationError, match="camera path"):
        simulate(config)


def test_simulate_command_writes_readable_hdf5_and_bags(tmp_path, capsys):
    argv = ["simulate", "--out", str(tmp_path), "--name", "tiny", "--duration", "0.1"]
    assert main([*argv, "--seed", "7", "--bags", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "events" in printed and "tiny_data.hdf5" in printed
    record = json.loads((tmp_path / "tiny_sim.json").read_text())
    assert record["seed"] == 7
    assert record["focal_baseline"] == pytest.approx(MVSEC_FOCAL_BASELINE, abs=1e-3)
    counts = record["counts"]
    assert counts["depth_frames"] == 2 and counts["left_events"] > 1000
    for path in ("tiny_data.hdf5", "tiny.bag", "tiny_ros2"):
        with open_sequence(tmp_path / path) as sequence:
            for side in ("left", "right"):
                n = sum(len(chunk) for chunk in sequence.iter_events(side))
                assert n == counts[f"{side}_events"], (path, side)
            np.testing.assert_array_equal(sequence.depth_stamps(), [50 * MS, 100 * MS])
    # existing files are not replaced without --overwrite
    assert main([*argv, "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
