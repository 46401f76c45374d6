"""How much each difference of the paper protocol moves the MDE, on simulated recordings.

    PYTHONPATH=. .venv/bin/python tools/measure_protocol.py [--weights W] [--duration 3]

Simulates two recordings (room, hover) and writes them raw with per-pixel rectification maps
whose rectified coordinate is the simulated pixel plus an offset in (-0.5, 0.5), so rounding to
the nearest pixel gives back the simulated pixel exactly and truncation moves the events with
a negative offset one pixel left. ``--maps smooth`` (default): the offset varies smoothly
across the image, differently in each camera, like the fractional part of real maps;
``--maps random``: independent per pixel (a worst case). A has ground truth at exactly 20 Hz
and dense, B at 19.8 Hz (50.5 ms period) with LiDAR-like holes punched into the ground truth
(2 % of pixels as seeds of 1-3 px blobs).
Then evaluates one checkpoint under the default protocol, each paper difference alone, and
the whole paper protocol, and prints one table (MDE in cm, change from default).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from stereospike_ros.data.mvsec_hdf5 import write_mvsec_hdf5
from stereospike_ros.data.protocol import PROTOCOLS, DataProtocol
from stereospike_ros.events.types import SIDES
from stereospike_ros.model import load_checkpoint
from stereospike_ros.ros.parameters import DEFAULT_WEIGHTS
from stereospike_ros.sim.simulator import SimConfig, simulate
from stereospike_ros.training.evaluate import evaluate, open_eval_data

VARIANTS = {
    "default": PROTOCOLS["default"],
    "+ GT area closing 24 px": DataProtocol("closing", gt_closing_px=24),
    "+ fixed 50 ms grid": DataProtocol("grid", binning="grid"),
    "+ truncated coordinates": DataProtocol("truncate", rounding="truncate"),
    "paper (all three)": PROTOCOLS["paper"],
}


def _offsets(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    if kind == "random":
        return rng.uniform(-0.49, 0.49, (h, w))
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    fx, fy, phase = rng.uniform(40, 120), rng.uniform(40, 120), rng.uniform(0, 2 * np.pi)
    return 0.49 * np.sin(2 * np.pi * (x / fx + y / fy) + phase)


def _write(folder: Path, name: str, config: SimConfig, holes: bool, seed: int, maps: str) -> Path:
    recording = simulate(config)
    rng = np.random.default_rng(seed)
    if holes:
        seeds = rng.random(recording.depth.shape) < 0.02
        blobs = ndimage.binary_dilation(seeds, iterations=1) & (rng.random(seeds.shape) < 0.6)
        recording.depth[blobs | seeds] = np.nan
    h, w = recording.height, recording.width
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    for side in SIDES:
        for axis, base in (("x", x), ("y", y)):
            offset = _offsets(rng, h, w, maps)
            np.savetxt(folder / f"{name}_{side}_{axis}_map.txt", base + offset, fmt="%.5f")
    write_mvsec_hdf5(recording, folder / f"{name}_data.hdf5", folder / f"{name}_gt.hdf5")
    return folder / f"{name}_data.hdf5"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--duration", type=float, default=3.0, help="simulated seconds (3)")
    parser.add_argument("--maps", choices=("smooth", "random"), default="smooth")
    args = parser.parse_args()
    model, _ = load_checkpoint(args.weights)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = SimConfig(name="a", seed=7, duration_s=args.duration, scene="room", motion="hover")
        recordings = {
            "A: 20 Hz, dense GT": _write(folder, "a", base, False, 1, args.maps),
            "B: 19.8 Hz, GT holes": _write(
                folder, "b", replace(base, name="b", depth_rate_hz=1 / 0.0505), True, 2, args.maps
            ),
        }
        rows = []
        for label, path in recordings.items():
            reference = None
            for variant, protocol in VARIANTS.items():
                start = time.perf_counter()
                with open_eval_data(path, protocol=protocol) as data:
                    result = evaluate(model, data.frames())
                mde = result.metrics["mde_cm"]
                reference = mde if reference is None else reference
                rows.append((label, variant, mde, mde - reference, result.metrics["frames"]))
                seconds = time.perf_counter() - start
                print(f"{label:22s} {variant:26s} {mde:7.2f} cm ({seconds:.0f} s)", flush=True)
    print("\n| recording | protocol | MDE cm | change cm | frames |")
    print("|---|---|---|---|---|")
    for label, variant, mde, delta, frames in rows:
        print(f"| {label} | {variant} | {mde:.2f} | {delta:+.2f} | {frames:.0f} |")


if __name__ == "__main__":
    main()
