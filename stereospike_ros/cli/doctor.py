"""Checks the environment end to end: a real DDS round trip and a spiking neuron on torch.

It is what a newcomer runs first to learn whether rclpy, the interface packages, torch and
spikingjelly work together on this machine, before any data is involved.
"""

from __future__ import annotations

import argparse
import os
import time

HELP = "check the environment: a DDS round trip of raw EventArray bytes, and a spiking neuron"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=10000, help="events in the test message")


def _dds_round_trip(n_events: int) -> str:
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
        while not received and time.monotonic() - start < 10.0:
            pub.publish(msg)
            executor.spin_once(timeout_sec=0.1)
        if not received:
            raise RuntimeError("no message came back through DDS within 10 s")
        return (
            f"DDS ({os.environ.get('RMW_IMPLEMENTATION', 'default rmw')}): {n_events} events, "
            f"{len(received[0])} CDR bytes back in {time.monotonic() - start:.2f} s"
        )
    finally:
        rclpy.shutdown(context=context)


def _spiking_neuron() -> str:
    import spikingjelly
    import torch
    from spikingjelly.activation_based import neuron, surrogate

    node = neuron.IFNode(v_threshold=1.0, v_reset=0.0, surrogate_function=surrogate.ATan())
    x = torch.linspace(0.0, 2.0, 5, requires_grad=True)
    node(x).sum().backward()
    return (
        f"torch {torch.__version__}, spikingjelly {getattr(spikingjelly, '__version__', '2.x')}: "
        f"IF neuron fired {int(node(x.detach()).sum())}/5, surrogate gradient sum "
        f"{float(x.grad.sum()):.3f}"
    )


def run(args: argparse.Namespace) -> int:
    for check in (lambda: _dds_round_trip(args.events), _spiking_neuron):
        print("ok:", check(), flush=True)
    return 0
