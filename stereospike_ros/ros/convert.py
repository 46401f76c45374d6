"""numpy <-> ROS 2 message conversions, without cv_bridge (not installable with the PyPI wheels).

Everything here is vectorized: image payloads go in and out as one ``array.array`` built from
the numpy buffer, never through a Python list of pixels.
"""

from __future__ import annotations

import array
import sys

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from stereospike_ros.data.recording import CameraCalibration
from stereospike_ros.ros.errors import ConversionError

__all__ = [
    "calibration_from_camera_info",
    "camera_info_from_calibration",
    "depth_from_image",
    "image_from_array",
    "image_to_array",
    "ns_to_time",
    "point_cloud_from_xyz",
    "point_cloud_to_xyz",
    "rectifier_from_image",
    "time_to_ns",
]

#: encoding -> (numpy dtype without byte order, channels)
IMAGE_ENCODINGS: dict[str, tuple[str, int]] = {
    "32FC1": ("f4", 1),
    "64FC1": ("f8", 1),
    "16UC1": ("u2", 1),
    "mono16": ("u2", 1),
    "16SC1": ("i2", 1),
    "32SC1": ("i4", 1),
    "8UC1": ("u1", 1),
    "mono8": ("u1", 1),
    "rgb8": ("u1", 3),
    "bgr8": ("u1", 3),
    "8UC3": ("u1", 3),
    "rgba8": ("u1", 4),
    "bgra8": ("u1", 4),
    "32FC2": ("f4", 2),
    "32FC3": ("f4", 3),
}

_NATIVE_BIG_ENDIAN = sys.byteorder == "big"


def ns_to_time(ns: int) -> Time:
    """Nanoseconds -> builtin_interfaces/Time (negative times floor to the earlier second)."""
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    if not -(2**31) <= sec < 2**31:
        raise ConversionError(f"time {ns} ns does not fit builtin_interfaces/Time (int32 sec)")
    return Time(sec=sec, nanosec=nanosec)


def time_to_ns(stamp: Time) -> int:
    """builtin_interfaces/Time -> nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _byte_array(data: np.ndarray) -> array.array:
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(data).tobytes())
    return out


def image_from_array(data: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Image:
    """A sensor_msgs/Image of ``data`` ((H, W) or (H, W, C)) in native byte order, dense step."""
    if encoding not in IMAGE_ENCODINGS:
        raise ConversionError(
            f"unsupported image encoding {encoding!r}; supported: {sorted(IMAGE_ENCODINGS)}"
        )
    kind, channels = IMAGE_ENCODINGS[encoding]
    data = np.asarray(data)
    expected_ndim = 2 if channels == 1 else 3
    if data.ndim == 3 and channels == 1 and data.shape[2] == 1:
        data = data[:, :, 0]
    if data.ndim != expected_ndim or (channels > 1 and data.shape[2] != channels):
        raise ConversionError(
            f"{encoding} needs an array of shape (H, W{'' if channels == 1 else f', {channels}'})"
            f", got {data.shape}"
        )
    data = data.astype(np.dtype(kind).newbyteorder("="), copy=False)
    height, width = data.shape[:2]
    msg = Image()
    msg.header.stamp = ns_to_time(stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(height), int(width)
    msg.encoding = encoding
    msg.is_bigendian = int(_NATIVE_BIG_ENDIAN)
    msg.step = int(width * channels * data.dtype.itemsize)
    msg.data = _byte_array(data)
    return msg


def image_to_array(msg: Image) -> np.ndarray:
    """The pixels of a sensor_msgs/Image as (H, W) or (H, W, C), native byte order, any step.

    Rows may carry padding (``step`` larger than a packed row); big-endian payloads are swapped.
    """
    if msg.encoding not in IMAGE_ENCODINGS:
        raise ConversionError(
            f"unsupported image encoding {msg.encoding!r}; supported: {sorted(IMAGE_ENCODINGS)}"
        )
    kind, channels = IMAGE_ENCODINGS[msg.encoding]
    dtype = np.dtype(kind).newbyteorder(">" if msg.is_bigendian else "<")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ConversionError(
            f"{msg.encoding} image {width}x{height}: step {step} is smaller than a row "
            f"({row_bytes} bytes)"
        )
    buf = np.frombuffer(memoryview(msg.data).cast("B"), dtype=np.uint8)
    if len(buf) < step * height:
        raise ConversionError(
            f"{msg.encoding} image {width}x{height} with step {step} needs {step * height} "
            f"bytes, got {len(buf)}"
        )
    rows = buf[: step * height].reshape(height, step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(dtype)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return pixels.reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def depth_from_image(msg: Image) -> np.ndarray:
    """Depth in float32 metres from 32FC1/64FC1 (metres) or 16UC1 (millimetres, 0 = no data).

    REP 118: floating point images are metres; integer depth is millimetres with 0 invalid,
    which becomes NaN here so that every consumer sees one convention (REP 117).
    """
    if msg.encoding in ("32FC1", "64FC1"):
        return image_to_array(msg).astype(np.float32, copy=False)
    if msg.encoding in ("16UC1", "mono16"):
        mm = image_to_array(msg)
        depth = mm.astype(np.float32) / 1000.0
        depth[mm == 0] = np.nan
        return depth
    raise ConversionError(
        f"image with encoding {msg.encoding!r} is not a depth image (32FC1, 64FC1 or 16UC1)"
    )


def rectifier_from_image(msg: Image) -> object:
    """A ``Rectifier`` from a 32FC2 image of rectified (x, y) per raw pixel (NaN = dropped),
    as the event player publishes the recording's rectification."""
    from stereospike_ros.events import EventsError, Rectifier

    if msg.encoding != "32FC2":
        raise ConversionError(f"rectification maps must be 32FC2, got {msg.encoding!r}")
    maps = image_to_array(msg)
    try:
        return Rectifier.from_maps(maps[..., 0], maps[..., 1], source="rectification maps")
    except EventsError as err:
        raise ConversionError(f"bad rectification maps: {err}") from err


def point_cloud_from_xyz(points: np.ndarray, stamp_ns: int, frame_id: str) -> PointCloud2:
    """An unorganized PointCloud2 (x, y, z float32) from an (N, 3) array of finite points."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ConversionError(f"points must be an (N, 3) array, got {points.shape}")
    xyz = np.ascontiguousarray(points, dtype=np.dtype("f4").newbyteorder("="))
    msg = PointCloud2()
    msg.header.stamp = ns_to_time(stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = 1, len(xyz)
    msg.fields = [
        PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
        for i, name in enumerate("xyz")
    ]
    msg.is_bigendian = _NATIVE_BIG_ENDIAN
    msg.point_step = 12
    msg.row_step = 12 * len(xyz)
    msg.is_dense = bool(np.isfinite(xyz).all())
    msg.data = _byte_array(xyz)
    return msg


def point_cloud_to_xyz(msg: PointCloud2) -> np.ndarray:
    """(N, 3) float32 x, y, z of any PointCloud2 whose x, y, z fields are FLOAT32."""
    offsets = {}
    for field in msg.fields:
        if field.name in ("x", "y", "z"):
            if field.datatype != PointField.FLOAT32:
                raise ConversionError(f"PointCloud2 field {field.name!r} is not FLOAT32")
            offsets[field.name] = field.offset
    if set(offsets) != {"x", "y", "z"}:
        raise ConversionError(f"PointCloud2 lacks x/y/z fields (has {sorted(offsets)})")
    n = int(msg.width) * int(msg.height)
    endian = ">" if msg.is_bigendian else "<"
    dtype = np.dtype(
        {
            "names": ["x", "y", "z"],
            "formats": [endian + "f4"] * 3,
            "offsets": [offsets["x"], offsets["y"], offsets["z"]],
            "itemsize": int(msg.point_step),
        }
    )
    buf = bytes(msg.data)
    if len(buf) < n * msg.point_step:
        raise ConversionError(
            f"PointCloud2 of {n} points x {msg.point_step} bytes has only {len(buf)} bytes"
        )
    rec = np.frombuffer(buf, dtype=dtype, count=n)
    return np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float32)


def camera_info_from_calibration(
    calibration: CameraCalibration, stamp_ns: int, frame_id: str | None = None
) -> CameraInfo:
    """CameraInfo carrying a calibration (frame_id: the argument, else the calibration's)."""
    msg = CameraInfo()
    msg.header.stamp = ns_to_time(stamp_ns)
    msg.header.frame_id = calibration.frame_id if frame_id is None else frame_id
    msg.height, msg.width = int(calibration.height), int(calibration.width)
    msg.distortion_model = calibration.distortion_model
    msg.d = [float(v) for v in np.asarray(calibration.D, dtype=float).ravel()]
    msg.k = np.asarray(calibration.K, dtype=float).reshape(9)
    msg.r = np.asarray(calibration.R, dtype=float).reshape(9)
    msg.p = np.asarray(calibration.P, dtype=float).reshape(12)
    return msg


def calibration_from_camera_info(msg: CameraInfo) -> CameraCalibration:
    """The calibration a CameraInfo carries; refuses an uncalibrated one (all-zero K or P)."""
    K = np.asarray(msg.k, dtype=float).reshape(3, 3)
    P = np.asarray(msg.p, dtype=float).reshape(3, 4)
    if not K.any() or not P.any():
        raise ConversionError(
            f"CameraInfo (frame_id {msg.header.frame_id!r}) is uncalibrated: K or P is all zero"
        )
    R = np.asarray(msg.r, dtype=float).reshape(3, 3)
    if not R.any():
        R = np.eye(3)
    return CameraCalibration(
        height=int(msg.height),
        width=int(msg.width),
        K=K,
        D=np.asarray(msg.d, dtype=float),
        R=R,
        P=P,
        distortion_model=msg.distortion_model or "plumb_bob",
        frame_id=msg.header.frame_id,
    )
