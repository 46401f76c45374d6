"""Every command on a catalogue of corrupt inputs: exit status 2, one line naming the file, no
traceback.

Each case builds a bad file (or folder) from a good one, then runs the commands that read that
kind of input as real subprocesses (``python -m stereospike_ros ...``), as a user would. The
commands run two at a time in a module fixture; each (case, command) pair is one test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from data_helpers import tiny_recording
from model_helpers import rewrite_tensors
from safetensors.torch import save_file

from stereospike_ros.data import write_mvsec_hdf5, write_ros1_bag, write_ros2_bag
from stereospike_ros.model import build_model, save_checkpoint

H, W = 20, 28
NAME = "rec"  # every recording is <case folder>/rec*, so that --root/--split find it by name


@dataclass(frozen=True)
class Case:
    """A bad input built by ``build(folder) -> path``, and the commands that must refuse it.

    Commands are argument lists; ``{bad}`` is the bad path, ``{dir}`` its case folder, ``{rec}``
    / ``{ckpt}`` / ``{root}`` a good recording, checkpoint and folder of recordings, ``{out}`` a
    fresh output folder. ``names``: what the one error line must contain (default: the bad
    file's name).
    """

    name: str
    build: Callable[[Path, dict], Path]
    commands: tuple[str, ...]
    names: str | None = None


# --- good inputs ----------------------------------------------------------------------------


def _good_recording(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{NAME}_data.hdf5"
    write_mvsec_hdf5(tiny_recording(seed=5, frames=4), data, folder / f"{NAME}_gt.hdf5")
    return data


def _model_tensors() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = build_model("stereospike", width=0.125).eval()
    return model, {k: v.contiguous() for k, v in model.state_dict().items()}


# --- recordings -----------------------------------------------------------------------------


def _hdf5_copy(folder: Path, good: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for part in ("data", "gt"):
        shutil.copy(good["rec"].with_name(f"{NAME}_{part}.hdf5"), folder / f"{NAME}_{part}.hdf5")
    return folder / f"{NAME}_data.hdf5"


def _truncated(path: Path, keep: float) -> Path:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))
    return path


def _garbage(path: Path, size: int = 4096) -> Path:
    path.write_bytes(np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def _edit_events(change: Callable[[np.ndarray], np.ndarray], gt: bool = False) -> Callable:
    def build(folder: Path, good: dict) -> Path:
        data = _hdf5_copy(folder, good)
        path = data.with_name(f"{NAME}_gt.hdf5") if gt else data
        key = "davis/left/depth_image_rect_ts" if gt else "davis/left/events"
        with h5py.File(path, "a") as f:
            values = change(f[key][()])
            del f[key]
            f[key] = values
        return path

    return build


def _nan_times(rows: np.ndarray) -> np.ndarray:
    rows[len(rows) // 2, 2] = np.nan
    return rows


def _inf_times(rows: np.ndarray) -> np.ndarray:
    rows[len(rows) // 3 :, 2] = np.inf
    return rows


def _backward_times(rows: np.ndarray) -> np.ndarray:
    rows[len(rows) // 2, 2] -= 0.02  # one event 20 ms out of order, inside a depth window
    rows[len(rows) // 3 :, 2] -= 5.0  # and a jump back by 5 s
    return rows


def _as_text(rows: np.ndarray) -> np.ndarray:
    return rows.astype("S12")


def _nan_stamps(stamps: np.ndarray) -> np.ndarray:
    stamps[1] = np.nan
    return stamps


def _backward_stamps(stamps: np.ndarray) -> np.ndarray:
    return stamps[::-1].copy()


def _hdf5_damaged(how: str) -> Callable:
    def build(folder: Path, good: dict) -> Path:
        data = _hdf5_copy(folder, good)
        if how == "truncated":
            return _truncated(data, 0.5)
        if how == "garbage":
            return _garbage(data)
        if how == "empty":
            data.write_bytes(b"")
            return data
        if how == "folder":
            data.unlink()
            data.mkdir()
            return data
        raise AssertionError(how)

    return build


def _ros1_bag(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{NAME}.bag"
    write_ros1_bag(tiny_recording(seed=5, frames=4), path)
    return path


def _ros1_chunk(where: str) -> Callable:
    """A ROS 1 bag whose first chunk record has its header (sizes, compression), or the
    header of its fifth message record, overwritten."""

    def build(folder: Path, good: dict) -> Path:
        path = _ros1_bag(folder)
        raw = bytearray(path.read_bytes())
        chunk = raw.index(b"op=\x05")
        if where == "header":
            at = chunk + 8
        else:  # a message record inside the chunk: op=0x02, its header length 4 bytes before
            at = chunk
            for _ in range(5):
                at = raw.index(b"op=\x02", at + 1)
            at -= 12
        raw[at : at + 64] = b"\xa5" * 64
        path.write_bytes(bytes(raw))
        return path

    return build


def _ros2_truncated(storage: str) -> Callable:
    def build(folder: Path, good: dict) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        bag = folder / NAME
        write_ros2_bag(tiny_recording(seed=5, frames=4), bag, storage)
        (payload,) = [p for p in bag.iterdir() if p.suffix in (".db3", ".mcap")]
        _truncated(payload, 0.5)
        return bag

    return build


# --- checkpoints ----------------------------------------------------------------------------


def _ckpt(how: str) -> Callable:
    def build(folder: Path, good: dict) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "model.safetensors"
        model, tensors = _model_tensors()
        if how == "pickle":  # torch.save output renamed
            torch.save(model.state_dict(), path)
        elif how == "torch-pt":
            path = folder / "model.pt"
            torch.save({"model": model.state_dict(), "epoch": 3}, path)
        elif how == "huge-header":
            path.write_bytes((1 << 62).to_bytes(8, "little") + b'{"a": 1}' + bytes(64))
        elif how == "garbled-header":
            text = b'{"__metadata__": {"format": '
            path.write_bytes(len(text).to_bytes(8, "little") + text + bytes(64))
        elif how == "empty":
            path.write_bytes(b"")
        elif how == "truncated":
            shutil.copy(good["ckpt"], path)
            _truncated(path, 0.5)
        elif how == "plain":  # safetensors without our metadata
            save_file(tensors, str(path))
        elif how == "wrong-names":
            rewrite_tensors(good["ckpt"], path, lambda t: {f"net.{k}": v for k, v in t.items()})
        elif how == "wrong-shapes":
            rewrite_tensors(good["ckpt"], path, _shrink_first)
        elif how in ("nan", "inf"):
            rewrite_tensors(good["ckpt"], path, lambda t: _poison(t, how))
        elif how == "folder":
            path.mkdir()
        else:
            raise AssertionError(how)
        return path

    return build


def _shrink_first(tensors: dict) -> dict:
    name = sorted(k for k in tensors if k.endswith("weight"))[0]
    tensors[name] = tensors[name][:1].clone()
    return tensors


def _poison(tensors: dict, how: str) -> dict:
    name = sorted(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 4)[-1]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[3] = float(how)
    return tensors


# --- split files, run folders, caches, outputs ----------------------------------------------


def _text(name: str, text: str | bytes) -> Callable:
    def build(folder: Path, good: dict) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    return build


def _folder_named(name: str) -> Callable:
    def build(folder: Path, good: dict) -> Path:
        path = folder / name
        path.mkdir(parents=True)
        return path

    return build


def _missing(name: str) -> Callable:
    def build(folder: Path, good: dict) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    return build


def _run_folder(metrics: str | bytes | None) -> Callable:
    def build(folder: Path, good: dict) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        if metrics is not None:
            path = folder / "metrics.csv"
            if isinstance(metrics, bytes):
                path.write_bytes(metrics)
            else:
                path.write_text(metrics)
        return folder

    return build


def _train_state(state: bytes | None) -> Callable:
    """A run folder whose train_state.pt is garbage, or (None) a torch file of something else."""

    def build(folder: Path, good: dict) -> Path:
        path = folder / "run" / "train_state.pt"
        path.parent.mkdir(parents=True)
        if state is None:
            torch.save({"epoch": 3, "weights": torch.zeros(3)}, path)
        else:
            path.write_bytes(state)
        return path

    return build


def _cache_file(how: str) -> Callable:
    def build(folder: Path, good: dict) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "split_test.h5"
        if how == "garbage":
            _garbage(path)
        else:  # a cache cut off before it was marked complete
            with h5py.File(path, "w") as f:
                f["x"] = np.zeros((2, 4, H, W), np.uint16)
        return path

    return build


def _a_file(name: str) -> Callable:
    def build(folder: Path, good: dict) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_text("not a folder\n")
        return path

    return build


# --- the catalogue --------------------------------------------------------------------------

INSPECT = "inspect {bad} --count-events"
EVALUATE_REC = "evaluate {ckpt} --data {bad} --quiet"
CACHE_REC = "cache --split auto:0.5:0.25 --sequences rec --root {dir} --out {out} --quiet"
TRAIN_REC = (
    "train --split auto:0.5:0.25 --sequences rec --root {dir} --out {out} --epochs 1 "
    "--width 0.125 --quiet"
)
PRUNE_REC = "prune {ckpt} --data {bad} --out {out}/p.safetensors --quiet"
BENCH_DATA = "benchmark data --input {bad} --workdir {out}"
EVALUATE_CKPT = "evaluate {bad} --data {rec} --quiet"
BASELINE_CKPT = "evaluate --baseline {bad} --data {rec} --quiet"
PRUNE_CKPT = "prune {bad} --data {rec} --out {out}/p.safetensors --quiet"
BENCH_MODEL = "benchmark model --checkpoint {bad} --runs 1 --warmup 0"
BENCH_NODE = "benchmark node --weights {bad} --quick"
DEMO = "demo --weights {bad} --out {out}"
REPORT = "report {bad}"
TRAIN_RUN = (
    "train --split auto:0.5:0.25 --sequences rec --root {root} --out {bad_parent} --epochs 2 "
    "--width 0.125 --quiet"
)
SPLIT_CMDS = (
    "cache --split {bad} --root {root} --out {out} --quiet",
    "train --split {bad} --root {root} --out {out} --epochs 1 --width 0.125 --quiet",
    "evaluate {ckpt} --split {bad} --data {root} --quiet",
)

CATALOGUE: tuple[Case, ...] = (
    Case("hdf5-truncated", _hdf5_damaged("truncated"), (INSPECT, CACHE_REC)),
    Case("hdf5-garbage", _hdf5_damaged("garbage"), (INSPECT, TRAIN_REC)),
    Case("hdf5-empty", _hdf5_damaged("empty"), (INSPECT, BENCH_DATA)),
    Case("hdf5-folder", _hdf5_damaged("folder"), (INSPECT, EVALUATE_REC)),
    Case("hdf5-nan-times", _edit_events(_nan_times), (INSPECT, PRUNE_REC)),
    Case("hdf5-inf-times", _edit_events(_inf_times), (INSPECT, CACHE_REC)),
    Case("hdf5-text-events", _edit_events(_as_text), (INSPECT,)),
    Case("hdf5-3-columns", _edit_events(lambda r: r[:, :3]), (INSPECT,)),
    Case("gt-nan-stamps", _edit_events(_nan_stamps, gt=True), (INSPECT, EVALUATE_REC)),
    Case("gt-backward-stamps", _edit_events(_backward_stamps, gt=True), (INSPECT,)),
    Case("ros1-chunk-header", _ros1_chunk("header"), (INSPECT,)),
    Case("ros1-chunk-data", _ros1_chunk("data"), (INSPECT, EVALUATE_REC, CACHE_REC)),
    Case("ros1-truncated", lambda d, g: _truncated(_ros1_bag(d), 0.5), (INSPECT,)),
    Case("ros2-sqlite3-truncated", _ros2_truncated("sqlite3"), (INSPECT, EVALUATE_REC)),
    Case("ros2-mcap-truncated", _ros2_truncated("mcap"), (INSPECT,)),
    Case("recording-missing", _missing("rec_data.hdf5"), (INSPECT, EVALUATE_REC), "rec"),
    Case("ckpt-pickle", _ckpt("pickle"), (EVALUATE_CKPT, BASELINE_CKPT, DEMO, BENCH_NODE)),
    Case("ckpt-torch-pt", _ckpt("torch-pt"), (EVALUATE_CKPT,)),
    Case("ckpt-huge-header", _ckpt("huge-header"), (BENCH_MODEL,)),
    Case("ckpt-garbled-header", _ckpt("garbled-header"), (PRUNE_CKPT,)),
    Case("ckpt-empty", _ckpt("empty"), (EVALUATE_CKPT,)),
    Case("ckpt-truncated", _ckpt("truncated"), (BASELINE_CKPT,)),
    Case("ckpt-plain-safetensors", _ckpt("plain"), (PRUNE_CKPT,)),
    Case("ckpt-wrong-names", _ckpt("wrong-names"), (BENCH_MODEL,)),
    Case("ckpt-wrong-shapes", _ckpt("wrong-shapes"), (EVALUATE_CKPT,)),
    Case("ckpt-nan", _ckpt("nan"), (EVALUATE_CKPT, PRUNE_CKPT, BENCH_MODEL, DEMO, BENCH_NODE)),
    Case("ckpt-inf", _ckpt("inf"), (BASELINE_CKPT,)),
    Case("ckpt-folder", _ckpt("folder"), (EVALUATE_CKPT, DEMO)),
    Case("ckpt-missing", _missing("model.safetensors"), (PRUNE_CKPT, DEMO)),
    Case("split-broken-json", _text("split.json", '{"sequences": {'), SPLIT_CMDS),
    Case("split-not-a-mapping", _text("split.json", "[1, 2, 3]"), SPLIT_CMDS[:1]),
    Case("split-binary", _text("split.yaml", b"\xff\xfe\x00garbage\x80"), SPLIT_CMDS[1:2]),
    Case("split-folder", _folder_named("split.json"), SPLIT_CMDS[2:]),
    Case("split-missing", _missing("split.json"), SPLIT_CMDS[:1]),
    Case("metrics-garbage", _run_folder(b"\x00\x01junk\xff\n1,2\n"), (REPORT,), "metrics"),
    Case("metrics-empty", _run_folder(""), (REPORT,), "metrics"),
    Case("metrics-missing", _run_folder(None), (REPORT,), "metrics"),
    Case("train-state-garbage", _train_state(b"PK\x03\x04garbage" * 8), (TRAIN_RUN,)),
    Case("train-state-foreign", _train_state(None), (TRAIN_RUN,)),
    Case("cache-garbage", _cache_file("garbage"), ("evaluate {ckpt} --data {bad} --quiet",)),
    Case("cache-incomplete", _cache_file("incomplete"), ("evaluate {ckpt} --data {bad} --quiet",)),
    Case("out-is-a-file", _a_file("out"), (
        "simulate --out {bad} --duration 0.1 --quiet",
        "benchmark sim --out {bad}",
        "cache --split auto:0.5:0.25 --sequences rec --root {root} --out {bad} --quiet",
        "evaluate {ckpt} --data {rec} --json {bad}/r.json --quiet",
    )),
)  # fmt: skip

RUNS = [(case, command) for case in CATALOGUE for command in case.commands]


def _run(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stereospike_ros", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("cli_errors")
    good: dict = {"rec": _good_recording(base / "good"), "root": base / "good"}
    model, _ = _model_tensors()
    good["ckpt"] = save_checkpoint(
        base / "good" / "model.safetensors", model, input_size=(H, W), window_ms=50
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    jobs = {}
    for case in CATALOGUE:
        folder = base / case.name
        bad = case.build(folder, good)
        for i, command in enumerate(case.commands):
            out = base / f"{case.name}.out{i}"
            fields = {
                "bad": bad,
                "bad_parent": bad.parent,
                "dir": folder,
                "rec": good["rec"],
                "ckpt": good["ckpt"],
                "root": good["root"],
                "out": out,
            }
            argv = [part.format(**fields) for part in command.split()]
            jobs[(case.name, command)] = (argv, bad)
    with ThreadPoolExecutor(2) as pool:
        futures = {key: pool.submit(_run, argv, env) for key, (argv, _) in jobs.items()}
        return {key: (futures[key].result(), jobs[key][1]) for key in jobs}


@pytest.mark.parametrize(
    ("case", "command"),
    RUNS,
    ids=[f"{c.name}:{c.commands.index(cmd)}:{cmd.split()[0]}" for c, cmd in RUNS],
)
def test_every_command_refuses_a_corrupt_input_with_one_line_and_status_2(
    outcomes: dict, case: Case, command: str
) -> None:
    result, bad = outcomes[(case.name, command)]
    stderr = result.stderr
    assert "Traceback" not in stderr + result.stdout, stderr
    lines = stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, stderr[-2000:])
    assert len(lines) == 1, stderr
    program = command.split()[0]
    assert lines[0].startswith(f"{program}"), lines[0]
    assert ": error: " in lines[0], lines[0]
    assert (case.names or bad.name) in lines[0], lines[0]


def test_event_times_out_of_order_are_not_an_error(tmp_path: Path) -> None:
    """Not every odd file is corrupt: frames sort each chunk and count late events, so
    commands read a recording whose events go back in time, without a traceback."""
    good = {"rec": _good_recording(tmp_path / "good")}
    model, _ = _model_tensors()
    ckpt = save_checkpoint(tmp_path / "model.safetensors", model, input_size=(H, W))
    bad = _edit_events(_backward_times)(tmp_path / "case", good)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for argv in (
        ["inspect", str(bad), "--count-events"],
        ["evaluate", str(ckpt), "--data", str(bad)],
    ):
        done = _run([*argv, "--quiet"] if argv[0] == "evaluate" else argv, env)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
