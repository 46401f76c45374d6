"""Write a simulated recording's files: MVSEC HDF5 (data + ground truth), optionally ROS 1 and
ROS 2 bags and a preview picture, and a JSON record of the config and what came out, so that a
recording can be remade and checked (the ``simulate`` command's work)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from stereospike_ros.data.errors import SimulationError
from stereospike_ros.data.recording import StereoRecording
from stereospike_ros.events.types import SIDES
from stereospike_ros.sim.simulator import SimConfig, simulate


@dataclass(frozen=True)
class OutputOptions:
    """Where and what to write beside the MVSEC HDF5 pair."""

    out: Path
    bags: bool = False
    #: ROS 2 bag storage: sqlite3 | mcap
    bag_storage: str = "sqlite3"
    preview: bool = False
    overwrite: bool = False
    #: the scene family the config was drawn from, recorded in the JSON
    family: str | None = None


@dataclass(frozen=True)
class SimulatedFiles:
    """What :func:`simulate_to_files` wrote: the files by kind, the JSON record, timings."""

    files: dict[str, Path]
    record: dict
    simulate_wall_s: float
    total_s: float


def output_files(name: str, options: OutputOptions) -> dict[str, Path]:
    """The files a recording called ``name`` is written to, by kind."""
    out = options.out
    files = {
        "data": out / f"{name}_data.hdf5",
        "gt": out / f"{name}_gt.hdf5",
        "json": out / f"{name}_sim.json",
    }
    if options.bags:
        files["ros1"] = out / f"{name}.bag"
        files["ros2"] = out / f"{name}_ros2"
    if options.preview:
        files["preview"] = out / f"{name}_preview.png"
    return files


def simulate_to_files(
    config: SimConfig, options: OutputOptions, progress: bool = True
) -> SimulatedFiles:
    """Simulate ``config`` and write its files; refuses files that exist unless
    ``overwrite``."""
    from stereospike_ros.data.bags import write_ros1_bag, write_ros2_bag
    from stereospike_ros.data.mvsec_hdf5 import write_mvsec_hdf5

    config.validate()
    files = output_files(config.name, options)
    existing = [str(p) for p in files.values() if p.exists()]
    if existing and not options.overwrite:
        raise SimulationError(f"{', '.join(existing)} exist; pass --overwrite")

    start = time.perf_counter()
    recording = simulate(config, progress=progress)
    sim_wall = time.perf_counter() - start
    options.out.mkdir(parents=True, exist_ok=True)
    write_mvsec_hdf5(recording, files["data"], files["gt"], overwrite=options.overwrite)
    if options.bags:
        write_ros1_bag(recording, files["ros1"], overwrite=options.overwrite)
        write_ros2_bag(recording, files["ros2"], options.bag_storage, overwrite=options.overwrite)
    if options.preview:
        write_preview(recording, files["preview"])
    record = {
        "config": asdict(config),
        "seed": config.seed,
        "family": options.family,
        "bandwidth_dropped": recording.metadata["bandwidth_dropped"],
        "focal_baseline": config.focal_baseline,
        "counts": summary(recording),
        "render_steps": recording.metadata["render_steps"],
        "simulate_wall_s": round(sim_wall, 2),
        "files": {k: p.name for k, p in files.items()},
    }
    files["json"].write_text(json.dumps(record, indent=2) + "\n")
    return SimulatedFiles(files, record, sim_wall, time.perf_counter() - start)


def summary(recording: StereoRecording) -> dict:
    """Counts and ranges worth recording beside the files (and printing)."""
    duration = recording.metadata["config"]["duration_s"]
    out: dict = {}
    for side in SIDES:
        events = getattr(recording, f"{side}_events")
        out[f"{side}_events"] = len(events)
        out[f"{side}_rate_per_s"] = round(len(events) / duration, 1)
        out[f"{side}_on_fraction"] = round(float(events["p"].mean()), 4) if len(events) else None
    depth = recording.depth
    finite = np.isfinite(depth)
    out["depth_frames"] = len(depth)
    out["depth_min_m"] = round(float(depth[finite].min()), 3) if finite.any() else None
    out["depth_max_m"] = round(float(depth[finite].max()), 3) if finite.any() else None
    out["depth_unknown_fraction"] = round(float(1 - finite.mean()), 4) if depth.size else None
    return out


def write_preview(recording: StereoRecording, path: Path) -> None:
    """Left events of the 50 ms before the middle depth frame, beside that frame's depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(recording.depth_ts_ns) // 2
    t1 = int(recording.depth_ts_ns[k])
    ev = recording.left_events
    ev = ev[(ev["t"] > t1 - 50_000_000) & (ev["t"] <= t1)]
    img = np.zeros((recording.height, recording.width))
    np.add.at(img, (ev["y"], ev["x"]), np.where(ev["p"] == 1, 1.0, -1.0))
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    axes[0].imshow(img, cmap="bwr", vmin=-3, vmax=3, interpolation="nearest")
    axes[0].set_title(f"left events, 50 ms ({len(ev)}; red ON, blue OFF)", fontsize=9)
    shown = axes[1].imshow(recording.depth[k], cmap="viridis_r")
    axes[1].set_title("left depth (m); white = none", fontsize=9)
    fig.colorbar(shown, ax=axes[1], fraction=0.04)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
