"""``python -m stereospike_ros inspect PATH``: what a recording holds, read as training reads it."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "summarize a recording (MVSEC HDF5 pair/prefix, ROS 1 bag, ROS 2 bag)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, help="recording file(s), folder or prefix")
    parser.add_argument(
        "--calibration", type=Path, default=None, help="folder of MVSEC *_x_map.txt/_y_map.txt"
    )
    parser.add_argument(
        "--count-events", action="store_true", help="stream every event to count it (slow)"
    )


def run(args: argparse.Namespace) -> int:
    from stereospike_ros.data.sequence import SIDES, open_sequence

    source = args.paths[0] if len(args.paths) == 1 else args.paths
    with open_sequence(source, calibration=args.calibration) as sequence:
        stamps = sequence.depth_stamps()
        print(f"{sequence!r}")
        print(f"  size        {sequence.width} x {sequence.height} (W x H)")
        if len(stamps):
            span = (stamps[-1] - stamps[0]) / 1e9
            print(
                f"  depth       {len(stamps)} frames, {stamps[0]} .. {stamps[-1]} ns ({span:.2f} s)"
            )
        else:
            print("  depth       none")
        for side in SIDES:
            calib = sequence.calibration(side)
            what = f"{calib.distortion_model}, fx {calib.K[0, 0]:.2f}" if calib else "none"
            print(f"  {side:5s} calib {what}")
            if args.count_events:
                n, first, last = 0, None, None
                for chunk in sequence.iter_events(side):
                    n += len(chunk)
                    first = int(chunk["t"][0]) if first is None else first
                    last = int(chunk["t"][-1])
                print(f"  {side:5s} events {n} in [{first}, {last}] ns")
    return 0
