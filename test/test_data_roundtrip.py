"""One recording through every format: HDF5, ROS 1 bag, ROS 2 sqlite3 and MCAP read back equal."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import tiny_recording

from stereospike_ros.data import (
    FrameStats,
    iter_frames,
    open_sequence,
    write_mvsec_hdf5,
    write_ros1_bag,
    write_ros2_bag,
)
from stereospike_ros.data.recording import CameraCalibration
from stereospike_ros.events.histogram import event_histogram
from stereospike_ros.events.rectify import Rectifier

FORMATS = ("hdf5", "ros1", "ros2-sqlite3", "ros2-mcap")


def _distorted(rec):
    """Give both cameras lens distortion and a rectifying rotation, so rectification matters."""
    for side, tx in (("left", 0.0), ("right", -3.0)):
        h, w = rec.height, rec.width
        angle = 0.02 if side == "left" else -0.02
        c, s = np.cos(angle), np.sin(angle)
        K = np.array([[30.0, 0, w / 2], [0, 31.0, h / 2], [0, 0, 1]])
        P = np.array([[30.0, 0, w / 2, tx], [0, 30.0, h / 2, 0], [0, 0, 1, 0]])
        R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
        calib = CameraCalibration(h, w, K, np.array([-0.2, 0.05, 0, 0, 0]), R, P, "plumb_bob", side)
        setattr(rec, f"{side}_calibration", calib)
    return rec


def _write(rec, folder, fmt):
    if fmt == "hdf5":
        write_mvsec_hdf5(rec, folder / "rec_data.hdf5", folder / "rec_gt.hdf5")
        return folder / "rec"
    if fmt == "ros1":
        write_ros1_bag(rec, folder / "rec.bag", message_period_ns=3_000_000)
        return folder / "rec.bag"
    storage = fmt.split("-")[1]
    write_ros2_bag(rec, folder / f"rec_{storage}", storage, message_period_ns=7_000_000)
    return folder / f"rec_{storage}"


def _reference_frames(rec, window_ns=50_000_000):
    """Histograms computed straight from the in-memory recording, no file in between."""
    out = []
    rect = {
        s: Rectifier.from_calibration(getattr(rec, f"{s}_calibration")) for s in ("left", "right")
    }
    events = {s: rect[s](getattr(rec, f"{s}_events")) for s in rect}
    for t in rec.depth_ts_ns.tolist():
        out.append(
            [event_histogram(events[s], rec.height, rec.width, t - window_ns, t)[0] for s in rect]
        )
    return out


@pytest.fixture(scope="module", params=["hand-made", "simulated"])
def recording(request):
    if request.param == "hand-made":
        return _distorted(tiny_recording(seed=21, frames=6))
    from stereospike_ros.sim.simulator import SimConfig, simulate

    config = SimConfig(duration_s=0.3, width=64, height=48, focal_px=50.0, seed=2)
    return simulate(config)


def test_every_format_gives_identical_events_and_frames(recording, tmp_path):
    reference = _reference_frames(recording)
    assert sum(int(h.sum()) for pair in reference for h in pair) > 0
    results = {}
    for fmt in FORMATS:
        path = _write(recording, tmp_path, fmt)
        stats = FrameStats()
        with open_sequence(path) as seq:
            events = {
                side: np.concatenate(list(seq.iter_events(side, chunk_size=500)))
                for side in ("left", "right")
            }
            frames = list(iter_frames(seq, chunk_size=333, stats=stats))
        for side, ev in events.items():
            np.testing.assert_array_equal(ev, getattr(recording, f"{side}_events"), err_msg=fmt)
        assert [f.index for f in frames] == list(range(len(recording.depth)))
        for f in frames:
            assert f.t_ns == recording.depth_ts_ns[f.index]
            np.testing.assert_array_equal(f.left, reference[f.index][0], err_msg=fmt)
            np.testing.assert_array_equal(f.right, reference[f.index][1], err_msg=fmt)
            np.testing.assert_array_equal(f.depth, recording.depth[f.index], err_msg=fmt)
        results[fmt] = stats
    # the same events were rectified away in every format
    dropped = {fmt: s.dropped_rectify for fmt, s in results.items()}
    assert len({tuple(d.values()) for d in dropped.values()}) == 1, dropped
