"""The nodes' plain helpers, without a ROS graph: mailbox, stamp pairing, clock offset, pictures,
calibration files, and the player's message slots over a real HDF5 recording."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from stereospike_ros.data.recording import CameraCalibration, StereoRecording
from stereospike_ros.events.cdr import read_header_stamp_ns
from stereospike_ros.events.errors import DecodeError
from stereospike_ros.events.types import EVENT_DTYPE
from stereospike_ros.ros.camera_yaml import load_camera_yaml, save_camera_yaml
from stereospike_ros.ros.errors import PlayerError, StartupError
from stereospike_ros.ros.sync import ClockOffset, LatestSlot, StampMatcher
from stereospike_ros.ros.visualize import (
    BOTH_RGB,
    OFF_RGB,
    ON_RGB,
    colorize_depth,
    depth_to_points,
    events_to_rgb,
)


def test_latest_slot_keeps_the_newest_item_and_counts_the_skipped():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.put(3) is True
    assert slot.take(timeout=0) == 3
    assert slot.take(timeout=0) is None
    assert (slot.put_count, slot.skipped) == (3, 2)


def test_latest_slot_wakes_a_waiting_taker_on_put_and_on_close():
    slot: LatestSlot[str] = LatestSlot()
    got: list[object] = []
    taker = threading.Thread(target=lambda: got.append(slot.take(timeout=10)))
    taker.start()
    slot.put("window")
    taker.join(timeout=5)
    assert got == ["window"]
    taker = threading.Thread(target=lambda: got.append(slot.take(timeout=10)))
    taker.start()
    slot.close()
    taker.join(timeout=5)
    assert not taker.is_alive() and got[-1] is None


def test_stamp_matcher_pairs_exact_stamps_in_either_arrival_order():
    matcher: StampMatcher[str, str] = StampMatcher(tolerance_ns=0)
    assert matcher.add_b(100, "gt100") == []
    assert matcher.add_a(100, "p100") == [(100, "p100", "gt100")]
    assert matcher.add_a(150, "p150") == []
    assert matcher.add_b(150, "gt150") == [(150, "p150", "gt150")]
    assert matcher.pending == (0, 0)


def test_stamp_matcher_uses_tolerance_and_expires_what_can_no_longer_pair():
    matcher: StampMatcher[str, str] = StampMatcher(tolerance_ns=5)
    matcher.add_b(100, "gt100")  # never predicted (the node skipped that window)
    matcher.add_b(200, "gt200")
    assert matcher.add_a(203, "p203") == [(203, "p203", "gt200")]
    assert matcher.unmatched_b == 1 and matcher.pending == (0, 0)
    assert matcher.add_a(300, "p300") == []
    matcher.add_b(400, "gt400")
    assert matcher.unmatched_a == 1


def test_clock_offset_is_zero_for_wall_clock_stamps_and_the_floor_otherwise():
    live = ClockOffset(clock=lambda: 1000.0)
    live.observe(int(999.99e9), arrival_wall_s=1000.0)
    assert live.same_clock and live.offset_s() == 0.0
    assert live.latency_s(int(999.9e9), wall_s=1000.0) == pytest.approx(0.1)

    replay = ClockOffset(horizon_s=2.0)
    for (
        wall,
        sensor,
    ) in ((100.0, 5.00), (100.1, 5.08), (100.2, 5.19)):
        replay.observe(int(sensor * 1e9), arrival_wall_s=wall)
    assert replay.same_clock is False
    assert replay.offset_s() == pytest.approx(95.0)  # smallest arrival - event time
    assert replay.latency_s(int(5.15e9), wall_s=100.3) == pytest.approx(0.15)
    replay.observe(int(9.0e9), arrival_wall_s=110.0)  # old samples leave the horizon
    assert replay.offset_s() == pytest.approx(101.0)


def test_header_stamp_is_read_from_serialized_image_bytes():
    pytest.importorskip("rclpy")
    from rclpy.serialization import serialize_message

    from stereospike_ros.ros.convert import image_from_array

    msg = image_from_array(np.zeros((4, 5), np.float32), "32FC1", 1_504_645_177_050_000_123, "f")
    assert read_header_stamp_ns(serialize_message(msg)) == 1_504_645_177_050_000_123
    with pytest.raises(DecodeError, match="too short"):
        read_header_stamp_ns(b"\x00\x01\x00\x00")
    with pytest.raises(DecodeError, match="encapsulation"):
        read_header_stamp_ns(b"\x07\x07" + bytes(20))


def test_colorize_depth_uses_a_fixed_scale_and_blacks_out_invalid_pixels():
    depth = np.array([[0.5, 10.0, 50.0], [np.nan, np.inf, 0.1]], dtype=np.float32)
    rgb = colorize_depth(depth, 0.5, 10.0)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[1, 0], [0, 0, 0])
    np.testing.assert_array_equal(rgb[1, 1], [0, 0, 0])
    np.testing.assert_array_equal(rgb[0, 1], rgb[0, 2])  # clamped at the far end
    np.testing.assert_array_equal(rgb[0, 0], rgb[1, 2])  # clamped at the near end
    assert rgb[0, 0, 0] > rgb[0, 0, 2] and rgb[0, 1, 2] > rgb[0, 1, 0]  # near red, far blue
    with pytest.raises(ValueError, match="max_depth"):
        colorize_depth(depth, 5.0, 5.0)


def test_events_image_colours_on_red_off_blue_both_pink():
    hist = np.zeros((2, 2, 2), dtype=np.uint16)
    hist[0, 0, 0] = 3  # ON only
    hist[1, 0, 1] = 1  # OFF only
    hist[:, 1, 0] = 2  # both
    rgb = events_to_rgb(hist)
    assert [tuple(rgb[0, 0]), tuple(rgb[0, 1]), tuple(rgb[1, 0]), tuple(rgb[1, 1])] == [
        ON_RGB,
        OFF_RGB,
        BOTH_RGB,
        (0, 0, 0),
    ]


def test_depth_to_points_back_projects_through_the_pinhole():
    depth = np.full((6, 8), 2.0, dtype=np.float32)
    depth[0, 0] = np.nan
    depth[2, 4] = 20.0
    points = depth_to_points(depth, fx=4.0, fy=5.0, cx=3.0, cy=2.0, max_range=10.0)
    assert len(points) == 6 * 8 - 2
    # Pixel (u=7, v=5) at z=2: x = (7-3)*2/4 = 2, y = (5-2)*2/5 = 1.2
    assert any(np.allclose(p, [2.0, 1.2, 2.0]) for p in points)
    decimated = depth_to_points(depth, 4.0, 5.0, 3.0, 2.0, decimation=2)
    assert len(decimated) == 3 * 4 - 1  # (0, 0) is NaN


def test_camera_yaml_round_trip_and_errors_name_the_file(tmp_path):
    calib = CameraCalibration.pinhole(260, 346, 226.0, 173.0, 130.0, tx=-19.9)
    calib.distortion_model, calib.D = "equidistant", np.array([0.1, 0.01, -0.002, 0.0003])
    path = tmp_path / "left.yaml"
    save_camera_yaml(calib, path, name="davis_left")
    back = load_camera_yaml(path)
    for name in ("K", "D", "R", "P"):
        np.testing.assert_array_equal(getattr(back, name), getattr(calib, name))
    assert (back.distortion_model, back.frame_id) == ("equidistant", "davis_left")
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("projection_matrix", "projection"))
    with pytest.raises(StartupError, match=r"bad\.yaml: 'projection_matrix'"):
        load_camera_yaml(bad)
    with pytest.raises(StartupError, match=r"missing\.yaml"):
        load_camera_yaml(tmp_path / "missing.yaml")


def _recording(n: int = 3000, frames: int = 4) -> StereoRecording:
    rng = np.random.default_rng(0)
    sides = []
    for _ in range(2):
        ev = np.zeros(n, dtype=EVENT_DTYPE)
        ev["x"], ev["y"] = rng.integers(0, 40, n), rng.integers(0, 30, n)
        ev["t"] = np.sort(rng.integers(0, 200_000_000, n))
        ev["p"] = rng.integers(0, 2, n)
        sides.append(ev)
    depth = rng.uniform(1, 5, (frames, 30, 40)).astype(np.float32)
    stamps = np.arange(1, frames + 1, dtype=np.int64) * 50_000_000
    calib = CameraCalibration.pinhole(30, 40, 30.0, 20.0, 15.0)
    return StereoRecording(30, 40, sides[0], sides[1], depth, stamps, calib, calib)


def test_player_slots_carry_every_event_once_in_order_and_depth_in_its_slot(tmp_path):
    from stereospike_ros.data.mvsec_hdf5 import write_mvsec_hdf5
    from stereospike_ros.data.open import open_sequence
    from stereospike_ros.ros.playback import slots

    rec = _recording()
    write_mvsec_hdf5(rec, tmp_path / "r_data.hdf5", tmp_path / "r_gt.hdf5")
    sequence = open_sequence(tmp_path / "r_data.hdf5")
    got = list(slots(sequence, message_ns=5_000_000, chunk_size=700))
    for side in ("left", "right"):
        events = np.concatenate([getattr(s, side) for s in got])
        np.testing.assert_array_equal(events, getattr(rec, f"{side}_events"))
    for s in got:
        assert s.t_end_ns - s.t_start_ns == 5_000_000
        for side in ("left", "right"):
            t = getattr(s, side)["t"]
            assert ((t >= s.t_start_ns) & (t < s.t_end_ns)).all()
        assert all(s.t_start_ns <= stamp < s.t_end_ns for stamp, _ in s.depth)
    stamps = [stamp for s in got for stamp, _ in s.depth]
    assert stamps == rec.depth_ts_ns.tolist()
    np.testing.assert_array_equal(got[-1].depth[-1][1], rec.depth[-1])
    with pytest.raises(PlayerError, match="positive"):
        next(slots(sequence, message_ns=0))
    sequence.close()
