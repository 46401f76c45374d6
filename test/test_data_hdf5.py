"""MVSEC HDF5: the exact layout, chunked streaming, time precision, calibration maps."""

from __future__ import annotations

from fractions import Fraction

import h5py
import numpy as np
import pytest
from data_helpers import tiny_recording

from stereospike_ros.data import mvsec_hdf5
from stereospike_ros.data.frames import iter_frames
from stereospike_ros.data.mvsec_hdf5 import (
    MvsecHdf5Sequence,
    ns_to_seconds,
    seconds_to_ns,
    write_mvsec_hdf5,
)
from stereospike_ros.data.open import open_sequence
from stereospike_ros.events.histogram import event_histogram


@pytest.fixture
def written(tmp_path):
    rec = tiny_recording(seed=3)
    write_mvsec_hdf5(rec, tmp_path / "rec_data.hdf5", tmp_path / "rec_gt.hdf5", chunk_rows=256)
    return rec, tmp_path


def test_writer_produces_the_mvsec_layout(written):
    rec, folder = written
    with h5py.File(folder / "rec_data.hdf5") as f:
        for side in ("left", "right"):
            ds = f[f"davis/{side}/events"]
            events = getattr(rec, f"{side}_events")
            assert ds.dtype == np.float64 and ds.shape == (len(events), 4)
            assert ds.chunks == (256, 4)
            np.testing.assert_array_equal(ds[:, 0], events["x"])
            assert set(np.unique(ds[:, 3])) == {-1.0, 1.0}
            np.testing.assert_array_equal(ds[:, 3] > 0, events["p"] == 1)
            np.testing.assert_allclose(ds[:, 2], events["t"] / 1e9, rtol=0, atol=1e-12)
    with h5py.File(folder / "rec_gt.hdf5") as f:
        depth = f["davis/left/depth_image_rect"]
        assert depth.dtype == np.float32 and depth.shape == rec.depth.shape
        assert depth.chunks == (1, rec.height, rec.width)
        np.testing.assert_array_equal(
            f["davis/left/depth_image_rect_ts"][()], rec.depth_ts_ns / 1e9
        )
        assert f["davis/left/depth_image_raw"].id == depth.id  # hard link, no second copy
        assert "davis/left/depth_image_raw_ts" in f


def test_events_stream_back_identically_in_any_chunk_size(written):
    rec, folder = written
    with MvsecHdf5Sequence(folder / "rec_data.hdf5", folder / "rec_gt.hdf5") as seq:
        assert (seq.height, seq.width, seq.name) == (rec.height, rec.width, "rec")
        for side in ("left", "right"):
            chunks = list(seq.iter_events(side, chunk_size=97))
            assert max(len(c) for c in chunks) == 97
            np.testing.assert_array_equal(np.concatenate(chunks), getattr(rec, f"{side}_events"))
        assert seq.num_events("right") == len(rec.right_events)


@pytest.mark.parametrize("bounds", [(0, 1), (10, 4000), (1234, 1235), (5000, 10**12)])
def test_events_between_binary_searches_the_time_column(written, bounds):
    rec, folder = written
    t = rec.left_events["t"]
    t0 = int(t[min(bounds[0], len(t) - 1)])
    t1 = int(t[bounds[1]]) if bounds[1] < len(t) else bounds[1]
    with MvsecHdf5Sequence(folder / "rec_data.hdf5", folder / "rec_gt.hdf5") as seq:
        got = seq.events_between("left", t0, t1)
    np.testing.assert_array_equal(got, rec.left_events[(t >= t0) & (t < t1)])


def test_depth_frames_and_stamps_read_back(written):
    rec, folder = written
    with open_sequence(folder / "rec_data.hdf5") as seq:  # finds rec_gt.hdf5 beside it
        np.testing.assert_array_equal(seq.depth_stamps(), rec.depth_ts_ns)
        frames = list(seq.depth_frames([0, 5, 7]))
    assert [f.index for f in frames] == [0, 5, 7]
    for f in frames:
        assert f.t_ns == rec.depth_ts_ns[f.index]
        np.testing.assert_array_equal(f.depth, rec.depth[f.index])


def test_calibration_travels_with_the_file(written):
    rec, folder = written
    with open_sequence(folder / "rec") as seq:
        calib = seq.calibration("right")
    np.testing.assert_array_equal(calib.P, rec.right_calibration.P)
    assert calib.frame_id == "right" and calib.distortion_model == "plumb_bob"


def test_seconds_to_ns_rounds_the_stored_float_exactly_at_unix_times():
    rng = np.random.default_rng(0)
    t_s = 1.5e9 + rng.uniform(0, 3600, 2000)
    got = seconds_to_ns(t_s)
    exact = [round(Fraction(float(v)) * 10**9) for v in t_s]
    assert got.tolist() == exact
    # the naive float product is off by up to 128 ns at these magnitudes
    assert np.abs((t_s * 1e9).astype(np.int64) - got).max() > 0


def test_unix_time_recordings_lose_only_float64_precision(tmp_path):
    rec = tiny_recording(t0_ns=1_504_643_712_123_456_789)
    write_mvsec_hdf5(rec, tmp_path / "u_data.hdf5", tmp_path / "u_gt.hdf5")
    with open_sequence(tmp_path / "u") as seq:
        t = np.concatenate(list(seq.iter_events("left")))["t"]
    err = t - rec.left_events["t"]
    assert np.abs(err).max() <= 120  # half the 0.24 us spacing of float64 at 1.5e9 s
    assert (np.diff(t) >= 0).all()


def test_small_times_round_trip_to_the_nanosecond():
    t = np.array([0, 1, 999_999_999, 1_000_000_001, 123_456_789_012_345], dtype=np.int64)
    np.testing.assert_array_equal(seconds_to_ns(ns_to_seconds(t)), t)


def _write_plain_mvsec(folder, rec, name="indoor_flying1"):
    """A file laid out as MVSEC's own (contiguous, no camera_info), written with h5py alone."""
    with h5py.File(folder / f"{name}_data.hdf5", "w") as f:
        for side in ("left", "right"):
            ev = getattr(rec, f"{side}_events")
            rows = np.stack([ev["x"], ev["y"], ev["t"] / 1e9, np.where(ev["p"], 1, -1)], axis=1)
            f[f"davis/{side}/events"] = rows.astype(np.float64)
            f[f"davis/{side}/image_raw"] = np.zeros((2, rec.height, rec.width), np.uint8)
    with h5py.File(folder / f"{name}_gt.hdf5", "w") as f:
        f["davis/left/depth_image_rect"] = rec.depth
        f["davis/left/depth_image_rect_ts"] = rec.depth_ts_ns / 1e9


def test_reads_a_plain_mvsec_file_and_uses_the_maps_beside_it(tmp_path):
    rec = tiny_recording(seed=5)
    _write_plain_mvsec(tmp_path, rec)
    h, w = rec.height, rec.width
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    for side, shift in (("left", 2.0), ("right", -1.0)):
        np.savetxt(tmp_path / f"indoor_flying_{side}_x_map.txt", x + shift)
        np.savetxt(tmp_path / f"indoor_flying_{side}_y_map.txt", y)
    with open_sequence(tmp_path / "indoor_flying1") as seq:
        assert seq.calibration("left") is None
        frames = list(iter_frames(seq, [3]))
    t = int(rec.depth_ts_ns[3])
    for side, shift in (("left", 2), ("right", -1)):
        ev = getattr(rec, f"{side}_events").copy()
        x_rect = ev["x"].astype(int) + shift
        ev = ev[(x_rect >= 0) & (x_rect < w)]
        ev["x"] = x_rect[(x_rect >= 0) & (x_rect < w)]
        expected, _ = event_histogram(ev, h, w, t - 50_000_000, t)
        np.testing.assert_array_equal(getattr(frames[0], side), expected)


def test_an_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    calls = []

    def fail_on_right(f, side, *args):
        calls.append(side)
        if side == "right":
            raise KeyboardInterrupt
        return original(f, side, *args)

    original = mvsec_hdf5._write_events
    monkeypatch.setattr(mvsec_hdf5, "_write_events", fail_on_right)
    with pytest.raises(KeyboardInterrupt):
        write_mvsec_hdf5(tiny_recording(), tmp_path / "x_data.hdf5", tmp_path / "x_gt.hdf5")
    assert calls == ["left", "right"]
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_unless_asked(written):
    rec, folder = written
    with pytest.raises(FileExistsError, match=r"rec_data\.hdf5"):
        write_mvsec_hdf5(rec, folder / "rec_data.hdf5", folder / "rec_gt.hdf5")
    write_mvsec_hdf5(rec, folder / "rec_data.hdf5", folder / "rec_gt.hdf5", overwrite=True)
