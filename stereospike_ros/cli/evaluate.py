"""``python -m stereospike_ros evaluate``: a checkpoint and baselines against ground-truth depth."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from stereospike_ros.data.splits import PARTS

if TYPE_CHECKING:
    from stereospike_ros.training.evaluate import EvalDataOptions

HELP = "score a checkpoint (and baselines: sgbm, other checkpoints) against ground-truth depth"


def add_data_arguments(parser: argparse.ArgumentParser, part: str) -> None:
    """The options that pick recordings and frames (``evaluate``, ``prune``); ``part``: the
    split part taken by default."""
    parser.add_argument(
        "--data",
        nargs="+",
        required=True,
        help="a recording (X_data.hdf5, X.bag, a ROS 2 bag folder, .mcap/.db3), a training "
        "cache .h5, or with --split the folder holding the split's recordings",
    )
    parser.add_argument("--split", help="split1 | split2 | split3 | auto:TRAIN[:VAL] | FILE")
    parser.add_argument("--part", default=part, choices=PARTS, help=f"split part ({part})")
    parser.add_argument("--sequences", nargs="+", help="recordings an auto: split cuts (names)")
    parser.add_argument(
        "--frames", help="depth frames of one recording: START:STOP[:STEP] or i,j,k (all)"
    )
    parser.add_argument("--max-frames", type=int, help="at most N frames")
    parser.add_argument(
        "--depth-topic",
        help="bag topic of the ground-truth depth (default /davis/left/depth_image_rect)",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        help="folder of MVSEC *_{left,right}_{x,y}_map.txt (default: found beside the data)",
    )
    parser.add_argument("--no-rectify", action="store_true", help="keep raw pixel coordinates")
    parser.add_argument(
        "--window-ms", type=float, help="event window before each depth frame (checkpoint's, 50)"
    )
    parser.add_argument(
        "--fill-holes", type=int, default=0, metavar="PX", help="fill GT holes < PX px (off)"
    )
    add_protocol_argument(parser)


def add_protocol_argument(parser: argparse.ArgumentParser) -> None:
    """``--protocol`` (cache, train, evaluate, prune): how recordings become frames."""
    from stereospike_ros.data.protocol import PROTOCOLS

    parser.add_argument(
        "--protocol",
        choices=tuple(PROTOCOLS),
        help="default: windows before each depth stamp, nearest-pixel rectification; paper: "
        "the StereoSpike authors' (ground-truth area closing 24 px, 50 ms grid from the "
        "first event, truncated coordinates); see docs/protocol.md (default)",
    )


def data_options(args: argparse.Namespace) -> EvalDataOptions:
    """The :func:`add_data_arguments` options as ``training.evaluate.EvalDataOptions``."""
    from stereospike_ros.training.evaluate import EvalDataOptions

    return EvalDataOptions(
        args.data[0] if len(args.data) == 1 else args.data,
        split=args.split,
        part=args.part,
        sequences=args.sequences,
        frames=args.frames,
        max_frames=args.max_frames,
        depth_topic=args.depth_topic,
        calibration=args.calibration,
        window_ms=args.window_ms,
        fill_holes_px=args.fill_holes,
        rectify=not args.no_rectify,
        focal_baseline=getattr(args, "focal_baseline", None),
        protocol=args.protocol,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint",
        nargs="?",
        type=Path,
        help="a .safetensors checkpoint (optional when --baseline is given)",
    )
    add_data_arguments(parser, part="test")
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="NAME|CHECKPOINT",
        help="also score 'sgbm' (OpenCV StereoSGBM) or another checkpoint (e.g. an ANN or mono "
        "network) on the same frames; repeatable",
    )
    parser.add_argument(
        "--focal-baseline",
        type=float,
        help="f x B in px*m for sgbm (default: the recording's right camera_info; MVSEC's)",
    )
    parser.add_argument("--model", help="refuse a checkpoint that is not this architecture")
    parser.add_argument(
        "--any-size",
        action="store_true",
        help="run a checkpoint on frames of another size than it was trained on",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (auto)")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: 1 or torch's default, whichever runs the model "
        "faster here, measured at start)",
    )
    parser.add_argument(
        "--inference-path",
        default="reference",
        help="how the checkpoint runs: reference (default; also measures firing rates), exact, "
        "onnxruntime, openvino, ... (docs/deploy.md)",
    )
    parser.add_argument(
        "--onnx-providers",
        help="ONNX Runtime execution providers for --inference-path onnxruntime, e.g. "
        "tensorrt,cuda,cpu (cpu)",
    )
    parser.add_argument(
        "--temporal-smoothing",
        type=float,
        default=0.0,
        metavar="S",
        help="score every method through the depth node's temporal filter: the previous "
        "estimate's weight in [0, 1) in a running mean of log depth (0: none)",
    )
    parser.add_argument("--json", type=Path, help="write all results to this JSON file")
    parser.add_argument("--plots", type=Path, help="write PNG figures to this folder")
    parser.add_argument(
        "--plot-frames",
        help="frame positions (0-based, evaluation order) to draw, e.g. 0,10,20 (3 spread out)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from stereospike_ros.training.score import ScoreConfig, score

    score(
        ScoreConfig(
            data=data_options(args),
            checkpoint=args.checkpoint,
            baselines=tuple(args.baseline),
            model=args.model,
            any_size=args.any_size,
            device=args.device,
            threads=args.threads,
            inference_path=args.inference_path,
            onnx_providers=args.onnx_providers,
            json=args.json,
            plots=args.plots,
            plot_frames=args.plot_frames,
            temporal_smoothing=args.temporal_smoothing,
            quiet=args.quiet,
        )
    )
    return 0
