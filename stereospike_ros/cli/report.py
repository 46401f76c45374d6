"""``python -m stereospike_ros report RUN_DIR``: training curves and the best epoch of a run."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "plot a training run's curves (metrics.csv) and print its best epoch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a training run folder (holds metrics.csv)")
    parser.add_argument(
        "--out", type=Path, help="PNG to write (default RUN_DIR/training_curves.png)"
    )


def run(args: argparse.Namespace) -> int:
    from stereospike_ros.training.plots import report_run

    for line in report_run(args.run_dir, args.out):
        print(line)
    return 0
