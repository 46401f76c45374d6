"""A stereo event-camera simulator with exact depth: the project's stand-in for MVSEC.

No MVSEC file can be downloaded where this project is built and tested, so every reader,
the training loop and the demo run on recordings made here. The model follows ESIM-style
simulators (Rebecq et al. 2018): render log irradiance at an adaptive rate so that nothing in
the image moves more than ``max_flow_px`` between renders, interpolate log irradiance linearly
in between, and emit one event per contrast-threshold crossing at its interpolated time.
Crossing times are solved analytically on that linear interpolant, which is what fixed 1-2 kHz
sub-steps approximate, at no cost per sub-step.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import time
from dataclasses import asdict, dataclass, fields

import numpy as np
from tqdm import tqdm

from stereospike_ros.data.errors import SimulationError
from stereospike_ros.data.recording import CameraCalibration, StereoRecording
from stereospike_ros.data.sequence import MVSEC_FOCAL_BASELINE
from stereospike_ros.events.types import EVENT_DTYPE
from stereospike_ros.sim.motion import MOTION_STYLES, Trajectory, make_trajectory
from stereospike_ros.sim.scene import SCENE_STYLES, PinholeCamera, Scene, build_scene
from stereospike_ros.sim.textures import TEXTURE_FAMILIES

#: MVSEC indoor_flying: rectified focal length (px); its f x B is data.sequence's constant
MVSEC_FOCAL_PX = 226.38
_LOG_EPS = 1e-3  # dark level inside the log: keeps black surfaces finite
_NS = 1_000_000_000


@dataclass
class SimConfig:
    """Everything one simulated recording depends on; same config and seed, same bytes."""

    name: str = "sim"
    seed: int = 0
    duration_s: float = 2.0
    scene: str = "room"  # see scene.SCENE_STYLES
    motion: str = "hover"  # see motion.MOTION_STYLES
    texture: str = "default"  # a textures.TEXTURE_FAMILIES name, or each style's own patterns
    motion_scale: float = 1.0  # multiplies every translation and rotation amplitude
    contrast: float = 0.5  # texture contrast: half-range of log reflectance
    threshold: float = 0.2  # contrast threshold on log irradiance (ON and OFF)
    threshold_sigma: float = 0.03  # per-pixel threshold mismatch (std, log units)
    refractory_s: float = 1e-4  # per pixel, after each event
    noise_rate_hz: float = 0.0  # background activity per pixel per second (Poisson)
    hot_pixel_fraction: float = 0.0  # share of pixels that fire on their own, at hot_pixel_rate_hz
    hot_pixel_rate_hz: float = 100.0
    jitter_s: float = 0.0  # timestamp jitter, uniform in [-jitter_s, +jitter_s]
    max_rate_eps: float = 0.0  # readout bandwidth, events/s per camera (0: unlimited)
    max_depth_m: float | None = None  # ground truth beyond this is NaN (a lidar's range)
    width: int = 346
    height: int = 260
    focal_px: float = MVSEC_FOCAL_PX
    baseline_m: float = MVSEC_FOCAL_BASELINE / MVSEC_FOCAL_PX
    plane_depth_m: float = 3.0  # scene "plane" only
    plane_size_m: float | None = None  # scene "plane" only; None = fills the view
    max_flow_px: float = 1.0  # largest image motion between two renders
    min_render_hz: float = 50.0
    max_render_hz: float = 2000.0
    depth_rate_hz: float = 20.0  # ground truth rate (MVSEC: 20 Hz)
    start_ns: int = 0  # time of the first render

    def validate(self) -> None:
        """Raise SimulationError naming the first field whose value cannot be simulated."""
        positive = (
            "duration_s", "threshold", "width", "height", "focal_px", "baseline_m",
            "plane_depth_m", "max_flow_px", "min_render_hz", "max_render_hz", "depth_rate_hz",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise SimulationError(f"SimConfig.{name} must be a positive number, got {value!r}")
        non_negative = (
            "motion_scale", "contrast", "threshold_sigma", "refractory_s", "noise_rate_hz",
            "start_ns", "hot_pixel_fraction", "hot_pixel_rate_hz", "jitter_s", "max_rate_eps",
        )  # fmt: skip
        for name in non_negative:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise SimulationError(f"SimConfig.{name} must be >= 0, got {value!r}")
        if self.scene not in SCENE_STYLES:
            raise SimulationError(f"SimConfig.scene {self.scene!r} is not one of {SCENE_STYLES}")
        if self.texture != "default" and self.texture not in TEXTURE_FAMILIES:
            raise SimulationError(
                f"SimConfig.texture {self.texture!r} is not one of {('default', *TEXTURE_FAMILIES)}"
            )
        if self.hot_pixel_fraction > 1:
            raise SimulationError(
                f"SimConfig.hot_pixel_fraction must be <= 1, got {self.hot_pixel_fraction!r}"
            )
        if self.motion not in MOTION_STYLES:
            raise SimulationError(f"SimConfig.motion {self.motion!r} is not one of {MOTION_STYLES}")
        if self.max_depth_m is not None and not self.max_depth_m > 0:
            raise SimulationError(f"SimConfig.max_depth_m must be > 0, got {self.max_depth_m!r}")
        if self.plane_size_m is not None and not self.plane_size_m > 0:
            raise SimulationError(f"SimConfig.plane_size_m must be > 0, got {self.plane_size_m!r}")
        if self.min_render_hz > self.max_render_hz:
            raise SimulationError(
                f"SimConfig.min_render_hz {self.min_render_hz} > max_render_hz {self.max_render_hz}"
            )
        if not self.name or any(c in self.name for c in "/\\"):
            raise SimulationError(f"SimConfig.name {self.name!r} must be a plain file stem")

    @classmethod
    def from_dict(cls, values: dict) -> SimConfig:
        """Rebuild a config from ``asdict`` output (e.g. a ``*_sim.json``); unknown keys raise."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SimulationError(f"unknown SimConfig fields {unknown}")
        return cls(**values)

    @property
    def focal_baseline(self) -> float:
        return self.focal_px * self.baseline_m


class EventPixelArray:
    """The event-generating pixels of one camera: reference levels, thresholds, refractory.

    Per pixel it keeps the log irradiance of its last reference crossing. A step from the
    previous log image to the next emits, for every multiple of the threshold crossed, one
    event at the time the linear interpolant crosses it. The reference moves by one threshold
    per crossing even when the refractory period drops the event, so a pixel never drifts
    from the scene. Timestamps are int64 ns.
    """

    def __init__(
        self,
        log_irradiance: np.ndarray,
        threshold_on: np.ndarray,
        threshold_off: np.ndarray,
        refractory_ns: int,
    ) -> None:
        self.height, self.width = log_irradiance.shape
        # full-image state in float32 (bandwidth); crossing times are solved in float64
        self.reference = log_irradiance.astype(np.float32).ravel()
        self.previous = self.reference.copy()
        self.c_on = threshold_on.astype(np.float32).ravel()
        self.c_off = threshold_off.astype(np.float32).ravel()
        self.refractory_ns = int(refractory_ns)
        self.last_ns = np.full(self.reference.size, np.iinfo(np.int64).min // 2, np.int64)

    def step(self, log_irradiance: np.ndarray, t0_ns: int, t1_ns: int) -> np.ndarray:
        """Events (EVENT_DTYPE, sorted by t) in (t0_ns, t1_ns] as log irradiance moves on."""
        new = log_irradiance.astype(np.float32, copy=False).ravel()
        diff = new - self.reference
        idx = np.flatnonzero((diff >= self.c_on) | (diff <= -self.c_off))
        previous, self.previous = self.previous, new
        if idx.size == 0:
            return np.empty(0, EVENT_DTYPE)
        d = diff[idx].astype(np.float64)
        on = d > 0
        sign = np.where(on, 1.0, -1.0)
        c = np.where(on, self.c_on[idx], self.c_off[idx]).astype(np.float64)
        n = np.floor(np.abs(d) / c).astype(np.int64)
        l0 = previous[idx].astype(np.float64)
        delta = new[idx] - l0  # same sign as d, and |delta| >= c (see the invariant below)
        reference = self.reference[idx].astype(np.float64)
        span = float(t1_ns - t0_ns)
        # crossing k (1..n) of level reference + sign * k * c on the line l0 -> new
        s_first = np.clip((reference + sign * c - l0) / delta, 0.0, 1.0)
        t_first = t0_ns + s_first * span
        t_gap = c / np.abs(delta) * span
        refr = self.refractory_ns
        free_at = (self.last_ns[idx] + refr).astype(np.float64)
        k0 = np.where(t_first >= free_at, 1, 1 + np.ceil((free_at - t_first) / t_gap))
        k0 = k0.astype(np.int64)
        every = np.maximum(1, np.ceil(refr / t_gap)).astype(np.int64) if refr else np.ones_like(n)
        kept = np.where(k0 <= n, 1 + (n - k0) // every, 0)
        # the invariant -c_off < previous - reference < c_on holds after this update
        self.reference[idx] = reference + sign * n * c

        total = int(kept.sum())
        owner = np.repeat(np.arange(idx.size), kept)
        within = np.arange(total) - np.repeat(np.cumsum(kept) - kept, kept)
        k = k0[owner] + within * every[owner]
        t = np.minimum(np.rint(t_first[owner] + (k - 1) * t_gap[owner]).astype(np.int64), t1_ns)
        has = kept > 0
        last_k = k0[has] + (kept[has] - 1) * every[has]
        self.last_ns[idx[has]] = np.rint(t_first[has] + (last_k - 1) * t_gap[has]).astype(np.int64)

        pixel = idx[owner]
        events = np.empty(total, EVENT_DTYPE)
        events["x"] = pixel % self.width
        events["y"] = pixel // self.width
        events["t"] = t
        events["p"] = on[owner]
        return events[np.argsort(t, kind="stable")]


def _thresholds(rng: np.random.Generator, config: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    shape = (config.height, config.width)
    floor = 0.25 * config.threshold  # mismatch never makes a pixel fire on nothing
    on = config.threshold + config.threshold_sigma * rng.standard_normal(shape)
    off = config.threshold + config.threshold_sigma * rng.standard_normal(shape)
    return np.maximum(on, floor), np.maximum(off, floor)


def background_activity(
    rng: np.random.Generator, rate_hz: float, width: int, height: int, t0_ns: int, t1_ns: int
) -> np.ndarray:
    """Poisson noise events, ``rate_hz`` per pixel per second, uniform in space and time."""
    n = int(rng.poisson(rate_hz * width * height * (t1_ns - t0_ns) / _NS))
    events = np.empty(n, EVENT_DTYPE)
    events["x"] = rng.integers(0, width, n)
    events["y"] = rng.integers(0, height, n)
    events["t"] = rng.integers(t0_ns, t1_ns + 1, n)
    events["p"] = rng.integers(0, 2, n)
    return events


def hot_pixels(
    rng: np.random.Generator, fraction: float, rate_hz: float, width: int, height: int,
    t0_ns: int, t1_ns: int,
) -> np.ndarray:  # fmt: skip
    """Events of hot pixels: ``fraction`` of the pixels, each firing Poisson at ``rate_hz``
    with one polarity of its own, whatever the scene does (a leaky or broken comparator)."""
    n_hot = round(fraction * width * height)
    pixel = rng.choice(width * height, n_hot, replace=False)
    polarity = rng.integers(0, 2, n_hot)
    counts = rng.poisson(rate_hz * (t1_ns - t0_ns) / _NS, n_hot)
    owner = np.repeat(np.arange(n_hot), counts)
    events = np.empty(owner.size, EVENT_DTYPE)
    events["x"] = pixel[owner] % width
    events["y"] = pixel[owner] // width
    events["t"] = rng.integers(t0_ns, t1_ns + 1, owner.size)
    events["p"] = polarity[owner]
    return events


def jitter_timestamps(
    rng: np.random.Generator, events: np.ndarray, jitter_ns: int, t0_ns: int, t1_ns: int
) -> np.ndarray:
    """Each timestamp moved by a uniform integer in [-jitter_ns, jitter_ns], kept in [t0, t1]
    and re-sorted (the arbiter's and the host clock's timing noise)."""
    out = events.copy()
    shift = rng.integers(-jitter_ns, jitter_ns + 1, len(out))
    out["t"] = np.clip(out["t"] + shift, t0_ns, t1_ns)
    return out[np.argsort(out["t"], kind="stable")]


def limit_bandwidth(events: np.ndarray, max_rate_eps: float, bin_ns: int = 1_000_000) -> np.ndarray:
    """Drop what a readout of ``max_rate_eps`` events/s cannot pass: per ``bin_ns`` bin of the
    sorted stream, events past ``max_rate_eps * bin`` are lost (a saturated bus drops the
    latest). Returns the kept events, still sorted."""
    cap = max(1, int(max_rate_eps * bin_ns / _NS))
    bins = events["t"] // bin_ns
    starts = np.searchsorted(bins, bins, side="left")
    rank = np.arange(len(events)) - starts  # position within its bin (the stream is sorted)
    return events[rank < cap]


def _log(irradiance: np.ndarray) -> np.ndarray:
    return np.log(irradiance + np.float32(_LOG_EPS))


@dataclass
class _World:
    scene: Scene
    trajectory: Trajectory
    camera: PinholeCamera
    baseline_m: float

    def render_pair(self, t_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Left irradiance, left depth, right irradiance, right depth at ``t_s`` seconds."""
        origin, rotation = self.trajectory.pose(t_s)
        right_origin = origin + rotation[:, 0] * self.baseline_m  # +x of the left camera
        irr_l, depth_l = self.scene.render(self.camera, origin, rotation)
        irr_r, depth_r = self.scene.render(self.camera, right_origin, rotation)
        return irr_l, depth_l, irr_r, depth_r

    def image_speed(self, t_s: float, depth_l: np.ndarray, depth_r: np.ndarray) -> float:
        """Fastest optical flow (px/s) in either image at ``t_s``, given their depth maps."""
        _, rotation = self.trajectory.pose(t_s)
        v, omega = self.trajectory.velocity(t_s)
        v_right = v + np.cross(omega, rotation[:, 0] * self.baseline_m)
        return max(
            max_image_speed(self.camera, depth_l, rotation, v, omega),
            max_image_speed(self.camera, depth_r, rotation, v_right, omega),
        )


def max_image_speed(
    camera: PinholeCamera,
    depth: np.ndarray,
    rotation: np.ndarray,
    velocity: np.ndarray,
    omega: np.ndarray,
    stride: int = 4,
) -> float:
    """Largest image motion (px/s) of the static scene over a grid of every ``stride``-th pixel.

    The motion field of a moving pinhole camera (Longuet-Higgins and Prazdny) from its world
    velocities and the depth map: what sets the render step, not a worst-case bound.
    """
    v = rotation.T @ velocity
    w = rotation.T @ omega
    x = camera.rays[0, ::stride, ::stride].astype(np.float64)
    y = camera.rays[1, ::stride, ::stride].astype(np.float64)
    z = depth[::stride, ::stride]
    inv_z = np.where(np.isfinite(z), 1.0 / np.where(np.isfinite(z), z, 1.0), 0.0)
    du = (x * v[2] - v[0]) * inv_z + x * y * w[0] - (1 + x * x) * w[1] + y * w[2]
    dv = (y * v[2] - v[1]) * inv_z + (1 + y * y) * w[0] - x * y * w[1] - x * w[2]
    return float(camera.f * np.sqrt((du * du + dv * dv).max()))


def build_world(config: SimConfig) -> _World:
    """Scene, trajectory and camera of ``config`` (seeded); what ``simulate`` renders."""
    config.validate()
    motion_seed, scene_seed, *_ = np.random.SeedSequence(config.seed).spawn(5)
    trajectory = make_trajectory(
        config.motion, np.random.default_rng(motion_seed), config.motion_scale
    )
    path = trajectory.centres(np.linspace(0.0, config.duration_s, 200), config.baseline_m)
    scene = build_scene(
        config.scene,
        np.random.default_rng(scene_seed),
        config.contrast,
        path,
        config.plane_depth_m,
        config.plane_size_m,
        config.texture,
    )
    camera = PinholeCamera.centred(config.width, config.height, config.focal_px)
    return _World(scene, trajectory, camera, config.baseline_m)


@functools.cache
def _keep_freed_memory() -> bool:
    """Stop glibc from returning image-sized numpy temporaries to the OS after every use.

    A render makes dozens of 0.1-1 MB temporaries; under glibc's default thresholds many are
    trimmed or mmapped afresh, so every render pays for fresh pages (a page fault per 4 KiB
    touched) for memory it just gave back. Freed memory up to 64 MB stays in the heap instead
    (a process-wide setting, harmless elsewhere). A no-op without glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_trim_threshold, 64 << 20)) and bool(mallopt(m_mmap_threshold, 32 << 20))


def apply_sensor_effects(
    events: np.ndarray, config: SimConfig, rng: np.random.Generator, t0_ns: int, t1_ns: int
) -> tuple[np.ndarray, int]:
    """Hot pixels, then timestamp jitter, then the readout's bandwidth cap (in a camera's
    order: the pixel fires, the arbiter stamps, the bus passes or drops); and how many the
    cap dropped. A config without these effects draws nothing and returns ``events``."""
    if config.hot_pixel_fraction > 0:
        hot = hot_pixels(
            rng, config.hot_pixel_fraction, config.hot_pixel_rate_hz, config.width,
            config.height, t0_ns, t1_ns,
        )  # fmt: skip
        events = np.concatenate([events, hot])
        events = events[np.argsort(events["t"], kind="stable")]
    jitter_ns = round(config.jitter_s * _NS)
    if jitter_ns > 0:
        events = jitter_timestamps(rng, events, jitter_ns, t0_ns, t1_ns)
    if config.max_rate_eps > 0:
        kept = limit_bandwidth(events, config.max_rate_eps)
        return kept, len(events) - len(kept)
    return events, 0


def simulate(config: SimConfig, progress: bool = False) -> StereoRecording:
    """Simulate a rectified stereo event recording with left ground-truth depth.

    Depth frames come every ``1 / depth_rate_hz`` after the start (not at the start, so each
    has a full window of events before it) up to the duration; events span (start, start +
    duration]. ``metadata`` carries the config, f x B and render statistics.
    """
    wall_start = time.perf_counter()
    _keep_freed_memory()
    world = build_world(config)
    _, _, left_seed, right_seed, noise_seed = np.random.SeedSequence(config.seed).spawn(5)
    camera = world.camera
    start, end = config.start_ns, config.start_ns + round(config.duration_s * _NS)
    depth_period = round(_NS / config.depth_rate_hz)
    depth_ts = np.arange(start + depth_period, end + 1, depth_period, dtype=np.int64)
    min_step = max(1, round(_NS / config.max_render_hz))
    max_step = round(_NS / config.min_render_hz)

    irr_l, depth_l, irr_r, depth_r = world.render_pair(0.0)
    refractory = round(config.refractory_s * _NS)
    pixels = [
        EventPixelArray(_log(irr), *_thresholds(np.random.default_rng(seed), config), refractory)
        for irr, seed in ((irr_l, left_seed), (irr_r, right_seed))
    ]
    chunks: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    depth_frames: list[np.ndarray] = []
    t_ns, steps, next_depth = start, 0, 0
    bar = tqdm(
        total=round(config.duration_s * 1000), unit="ms", disable=not progress, desc="simulate"
    )
    while t_ns < end:
        speed = world.image_speed((t_ns - start) / _NS, depth_l, depth_r)
        step = max_step if speed <= 0 else round(config.max_flow_px / speed * _NS)
        step = min(max(step, min_step), max_step)
        t_next = min(t_ns + step, end)
        if next_depth < len(depth_ts):
            t_next = min(t_next, int(depth_ts[next_depth]))
        irr_l, depth_l, irr_r, depth_r = world.render_pair((t_next - start) / _NS)
        for pixel_array, irr, out in zip(pixels, (irr_l, irr_r), chunks, strict=True):
            events = pixel_array.step(_log(irr), t_ns, t_next)
            if events.size:
                out.append(events)
        if next_depth < len(depth_ts) and t_next == depth_ts[next_depth]:
            if config.max_depth_m is None:
                depth_frames.append(depth_l)
            else:
                depth_frames.append(np.where(depth_l <= config.max_depth_m, depth_l, np.nan))
            next_depth += 1
        bar.update(round((t_next - start) / 1e6) - bar.n)
        t_ns, steps = t_next, steps + 1
    bar.close()

    streams = []
    noise_rng = np.random.default_rng(noise_seed)
    # children 5.. of the seed: independent of the draws above, so adding an effect to a
    # config leaves its scene, motion and noise as they were
    effects_rng = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(6)[5])
    dropped = []
    for out in chunks:
        events = np.concatenate(out) if out else np.empty(0, EVENT_DTYPE)
        if config.noise_rate_hz > 0:
            noise = background_activity(
                noise_rng, config.noise_rate_hz, config.width, config.height, start + 1, end
            )
            events = np.concatenate([events, noise])
            events = events[np.argsort(events["t"], kind="stable")]
        events, lost = apply_sensor_effects(events, config, effects_rng, start + 1, end)
        dropped.append(lost)
        streams.append(events)

    fb, f = config.focal_baseline, config.focal_px
    cx, cy = camera.cx, camera.cy
    left_cal = CameraCalibration.pinhole(
        config.height, config.width, f, cx, cy, 0.0, frame_id="davis_left_optical_frame"
    )
    right_cal = CameraCalibration.pinhole(
        config.height, config.width, f, cx, cy, -fb, frame_id="davis_right_optical_frame"
    )
    depth = (
        np.stack(depth_frames)
        if depth_frames
        else np.empty((0, config.height, config.width), np.float32)
    )
    wall = time.perf_counter() - wall_start
    metadata = {
        "source": "stereospike_ros simulator",
        "name": config.name,
        "config": asdict(config),
        "focal_baseline": fb,
        "render_steps": steps,
        "bandwidth_dropped": dropped,
        "wall_s": round(wall, 3),
    }
    return StereoRecording(
        config.height,
        config.width,
        streams[0],
        streams[1],
        depth,
        depth_ts,
        left_cal,
        right_cal,
        metadata,
    )
