"""A ``cache`` or ``train`` killed mid-write leaves a partial file; the next run removes it.

The kills are real: a child process runs the command and SIGKILLs itself in the middle of
writing (between two cache frames, or halfway through saving the training state), so the
partial file on disk is what a killed run really leaves.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import pytest
from data_helpers import tiny_recording

from stereospike_ros.atomic import (
    STALE_AFTER_S,
    atomic_write,
    partial_path,
    remove_stale_partials,
)
from stereospike_ros.data import write_mvsec_hdf5

CACHE_ARGS = ["--split", "auto:0.5:0.25", "--sequences", "rec", "--quiet"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("partials")
    write_mvsec_hdf5(
        tiny_recording(seed=9, frames=8), folder / "rec_data.hdf5", folder / "rec_gt.hdf5"
    )
    return folder


def _killed(script: str, *argv: str) -> None:
    """Run ``script`` in a child that SIGKILLs itself where the script says; check it did."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *argv], capture_output=True, text=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


def _partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.partial"))


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                           capture_output=True, check=True)  # fmt: skip
    return int(child.stdout)


def test_a_cache_killed_mid_conversion_leaves_a_partial_that_the_next_run_removes(
    root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cache"
    _killed(
        """
        import os, signal, sys
        from stereospike_ros.cli import main
        from stereospike_ros.data import frames

        real = frames.iter_frames
        def dying(*args, **kwargs):
            for n, frame in enumerate(real(*args, **kwargs)):
                if n == 2:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield frame
        frames.iter_frames = dying
        main(sys.argv[1:])
        """,
        "cache", "--root", str(root), "--out", str(out), *CACHE_ARGS,
    )  # fmt: skip
    (left,) = _partials(out)
    assert left.startswith(".auto_0.5_0.25_train.h5.") and f"@{socket.gethostname()}~" in left
    # A conversion of the same file running now (this process) must keep its partial file.
    live = partial_path(out / "auto_0.5_0.25_train.h5")
    live.write_bytes(b"being written")

    done = subprocess.run(
        [sys.executable, "-m", "stereospike_ros", "cache", "--root", str(root), "--out", str(out),
         *CACHE_ARGS], capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _partials(out) == [live.name]
    with h5py.File(out / "auto_0.5_0.25_train.h5") as f:
        assert f.attrs["complete"] and f["x"].shape[0] == 4


def test_a_train_killed_while_saving_its_state_is_resumed_without_leftovers(
    root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--root", str(root), "--out", str(out), "--width", "0.125", *CACHE_ARGS]
    _killed(
        """
        import importlib, os, signal, sys
        from stereospike_ros.cli import main

        train = importlib.import_module("stereospike_ros.training.train")

        real = train.atomic_write
        def dying(path, write):
            if path.name != train.STATE_FILE:
                return real(path, write)
            def half(f):
                f.write(b"PK" * 1000)
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real(path, half)
        train.atomic_write = dying
        main(sys.argv[1:])
        """,
        *argv, "--epochs", "1",
    )  # fmt: skip
    assert [n.split(".")[1] for n in _partials(out)] == ["train_state"]
    assert not (out / "train_state.pt").exists()

    done = subprocess.run(
        [sys.executable, "-m", "stereospike_ros", *argv, "--epochs", "1"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert _partials(out) == []
    assert (out / "train_state.pt").is_file() and (out / "best.safetensors").is_file()


def test_only_partials_whose_writer_is_gone_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    host = socket.gethostname()
    dead, alive = _dead_pid(), os.getpid()
    names = {
        "dead here": f".model.safetensors.{dead}@{host}~ab12.partial",
        "older name, dead": f".model.safetensors.{dead}.partial",
        "alive here": f".model.safetensors.{alive}@{host}~cd34.partial",
        "fresh elsewhere": f".model.safetensors.{dead}@other-host~ef56.partial",
        "old elsewhere": f".model.safetensors.{dead}@other-host~0789.partial",
        "another file's": f".model.safetensors.bak.{dead}@{host}~1111.partial",
        "not ours": ".model.safetensors.swp.partial",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    old = time.time() - STALE_AFTER_S - 60
    os.utime(tmp_path / names["old elsewhere"], (old, old))

    removed = {p.name for p in remove_stale_partials(target)}
    assert removed == {names[k] for k in ("dead here", "older name, dead", "old elsewhere")}
    atomic_write(target, lambda f: f.write(b"weights"))  # a write cleans up the same way
    kept = {p.name for p in tmp_path.iterdir()} - {target.name}
    assert kept == {
        names[k] for k in ("alive here", "fresh elsewhere", "another file's", "not ours")
    }
    assert target.read_bytes() == b"weights"
