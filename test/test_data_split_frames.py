"""SplitFrames: a split of recordings under a folder + FrameOptions, resolved in one place."""

from __future__ import annotations

import json

import numpy as np
import pytest
from data_helpers import tiny_recording

from stereospike_ros.data import FrameOptions, SplitFrames, iter_frames, open_sequence
from stereospike_ros.data.cache import CacheOptions, build_split_cache, cache_split
from stereospike_ros.data.errors import FormatError
from stereospike_ros.data.mvsec_hdf5 import write_mvsec_hdf5


@pytest.fixture
def root(tmp_path):
    # seq1 directly under the root, seq2 in its scenario folder (root/seq/seq2_*.hdf5)
    for i, folder in ((1, tmp_path), (2, tmp_path / "seq")):
        folder.mkdir(exist_ok=True)
        rec = tiny_recording(seed=40 + i, frames=6)
        write_mvsec_hdf5(rec, folder / f"seq{i}_data.hdf5", folder / f"seq{i}_gt.hdf5")
    return tmp_path


def test_an_auto_split_is_resolved_located_opened_and_streamed(root):
    options = FrameOptions(window_ns=30_000_000, fill_holes_px=4)
    source = SplitFrames("auto:0.5", root, ("seq1", "seq2"), options)
    assert source.split is source.split  # resolved once
    assert [(n, list(i)) for n, i in source.split.train.items] == [
        ("seq1", [0, 1, 2]),
        ("seq2", [0, 1, 2]),
    ]
    paths = [path for path, _ in source.recordings("test")]
    assert paths == [root / "seq1", root / "seq" / "seq2"]
    opened = source.open("test")
    try:
        assert [(s.name, i) for s, i in opened] == [("seq1", [4, 5]), ("seq2", [4, 5])]
        sequence, indices = opened[1]
        got = list(options.frames(sequence, indices))
    finally:
        for sequence, _ in opened:
            sequence.close()
    with open_sequence(root / "seq" / "seq2") as seq:
        want = list(iter_frames(seq, [4, 5], window_ns=30_000_000, fill_holes_px=4))
    assert [f.index for f in got] == [4, 5]
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a.left, b.left) and np.array_equal(a.right, b.right)
        assert np.array_equal(a.depth, b.depth, equal_nan=True)


def test_open_closes_what_it_opened_when_a_later_recording_fails(root):
    closed = []

    def opener(path):  # as evaluate's: refuses a recording it cannot score (here: seq2)
        if path.name == "seq2":
            raise FormatError(f"{path} has no ground truth")
        sequence = open_sequence(path)
        real_close = sequence.close
        sequence.close = lambda: (closed.append(sequence.name), real_close())
        return sequence

    with pytest.raises(FormatError, match="seq2 has no ground truth"):
        SplitFrames("auto:0.5", root, ("seq1", "seq2")).open("train", opener)
    assert closed == ["seq1"]


def test_cache_split_and_build_split_cache_are_the_same_cache(root):
    options = FrameOptions(fill_holes_px=2)
    source = SplitFrames("auto:0.5", root, ("seq1", "seq2"), options)
    files = cache_split(source, root / "cache", parts=("val",), progress=False)
    before = files["val"].stat()
    again = build_split_cache(
        "auto:0.5",
        root,
        root / "cache",
        parts=("val",),
        sequences=["seq1", "seq2"],
        options=CacheOptions.of(options),
        progress=False,
    )
    assert again == files
    after = again["val"].stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # a no-op


def test_cache_options_keep_the_order_existing_cache_keys_were_made_with():
    options = CacheOptions.of(FrameOptions(window_ns=20_000_000, protocol="paper"), None)
    assert isinstance(options, FrameOptions) and options.compression is None
    assert json.dumps(options.to_dict()) == (
        '{"window_ns": 20000000, "fill_holes_px": 0, "rectify": true, "compression": null, '
        '"protocol": "paper"}'
    )
    assert FrameOptions.from_window_ms(12.5, rectify=False) == FrameOptions(12_500_000, 0, False)
