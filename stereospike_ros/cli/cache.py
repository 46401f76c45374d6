"""``python -m stereospike_ros cache``: convert a split's frames into training cache files."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from stereospike_ros.data.splits import PARTS

HELP = "convert a split (MVSEC split1-3, auto:FRAC, or a JSON/YAML file) into HDF5 training caches"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--split", required=True, help="split1 | split2 | split3 | auto:TRAIN[:VAL] | FILE"
    )
    parser.add_argument(
        "--root", required=True, type=Path, help="folder of the recordings (MVSEC HDF5 or bags)"
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for the cache files")
    parser.add_argument(
        "--parts", nargs="+", default=list(PARTS), choices=PARTS, help="parts to convert"
    )
    parser.add_argument(
        "--sequences", nargs="+", default=None, help="recordings an auto: split cuts (names)"
    )
    parser.add_argument("--window-ms", type=float, default=50.0, help="histogram window (50)")
    parser.add_argument(
        "--fill-holes",
        type=int,
        default=0,
        metavar="PX",
        help="fill ground-truth NaN holes smaller than PX pixels from the nearest valid one "
        "(off; the authors' own filling is --protocol paper)",
    )
    parser.add_argument(
        "--protocol",
        choices=("default", "paper"),
        default="default",
        help="paper: the StereoSpike authors' frames (ground-truth area closing 24 px, 50 ms "
        "grid from the first event, truncated coordinates); see docs/protocol.md",
    )
    parser.add_argument(
        "--no-rectify", action="store_true", help="keep raw pixel coordinates (pre-rectified data)"
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="folder of MVSEC *_{left,right}_{x,y}_map.txt (default: found beside the data)",
    )
    parser.add_argument(
        "--compression", default="lzf", choices=["lzf", "gzip", "none"], help="(lzf)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import h5py

    from stereospike_ros.data.cache import CacheOptions, build_split_cache

    options = CacheOptions(
        window_ns=round(args.window_ms * 1e6),
        fill_holes_px=args.fill_holes,
        rectify=not args.no_rectify,
        compression=None if args.compression == "none" else args.compression,
        protocol=args.protocol,
    )
    start = time.perf_counter()
    files = build_split_cache(
        args.split,
        args.root,
        args.out,
        parts=args.parts,
        sequences=args.sequences,
        options=options,
        calibration=args.calibration,
        progress=not args.quiet,
        force=args.force,
    )
    for part, path in files.items():
        with h5py.File(path, "r") as f:
            n, _, h, w = f["x"].shape
        size_mb = path.stat().st_size / 1e6
        print(f"{part:5s} {n:6d} frames {h}x{w}  {size_mb:8.1f} MB  {path}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0
