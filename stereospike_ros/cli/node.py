"""``python -m stereospike_ros node NAME [--ros-args ...]``: run a node without the ``ros2`` CLI.

A plain venv with the ROS 2 wheels has rclpy but no ``ros2 run`` (and a venv that is not
pip-installed has no console scripts on PATH): this runs the same ``main`` as ``ros2 run
stereospike_ros NAME``, with the same ``--ros-args -p name:=value -r from:=to`` arguments.
"""

from __future__ import annotations

import argparse
import importlib

HELP = "run a ROS 2 node (depth_node, event_player, depth_evaluator) without the ros2 CLI"

#: node name -> module whose ``main(args)`` runs it
NODES = {
    "depth_node": "stereospike_ros.ros.depth_node",
    "event_player": "stereospike_ros.ros.event_player",
    "depth_evaluator": "stereospike_ros.ros.depth_evaluator",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(NODES), help="the node to run")
    parser.add_argument(
        "ros_args",
        nargs=argparse.REMAINDER,
        help="ROS arguments, e.g. --ros-args -p recording:=X_data.hdf5 -r __node:=player",
    )


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(NODES[args.name])
    return int(module.main([f"stereospike_ros node {args.name}", *args.ros_args]) or 0)
