"""``python -m stereospike_ros prune CHECKPOINT``: zero the channels that never fire on
calibration recordings, so that the ``exact`` path never computes them (:mod:`..model.prune`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stereospike_ros.cli.evaluate import add_data_arguments, data_options
from stereospike_ros.training.errors import TrainingError

HELP = "zero the channels a checkpoint never fires on calibration recordings (a faster checkpoint)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a .safetensors checkpoint to prune")
    parser.add_argument("--out", type=Path, required=True, help="the pruned checkpoint to write")
    add_data_arguments(parser, part="train")
    parser.add_argument("--threads", type=int, help="torch CPU threads (torch's default)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from stereospike_ros.model.checkpoint import RESERVED_KEYS, load_checkpoint, save_checkpoint
    from stereospike_ros.model.inputs import frame_tensor
    from stereospike_ros.model.prune import conv_units, count_silent, prune_on

    if args.threads is not None:
        if args.threads < 1:
            raise TrainingError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.out.resolve() == args.checkpoint.resolve():
        raise TrainingError(f"--out {args.out} would overwrite the checkpoint being pruned")
    model, metadata = load_checkpoint(args.checkpoint)
    channels = model.config.in_channels
    with data_options(args).open(metadata.get("window_ms")) as data:
        trained = metadata.get("input_size")
        if trained and list(trained) != [data.height, data.width]:
            print(
                f"prune: note: calibrating at {data.height}x{data.width}, the checkpoint was "
                f"trained at {trained[0]}x{trained[1]}",
                file=sys.stderr,
            )
        names: list[str] = []
        frames = tqdm(
            data.frames(), total=data.count, desc="calibrating", unit="window", disable=args.quiet
        )

        def windows() -> Any:
            for name, frame in frames:
                if name not in names:
                    names.append(name)
                yield frame_tensor(frame, channels)[None]

        pruned, silent, seen = prune_on(model, windows())
    units = conv_units(model)
    print(f"{seen} calibration windows from {', '.join(names)}")
    print("| unit | channels | never fired |")
    print("|---|---|---|")
    for name, mask in silent.items():
        print(f"| {name} | {units[name].conv.out_channels} | {int(mask.sum())} |")
    dropped, total = count_silent(silent)
    print(f"{dropped} of {total} channels never fired ({100 * dropped / total:.0f} %): zeroed")
    extra = {k: v for k, v in metadata.items() if k not in RESERVED_KEYS}
    extra["pruned"] = {
        "source": str(args.checkpoint),
        "source_sha256": metadata.get("tensors_sha256"),
        "calibration": {"data": [str(d) for d in args.data], "recordings": names, "windows": seen},
        "silent": {name: int(mask.sum()) for name, mask in silent.items()},
    }
    save_checkpoint(args.out, pruned, **extra)
    print(f"wrote {args.out}")
    return 0
