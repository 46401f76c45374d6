"""``python -m stereospike_ros benchmark data``: conversion speed of the data pipeline.

Simulates a recording (or takes ``--input``), writes it as MVSEC HDF5 (and with ``--bags`` as
ROS 1 and ROS 2 MCAP bags), then times, in the same run: streaming every event, computing every
frame, converting every frame into a training cache, and re-running that conversion (a no-op).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

HELP = "time simulate -> HDF5/bags -> frames -> training cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=10.0, help="simulated seconds (10)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scene", default="room")
    parser.add_argument("--input", type=Path, default=None, help="use this recording instead")
    parser.add_argument("--bags", action="store_true", help="also write and read ROS bags")
    parser.add_argument("--workdir", type=Path, default=None, help="(default: a temp folder)")


def _timed(label: str, fn: object, *args: object, **kwargs: object) -> tuple[object, float]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)  # type: ignore[operator]
    seconds = time.perf_counter() - start
    print(f"{label:42s} {seconds:8.2f} s", flush=True)
    return result, seconds


def _stream(path: object) -> int:
    from stereospike_ros.data.open import open_sequence
    from stereospike_ros.data.sequence import SIDES

    with open_sequence(path) as sequence:
        return sum(len(c) for side in SIDES for c in sequence.iter_events(side))


def _frames(path: object) -> int:
    from stereospike_ros.data.frames import iter_frames
    from stereospike_ros.data.open import open_sequence

    with open_sequence(path) as sequence:
        return sum(1 for _ in iter_frames(sequence))


def run(args: argparse.Namespace) -> int:
    from stereospike_ros.data.bags import write_ros1_bag, write_ros2_bag
    from stereospike_ros.data.cache import build_cache
    from stereospike_ros.data.mvsec_hdf5 import write_mvsec_hdf5
    from stereospike_ros.data.open import open_sequence

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="stereospike-bench-data-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        recording = None
        if args.input is None:
            from stereospike_ros.sim.simulator import SimConfig, simulate

            config = SimConfig(
                name="bench", seed=args.seed, duration_s=args.duration, scene=args.scene
            )
            recording, _ = _timed(f"simulate {args.duration:g} s ({args.scene})", simulate, config)
            source: object = workdir / "bench"
            _timed(
                "write MVSEC HDF5",
                write_mvsec_hdf5,
                recording,
                workdir / "bench_data.hdf5",
                workdir / "bench_gt.hdf5",
            )
        else:
            source = args.input
        with open_sequence(source) as sequence:
            n_frames = len(sequence.depth_stamps())
            size = f"{sequence.width}x{sequence.height}"
        n_events, t_stream = _timed("stream all events (HDF5)", _stream, source)
        _, t_frames = _timed("frames: rectify + 50 ms histograms (HDF5)", _frames, source)
        items = [(source, range(n_frames))]
        cache = workdir / "bench_cache.h5"
        _, t_cache = _timed("convert to training cache (lzf)", build_cache, items, cache)
        _, t_noop = _timed("re-run conversion (no-op)", build_cache, items, cache)
        print(
            f"\n{n_events / 1e6:.1f} M events, {n_frames} depth frames ({size}); cache "
            f"{cache.stat().st_size / 1e6:.0f} MB"
        )
        print(f"stream   {n_events / t_stream / 1e6:6.1f} M events/s")
        rate = n_events / t_frames / 1e6
        print(f"frames   {rate:6.1f} M events/s, {n_frames / t_frames:.1f} frames/s")
        print(f"cache    {n_frames / t_cache:6.1f} frames/s; re-run {t_noop * 1e3:.0f} ms")
        if args.bags and recording is not None:
            print()
            _timed("write ROS 1 bag", write_ros1_bag, recording, workdir / "bench.bag")
            _timed(
                "write ROS 2 bag (mcap)", write_ros2_bag, recording, workdir / "bench_r2", "mcap"
            )
            for label, path in (
                ("ROS 1 bag", workdir / "bench.bag"),
                ("ROS 2 mcap", workdir / "bench_r2"),
            ):
                _, t = _timed(f"frames ({label})", _frames, path)
                print(f"{'':42s} {t / t_frames:8.2f} x the HDF5 time")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0
