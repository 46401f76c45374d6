"""``python -m stereospike_ros inspect PATH``: what a recording holds, read as training reads it."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "summarize a recording (MVSEC HDF5 pair/prefix, ROS 1 bag, ROS 2 bag) or a folder of them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, help="recording file(s), folder or prefix")
    parser.add_argument(
        "--calibration", type=Path, default=None, help="folder of MVSEC *_x_map.txt/_y_map.txt"
    )
    parser.add_argument(
        "--count-events", action="store_true", help="stream every event to count it (slow)"
    )


def run(args: argparse.Namespace) -> int:
    from stereospike_ros.data.describe import describe_sequence
    from stereospike_ros.data.errors import MissingInputError
    from stereospike_ros.data.open import open_sequence, recordings_in

    paths = args.paths
    sources: list[object] = [paths[0] if len(paths) == 1 else paths]
    if len(paths) == 1 and paths[0].is_dir() and not (paths[0] / "metadata.yaml").is_file():
        sources = list(recordings_in(paths[0]))
        if not sources:
            raise MissingInputError(
                f"{paths[0]} holds no recording (X_data.hdf5, .bag, ROS 2 bag folder, .mcap, .db3)"
            )
    for i, source in enumerate(sources):
        if i:
            print()
        with open_sequence(source, calibration=args.calibration) as sequence:
            for line in describe_sequence(sequence, args.count_events):
                print(line)
    return 0
