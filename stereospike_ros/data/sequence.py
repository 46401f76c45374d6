"""What every recording reader offers (the ``StereoSequence`` protocol) and what readers share.

``open_sequence``, which picks the reader for a path, lives in ``data.open``: it knows the
readers, and the readers build on this module. Readers stream: MVSEC event arrays are GBs, so
events come in bounded chunks and depth frames one at a time. All times are int64 nanoseconds
of sensor time; all images are (H, W).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from stereospike_ros.data.errors import FormatError, MissingInputError
from stereospike_ros.data.recording import CameraCalibration
from stereospike_ros.events.types import SIDES, Side

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 1 << 20

PathLike = str | os.PathLike
#: None (identity, or what the file carries), a folder of MVSEC ``*_{side}_{x,y}_map.txt``
#: files, or per side a CameraCalibration or an (x_map, y_map) pair of arrays or paths.
CalibrationSource = (
    None | PathLike | Mapping[str, CameraCalibration | tuple[PathLike | np.ndarray, ...]]
)


class DepthFrame(NamedTuple):
    """One ground-truth frame: its index in the sequence, stamp and (H, W) float32 metres."""

    index: int
    t_ns: int
    depth: np.ndarray


@runtime_checkable
class StereoSequence(Protocol):
    """A stereo event recording with left depth ground truth, whatever its file format."""

    name: str
    height: int
    width: int

    def iter_events(
        self,
        side: Side,
        chunk_size: int = DEFAULT_CHUNK,
        start_ns: int | None = None,
        stop_ns: int | None = None,
    ) -> Iterator[np.ndarray]:
        """EVENT_DTYPE chunks (raw sensor coordinates) in file order, within [start, stop)."""
        ...

    def depth_stamps(self) -> np.ndarray:
        """int64 ns stamps of every depth frame, in file order."""
        ...

    def depth_frames(self, indices: Iterable[int] | None = None) -> Iterator[DepthFrame]:
        """The depth frames (all, or the given increasing indices), one at a time."""
        ...

    def calibration(self, side: Side) -> CameraCalibration | None:
        """The camera's CameraInfo, when the recording carries or was given one."""
        ...

    def rectifier(self, side: Side, rounding: str = "nearest") -> object:
        """A ``stereospike_ros.events.Rectifier`` from raw to rectified pixels (``rounding``:
        nearest, or truncate as the StereoSpike authors do)."""
        ...

    def close(self) -> None: ...


#: f x B of MVSEC's indoor_flying cameras (px*m); its files carry no camera_info
MVSEC_FOCAL_BASELINE = 19.941772


def focal_baseline_of(sequence: StereoSequence) -> float | None:
    """f x B (px*m) from the right camera's projection, or MVSEC's constant for its scenes."""
    calib = sequence.calibration("right")
    if calib is not None and float(-calib.P[0, 3]) > 0:
        return float(-calib.P[0, 3])
    if sequence.name.startswith("indoor_flying"):
        return MVSEC_FOCAL_BASELINE
    return None


def check_side(side: str) -> Side:
    if side not in SIDES:
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    return side  # type: ignore[return-value]


def rechunk(batches: Iterable[np.ndarray], chunk_size: int) -> Iterator[np.ndarray]:
    """Concatenate small event arrays (one per message) into chunks of about ``chunk_size``."""
    pending: list[np.ndarray] = []
    count = 0
    for batch in batches:
        if not len(batch):
            continue
        pending.append(batch)
        count += len(batch)
        if count >= chunk_size:
            yield np.concatenate(pending) if len(pending) > 1 else pending[0]
            pending, count = [], 0
    if pending:
        yield np.concatenate(pending) if len(pending) > 1 else pending[0]


def clip_events(events: np.ndarray, start_ns: int | None, stop_ns: int | None) -> np.ndarray:
    """The events with ``start_ns <= t < stop_ns`` (order kept; no copy when nothing is cut)."""
    if start_ns is None and stop_ns is None:
        return events
    t = events["t"]
    keep = np.ones(len(events), dtype=bool)
    if start_ns is not None:
        keep &= t >= start_ns
    if stop_ns is not None:
        keep &= t < stop_ns
    return events if keep.all() else events[keep]


def find_map_files(folder: Path, side: Side, prefix: str = "") -> tuple[Path, Path] | None:
    """MVSEC ``{prefix}_{side}_x_map.txt`` / ``_y_map.txt`` in ``folder``, if exactly one pair."""
    xs = sorted(folder.glob(f"{prefix}*_{side}_x_map.txt"))
    if len(xs) != 1:
        if len(xs) > 1:
            log.warning("several %s x maps in %s: %s; pass one explicitly", side, folder, xs)
        return None
    y = xs[0].with_name(xs[0].name.replace("_x_map.txt", "_y_map.txt"))
    if not y.is_file():
        raise MissingInputError(f"{xs[0]} has no matching y map: {y} is missing")
    return xs[0], y


def build_rectifier(
    source: CalibrationSource,
    side: Side,
    height: int,
    width: int,
    carried: CameraCalibration | None,
    what: str,
    rounding: str = "nearest",
) -> object:
    """The Rectifier for ``side``: explicit source, else the carried CameraInfo, else identity.

    Identity is right for the simulator (its cameras are rectified) and wrong for real MVSEC
    events, so that case logs a warning naming the recording.
    """
    from stereospike_ros.events.rectify import Rectifier

    entry: object = None
    if isinstance(source, Mapping):
        entry = source.get(side)
        if entry is None:
            raise MissingInputError(f"calibration for {what} has no entry for side {side!r}")
    elif source is not None:
        folder = Path(source)
        if not folder.is_dir():
            raise MissingInputError(f"calibration folder {folder} (for {what}) does not exist")
        entry = find_map_files(folder, side)
        if entry is None:
            raise MissingInputError(
                f"calibration folder {folder} (for {what}) holds no single "
                f"*_{side}_x_map.txt / *_{side}_y_map.txt pair"
            )
    elif carried is not None:
        entry = carried
    if entry is None:
        log.info("%s: no calibration given or carried; %s events are used unrectified", what, side)
        rectifier = Rectifier.identity(height, width)
        rectifier.source = "identity (no calibration given or carried)"
        return rectifier
    if isinstance(entry, CameraCalibration):
        if (entry.height, entry.width) != (height, width):
            raise FormatError(
                f"{what}: {side} calibration is {entry.height}x{entry.width} but the recording "
                f"is {height}x{width}"
            )
        rectifier = Rectifier.from_camera_info(
            entry.height,
            entry.width,
            entry.K,
            entry.D,
            entry.R,
            entry.P,
            entry.distortion_model,
            rounding=rounding,
        )
        given = "given" if isinstance(source, Mapping) else "carried by the recording"
        rectifier.source = f"camera_info {given} ({entry.distortion_model})"
        if rounding != "nearest":
            rectifier.source += f", {rounding}d"
        return rectifier
    x_map, y_map = entry  # type: ignore[misc]
    if isinstance(x_map, np.ndarray) and isinstance(y_map, np.ndarray):
        rectifier = Rectifier.from_maps(
            x_map, y_map, source="maps given as arrays", rounding=rounding
        )
    else:
        for path in (x_map, y_map):
            if not Path(path).is_file():
                raise MissingInputError(f"rectification map {path} (for {what}) does not exist")
        rectifier = Rectifier.from_mvsec_maps(x_map, y_map, rounding=rounding)
    if rounding != "nearest":
        rectifier.source += f", {rounding}d"
    return rectifier


def sequence_name(path: Path) -> str:
    """``indoor_flying1`` for ``.../indoor_flying1_data.hdf5`` and friends."""
    stem = path.name if path.is_dir() else path.stem
    for suffix in ("_data", "_gt"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem
