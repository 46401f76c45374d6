"""``python -m stereospike_ros train``: train a StereoSpike model on a split of recordings.

Also under ``torchrun --nproc_per_node N -m stereospike_ros train ...`` (DistributedDataParallel).
Re-running the same command continues an interrupted run from its last completed epoch.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from stereospike_ros.events.types import parse_size

HELP = "train StereoSpike on MVSEC / bag / simulated recordings (resumable, torchrun for DDP)"

_RECIPE_HELP = (
    "default schedule: 'code' = the authors' code (70 epochs, lr x0.5 at 8, 42, 60), "
    "'paper' = the paper's text (30 epochs, lr x0.1 at 10, 25, 40)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--root", required=True, type=Path, help="folder of the recordings")
    data.add_argument(
        "--split", required=True, help="split1 | split2 | split3 | auto:TRAIN[:VAL] | FILE.json"
    )
    data.add_argument("--sequences", nargs="+", default=None, help="recordings an auto: split cuts")
    data.add_argument("--cache-dir", type=Path, default=None, help="cache folder (RUN/cache)")
    data.add_argument("--window-ms", type=float, default=50.0, help="histogram window (50)")
    data.add_argument("--fill-holes", type=int, default=0, metavar="PX", help="fill GT holes < PX")
    data.add_argument("--no-rectify", action="store_true", help="data is already rectified")
    data.add_argument("--calibration", type=Path, default=None, help="MVSEC calibration maps")
    data.add_argument(
        "--protocol",
        choices=("default", "paper"),
        default="default",
        help="paper: the authors' frames (GT area closing, fixed grid, truncation); "
        "docs/protocol.md",
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default="stereospike",
        choices=("stereospike", "stereospike-mono", "stereospike-ann"),
    )
    model.add_argument("--width", type=float, default=1.0, help="channel multiplier (1.0)")
    model.add_argument(
        "--heads", type=int, nargs="+", default=[1, 2, 3, 4], help="prediction heads (1 2 3 4)"
    )
    model.add_argument("--no-skips", action="store_true", help="remove the skip connections")
    model.add_argument(
        "--activation", default=None, help="stereospike-ann: sigmoid | tanh | leakyrelu"
    )

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--recipe", choices=("code", "paper"), default="code", help=_RECIPE_HELP)
    opt.add_argument("--epochs", type=int, default=None, help="epochs (recipe)")
    opt.add_argument("--milestones", type=int, nargs="*", default=None, help="lr steps (recipe)")
    opt.add_argument("--gamma", type=float, default=None, help="lr factor (recipe)")
    opt.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (2e-4)")
    opt.add_argument("--batch-size", type=int, default=1, help="per process (1)")
    opt.add_argument("--spike-weight", type=float, default=0.0, help="spike penalty (0; paper 0.5)")
    opt.add_argument(
        "--crop", type=parse_size, default=None, metavar="HxW", help="random training crops"
    )
    opt.add_argument(
        "--vflip",
        action="store_true",
        help="turn half the training samples upside down (both cameras and the depth): "
        "stereo is unchanged, the 'top is far' prior is not",
    )
    opt.add_argument(
        "--disparity-shift",
        type=int,
        default=0,
        metavar="PX",
        help="move the right camera by -PX..PX pixels per sample and the depth with it: the "
        "left image no longer tells the depth, only stereo does (0: off)",
    )
    opt.add_argument(
        "--disparity-shift-fraction",
        type=float,
        default=1.0,
        metavar="F",
        help="shift only this share of the samples (0 < F <= 1; the rest keep their true "
        "disparity and depth)",
    )
    opt.add_argument(
        "--event-density",
        type=float,
        nargs=2,
        default=None,
        metavar=("MIN", "MAX"),
        help="scale each training sample's event counts by a factor drawn log-uniformly from "
        "MIN..MAX (below 1: events dropped at random; above 1: added where events are), so "
        "that density is not read as depth (off)",
    )
    opt.add_argument(
        "--weight-average",
        type=float,
        default=0.0,
        metavar="DECAY",
        help="validate and save an exponential moving average of the weights over steps, "
        "decay DECAY per step (e.g. 0.999; 0: off); metrics.csv keeps the raw weights' MDE",
    )
    opt.add_argument("--steps-per-epoch", type=int, default=None, help="shorter epochs")
    opt.add_argument("--val-frames", type=int, default=None, help="validate on N evenly spaced")
    opt.add_argument(
        "--init-depth-bias",
        default="auto",
        help="start the first head's bias at: auto (train mean depth) | none | METRES",
    )
    opt.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="start from these weights (fine-tuning: same --model, --width, --heads); the "
        "optimizer and schedule start fresh",
    )
    opt.add_argument(
        "--offset-calibration",
        action="store_true",
        help="after each epoch shift the depth offset (which the loss cannot see) to the "
        "training frames' recent mean residual",
    )
    opt.add_argument(
        "--level-weight",
        type=float,
        default=0.0,
        help="add W x (mean residual)^2: lets the loss see the depth level (0 = recipe)",
    )
    opt.add_argument(
        "--loss-scale",
        choices=("metres", "log"),
        default="metres",
        help="residual in metres (the authors') or in log depth, which weighs near pixels as "
        "disparity does (docs/training.md)",
    )
    opt.add_argument("--seed", type=int, default=0)

    run = parser.add_argument_group("run")
    run.add_argument("--out", required=True, type=Path, help="run folder (created)")
    run.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    run.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    run.add_argument("--workers", type=int, default=0, help="DataLoader workers (0)")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    run.add_argument(
        "--resume",
        choices=("auto", "never", "force"),
        default="auto",
        help="auto: continue a matching run; never: refuse an existing run; force: continue "
        "even if the configuration differs",
    )
    run.add_argument(
        "--export-default",
        action="store_true",
        help="at the end, copy best.safetensors to the package's weights/default.safetensors",
    )
    run.add_argument(
        "--note",
        metavar="TEXT",
        help="with --export-default: what the training data was, in words, for the weights' "
        "card (it cannot tell simulated recordings from real ones)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")


def _command() -> tuple[str, ...]:
    argv = list(sys.argv)
    if argv and argv[0].endswith("__main__.py"):
        return ("python", "-m", "stereospike_ros", *argv[1:])
    return (Path(argv[0]).name, *argv[1:]) if argv else ()


def config_from_args(args: argparse.Namespace) -> object:
    """The TrainConfig the command line describes."""
    from stereospike_ros.training.train import RECIPES, TrainConfig

    recipe = RECIPES[args.recipe]
    return TrainConfig(
        root=str(args.root),
        split=str(args.split),
        out=str(args.out),
        sequences=tuple(args.sequences) if args.sequences else None,
        cache_dir=str(args.cache_dir) if args.cache_dir else None,
        model=args.model,
        width=args.width,
        heads=tuple(sorted(set(args.heads))),
        skips=not args.no_skips,
        activation=args.activation,
        epochs=args.epochs if args.epochs is not None else recipe["epochs"],
        lr=args.lr,
        milestones=tuple(args.milestones if args.milestones is not None else recipe["milestones"]),
        gamma=args.gamma if args.gamma is not None else recipe["gamma"],
        batch_size=args.batch_size,
        spike_weight=args.spike_weight,
        crop=args.crop,
        steps_per_epoch=args.steps_per_epoch,
        val_frames=args.val_frames,
        init_depth_bias=str(args.init_depth_bias),
        init=str(args.init) if args.init else None,
        offset_calibration=args.offset_calibration,
        level_weight=args.level_weight,
        loss_scale=args.loss_scale,
        vflip=args.vflip,
        disparity_shift=args.disparity_shift,
        disparity_shift_fraction=args.disparity_shift_fraction,
        event_density=None if args.event_density is None else tuple(args.event_density),
        weight_average=args.weight_average,
        seed=args.seed,
        window_ms=args.window_ms,
        fill_holes=args.fill_holes,
        rectify=not args.no_rectify,
        calibration=str(args.calibration) if args.calibration else None,
        protocol=args.protocol,
        device=args.device,
        amp=args.amp,
        workers=args.workers,
        threads=args.threads,
        progress=not args.quiet,
        resume=args.resume,
        export_default=args.export_default,
        note=args.note,
        command=_command(),
    )


def run(args: argparse.Namespace) -> int:
    from stereospike_ros.training.train import train

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_dir = train(config_from_args(args))
    if os.environ.get("RANK", "0") != "0":
        return 0
    print(f"run folder: {run_dir}")
    for name in ("best.safetensors", "last.safetensors", "metrics.csv"):
        if (run_dir / name).is_file():
            print(f"  {run_dir / name}")
    return 0
