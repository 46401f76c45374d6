"""``python -m stereospike_ros benchmark sim``: StereoSpike against baselines on simulated data.

One command, start to finish: simulate training, validation and held-out test recordings (other
seeds, so other room layouts, textures and trajectories), train the networks by running
``python -m stereospike_ros train`` in subprocesses (resumable: re-running continues or skips
finished runs), score every checkpoint and StereoSGBM on the same test frames, and write a
markdown table (MDE, RMSE, delta1, firing rate, parameters, MACs) plus the heads ablation
(the paper's Table 2) to ``OUT/results.md`` and ``OUT/results.json``.

Simulated scenes are not MVSEC: textured boxes and rooms seen by an ideal event camera. The
numbers compare methods with each other on the same frames; they are not MVSEC results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stereospike_ros.errors import UsageError
from stereospike_ros.events.types import parse_size
from stereospike_ros.training.errors import TrainingError

HELP = "simulate, train StereoSpike variants, score them against SGBM: a markdown table"

#: (name, scene, motion, seed, part): training, validation and test recordings. Test seeds
#: never appear in training, so the test rooms have layouts and textures never seen.
RECORDINGS = (
    ("train_room_a", "room", "hover", 1, "train"),
    ("train_corridor_a", "corridor", "forward", 2, "train"),
    ("train_boxes_a", "boxes", "sweep", 3, "train"),
    ("train_room_b", "room", "lateral", 4, "train"),
    ("train_corridor_b", "corridor", "hover", 5, "train"),
    ("train_boxes_b", "boxes", "vertical", 6, "train"),
    ("val_room", "room", "sweep", 21, "val"),
    ("test_room", "room", "forward", 31, "test"),
    ("test_boxes", "boxes", "hover", 32, "test"),
)


@dataclass(frozen=True)
class Preset:
    """Sizes and lengths of one benchmark; ``--quick`` is a few minutes on two CPU cores."""

    height: int
    width: int
    train_recordings: int
    train_duration_s: float
    eval_duration_s: float
    full_width: float
    compact_width: float
    epochs: int
    steps_per_epoch: int | None
    val_frames: int | None
    ablation: tuple[tuple[int, ...], ...]


PRESETS = {
    "full": Preset(260, 346, 6, 4.0, 3.0, 1.0, 0.25, 10, None, None, ((1, 2, 3), (1, 2), (1,))),
    "quick": Preset(64, 80, 3, 1.5, 1.0, 0.25, 0.125, 2, 30, 8, ((1,),)),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="benchmark folder (created)")
    parser.add_argument(
        "--quick", action="store_true", help="64x80, tiny widths, 2 short epochs: minutes"
    )
    parser.add_argument("--size", type=parse_size, help="HxW of the simulated cameras (260x346)")
    parser.add_argument("--epochs", type=int, help="training epochs per network (10)")
    parser.add_argument("--steps-per-epoch", type=int, help="cap training steps per epoch")
    parser.add_argument("--full-width", type=float, help="width of the big network (1.0)")
    parser.add_argument("--compact-width", type=float, help="width of the compact ones (0.25)")
    parser.add_argument("--train-recordings", type=int, help="how many (of 6) to train on")
    parser.add_argument("--duration", type=float, help="seconds per training recording (4)")
    parser.add_argument("--crop", help="random training crops HxW (passed to train)")
    parser.add_argument("--no-variants", action="store_true", help="skip the ANN and mono networks")
    parser.add_argument("--no-ablation", action="store_true", help="skip the heads ablation")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (for train)")
    parser.add_argument("--threads", type=int, help="torch CPU threads per process")
    parser.add_argument("--show-training", action="store_true", help="show train's output")


def _preset(args: argparse.Namespace) -> Preset:
    base = PRESETS["quick" if args.quick else "full"]
    values = asdict(base)
    if args.size:
        values["height"], values["width"] = args.size
    for arg, key in (
        ("epochs", "epochs"), ("steps_per_epoch", "steps_per_epoch"),
        ("full_width", "full_width"), ("compact_width", "compact_width"),
        ("train_recordings", "train_recordings"), ("duration", "train_duration_s"),
    ):  # fmt: skip
        if getattr(args, arg) is not None:
            values[key] = getattr(args, arg)
    if args.no_ablation:
        values["ablation"] = ()
    if not 1 <= values["train_recordings"] <= sum(r[4] == "train" for r in RECORDINGS):
        raise UsageError(f"--train-recordings must be 1..6, got {values}")
    return Preset(**values)


# -- data ------------------------------------------------------------------------------------


def _is_current(record: Path, files: list[Path], config: dict[str, Any]) -> bool:
    if not record.is_file() or not all(f.is_file() for f in files):
        return False
    return json.loads(record.read_text()).get("config") == config


def simulate_recordings(preset: Preset, data_dir: Path) -> list[tuple[str, str]]:
    """Write the recordings (MVSEC HDF5) unless an identical one is there; (name, part)."""
    from stereospike_ros.data.mvsec_hdf5 import write_mvsec_hdf5
    from stereospike_ros.sim.simulator import MVSEC_FOCAL_PX, SimConfig, simulate

    data_dir.mkdir(parents=True, exist_ok=True)
    chosen = [r for r in RECORDINGS if r[4] != "train"]
    chosen = [r for r in RECORDINGS if r[4] == "train"][: preset.train_recordings] + chosen
    out = []
    for name, scene, motion, seed, part in chosen:
        config = SimConfig(
            name=name,
            seed=seed,
            scene=scene,
            motion=motion,
            duration_s=preset.train_duration_s if part == "train" else preset.eval_duration_s,
            width=preset.width,
            height=preset.height,
            focal_px=MVSEC_FOCAL_PX * preset.width / 346,
            noise_rate_hz=0.1,
        )
        record = data_dir / f"{name}_sim.json"
        files = [data_dir / f"{name}_data.hdf5", data_dir / f"{name}_gt.hdf5"]
        wanted = asdict(config)
        if _is_current(record, files, wanted):
            out.append((name, part))
            continue
        start = time.perf_counter()
        recording = simulate(config)
        write_mvsec_hdf5(recording, files[0], files[1], overwrite=True)
        record.write_text(json.dumps({"config": wanted, "part": part}, indent=1) + "\n")
        print(
            f"simulated {name} ({scene}, {motion}, seed {seed}, {config.duration_s:g} s, "
            f"{len(recording.depth)} depth frames) in {time.perf_counter() - start:.1f} s",
            flush=True,
        )
        out.append((name, part))
    return out


def write_split(recordings: list[tuple[str, str]], path: Path) -> Path:
    """Whole recordings per part: train, val and test never share a recording."""
    split = {"name": "simbench", "sequences": {n: {"part": p} for n, p in recordings}}
    path.write_text(json.dumps(split, indent=1) + "\n")
    return path


# -- training --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    label: str
    model: str
    width: float
    heads: tuple[int, ...] = (1, 2, 3, 4)

    @property
    def folder(self) -> str:
        heads = "".join(map(str, self.heads))
        return f"{self.model}_w{self.width:g}_h{heads}"


def planned_runs(preset: Preset, variants: bool) -> list[Run]:
    runs = [
        Run(f"stereospike w{preset.full_width:g}", "stereospike", preset.full_width),
        Run(f"stereospike w{preset.compact_width:g}", "stereospike", preset.compact_width),
    ]
    if preset.full_width == preset.compact_width:
        runs = runs[:1]
    if variants:
        for model in ("stereospike-ann", "stereospike-mono"):
            runs.append(Run(f"{model} w{preset.compact_width:g}", model, preset.compact_width))
    for heads in preset.ablation:
        label = f"stereospike w{preset.compact_width:g} heads {','.join(map(str, heads))}"
        runs.append(Run(label, "stereospike", preset.compact_width, tuple(heads)))
    return runs


def train_command(
    run: Run, preset: Preset, data_dir: Path, split: Path, runs_dir: Path,
    args: argparse.Namespace,
) -> list[str]:  # fmt: skip
    command = [
        sys.executable, "-m", "stereospike_ros", "train",
        "--root", str(data_dir), "--split", str(split), "--out", str(runs_dir / run.folder),
        "--model", run.model, "--width", f"{run.width:g}",
        "--heads", *map(str, run.heads), "--epochs", str(preset.epochs),
        "--device", args.device, "--seed", "0",
        "--cache-dir", str(runs_dir / "cache"),
        # Simulated depth has no holes, so the paper's loss alone leaves the depth level free
        # (see the training docs); the bundled model was trained with the same term.
        "--level-weight", "0.5",
    ]  # fmt: skip
    if preset.steps_per_epoch:
        command += ["--steps-per-epoch", str(preset.steps_per_epoch)]
    if preset.val_frames:
        command += ["--val-frames", str(preset.val_frames)]
    if args.crop:
        command += ["--crop", args.crop]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if not args.show_training:
        command.append("--quiet")
    return command


def train_all(
    runs: list[Run], preset: Preset, data_dir: Path, split: Path, runs_dir: Path,
    args: argparse.Namespace,
) -> dict[str, float]:  # fmt: skip
    """Run ``train`` for each network; returns wall seconds per run (0 when already done)."""
    seconds = {}
    for run in runs:
        command = train_command(run, preset, data_dir, split, runs_dir, args)
        print(f"training {run.label}: {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        output = None if args.show_training else subprocess.PIPE
        done = subprocess.run(
            command, stdout=output, stderr=subprocess.STDOUT, text=True, check=False
        )
        seconds[run.label] = time.perf_counter() - start
        if done.returncode != 0:
            if done.stdout:
                print(done.stdout[-3000:], file=sys.stderr)
            raise TrainingError(f"training {run.label} failed (exit {done.returncode})")
        print(f"  done in {seconds[run.label]:.0f} s", flush=True)
    return seconds


# -- scoring ---------------------------------------------------------------------------------

COLUMNS = (
    ("MDE cm", "mde_cm", "{:.1f}"),
    ("RMSE cm", "rmse_cm", "{:.1f}"),
    ("delta1", "delta1", "{:.3f}"),
    ("firing rate", "firing_rate", "{:.3f}"),
    ("coverage", "coverage", "{:.2f}"),
)


def _fmt_count(value: Any, unit: float, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0:
        return "0"
    return fmt.format(value / unit)


def markdown(results: list[Any], train_s: dict[str, float]) -> str:
    header = ["method", *(c[0] for c in COLUMNS), "params", "GMAC", "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        cells = [r.name]
        for _, key, fmt in COLUMNS:
            value = r.metrics.get(key)
            ok = value is not None and not (isinstance(value, float) and math.isnan(value))
            cells.append(fmt.format(value) if ok else "-")
        cells.append(_fmt_count(r.info.get("parameters"), 1e6, "{:.2f} M"))
        cells.append(_fmt_count(r.info.get("dense_macs"), 1e9, "{:.2f}"))
        cells.append(f"{train_s[r.name]:.0f}" if r.name in train_s else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ablation_markdown(results: list[Any], runs: list[Run], preset: Preset) -> str:
    by_name = {r.name: r for r in results}
    rows = [r for r in runs if r.model == "stereospike" and r.width == preset.compact_width]
    if len(rows) < 2:
        return ""
    lines = ["| heads | MDE cm | RMSE cm | delta1 |", "|---|---|---|---|"]
    for run in sorted(rows, key=lambda r: -len(r.heads)):
        m = by_name[run.label].metrics
        lines.append(
            f"| {','.join(map(str, run.heads))} | {m['mde_cm']:.1f} | {m['rmse_cm']:.1f} | "
            f"{m['delta1']:.3f} |"
        )
    return "\n".join(lines)


def bundled_predictor(size: tuple[int, int], device: str) -> tuple[Any | None, str]:
    """The package's default weights as a scored method when they were trained for ``size``
    (else None and why): users see what the model the node ships with does on these frames."""
    from stereospike_ros.training.baselines import load_model
    from stereospike_ros.training.evaluate import ModelPredictor
    from stereospike_ros.training.export import DEFAULT_NAME, WEIGHTS_DIR

    path = WEIGHTS_DIR / f"{DEFAULT_NAME}.safetensors"
    try:
        model, metadata = load_model(path, device=device, input_size=size)
    except TrainingError as err:
        return None, str(err)
    name = f"bundled default w{model.config.width:g}"
    return ModelPredictor(model, name=name, device=device, metadata=metadata), ""


def pruned_predictor(predictor: Any, data_dir: Path, split: Path, device: str) -> tuple[Any, str]:
    """``predictor``'s network pruned of the channels it never fires on the training part
    (:mod:`~stereospike_ros.model.prune`), as a scored method, and a line saying how much."""
    from stereospike_ros.model.inputs import frame_tensor
    from stereospike_ros.model.prune import count_silent, prune_on
    from stereospike_ros.training.evaluate import ModelPredictor, open_eval_data

    model = predictor.model
    channels = model.config.in_channels
    with open_eval_data(data_dir, split=str(split), part="train") as data:
        windows = (frame_tensor(f, channels)[None].to(device) for _, f in data.frames())
        network, silent, seen = prune_on(model, windows)
    dropped, total = count_silent(silent)
    pruned = ModelPredictor(network, name=f"{predictor.name} pruned", device=device)
    line = (
        f"`{pruned.name}`: `{predictor.name}` with the {dropped} of its {total} channels that "
        f"never fired on the {seen} training windows zeroed (`prune`): `exact` never computes "
        "them."
    )
    return pruned, line


def run(args: argparse.Namespace) -> int:
    import torch

    from stereospike_ros.model.inputs import resolve_device
    from stereospike_ros.training.baselines import SgbmBaseline, load_model
    from stereospike_ros.training.evaluate import ModelPredictor, evaluate_many, open_eval_data

    resolve_device(args.device)  # before hours of simulating and training, not after
    start = time.perf_counter()
    preset = _preset(args)
    out: Path = args.out
    data_dir, runs_dir = out / "data", out / "runs"
    recordings = simulate_recordings(preset, data_dir)
    split = write_split(recordings, out / "split.json")
    runs = planned_runs(preset, not args.no_variants)
    train_s = train_all(runs, preset, data_dir, split, runs_dir, args)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    predictors: list[Any] = []
    for r in runs:
        model, metadata = load_model(runs_dir / r.folder / "best.safetensors", device=device)
        predictors.append(ModelPredictor(model, name=r.label, device=device, metadata=metadata))
    prune_note = ""
    if predictors[0].model.config.spiking:
        pruned, prune_note = pruned_predictor(predictors[0], data_dir, split, device)
        predictors.insert(1, pruned)
        print(prune_note, flush=True)
    bundled, why_not = bundled_predictor((preset.height, preset.width), device)
    if bundled is None:
        print(f"not scoring the bundled default weights: {why_not}", flush=True)
    else:
        predictors.append(bundled)
    with open_eval_data(data_dir, split=str(split), part="test") as data:
        predictors.append(SgbmBaseline(data.focal_baseline))  # type: ignore[arg-type]
        print(f"scoring {len(predictors)} methods on {data.count} test frames", flush=True)
        results = evaluate_many(predictors, data.frames())
        description = data.description

    table = markdown(results, train_s)
    ablation = ablation_markdown(results, runs, preset)
    argv = sys.argv[sys.argv.index("sim") + 1 :] if "sim" in sys.argv else []
    command = "python -m stereospike_ros benchmark sim " + " ".join(argv)
    sections = [
        "# StereoSpike on simulated stereo event data",
        "",
        f"Command: `{command.strip()}`  ",
        f"{preset.height}x{preset.width} px, {len(recordings)} recordings "
        f"({sum(p == 'train' for _, p in recordings)} train, 1 val, "
        f"{sum(p == 'test' for _, p in recordings)} test with unseen seeds), "
        f"{int(results[0].metrics['frames'])} test frames, {preset.epochs} epochs"
        + (f" of {preset.steps_per_epoch} steps" if preset.steps_per_epoch else "")
        + f"; torch {torch.__version__}, {os.cpu_count()} CPUs, device {device}.  ",
        "Simulated scenes are not MVSEC: these numbers rank methods on the same frames and "
        "are not comparable with the paper's MVSEC results.",
        "",
        table,
    ]
    if prune_note:
        sections += ["", prune_note]
    if bundled is not None:
        sections += [
            "",
            f"`{bundled.name}`: the package's own weights (`weights/default.safetensors`), "
            "trained by an earlier, longer run on other recordings (`weights/default.json`), "
            "not by this command; scored on the same frames.",
        ]
    if ablation:
        sections += ["", "Heads ablation (paper Table 2 direction: fewer heads, worse MDE):", "",
                     ablation]  # fmt: skip
    text = "\n".join(sections) + "\n"
    (out / "results.md").write_text(text)
    report = {
        "preset": asdict(preset),
        "command": command.strip(),
        "data": description,
        "train_seconds": train_s,
        "results": {r.name: r.to_dict() for r in results},
    }
    (out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    print(text)
    print(f"wrote {out / 'results.md'} and results.json in {time.perf_counter() - start:.0f} s")
    return 0
