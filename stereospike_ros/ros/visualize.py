"""Pictures and points for rviz: colour depth, event frames, and a point cloud (numpy only).

Kept apart from the node so the exact pixels can be unit-tested without a ROS graph, and so
the evaluator and the demo write PNGs with the same colours that rviz shows.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["colorize_depth", "depth_to_points", "events_to_rgb"]

#: Colours of the paper's Figure 1: ON red, OFF blue, both pink (magenta), none black.
ON_RGB = (255, 0, 0)
OFF_RGB = (0, 0, 255)
BOTH_RGB = (255, 0, 255)
#: OpenCV's turbo colour map with its channels in RGB order, as a user colour map (256 x 1 x 3)
_TURBO_RGB = np.ascontiguousarray(
    cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), cv2.COLORMAP_TURBO)[
        :, :, ::-1
    ]
)


def colorize_depth(
    depth: np.ndarray, min_depth: float, max_depth: float, invalid_rgb: tuple = (0, 0, 0)
) -> np.ndarray:
    """(H, W, 3) uint8 RGB on a fixed scale, turbo colours: ``min_depth`` red ... ``max_depth``
    blue.

    A fixed scale (not per-frame min/max) keeps colours comparable between frames; depths
    outside it are clamped, and NaN/inf pixels get ``invalid_rgb``.
    """
    if not max_depth > min_depth:
        raise ValueError(f"max_depth {max_depth} must be larger than min_depth {min_depth}")
    depth = np.asarray(depth, dtype=np.float32)
    # index 255 = nearest (red in turbo), 0 = farthest (blue); OpenCV rounds and saturates
    # in one pass (this runs per window in the node)
    scale = 255.0 / (max_depth - min_depth)
    clipped = np.clip(depth, np.float32(min_depth), np.float32(max_depth))
    index = cv2.convertScaleAbs(clipped, alpha=-scale, beta=max_depth * scale)
    rgb = cv2.applyColorMap(index, _TURBO_RGB)
    invalid = ~np.isfinite(depth)
    if invalid.any():
        rgb[invalid] = invalid_rgb
    return rgb


def events_to_rgb(hist: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 from a (2, H, W) ON/OFF count histogram (channel 0 = ON)."""
    hist = np.asarray(hist)
    if hist.ndim != 3 or hist.shape[0] != 2:
        raise ValueError(f"event histogram must be (2, H, W), got {hist.shape}")
    on = (hist[0] > 0).view(np.uint8) * np.uint8(255)
    off = (hist[1] > 0).view(np.uint8) * np.uint8(255)
    return cv2.merge([on, np.zeros_like(on), off])  # (R, G, B): both = magenta


def depth_to_points(
    depth: np.ndarray,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    decimation: int = 1,
    min_range: float = 0.0,
    max_range: float = float("inf"),
) -> np.ndarray:
    """(N, 3) float32 points in the optical frame (REP 103: x right, y down, z forward).

    Every ``decimation``-th pixel in both directions is kept when its depth z (metres along
    the optical axis, REP 118) is finite and within [min_range, max_range].
    """
    if decimation < 1:
        raise ValueError(f"decimation must be >= 1, got {decimation}")
    if fx <= 0 or fy <= 0:
        raise ValueError(f"focal lengths must be positive, got fx={fx}, fy={fy}")
    z = np.asarray(depth, dtype=np.float32)[::decimation, ::decimation]
    v, u = np.mgrid[0 : depth.shape[0] : decimation, 0 : depth.shape[1] : decimation]
    keep = np.isfinite(z) & (z >= min_range) & (z <= max_range)
    z = z[keep]
    x = (u[keep].astype(np.float32) - np.float32(cx)) * z / np.float32(fx)
    y = (v[keep].astype(np.float32) - np.float32(cy)) * z / np.float32(fy)
    return np.stack([x, y, z], axis=1).astype(np.float32, copy=False)
