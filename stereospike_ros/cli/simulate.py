"""``python -m stereospike_ros simulate``: write a simulated recording in MVSEC's layouts.

The files are what every reader, the trainer and the demo take, so a user without MVSEC (or a
test without network) gets the same pipeline end to end, with exact ground truth.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from stereospike_ros.data.errors import SimulationError
from stereospike_ros.data.recording import StereoRecording
from stereospike_ros.events.types import SIDES, parse_size
from stereospike_ros.sim.families import FAMILIES, RIGS, random_config
from stereospike_ros.sim.motion import MOTION_STYLES
from stereospike_ros.sim.scene import SCENE_STYLES
from stereospike_ros.sim.simulator import MVSEC_FOCAL_PX, SimConfig, simulate
from stereospike_ros.sim.textures import TEXTURE_FAMILIES

HELP = "simulate a stereo event-camera recording with ground-truth depth (MVSEC HDF5, bags)"

_DEFAULTS = SimConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument("--name", default=d.name, help="file stem: NAME_data.hdf5, NAME_gt.hdf5")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed (scene, motion)")
    parser.add_argument("--duration", type=float, default=d.duration_s, help="seconds")
    parser.add_argument(
        "--family",
        choices=tuple(FAMILIES),
        help="draw scene, texture, motion, speed and sensor effects at random from a scene "
        "family (seeded by --seed); replaces the scene, motion and sensor options",
    )
    parser.add_argument(
        "--rig", choices=RIGS, default="mvsec", help="with --family: MVSEC's pair or a random one"
    )
    parser.add_argument("--size", type=parse_size, help="HxW of the cameras (260x346)")
    parser.add_argument("--scene", choices=SCENE_STYLES, default=d.scene)
    parser.add_argument("--motion", choices=MOTION_STYLES, default=d.motion)
    parser.add_argument(
        "--texture", choices=("default", *TEXTURE_FAMILIES), default=d.texture,
        help="texture family of every surface (default: each scene's own patterns)",
    )  # fmt: skip
    parser.add_argument(
        "--motion-scale", type=float, default=d.motion_scale, help="multiplies motion amplitudes"
    )
    parser.add_argument(
        "--contrast",
        type=float,
        default=d.contrast,
        help="texture contrast: half-range of log reflectance (0 = uniform surfaces)",
    )
    parser.add_argument(
        "--threshold", type=float, default=d.threshold, help="contrast threshold (log units)"
    )
    parser.add_argument(
        "--threshold-sigma",
        type=float,
        default=d.threshold_sigma,
        help="per-pixel threshold mismatch, std (log units)",
    )
    parser.add_argument(
        "--refractory-us",
        type=float,
        default=d.refractory_s * 1e6,
        help="per-pixel refractory period, microseconds",
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=d.noise_rate_hz,
        help="background activity, events per pixel per second",
    )
    parser.add_argument(
        "--hot-pixels", type=float, default=d.hot_pixel_fraction,
        help="fraction of pixels that fire on their own",
    )  # fmt: skip
    parser.add_argument(
        "--hot-pixel-rate", type=float, default=d.hot_pixel_rate_hz,
        help="events per second of each hot pixel",
    )  # fmt: skip
    parser.add_argument(
        "--jitter-us", type=float, default=d.jitter_s * 1e6,
        help="timestamp jitter, uniform +- microseconds",
    )  # fmt: skip
    parser.add_argument(
        "--max-rate", type=float, default=d.max_rate_eps,
        help="readout bandwidth, events/s per camera (0: unlimited)",
    )  # fmt: skip
    parser.add_argument(
        "--plane-depth", type=float, default=d.plane_depth_m, help="scene plane: metres"
    )
    parser.add_argument(
        "--plane-size",
        type=float,
        default=None,
        help="scene plane: side in metres (default: fills the view)",
    )
    parser.add_argument(
        "--max-flow",
        type=float,
        default=d.max_flow_px,
        help="largest image motion between renders, px (smaller: finer timing, slower)",
    )
    parser.add_argument(
        "--bags", action="store_true", help="also write NAME.bag (ROS 1) and NAME_ros2/ (ROS 2)"
    )
    parser.add_argument(
        "--bag-storage", choices=("sqlite3", "mcap"), default="sqlite3", help="ROS 2 bag storage"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.add_argument(
        "--preview", action="store_true", help="also write NAME_preview.png (events and depth)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The SimConfig that the command line describes."""
    height, width = args.size or (_DEFAULTS.height, _DEFAULTS.width)
    if args.family:
        return random_config(
            args.family, args.seed, width=width, height=height, duration_s=args.duration,
            rig=args.rig, recording=args.name,
        )  # fmt: skip
    return SimConfig(
        name=args.name,
        seed=args.seed,
        duration_s=args.duration,
        scene=args.scene,
        motion=args.motion,
        motion_scale=args.motion_scale,
        contrast=args.contrast,
        threshold=args.threshold,
        threshold_sigma=args.threshold_sigma,
        refractory_s=args.refractory_us / 1e6,
        noise_rate_hz=args.noise,
        plane_depth_m=args.plane_depth,
        plane_size_m=args.plane_size,
        max_flow_px=args.max_flow,
        texture=args.texture,
        hot_pixel_fraction=args.hot_pixels,
        hot_pixel_rate_hz=args.hot_pixel_rate,
        jitter_s=args.jitter_us / 1e6,
        max_rate_eps=args.max_rate,
        width=width,
        height=height,
        focal_px=MVSEC_FOCAL_PX * width / 346,
    )


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


def _size(path: Path) -> str:
    size = sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else path.stat().st_size
    return f"{size / 1e6:.1f} MB"


def run(args: argparse.Namespace) -> int:
    from stereospike_ros.data.bags import write_ros1_bag, write_ros2_bag
    from stereospike_ros.data.mvsec_hdf5 import write_mvsec_hdf5

    config = config_from_args(args)
    config.validate()
    out: Path = args.out
    name = config.name
    files = {
        "data": out / f"{name}_data.hdf5",
        "gt": out / f"{name}_gt.hdf5",
        "json": out / f"{name}_sim.json",
    }
    if args.bags:
        files["ros1"] = out / f"{name}.bag"
        files["ros2"] = out / f"{name}_ros2"
    if args.preview:
        files["preview"] = out / f"{name}_preview.png"
    existing = [str(p) for p in files.values() if p.exists()]
    if existing and not args.overwrite:
        raise SimulationError(f"{', '.join(existing)} exist; pass --overwrite")

    start = time.perf_counter()
    recording = simulate(config, progress=not args.quiet)
    sim_wall = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    write_mvsec_hdf5(recording, files["data"], files["gt"], overwrite=args.overwrite)
    if args.bags:
        write_ros1_bag(recording, files["ros1"], overwrite=args.overwrite)
        write_ros2_bag(recording, files["ros2"], args.bag_storage, overwrite=args.overwrite)
    if args.preview:
        write_preview(recording, files["preview"])
    counts = summary(recording)
    record = {
        "config": asdict(config),
        "seed": config.seed,
        "family": args.family,
        "bandwidth_dropped": recording.metadata["bandwidth_dropped"],
        "focal_baseline": config.focal_baseline,
        "counts": counts,
        "render_steps": recording.metadata["render_steps"],
        "simulate_wall_s": round(sim_wall, 2),
        "files": {k: p.name for k, p in files.items()},
    }
    files["json"].write_text(json.dumps(record, indent=2) + "\n")
    total = time.perf_counter() - start

    family = f"family {args.family!r}: " if args.family else ""
    print(
        f"simulated {config.duration_s:g} s of {family}scene {config.scene!r}, "
        f"motion {config.motion!r}, texture {config.texture!r} (seed {config.seed}) in "
        f"{sim_wall:.1f} s ({recording.metadata['render_steps']} renders, "
        f"{(counts['left_events'] + counts['right_events']) / max(sim_wall, 1e-9) / 1e3:,.0f} "
        "k events per second of simulation)"
    )
    for side in SIDES:
        on = counts[f"{side}_on_fraction"]
        print(
            f"  {side:5s} {counts[f'{side}_events']:>10,d} events "
            f"({counts[f'{side}_rate_per_s'] / 1e3:,.0f} k/s, "
            f"{'-' if on is None else f'{100 * on:.0f} % ON'})"
        )
    depth_range = (
        f"{counts['depth_min_m']:.2f}-{counts['depth_max_m']:.2f} m"
        if counts["depth_min_m"] is not None
        else "no depth"
    )
    print(
        f"  depth {counts['depth_frames']} frames at {config.depth_rate_hz:g} Hz, {depth_range}, "
        f"{100 * (counts['depth_unknown_fraction'] or 0):.1f} % unknown; "
        f"f x B = {config.focal_baseline:.3f} px*m"
    )
    print(f"wrote in {total:.1f} s:")
    for path in files.values():
        print(f"  {path} ({_size(path)})")
    return 0
