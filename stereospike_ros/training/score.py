"""The ``evaluate`` command's work: score a checkpoint and baselines on the same frames, then
print the table and write the JSON report and figures asked for.

:func:`score` takes one :class:`ScoreConfig` (what the command line's options say), so the
command module only turns arguments into it; the scoring itself is
:func:`~stereospike_ros.training.evaluate.evaluate_many`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stereospike_ros.model.checkpoint import checkpoint_metadata
from stereospike_ros.model.inputs import resolve_device
from stereospike_ros.model.temporal import check_smoothing
from stereospike_ros.training.baselines import BASELINES, load_baseline, load_model
from stereospike_ros.training.errors import TrainingError
from stereospike_ros.training.evaluate import (
    EvalData,
    EvalDataOptions,
    EvalResult,
    ModelPredictor,
    SmoothedPredictor,
    evaluate_many,
    pick_threads,
    results_table,
)


@dataclass(frozen=True)
class ScoreConfig:
    """A checkpoint and/or baselines to score on ``data``, and what to write."""

    data: EvalDataOptions
    checkpoint: Path | None = None
    #: ``sgbm`` or other checkpoints, scored beside ``checkpoint`` on the same frames
    baselines: tuple[str, ...] = ()
    #: refuse a checkpoint that is not this architecture
    model: str | None = None
    any_size: bool = False
    device: str = "auto"
    #: torch CPU threads; None: 1 or torch's default, whichever runs the model faster here
    threads: int | None = None
    inference_path: str = "reference"
    onnx_providers: str | None = None
    json: Path | None = None
    plots: Path | None = None
    #: frame positions to draw, ``"0,10,20"`` (None: three spread out)
    plot_frames: str | None = None
    #: the previous estimate's weight in a temporal filter on every method (0: none)
    temporal_smoothing: float = 0.0
    quiet: bool = False


def score(config: ScoreConfig) -> list[EvalResult]:
    """Score, print the table, write what ``config`` asks for; the checkpoint's result first
    (else the first baseline's)."""
    if config.checkpoint is None and not config.baselines:
        raise TrainingError("give a CHECKPOINT, a --baseline, or both")
    check_smoothing(config.temporal_smoothing)
    device = resolve_device(config.device)
    if config.threads is not None:
        if config.threads < 1:
            raise TrainingError(f"--threads must be >= 1, got {config.threads}")
        torch.set_num_threads(config.threads)
    metadata: dict[str, Any] = {}
    if config.checkpoint is not None:
        metadata = checkpoint_metadata(config.checkpoint)
    start = time.perf_counter()
    data = config.data.open(metadata.get("window_ms"))
    with data:
        predictors, metadata = _predictors(config, data, device, metadata)
        keep = set(_positions(config.plot_frames, data.count)) if config.plots else set()
        kept_frames: dict[int, Any] = {}
        frames = _keeping(data.frames(), keep, kept_frames)
        results = evaluate_many(
            predictors, frames, device=str(device), keep=keep, progress=_progress(config, data)
        )
        description = data.description
    elapsed = time.perf_counter() - start

    print(
        f"{int(results[0].metrics['frames'])} frames of {description.get('sequences')} "
        f"({data.height}x{data.width}) in {elapsed:.1f} s"
    )
    print(results_table(results))
    if config.json is not None:
        _write_json(config.json, config.checkpoint, metadata, description, results, elapsed)
    if config.plots is not None:
        for path in _write_plots(
            config.plots, config.checkpoint, results, kept_frames, description
        ):
            print(f"wrote {path}")
    return results


def _predictors(
    config: ScoreConfig, data: EvalData, device: torch.device, metadata: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """The checkpoint's predictor (threads picked when not given) then the baselines'; and the
    checkpoint's metadata as loaded."""
    size = (data.height, data.width)
    predictors: list[Any] = []
    if config.checkpoint is not None:
        model, metadata = load_model(
            config.checkpoint,
            device=str(device),
            expect_model=config.model,
            input_size=size,
            any_size=config.any_size,
        )
        if config.threads is None:
            threads, measured = pick_threads(model, size, device)
            if measured:
                per_frame = ", ".join(f"{n}: {s * 1e3:.0f} ms" for n, s in measured.items())
                print(f"torch threads: {threads} (measured per forward: {per_frame})")
        predictors.append(
            ModelPredictor(
                model,
                device=device,
                metadata=metadata,
                path=config.inference_path,
                providers=config.onnx_providers,
            )
        )
    stems = [Path(spec).stem for spec in config.baselines if spec not in BASELINES]
    for spec in config.baselines:
        predictors.append(
            load_baseline(
                spec,
                focal_baseline=data.focal_baseline,
                device=str(device),
                input_size=size,
                any_size=config.any_size,
                qualified=stems.count(Path(spec).stem) > 1,
            )
        )
    if config.temporal_smoothing:
        predictors = [SmoothedPredictor(p, config.temporal_smoothing) for p in predictors]
    return predictors, metadata


def _progress(config: ScoreConfig, data: EvalData) -> Any:
    """A tqdm bar over the frames, or None when quiet."""
    if config.quiet:
        return None
    from tqdm import tqdm

    return lambda it: tqdm(it, total=data.count, desc="evaluating", unit="frame")


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


def _write_json(
    path: Path,
    checkpoint: Path | None,
    metadata: dict[str, Any],
    description: dict[str, Any],
    results: list[EvalResult],
    elapsed: float,
) -> None:
    """The first result, the baselines' and where they came from, as JSON."""
    report = {
        "checkpoint": str(checkpoint) if checkpoint else None,
        "metadata": metadata or None,
        "data": description,
        **results[0].to_dict(),
        "baselines": {r.name: r.to_dict() for r in results[1:]},
        "elapsed_s": elapsed,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    print(f"wrote {path}")


def _write_plots(
    out: Path,
    checkpoint: Path | None,
    results: list[EvalResult],
    kept: dict[int, Any],
    description: dict,
) -> list[Path]:
    """The kept frames with every prediction, MDE over time, and the checkpoint's training
    curves when its metrics.csv is beside it; returns the files written."""
    from stereospike_ros.training.plots import (
        plot_frame,
        plot_mde_over_time,
        plot_training_curves,
    )

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
    if checkpoint is not None:
        metrics_csv = checkpoint.parent / "metrics.csv"
        if metrics_csv.is_file():
            try:
                written.append(
                    plot_training_curves(metrics_csv, out / "training_curves.png", str(metrics_csv))
                )
            except TrainingError as err:
                print(f"evaluate: no training curves: {err}", file=sys.stderr)
    return written
