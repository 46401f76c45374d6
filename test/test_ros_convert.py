"""numpy <-> message conversions, checked through rclpy's own serializer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from stereospike_ros.data.recording import CameraCalibration
from stereospike_ros.ros import convert
from stereospike_ros.ros.errors import ConversionError


def _through_dds_bytes(msg: object) -> object:
    return deserialize_message(serialize_message(msg), type(msg))


@pytest.mark.parametrize("ns", [0, 1, 999_999_999, 1_000_000_000, 1_504_645_177_123_456_789, -1])
def test_ns_time_round_trip(ns):
    stamp = convert.ns_to_time(ns)
    assert 0 <= stamp.nanosec < 1_000_000_000
    assert convert.time_to_ns(_through_dds_bytes(stamp)) == ns


def test_ns_too_large_for_int32_seconds_is_refused():
    with pytest.raises(ConversionError, match="int32"):
        convert.ns_to_time(2**31 * 1_000_000_000)


@pytest.mark.parametrize(
    ("encoding", "array"),
    [
        ("32FC1", np.array([[1.5, np.nan], [np.inf, -2.0], [0.0, 7.25]], dtype=np.float32)),
        ("16UC1", np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000),
        ("rgb8", np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)),
        ("mono8", np.arange(6, dtype=np.uint8).reshape(2, 3)),
    ],
)
def test_image_round_trip_keeps_pixels_size_step_stamp_and_frame(encoding, array):
    msg = _through_dds_bytes(convert.image_from_array(array, encoding, 1_234_000_000_005, "cam"))
    assert (msg.height, msg.width, msg.encoding) == (array.shape[0], array.shape[1], encoding)
    assert msg.step == array.shape[1] * array.itemsize * (array.shape[2] if array.ndim == 3 else 1)
    assert (convert.time_to_ns(msg.header.stamp), msg.header.frame_id) == (1_234_000_000_005, "cam")
    np.testing.assert_array_equal(convert.image_to_array(msg), array)


def test_big_endian_image_with_row_padding_is_read_correctly():
    depth = np.array([[1.0, 2.5, np.nan], [4.0, 5.0, 6.5]], dtype=np.float32)
    step = 3 * 4 + 5  # five padding bytes per row
    rows = np.zeros((2, step), dtype=np.uint8)
    rows[:, :12] = depth.astype(">f4").view(np.uint8).reshape(2, 12)
    msg = Image(height=2, width=3, encoding="32FC1", is_bigendian=1, step=step)
    msg.data = rows.tobytes()
    np.testing.assert_array_equal(convert.depth_from_image(_through_dds_bytes(msg)), depth)


def test_16uc1_depth_is_millimetres_with_zero_as_nan():
    mm = np.array([[0, 1500], [65535, 250]], dtype=np.uint16)
    depth = convert.depth_from_image(convert.image_from_array(mm, "16UC1", 0, ""))
    np.testing.assert_array_equal(depth, np.array([[np.nan, 1.5], [65.535, 0.25]], np.float32))
    assert depth.dtype == np.float32


def test_bad_images_raise_conversion_errors_that_say_why():
    with pytest.raises(ConversionError, match="unsupported image encoding 'yuv422'"):
        convert.image_to_array(Image(height=1, width=1, encoding="yuv422", step=2, data=b"ab"))
    with pytest.raises(ConversionError, match="step 4 is smaller than a row"):
        convert.image_to_array(Image(height=1, width=2, encoding="32FC1", step=4, data=b"x" * 8))
    with pytest.raises(ConversionError, match="needs 16 bytes, got 8"):
        convert.image_to_array(Image(height=2, width=2, encoding="32FC1", step=8, data=b"x" * 8))
    with pytest.raises(ConversionError, match="not a depth image"):
        convert.depth_from_image(Image(height=1, width=1, encoding="rgb8", step=3, data=b"abc"))
    with pytest.raises(ConversionError, match=r"rgb8 needs an array of shape \(H, W, 3\)"):
        convert.image_from_array(np.zeros((2, 2)), "rgb8", 0, "")


def test_point_cloud_round_trip_and_layout():
    points = np.array([[0.0, 1.0, 2.0], [-1.5, 0.25, 9.0]], dtype=np.float32)
    msg = _through_dds_bytes(convert.point_cloud_from_xyz(points, 5, "optical"))
    assert isinstance(msg, PointCloud2)
    assert [f.name for f in msg.fields] == ["x", "y", "z"]
    assert all(f.datatype == PointField.FLOAT32 for f in msg.fields)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 2, 12, 24)
    assert msg.is_dense and msg.header.frame_id == "optical"
    np.testing.assert_array_equal(convert.point_cloud_to_xyz(msg), points)


def test_camera_info_round_trip_through_calibration():
    calib = CameraCalibration.pinhole(260, 346, 226.4, 173.0, 130.5, tx=-19.9, frame_id="right")
    calib.D = np.array([0.1, -0.02, 0.0, 0.0, 0.001])
    msg = _through_dds_bytes(convert.camera_info_from_calibration(calib, 7))
    assert isinstance(msg, CameraInfo) and msg.header.frame_id == "right"
    back = convert.calibration_from_camera_info(msg)
    for name in ("K", "D", "R", "P"):
        np.testing.assert_array_equal(getattr(back, name), getattr(calib, name))
    assert (back.height, back.width, back.distortion_model) == (260, 346, "plumb_bob")


def test_uncalibrated_camera_info_is_refused():
    msg = CameraInfo(height=10, width=10)
    msg.header.stamp = Time(sec=1)
    with pytest.raises(ConversionError, match="uncalibrated"):
        convert.calibration_from_camera_info(msg)
