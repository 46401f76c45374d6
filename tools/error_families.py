"""Where a network's error on the scene families lies: in its depth level or in the shape of
its depth map, at pixels that saw events or at pixels that did not, near or far. Each
checkpoint is scored on every family's test frames:

- ``MDE``: as ``benchmark families`` scores it (mean absolute error over the valid
  ground-truth pixels of a frame, averaged over frames);
- ``MDE, oracle scale``: the same after multiplying each frame's prediction by the median of
  truth / prediction over its valid pixels, a level no deployed network knows. What it
  removes is the share of the error any level correction (offset calibration, a scale taken
  from another sensor) could remove; what is left is the shape of the depth map;
- ``events %``, ``err at events``, ``err elsewhere``: the share of valid pixels where the left
  camera has at least one event in the window, and the mean absolute error there and at the
  other pixels (pooled over the family's pixels). Stereo can match only where events are;
  elsewhere the depth is filled in;
- ``err share < 5 m``, ``5-10 m``, ``>= 10 m``: the share of the family's summed absolute
  error at pixels whose true depth lies in that range.

    PYTHONPATH=. .venv/bin/python tools/error_families.py --out fam \\
        --checkpoints runs/a/best.safetensors [runs/b/best.safetensors ...] [--threads 2]

``--out`` is a folder ``benchmark families`` built and scored; the ``MDE`` column matches
that command's table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from stereospike_ros.model.metrics import MetricAccumulator
from stereospike_ros.training.evaluate import open_eval_data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ensemble_families import (  # a sibling script, not a package
    Table,
    families_in,
    load_predictors,
    run_tool,
)

DEPTH_BANDS_M = ((0.0, 5.0, "< 5 m"), (5.0, 10.0, "5-10 m"), (10.0, np.inf, ">= 10 m"))


def _percent(part: float, whole: float) -> float:
    """``part`` in % of ``whole``; NaN where there is no whole (a perfect prediction has no
    error to share out)."""
    return 100.0 * part / whole if whole else float("nan")


class _Pooled:
    """Sums of absolute error and pixel counts by named pixel set, over a family."""

    def __init__(self) -> None:
        self.error: dict[str, float] = {}
        self.pixels: dict[str, int] = {}

    def add(self, key: str, abs_error: np.ndarray, mask: np.ndarray) -> None:
        self.error[key] = self.error.get(key, 0.0) + float(abs_error[mask].sum())
        self.pixels[key] = self.pixels.get(key, 0) + int(mask.sum())

    def mean_cm(self, key: str) -> float:
        return 100.0 * self.error[key] / self.pixels[key] if self.pixels[key] else float("nan")


def score(out: Path, checkpoints: list[Path]) -> Table:
    """By family, then ``"<checkpoint> <column>"`` (columns as in the module docstring; the
    shares in %)."""
    predictors = load_predictors(checkpoints)
    table: Table = {}
    for family in families_in(out):
        plain = {p.name: MetricAccumulator() for p in predictors}
        oracle = {p.name: MetricAccumulator() for p in predictors}
        pooled = {p.name: _Pooled() for p in predictors}
        split = out / f"split_{family}.json"
        with open_eval_data(out / "data", split=str(split), part="test") as data:
            for _, frame in data.frames():
                truth = np.asarray(frame.depth, np.float64)
                valid = np.isfinite(truth) & (truth > 0)
                if not valid.any():
                    continue
                events = np.asarray(frame.left).sum(axis=0) > 0
                for predictor in predictors:
                    depth = np.asarray(predictor(frame).depth, np.float64)
                    plain[predictor.name].update(torch.as_tensor(depth), torch.as_tensor(truth))
                    positive = valid & (depth > 0)
                    scale = np.median(truth[positive] / depth[positive]) if positive.any() else 1.0
                    oracle[predictor.name].update(
                        torch.as_tensor(depth * scale), torch.as_tensor(truth)
                    )
                    abs_error = np.abs(depth - truth)
                    sums = pooled[predictor.name]
                    sums.add("all", abs_error, valid)
                    sums.add("events", abs_error, valid & events)
                    sums.add("elsewhere", abs_error, valid & ~events)
                    for low, high, band in DEPTH_BANDS_M:
                        sums.add(band, abs_error, valid & (truth >= low) & (truth < high))
        row: dict[str, float] = {}
        for predictor in predictors:
            name, sums = predictor.name, pooled[predictor.name]
            row[f"{name} MDE"] = plain[name].summary()["mde_cm"]
            row[f"{name} MDE, oracle scale"] = oracle[name].summary()["mde_cm"]
            row[f"{name} events %"] = _percent(sums.pixels["events"], sums.pixels["all"])
            row[f"{name} err at events"] = sums.mean_cm("events")
            row[f"{name} err elsewhere"] = sums.mean_cm("elsewhere")
            for _, _, band in DEPTH_BANDS_M:
                row[f"{name} err share {band}"] = _percent(sums.error[band], sums.error["all"])
        table[family] = row
        print(f"scored {family}", flush=True)
    return table


def main() -> None:
    run_tool(__doc__, score)


if __name__ == "__main__":
    main()
