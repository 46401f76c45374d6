"""One EventArray through real DDS and back: the ROS half of ``python -m stereospike_ros doctor``.

Publishing a message to a subscriber in the same process proves that rclpy, the rmw
implementation and the dvs_msgs interface package load and talk to each other on this
machine, before any node, recording or model is involved.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RoundTrip:
    """What came back: the rmw that carried it, the events sent, the CDR bytes received."""

    rmw: str
    events: int
    cdr_bytes: int
    seconds: float


def dds_round_trip(n_events: int, timeout_s: float = 10.0) -> RoundTrip:
    """Publish a ``dvs_msgs/EventArray`` of ``n_events`` until it comes back as raw bytes.

    Raises ``RuntimeError`` when nothing arrives within ``timeout_s``.
    """
    import rclpy
    from dvs_msgs.msg import Event, EventArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("stereospike_doctor", context=context)
        received: list[bytes] = []
        node.create_subscription(EventArray, "~/events", received.append, qos, raw=True)
        pub = node.create_publisher(EventArray, "~/events", qos)
        msg = EventArray(height=260, width=346)
        msg.events = [Event(x=i % 346, y=i % 260, polarity=bool(i & 1)) for i in range(n_events)]
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        start = time.monotonic()
        while not received and time.monotonic() - start < timeout_s:
            pub.publish(msg)
            executor.spin_once(timeout_sec=0.1)
        if not received:
            raise RuntimeError(f"no message came back through DDS within {timeout_s:g} s")
        return RoundTrip(
            rmw=os.environ.get("RMW_IMPLEMENTATION", "default rmw"),
            events=n_events,
            cdr_bytes=len(received[0]),
            seconds=time.monotonic() - start,
        )
    finally:
        rclpy.shutdown(context=context)
