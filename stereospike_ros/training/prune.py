"""Prune a checkpoint on calibration recordings: run it over their windows, zero the channels
that never fired (``model.prune``), and save the result as a checkpoint that says where it came
from (the ``prune`` command's work)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from stereospike_ros.model.checkpoint import RESERVED_KEYS, load_checkpoint, save_checkpoint
from stereospike_ros.model.inputs import frame_tensor
from stereospike_ros.model.prune import conv_units, count_silent, prune_on
from stereospike_ros.training.errors import TrainingError
from stereospike_ros.training.evaluate import EvalDataOptions


def prune_checkpoint(
    checkpoint: Path,
    out: Path,
    data: EvalDataOptions,
    *,
    threads: int | None = None,
    quiet: bool = False,
) -> Path:
    """Calibrate ``checkpoint`` on ``data``'s windows, print the channels that never fired per
    unit, and write the pruned checkpoint to ``out`` (never over ``checkpoint``)."""
    from tqdm import tqdm

    if threads is not None:
        if threads < 1:
            raise TrainingError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if out.resolve() == checkpoint.resolve():
        raise TrainingError(f"--out {out} would overwrite the checkpoint being pruned")
    model, metadata = load_checkpoint(checkpoint)
    channels = model.config.in_channels
    with data.open(metadata.get("window_ms")) as eval_data:
        trained = metadata.get("input_size")
        if trained and list(trained) != [eval_data.height, eval_data.width]:
            print(
                f"prune: note: calibrating at {eval_data.height}x{eval_data.width}, the "
                f"checkpoint was trained at {trained[0]}x{trained[1]}",
                file=sys.stderr,
            )
        names: list[str] = []
        frames = tqdm(
            eval_data.frames(),
            total=eval_data.count,
            desc="calibrating",
            unit="window",
            disable=quiet,
        )

        def windows() -> Iterator[Tensor]:
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
    sources = data.data if isinstance(data.data, list | tuple) else [data.data]
    extra["pruned"] = {
        "source": str(checkpoint),
        "source_sha256": metadata.get("tensors_sha256"),
        "calibration": {"data": [str(d) for d in sources], "recordings": names, "windows": seen},
        "silent": {name: int(mask.sum()) for name, mask in silent.items()},
    }
    save_checkpoint(out, pruned, **extra)
    print(f"wrote {out}")
    return out
