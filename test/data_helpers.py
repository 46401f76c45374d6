"""Tiny hand-built stereo recordings for the data tests (imported by test_data_*.py)."""

from __future__ import annotations

import numpy as np

from stereospike_ros.data.recording import CameraCalibration, StereoRecording
from stereospike_ros.events.types import EVENT_DTYPE

H, W = 20, 28
PERIOD_NS = 50_000_000


def random_events(rng: np.random.Generator, n: int, t0: int, t1: int, h: int, w: int) -> np.ndarray:
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"] = rng.integers(0, w, n)
    events["y"] = rng.integers(0, h, n)
    events["t"] = np.sort(rng.integers(t0, t1, n))
    events["p"] = rng.integers(0, 2, n)
    return events


def tiny_recording(
    seed: int = 0,
    frames: int = 8,
    rate_per_s: float = 20_000.0,
    t0_ns: int = 0,
    height: int = H,
    width: int = W,
) -> StereoRecording:
    """Random events on both cameras for ``frames`` x 50 ms and NaN-holed random depth."""
    rng = np.random.default_rng(seed)
    duration = frames * PERIOD_NS + PERIOD_NS // 2
    n = int(rate_per_s * duration / 1e9)
    left = random_events(rng, n, t0_ns, t0_ns + duration, height, width)
    right = random_events(rng, n + 7, t0_ns, t0_ns + duration, height, width)
    depth = rng.uniform(1.0, 10.0, (frames, height, width)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.2] = np.nan
    stamps = t0_ns + PERIOD_NS * np.arange(1, frames + 1, dtype=np.int64)
    f, baseline = 30.0, 0.1
    left_cal = CameraCalibration.pinhole(height, width, f, width / 2, height / 2, 0.0, "left")
    right_cal = CameraCalibration.pinhole(
        height, width, f, width / 2, height / 2, -f * baseline, "right"
    )
    return StereoRecording(
        height, width, left, right, depth, stamps, left_cal, right_cal, {"seed": seed}
    )
