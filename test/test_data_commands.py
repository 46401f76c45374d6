"""The `inspect` and `cache` commands, run through the CLI on real HDF5 files and bags."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from data_helpers import tiny_recording

from stereospike_ros.cli import main
from stereospike_ros.data.bags import write_ros1_bag
from stereospike_ros.data.cache import CachedFrames
from stereospike_ros.data.frames import iter_frames
from stereospike_ros.data.mvsec_hdf5 import write_mvsec_hdf5
from stereospike_ros.data.open import open_sequence


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("recordings")
    rec = tiny_recording(seed=41, frames=10)
    write_mvsec_hdf5(rec, path / "flight_data.hdf5", path / "flight_gt.hdf5")
    write_ros1_bag(rec, path / "flight2.bag")
    return path, rec


@pytest.mark.parametrize("name", ["flight", "flight2.bag"])
def test_inspect_prints_size_frames_and_exact_event_counts(root, name, capsys):
    path, rec = root
    assert main(["inspect", str(path / name), "--count-events"]) == 0
    out = capsys.readouterr().out
    assert f"{rec.width} x {rec.height} (W x H)" in out
    assert f"depth       {len(rec.depth_ts_ns)} frames" in out
    first, last = rec.left_events["t"][[0, -1]]
    assert f"left  events {len(rec.left_events)} in [{first}, {last}] ns" in out
    assert f"right events {len(rec.right_events)} in" in out
    assert "left  camera_info plumb_bob, fx 30.00" in out
    # what is applied: the camera_info the file carries (pinhole, no distortion)
    assert "left  rectification camera_info carried by the recording (plumb_bob)" in out
    assert "f x B       3.0000 px*m" in out


def test_inspect_of_a_folder_summarizes_every_recording_and_names_maps_in_use(
    root, tmp_path, capsys
):
    path, rec = root
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("frames, ") == 2 and "flight2" in out and "'flight'" in out
    h, w = rec.height, rec.width
    for side in ("left", "right"):
        for axis in ("x", "y"):
            np.savetxt(tmp_path / f"m_{side}_{axis}_map.txt", np.zeros((h, w)))
    assert main(["inspect", str(path / "flight"), "--calibration", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"left  rectification MVSEC maps {tmp_path / 'm_left_x_map.txt'}" in out
    assert main(["inspect", str(tmp_path)]) == 2  # a folder of maps holds no recording
    assert "holds no recording" in capsys.readouterr().err


def test_inspect_of_a_missing_recording_says_what_was_tried(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inspect: error:") and "nope_data.hdf5" in err
    assert "Traceback" not in err


def test_cache_command_writes_each_part_and_a_rerun_converts_nothing(root, tmp_path, capsys):
    path, rec = root
    argv = ["cache", "--split", "auto:0.6:0.2", "--root", str(path), "--out", str(tmp_path)]
    argv += ["--sequences", "flight", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    files = {part: tmp_path / f"auto_0.6_0.2_{part}.h5" for part in ("train", "val", "test")}
    for part, n in (("train", 6), ("val", 2), ("test", 2)):
        assert f"{part:5s} {n:6d} frames {rec.height}x{rec.width}" in out
        assert len(CachedFrames(files[part])) == n
    test = CachedFrames(files["test"])
    with open_sequence(path / "flight") as seq:
        frames = list(iter_frames(seq, [8, 9]))
    for i, frame in enumerate(frames):
        x, depth = test[i]
        want = np.concatenate([frame.left, frame.right]).astype(np.float32)
        np.testing.assert_array_equal(x.numpy(), want)
        np.testing.assert_array_equal(depth[0].numpy(), frame.depth)
    mtimes = {part: f.stat().st_mtime_ns for part, f in files.items()}
    assert main(argv) == 0
    assert {part: f.stat().st_mtime_ns for part, f in files.items()} == mtimes
    with h5py.File(files["train"]) as f:
        assert f["x"].shape == (6, 4, rec.height, rec.width)


def test_cache_command_names_what_is_missing_instead_of_a_traceback(root, tmp_path, capsys):
    path, _ = root
    argv = ["cache", "--root", str(path), "--out", str(tmp_path), "--quiet"]
    assert main([*argv, "--split", "split1"]) == 2
    err = capsys.readouterr().err
    assert "cache: error: no recording 'indoor_flying1'" in err and "Traceback" not in err
    assert main([*argv, "--split", "auto:0.8"]) == 2
    assert "needs the sequences to cut" in capsys.readouterr().err
    assert main([*argv, "--split", "split9"]) == 2
    assert "split1, split2, split3" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.h5"))
