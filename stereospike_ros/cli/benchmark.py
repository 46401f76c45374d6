"""``python -m stereospike_ros benchmark <target>``: runs one of the ``stereospike_ros.bench``
modules (scripts that print figures; see ``bench/__init__.py``)."""

from __future__ import annotations

import argparse
import importlib

HELP = (
    "print speed, memory and accuracy figures "
    "(targets: events, data, model, node, flood, sim, families)"
)

#: target -> module defining add_arguments(parser) and run(args) -> int
TARGETS: dict[str, str] = {
    "data": "stereospike_ros.bench.data",
    "events": "stereospike_ros.bench.events",
    "flood": "stereospike_ros.bench.flood",
    "model": "stereospike_ros.bench.model",
    "node": "stereospike_ros.bench.node",
    "sim": "stereospike_ros.bench.sim",
    "families": "stereospike_ros.bench.families",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    for name, module_name in TARGETS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))


def run(args: argparse.Namespace) -> int:
    return int(importlib.import_module(TARGETS[args.target]).run(args) or 0)
