"""``python -m stereospike_ros demo``: the whole online pipeline on a simulated recording, or
on your own (``--recording PATH``). The options become a :class:`~stereospike_ros.ros.demo.
DemoOptions`; the processes, DDS and the report live in ``ros/demo.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from stereospike_ros.ros.demo import DemoOptions, run_demo
from stereospike_ros.ros.parameters import EVENT_TYPES

HELP = "simulate a recording and run player -> depth node -> evaluator over real DDS"

_DEFAULTS = DemoOptions()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    parser.add_argument("--out", type=Path, default=d.out, help="output folder")
    parser.add_argument(
        "--recording",
        type=Path,
        help="replay this recording (X_data.hdf5, X.bag, ROS 2 bag) instead of simulating one",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        help="folder of MVSEC *_{left,right}_{x,y}_map.txt for --recording (as evaluate's)",
    )
    parser.add_argument(
        "--real-time",
        action="store_true",
        help="pace by --rate only (no lockstep): windows the node cannot keep up with are "
        "skipped and reported missing",
    )
    parser.add_argument(
        "--weights", default=d.weights, help="checkpoint (default: the bundled model)"
    )
    parser.add_argument(
        "--duration", type=float, default=d.duration, help="simulated seconds (%(default)g)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=d.rate,
        help="playback speed; < 1 gives a slow CPU time (%(default)g)",
    )
    parser.add_argument("--seed", type=int, default=d.seed, help="simulator seed (%(default)s)")
    parser.add_argument("--scene", default=d.scene, help="simulator scene (%(default)s)")
    parser.add_argument("--motion", default=d.motion, help="simulator motion (%(default)s)")
    parser.add_argument("--event-type", default=d.event_type, choices=EVENT_TYPES)
    parser.add_argument(
        "--device", default=d.device, help="torch device for the depth node (%(default)s)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=d.threads,
        help="torch threads of the node (%(default)s: the player and evaluator share the cores)",
    )
    parser.add_argument(
        "--images",
        type=int,
        default=d.images,
        help="prediction/ground-truth PNGs to save (%(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=d.timeout,
        help="give up after (s; %(default)g): lockstep takes about one forward pass per frame",
    )


def run(args: argparse.Namespace) -> int:
    fields = {field.name for field in dataclasses.fields(DemoOptions)}
    return run_demo(DemoOptions(**{k: v for k, v in vars(args).items() if k in fields}))
