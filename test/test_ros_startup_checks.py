"""Start-up faults a user makes: misspelt parameter names get a WARN naming the nearest known
one (nodes as their own processes, parameters from a YAML file and ``-p``); weights holding NaN
or Inf stop the node before it publishes anything."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from model_helpers import rewrite_tensors
from ros_support import ROOT, ros_env, stop, tiny_checkpoint

from stereospike_ros.ros.parameters import DEPTH_NODE_PARAMS, unknown_parameters

rclpy = pytest.importorskip("rclpy")

from stereospike_ros.ros.depth_node import main  # noqa: E402


def _node_output(module: str, ros_args: list[str], wanted: list[str], timeout: float) -> list[str]:
    """Run ``stereospike_ros.ros.<module> --ros-args ...`` until every ``wanted`` text is in its
    output (or ``timeout``), then Ctrl-C it; its output lines."""
    process = subprocess.Popen(
        [sys.executable, "-m", f"stereospike_ros.ros.{module}", "--ros-args", *ros_args],
        cwd=ROOT, env=ros_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if all(any(w in line for line in lines) for w in wanted):
            break
        time.sleep(0.2)
    stop(process)
    reader.join(10)
    return lines


def _warned(lines: list[str], message: str) -> bool:
    return any(message in line and "WARN" in line for line in lines)


def test_the_nearest_known_name_is_suggested_and_unrelated_names_list_the_known_ones() -> None:
    known = [p.name for p in DEPTH_NODE_PARAMS]
    assert unknown_parameters(["window_ms", "widnow_ms", "qos_dpeth"], known) == [
        "unknown parameter 'qos_dpeth' is ignored; did you mean 'qos_depth'?",
        "unknown parameter 'widnow_ms' is ignored; did you mean 'window_ms'?",
    ]
    (message,) = unknown_parameters(["zzz"], known)
    listed = sorted(known)[:2]  # every known name, in order
    assert message.startswith(f"unknown parameter 'zzz' is ignored; known: {', '.join(listed)}")


def test_depth_node_warns_about_misspelt_parameters_from_a_yaml_file_and_the_command_line(
    tmp_path: Path,
) -> None:
    weights = tiny_checkpoint(tmp_path / "tiny.safetensors")
    params = tmp_path / "params.yaml"
    params.write_text(
        "/**:\n"
        "  ros__parameters:\n"
        "    silence_timout_s: 2.0\n"
        "    publish_colour: false\n"
        "    window_ms: 40.0\n"
    )
    wanted = [
        "unknown parameter 'silence_timout_s' is ignored; did you mean 'silence_timeout_s'?",
        "unknown parameter 'publish_colour' is ignored; did you mean 'publish_color'?",
        "unknown parameter 'widnow_ms' is ignored; did you mean 'window_ms'?",
    ]
    ros_args = [
        "--params-file", str(params), "-p", f"weights:={weights}", "-p", "widnow_ms:=25.0",
        "-p", "use_sim_time:=false", "-p", "warm_up_size:=''",
    ]  # fmt: skip
    lines = _node_output("depth_node", ros_args, wanted, timeout=90)
    for message in wanted:
        assert _warned(lines, message), "".join(lines)
    text = "".join(lines)
    assert "'window_ms' is ignored" not in text and "use_sim_time" not in text, text
    assert "cannot start" not in text, text  # a warning, not a refusal


def test_the_evaluator_warns_too() -> None:
    message = "unknown parameter 'tolerence_ms' is ignored; did you mean 'tolerance_ms'?"
    lines = _node_output("depth_evaluator", ["-p", "tolerence_ms:=2.0"], [message], timeout=60)
    assert _warned(lines, message), "".join(lines)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_inf_weights_stop_the_node_at_start_up(tmp_path: Path, capfd, value) -> None:
    def poison(tensors: dict) -> dict:
        tensors["predict.depth1.bias"] = torch.full_like(tensors["predict.depth1.bias"], value)
        return tensors

    good = tiny_checkpoint(tmp_path / "ok.safetensors")
    bad = rewrite_tensors(good, tmp_path / "diverged.safetensors", poison)
    assert main(["depth_node", "--ros-args", "-p", f"weights:={bad}"]) == 1
    err = capfd.readouterr().err
    assert "cannot start" in err and "diverged.safetensors holds NaN or Inf weights" in err
