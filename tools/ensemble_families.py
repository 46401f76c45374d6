"""How much of a network's error is seed-to-seed variance: each checkpoint and their ensemble
(the mean of their log depths, pixel by pixel) scored on every scene family's test frames.

    PYTHONPATH=. .venv/bin/python tools/ensemble_families.py --out fam \\
        --checkpoints runs/a/best.safetensors runs/b/best.safetensors [--threads 2]

``--out`` is a folder ``benchmark families`` built and scored (its ``data/`` and
``split_<family>.json``). The MDE is computed as ``benchmark families`` computes it (mean
absolute error over valid ground-truth pixels, averaged over frames), so a single
checkpoint's column matches that command's table. An ensemble of N networks costs N
forward passes per frame: it measures what averaging seeds is worth, it is not a mode of the
node.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from stereospike_ros.model.metrics import MetricAccumulator
from stereospike_ros.sim.families import FAMILIES
from stereospike_ros.training.baselines import load_model
from stereospike_ros.training.evaluate import ModelPredictor, open_eval_data

Table = dict[str, dict[str, float]]
"""Family -> column -> value, what the per-family tools return."""


def names(checkpoints: list[Path]) -> list[str]:
    """Short distinct names: run folders (``runs/x/best.safetensors`` is ``x``), else file
    stems, else the paths as given."""
    for candidate in ([p.parent.name for p in checkpoints], [p.stem for p in checkpoints]):
        if len(set(candidate)) == len(candidate):
            return candidate
    return [str(p) for p in checkpoints]


def families_in(out: Path) -> list[str]:
    """The families a ``benchmark families`` folder holds, in the benchmark's order."""
    found = set(json.loads((out / "families.json").read_text()).values())
    return sorted(found, key=list(FAMILIES).index)


def load_predictors(checkpoints: list[Path]) -> list[ModelPredictor]:
    """One CPU predictor per checkpoint, named by :func:`names`."""
    predictors = []
    for path, name in zip(checkpoints, names(checkpoints), strict=True):
        model, metadata = load_model(path, device="cpu", input_size=None, any_size=True)
        predictors.append(ModelPredictor(model, name=name, metadata=metadata))
    return predictors


def print_table(table: Table, digits: dict[str, int] | None = None) -> None:
    """``table`` (family -> column -> value) as Markdown, with the mean over the held-out
    families; values to one decimal unless ``digits`` names the column."""
    held_out = {name for name, family in FAMILIES.items() if family.held_out}
    columns = list(next(iter(table.values())))
    places = {c: (digits or {}).get(c, 1) for c in columns}
    print("| family | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for family, row in table.items():
        print(f"| {family} | " + " | ".join(f"{row[c]:.{places[c]}f}" for c in columns) + " |")
    means = {c: np.mean([table[f][c] for f in table if f in held_out]) for c in columns}
    print("| held-out mean | " + " | ".join(f"{means[c]:.{places[c]}f}" for c in columns) + " |")


def score(out: Path, checkpoints: list[Path]) -> Table:
    """MDE in cm by family, then by checkpoint (:func:`names`) and ``ensemble``."""
    predictors = load_predictors(checkpoints)
    table: Table = {}
    for family in families_in(out):
        scores = {p.name: MetricAccumulator() for p in predictors}
        scores["ensemble"] = MetricAccumulator()
        split = out / f"split_{family}.json"
        with open_eval_data(out / "data", split=str(split), part="test") as data:
            for _, frame in data.frames():
                truth = torch.as_tensor(np.asarray(frame.depth))
                logs = []
                for predictor in predictors:
                    depth = torch.as_tensor(predictor(frame).depth, dtype=torch.float64)
                    scores[predictor.name].update(depth, truth)
                    logs.append(depth.clamp(min=1e-3).log())
                scores["ensemble"].update(torch.stack(logs).mean(0).exp(), truth)
        table[family] = {name: acc.summary()["mde_cm"] for name, acc in scores.items()}
        print(f"scored {family}", flush=True)
    return table


def tool_parser(doc: str) -> argparse.ArgumentParser:
    """The options these per-family tools share, described by ``doc``'s first paragraph."""
    parser = argparse.ArgumentParser(description=" ".join(doc.split("\n\n")[0].split()))
    parser.add_argument("--out", type=Path, required=True, help="a benchmark families folder")
    parser.add_argument("--checkpoints", type=Path, nargs="+", required=True)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (2)")
    return parser


def run_tool(doc: str, score_checkpoints: Callable[[Path, list[Path]], Table]) -> None:
    """The command line of a per-family tool without options of its own: parse, score, print."""
    args = tool_parser(doc).parse_args()
    torch.set_num_threads(args.threads)
    print_table(score_checkpoints(args.out, args.checkpoints))


def main() -> None:
    run_tool(__doc__, score)


if __name__ == "__main__":
    main()
