"""``python -m stereospike_ros benchmark model``: size, dense MACs and speed per model and path.

For each model (name x width x head set) and each execution path of
:func:`~stereospike_ros.model.inference.compile_for_inference`, it times forward passes
interleaved across paths (run 1 of every path, then run 2, ..., each round in a rotated
order), so a shared, noisy machine slows all paths alike and the ``x ref`` ratios against the
plain reference forward, measured in the same run, stay meaningful. The ``exact`` path skips
silent channels, so its time depends on the spikes: ``--inputs`` times on recorded windows
(with ``--checkpoint``, a trained network's real activity) instead of random counts.
``--accuracy-data`` adds, per path, the depth error on real or simulated frames and the mean
difference to the reference path's depth (the cost of the lossy paths, measured, not assumed).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

from stereospike_ros.errors import UsageError
from stereospike_ros.events.types import parse_size

HELP = "parameters, dense MACs, speed (and accuracy) of each StereoSpike model and inference path"


def _widths(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"widths must be numbers like 1,0.5, got {text!r}"
        ) from err
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"widths must be positive, got {text!r}")
    return values


def _head_sets(text: str) -> list[tuple[int, ...]]:
    sets = []
    for part in text.split(","):
        part = part.strip()
        if not part or not part.isdigit() or any(c not in "1234" for c in part):
            raise argparse.ArgumentTypeError(
                f"head sets are digit strings of 1..4 like 1234,12,1, got {text!r}"
            )
        sets.append(tuple(sorted({int(c) for c in part})))
    return sets


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        default="stereospike,stereospike-mono,stereospike-ann",
        help="comma-separated model names (default: all three)",
    )
    parser.add_argument("--size", type=parse_size, default=(260, 346), help="input HxW (260x346)")
    parser.add_argument(
        "--width",
        type=_widths,
        default=[1.0],
        help="channel multiplier(s), comma-separated, e.g. 1,0.5,0.25 (1.0)",
    )
    parser.add_argument(
        "--heads",
        type=_head_sets,
        default=[(1, 2, 3, 4)],
        help="prediction-head set(s), comma-separated digit strings, e.g. 1234,12,1 (1234)",
    )
    parser.add_argument(
        "--paths",
        default="reference,exact",
        help="inference paths, comma-separated: reference, exact, exact-dense, exact-direct, "
        "exact-nchw, compile, bf16, fp16 (reference,exact); ratios need reference",
    )
    parser.add_argument(
        "--peers",
        default="",
        help="peer runtimes timed in the same rounds as --paths on the same weights (exported "
        "to ONNX): onnxruntime, openvino, comma-separated; ratios against exact are printed",
    )
    parser.add_argument("--batch", type=int, default=1, help="batch size (1)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--runs", type=int, default=5, help="timed forward passes per path (5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes first (1)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="time (and score) this trained .safetensors network instead of --models",
    )
    parser.add_argument(
        "--inputs",
        default=None,
        help="time on the event windows of this recording (or --split folder), cycled, instead "
        "of random counts; sets the input size (with --checkpoint: real spike activity)",
    )
    parser.add_argument("--input-frames", type=int, default=8, help="windows read for --inputs (8)")
    parser.add_argument(
        "--accuracy-data",
        default=None,
        help="recording, folder (with --split) or training cache to score each path on",
    )
    parser.add_argument("--split", default=None, help="split file for --accuracy-data folders")
    parser.add_argument("--part", default="test", help="split part to score on (test)")
    parser.add_argument("--max-frames", type=int, default=20, help="frames scored (20)")
    parser.add_argument(
        "--energy",
        action="store_true",
        help="also run spikingjelly's op counter (synaptic operations, energy; slow)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def benchmark_paths() -> dict[str, Any]:
    """The execution paths ``--paths`` takes: the user-facing ones, plus ``exact-direct``.

    ``exact-direct`` is ``exact-dense`` with every convolution through oneDNN (no GEMM kernels):
    it measures what the kernels buy, and is no path a node or an evaluation should pick."""
    import dataclasses

    from stereospike_ros.model.inference import PATHS

    direct = dataclasses.replace(PATHS["exact-dense"], name="exact-direct", gemm_kernels=False)
    return {**PATHS, direct.name: direct}


def _sync(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measure_paths(
    model: Any,
    paths: list[str],
    *,
    size: tuple[int, int] = (260, 346),
    batch: int = 1,
    runs: int = 5,
    warmup: int = 1,
    device: str = "cpu",
    energy: bool = False,
    inputs: list[Any] | None = None,
) -> list[dict[str, Any]]:
    """Figures for one network along each path: params, dense MACs, seconds, fps, ratio.

    ``inputs``: (C, H, W) windows to time on, cycled (default: random Poisson counts)."""
    import torch

    from stereospike_ros.model.inference import compile_for_inference
    from stereospike_ros.model.metrics import dense_macs, synaptic_operations
    from stereospike_ros.model.network import count_parameters

    model = model.to(device).eval()
    config = model.config
    if inputs:
        xs = [
            torch.stack([inputs[(i + b) % len(inputs)] for b in range(batch)]).to(device)
            for i in range(len(inputs))
        ]
        size = tuple(xs[0].shape[-2:])
    else:
        generator = torch.Generator().manual_seed(0)
        rates = torch.full((batch, config.in_channels, *size), 0.3)
        xs = [torch.poisson(rates, generator=generator).to(device)]
    macs = dense_macs(model, size, batch)
    known = benchmark_paths()
    runners, prepare_s = {}, {}
    for path in paths:
        start = time.perf_counter()
        runners[path] = compile_for_inference(
            model, known.get(path, path), device=device, input_size=size, batch=batch
        )
        _sync(device)
        prepare_s[path] = time.perf_counter() - start
    times: dict[str, list[float]] = {p: [] for p in paths}
    for i in range(warmup + runs):
        # Interleaved, so that every path sees the same machine load, and rotated, so that no
        # path always follows the same one (a pass right after the reference runs slower: the
        # reference's large tensors have evicted what the pass would find in the caches).
        shift = i % len(paths)
        for path in paths[shift:] + paths[:shift]:
            _sync(device)
            start = time.perf_counter()
            runners[path](xs[i % len(xs)])
            _sync(device)
            if i >= warmup:
                times[path].append(time.perf_counter() - start)
    results = []
    for path in paths:
        median = statistics.median(times[path])
        result: dict[str, Any] = {
            "model": config.name,
            "width": config.width,
            "heads": list(config.heads),
            "path": path,
            "size": list(size),
            "batch": batch,
            "params": count_parameters(model),
            "dense_macs": macs.total,
            "dense_macs_by_part": macs.by_part,
            "forward_s_median": median,
            "forward_s_min": min(times[path]),
            "forward_s_max": max(times[path]),
            "runs": runs,
            "inputs": "recorded" if inputs else "random",
            "fps": batch / median,
            "prepare_s": prepare_s[path],
        }
        if "reference" in times:
            result["ratio_vs_reference"] = statistics.median(times["reference"]) / median
        ours = next((p for p in ("exact", "exact-dense") if p in times), None)
        if ours is not None:  # > 1: exact (else exact-dense) is that many times faster
            result["exact_speedup"] = median / statistics.median(times[ours])
            result["exact_speedup_of"] = ours
        if energy and path == "reference":
            result["ops"] = synaptic_operations(model, xs[0])
        results.append(result)
    return results


def accuracy_of_paths(
    model: Any,
    paths: list[str],
    data: str,
    *,
    split: str | None = None,
    part: str = "test",
    max_frames: int = 20,
    device: str = "cpu",
) -> dict[str, dict[str, float]]:
    """Per path: MDE (cm) against ground truth, and mean |depth - reference depth| (cm)."""
    import numpy as np
    import torch

    from stereospike_ros.model.inference import compile_for_inference
    from stereospike_ros.model.inputs import frame_tensor
    from stereospike_ros.model.metrics import MetricAccumulator
    from stereospike_ros.training.evaluate import open_eval_data

    model = model.to(device).eval()
    known = benchmark_paths()
    runners = {p: compile_for_inference(model, known.get(p, p), device=device) for p in paths}
    reference = compile_for_inference(model, "reference", device=device)
    accs = {p: MetricAccumulator() for p in paths}
    diffs: dict[str, list[float]] = {p: [] for p in paths}
    with open_eval_data(data, split=split, part=part, max_frames=max_frames) as eval_data:
        for _, frame in eval_data.frames():
            x = frame_tensor(frame, model.config.in_channels)[None]
            gt = torch.from_numpy(np.asarray(frame.depth, np.float32))[None, None]
            ref = reference(x).cpu()
            for path, run in runners.items():
                depth = run(x).cpu()
                accs[path].update(depth, gt)
                diffs[path].append(100.0 * float((depth - ref).abs().mean()))
    out = {}
    for path in paths:
        summary = accs[path].summary()
        out[path] = {
            "mde_cm": summary["mde_cm"],
            "frames": summary["frames"],
            "mean_abs_diff_to_reference_cm": statistics.fmean(diffs[path]),
        }
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from stereospike_ros.model.inputs import resolve_device

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device or "auto"))
    if args.runs < 1 or args.warmup < 0 or args.batch < 1:
        raise UsageError("--runs and --batch must be >= 1, --warmup >= 0")
    paths = _chosen_paths(args.paths)
    peers = _peers(args.peers, device)
    paths += [p for p in peers if p not in paths]
    results = _measure_models(args, _models(args), paths, device)
    report = {
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "peers": peers,
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print_header(args, report, paths)
    for r in results:
        _print_result(r, peers)
    return 0


def _chosen_paths(text: str) -> list[str]:
    """``--paths`` as a list, ``reference`` first (the yardstick is timed first in every
    round)."""
    paths = [p.strip() for p in text.split(",") if p.strip()]
    known = benchmark_paths()
    unknown = [p for p in paths if p not in known]
    if unknown or not paths:
        raise UsageError(f"unknown --paths {unknown}; paths: {', '.join(known)}")
    if "reference" in paths:
        paths = ["reference", *[p for p in paths if p != "reference"]]
    return paths


def _models(args: argparse.Namespace) -> list[Any]:
    """The ``--checkpoint``'s network, else one per ``--models`` x ``--width`` x ``--heads``."""
    from stereospike_ros.model.network import build_model

    if args.checkpoint:
        from stereospike_ros.model.checkpoint import load_checkpoint

        return [load_checkpoint(args.checkpoint, device="cpu")[0]]
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    return [
        build_model(name, width=width, heads=heads)
        for name in names
        for width in args.width
        for heads in args.heads
    ]


def _measure_models(
    args: argparse.Namespace, models: list[Any], paths: list[str], device: str
) -> list[dict[str, Any]]:
    """Every model timed on every path (on ``--inputs`` windows, read once per input channel
    count, else random counts), with its accuracy per path when ``--accuracy-data`` is given."""
    from stereospike_ros.training.evaluate import recorded_inputs

    results: list[dict[str, Any]] = []
    inputs_by_channels: dict[int, list[Any]] = {}
    for model in models:
        inputs = None
        if args.inputs:
            channels = model.config.in_channels
            if channels not in inputs_by_channels:
                inputs_by_channels[channels] = recorded_inputs(
                    args.inputs,
                    channels,
                    split=args.split,
                    part=args.part,
                    frames=args.input_frames,
                )
            inputs = inputs_by_channels[channels]
        results += measure_paths(
            model,
            paths,
            size=args.size,
            batch=args.batch,
            runs=args.runs,
            warmup=args.warmup,
            device=device,
            energy=args.energy,
            inputs=inputs,
        )
        if args.accuracy_data:
            scores = accuracy_of_paths(
                model,
                paths,
                args.accuracy_data,
                split=args.split,
                part=args.part,
                max_frames=args.max_frames,
                device=device,
            )
            for r in results[-len(paths) :]:
                r["accuracy"] = scores[r["path"]]
    return results


def _print_header(args: argparse.Namespace, report: dict[str, Any], paths: list[str]) -> None:
    """What was run (device, input, runs), a note on what exact's times depend on, and the
    table's column names."""
    results, peers = report["results"], report["peers"]
    height, width = results[0]["size"] if results else args.size
    source = f"windows of {args.inputs}" if args.inputs else "random counts"
    versions = "".join(f", {name} {version}" for name, version in peers.items())
    print(
        f"device {report['device']}, {report['threads']} threads, torch {report['torch']}"
        f"{versions}, input {args.batch} x {height} x {width} ({source}), {args.runs} runs "
        f"after {args.warmup} warm-up, paths interleaved (rotating order)"
    )
    if "exact" in paths and not (args.inputs and args.checkpoint):
        print(
            "note: exact skips silent channels, so its time depends on the spikes; an "
            "untrained network on random counts is nearly silent. For real figures: "
            "--checkpoint TRAINED.safetensors --inputs RECORDING (exact-dense: every channel)"
        )
    header = (
        ("params", 12),
        ("dense GMAC", 11),
        ("median ms", 10),
        ("min-max ms", 14),
        ("Hz", 7),
        ("x ref", 7),
        ("prep s", 7),
    )
    print(
        f"{'model':<18}{'width':>6}{'heads':>6} {'path':<13}"
        + "".join(f"{c:>{w}}" for c, w in header)
    )


def _print_result(r: dict[str, Any], peers: dict[str, str]) -> None:
    """One table row, then the lines under it: a peer runtime's verdict, accuracy, energy."""
    spread = f"{r['forward_s_min'] * 1e3:.0f}-{r['forward_s_max'] * 1e3:.0f}"
    ratio = f"{r['ratio_vs_reference']:.2f}" if "ratio_vs_reference" in r else "-"
    heads = "".join(str(h) for h in r["heads"])
    print(
        f"{r['model']:<18}{r['width']:>6g}{heads:>6} {r['path']:<13}{r['params']:>12,}"
        f"{r['dense_macs'] / 1e9:>11.2f}{r['forward_s_median'] * 1e3:>10.1f}{spread:>14}"
        f"{r['fps']:>7.2f}{ratio:>7}{r['prepare_s']:>7.2f}"
    )
    if r["path"] in peers and "exact_speedup" in r:
        speedup, ours = r["exact_speedup"], r["exact_speedup_of"]
        verdict = (
            f"{ours} is {speedup:.2f}x faster"
            if speedup >= 1
            else f"{r['path']} is {1 / speedup:.2f}x FASTER than {ours} here"
        )
        print(f"{'':<44}{r['path']} (same weights, ONNX): {verdict}")
    if "accuracy" in r:
        a = r["accuracy"]
        print(
            f"{'':<44}MDE {a['mde_cm']:.2f} cm on {a['frames']:.0f} frames, mean |depth - "
            f"reference| {a['mean_abs_diff_to_reference_cm']:.3f} cm"
        )
    if "ops" in r:
        ops = r["ops"]
        print(
            f"{'':<44}synops {ops['synops'] / 1e9:.3f} G, MAC {ops['mac'] / 1e9:.3f} G, "
            f"energy {ops['energy_total_uj']:.1f} uJ (dense ANN compute "
            f"{ops['dense_energy_uj']:.1f} uJ)"
        )


def _peers(text: str, device: str) -> dict[str, str]:
    """``--peers`` as {runtime: version}; a runtime that is not installed ends the run with
    the pip command that installs it."""
    from stereospike_ros.model.inference import RUNTIME_PATHS
    from stereospike_ros.model.runtimes import require

    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in names if p not in RUNTIME_PATHS]
    if unknown:
        raise UsageError(f"unknown --peers {unknown}; peers: {', '.join(RUNTIME_PATHS)}")
    if names and device != "cpu":
        raise UsageError("--peers run on the CPU here: use --device cpu")
    versions = {}
    for name in names:
        module = require(name)  # OnnxError naming the pip command when missing
        require("onnx")
        versions[name] = getattr(module, "__version__", "?")
    return versions
