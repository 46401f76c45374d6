"""The paper protocol, one difference at a time, on small hand-made inputs; and the default
protocol left as it was."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from data_helpers import tiny_recording
from scipy import ndimage

from stereospike_ros.data import iter_frames, write_mvsec_hdf5
from stereospike_ros.data.open import open_sequence
from stereospike_ros.data.protocol import PROTOCOLS, DataProtocol, area_closing, get_protocol
from stereospike_ros.events.histogram import event_histogram
from stereospike_ros.events.rectify import Rectifier
from stereospike_ros.events.types import EVENT_DTYPE
from stereospike_ros.model import MetricAccumulator
from stereospike_ros.model.loss import stereospike_loss


def _closing_by_definition(image: np.ndarray, area: int) -> np.ndarray:
    """Each pixel: the lowest level at which its 4-connected component of {f <= level} holds
    ``area`` pixels (the textbook definition, one labelling per level)."""
    out = np.empty_like(image)
    levels = np.unique(image)
    for y, x in np.ndindex(image.shape):
        for level in levels[levels >= image[y, x]]:
            labels, _ = ndimage.label(image <= level)
            if (labels == labels[y, x]).sum() >= area:
                out[y, x] = level
                break
        else:
            out[y, x] = image[y, x]
    return out


def test_area_closing_fills_small_holes_and_raises_small_valid_dips():
    depth = np.full((6, 8), 5.0, dtype=np.float32)
    depth[1:3, 1:3] = np.nan  # a 4 px hole
    depth[4, 6] = 3.0  # a 1 px valid dip, nearer than its surroundings
    depth[:, 0] = 7.0  # a far column: never lowered
    closed = area_closing(depth, 24)
    assert np.isfinite(closed).all()
    np.testing.assert_array_equal(closed[1:3, 1:3], 5.0)  # hole: the surrounding level
    assert closed[4, 6] == 5.0  # a valid pixel changed: the default protocol never does this
    np.testing.assert_array_equal(closed[:, 0], 7.0)
    big = np.full((8, 8), 5.0, dtype=np.float32)
    big[:5, :5] = np.nan  # 25 px >= 24: stays unknown
    assert np.isnan(area_closing(big, 24)[:5, :5]).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_area_closing_matches_its_definition_on_random_maps(seed):
    rng = np.random.default_rng(seed)
    depth = rng.integers(1, 6, (7, 9)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.25] = np.nan
    expected = _closing_by_definition(np.nan_to_num(depth, nan=0.0), 5)
    expected[expected <= 0] = np.nan
    np.testing.assert_array_equal(area_closing(depth, 5), expected)


def _txy(events: np.ndarray) -> list[tuple[int, int, int]]:
    return list(zip(events["t"].tolist(), events["x"].tolist(), events["y"].tolist(), strict=True))


def test_truncation_puts_a_coordinate_in_k_to_k_plus_1_on_pixel_k():
    x_map = np.array([[0.4, 0.6, 1.99, 2.5, -0.3, 3.2]])
    y_map = np.zeros_like(x_map)
    nearest = Rectifier.from_maps(x_map, y_map, out_width=4)
    truncated = Rectifier.from_maps(x_map, y_map, out_width=4, rounding="truncate")
    events = np.zeros(6, dtype=EVENT_DTYPE)
    events["x"] = events["t"] = np.arange(6)
    assert _txy(nearest(events)) == [
        (0, 0, 0), (1, 1, 0), (2, 2, 0), (3, 3, 0), (4, 0, 0), (5, 3, 0)]  # fmt: skip
    assert _txy(truncated(events)) == [  # raw x 4 (-0.3) leaves the image
        (0, 0, 0), (1, 0, 0), (2, 1, 0), (3, 2, 0), (5, 3, 0)]  # fmt: skip


def _events(times_ns: list[int], x: int = 1) -> np.ndarray:
    events = np.zeros(len(times_ns), dtype=EVENT_DTYPE)
    events["t"], events["x"], events["p"] = times_ns, x, 1
    return events


def test_grid_binning_counts_from_the_first_event_not_back_from_each_stamp(tmp_path):
    """Stamps 50.5 ms apart: the grid drifts away from the stamps by 0.5 ms per frame."""
    rec = tiny_recording(seed=0, frames=3)
    ms = 1_000_000
    rec.depth_ts_ns = np.array([100 * ms, 150 * ms + ms // 2, 201 * ms], dtype=np.int64)
    # first event after 100 - 50 = 50 ms is at 52 ms: the grid is (52, 102), (102, 152), ...
    times = [40 * ms, 52 * ms, 53 * ms, 101 * ms, 102 * ms, 103 * ms, 150 * ms, 151 * ms,
             152 * ms, 160 * ms, 200 * ms, 202 * ms]  # fmt: skip
    rec.left_events = _events(times)
    rec.right_events = _events(times, x=2)
    write_mvsec_hdf5(rec, tmp_path / "g_data.hdf5", tmp_path / "g_gt.hdf5")
    with open_sequence(tmp_path / "g") as seq:
        paper = list(iter_frames(seq, protocol=DataProtocol("grid", binning="grid")))
        default = list(iter_frames(seq))
    counts = [int(f.left[0, 0, 1]) for f in paper]
    # (52, 102): 53, 101 (52 itself is on the open bound); (102, 152): 103, 150, 151;
    # (152, 201): 160, 200 (cut at the last stamp: 202 is dropped)
    assert counts == [2, 3, 2]
    # default: [50, 100): 52, 53; [100.5, 150.5): 101, 102, 103, 150; [151, 201): 151..200
    assert [int(f.left[0, 0, 1]) for f in default] == [2, 4, 4]
    assert int(paper[0].right[0, 0, 2]) == 2  # each camera: its own grid, same times here


def test_paper_protocol_changes_only_what_it_says_on_a_recording(tmp_path):
    rec = tiny_recording(seed=4, frames=4)  # stamps exactly 50 ms apart, identity calibration
    write_mvsec_hdf5(rec, tmp_path / "p_data.hdf5", tmp_path / "p_gt.hdf5")
    with open_sequence(tmp_path / "p") as seq:
        default = list(iter_frames(seq))
        paper = list(iter_frames(seq, protocol="paper"))
    for d, p in zip(default, paper, strict=True):
        np.testing.assert_array_equal(d.depth, rec.depth[d.index])  # default: as recorded
        np.testing.assert_array_equal(p.depth, area_closing(rec.depth[p.index], 24))
        # integer maps: truncation is rounding; 20 Hz stamps: the grid is nearly the stamps'
        expected = event_histogram(rec.left_events, rec.height, rec.width, d.t_ns - 50_000_000,
                                   d.t_ns)[0]  # fmt: skip
        np.testing.assert_array_equal(d.left, expected)
        assert abs(int(p.left.sum()) - int(d.left.sum())) <= 0.1 * d.left.sum()
    assert get_protocol(None) is PROTOCOLS["default"]
    with pytest.raises(ValueError, match="'authors' is unknown"):
        get_protocol("authors")


def test_loss_and_metrics_leave_out_the_same_zero_metre_pixels():
    gt = torch.tensor([[2.0, 0.0], [math.nan, 3.0]]).view(1, 1, 2, 2)
    pred = torch.tensor([[1.0, 5.0], [9.0, 1.0]]).view(1, 1, 2, 2)
    accumulator = MetricAccumulator()
    accumulator.update(pred[0, 0], gt[0, 0])
    assert accumulator.summary()["valid_pixels"] == 2
    out = torch.zeros(1, 1, 2, 2, requires_grad=True)
    total, parts = stereospike_loss({"depth1": pred + out}, gt)
    assert parts["valid_pixels"] == 2
    total.backward()
    assert out.grad[0, 0, 0, 1] == 0  # the 0 m pixel: no gradient, as it has no metric
