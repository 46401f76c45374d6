"""Does a network read event density as depth? Each checkpoint scored on every scene family's
test frames with the events as recorded and with ``factor`` times as many: fewer by dropping
events at random, more by adding events where events already are
(``training.train.scale_event_counts``, what ``train --event-density`` does to training
samples). The depth to find is the same in every column, so a network that matches the two
cameras scores about the same in each; one that has learned "few events means far" does not.

    PYTHONPATH=. .venv/bin/python tools/density_families.py --out fam \\
        --checkpoints runs/a/best.safetensors [runs/b/best.safetensors ...] \\
        [--factors 0.25 0.5 1 2] [--max-frames 80] [--threads 2]

``--out`` is a folder ``benchmark families`` built and scored. The MDE is computed as
``benchmark families`` computes it, so with ``--factors 1`` and no ``--max-frames`` a
checkpoint's column matches that command's table. Events are dropped or added with a fixed
seed per frame, the same for every checkpoint.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from stereospike_ros.model.metrics import MetricAccumulator
from stereospike_ros.training.evaluate import open_eval_data
from stereospike_ros.training.train import scale_event_counts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ensemble_families import (  # a sibling script, not a package
    Table,
    families_in,
    load_predictors,
    print_table,
    tool_parser,
)


def score(
    out: Path, checkpoints: list[Path], factors: list[float], max_frames: int | None = None
) -> Table:
    """MDE in cm by family, then by ``"<checkpoint> x<factor>"``; also events per pixel per
    window (left camera, as recorded) under ``"events/px"``."""
    predictors = load_predictors(checkpoints)
    table: Table = {}
    for family in families_in(out):
        scores = {f"{p.name} x{g:g}": MetricAccumulator() for p in predictors for g in factors}
        density = []
        split = out / f"split_{family}.json"
        with open_eval_data(
            out / "data", split=str(split), part="test", max_frames=max_frames
        ) as data:
            for position, (_, frame) in enumerate(data.frames()):
                truth = torch.as_tensor(np.asarray(frame.depth))
                density.append(float(frame.left.sum()) / frame.left[0].size)
                for g in factors:
                    rng = np.random.default_rng((position, round(g * 1000)))
                    left = scale_event_counts(frame.left, g, rng)
                    right = scale_event_counts(frame.right, g, rng)
                    scaled = replace(frame, left=left, right=right)
                    for predictor in predictors:
                        depth = torch.as_tensor(predictor(scaled).depth, dtype=torch.float64)
                        scores[f"{predictor.name} x{g:g}"].update(depth, truth)
        table[family] = {name: acc.summary()["mde_cm"] for name, acc in scores.items()}
        table[family]["events/px"] = float(np.mean(density))
        print(f"scored {family}", flush=True)
    return table


def main() -> None:
    parser = tool_parser(__doc__)
    parser.add_argument(
        "--factors", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0], help="(0.25 0.5 1 2)"
    )
    parser.add_argument("--max-frames", type=int, default=None, help="per family (all)")
    args = parser.parse_args()
    if any(not g > 0 for g in args.factors):
        parser.error(f"--factors must be positive, got {args.factors}")
    torch.set_num_threads(args.threads)
    table = score(args.out, args.checkpoints, args.factors, args.max_frames)
    print_table(table, digits={"events/px": 3})


if __name__ == "__main__":
    main()
