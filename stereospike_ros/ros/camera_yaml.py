"""Camera calibration files in the ROS ``camera_calibration_parsers`` YAML layout.

That is what ``cameracalibrator`` writes and camera drivers load (``camera_info_url``), so a
robot's existing calibration files can rectify events without a camera_info topic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from stereospike_ros.data.recording import CameraCalibration
from stereospike_ros.ros.errors import StartupError

__all__ = ["load_camera_yaml", "save_camera_yaml"]

_MATRICES = {
    "camera_matrix": (3, 3),
    "rectification_matrix": (3, 3),
    "projection_matrix": (3, 4),
}


def _matrix(doc: dict, key: str, path: Path, shape: tuple[int, int] | None) -> np.ndarray:
    entry = doc.get(key)
    if not isinstance(entry, dict) or "data" not in entry:
        raise StartupError(f"{path}: '{key}' with 'data' is missing")
    data = np.asarray(entry["data"], dtype=float)
    if shape is None:
        return data.ravel()
    if data.size != shape[0] * shape[1]:
        raise StartupError(f"{path}: '{key}' has {data.size} values, expected {shape}")
    return data.reshape(shape)


def load_camera_yaml(path: str | Path) -> CameraCalibration:
    """Read one camera's calibration; errors name the file and the missing or bad key."""
    path = Path(path).expanduser()
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as err:
        raise StartupError(f"cannot read calibration file {path}: {err}") from err
    except yaml.YAMLError as err:
        raise StartupError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(doc, dict):
        raise StartupError(f"{path} is not a camera calibration (expected a mapping)")
    for key in ("image_width", "image_height"):
        if not isinstance(doc.get(key), int):
            raise StartupError(f"{path}: integer '{key}' is missing")
    return CameraCalibration(
        height=doc["image_height"],
        width=doc["image_width"],
        K=_matrix(doc, "camera_matrix", path, _MATRICES["camera_matrix"]),
        D=_matrix(doc, "distortion_coefficients", path, None),
        R=_matrix(doc, "rectification_matrix", path, _MATRICES["rectification_matrix"]),
        P=_matrix(doc, "projection_matrix", path, _MATRICES["projection_matrix"]),
        distortion_model=str(doc.get("distortion_model", "plumb_bob")),
        frame_id=str(doc.get("camera_name", "")),
    )


def save_camera_yaml(calibration: CameraCalibration, path: str | Path, name: str = "") -> None:
    """Write ``calibration`` in the same layout (used by tests and by the demo)."""

    def block(values: np.ndarray, rows: int, cols: int) -> dict:
        return {"rows": rows, "cols": cols, "data": [float(v) for v in np.ravel(values)]}

    D = np.ravel(calibration.D)
    doc = {
        "image_width": int(calibration.width),
        "image_height": int(calibration.height),
        "camera_name": name or calibration.frame_id,
        "camera_matrix": block(calibration.K, 3, 3),
        "distortion_model": calibration.distortion_model,
        "distortion_coefficients": block(D, 1, len(D)),
        "rectification_matrix": block(calibration.R, 3, 3),
        "projection_matrix": block(calibration.P, 3, 4),
    }
    Path(path).write_text(yaml.safe_dump(doc, sort_keys=False))
