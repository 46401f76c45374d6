"""``python -m stereospike_ros prune CHECKPOINT``: zero the channels that never fire on
calibration recordings, so that the ``exact`` path never computes them (:mod:`..model.prune`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from stereospike_ros.cli.evaluate import add_data_arguments, data_options

HELP = "zero the channels a checkpoint never fires on calibration recordings (a faster checkpoint)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a .safetensors checkpoint to prune")
    parser.add_argument("--out", type=Path, required=True, help="the pruned checkpoint to write")
    add_data_arguments(parser, part="train")
    parser.add_argument("--threads", type=int, help="torch CPU threads (torch's default)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from stereospike_ros.training.prune import prune_checkpoint

    prune_checkpoint(
        args.checkpoint, args.out, data_options(args), threads=args.threads, quiet=args.quiet
    )
    return 0
