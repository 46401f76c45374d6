"""``open_sequence``: open a recording by what it is, whichever reader that takes.

The one module that knows every reader (MVSEC HDF5, ROS 1 / ROS 2 bags); the readers know only
``data.sequence``, so callers that take "any recording" come here and nothing points back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from stereospike_ros.data.bags import BagSequence
from stereospike_ros.data.errors import FormatError, MissingInputError
from stereospike_ros.data.mvsec_hdf5 import MvsecHdf5Sequence
from stereospike_ros.data.sequence import CalibrationSource, PathLike, StereoSequence


def open_sequence(
    path_or_paths: PathLike | Iterable[PathLike],
    calibration: CalibrationSource = None,
) -> StereoSequence:
    """Open a recording by what it is: an MVSEC HDF5 pair or prefix, ROS 1 bag(s), a ROS 2 bag.

    Accepted: ``X_data.hdf5`` (``X_gt.hdf5`` beside it is found), an explicit (data, gt) pair,
    the prefix ``.../X`` of either pair, ``X.bag`` or ``X_data.bag`` (``X_gt.bag`` beside it is
    added) or several ``.bag`` files, a ROS 2 bag folder (``metadata.yaml``) or its
    ``.db3``/``.mcap`` file. ``calibration``: see :data:`CalibrationSource`; by default HDF5
    files use MVSEC maps found beside them (``indoor_flying_left_x_map.txt`` or in
    ``indoor_flying_calib/``) or the camera_info our writer stores, bags their camera_info.
    """
    if isinstance(path_or_paths, str | os.PathLike):
        paths = [Path(path_or_paths)]
    else:
        paths = [Path(p) for p in path_or_paths]
    if not paths:
        raise MissingInputError("open_sequence: no path given")
    missing = [p for p in paths if not p.exists()]
    if len(paths) == 1 and missing:
        paths = _expand_prefix(paths[0])
    elif missing:
        raise MissingInputError(f"recording files do not exist: {', '.join(map(str, missing))}")

    suffixes = {p.suffix.lower() for p in paths}
    if suffixes <= {".hdf5", ".h5"}:
        data, gt = _hdf5_pair(paths)
        return MvsecHdf5Sequence(data, gt, calibration=calibration)
    if suffixes == {".bag"}:
        if len(paths) == 1:
            paths = _bag_siblings(paths[0])
        return BagSequence(paths, calibration=calibration)
    if len(paths) == 1 and (paths[0].is_dir() or paths[0].suffix.lower() in (".db3", ".mcap")):
        return BagSequence(paths, calibration=calibration)
    raise FormatError(
        f"cannot tell what recording {', '.join(map(str, paths))} is: expected MVSEC .hdf5 "
        "files, ROS 1 .bag files, or a ROS 2 bag folder / .db3 / .mcap"
    )


def _expand_prefix(prefix: Path) -> list[Path]:
    candidates = [
        [prefix.with_name(prefix.name + "_data.hdf5"), prefix.with_name(prefix.name + "_gt.hdf5")],
        [prefix.with_name(prefix.name + "_data.bag"), prefix.with_name(prefix.name + "_gt.bag")],
        [prefix.with_name(prefix.name + ".bag")],
        [prefix.with_name(prefix.name + ".mcap")],
        [prefix.with_name(prefix.name + ".db3")],
    ]
    for group in candidates:
        if group[0].exists():
            return [p for p in group if p.exists()]
    tried = ", ".join(str(g[0]) for g in candidates)
    raise MissingInputError(f"no recording at {prefix}: tried {prefix} and {tried}")


def _hdf5_pair(paths: list[Path]) -> tuple[Path, Path | None]:
    if len(paths) == 2:
        data, gt = paths
        if "_gt" in data.stem and "_gt" not in gt.stem:
            data, gt = gt, data
        return data, gt
    if len(paths) != 1:
        raise FormatError(f"expected one or two HDF5 files (data, gt), got {len(paths)}")
    path = paths[0]
    stem = path.stem
    if stem.endswith("_gt"):
        data = path.with_name(stem[: -len("_gt")] + "_data" + path.suffix)
        if not data.is_file():
            raise MissingInputError(
                f"{path} is a ground-truth file; its events file {data} is missing"
            )
        return data, path
    if stem.endswith("_data"):
        gt = path.with_name(stem[: -len("_data")] + "_gt" + path.suffix)
        return path, gt if gt.is_file() else None
    return path, None


def _bag_siblings(path: Path) -> list[Path]:
    stem = path.stem
    for mine, other in (("_data", "_gt"), ("_gt", "_data")):
        if stem.endswith(mine):
            sibling = path.with_name(stem[: -len(mine)] + other + ".bag")
            if sibling.is_file():
                return sorted([path, sibling], key=lambda p: p.stem.endswith("_gt"))
    return [path]


def recordings_in(folder: Path) -> list[Path]:
    """The recordings directly in ``folder``, as ``open_sequence`` takes them: MVSEC HDF5 pairs
    (by their data file), ROS 1 bags (a ``_gt.bag`` beside its ``_data.bag`` goes with it),
    ROS 2 bag folders and ``.mcap``/``.db3`` files, sorted by name."""
    found: list[Path] = []
    for path in sorted(folder.iterdir()):
        name = path.name
        ros1 = name.endswith(".bag") and not (
            name.endswith("_gt.bag") and (folder / name.replace("_gt.bag", "_data.bag")).exists()
        )
        if path.is_dir():
            if (path / "metadata.yaml").is_file():
                found.append(path)
        elif ros1 or name.endswith(("_data.hdf5", "_data.h5", ".mcap", ".db3")):
            found.append(path)
    return found
