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
    return _inspect(args)


def recordings_in(folder: Path) -> list[Path]:
    """The recordings directly in ``folder``, as ``open_sequence`` takes them: MVSEC HDF5 pairs
    (by their data file), ROS 1 bags (a ``_gt.bag`` beside its ``_data.bag`` goes with it),
    ROS 2 bag folders and ``.mcap``/``.db3`` files, sorted by name."""
    found: list[Path] = []
    for path in sorted(folder.iterdir()):
        name = path.name
        ros1 = name.endswith(".bag") and not (
            name.endswith("_gt.bag") and (folder / name.replace("_gt.bag", "_data.bag")).exists()
        )
        if path.is_dir():
            if (path / "metadata.yaml").is_file():
                found.append(path)
        elif ros1 or name.endswith(("_data.hdf5", "_data.h5", ".mcap", ".db3")):
            found.append(path)
    return found


def _inspect(args: argparse.Namespace) -> int:
    from stereospike_ros.data.errors import MissingInputError

    paths = args.paths
    if len(paths) == 1 and paths[0].is_dir() and not (paths[0] / "metadata.yaml").is_file():
        found = recordings_in(paths[0])
        if not found:
            raise MissingInputError(
                f"{paths[0]} holds no recording (X_data.hdf5, .bag, ROS 2 bag folder, .mcap, .db3)"
            )
        for i, path in enumerate(found):
            if i:
                print()
            _inspect_one(path, args)
        return 0
    _inspect_one(paths[0] if len(paths) == 1 else paths, args)
    return 0


def _inspect_one(source: object, args: argparse.Namespace) -> None:
    from stereospike_ros.data.open import open_sequence
    from stereospike_ros.data.sequence import SIDES, focal_baseline_of

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
        fb = focal_baseline_of(sequence)
        print(f"  f x B       {'unknown' if fb is None else f'{fb:.4f} px*m'}")
        for side in SIDES:
            calib = sequence.calibration(side)
            what = f"{calib.distortion_model}, fx {calib.K[0, 0]:.2f}" if calib else "none"
            print(f"  {side:5s} camera_info {what}")
            # What evaluate, cache and the event player apply to this side's events
            print(f"  {side:5s} rectification {sequence.rectifier(side).source}")
            if args.count_events:
                n, first, last = 0, None, None
                for chunk in sequence.iter_events(side):
                    n += len(chunk)
                    first = int(chunk["t"][0]) if first is None else first
                    last = int(chunk["t"][-1])
                print(f"  {side:5s} events {n} in [{first}, {last}] ns")
