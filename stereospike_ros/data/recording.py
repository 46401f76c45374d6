"""A stereo event recording held in memory: what the simulator makes and every writer takes.

Readers stream instead (real MVSEC files are GBs); this type is for small recordings, tests
and the simulator, and fixes the units every format converts to and from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stereospike_ros.events.types import EVENT_DTYPE


@dataclass
class CameraCalibration:
    """ROS ``sensor_msgs/CameraInfo`` fields of one camera (row-major, as in the message)."""

    height: int
    width: int
    K: np.ndarray  # (3, 3) intrinsics of the raw (distorted) image
    D: np.ndarray  # (n,) distortion coefficients
    R: np.ndarray  # (3, 3) rectification rotation
    P: np.ndarray  # (3, 4) projection of the rectified image; P[0, 3] = -fx * baseline (right)
    distortion_model: str = "plumb_bob"
    frame_id: str = ""

    @classmethod
    def pinhole(
        cls,
        height: int,
        width: int,
        f: float,
        cx: float,
        cy: float,
        tx: float = 0.0,
        frame_id: str = "",
    ) -> CameraCalibration:
        """An already-rectified camera: no distortion, R = I, P = [K | (tx, 0, 0)]."""
        K = np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
        P = np.hstack([K, np.array([[tx], [0.0], [0.0]])])
        return cls(height, width, K, np.zeros(5), np.eye(3), P, "plumb_bob", frame_id)


@dataclass
class StereoRecording:
    """Left/right events (``EVENT_DTYPE``, t in ns, sorted by t), rectified left depth frames.

    ``depth`` is (M, H, W) float32 metres along the optical axis, NaN where unknown, stamped by
    ``depth_ts_ns``. Events are in raw sensor coordinates; the calibrations say how to rectify
    them (identity for the simulator, whose cameras are already rectified).
    """

    height: int
    width: int
    left_events: np.ndarray
    right_events: np.ndarray
    depth: np.ndarray
    depth_ts_ns: np.ndarray
    left_calibration: CameraCalibration
    right_calibration: CameraCalibration
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("left_events", "right_events"):
            if getattr(self, name).dtype != EVENT_DTYPE:
                raise TypeError(f"{name} must have EVENT_DTYPE, got {getattr(self, name).dtype}")
        if self.depth.shape[1:] != (self.height, self.width):
            raise ValueError(
                f"depth frames are {self.depth.shape[1:]}, expected {(self.height, self.width)}"
            )
        if len(self.depth) != len(self.depth_ts_ns):
            raise ValueError(f"{len(self.depth)} depth frames but {len(self.depth_ts_ns)} stamps")

    @property
    def focal_baseline(self) -> float:
        """f x B in px*m, from the right camera's projection (P[0, 3] = -f * B)."""
        return float(-self.right_calibration.P[0, 3])
