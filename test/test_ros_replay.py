"""Replay through real DDS equals ``evaluate`` on the same file and maps, frame for frame.

A short simulated recording is written raw with NON-identity rectification maps (MVSEC map
files: a sub-pixel shift and shear, so rounding matters and some raw pixels leave the image)
as an HDF5 pair, a ROS 1 bag and a ROS 2 bag. For each, ``event_player`` (lockstep, reliable)
-> ``depth_node`` (trigger mode, maps from the player, replay watermarks) run as processes;
every ground-truth frame must be answered with the depth and MDE that ``evaluate`` computes
offline. The HDF5 run goes through ``depth_evaluator`` too (frames expected / answered /
missing), with the node slowed on purpose (test-only delay): lockstep makes that irrelevant.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import spin_until
from ros_support import ros_env, small_recording, start_node, stop, tiny_checkpoint

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from stereospike_ros.data.bags import write_ros1_bag, write_ros2_bag  # noqa: E402
from stereospike_ros.model import MetricAccumulator, load_checkpoint  # noqa: E402
from stereospike_ros.ros import convert  # noqa: E402
from stereospike_ros.ros.depth_evaluator import score_pair  # noqa: E402
from stereospike_ros.ros.depth_node import TEST_DELAY_ENV  # noqa: E402
from stereospike_ros.training.evaluate import evaluate, open_eval_data  # noqa: E402

GT_TOPIC = "/davis/left/depth_image_rect"
H, W = 48, 64


def _write_maps(folder: Path) -> None:
    """MVSEC-style maps: rectified x = raw x + 2.6 + 0.02 y, rectified y = raw y - 0.7."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    maps = {"x": x + 2.6 + 0.02 * y, "y": y - 0.7}
    for side in ("left", "right"):
        for axis, values in maps.items():
            np.savetxt(folder / f"small_{side}_{axis}_map.txt", values, fmt="%.4f")


@pytest.fixture(scope="module")
def replay_data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("replay")
    recording, hdf5 = small_recording(folder, duration_s=0.45, height=H, width=W)
    _write_maps(folder)  # found beside the HDF5 pair by name; given explicitly for bags
    write_ros1_bag(recording, folder / "small.bag")
    write_ros2_bag(recording, folder / "small_ros2")
    checkpoint = tiny_checkpoint(folder / "tiny.safetensors")
    model, _ = load_checkpoint(checkpoint)
    inputs = {"hdf5": hdf5, "ros1": folder / "small.bag", "ros2": folder / "small_ros2"}
    offline = {}
    for which, path in inputs.items():
        with open_eval_data(path, calibration=folder) as data:
            offline[which] = evaluate(model, data.frames(), keep=range(data.count))
    return {
        "folder": folder,
        "recording": recording,
        "checkpoint": checkpoint,
        "offline": offline,
        "inputs": inputs,
    }


def _replay(ros_context, data: dict, which: str, slow_s: float = 0.0, evaluator=None) -> dict:
    """Player (lockstep) -> node; returns the depth images heard here by stamp and the logs."""
    listener = rclpy.create_node(f"replay_listener_{which}", context=ros_context)
    received: dict[int, np.ndarray] = {}
    listener.create_subscription(
        Image,
        "/depth_node/depth",
        lambda m: received.__setitem__(
            convert.time_to_ns(m.header.stamp), convert.depth_from_image(m)
        ),
        QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE),
    )
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(listener)
    if slow_s:
        os.environ[TEST_DELAY_ENV] = str(slow_s)
    try:
        node = start_node(
            "depth_node",
            {
                "weights": data["checkpoint"],
                "trigger_topic": GT_TOPIC,
                "reliable": True,
                "rectify": True,
                "replay_watermarks": True,
                "threads": 1,
                "warm_up_size": f"{H}x{W}",
                "firing_rate": False,
            },
            name="depth_node",
        )
    finally:
        os.environ.pop(TEST_DELAY_ENV, None)
    player = None
    try:
        ready = spin_until(
            executor,
            lambda: (
                (
                    listener.count_publishers("/depth_node/depth") == 1
                    and listener.count_subscribers("/davis/right/events") == 1
                )
                or node.poll() is not None
            ),
            timeout=90.0,
        )
        publishers = listener.get_publishers_info_by_topic("/depth_node/depth")
        subscribers = listener.get_subscriptions_info_by_topic("/davis/right/events")
        graph = (
            f"depth publishers {[i.node_name for i in publishers]}, "
            f"right-event subscribers {[i.node_name for i in subscribers]}"
        )
        if not ready or node.poll() is not None:
            pytest.fail(f"the node did not come up ({graph}):\n{stop(node)[1]}")
        player = start_node(
            "event_player",
            {
                "recording": data["inputs"][which],
                "calibration": data["folder"],
                "rate": 0.0,
                "lockstep": True,
                "wait_for_subscribers": 1,
                "wait_for_depth_subscribers": 1 if evaluator is None else 2,
                "wait_timeout_s": 60.0,
                "start_delay_s": 1.0,
                "answer_timeout_s": 30.0,
            },
        )
        assert spin_until(executor, lambda: player.poll() is not None, timeout=180.0)
        spin_until(executor, lambda: len(received) >= len(data["offline"][which].per_frame), 5)
    finally:
        player_code, player_out = stop(player) if player else (None, "not started")
        node_code, node_out = stop(node)
        executor.shutdown()
        listener.destroy_node()
    assert player_code == 0, player_out
    assert node_code == 0, node_out
    return {"received": received, "player": player_out, "node": node_out}


def _check_equals_offline(data: dict, run: dict, which: str) -> None:
    offline = data["offline"][which]
    stamps = [r["t_ns"] for r in offline.per_frame]
    assert sorted(run["received"]) == stamps, (run["player"], run["node"])  # every frame, once
    gt = dict(zip(data["recording"].depth_ts_ns.tolist(), data["recording"].depth, strict=True))
    for position, record in enumerate(offline.per_frame):
        online = run["received"][record["t_ns"]]
        np.testing.assert_allclose(online, offline.kept[position], rtol=1e-5, atol=1e-5)
        pred, truth, _ = score_pair(online, gt[record["t_ns"]])
        accumulator = MetricAccumulator()
        accumulator.update(torch.from_numpy(pred), torch.from_numpy(truth))
        assert accumulator.summary()["mde_cm"] == pytest.approx(record["mde_cm"], abs=1e-3)
    frames = len(stamps)
    assert f"frames expected {frames}, answered {frames}, missing 0" in run["player"]
    assert "rectification from /davis/left/rectification_map" in run["node"]
    assert "MVSEC maps" in run["player"]


def test_offline_rectification_is_not_the_identity(replay_data):
    """The maps move events: without them the offline depth differs (else the test is void)."""
    model, _ = load_checkpoint(replay_data["checkpoint"])
    with open_eval_data(replay_data["inputs"]["hdf5"], rectify=False) as data:
        raw = evaluate(model, data.frames(), keep=range(data.count))
    rectified = replay_data["offline"]["hdf5"]
    assert any(not np.allclose(raw.kept[i], rectified.kept[i], atol=1e-4) for i in rectified.kept)


def test_slowed_node_in_lockstep_answers_every_hdf5_frame_as_evaluate_does(
    ros_context, replay_data
):
    summary_path = replay_data["folder"] / "evaluation.json"
    evaluator = start_node(
        "depth_evaluator",
        {"output": summary_path, "log_every": 0, "wait_for_depth_publisher": True},
        name="depth_evaluator",
    )
    try:
        run = _replay(ros_context, replay_data, "hdf5", slow_s=0.3, evaluator=evaluator)
        time.sleep(0.5)
    finally:
        eval_code, eval_out = stop(evaluator)
    assert eval_code == 0, eval_out
    _check_equals_offline(replay_data, run, "hdf5")
    summary = json.loads(summary_path.read_text())
    frames = len(replay_data["offline"]["hdf5"].per_frame)
    assert (summary["frames_expected"], summary["frames_answered"]) == (frames, frames)
    assert summary["frames_missing"] == 0
    assert summary["metrics"]["mde_cm"] == pytest.approx(
        replay_data["offline"]["hdf5"].metrics["mde_cm"], abs=1e-3
    )


@pytest.mark.parametrize("which", ["ros1", "ros2"])
def test_bag_replay_answers_every_frame_as_evaluate_does(ros_context, replay_data, which):
    _check_equals_offline(replay_data, _replay(ros_context, replay_data, which), which)
    # the same frames as the HDF5 pair: the three formats hold one recording
    hdf5, bag = replay_data["offline"]["hdf5"], replay_data["offline"][which]
    assert [r["mde_cm"] for r in bag.per_frame] == [r["mde_cm"] for r in hdf5.per_frame]


def test_node_command_runs_a_node_without_the_ros2_cli(tmp_path):
    """``python -m stereospike_ros node NAME --ros-args ...`` runs the node's own main."""
    result = subprocess.run(
        [sys.executable, "-m", "stereospike_ros", "node", "depth_node", "--ros-args", "-p",
         f"weights:={tmp_path / 'missing.safetensors'}"],
        capture_output=True, text=True, timeout=120, env=ros_env(),
    )  # fmt: skip
    assert result.returncode == 1
    assert "cannot start: weights file" in result.stdout + result.stderr
    assert "missing.safetensors" in result.stdout + result.stderr


def test_demo_replays_a_users_recording_and_prints_the_evaluators_result(replay_data, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "stereospike_ros", "demo",
         "--recording", str(replay_data["inputs"]["hdf5"]),
         "--weights", str(replay_data["checkpoint"]), "--out", str(tmp_path), "--rate", "0",
         "--images", "0", "--timeout", "200"],
        capture_output=True, text=True, timeout=240, env=ros_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    frames = len(replay_data["offline"]["hdf5"].per_frame)
    mde = replay_data["offline"]["hdf5"].metrics["mde_cm"]
    assert "rectification MVSEC maps" in result.stdout
    assert f"MDE {mde:.1f} cm over {frames} of {frames} ground-truth frames" in result.stdout
    assert f"frames expected {frames}, answered {frames}, missing 0" in result.stdout


def test_node_applies_or_reports_the_players_rectification_maps(ros_context, replay_data, capfd):
    """Latched maps arriving on the rectification topic: used with rectify, reported without."""
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy

    from stereospike_ros.data.open import open_sequence
    from stereospike_ros.ros.depth_node import DepthNode

    with open_sequence(replay_data["inputs"]["hdf5"]) as sequence:
        expected = sequence.rectifier("left")
    talker = rclpy.create_node("maps_talker", context=ros_context)
    latched = QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
    )
    pub = talker.create_publisher(Image, "/davis/left/rectification_map", latched)
    maps = np.stack(expected.maps(), axis=-1)
    pub.publish(convert.image_from_array(maps, "32FC2", 0, "left"))  # before the node exists
    for rectify in (False, True):
        overrides = [
            Parameter("weights", value=str(replay_data["checkpoint"])),
            Parameter("threads", value=1),
            Parameter("warm_up_size", value=""),
            Parameter("rectify", value=rectify),
            Parameter("right_rectification_topic", value=""),
            Parameter("right_camera_info_topic", value="/unused/camera_info"),
        ]
        node = DepthNode(context=ros_context, parameter_overrides=overrides)
        executor = SingleThreadedExecutor(context=ros_context)
        executor.add_node(node)
        executor.add_node(talker)
        try:
            assert spin_until(executor, lambda node=node: "left" in node.maps, timeout=20.0)
            spin_until(executor, lambda: False, timeout=0.2)
        finally:
            executor.shutdown()
            node.shutdown()
            node.destroy_node()
        err = capfd.readouterr().err
        if rectify:
            assert node.ingest.rectifiers["left"].pixels_differing(expected) == 0
            assert "left rectification from /davis/left/rectification_map" in err
        else:
            assert node.ingest.rectifiers["left"] is None
            assert "rectify is false here: this depth will differ from evaluate's" in err
    talker.destroy_node()
