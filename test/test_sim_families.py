"""The randomized simulator: new shapes, styles, textures, motions and sensor effects, each
checked against physics (exact depth, one event per threshold crossing, f B / Z disparity,
noise and hot-pixel rates, jitter bounds, bandwidth cap), and scene families by seed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stereospike_ros.cli import main
from stereospike_ros.data.errors import SimulationError
from stereospike_ros.events.types import EVENT_DTYPE
from stereospike_ros.sim.families import FAMILIES, SEEN_MOTION, family, random_config
from stereospike_ros.sim.motion import make_trajectory
from stereospike_ros.sim.scene import Cylinder, PinholeCamera, Plane, Scene, Sphere
from stereospike_ros.sim.simulator import (
    SimConfig,
    build_world,
    jitter_timestamps,
    limit_bandwidth,
    simulate,
)
from stereospike_ros.sim.textures import TEXTURE_FAMILIES, make_texture

SMALL = {"width": 64, "height": 48, "focal_px": 226.38 * 64 / 346}
MS = 1_000_000


def _render(shapes, camera=None):
    texture = make_texture(np.random.default_rng(0), "noise", 0.5)
    camera = camera or PinholeCamera.centred(64, 48, 40.0)
    scene = Scene(None, [], shapes=[s(texture) for s in shapes])
    return camera, scene.render(camera, np.zeros(3), np.eye(3))[1]


def test_sphere_cylinder_and_slanted_plane_depths_are_exact():
    camera, depth = _render([lambda t: Sphere((0.0, 0.0, 5.0), 1.0, t)])
    # ray (x, y, 1) meets |t d - c| = 1 at t = (5 - sqrt(25 - (1 + x2 + y2) 24)) / (1 + x2 + y2)
    y = (24 - camera.cy) / camera.f
    x = (np.arange(64) - camera.cx) / camera.f
    q = 1 + x * x + y * y
    with np.errstate(invalid="ignore"):
        expected = (5 - np.sqrt(25 - q * 24)) / q
    np.testing.assert_allclose(depth[24], expected, rtol=1e-4)
    # the silhouette: rays at angle < asin(1/5) from the centre hit it, the rest do not
    hit_row = np.isfinite(depth[24])
    inside = np.abs(np.arctan(x)) < math.asin(1 / 5) - 0.02
    outside = np.abs(np.arctan(x)) > math.asin(1 / 5) + 0.02
    assert hit_row[inside].all() and not hit_row[outside].any()

    _, depth = _render([lambda t: Cylinder((0.0, 6.0), 0.5, -2.0, 2.0, t)])
    q = 1 + x * x  # in the x-z plane: (t x)^2 + (t - 6)^2 = 0.25
    with np.errstate(invalid="ignore"):
        expected = (6 - np.sqrt(36 - q * 35.75)) / q
    np.testing.assert_allclose(depth[24], expected, rtol=1e-4)
    _, depth = _render([lambda t: Cylinder((0.0, 3.0), 0.5, 0.2, 0.6, t)])
    # looking down onto nothing, up at the cap from below: bottom rows see the top cap (y=0.2)
    rows = np.flatnonzero(np.isfinite(depth[:, 32]))
    y = (rows - camera.cy) / camera.f
    on_cap = depth[rows, 32] * y
    assert rows.size and np.all((on_cap > 0.2 - 1e-3) & (on_cap < 0.6 + 1e-3))

    tilt = math.radians(30)
    normal = (math.sin(tilt), 0.0, -math.cos(tilt))
    camera, depth = _render([lambda t: Plane((0.0, 0.0, 4.0), normal, t)])
    x = (np.arange(64) - camera.cx) / camera.f
    expected = 4 * math.cos(tilt) / (math.cos(tilt) - x * math.sin(tilt))
    np.testing.assert_allclose(depth[10], expected, rtol=1e-4)
    _, depth = _render([lambda t: Plane((0.0, 0.0, 4.0), (0.0, 0.0, -1.0), t, radius=0.5)])
    assert np.isfinite(depth).sum() == pytest.approx(math.pi * (0.5 * 40 / 4) ** 2, rel=0.15)


def _log(irradiance):
    return np.log(irradiance + np.float32(1e-3))


@pytest.mark.parametrize(
    ("scene", "motion", "texture"),
    [
        ("planes", "flight", "smooth"),
        ("clutter", "shake", "fine"),
        ("outdoor", "rotate", "structured"),
        ("shapes", "hover", "sparse"),
        ("panel", "lateral", "default"),
        ("room", "shake", "sparse"),
    ],
)
def test_each_pixel_fires_once_per_threshold_crossing_in_new_scenes(scene, motion, texture):
    """Without mismatch or refractory, a pixel's ON minus OFF count times the threshold is its
    change of log irradiance to within one threshold: event counts follow the contrast."""
    threshold = 0.15
    config = SimConfig(
        scene=scene, motion=motion, texture=texture, threshold=threshold, threshold_sigma=0.0,
        refractory_s=0.0, duration_s=0.12, seed=5, **SMALL,
    )  # fmt: skip
    recording = simulate(config)
    world = build_world(config)
    first, last = world.render_pair(0.0), world.render_pair(config.duration_s)
    for events, k in ((recording.left_events, 0), (recording.right_events, 2)):
        assert len(events) > 100
        net = np.zeros((48, 64))
        np.add.at(net, (events["y"], events["x"]), np.where(events["p"] == 1, 1.0, -1.0))
        change = _log(last[k]).astype(np.float64) - _log(first[k])
        residual = change - net * threshold
        assert np.abs(residual).max() < threshold + 1e-4


def test_disparity_is_focal_baseline_over_depth_for_another_rig():
    from test_sim_simulator import measured_disparity

    config = SimConfig(
        scene="plane", motion="vertical", motion_scale=2.0, plane_depth_m=2.0,
        duration_s=0.15, seed=3, width=120, height=90, focal_px=150.0, baseline_m=0.2,
    )  # fmt: skip
    recording = simulate(config)
    assert recording.focal_baseline == pytest.approx(30.0)
    assert measured_disparity(recording, 30) == pytest.approx(30.0 / 2.0, abs=1.0)


def test_texture_families_differ_in_their_statistics():
    rng = np.random.default_rng(1)

    def gradient(pattern):
        img = np.log(make_texture(rng, pattern, 0.5).image)
        return float(np.abs(np.diff(img, axis=1)).mean())

    assert gradient("fine") > 4 * gradient("smooth")
    sparse = np.log(make_texture(rng, "dots", 0.5, base=0.5).image)
    plain = np.abs(sparse - np.log(0.5)) < 0.01
    assert 0.6 < plain.mean() < 0.995  # mostly plain surface, but marked
    assert set(TEXTURE_FAMILIES) == {"smooth", "fine", "structured", "sparse"}


def test_new_motions_flight_shake_and_rotate():
    rng = np.random.default_rng(0)
    flight = make_trajectory("flight", rng)
    assert 0.9 <= flight.drift[2] <= 2.1  # forward at 1.5 m/s +- 40 %
    assert flight.pose(4.0)[0][2] == pytest.approx(4.0 * flight.drift[2])  # no z sinusoid
    rotate = make_trajectory("rotate", rng)
    assert np.allclose(rotate.pose(1.3)[0], 0.0)  # turns about its centre only
    assert np.linalg.norm(rotate.velocity(0.7)[1]) > 0.1
    shake, hover = make_trajectory("shake", rng), make_trajectory("hover", rng)
    times = np.linspace(0, 4, 400)
    spin = [np.linalg.norm(shake.velocity(t)[1]) for t in times]
    calm = [np.linalg.norm(hover.velocity(t)[1]) for t in times]
    assert np.mean(spin) > 2 * np.mean(calm)  # tremor: fast small rotations
    for trajectory in (flight, shake, rotate):  # velocities agree with the poses
        for t in (0.3, 1.7):
            h = 1e-4
            numeric = (trajectory.pose(t + h)[0] - trajectory.pose(t - h)[0]) / (2 * h)
            np.testing.assert_allclose(trajectory.velocity(t)[0], numeric, atol=1e-5)


def test_hot_pixels_fire_at_their_rate_with_one_polarity():
    fraction, rate, duration = 0.01, 200.0, 0.5
    config = SimConfig(
        motion="static", hot_pixel_fraction=fraction, hot_pixel_rate_hz=rate,
        duration_s=duration, **SMALL,
    )  # fmt: skip
    recording = simulate(config)
    n_hot = round(fraction * 64 * 48)  # 31 pixels
    expected = n_hot * rate * duration  # 3,100
    for events in (recording.left_events, recording.right_events):
        assert len(events) == pytest.approx(expected, abs=5 * math.sqrt(expected))
        pixel = events["y"].astype(np.int64) * 64 + events["x"]
        assert len(np.unique(pixel)) == n_hot
        for p in np.unique(pixel):
            assert len(np.unique(events["p"][pixel == p])) == 1
        assert np.all(np.diff(events["t"]) >= 0)


def test_jitter_moves_every_timestamp_within_its_bound():
    n, jitter = 5000, 300_000
    events = np.zeros(n, EVENT_DTYPE)
    events["x"] = np.arange(n) % 60000
    events["t"] = np.sort(np.random.default_rng(0).integers(1, 100 * MS, n))
    moved = jitter_timestamps(np.random.default_rng(1), events, jitter, 1, 100 * MS)
    assert np.all(np.diff(moved["t"]) >= 0)
    back = moved[np.argsort(moved["x"], kind="stable")]
    shift = back["t"].astype(np.int64) - events["t"]
    assert np.abs(shift).max() <= jitter and np.abs(shift).max() > 0.9 * jitter
    assert abs(shift.mean()) < 0.05 * jitter
    clean = simulate(SimConfig(duration_s=0.1, seed=2, **SMALL))
    jittered = simulate(SimConfig(duration_s=0.1, seed=2, jitter_s=2e-4, **SMALL))
    assert len(jittered.left_events) == len(clean.left_events)
    assert np.all(np.diff(jittered.left_events["t"]) >= 0)
    assert jittered.left_events["t"].min() > 0 and jittered.left_events["t"].max() <= 100 * MS


def test_bandwidth_cap_limits_every_millisecond():
    free = simulate(SimConfig(duration_s=0.1, seed=2, motion="sweep", **SMALL))
    peak = np.bincount(free.left_events["t"] // MS).max()
    cap_eps = 0.5 * peak * 1000  # half the busiest millisecond
    capped = simulate(
        SimConfig(duration_s=0.1, seed=2, motion="sweep", max_rate_eps=cap_eps, **SMALL)
    )
    per_ms = np.bincount(capped.left_events["t"] // MS)
    assert per_ms.max() <= cap_eps / 1000
    dropped = capped.metadata["bandwidth_dropped"]
    assert dropped[0] == len(free.left_events) - len(capped.left_events) > 0
    # below the cap nothing is lost
    kept = limit_bandwidth(free.left_events, 10 * peak * 1000)
    np.testing.assert_array_equal(kept, free.left_events)


def test_lidar_range_marks_far_ground_truth_unknown():
    config = SimConfig(scene="outdoor", motion="hover", duration_s=0.1, seed=1, **SMALL)
    far = simulate(config).depth
    near = simulate(SimConfig(**{**config.__dict__, "max_depth_m": 30.0})).depth
    assert np.nanmax(far) > 30.0 and np.nanmax(near) <= 30.0
    np.testing.assert_array_equal(np.isnan(near), np.isnan(far) | (far > 30.0))


def test_families_are_seeded_and_hold_out_one_axis_each():
    first = random_config("shapes", 7, width=64, height=48, duration_s=0.1)
    assert first == random_config("shapes", 7, width=64, height=48, duration_s=0.1)
    assert first != random_config("shapes", 8, width=64, height=48, duration_s=0.1)
    a, b = simulate(first), simulate(first)
    np.testing.assert_array_equal(a.left_events, b.left_events)
    np.testing.assert_array_equal(a.depth, b.depth)
    mixed = FAMILIES["mixed"]
    assert not mixed.held_out
    for fam in FAMILIES.values():
        if not fam.held_out:
            continue
        novel = [
            axis for axis in ("geometry", "texture", "motion")
            if not set(getattr(fam, axis)) <= set(getattr(mixed, axis))
        ]  # fmt: skip
        assert len(novel) == 1, fam.name
        assert not set(getattr(fam, novel[0])) & set(getattr(mixed, novel[0])), fam.name
    draws = [random_config("mixed", s, width=64, height=48) for s in range(16)]
    assert {c.motion for c in draws} <= set(SEEN_MOTION)
    assert len({c.scene for c in draws}) >= 4 and len({c.texture for c in draws}) >= 3
    assert any(c.hot_pixel_fraction > 0 for c in draws) and any(c.max_rate_eps > 0 for c in draws)
    with pytest.raises(SimulationError, match="unknown scene family"):
        family("castle")


def test_simulate_family_command_writes_a_randomized_recording(tmp_path, capsys):
    argv = ["simulate", "--out", str(tmp_path), "--family", "sparse", "--seed", "4",
            "--size", "48x64", "--duration", "0.1", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert "family 'sparse'" in capsys.readouterr().out
    record = json.loads((tmp_path / "sim_sim.json").read_text())
    assert record["family"] == "sparse" and record["config"]["texture"] == "sparse"
    assert record["config"]["width"] == 64 and record["config"]["height"] == 48
    expected = random_config("sparse", 4, width=64, height=48, duration_s=0.1, recording="sim")
    assert SimConfig.from_dict(record["config"]) == expected


def test_refractory_period_holds_in_a_busy_new_scene():
    refractory = 3 * MS
    config = SimConfig(scene="clutter", motion="shake", refractory_s=refractory / 1e9,
                       duration_s=0.1, seed=2, **SMALL)  # fmt: skip
    events = simulate(config).left_events
    pixel = events["y"].astype(np.int64) * 64 + events["x"]
    order = np.lexsort((events["t"], pixel))
    same_pixel = np.diff(pixel[order]) == 0
    gaps = np.diff(events["t"][order])[same_pixel]
    assert same_pixel.sum() > 100 and gaps.min() >= refractory


def test_every_sensor_effect_is_reproducible_by_seed():
    effects = {"noise_rate_hz": 2.0, "hot_pixel_fraction": 0.005, "jitter_s": 1e-4,
               "max_rate_eps": 2e5, "threshold_sigma": 0.05, "texture": "fine"}  # fmt: skip
    config = SimConfig(scene="planes", motion="flight", duration_s=0.1, seed=9, **effects, **SMALL)
    first, second = simulate(config), simulate(config)
    for side in ("left_events", "right_events"):
        np.testing.assert_array_equal(getattr(first, side), getattr(second, side))
    assert first.metadata["bandwidth_dropped"] == second.metadata["bandwidth_dropped"]
    other = simulate(SimConfig(**{**config.__dict__, "seed": 10}))
    assert not np.array_equal(other.left_events, first.left_events)


def test_random_rigs_vary_focal_length_and_baseline():
    mvsec = random_config("mixed", 3, width=64, height=48)
    assert mvsec.focal_baseline == pytest.approx(19.941772 * 64 / 346)
    rigs = [random_config("mixed", s, width=64, height=48, rig="random") for s in range(4)]
    assert len({round(c.focal_baseline, 6) for c in rigs}) == 4
    for config in rigs:
        assert 0.04 <= config.baseline_m <= 0.3
        assert 0.6 * mvsec.focal_px <= config.focal_px <= 1.6 * mvsec.focal_px
    with pytest.raises(SimulationError, match="unknown rig"):
        random_config("mixed", 3, rig="stereolabs")
