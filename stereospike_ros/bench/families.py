"""``python -m stereospike_ros benchmark families``: depth on scene families training never saw.

Builds (or reuses) a dataset of randomized recordings (``sim.families``): training and
validation recordings from the ``mixed`` family, and test recordings of every family, the
held-out ones included; writes ``split.json`` (what ``train --split`` takes) and
``families.json`` (which family each recording is). Given checkpoints, it simulates only the
test recordings it lacks (no training data; split.json is left as training saw it), scores
each checkpoint, StereoSGBM (on the pixels it matches) and constant-depth predictors that
know each recording's median ground-truth depth (the budgets' constant) or its mean, family
by family, on the same frames, and writes ``results.md`` / ``results.json``.

Budgets turn the table into a check: ``--max-vs-constant 1.0`` fails (exit 1) when a
checkpoint is worse than the constant predictor on some family, i.e. when a network has
regressed to predicting one depth; ``--max-vs-sgbm 0.7`` asks for at most 0.7 x SGBM's MDE.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stereospike_ros.errors import UsageError
from stereospike_ros.events.types import parse_size

HELP = "per scene family (held-out ones too): checkpoints vs StereoSGBM vs a constant depth"


@dataclass(frozen=True)
class DatasetPlan:
    """How many recordings of which length and size; ``--quick`` takes seconds."""

    height: int
    width: int
    train_recordings: int
    val_recordings: int
    test_recordings: int  # per family
    train_duration_s: float
    test_duration_s: float


PLANS = {
    "full": DatasetPlan(260, 346, 120, 6, 4, 3.0, 2.0),
    "quick": DatasetPlan(48, 64, 2, 1, 1, 0.5, 0.3),
}


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="benchmark folder (created)")
    parser.add_argument("--quick", action="store_true", help="48x64, a few short recordings")
    parser.add_argument("--size", type=parse_size, help="HxW of the simulated cameras (260x346)")
    parser.add_argument("--train-recordings", type=int, help="mixed-family training recordings")
    parser.add_argument("--val-recordings", type=int, help="mixed-family validation recordings")
    parser.add_argument("--test-recordings", type=int, help="test recordings per family")
    parser.add_argument("--train-duration", type=float, help="seconds per training recording")
    parser.add_argument("--test-duration", type=float, help="seconds per test recording")
    parser.add_argument(
        "--rig",
        choices=("mvsec", "random"),
        default="mvsec",
        help="MVSEC's DAVIS346 pair (default) or a random focal length and baseline each",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="recordings simulated at once, one process each (1)"
    )
    parser.add_argument(
        "--families", type=_names, help="comma-separated families to test (default: all)"
    )
    parser.add_argument(
        "--checkpoints", type=_names, default=[], help="comma-separated .safetensors to score"
    )
    parser.add_argument(
        "--labels", type=_names, help="comma-separated names of the checkpoints (default: stems)"
    )
    parser.add_argument("--max-frames", type=int, help="cap test frames per family")
    parser.add_argument(
        "--any-size",
        action="store_true",
        help="score checkpoints trained at another input size (fully convolutional)",
    )
    parser.add_argument(
        "--pictures",
        action="store_true",
        help="draw each family's middle test frame: every method beside the ground truth "
        "(OUT/pictures/FAMILY.png)",
    )
    parser.add_argument(
        "--max-vs-constant",
        type=float,
        help="fail (exit 1) when a checkpoint's MDE exceeds this x the constant's on a family",
    )
    parser.add_argument(
        "--max-vs-sgbm",
        type=float,
        help="fail (exit 1) when a checkpoint's MDE exceeds this x SGBM's on a held-out family",
    )
    parser.add_argument(
        "--temporal-smoothing",
        type=float,
        default=0.0,
        metavar="S",
        help="score the networks and SGBM through the depth node's temporal filter (the "
        "previous estimate's weight in [0, 1) in a running mean of log depth; 0: none)",
    )
    parser.add_argument("--build-only", action="store_true", help="write the dataset, score none")
    parser.add_argument(
        "--speed",
        type=float,
        metavar="SECONDS",
        help="only measure simulation speed: SECONDS of each family (and the default room), "
        "in memory, at --size; prints events/s and wall seconds per simulated second",
    )
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads")


def _plan(args: argparse.Namespace) -> DatasetPlan:
    values = asdict(PLANS["quick" if args.quick else "full"])
    if args.size:
        values["height"], values["width"] = args.size
    for arg, key in (
        ("train_recordings", "train_recordings"),
        ("val_recordings", "val_recordings"),
        ("test_recordings", "test_recordings"),
        ("train_duration", "train_duration_s"),
        ("test_duration", "test_duration_s"),
    ):
        if getattr(args, arg) is not None:
            values[key] = getattr(args, arg)
    return DatasetPlan(**values)


# -- data ------------------------------------------------------------------------------------


def planned_recordings(
    plan: DatasetPlan, families: Iterable[str]
) -> list[tuple[str, str, int, str]]:
    """(recording name, family, seed, part): seeds never repeat across parts or families."""
    out = [(f"mixed_train_{k:04d}", "mixed", k, "train") for k in range(plan.train_recordings)]
    out += [(f"mixed_val_{k:02d}", "mixed", 100_000 + k, "val") for k in range(plan.val_recordings)]
    for name in families:
        out += [
            (f"{name}_test_{k:02d}", name, 200_000 + k, "test") for k in range(plan.test_recordings)
        ]
    return out


def _make_recording(config: Any, family: str, part: str, data_dir: Path) -> tuple[int, float]:
    """Simulate one recording and write it with its ``_sim.json`` last (the mark of done)."""
    from stereospike_ros.data.mvsec_hdf5 import write_mvsec_hdf5
    from stereospike_ros.sim.simulator import simulate

    start = time.perf_counter()
    recording = simulate(config)
    took = time.perf_counter() - start
    name = config.name
    write_mvsec_hdf5(
        recording, data_dir / f"{name}_data.hdf5", data_dir / f"{name}_gt.hdf5", overwrite=True
    )
    n = len(recording.left_events) + len(recording.right_events)
    record = {"config": asdict(config), "family": family, "part": part, "events": n,
              "simulate_s": round(took, 3)}  # fmt: skip
    (data_dir / f"{name}_sim.json").write_text(json.dumps(record) + "\n")
    return n, took


def build_dataset(
    plan: DatasetPlan,
    data_dir: Path,
    families: Iterable[str],
    rig: str = "mvsec",
    jobs: int = 1,
    parts: Iterable[str] = ("train", "val", "test"),
) -> dict[str, Any]:
    """Simulate what is missing of ``parts`` (an identical ``NAME_sim.json`` means done: a run
    killed half-way continues), in ``jobs`` processes; returns figures: recordings, events,
    seconds of simulation (summed over processes), events/s."""
    from concurrent.futures import ProcessPoolExecutor

    from stereospike_ros.sim.families import random_config

    data_dir.mkdir(parents=True, exist_ok=True)
    missing = []
    wanted = set(parts)
    for name, fam, seed, part in planned_recordings(plan, families):
        if part not in wanted:
            continue
        duration = plan.train_duration_s if part != "test" else plan.test_duration_s
        config = random_config(fam, seed, width=plan.width, height=plan.height,
                               duration_s=duration, rig=rig, recording=name)  # fmt: skip
        record = data_dir / f"{name}_sim.json"
        files = [data_dir / f"{name}_data.hdf5", data_dir / f"{name}_gt.hdf5"]
        done = record.is_file() and all(f.is_file() for f in files)
        if not (done and json.loads(record.read_text()).get("config") == asdict(config)):
            missing.append((config, fam, part))
    events = 0
    seconds = 0.0

    def report(config: Any, n: int, took: float) -> None:
        nonlocal events, seconds
        events, seconds = events + n, seconds + took
        print(f"simulated {config.name} ({config.scene}, {config.texture}, {config.motion}): "
              f"{n:,} events in {took:.1f} s", flush=True)  # fmt: skip

    if jobs <= 1 or len(missing) <= 1:
        for config, fam, part in missing:
            report(config, *_make_recording(config, fam, part, data_dir))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [(c, pool.submit(_make_recording, c, f, p, data_dir)) for c, f, p in missing]
            for config, future in futures:
                report(config, *future.result())
    return {
        "simulated": len(missing),
        "events": events,
        "seconds": seconds,
        "events_per_s": events / seconds if seconds else None,
    }


def write_split_files(
    plan: DatasetPlan, out: Path, families: Iterable[str]
) -> tuple[Path, dict[str, str]]:
    """``split.json`` (train/val: mixed; test: every family) and ``families.json``."""
    recordings = planned_recordings(plan, families)
    split = {"name": "families", "sequences": {n: {"part": p} for n, _, _, p in recordings}}
    path = out / "split.json"
    path.write_text(json.dumps(split, indent=1) + "\n")
    by_name = {n: f for n, f, _, _ in recordings}
    (out / "families.json").write_text(json.dumps(by_name, indent=1) + "\n")
    return path, by_name


# -- scoring ---------------------------------------------------------------------------------


class ConstantDepth:
    """Predicts one depth everywhere: the median (or mean) ground truth of the frame's recording.

    A network that has learned nothing about stereo but a recording's typical depth scores
    about this. The budgets use the median, because the median is the single depth with the
    least mean absolute error (MDE) over the recording's pixels: with skewed depths (a far wall,
    open sky) a constant at the mean is beaten by other constants, so only the median makes
    "worse than the constant" mean "no better than any one depth". The mean is reported too:
    it is the constant a target phrased as "knows the recording's mean depth" names; where every
    frame of a recording has as many valid pixels (the simulator's), its MDE is never below
    the median's (the MDE is averaged over frames).
    """

    name = "constant (recording median)"

    def __init__(self, depths: dict[str, float], statistic: str = "median") -> None:
        self.depths = depths
        self.sequence = ""
        self.name = f"constant (recording {statistic})"

    def tagged(self, frames: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
        """Pass frames through, remembering whose recording each one is."""
        for sequence, frame in frames:
            self.sequence = sequence
            yield sequence, frame

    def __call__(self, frame: Any) -> Any:
        import torch

        from stereospike_ros.training.evaluate import Prediction

        shape = np.asarray(frame.depth).shape
        return Prediction(torch.full(shape, self.depths[self.sequence], dtype=torch.float32))

    def describe(self, height: int, width: int) -> dict[str, Any]:
        return {"method": "constant", "depth_m": self.depths}


class Remembered:
    """A method that keeps its last prediction, for :class:`OnPixelsOf` to read."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.last: Any = None

    def __call__(self, frame: Any) -> Any:
        self.last = self.inner(frame)
        return self.last

    def describe(self, height: int, width: int) -> dict[str, Any]:
        return self.inner.describe(height, width)


class OnPixelsOf:
    """A network's last depth scored only where a reference (SGBM) answered in the same frame.

    The budget compares a network at full coverage with SGBM on the pixels SGBM chooses, which
    are the textured, easier ones; this row is the like-for-like comparison: which of the two
    is the better matcher where both answer. It reads the predictions the two methods made of
    the frame just before (no second forward pass), so it must come after both in the method
    list of one :func:`~stereospike_ros.training.evaluate.evaluate_many` call.
    """

    def __init__(self, network: Remembered, reference: Remembered) -> None:
        self.network, self.reference = network, reference
        self.name = f"{network.name} on {reference.name}'s pixels"

    def __call__(self, frame: Any) -> Any:
        import torch

        from stereospike_ros.training.evaluate import Prediction

        depth = self.network.last.depth.detach().to("cpu", torch.float32)
        answered = torch.isfinite(self.reference.last.depth.detach().to("cpu"))
        return Prediction(torch.where(answered, depth, torch.full_like(depth, float("nan"))))

    def describe(self, height: int, width: int) -> dict[str, Any]:
        return {"method": "network on the reference's pixels", "reference": self.reference.name}


def recording_depths(
    frames: Iterable[tuple[str, Any]],
) -> tuple[dict[str, float], dict[str, float]]:
    """Median and mean valid ground-truth depth of each recording over the given frames."""
    values: dict[str, list[np.ndarray]] = {}
    for sequence, frame in frames:
        depth = np.asarray(frame.depth, np.float32)
        values.setdefault(sequence, []).append(depth[np.isfinite(depth) & (depth > 0)])
    pooled = {s: np.concatenate(v) for s, v in values.items()}
    return (
        {s: float(np.median(v)) if v.size else 1.0 for s, v in pooled.items()},
        {s: float(np.mean(v, dtype=np.float64)) if v.size else 1.0 for s, v in pooled.items()},
    )


#: the disparity probe: pixels of disparity added, frames per family, border columns skipped
PROBE_SHIFT_PX = 4
PROBE_FRAMES = 6
PROBE_MARGIN_PX = 24


def disparity_gain(
    method: Any, frames: Iterable[Any], focal_baseline: float, shift_px: int = PROBE_SHIFT_PX
) -> float:
    """How much a method's disparity follows the input's: the median over pixels and frames of
    (predicted disparity with ``shift_px`` more disparity in the input - without) / shift_px.

    The right histograms are moved ``shift_px`` to the left, which adds that much disparity
    everywhere (the scene comes nearer, ``f B / d`` with ``d + shift_px``). A stereo matcher
    answers about 1; a network that has learned scene priors instead of stereo answers about 0
    however good its MDE, which MDE alone cannot tell apart. Predicted disparity is
    ``f B / depth``; pixels without an answer (NaN, <= 0 m) in either run and the border
    columns the shift wraps around are skipped. NaN when no pixel is left.
    """
    import dataclasses

    gains = []
    for frame in frames:
        shifted = dataclasses.replace(frame, right=np.roll(frame.right, -shift_px, axis=-1))
        before = np.asarray(method(frame).depth, np.float64)
        after = np.asarray(method(shifted).depth, np.float64)
        margin = min(PROBE_MARGIN_PX, before.shape[1] // 8) + shift_px
        before, after = before[:, margin:-margin], after[:, margin:-margin]
        ok = np.isfinite(before) & np.isfinite(after) & (before > 0) & (after > 0)
        gains.append((focal_baseline / after[ok] - focal_baseline / before[ok]) / shift_px)
    values = np.concatenate(gains) if gains else np.empty(0)
    return float(np.median(values)) if values.size else math.nan


def score_family(
    root: Path,
    split: Path,
    predictors: list[Any],
    max_frames: int | None,
    picture: Path | None = None,
    smoothing: float = 0.0,
) -> tuple[list[Any], int, dict[str, float]]:
    """Every predictor, SGBM, each predictor again on SGBM's pixels (:class:`OnPixelsOf`) and
    the constants on the test part of ``split``: results, frames, and each predictor's and
    SGBM's :func:`disparity_gain` on ``PROBE_FRAMES`` evenly spaced frames. ``picture``: also
    draw the middle frame, every method's depth beside the ground truth. ``smoothing``: the
    networks and SGBM are scored through the depth node's temporal filter, under their own
    names (the disparity gain stays per frame)."""
    from stereospike_ros.training.baselines import SgbmBaseline
    from stereospike_ros.training.evaluate import (
        SmoothedPredictor,
        evaluate_many,
        open_eval_data,
    )

    with open_eval_data(root, split=str(split), part="test", max_frames=max_frames) as data:
        medians, means = recording_depths(data.frames())
        constant, at_mean = ConstantDepth(medians), ConstantDepth(means, "mean")
        per_frame = [*predictors, SgbmBaseline(data.focal_baseline)]
        scored = [
            Remembered(SmoothedPredictor(m, smoothing, m.name) if smoothing else m)
            for m in per_frame
        ]
        like_for_like = [OnPixelsOf(network, scored[-1]) for network in scored[:-1]]
        methods = [*scored, *like_for_like, constant, at_mean]
        middle = data.count // 2 if picture is not None else -1
        probes = set(np.linspace(0, data.count - 1, min(PROBE_FRAMES, data.count)).astype(int))
        seen: dict[int, tuple[str, Any]] = {}

        def frames() -> Iterator[tuple[str, Any]]:
            for position, item in enumerate(at_mean.tagged(constant.tagged(data.frames()))):
                if position == middle or position in probes:
                    seen[position] = item
                yield item

        results = evaluate_many(methods, frames(), keep=[middle] if middle >= 0 else [])
        probe_frames = [seen[k][1] for k in sorted(probes) if k in seen]
        gains = {m.name: disparity_gain(m, probe_frames, data.focal_baseline) for m in per_frame}
        if picture is not None and middle in seen:
            from stereospike_ros.training.plots import plot_frame

            sequence, frame = seen[middle]
            drawn = {m.name for m in scored} | {constant.name}  # one constant is picture enough
            depths = {
                r.name: r.kept[middle] for r in results if middle in r.kept and r.name in drawn
            }
            title = f"{picture.stem}: {sequence} depth frame {frame.index}"
            plot_frame(picture, frame.left, frame.right, frame.depth, depths, title)
        return results, data.count, gains


COLUMNS = (
    ("MDE cm", "mde_cm", "{:.1f}"),
    # MVSEC's 10 m cutoff: beyond it disparity is under 2 px for MVSEC's rig (f x B = 19.94
    # px*m), so this column is the part of the scene stereo can resolve
    ("MDE cm, GT <= 10 m", "mde_cm@10m", "{:.1f}"),
    ("RMSE cm", "rmse_cm", "{:.1f}"),
    ("delta1", "delta1", "{:.3f}"),
    ("coverage", "coverage", "{:.2f}"),
    ("firing rate", "firing_rate", "{:.3f}"),
    ("disparity gain", "disparity_gain", "{:.2f}"),
)


def family_table(
    per_family: dict[str, dict[str, dict[str, Any]]], held_out: dict[str, bool]
) -> str:
    """One row per (family, method): the per-family table of the docs."""
    header = ["family", "held out", "method", *(c[0] for c in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for fam, methods in per_family.items():
        for method, metrics in methods.items():
            cells = [fam, "yes" if held_out[fam] else "no", method]
            for _, key, fmt in COLUMNS:
                value = metrics.get(key)
                finite = value is not None and math.isfinite(value)
                cells.append(fmt.format(value) if finite else "-")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def held_out_summary(
    per_family: dict[str, dict[str, dict[str, Any]]], held_out: dict[str, bool]
) -> str:
    """Per method, the mean over held-out families of MDE and delta1, and its MDE relative to
    the constant's on each (< 1: better than any single depth): the ranking the paper's
    generalization claims (SNN vs ANN twin, heads, spike penalty) are read from."""
    families = [f for f, h in held_out.items() if h]
    if not families:
        return ""
    methods = list(per_family[families[0]])
    lines = ["| method | mean MDE cm | mean delta1 | MDE / constant's, worst family | "
             "mean disparity gain |", "|---|---|---|---|---|"]  # fmt: skip
    for method in methods:
        mde = [per_family[f][method]["mde_cm"] for f in families]
        delta1 = [per_family[f][method]["delta1"] for f in families]
        ratio = [
            per_family[f][method]["mde_cm"] / per_family[f][ConstantDepth.name]["mde_cm"]
            for f in families
        ]
        worst = max(range(len(families)), key=lambda k: ratio[k])
        gains = [per_family[f][method].get("disparity_gain") for f in families]
        gain = "-" if None in gains else f"{np.mean(gains):.2f}"
        lines.append(
            f"| {method} | {np.mean(mde):.1f} | {np.mean(delta1):.3f} | "
            f"{ratio[worst]:.2f} ({families[worst]}) | {gain} |"
        )
    return "\n".join(lines)


def budget_failures(
    per_family: dict[str, dict[str, dict[str, Any]]],
    labels: list[str],
    held_out: dict[str, bool],
    max_vs_constant: float | None,
    max_vs_sgbm: float | None,
) -> list[str]:
    """One line per (checkpoint, family) that misses a budget."""
    failures = []
    for fam, methods in per_family.items():
        constant = methods[ConstantDepth.name]["mde_cm"]
        sgbm = methods["sgbm"]["mde_cm"]
        for label in labels:
            mde = methods[label]["mde_cm"]
            if max_vs_constant is not None and not mde <= max_vs_constant * constant:
                failures.append(
                    f"{label} on {fam}: MDE {mde:.1f} cm > {max_vs_constant:g} x "
                    f"the constant predictor's {constant:.1f} cm"
                )
            if max_vs_sgbm is not None and held_out[fam] and not mde <= max_vs_sgbm * sgbm:
                failures.append(
                    f"{label} on {fam}: MDE {mde:.1f} cm > {max_vs_sgbm:g} x "
                    f"SGBM's {sgbm:.1f} cm (on the pixels it matches)"
                )
    return failures


def simulation_speed(plan: DatasetPlan, families: Iterable[str], seconds: float) -> str:
    """A markdown table of simulation speed per family, the default room beside them (the same
    run, so the ratio holds on a loaded machine). Recordings of 1 s, seeds 900_000..."""
    from stereospike_ros.sim.families import random_config
    from stereospike_ros.sim.simulator import MVSEC_FOCAL_PX, SimConfig, simulate

    def measure(configs: Iterable[Any]) -> tuple[float, float, float]:
        events = wall = simulated = 0.0
        for config in configs:
            start = time.perf_counter()
            recording = simulate(config)
            wall += time.perf_counter() - start
            events += len(recording.left_events) + len(recording.right_events)
            simulated += config.duration_s
        return events, wall, simulated

    count = max(1, round(seconds))
    size = {"width": plan.width, "height": plan.height}
    rows = {}
    for name in families:
        rows[name] = measure(
            random_config(name, 900_000 + k, duration_s=seconds / count, **size)
            for k in range(count)
        )
    focal = MVSEC_FOCAL_PX * plan.width / 346
    rows["room (default config)"] = measure(
        SimConfig(seed=k, duration_s=seconds / count, focal_px=focal, **size) for k in range(count)
    )
    lines = [
        "| family | events (both cameras) | k events/s of wall time | wall s per simulated s |",
        "|---|---|---|---|",
    ]
    for name, (events, wall, simulated) in rows.items():
        lines.append(
            f"| {name} | {events:,.0f} | {events / wall / 1e3:,.0f} | {wall / simulated:.2f} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import torch

    from stereospike_ros.model.inputs import resolve_device
    from stereospike_ros.sim.families import FAMILIES

    start = time.perf_counter()
    plan = _plan(args)
    families = args.families or list(FAMILIES)
    labels = args.labels or [Path(c).stem for c in args.checkpoints]
    _check_arguments(args, families, labels)  # before simulating, not after
    device = str(resolve_device(args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.speed:
        print(f"simulating {args.speed:g} s per family at {plan.height}x{plan.width}", flush=True)
        print(simulation_speed(plan, families, args.speed))
        return 0

    out: Path = args.out
    data_dir = out / "data"
    # Scoring needs only the test recordings: it neither simulates training data the plan
    # would add (a --train-recordings other than the one the data was built with) nor rewrites
    # the split a run trains from.
    scoring = bool(args.checkpoints) and not args.build_only
    parts = ("test",) if scoring else ("train", "val", "test")
    figures = build_dataset(plan, data_dir, families, args.rig, args.jobs, parts)
    if scoring:
        split = out / "split.json"
        by_name = {n: f for n, f, _, p in planned_recordings(plan, families) if p == "test"}
    else:
        split, by_name = write_split_files(plan, out, families)
    if figures["simulated"]:
        print(
            f"simulated {figures['simulated']} recordings: {figures['events']:,} events in "
            f"{figures['seconds']:.0f} s ({figures['events_per_s'] / 1e3:,.0f} k events/s)"
        )
    print(f"dataset: {data_dir} with split {split} ({len(by_name)} recordings in use)")
    if args.build_only or not args.checkpoints:
        return 0

    predictors = _predictors(args, labels, plan, device)
    per_family, frames = _score_families(args, families, by_name, predictors)
    held_out = {f: FAMILIES[f].held_out for f in families}
    text = _results_text(per_family, held_out, frames, plan, device, args.temporal_smoothing)
    (out / "results.md").write_text(text)
    report = {
        "plan": asdict(plan),
        "families": {f: asdict(FAMILIES[f]) for f in families},
        "frames": frames,
        "results": per_family,
        "checkpoints": dict(zip(labels, args.checkpoints, strict=True)),
    }
    (out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    print(text)
    failures = budget_failures(per_family, labels, held_out, args.max_vs_constant, args.max_vs_sgbm)
    for line in failures:
        print(f"over budget: {line}")
    print(f"wrote {out / 'results.md'} and results.json in {time.perf_counter() - start:.0f} s")
    return 1 if failures else 0


def _check_arguments(args: argparse.Namespace, families: list[str], labels: list[str]) -> None:
    """The first problem with the families, labels and checkpoints asked for, as a usage
    error."""
    from stereospike_ros.model.errors import ModelError
    from stereospike_ros.model.temporal import check_smoothing
    from stereospike_ros.sim.families import FAMILIES

    unknown = [f for f in families if f not in FAMILIES]
    problems = []
    if unknown:
        problems.append(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    if len(labels) != len(args.checkpoints):
        problems.append(f"{len(labels)} --labels for {len(args.checkpoints)} --checkpoints")
    if len(set(labels)) != len(labels):
        problems.append(f"--labels must differ, got {labels}")
    problems += [
        f"checkpoint {c} does not exist" for c in args.checkpoints if not Path(c).is_file()
    ]
    try:
        check_smoothing(args.temporal_smoothing, "--temporal-smoothing")
    except ModelError as err:
        problems.append(str(err))
    if problems:
        raise UsageError(problems[0])


def _predictors(
    args: argparse.Namespace, labels: list[str], plan: DatasetPlan, device: str
) -> list[Any]:
    """One predictor per ``--checkpoints`` entry, named by its label."""
    from stereospike_ros.training.baselines import load_model
    from stereospike_ros.training.evaluate import ModelPredictor

    predictors = []
    for label, path in zip(labels, args.checkpoints, strict=True):
        model, metadata = load_model(
            path, device=device, input_size=(plan.height, plan.width), any_size=args.any_size
        )
        predictors.append(ModelPredictor(model, name=label, device=device, metadata=metadata))
    return predictors


def _score_families(
    args: argparse.Namespace, families: list[str], by_name: dict[str, str], predictors: list[Any]
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, int]]:
    """Each family's test recordings scored (through a split file of their own): results by
    family and predictor, and the frames scored per family."""
    out: Path = args.out
    per_family: dict[str, dict[str, dict[str, Any]]] = {}
    frames: dict[str, int] = {}
    for fam in families:
        fam_split = out / f"split_{fam}.json"
        tests = {n: {"part": "test"} for n, f in by_name.items() if f == fam and "_test_" in n}
        fam_split.write_text(json.dumps({"name": fam, "sequences": tests}) + "\n")
        picture = out / "pictures" / f"{fam}.png" if args.pictures else None
        results, frames[fam], gains = score_family(
            out / "data", fam_split, predictors, args.max_frames, picture, args.temporal_smoothing
        )
        per_family[fam] = {r.name: {**r.to_dict(), "disparity_gain": gains.get(r.name)}
                           for r in results}  # fmt: skip
        print(f"scored {fam}: {frames[fam]} frames", flush=True)
    return per_family, frames


def _results_text(
    per_family: dict[str, dict[str, dict[str, Any]]],
    held_out: dict[str, bool],
    frames: dict[str, int],
    plan: DatasetPlan,
    device: str,
    smoothing: float = 0.0,
) -> str:
    """results.md: the command, the table per family, what each family is, the held-out
    summary."""
    from stereospike_ros.sim.families import FAMILIES

    table = family_table(per_family, held_out)
    argv = sys.argv[sys.argv.index("families") + 1 :] if "families" in sys.argv else []
    lines = [
        "# StereoSpike per scene family",
        "",
        f"Command: `python -m stereospike_ros benchmark families {' '.join(argv)}`  ",
        f"{plan.height}x{plan.width} px; test frames per family: "
        + ", ".join(f"{f} {n}" for f, n in frames.items())
        + f"; device {device}. SGBM is scored on the pixels it matches (coverage); the "
        "constant predictors know each recording's median depth (the best single "
        "depth for MDE; the budgets use it) or its mean depth."
        + (
            f" The networks and SGBM are scored through the temporal filter (smoothing "
            f"{smoothing:g}: a running mean of log depth over each recording's frames)."
            if smoothing
            else ""
        ),
        "",
        table,
        "",
        *(f"- {f}: {FAMILIES[f].about}" for f in held_out),
        *(
            ["", "Over the held-out families:", "", summary]
            if (summary := held_out_summary(per_family, held_out))
            else []
        ),
    ]
    return "\n".join(lines) + "\n"
