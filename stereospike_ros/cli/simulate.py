"""``python -m stereospike_ros simulate``: write a simulated recording in MVSEC's layouts.

The files are what every reader, the trainer and the demo take, so a user without MVSEC (or a
test without network) gets the same pipeline end to end, with exact ground truth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stereospike_ros.events.types import SIDES, parse_size
from stereospike_ros.sim.families import FAMILIES, RIGS, random_config
from stereospike_ros.sim.files import OutputOptions, SimulatedFiles, simulate_to_files
from stereospike_ros.sim.motion import MOTION_STYLES
from stereospike_ros.sim.scene import SCENE_STYLES
from stereospike_ros.sim.simulator import MVSEC_FOCAL_PX, SimConfig
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


def _size(path: Path) -> str:
    size = sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else path.stat().st_size
    return f"{size / 1e6:.1f} MB"


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    options = OutputOptions(
        out=args.out,
        bags=args.bags,
        bag_storage=args.bag_storage,
        preview=args.preview,
        overwrite=args.overwrite,
        family=args.family,
    )
    result = simulate_to_files(config, options, progress=not args.quiet)
    _print_report(config, result, args.family)
    return 0


def _print_report(config: SimConfig, result: SimulatedFiles, family_name: str | None) -> None:
    counts, sim_wall = result.record["counts"], result.simulate_wall_s
    family = f"family {family_name!r}: " if family_name else ""
    print(
        f"simulated {config.duration_s:g} s of {family}scene {config.scene!r}, "
        f"motion {config.motion!r}, texture {config.texture!r} (seed {config.seed}) in "
        f"{sim_wall:.1f} s ({result.record['render_steps']} renders, "
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
    print(f"wrote in {result.total_s:.1f} s:")
    for path in result.files.values():
        print(f"  {path} ({_size(path)})")
