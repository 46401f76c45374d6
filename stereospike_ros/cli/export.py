"""``python -m stereospike_ros export``: a checkpoint to ONNX, checked in ONNX Runtime first.

``export CHECKPOINT --format onnx --out FILE`` writes the file only when ONNX Runtime's depth
agrees with the torch reference on event windows; ``export --check FILE [CHECKPOINT]`` verifies
an exported file (and, given its checkpoint, that it came from it and still agrees).
(Not to be confused with ``train --export``, which bundles a run's weights into the package.)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from stereospike_ros.events.types import parse_size

HELP = "export a checkpoint to ONNX (validated in ONNX Runtime), or --check an exported file"

FORMATS = ("onnx",)


def _size(text: str) -> tuple[int, int] | None:
    """``--size``: HxW, or ``dynamic`` (None)."""
    return None if text == "dynamic" else parse_size(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", type=Path, help="a .safetensors checkpoint")
    parser.add_argument("--format", default="onnx", choices=FORMATS, help="output format (onnx)")
    parser.add_argument("--out", type=Path, help="the file to write (e.g. model.onnx)")
    parser.add_argument(
        "--size",
        type=_size,
        default=None,
        metavar="HxW|dynamic",
        help="fix the input size, e.g. 260x346 (default: dynamic batch, height and width)",
    )
    parser.add_argument(
        "--fp16",
        action="store_true",
        help="float16 weights and activations (float32 in/out; lossy: difference printed)",
    )
    parser.add_argument(
        "--upsampling",
        default="gather",
        choices=("gather", "resize"),
        help="gather: exact at every size in every runtime (default); resize: ONNX Resize, "
        "faster in the runtimes, with --size only, refused where ONNX Runtime reads other rows",
    )
    parser.add_argument(
        "--windows",
        help="validate on this recording's event windows (or --split folder, or training "
        "cache) instead of simulated ones",
    )
    parser.add_argument("--split", help="split file for a --windows folder")
    parser.add_argument("--part", default="test", help="split part of --windows (test)")
    parser.add_argument("--frames", type=int, default=4, help="windows validated on (4)")
    parser.add_argument(
        "--tolerance",
        type=float,
        help="refuse above this depth difference in m (fp32: largest, default 1e-4; fp16: "
        "mean, default 0.05)",
    )
    parser.add_argument(
        "--providers",
        help="ONNX Runtime execution providers for the check, comma-separated (cpu)",
    )
    parser.add_argument(
        "--check",
        type=Path,
        metavar="ONNX",
        help="verify this exported file instead of exporting (with CHECKPOINT: against it)",
    )


def _windows(args: argparse.Namespace, in_channels: int) -> list[Any] | None:
    if not args.windows:
        return None
    from stereospike_ros.errors import UsageError
    from stereospike_ros.training.evaluate import recorded_inputs

    if args.frames < 1:
        raise UsageError(f"--frames must be >= 1, got {args.frames}")
    return recorded_inputs(
        args.windows, in_channels, split=args.split, part=args.part, frames=args.frames
    )


def _in_channels(checkpoint: Path) -> int:
    from stereospike_ros.model.checkpoint import checkpoint_metadata
    from stereospike_ros.model.errors import CheckpointError, OnnxError

    try:
        config = checkpoint_metadata(checkpoint).get("config") or {}
    except CheckpointError as err:
        raise OnnxError(str(err)) from err
    return int(config.get("in_channels", 4))


def _agreement_line(agreement: Any, source: str, runtime: str) -> str:
    return (
        f"{runtime} vs torch reference on {agreement.windows} windows ({source}): largest "
        f"|depth difference| {agreement.max_abs_diff_m:.3g} m, mean "
        f"{agreement.mean_abs_diff_m:.3g} m"
    )


def run(args: argparse.Namespace) -> int:
    from stereospike_ros.model.errors import OnnxError
    from stereospike_ros.model.onnx_export import check_onnx, export_checkpoint

    if args.check is not None:
        if args.checkpoint is not None and not args.checkpoint.is_file():
            raise OnnxError(f"checkpoint {args.checkpoint} does not exist")
        windows = _windows(args, _in_channels(args.checkpoint)) if args.checkpoint else None
        metadata, agreement = check_onnx(
            args.check, checkpoint=args.checkpoint, windows=windows, providers=args.providers
        )
        size = metadata.get("input_size")
        print(
            f"{args.check}: {metadata.get('model')} {metadata.get('precision')}, input "
            f"{metadata.get('channel_order')} "
            f"{'x'.join(map(str, size)) if size else 'dynamic'}, window "
            f"{metadata.get('window_ms')} ms, from {metadata.get('checkpoint')} (sha256 "
            f"{str(metadata.get('checkpoint_sha256'))[:12]}...): weights and graph verified"
        )
        if agreement is not None:
            source = f"{args.windows}" if args.windows else "simulated"
            print(_agreement_line(agreement, source, "onnxruntime"))
        return 0
    if args.checkpoint is None or args.out is None:
        raise OnnxError("give a CHECKPOINT and --out FILE (or --check FILE)")
    if not args.checkpoint.is_file():
        raise OnnxError(f"checkpoint {args.checkpoint} does not exist")
    precision = "fp16" if args.fp16 else "fp32"
    windows = _windows(args, _in_channels(args.checkpoint))
    result = export_checkpoint(
        args.checkpoint,
        args.out,
        input_size=args.size,
        precision=precision,
        windows=windows,
        windows_source=f"windows of {args.windows}" if args.windows else None,
        tolerance_m=args.tolerance,
        providers=args.providers,
        upsampling=args.upsampling,
    )
    meta = result.metadata
    size = meta["input_size"]
    print(
        f"wrote {result.path} ({result.bytes / 1e6:.1f} MB): {meta['model']} {precision}, input "
        f"'{meta['input_name']}' {meta['channel_order']} "
        f"{'x'.join(map(str, size)) if size else 'dynamic'}, output '{meta['output_name']}' "
        f"depth in m, opset {meta['opset']}"
    )
    validation = meta["validation"]
    print(
        _agreement_line(result.agreement, validation["source"], validation["runtime"])
        + f" (tolerance {result.tolerance_m:g} m on the "
        + ("largest)" if precision == "fp32" else "mean)")
    )
    return 0
