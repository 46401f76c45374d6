"""Bundling a run's best checkpoint as the package's default weights (what the ROS node loads)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from stereospike_ros.atomic import atomic_write
from stereospike_ros.training.errors import TrainingError

#: Where the package's default weights live (setup.py ships weights/*.safetensors and *.json).
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_NAME = "default"
MAX_DEFAULT_BYTES = 5_000_000


def export_default(
    run_dir: str | os.PathLike[str],
    dest_dir: str | os.PathLike[str] | None = None,
    *,
    name: str = DEFAULT_NAME,
    max_bytes: int = MAX_DEFAULT_BYTES,
    note: str | None = None,
) -> Path:
    """Copy ``run_dir/best.safetensors`` to ``dest_dir/<name>.safetensors`` with a JSON card.

    The card holds the checkpoint's metadata, the command that trained it, the best epoch's
    validation figures and the whole per-epoch history, so the shipped file explains itself;
    ``note``, when given, says in words what the data was (the card cannot tell simulated
    recordings from real ones).
    """
    from stereospike_ros.model import (
        CheckpointError,
        checkpoint_metadata,
        count_parameters,
        load_checkpoint,
    )

    run_dir = Path(run_dir)
    best = run_dir / "best.safetensors"
    if not best.is_file():
        raise TrainingError(f"{run_dir} has no best.safetensors: train at least one epoch first")
    if best.stat().st_size > max_bytes:
        raise TrainingError(
            f"{best} is {best.stat().st_size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB "
            "limit for bundled weights: train a smaller --width"
        )
    try:
        model, metadata = load_checkpoint(best)  # also verifies its digest
    except CheckpointError as err:
        raise TrainingError(f"cannot export {best}: {err}") from err
    history = _history(run_dir)
    best_epoch = metadata.get("best_epoch") or metadata.get("epoch")
    best_row = next((row for row in history if row.get("epoch") == best_epoch), {})
    training = metadata.get("training") or {}
    card: dict[str, Any] = {
        "file": f"{name}.safetensors",
        "model": metadata.get("model"),
        "config": metadata.get("config"),
        "parameters": count_parameters(model),
        "input_size": metadata.get("input_size"),
        "window_ms": metadata.get("window_ms"),
        "tensors_sha256": metadata.get("tensors_sha256"),
        "trained_on": metadata.get("data"),
        "best_epoch": best_epoch,
        "validation": {k: v for k, v in best_row.items() if k.startswith("val_")}
        or metadata.get("metrics"),
        "command": " ".join(training.get("command") or []) or None,
        "training": training,
        "history": history,
    }
    if note:
        card["note"] = note
    dest_dir = Path(dest_dir) if dest_dir is not None else WEIGHTS_DIR
    target = atomic_write(dest_dir / f"{name}.safetensors", lambda f: f.write(best.read_bytes()))
    card_text = json.dumps(card, indent=2) + "\n"
    atomic_write(dest_dir / f"{name}.json", lambda f: f.write(card_text.encode()))
    checkpoint_metadata(target)  # the copy reads back
    return target


def _history(run_dir: Path) -> list[dict[str, Any]]:
    import csv

    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    rows = []
    with path.open() as f:
        for row in csv.DictReader(f):
            rows.append({k: _number(v) for k, v in row.items()})
    return rows


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value
