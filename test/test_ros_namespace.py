"""The plain depth node in a namespace, as its own process: what ``ros2 node list`` and
``ros2 node info`` show, and depth coming out under the namespace for events sent there."""

from __future__ import annotations

import time

import pytest
from conftest import spin_until
from ros_support import random_events, start_node, stop, tiny_checkpoint

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from stereospike_ros.events import encode_event_array  # noqa: E402

NS = "/robot1/stereo"


def test_node_in_a_namespace_shows_its_inputs_and_publishes_there(ros_context, tmp_path):
    from dvs_msgs.msg import EventArray

    checkpoint = tiny_checkpoint(tmp_path / "tiny.safetensors")
    node = start_node(
        "depth_node",
        {"weights": checkpoint, "threads": 1, "warm_up_size": "32x48", "reliable": True},
        namespace=NS,
    )
    client = rclpy.create_node("namespace_client", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(client)
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    pubs = [
        client.create_publisher(EventArray, f"{NS}/davis/{side}/events", qos)
        for side in ("left", "right")
    ]
    depth: list[Image] = []
    client.create_subscription(Image, f"{NS}/depth_node/depth", depth.append, 10)
    try:
        assert spin_until(
            executor,
            lambda: all(p.get_subscription_count() for p in pubs) or node.poll() is not None,
            timeout=60.0,
        )
        assert node.poll() is None, stop(node)[1]

        # One node, the one users address; its event inputs are listed on it.
        def ours() -> list:
            return [(n, ns) for n, ns in client.get_node_names_and_namespaces() if ns == NS]

        # node names travel on their own discovery topic, a moment after the endpoints
        spin_until(executor, lambda: ours() == [("depth_node", NS)], timeout=10.0)
        assert ours() == [("depth_node", NS)], client.get_node_names_and_namespaces()
        subs = dict(client.get_subscriber_names_and_types_by_node("depth_node", NS))
        for side in ("left", "right"):
            assert subs[f"{NS}/davis/{side}/events"] == ["dvs_msgs/msg/EventArray"]
            assert f"{NS}/davis/{side}/camera_info" in subs
        pubs_by_node = dict(client.get_publisher_names_and_types_by_node("depth_node", NS))
        assert {f"{NS}/depth_node/depth", f"{NS}/depth_node/depth_color", "/diagnostics"} <= set(
            pubs_by_node
        )
        t_ms, deadline = 0, time.monotonic() + 40.0
        while not depth and time.monotonic() < deadline:
            t0, t1 = 10**9 + t_ms * 10**6, 10**9 + (t_ms + 5) * 10**6
            for pub in pubs:
                pub.publish(encode_event_array(random_events(t0, t1), 32, 48, t1, "cam"))
            t_ms += 5
            executor.spin_once(timeout_sec=0.002)
        assert depth, "no depth under the namespace"
        assert client.count_publishers("/depth_node/depth") == 0  # nothing outside it
    finally:
        code, out = stop(node)
        executor.shutdown()
        client.destroy_node()
    assert code == 0, out
    assert f"from {NS}/davis/left/events and {NS}/davis/right/events" in out, out
