"""Figures a person can read: frames side by side, MDE over time, training curves.

matplotlib with the Agg back-end only (no display needed). Depth maps share one colour scale
per figure (near = bright, ``viridis_r``) and show unknown pixels (NaN) in white, so a missing
prediction is never mistaken for a far one.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stereospike_ros.training.errors import TrainingError


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    """Lay out, write (creating the folder) and close ``fig``; returns the path written."""
    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    _pyplot().close(fig)
    return path


def event_rgb(hist: np.ndarray) -> np.ndarray:
    """(2, H, W) ON/OFF counts -> (H, W, 3) RGB: ON red, OFF blue, both magenta, none white."""
    hist = np.asarray(hist, dtype=np.float32)
    if hist.ndim != 3 or hist.shape[0] != 2:
        raise TrainingError(f"event image needs (2, H, W) ON/OFF counts, got {hist.shape}")
    scale = max(float(np.percentile(hist[hist > 0], 99)) if (hist > 0).any() else 1.0, 1.0)
    on, off = (np.clip(c / scale, 0.0, 1.0) for c in hist)
    rgb = np.ones((*on.shape, 3), dtype=np.float32)
    rgb[..., 0] -= off  # from white: ON removes blue and green (red), OFF red and green (blue)
    rgb[..., 1] -= np.maximum(on, off)
    rgb[..., 2] -= on
    return np.clip(rgb, 0.0, 1.0)


def _depth_range(*maps: np.ndarray) -> tuple[float, float]:
    values = np.concatenate([m[np.isfinite(m)].ravel() for m in maps] + [np.zeros(0)])
    if not values.size:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [1, 99])
    return float(lo), float(max(hi, lo + 1e-3))


def plot_frame(
    path: str | Path,
    left: np.ndarray,
    right: np.ndarray,
    gt: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    title: str = "",
) -> Path:
    """One row: left and right events, ground truth, then each method's depth and error map."""
    plt = _pyplot()
    path = Path(path)
    gt = np.asarray(gt, dtype=np.float32)
    vmin, vmax = _depth_range(gt, *predictions.values())
    valid = np.isfinite(gt) & (gt > 0)
    errors = {}
    for name, pred in predictions.items():
        err = np.full(gt.shape, np.nan, np.float32)
        ok = valid & np.isfinite(pred)
        err[ok] = np.abs(pred[ok] - gt[ok])
        errors[name] = err
    emax = max([float(np.nanpercentile(e, 99)) for e in errors.values() if np.isfinite(e).any()]
               + [1e-3])  # fmt: skip
    # Rows: one per method (depth, error); the first column holds the left then the right
    # events, the second the ground truth, so every prediction sits beside what it is scored on.
    rows = max(2, len(predictions))
    fig, axes = plt.subplots(rows, 4, figsize=(13, 2.6 * rows), squeeze=False)
    cmap = plt.get_cmap("viridis_r").with_extremes(bad="white")
    ecmap = plt.get_cmap("magma").with_extremes(bad="white")
    depth_style = {"cmap": cmap, "vmin": vmin, "vmax": vmax}
    panels: list[tuple[int, int, str, np.ndarray, dict]] = [
        (0, 0, f"left events ({int(np.sum(left))}): ON red, OFF blue", event_rgb(left), {}),
        (1, 0, f"right events ({int(np.sum(right))})", event_rgb(right), {}),
        (0, 1, "ground truth (m), white = none", gt, depth_style),
    ]
    for row, (name, pred) in enumerate(predictions.items()):
        ok = valid & np.isfinite(pred)
        mde = float(np.mean(np.abs(pred[ok] - gt[ok]))) * 100 if ok.any() else math.nan
        panels.append((row, 2, f"{name} depth (m)", pred, depth_style))
        panels.append(
            (row, 3, f"{name} |error| (m), MDE {mde:.1f} cm", errors[name],
             {"cmap": ecmap, "vmin": 0.0, "vmax": emax})
        )  # fmt: skip
    for ax in axes.ravel():
        ax.axis("off")
    for row, col, label, image, style in panels:
        ax = axes[row, col]
        shown = ax.imshow(image, interpolation="nearest", **style)
        ax.set_title(label, fontsize=8)
        if style:
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_mde_over_time(
    path: str | Path, series: Mapping[str, Sequence[float | None]], title: str = ""
) -> Path:
    """Per-frame MDE (cm) of each method against frame position; gaps where a frame was skipped."""
    plt = _pyplot()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for name, values in series.items():
        y = np.array([math.nan if v is None else v for v in values], dtype=float)
        mean = np.nanmean(y) if np.isfinite(y).any() else math.nan
        ax.plot(np.arange(len(y)), y, lw=1, label=f"{name} (mean {mean:.1f} cm)")
    ax.set_xlabel("frame (evaluation order, 50 ms apart within a recording)")
    ax.set_ylabel("MDE (cm)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def read_metrics_csv(path: str | Path) -> dict[str, list[float]]:
    """Numeric columns of a run's ``metrics.csv`` (non-numbers become NaN)."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path} does not exist: is this a training run folder?")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as err:
        raise TrainingError(f"{path} is not a metrics CSV file: {err}") from err
    if not rows:
        raise TrainingError(f"{path} has no rows yet (no epoch completed)")
    columns: dict[str, list[float]] = {}
    for key in rows[0]:
        values = []
        for row in rows:
            try:
                values.append(float(row.get(key) or "nan"))
            except ValueError:
                values.append(math.nan)
        if any(math.isfinite(v) for v in values):
            columns[key] = values
    if not columns:
        raise TrainingError(f"{path} has no numeric column: is it a training run's metrics?")
    return columns


def plot_training_curves(metrics_csv: str | Path, path: str | Path, title: str = "") -> Path:
    """Losses, validation MDE, learning rate and firing rate per epoch from ``metrics.csv``."""
    plt = _pyplot()
    columns = read_metrics_csv(metrics_csv)
    x_key = next((k for k in ("epoch", "step") if k in columns), None)
    n = len(next(iter(columns.values())))
    x = columns[x_key] if x_key else list(range(1, n + 1))
    groups = {
        "loss": [k for k in columns if "loss" in k],
        "MDE (cm)": [k for k in columns if "mde" in k.lower()],
        "learning rate": [k for k in columns if k in ("lr", "learning_rate") or k.startswith("lr")],
        "firing rate": [k for k in columns if "firing" in k],
    }
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        raise TrainingError(f"{metrics_csv} has no loss, MDE, lr or firing-rate column to plot")
    fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3.2), squeeze=False)
    for ax, (label, keys) in zip(axes[0], groups.items(), strict=True):
        for key in keys:
            ax.plot(x, columns[key], marker="o", ms=3, lw=1, label=key)
        ax.set_xlabel(x_key or "epoch")
        ax.set_ylabel(label)
        if label == "learning rate":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def report_run(run_dir: Path, out: Path | None = None) -> list[str]:
    """Plot a training run's curves (``out``, default RUN_DIR/training_curves.png) and return
    what to say about it: epochs, the best validation MDE and its epoch, throughput, the
    checkpoints, the figure written."""
    if not run_dir.is_dir():
        raise TrainingError(f"run folder {run_dir} does not exist")
    metrics_csv = run_dir / "metrics.csv"
    columns = read_metrics_csv(metrics_csv)
    figure = plot_training_curves(metrics_csv, out or run_dir / "training_curves.png", str(run_dir))
    epochs = len(next(iter(columns.values())))
    lines = [f"{run_dir}: {epochs} epoch(s) in metrics.csv"]
    mde_key = next((k for k in ("val_mde_cm", "val/mde_cm", "mde_cm") if k in columns), None)
    mde_key = mde_key or next((k for k in columns if "mde" in k.lower()), None)
    if mde_key is not None:
        values = columns[mde_key]
        finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
        if finite:
            best, row = min(finite)
            epoch = columns["epoch"][row] if "epoch" in columns else row + 1
            lines.append(f"best {mde_key}: {best:.2f} at epoch {epoch:g}; last: {values[-1]:.2f}")
    rates = [v for v in columns.get("samples_per_s", []) if math.isfinite(v)]
    if rates:
        lines.append(
            f"training throughput: {rates[-1]:.1f} samples/s (last epoch), best {max(rates):.1f}"
        )
    lines += [
        f"checkpoint: {run_dir / name}"
        for name in ("best.safetensors", "last.safetensors")
        if (run_dir / name).is_file()
    ]
    lines.append(f"wrote {figure}")
    return lines
