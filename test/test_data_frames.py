"""Frames: the 50 ms stereo histograms before each depth stamp, streamed; ground-truth holes."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import tiny_recording

from stereospike_ros.data import FrameStats, fill_small_holes, iter_frames, write_mvsec_hdf5
from stereospike_ros.data.open import open_sequence
from stereospike_ros.events.histogram import event_histogram
from stereospike_ros.events.windowing import StereoWindower


def _write(rec, folder, name="rec"):
    write_mvsec_hdf5(rec, folder / f"{name}_data.hdf5", folder / f"{name}_gt.hdf5")
    return open_sequence(folder / name)


def _expected(rec, side, t_end, window_ns=50_000_000):
    events = getattr(rec, f"{side}_events")
    return event_histogram(events, rec.height, rec.width, t_end - window_ns, t_end)[0]


@pytest.mark.parametrize("chunk_size", [1, 50, 10**6])
@pytest.mark.parametrize("window_ns", [50_000_000, 120_000_000, 7_000_000])
def test_frames_hold_exactly_the_events_of_the_window_before_each_stamp(
    tmp_path, chunk_size, window_ns
):
    rec = tiny_recording(seed=1, frames=5, rate_per_s=2000 if chunk_size == 1 else 20000)
    with _write(rec, tmp_path) as seq:
        frames = list(iter_frames(seq, window_ns=window_ns, chunk_size=chunk_size))
    assert [f.index for f in frames] == list(range(5))
    for f in frames:
        assert f.left.dtype == np.uint16 and f.left.shape == (2, rec.height, rec.width)
        np.testing.assert_array_equal(f.left, _expected(rec, "left", f.t_ns, window_ns))
        np.testing.assert_array_equal(f.right, _expected(rec, "right", f.t_ns, window_ns))
        np.testing.assert_array_equal(f.depth, rec.depth[f.index])


def test_a_subset_of_frames_streams_only_what_it_needs(tmp_path):
    rec = tiny_recording(seed=2, frames=8)
    stats = FrameStats()
    with _write(rec, tmp_path) as seq:
        frames = list(iter_frames(seq, [2, 3, 6], stats=stats))
    assert [f.index for f in frames] == [2, 3, 6]
    for f in frames:
        np.testing.assert_array_equal(f.right, _expected(rec, "right", f.t_ns))
    t = rec.left_events["t"]
    needed = (t >= rec.depth_ts_ns[2] - 50_000_000) & (t < rec.depth_ts_ns[6])
    assert stats.events_in["left"] == needed.sum()


def test_windows_without_events_are_zero_frames(tmp_path):
    rec = tiny_recording(seed=3, frames=6)
    gap = (rec.left_events["t"] >= 100_000_000) & (rec.left_events["t"] < 200_000_000)
    rec.left_events = rec.left_events[~gap]
    rec.right_events = rec.right_events[rec.right_events["t"] < 150_000_000]
    with _write(rec, tmp_path) as seq:
        frames = list(iter_frames(seq))
    assert len(frames) == 6
    assert frames[2].left.sum() == 0 and frames[3].left.sum() == 0  # (100, 150], (150, 200] ms
    assert all(f.right.sum() == 0 for f in frames[3:])


def test_events_out_of_order_within_a_chunk_are_sorted_and_late_ones_counted(tmp_path):
    rec = tiny_recording(seed=4, frames=4)
    ev = rec.left_events
    ev[[10, 11]] = ev[[11, 10]]  # swapped inside one chunk: harmless
    late = ev[100].copy()
    ev = np.insert(ev, 3000, late)  # an old event long after its window closed
    rec.left_events = ev
    stats = FrameStats()
    with _write(rec, tmp_path) as seq:
        frames = list(iter_frames(seq, chunk_size=500, stats=stats))
    ok = np.sort(ev[np.arange(len(ev)) != 3000], order="t")
    for f in frames:
        hist = event_histogram(ok, rec.height, rec.width, f.t_ns - 50_000_000, f.t_ns)[0]
        np.testing.assert_array_equal(f.left, hist)
    assert stats.late["left"] == 1


def test_frames_agree_with_the_online_stereo_windower_in_trigger_mode(tmp_path):
    rec = tiny_recording(seed=5, frames=6)
    windower = StereoWindower(rec.height, rec.width, schedule="trigger")
    windower.add_triggers(rec.depth_ts_ns.tolist())
    windows = []
    lefts, rights = np.array_split(rec.left_events, 9), np.array_split(rec.right_events, 5)
    for i, left in enumerate(lefts):  # uneven batches, interleaved
        windows += windower.push("left", left)
        if i < len(rights):
            windows += windower.push("right", rights[i])
    with _write(rec, tmp_path) as seq:
        frames = {f.t_ns: f for f in iter_frames(seq)}
    assert len(windows) >= 5
    for w in windows:
        np.testing.assert_array_equal(w.left, frames[w.t_end_ns].left)
        np.testing.assert_array_equal(w.right, frames[w.t_end_ns].right)


def test_small_holes_take_the_nearest_valid_depth_and_large_ones_stay_unknown():
    depth = np.full((12, 12), 5.0, dtype=np.float32)
    depth[:, 6:] = 9.0
    depth[2:4, 2] = np.nan  # 2 px inside the 5 m side
    depth[6:12, 6:12] = np.nan  # 36 px, touching the border
    depth[0, 11] = np.nan  # 1 px at the corner
    filled, n = fill_small_holes(depth, 24)
    assert n == 3
    assert filled[2, 2] == filled[3, 2] == 5.0 and filled[0, 11] == 9.0
    assert np.isnan(filled[6:, 6:]).all()
    assert np.isnan(depth[2, 2])  # input untouched
    nothing, n = fill_small_holes(np.full((3, 3), np.nan, np.float32), 24)
    assert n == 0 and np.isnan(nothing).all()


def test_hole_filling_is_off_unless_asked(tmp_path):
    rec = tiny_recording(seed=6, frames=3)
    with _write(rec, tmp_path) as seq:
        plain = list(iter_frames(seq))
        stats = FrameStats()
        filled = list(iter_frames(seq, fill_holes_px=24, stats=stats))
    assert all(
        np.array_equal(f.depth, d, equal_nan=True) for f, d in zip(plain, rec.depth, strict=True)
    )
    assert stats.holes_filled_px > 0
    assert sum(np.isnan(f.depth).sum() for f in filled) == (
        sum(np.isnan(d).sum() for d in rec.depth) - stats.holes_filled_px
    )


def test_bad_frame_indices_are_rejected(tmp_path):
    rec = tiny_recording(seed=7, frames=3)
    with _write(rec, tmp_path) as seq:
        with pytest.raises(IndexError, match=r"outside \[0, 3\)"):
            list(iter_frames(seq, [1, 3]))
        with pytest.raises(ValueError, match="increasing"):
            list(iter_frames(seq, [2, 1]))
