"""Smooth 6-DoF camera trajectories: each coordinate a sum of sinusoids (plus a drift), seeded.

Sums of sinusoids are smooth to every order, bounded (the camera stays in its room however long
the recording), have exact velocities for the simulator's adaptive time step, and a seed gives
a different but statistically similar flight each time. A constant drift velocity adds what
sinusoids cannot: forward flight and a walk, which leave their start for good.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stereospike_ros.data.errors import SimulationError

MOTION_STYLES = (
    "hover", "forward", "sweep", "vertical", "lateral", "static", "flight", "shake", "rotate",
)  # fmt: skip

# channel order: x, y, z (metres, world frame: x right, y down, z forward), yaw, pitch, roll (rad)
_DEG = np.pi / 180.0
#: style -> list of (channel, amplitude, frequency Hz, phase or None for a random one)
_STYLES: dict[str, list[tuple[int, float, float, float | None]]] = {
    "static": [],
    # a drone holding position, drifting and correcting (like MVSEC indoor_flying)
    "hover": [
        (0, 0.25, 0.20, None),
        (0, 0.04, 0.70, None),
        (1, 0.12, 0.25, None),
        (1, 0.03, 0.80, None),
        (2, 0.30, 0.15, None),
        (2, 0.05, 0.60, None),
        (3, 8 * _DEG, 0.15, None),
        (4, 4 * _DEG, 0.30, None),
        (5, 3 * _DEG, 0.35, None),
    ],
    # flying in and back out along the optical axis, with a small wobble
    "forward": [
        (2, 1.8, 0.07, -np.pi / 2),
        (0, 0.12, 0.25, None),
        (1, 0.06, 0.30, None),
        (3, 4 * _DEG, 0.20, None),
        (4, 2 * _DEG, 0.35, None),
        (5, 2 * _DEG, 0.40, None),
    ],
    # panning left and right while sliding sideways: rotation-dominated flow
    "sweep": [
        (3, 25 * _DEG, 0.15, None),
        (4, 5 * _DEG, 0.20, None),
        (5, 2 * _DEG, 0.30, None),
        (0, 0.50, 0.10, None),
        (1, 0.05, 0.30, None),
    ],
    # pure translations without rotation: the physics tests' known-answer motions
    "vertical": [(1, 0.10, 0.50, None)],
    "lateral": [(0, 0.10, 0.50, None)],
    # a drone flying ahead (the drift below), weaving and banking as it goes
    "flight": [
        (0, 0.30, 0.25, None),
        (1, 0.10, 0.40, None),
        (3, 6 * _DEG, 0.20, None),
        (4, 3 * _DEG, 0.50, None),
        (5, 5 * _DEG, 0.30, None),
    ],
    # a hand-held rig: a slow pan and walk, with tremor (4-9 Hz) on every axis
    "shake": [
        (3, 10 * _DEG, 0.20, None),
        (4, 4 * _DEG, 0.25, None),
        (3, 1.0 * _DEG, 5.0, None),
        (4, 1.0 * _DEG, 6.5, None),
        (5, 1.5 * _DEG, 4.0, None),
        (0, 0.006, 7.0, None),
        (1, 0.006, 9.0, None),
        (2, 0.004, 5.5, None),
    ],
    # rotation about the camera centre only: flow without translation parallax
    "rotate": [
        (3, 20 * _DEG, 0.20, None),
        (4, 8 * _DEG, 0.30, None),
        (5, 10 * _DEG, 0.25, None),
    ],
}

#: style -> constant velocity (m/s, world frame) added to the sinusoids, before scale
_DRIFT: dict[str, tuple[float, float, float]] = {
    "flight": (0.0, 0.0, 1.5),
    "shake": (0.15, 0.0, 0.25),
}


def rotation_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation Ry(yaw) Rx(pitch) Rz(roll): yaw > 0 turns right, pitch > 0 down."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    Ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    Rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, sp], [0.0, -sp, cp]])
    Rz = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return Ry @ Rx @ Rz


@dataclass(frozen=True)
class Trajectory:
    """Pose of the left camera over time; starts at the origin with identity rotation."""

    amplitude: np.ndarray  # (K,)
    omega: np.ndarray  # (K,) rad/s
    phase: np.ndarray  # (K,)
    channel: np.ndarray  # (K,) int, 0..5
    drift: np.ndarray = field(default_factory=lambda: np.zeros(3))  # (3,) m/s, constant

    def _channels(self, t: float, derivative: bool) -> np.ndarray:
        arg = self.omega * t + self.phase
        if derivative:
            terms = self.amplitude * self.omega * np.cos(arg)
        else:
            terms = self.amplitude * (np.sin(arg) - np.sin(self.phase))
        out = np.bincount(self.channel, weights=terms, minlength=6).astype(np.float64)
        out[:3] += self.drift if derivative else self.drift * t
        return out

    def pose(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Camera centre (3,) and camera-to-world rotation (3, 3) at time ``t`` seconds."""
        c = self._channels(t, derivative=False)
        return c[:3], rotation_from_euler(*c[3:])

    def velocity(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Linear (m/s) and angular (rad/s) velocity of the left camera at ``t``, world frame."""
        h = 1e-5
        W = (self.pose(t + h)[1] - self.pose(t - h)[1]) / (2 * h) @ self.pose(t)[1].T
        omega = np.array([W[2, 1] - W[1, 2], W[0, 2] - W[2, 0], W[1, 0] - W[0, 1]]) / 2
        return self._channels(t, derivative=True)[:3], omega

    def centres(self, times: np.ndarray, baseline_m: float) -> np.ndarray:
        """Left and right camera centres at ``times``, stacked (2 N, 3): the path to keep clear."""
        points = []
        for t in times:
            p, R = self.pose(float(t))
            points += [p, p + R[:, 0] * baseline_m]
        return np.array(points)


def make_trajectory(style: str, rng: np.random.Generator, scale: float = 1.0) -> Trajectory:
    """A trajectory of ``style``; the seed jitters amplitudes (+-30 %), frequencies and phases."""
    if style not in _STYLES:
        raise SimulationError(f"unknown motion style {style!r}; choose from {MOTION_STYLES}")
    terms = _STYLES[style]
    k = len(terms)
    channel = np.array([c for c, *_ in terms], dtype=np.int64)
    amplitude = np.array([a for _, a, _, _ in terms]) * rng.uniform(0.7, 1.3, k) * scale
    omega = 2 * np.pi * np.array([f for _, _, f, _ in terms]) * rng.uniform(0.85, 1.15, k)
    random_phase = rng.uniform(0, 2 * np.pi, k)
    phase = np.array([random_phase[i] if p is None else p for i, (_, _, _, p) in enumerate(terms)])
    if style not in _DRIFT:  # the original styles draw nothing more: their recordings stay put
        return Trajectory(amplitude, omega, phase, channel)
    drift = np.array(_DRIFT[style]) * rng.uniform(0.6, 1.4) * scale
    return Trajectory(amplitude, omega, phase, channel, drift)
