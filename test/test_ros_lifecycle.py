"""The managed depth node and namespaces, over real DDS with the node as its own process.

A test client drives the lifecycle services (``change_state``, ``get_state``) as
``ros2 lifecycle set`` or nav2's lifecycle manager would, feeds events, and checks that depth
is published only while the node is active. The node runs in a namespace, so the same test
checks that inputs and outputs follow it, that a command-line remap reaches the event
subscriptions, and that they show on the node itself (``ros2 node info``).
"""

from __future__ import annotations

import time

import pytest
from conftest import spin_until
from ros_support import random_events, start_node, stop, tiny_checkpoint

rclpy = pytest.importorskip("rclpy")

from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from stereospike_ros.events import encode_event_array  # noqa: E402

NS = "/stereo"
NODE = f"{NS}/depth_node"
RIGHT = "/cam1/events"  # the right camera's topic, remapped on the command line
TOPICS = {"left": f"{NS}/davis/left/events", "right": RIGHT}


class _Client:
    """Lifecycle service client, event publishers and a depth listener in this process."""

    def __init__(self, context) -> None:
        from dvs_msgs.msg import EventArray

        self.node = rclpy.create_node("lifecycle_client", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.change = self.node.create_client(ChangeState, f"{NODE}/change_state")
        self.get = self.node.create_client(GetState, f"{NODE}/get_state")
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {
            side: self.node.create_publisher(EventArray, topic, qos)
            for side, topic in TOPICS.items()
        }
        self.depth: list[Image] = []
        self.node.create_subscription(Image, f"{NODE}/depth", self.depth.append, 50)
        self.t_ms = 0

    def call(self, client, request, timeout: float = 60.0):
        assert client.wait_for_service(timeout_sec=timeout), client.srv_name
        future = client.call_async(request)
        assert spin_until(self.executor, future.done, timeout=timeout), client.srv_name
        return future.result()

    def transition(self, transition_id: int) -> bool:
        return self.call(
            self.change, ChangeState.Request(transition=Transition(id=transition_id))
        ).success

    def state(self) -> int:
        return self.call(self.get, GetState.Request()).current_state.id

    def feed(self, duration_ms: int) -> None:
        """Events on both cameras, 5 ms per message, sensor time continuing from the last call."""
        for _ in range(duration_ms // 5):
            t0, t1 = 10**9 + self.t_ms * 10**6, 10**9 + (self.t_ms + 5) * 10**6
            for pub in self.pubs.values():
                pub.publish(encode_event_array(random_events(t0, t1), 32, 48, t1, "cam"))
            self.t_ms += 5
            self.executor.spin_once(timeout_sec=0.002)

    def feed_until_depth(self, count: int, timeout: float = 40.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.depth) < count and time.monotonic() < deadline:
            self.feed(50)
        return len(self.depth) >= count


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory):
    return tiny_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.safetensors")


def test_lifecycle_node_publishes_only_when_active_in_its_namespace(ros_context, checkpoint):
    node = start_node(
        "depth_lifecycle_node",
        {"weights": checkpoint, "threads": 1, "warm_up_size": "32x48", "reliable": True},
        name="depth_node",
        namespace=NS,
        remaps={"davis/right/events": RIGHT},
    )
    client = _Client(ros_context)
    try:
        assert client.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert client.node.count_publishers(f"{NODE}/depth") == 0  # nothing before configure

        assert client.transition(Transition.TRANSITION_CONFIGURE)
        assert client.state() == State.PRIMARY_STATE_INACTIVE
        assert spin_until(
            client.executor, lambda: client.node.count_publishers(f"{NODE}/depth") == 1
        )
        assert client.node.count_subscribers(f"{NS}/davis/left/events") == 0  # not yet
        client.feed(300)
        spin_until(client.executor, lambda: False, timeout=1.0)
        assert not client.depth, "an inactive node published depth"

        assert client.transition(Transition.TRANSITION_ACTIVATE)
        assert client.state() == State.PRIMARY_STATE_ACTIVE
        # The event subscriptions belong to the node users address, under its namespace.
        assert spin_until(
            client.executor,
            lambda: all(p.get_subscription_count() == 1 for p in client.pubs.values()),
        )

        def topics() -> set[str]:
            by_node = client.node.get_subscriber_names_and_types_by_node
            try:
                return {name for name, _ in by_node("depth_node", NS)}
            except Exception:  # NodeNameNonExistentError until the node's name is discovered
                return set()

        spin_until(client.executor, lambda: set(TOPICS.values()) <= topics())
        assert set(TOPICS.values()) <= topics(), topics()
        assert client.feed_until_depth(2), "an active node published no depth"
        assert all(msg.header.frame_id == "cam" for msg in client.depth)

        assert client.transition(Transition.TRANSITION_DEACTIVATE)
        assert client.state() == State.PRIMARY_STATE_INACTIVE
        spin_until(client.executor, lambda: False, timeout=1.0)  # in-flight messages land
        published = len(client.depth)
        client.feed(300)
        spin_until(client.executor, lambda: False, timeout=1.0)
        assert len(client.depth) == published, "an inactive node kept publishing"
        assert client.node.count_subscribers(f"{NS}/davis/left/events") == 0

        # Activate again: it resumes (the threads and subscriptions are re-created).
        assert client.transition(Transition.TRANSITION_ACTIVATE)
        assert client.feed_until_depth(published + 1)
        assert client.transition(Transition.TRANSITION_DEACTIVATE)

        assert client.transition(Transition.TRANSITION_CLEANUP)
        assert client.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert spin_until(
            client.executor, lambda: client.node.count_publishers(f"{NODE}/depth") == 0
        )
        assert node.poll() is None, "the node exited during its transitions"
    finally:
        code, out = stop(node)
        client.executor.shutdown()
        client.node.destroy_node()
    assert code == 0, out
    assert "configure failed" not in out, out


def test_lifecycle_autostart_and_a_failed_configure(ros_context, checkpoint, tmp_path):
    # autostart: active without a lifecycle manager; missing weights: configure fails cleanly,
    # the node stays unconfigured and answers.
    started = start_node(
        "depth_lifecycle_node",
        {"weights": checkpoint, "threads": 1, "warm_up_size": "32x48", "autostart": True},
        name="depth_node",
        namespace=NS,
    )
    client = _Client(ros_context)
    try:
        assert client.state() == State.PRIMARY_STATE_ACTIVE
    finally:
        code, out = stop(started)
    assert code == 0, out
    broken = start_node(
        "depth_lifecycle_node",
        {"weights": tmp_path / "missing.safetensors"},
        name="depth_node",
        namespace=NS,
    )
    try:
        assert not client.transition(Transition.TRANSITION_CONFIGURE)
        assert client.state() == State.PRIMARY_STATE_UNCONFIGURED
    finally:
        code, out = stop(broken)
        client.executor.shutdown()
        client.node.destroy_node()
    assert code == 0, out
    assert "missing.safetensors" in out
