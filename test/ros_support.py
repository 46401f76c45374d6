"""Shared pieces of the ROS node tests (imported by test_ros_*.py): a tiny real checkpoint,
a small simulated recording on disk, and running a node as its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from stereospike_ros.model import build_model, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def tiny_checkpoint(path: Path, name: str = "stereospike", bias: float = 3.0) -> Path:
    """A real (untrained) compact network; the head bias keeps its depth positive (metres)."""
    torch.manual_seed(0)
    model = build_model(name, width=0.125, heads=(1,))
    with torch.no_grad():
        model.predict["depth1"].bias.fill_(bias)
    return save_checkpoint(path, model, window_ms=50.0, input_size=None)


def small_recording(folder: Path, duration_s: float = 0.6, height: int = 48, width: int = 64):
    """A simulated recording at reduced resolution, written as an MVSEC HDF5 pair."""
    from stereospike_ros.data.mvsec_hdf5 import write_mvsec_hdf5
    from stereospike_ros.sim.simulator import SimConfig, simulate

    config = SimConfig(
        name="small",
        seed=3,
        duration_s=duration_s,
        scene="room",
        motion="sweep",
        width=width,
        height=height,
        focal_px=40.0,
        baseline_m=0.088,
    )
    recording = simulate(config)
    data, gt = folder / "small_data.hdf5", folder / "small_gt.hdf5"
    write_mvsec_hdf5(recording, data, gt)
    return recording, data


def random_events(t0_ns: int, t1_ns: int, n: int = 200, height: int = 32, width: int = 48):
    """``n`` events spread over [t0_ns, t1_ns) on a ``height`` x ``width`` sensor (seeded)."""
    import numpy as np

    from stereospike_ros.events.types import EVENT_DTYPE

    rng = np.random.default_rng(t0_ns % 1000)
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(t0_ns, t1_ns, n))
    ev["x"], ev["y"] = rng.integers(0, width, n), rng.integers(0, height, n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


def ros_env() -> dict[str, str]:
    """This test session's DDS domain (conftest picks it) for child processes, one torch thread."""
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", str(ROOT))
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_node(
    module: str,
    params: dict[str, object],
    name: str | None = None,
    namespace: str | None = None,
    remaps: dict[str, str] | None = None,
    sigint_ignored: bool = False,
) -> subprocess.Popen:
    """``python -m stereospike_ros.ros.<module> --ros-args -p k:=v ...`` in its own process.

    ``sigint_ignored`` starts it as a non-interactive shell starts a background job (``cmd &``):
    with SIGINT ignored, which the child inherits."""
    args = [sys.executable, "-m", f"stereospike_ros.ros.{module}", "--ros-args"]
    if name:
        args += ["-r", f"__node:={name}"]
    if namespace:
        args += ["-r", f"__ns:={namespace}"]
    for old, new in (remaps or {}).items():
        args += ["-r", f"{old}:={new}"]
    for key, value in params.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        args += ["-p", f"{key}:={text}"]
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env=ros_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_ignore_sigint if sigint_ignored else None,
    )


def stop(process: subprocess.Popen, timeout: float = 20.0) -> tuple[int, str]:
    """SIGINT (like Ctrl-C), then wait; returns (exit code, output)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return process.returncode, out
