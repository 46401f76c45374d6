"""The training cache: lazy Dataset across DataLoader workers, no-op reruns, safe interruption."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from data_helpers import tiny_recording
from torch.utils.data import DataLoader

from stereospike_ros.data import cache as cache_module
from stereospike_ros.data import frames as frames_module
from stereospike_ros.data.cache import (
    CachedFrames,
    CacheOptions,
    build_cache,
    build_split_cache,
    is_complete,
)
from stereospike_ros.data.errors import CacheError, MissingInputError
from stereospike_ros.data.frames import iter_frames
from stereospike_ros.data.mvsec_hdf5 import write_mvsec_hdf5
from stereospike_ros.data.open import open_sequence


@pytest.fixture
def root(tmp_path):
    for i in (1, 2):
        rec = tiny_recording(seed=30 + i, frames=6)
        write_mvsec_hdf5(rec, tmp_path / f"seq{i}_data.hdf5", tmp_path / f"seq{i}_gt.hdf5")
    split = {
        "name": "tiny",
        "sequences": {
            "seq1": {"part": "train"},
            "seq2": {"range": [0, 6], "val": [1, 4], "test": "rest"},
        },
    }
    (tmp_path / "tiny.json").write_text(json.dumps(split))
    return tmp_path


def _expected(root, name, index):
    with open_sequence(root / name) as seq:
        frame = next(iter_frames(seq, [index]))
    return np.concatenate([frame.left, frame.right]).astype(np.float32), frame.depth


def test_split_cache_feeds_a_dataloader_with_two_workers(root):
    files = build_split_cache(root / "tiny.json", root, root / "cache", progress=False)
    assert set(files) == {"train", "val", "test"}
    train = CachedFrames(files["train"])
    assert len(train) == 6 and (train.height, train.width) == (20, 28)
    train[0]  # the parent now holds an open file: workers must open their own
    loader = DataLoader(train, batch_size=2, num_workers=2, shuffle=False)
    xs, depths = zip(*loader, strict=True)
    x, depth = torch.cat(xs), torch.cat(depths)
    assert x.dtype == depth.dtype == torch.float32
    assert x.shape == (6, 4, 20, 28) and depth.shape == (6, 1, 20, 28)
    for i in range(6):
        info = train.info(i)
        assert (info["sequence"], info["frame_index"]) == ("seq1", i)
        want_x, want_depth = _expected(root, "seq1", i)
        np.testing.assert_array_equal(x[i].numpy(), want_x)
        np.testing.assert_array_equal(depth[i, 0].numpy(), want_depth)
    val = CachedFrames(files["val"])
    assert [val.info(i)["frame_index"] for i in range(len(val))] == [1, 4]
    test = CachedFrames(files["test"])
    assert [test.info(i)["frame_index"] for i in range(len(test))] == [0, 2, 3, 5]


def test_mono_keeps_the_left_camera_channels(root):
    path = build_cache([(root / "seq2", [2, 3])], root / "c.h5", progress=False)
    stereo, mono = CachedFrames(path), CachedFrames(path, mono=True)
    assert mono[1][0].shape == (2, 20, 28)
    torch.testing.assert_close(mono[1][0], stereo[1][0][:2])
    torch.testing.assert_close(mono[1][1], stereo[1][1], equal_nan=True)


def test_rerun_is_a_no_op_until_an_input_or_option_changes(root, monkeypatch):
    items = [(root / "seq1", range(6))]
    path = build_cache(items, root / "c.h5", progress=False)
    before = path.stat()

    def must_not_run(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(frames_module, "iter_frames", must_not_run)
    build_cache(items, path, progress=False)
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    monkeypatch.undo()

    build_cache(items, path, options=CacheOptions(fill_holes_px=24), progress=False)
    assert path.stat().st_ino != before.st_ino
    again = path.stat()
    data = root / "seq1_data.hdf5"
    data.touch()
    build_cache(items, path, options=CacheOptions(fill_holes_px=24), progress=False)
    assert path.stat().st_ino != again.st_ino


def test_an_interrupted_conversion_never_looks_complete(root, monkeypatch):
    items = [(root / "seq1", range(6))]
    path = root / "c.h5"
    real = iter_frames

    def two_then_interrupt(*args, **kwargs):
        for n, frame in enumerate(real(*args, **kwargs)):
            if n == 2:
                raise KeyboardInterrupt
            yield frame

    monkeypatch.setattr(frames_module, "iter_frames", two_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_cache(items, path, progress=False)
    assert sorted(p.name for p in root.iterdir() if "c.h5" in p.name) == []

    # an older complete cache survives an interrupted rebuild, and is not taken for the new one
    monkeypatch.undo()
    build_cache(items, path, progress=False)
    monkeypatch.setattr(frames_module, "iter_frames", two_then_interrupt)
    options = CacheOptions(window_ns=20_000_000)
    with pytest.raises(KeyboardInterrupt):
        build_cache(items, path, options=options, progress=False)
    assert is_complete(path) and not is_complete(path, cache_module.cache_key(items, options))
    assert len(CachedFrames(path)) == 6


def test_a_file_without_the_completion_mark_is_refused(root):
    path = build_cache([(root / "seq1", [0])], root / "c.h5", progress=False)
    with h5py.File(path, "a") as f:
        del f.attrs["complete"]
    with pytest.raises(CacheError, match=r"not a complete stereospike_ros cache"):
        CachedFrames(path)
    with pytest.raises(MissingInputError, match="does not exist"):
        CachedFrames(root / "missing.h5")


def test_unknown_recordings_in_a_split_are_named(root):
    split = {"sequences": {"seq9": {"range": [0, 2], "part": "train"}}}
    (root / "nine.json").write_text(json.dumps(split))
    with pytest.raises(MissingInputError, match="seq9"):
        build_split_cache(root / "nine.json", root, root / "cache", progress=False)


def test_cache_carries_f_times_b_rectification_origin_and_protocol(root):
    """A baseline needing f x B (sgbm) runs on a cache alone; its protocol is recorded."""
    from stereospike_ros.data.protocol import area_closing
    from stereospike_ros.training.errors import TrainingError
    from stereospike_ros.training.evaluate import open_eval_data

    items = [(root / "seq1", range(6))]
    path = build_cache(items, root / "paper.h5", options=CacheOptions(protocol="paper"))
    cached = CachedFrames(path)
    assert cached.focal_baseline == pytest.approx(3.0)  # tiny_recording: f 30 px, B 0.1 m
    assert cached.calibrations == [
        {side: "camera_info carried by the recording (plumb_bob), truncated" for side in
         ("left", "right")}
    ]  # fmt: skip
    assert cached.options["protocol"] == "paper"
    with open_sequence(root / "seq1") as seq:
        raw = next(iter(seq.depth_frames([0]))).depth
    np.testing.assert_array_equal(cached[0][1][0].numpy(), area_closing(raw, 24))
    with open_eval_data(path) as data:
        assert data.focal_baseline == pytest.approx(3.0)
        assert data.description["protocol"] == "paper"
    with pytest.raises(TrainingError, match="cached with the 'paper' protocol"):
        open_eval_data(path, protocol="default")
