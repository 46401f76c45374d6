"""Rectification lookup tables against OpenCV's own undistortion, MVSEC map files, identity."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stereospike_ros.data.recording import CameraCalibration
from stereospike_ros.events import EVENT_DTYPE, CalibrationError, Rectifier

H, W = 60, 80
K = np.array([[70.0, 0.0, 41.3], [0.0, 69.0, 29.7], [0.0, 0.0, 1.0]])
R = cv2.Rodrigues(np.array([0.02, -0.03, 0.01]))[0]
P = np.array([[65.0, 0.0, 39.0, -6.5], [0.0, 65.0, 31.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
MODELS = {
    "plumb_bob": np.array([-0.25, 0.08, 0.001, -0.002, 0.0]),
    "equidistant": np.array([-0.05, 0.01, -0.004, 0.001]),
}


def grid_events() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    events = np.zeros(H * W, dtype=EVENT_DTYPE)
    events["x"], events["y"] = x.ravel(), y.ravel()
    events["t"] = np.arange(H * W) * 10
    events["p"] = np.arange(H * W) % 2
    return events


def where_maps_send(rect: Rectifier, x: int, y: int) -> tuple[int, int] | None:
    """Rectified (x, y) of raw pixel (x, y) read from ``rect.maps()``; None off the image."""
    x_map, y_map = rect.maps()
    if not (0 <= x < rect.width and 0 <= y < rect.height) or np.isnan(x_map[y, x]):
        return None
    return int(x_map[y, x]), int(y_map[y, x])


@pytest.mark.parametrize("model", sorted(MODELS))
def test_camera_info_table_matches_opencv_undistort_points(model):
    rect = Rectifier.from_camera_info(H, W, K, MODELS[model], R, P, model)
    pixels = np.array([[0, 0], [79, 59], [40, 30], [5, 50], [70, 3]], dtype=np.float64)
    undistort = cv2.fisheye.undistortPoints if model == "equidistant" else cv2.undistortPoints
    expected = undistort(pixels[:, None, :], K, MODELS[model], R=R, P=P).reshape(-1, 2)
    for (x, y), (ex, ey) in zip(pixels.astype(int), expected, strict=True):
        got = where_maps_send(rect, int(x), int(y))
        inside = 0 <= round(ex) < W and 0 <= round(ey) < H
        assert got == ((round(ex), round(ey)) if inside else None), (model, x, y, ex, ey)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_rectified_pixels_map_back_to_their_raw_pixel_through_opencv_maps(model):
    # initUndistortRectifyMap goes the other way (rectified -> raw): an independent check
    rect = Rectifier.from_camera_info(H, W, K, MODELS[model], R, P, model)
    init = (
        cv2.fisheye.initUndistortRectifyMap
        if model == "equidistant"
        else cv2.initUndistortRectifyMap
    )
    map_x, map_y = init(K, MODELS[model], R, P, (W, H), cv2.CV_32FC1)
    out = rect(grid_events())
    raw_x = grid_events()["x"][out["t"] // 10]
    raw_y = grid_events()["y"][out["t"] // 10]
    back_x = map_x[out["y"], out["x"]]
    back_y = map_y[out["y"], out["x"]]
    # rounding to the nearest rectified pixel moves at most half a pixel, ~ scale 1 here
    assert np.abs(back_x - raw_x).max() < 1.0
    assert np.abs(back_y - raw_y).max() < 1.0
    assert len(out) > 0.8 * H * W
    assert rect.dropped == H * W - len(out) == rect.last_dropped


def test_calibration_objects_are_accepted_duck_typed():
    calib = CameraCalibration(H, W, K, MODELS["plumb_bob"], R, P, "plumb_bob")
    a = Rectifier.from_calibration(calib)(grid_events())
    b = Rectifier.from_camera_info(H, W, K, MODELS["plumb_bob"], R, P)(grid_events())
    np.testing.assert_array_equal(a, b)
    pinhole = CameraCalibration.pinhole(H, W, f=50.0, cx=40.0, cy=30.0)
    np.testing.assert_array_equal(Rectifier.from_calibration(pinhole)(grid_events()), grid_events())


def test_identity_keeps_events_and_drops_off_sensor_ones():
    events = grid_events()[:10].copy()
    events["x"][3] = W  # off the sensor
    events["y"][7] = 1000
    rect = Rectifier.identity(H, W)
    out = rect(events)
    assert rect.last_dropped == 2 and rect.dropped == 2
    np.testing.assert_array_equal(out, np.delete(events, [3, 7]))
    rect(events)
    assert rect.dropped == 4


def test_inplace_rewrites_the_given_array():
    events = grid_events()[:5].copy()
    x_map = np.add.outer(np.zeros(H), np.arange(W) + 1.4)  # x -> x + 1 (rounded)
    y_map = np.add.outer(np.arange(H), np.zeros(W))
    out = Rectifier.from_maps(x_map, y_map)(events, inplace=True)
    assert np.shares_memory(out, events)
    assert events["x"].tolist() == [1, 2, 3, 4, 5]


def test_mvsec_map_files_give_rectified_coordinates_of_raw_pixels(tmp_path):
    rng = np.random.default_rng(0)
    x_map = np.add.outer(np.zeros(H), np.arange(W, dtype=float)) + rng.uniform(-3, 3, (H, W))
    y_map = np.add.outer(np.arange(H, dtype=float), np.zeros(W)) + rng.uniform(-3, 3, (H, W))
    np.savetxt(tmp_path / "left_x_map.txt", x_map)
    np.savetxt(tmp_path / "left_y_map.txt", y_map, delimiter=",")
    rect = Rectifier.from_mvsec_maps(tmp_path / "left_x_map.txt", tmp_path / "left_y_map.txt")
    events = grid_events()
    out = rect(events)
    src = events[out["t"] // 10]
    np.testing.assert_array_equal(out["x"], np.floor(x_map[src["y"], src["x"]] + 0.5).astype(int))
    np.testing.assert_array_equal(out["y"], np.floor(y_map[src["y"], src["x"]] + 0.5).astype(int))
    rx, ry = np.floor(x_map + 0.5), np.floor(y_map + 0.5)
    outside = (rx < 0) | (rx >= W) | (ry < 0) | (ry >= H)
    assert rect.dropped == int(outside.sum()) > 0
    np.testing.assert_array_equal(out["p"], src["p"])


def test_bad_calibrations_raise_calibration_error(tmp_path):
    with pytest.raises(CalibrationError, match="of one shape"):
        Rectifier.from_maps(np.zeros((3, 4)), np.zeros((4, 3)))
    with pytest.raises(CalibrationError, match="K must have 3x3"):
        Rectifier.from_camera_info(H, W, np.eye(2), MODELS["plumb_bob"], R, P)
    with pytest.raises(CalibrationError, match="equidistant takes"):
        Rectifier.from_camera_info(H, W, K, MODELS["plumb_bob"], R, P, "equidistant")
    with pytest.raises(CalibrationError, match="'kannala'"):
        Rectifier.from_camera_info(H, W, K, MODELS["plumb_bob"], R, P, "kannala")
    (tmp_path / "bad.txt").write_text("1 2 3\n4 5\n")
    with pytest.raises(CalibrationError, match=r"bad\.txt: rows have different lengths"):
        Rectifier.from_mvsec_maps(tmp_path / "bad.txt", tmp_path / "bad.txt")
    with pytest.raises(CalibrationError, match=r"missing\.txt"):
        Rectifier.from_mvsec_maps(tmp_path / "missing.txt", tmp_path / "bad.txt")
    with pytest.raises(CalibrationError, match="lacks a field"):
        Rectifier.from_calibration(object())


def test_large_batches_copy_and_inplace_agree_with_the_per_pixel_maps():
    rng = np.random.default_rng(1)
    n = 200_000  # several internal chunks
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"], events["y"] = rng.integers(0, W + 3, n), rng.integers(0, H + 3, n)
    events["t"], events["p"] = np.arange(n), rng.integers(0, 2, n)
    rect = Rectifier.from_camera_info(H, W, K, MODELS["equidistant"], R, P, "equidistant")
    copied = rect(events)
    x_map, y_map = rect.maps()
    expected = [
        None if x >= W or y >= H or np.isnan(x_map[y, x]) else (int(x_map[y, x]), int(y_map[y, x]))
        for x, y in zip(events["x"][:3000].tolist(), events["y"][:3000].tolist(), strict=True)
    ]
    kept = [i for i, px in enumerate(expected) if px is not None]
    head = copied[copied["t"] < 3000]
    assert head["t"].tolist() == kept
    assert list(zip(head["x"].tolist(), head["y"].tolist(), strict=True)) == [
        expected[i] for i in kept
    ]
    original = events.copy()
    inplace = rect(events, inplace=True)
    np.testing.assert_array_equal(inplace, copied)
    np.testing.assert_array_equal(inplace["p"], original["p"][copied["t"]])


@pytest.mark.parametrize("size", [(H, W), (260, 346), (511, 512), (1, 1)])
def test_any_uint16_coordinate_off_the_sensor_is_dropped_never_aliased(size):
    h, w = size
    rect = Rectifier.identity(h, w)
    edges = [0, w - 1, w, w + 1, 511, 512, 513, 1023, 1024, 32768, 65535]
    rows = [0, h - 1, h, h + 1, 511, 512, 1024, 65535]
    x, y = np.meshgrid(edges, rows)
    events = np.zeros(x.size, dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"] = x.ravel(), y.ravel(), np.arange(x.size)
    inside = (events["x"] < w) & (events["y"] < h)
    for batch in (events, np.tile(events, 7000)):  # one chunk, and several with mixed paths
        out = rect(batch)
        np.testing.assert_array_equal(out, batch[np.tile(inside, len(batch) // len(events))])
        assert rect.last_dropped == len(batch) - len(out)
