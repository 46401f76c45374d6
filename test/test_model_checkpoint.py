"""Checkpoints: bit-exact round trips, and clear errors for every kind of bad file."""

from __future__ import annotations

import json
import os

import pytest
import torch
from model_helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from safetensors.torch import save_file

from stereospike_ros.model import (
    CheckpointError,
    build_model,
    checkpoint_metadata,
    load_checkpoint,
    model_config,
    save_checkpoint,
)
from stereospike_ros.model.checkpoint import FORMAT


def _trained_like(name: str = "stereospike", **options: object) -> torch.nn.Module:
    model = build_model(name, width=0.125, **options)
    if name == "stereospike-ann":  # non-default BatchNorm statistics must survive too
        model.train()
        model(torch.rand(2, 4, 16, 20))
    return model.eval()


@pytest.fixture
def saved(tmp_path):
    model = _trained_like("stereospike-ann", activation="tanh", heads=(1, 2))
    path = save_checkpoint(
        tmp_path / "best.safetensors",
        model,
        input_size=(16, 20),
        window_ms=50,
        data="sim:office",
        split={"train": "indoor_flying2,3", "test": "indoor_flying1"},
        metrics={"mde_cm": 17.5},
        epoch=3,
    )
    return model, path


def test_round_trip_is_bit_exact_in_tensors_and_outputs(saved):
    model, path = saved
    loaded, meta = load_checkpoint(path)
    assert not loaded.training and loaded.config == model.config
    for (name, a), (name_b, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert name == name_b and a.dtype == b.dtype and torch.equal(a, b), name
    x = torch.poisson(torch.full((1, 4, 16, 20), 1.0))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert meta["model"] == "stereospike-ann" and meta["input_size"] == [16, 20]
    assert meta["window_ms"] == 50.0 and meta["metrics"] == {"mde_cm": 17.5}
    assert meta["split"]["test"] == "indoor_flying1" and meta["epoch"] == 3
    assert meta["format_version"] == 1 and meta["package_version"]
    assert checkpoint_metadata(path) == meta
    assert all(p.requires_grad for p in loaded.parameters())  # ready to fine-tune


def test_header_holds_the_metadata_as_json_for_other_tools(saved):
    _, path = saved
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    block = header["__metadata__"]
    assert block["format"] == FORMAT
    assert json.loads(block["stereospike_ros"])["config"]["activation"] == "tanh"


def test_expectations_that_differ_are_reported_by_name(saved):
    _, path = saved
    with pytest.raises(CheckpointError, match=r"input_size is \[16, 20\], expected \[260, 346\]"):
        load_checkpoint(path, expect={"input_size": (260, 346)})
    with pytest.raises(CheckpointError, match=r"best\.safetensors.*config\.activation is 'tanh'"):
        load_checkpoint(path, expect=model_config("stereospike-ann", width=0.125, heads=(1, 2)))
    with pytest.raises(CheckpointError, match=r"config\.width is 0\.125, expected 1\.0"):
        load_checkpoint(path, expect={"model": "stereospike-ann", "config": {"width": 1.0}})
    model, _ = load_checkpoint(path, expect={"model": "stereospike-ann", "window_ms": 50})
    assert model.config.heads == (1, 2)


def test_tensors_that_do_not_fit_the_recorded_architecture_are_listed(tmp_path):
    model = _trained_like()
    model.config = model_config("stereospike", width=0.25, heads=(1, 2, 3))  # lie about it
    path = save_checkpoint(tmp_path / "lie.safetensors", model)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "lie.safetensors does not fit its architecture stereospike" in message
    assert "unexpected tensors ['predict.depth4.bias', 'predict.depth4.weight']" in message
    assert "bottom.conv.weight (4, 4, 5, 5) in file, (8, 4, 5, 5) in model" in message


def test_missing_tensors_are_listed(tmp_path):
    model = _trained_like(heads=(1,))
    model.config = model_config("stereospike", width=0.125, heads=(1, 2))
    path = save_checkpoint(tmp_path / "few.safetensors", model)
    with pytest.raises(CheckpointError, match=r"missing tensors \['predict.depth2.bias', "):
        load_checkpoint(path)


def test_flipped_bytes_in_the_weights_are_caught(saved):
    _, path = saved
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"best\.safetensors is corrupt: .*SHA-256"):
        load_checkpoint(path)


def test_garbage_in_the_header_is_corrupt(saved):
    _, path = saved
    raw = bytearray(path.read_bytes())
    raw[10:20] = b"\xff" * 10
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="is corrupt: unreadable header"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep", [0, 5, 100, -1000])
def test_truncated_files_are_rejected(saved, keep):
    _, path = saved
    raw = path.read_bytes()
    path.write_bytes(raw[:keep])
    with pytest.raises(CheckpointError, match=r"best\.safetensors is (truncated|empty)"):
        load_checkpoint(path)


def test_a_plain_safetensors_file_is_not_taken_for_a_checkpoint(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file(build_model("stereospike", width=0.125).state_dict(), str(path))
    with pytest.raises(CheckpointError, match=r"plain\.safetensors is not a stereospike_ros"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"absent\.safetensors does not exist"):
        load_checkpoint(tmp_path / "absent.safetensors")
    (tmp_path / "folder.safetensors").mkdir()
    with pytest.raises(CheckpointError, match=r"folder\.safetensors is a folder"):
        checkpoint_metadata(tmp_path / "folder.safetensors")


@pytest.mark.parametrize(
    ("content", "what"),
    [
        ("torch.save", "it is a zip archive"),
        (b"\x80\x04\x95" + bytes(64), "it is a Python pickle"),
        ((1 << 62).to_bytes(8, "little") + b"{}", "its first 8 bytes give a header of"),
        ((1 << 62).to_bytes(8, "little") + b"[]", "does not start with a length and a JSON"),
        (b"\x89HDF\r\n\x1a\n" + bytes(64), "it is an HDF5 file"),
        (b"hello, this is text" * 4, "does not start with a length and a JSON header"),
    ],
    ids=["torch-save", "pickle", "huge-header", "huge-not-json", "hdf5", "text"],
)
def test_a_file_that_is_not_safetensors_is_called_that(tmp_path, content, what):
    """Not 'a header of 578712552184433488 bytes' (what a pickle's first 8 bytes read as)."""
    path = tmp_path / "model.safetensors"
    if content == "torch.save":
        torch.save(build_model("stereospike", width=0.125).state_dict(), path)
    else:
        path.write_bytes(content)
    for read in (load_checkpoint, checkpoint_metadata):
        with pytest.raises(CheckpointError, match=r"model\.safetensors is not a safetensors file"):
            read(path)
        with pytest.raises(CheckpointError, match=what):
            read(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_or_inf_weights_are_refused_naming_the_tensor(tmp_path, value):
    model = build_model("stereospike", width=0.125)
    with torch.no_grad():
        model.state_dict()["predict.depth1.bias"].fill_(value)
    path = save_checkpoint(tmp_path / "diverged.safetensors", model, input_size=(16, 20))
    checkpoint_metadata(path)  # the header is fine: only loading the weights tells
    with pytest.raises(CheckpointError, match=r"diverged\.safetensors holds NaN or Inf weights"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"predict\.depth1\.bias \(1\)"):
        load_checkpoint(path)


def test_a_failing_save_leaves_the_old_file_intact_and_no_temporary(saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, _trained_like(), metrics={"mde_cm": 1.0})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.safetensors"]
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(path, model, metrics={"bad": object()})
    with pytest.raises(CheckpointError, match="written by save_checkpoint itself"):
        save_checkpoint(path, model, config={"width": 2})
    assert path.read_bytes() == before


def test_a_header_length_that_starts_like_a_pickle_is_still_read(tmp_path):
    """A 128-byte header's length starts with 0x80, a pickle's first byte: layout comes first."""
    model = build_model("stereospike", width=0.125)
    path = save_checkpoint(tmp_path / "ok.safetensors", model)
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = raw[8 : 8 + size].rstrip(b" ")
    padded = header + b" " * ((0x80 - len(header)) % 256)  # safetensors pads with spaces too
    assert len(padded) % 256 == 0x80  # the length's first byte: 0x80
    path.write_bytes(len(padded).to_bytes(8, "little") + padded + raw[8 + size :])
    assert checkpoint_metadata(path)["model"] == "stereospike"
    load_checkpoint(path)
