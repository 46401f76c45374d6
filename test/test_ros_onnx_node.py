"""The depth node with ``inference_path:=onnxruntime``, through real DDS: the depth images it
publishes equal the exact path's depth on the same windows, and a wrong ONNX file stops it at
start-up."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import spin_until

pytest.importorskip("onnxruntime")
rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from test_ros_nodes import _events, _wait_matched  # noqa: E402

from stereospike_ros.events import encode_event_array, event_histogram  # noqa: E402
from stereospike_ros.model import build_model, save_checkpoint  # noqa: E402
from stereospike_ros.model.onnx_export import export_checkpoint  # noqa: E402
from stereospike_ros.ros import convert  # noqa: E402
from stereospike_ros.ros.depth_node import DepthNode  # noqa: E402
from stereospike_ros.ros.errors import StartupError  # noqa: E402
from stereospike_ros.ros.pipeline import load_estimator  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory):
    import torch

    torch.manual_seed(0)
    model = build_model("stereospike", width=0.125, heads=(1, 2))
    with torch.no_grad():
        model.predict["depth1"].bias.fill_(3.0)
    folder = tmp_path_factory.mktemp("onnx_weights")
    return save_checkpoint(folder / "tiny.safetensors", model, window_ms=50.0)


def test_onnxruntime_node_publishes_the_exact_paths_depth_over_dds(ros_context, checkpoint):
    from dvs_msgs.msg import EventArray

    # Its own name and topics: a destroyed node lingers in this process's DDS graph a while,
    # and later tests count the publishers of /depth_node/depth.
    overrides = {
        "weights": str(checkpoint),
        "threads": 1,
        "inference_path": "onnxruntime",
        "onnx_providers": "cpu",
        "firing_rate": False,
        "reliable": True,
        "warm_up_size": "32x48",
        "left_events_topic": "/onnx/left/events",
        "right_events_topic": "/onnx/right/events",
        "left_camera_info_topic": "/onnx/left/camera_info",
        "right_camera_info_topic": "/onnx/right/camera_info",
        "left_rectification_topic": "/onnx/left/rectification_map",
        "right_rectification_topic": "/onnx/right/rectification_map",
    }
    node = DepthNode(
        "onnx_depth_node",
        context=ros_context,
        parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
    )
    assert node.estimator.fast is not None and node.estimator.fast.path == "onnxruntime"
    talker = rclpy.create_node("onnx_talker", context=ros_context)
    pubs = {
        s: talker.create_publisher(EventArray, f"/onnx/{s}/events", 1000) for s in ("left", "right")
    }
    sent: dict[str, list[np.ndarray]] = {"left": [], "right": []}
    depth: list[Image] = []
    talker.create_subscription(Image, "/onnx_depth_node/depth", depth.append, 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(talker)
    try:
        _wait_matched(executor, node, pubs)
        step, deadline = 0, time.monotonic() + 40.0
        while len(depth) < 4 and time.monotonic() < deadline:
            for t in range(step, step + 20, 5):  # 5 ms messages per camera, sensor time
                t0, t1 = 10**9 + t * 10**6, 10**9 + (t + 5) * 10**6
                for side in ("left", "right"):
                    events = _events(t0 + (side == "right"), t1, 300)
                    sent[side].append(events)
                    pubs[side].publish(encode_event_array(events, 32, 48, t1, "cam"))
            executor.spin_once(timeout_sec=0.01)
            step += 20
        assert spin_until(executor, lambda: len(depth) >= 4, timeout=20.0)
    finally:
        node.shutdown()
        executor.shutdown()
    exact, _ = load_estimator(checkpoint, "cpu", firing_rate=False, path="exact")
    left_all, right_all = (np.concatenate(sent[s]) for s in ("left", "right"))
    compared = 0
    for msg in depth:
        image = convert.depth_from_image(msg)
        t_end = convert.time_to_ns(msg.header.stamp)
        t0 = t_end - 50_000_000
        if t0 < 10**9:
            continue  # a window reaching before the first event message
        left, _ = event_histogram(left_all, 32, 48, t0, t_end)
        right, _ = event_histogram(right_all, 32, 48, t0, t_end)
        assert left.sum() > 0 and right.sum() > 0
        assert np.isfinite(image).mean() > 0.9 and np.nanstd(image) > 1e-3  # a real depth map
        np.testing.assert_allclose(image, exact(left, right).depth, rtol=0, atol=1e-4)
        compared += 1
    assert compared >= 2
    assert node.stats.inference_errors == 0


def test_a_foreign_or_missing_runtime_stops_the_node_at_start_up(tmp_path, checkpoint, monkeypatch):
    import sys

    import torch

    torch.manual_seed(5)
    other = save_checkpoint(
        tmp_path / "other.safetensors", build_model("stereospike", width=0.125, heads=(1,))
    )
    generator = torch.Generator().manual_seed(0)
    windows = [torch.poisson(torch.full((4, 16, 24), 1.0), generator=generator)]
    onnx_file = export_checkpoint(other, tmp_path / "other.onnx", windows=windows).path
    with pytest.raises(StartupError, match=r"inference_path 'onnxruntime'.*exported from another"):
        load_estimator(checkpoint, "cpu", path="onnxruntime", onnx_file=str(onnx_file))
    assert load_estimator(other, "cpu", path="onnxruntime", onnx_file=str(onnx_file))[0].fast
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(StartupError, match="pip install onnxruntime=="):
        load_estimator(checkpoint, "cpu", path="onnxruntime")
