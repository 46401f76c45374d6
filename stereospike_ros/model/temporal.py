"""A temporal filter for depth maps: an exponential moving average in log depth, per pixel.

The network is stateless: each 50 ms window gives a depth map of its own, and the noise of one
window's estimate is independent of the next one's. Averaging over windows trades that noise
for lag: with ``smoothing`` s the output is ``exp(s * log(previous) + (1 - s) * log(new))``,
whose mean delay is ``s / (1 - s)`` windows (s = 0.5: one window, 50 ms). A rig approaching an
obstacle sees it that much later, so the depth node leaves the filter off unless asked.

Log depth, because the network's error is relative (a fraction of the depth, like disparity
error) and a mean of metres would pull a near edge far. Pixels without an estimate (NaN, <= 0)
in the new map stay without one in the output and keep their previous value in the state, so
the filter never adds coverage. The state starts again when time goes back (a looping bag, a
restarted stream, another recording), when more than ``max_gap_s`` passed since the last map
(windows skipped for a long time, a pause) or when the map's size changes.
"""

from __future__ import annotations

import numpy as np

from stereospike_ros.model.errors import ModelError

__all__ = ["DEFAULT_MAX_GAP_S", "TemporalFilter"]

#: the state is dropped when the maps are further apart than this (sensor time)
DEFAULT_MAX_GAP_S = 0.5


class TemporalFilter:
    """Exponential moving average of depth maps in log depth; see the module docstring.

    ``smoothing`` is the previous estimate's weight in [0, 1): 0 passes each map through.
    It may be changed between calls (a live node parameter); ``resets`` counts restarts of
    the state after the first map.
    """

    def __init__(self, smoothing: float, max_gap_s: float = DEFAULT_MAX_GAP_S) -> None:
        self.smoothing = check_smoothing(smoothing)
        if not max_gap_s > 0:
            raise ModelError(f"max_gap_s must be > 0, got {max_gap_s}")
        self.max_gap_ns = int(max_gap_s * 1e9)
        self.resets = 0
        self._log: np.ndarray | None = None
        self._t_ns: int | None = None

    def reset(self) -> None:
        """Forget the state: the next map passes through."""
        self._log = None
        self._t_ns = None

    def __call__(self, depth: np.ndarray, t_ns: int) -> np.ndarray:
        """The filtered map (float32, NaN where ``depth`` has no estimate) for the map of
        sensor time ``t_ns``."""
        depth = np.asarray(depth, dtype=np.float32)
        valid = np.isfinite(depth) & (depth > 0)
        new = np.log(np.where(valid, depth, np.float32(1.0)))
        previous = self._log
        if previous is not None and (
            previous.shape != depth.shape
            or self._t_ns is None
            or t_ns <= self._t_ns
            or t_ns - self._t_ns > self.max_gap_ns
        ):
            self.resets += 1
            previous = None
        self._t_ns = int(t_ns)
        s = np.float32(check_smoothing(self.smoothing))
        if previous is None or s == 0:  # the map itself, exactly
            self._log = np.where(valid, new, np.float32(np.nan)).astype(np.float32)
            return np.where(valid, depth, np.float32(np.nan))
        known = np.isfinite(previous)
        blended = np.where(known, s * previous + (1 - s) * new, new)
        self._log = np.where(valid, blended, previous).astype(np.float32)
        return np.where(valid, np.exp(self._log), np.float32(np.nan)).astype(np.float32)


def check_smoothing(value: float, what: str = "temporal smoothing") -> float:
    """``value`` as a float in [0, 1), or a ModelError naming it as ``what`` (a command-line
    flag, say)."""
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ModelError(f"{what} must be in [0, 1), got {value}")
    return value
