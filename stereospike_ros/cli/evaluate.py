"""``python -m stereospike_ros evaluate``: a checkpoint and baselines against ground-truth depth."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from stereospike_ros.data.splits import PARTS
from stereospike_ros.training.errors import TrainingError

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


def open_data(args: argparse.Namespace, window_ms: float) -> Any:
    """:func:`~stereospike_ros.training.evaluate.open_eval_data` of the
    :func:`add_data_arguments` options."""
    from stereospike_ros.training.evaluate import open_eval_data

    return open_eval_data(
        args.data[0] if len(args.data) == 1 else args.data,
        split=args.split,
        part=args.part,
        sequences=args.sequences,
        frames=args.frames,
        max_frames=args.max_frames,
        depth_topic=args.depth_topic,
        calibration=args.calibration,
        window_ms=window_ms,
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
    parser.add_argument("--json", type=Path, help="write all results to this JSON file")
    parser.add_argument("--plots", type=Path, help="write PNG figures to this folder")
    parser.add_argument(
        "--plot-frames",
        help="frame positions (0-based, evaluation order) to draw, e.g. 0,10,20 (3 spread out)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _positions(spec: str | None, count: int) -> list[int]:
    if spec is None:
        return sorted({round(i * (count - 1) / 2) for i in range(3)}) if count else []
    try:
        chosen = sorted({int(p) for p in spec.split(",") if p.strip()})
    except ValueError as err:
        raise TrainingError(f"--plot-frames {spec!r}: expected a comma list of integers") from err
    bad = [p for p in chosen if not 0 <= p < count]
    if bad:
        raise TrainingError(f"--plot-frames {spec!r}: positions {bad} outside [0, {count})")
    return chosen


def _keeping(frames: Iterable[Any], keep: set[int], store: dict[int, Any]) -> Iterator[Any]:
    for position, item in enumerate(frames):
        if position in keep:
            store[position] = item
        yield item


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from stereospike_ros.model.checkpoint import checkpoint_metadata
    from stereospike_ros.model.inputs import resolve_device
    from stereospike_ros.training.baselines import load_baseline, load_model
    from stereospike_ros.training.evaluate import (
        ModelPredictor,
        evaluate_many,
        pick_threads,
        results_table,
    )

    if args.checkpoint is None and not args.baseline:
        raise TrainingError("give a CHECKPOINT, a --baseline, or both")
    device = resolve_device(args.device)
    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise TrainingError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    metadata: dict[str, Any] = {}
    if args.checkpoint is not None:
        metadata = checkpoint_metadata(args.checkpoint)
    window_ms = args.window_ms or metadata.get("window_ms") or 50.0
    start = time.perf_counter()
    data = open_data(args, window_ms)
    with data:
        size = (data.height, data.width)
        predictors: list[Any] = []
        if args.checkpoint is not None:
            model, metadata = load_model(
                args.checkpoint,
                device=str(device),
                expect_model=args.model,
                input_size=size,
                any_size=args.any_size,
            )
            if args.threads is None:
                threads, measured = pick_threads(model, size, device)
                if measured:
                    per_frame = ", ".join(f"{n}: {s * 1e3:.0f} ms" for n, s in measured.items())
                    print(f"torch threads: {threads} (measured per forward: {per_frame})")
            predictors.append(
                ModelPredictor(
                    model,
                    device=device,
                    metadata=metadata,
                    path=args.inference_path,
                    providers=args.onnx_providers,
                )
            )
        for spec in args.baseline:
            predictors.append(
                load_baseline(
                    spec,
                    focal_baseline=data.focal_baseline,
                    device=str(device),
                    input_size=size,
                    any_size=args.any_size,
                )
            )
        keep = set(_positions(args.plot_frames, data.count)) if args.plots else set()
        kept_frames: dict[int, Any] = {}
        frames = _keeping(data.frames(), keep, kept_frames)
        bar = (
            None
            if args.quiet
            else (lambda it: tqdm(it, total=data.count, desc="evaluating", unit="frame"))
        )
        results = evaluate_many(predictors, frames, device=str(device), keep=keep, progress=bar)
        description = data.description
    elapsed = time.perf_counter() - start

    print(
        f"{int(results[0].metrics['frames'])} frames of {description.get('sequences')} "
        f"({data.height}x{data.width}) in {elapsed:.1f} s"
    )
    print(results_table(results))
    main = results[0]
    if args.json is not None:
        report = {
            "checkpoint": str(args.checkpoint) if args.checkpoint else None,
            "metadata": metadata or None,
            "data": description,
            **main.to_dict(),
            "baselines": {r.name: r.to_dict() for r in results[1:]},
            "elapsed_s": elapsed,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    if args.plots is not None:
        for path in _write_plots(args, results, kept_frames, description):
            print(f"wrote {path}")
    return 0


def _write_plots(
    args: argparse.Namespace, results: list[Any], kept: dict[int, Any], description: dict
) -> list[Path]:
    from stereospike_ros.training.plots import (
        plot_frame,
        plot_mde_over_time,
        plot_training_curves,
    )

    out: Path = args.plots
    written = []
    for position, (sequence, frame) in sorted(kept.items()):
        predictions = {r.name: r.kept[position] for r in results if position in r.kept}
        title = f"{sequence} depth frame {frame.index} (position {position})"
        path = out / f"frame_{position:05d}.png"
        written.append(plot_frame(path, frame.left, frame.right, frame.depth, predictions, title))
    series = {r.name: r.frame_mde_cm for r in results}
    written.append(
        plot_mde_over_time(out / "mde_over_time.png", series, f"{description.get('sequences')}")
    )
    if args.checkpoint is not None:
        metrics_csv = args.checkpoint.parent / "metrics.csv"
        if metrics_csv.is_file():
            try:
                written.append(
                    plot_training_curves(metrics_csv, out / "training_curves.png", str(metrics_csv))
                )
            except TrainingError as err:
                print(f"evaluate: no training curves: {err}", file=sys.stderr)
    return written
