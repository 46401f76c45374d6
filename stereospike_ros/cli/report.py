"""``python -m stereospike_ros report RUN_DIR``: training curves and the best epoch of a run."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from stereospike_ros.training.errors import TrainingError

HELP = "plot a training run's curves (metrics.csv) and print its best epoch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a training run folder (holds metrics.csv)")
    parser.add_argument(
        "--out", type=Path, help="PNG to write (default RUN_DIR/training_curves.png)"
    )


def run(args: argparse.Namespace) -> int:
    from stereospike_ros.training.plots import plot_training_curves, read_metrics_csv

    run_dir: Path = args.run_dir
    if not run_dir.is_dir():
        raise TrainingError(f"run folder {run_dir} does not exist")
    metrics_csv = run_dir / "metrics.csv"
    columns = read_metrics_csv(metrics_csv)
    out = plot_training_curves(
        metrics_csv, args.out or run_dir / "training_curves.png", str(run_dir)
    )
    epochs = len(next(iter(columns.values())))
    print(f"{run_dir}: {epochs} epoch(s) in metrics.csv")
    mde_key = next((k for k in ("val_mde_cm", "val/mde_cm", "mde_cm") if k in columns), None)
    mde_key = mde_key or next((k for k in columns if "mde" in k.lower()), None)
    if mde_key is not None:
        values = columns[mde_key]
        finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
        if finite:
            best, row = min(finite)
            epoch = columns["epoch"][row] if "epoch" in columns else row + 1
            print(f"best {mde_key}: {best:.2f} at epoch {epoch:g}; last: {values[-1]:.2f}")
    rates = [v for v in columns.get("samples_per_s", []) if math.isfinite(v)]
    if rates:
        print(f"training throughput: {rates[-1]:.1f} samples/s (last epoch), best {max(rates):.1f}")
    for name in ("best.safetensors", "last.safetensors"):
        if (run_dir / name).is_file():
            print(f"checkpoint: {run_dir / name}")
    print(f"wrote {out}")
    return 0
