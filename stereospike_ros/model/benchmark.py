"""``python -m stereospike_ros benchmark model``: size, dense MACs and forward time per model.

The reference forward pass is timed as it is (no fast paths), so later speed work can print
ratios against these figures measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

HELP = "parameters, dense MACs and forward time of each StereoSpike model"


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"size must be HxW like 260x346, got {text!r}") from err
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return height, width


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        default="stereospike,stereospike-mono,stereospike-ann",
        help="comma-separated model names (default: all three)",
    )
    parser.add_argument("--size", type=_size, default=(260, 346), help="input HxW (260x346)")
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier (1.0)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (1)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--runs", type=int, default=5, help="timed forward passes (5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes first (1)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument(
        "--energy",
        action="store_true",
        help="also run spikingjelly's op counter (synaptic operations, energy; slow)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def measure(
    name: str,
    *,
    size: tuple[int, int] = (260, 346),
    width: float = 1.0,
    batch: int = 1,
    runs: int = 5,
    warmup: int = 1,
    device: str = "cpu",
    energy: bool = False,
) -> dict[str, Any]:
    """Figures for one model: params, dense MACs, forward seconds (median, min, max), fps."""
    import torch

    from stereospike_ros.model.metrics import dense_macs, synaptic_operations
    from stereospike_ros.model.network import build_model, count_parameters

    model = build_model(name, width=width).to(device).eval()
    macs = dense_macs(model, size, batch)
    generator = torch.Generator().manual_seed(0)
    rates = torch.full((batch, model.config.in_channels, *size), 0.3)
    x = torch.poisson(rates, generator=generator).to(device)

    def sync() -> None:
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()

    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            sync()
            start = time.perf_counter()
            model(x)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    median = statistics.median(times)
    result: dict[str, Any] = {
        "model": name,
        "width": width,
        "size": list(size),
        "batch": batch,
        "params": count_parameters(model),
        "dense_macs": macs.total,
        "dense_macs_by_part": macs.by_part,
        "forward_s_median": median,
        "forward_s_min": min(times),
        "forward_s_max": max(times),
        "runs": runs,
        "fps": batch / median,
    }
    if energy:
        result["ops"] = synaptic_operations(model, x)
    return result


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.runs < 1 or args.warmup < 0 or args.batch < 1:
        raise SystemExit("--runs and --batch must be >= 1, --warmup >= 0")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    results = [
        measure(
            name,
            size=args.size,
            width=args.width,
            batch=args.batch,
            runs=args.runs,
            warmup=args.warmup,
            device=device,
            energy=args.energy,
        )
        for name in names
    ]
    report = {
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"device {device}, {report['threads']} threads, torch {torch.__version__}, input "
        f"{args.batch} x {args.size[0]} x {args.size[1]}, width {args.width}, "
        f"{args.runs} runs after {args.warmup} warm-up"
    )
    header = ("params", 12), ("dense GMAC", 12), ("median s", 10), ("min-max s", 16), ("fps", 8)
    print(f"{'model':<18}" + "".join(f"{c:>{w}}" for c, w in header))
    for r in results:
        spread = f"{r['forward_s_min']:.3f}-{r['forward_s_max']:.3f}"
        print(
            f"{r['model']:<18}{r['params']:>12,}{r['dense_macs'] / 1e9:>12.2f}"
            f"{r['forward_s_median']:>10.3f}{spread:>16}{r['fps']:>8.2f}"
        )
        if "ops" in r:
            ops = r["ops"]
            print(
                f"{'':<18}synops {ops['synops'] / 1e9:.3f} G, MAC {ops['mac'] / 1e9:.3f} G, "
                f"energy {ops['energy_total_uj']:.1f} uJ (dense ANN compute "
                f"{ops['dense_energy_uj']:.1f} uJ)"
            )
    return 0
