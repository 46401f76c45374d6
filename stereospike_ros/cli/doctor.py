"""Checks the environment end to end: a real DDS round trip and a spiking neuron on torch.

It is what a newcomer runs first to learn whether rclpy, the interface packages, torch and
spikingjelly work together on this machine, before any data is involved.
"""

from __future__ import annotations

import argparse

HELP = "check the environment: a DDS round trip of raw EventArray bytes, and a spiking neuron"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=10000, help="events in the test message")


def _dds_round_trip(n_events: int) -> str:
    from stereospike_ros.ros.round_trip import dds_round_trip

    trip = dds_round_trip(n_events)
    return (
        f"DDS ({trip.rmw}): {trip.events} events, "
        f"{trip.cdr_bytes} CDR bytes back in {trip.seconds:.2f} s"
    )


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
