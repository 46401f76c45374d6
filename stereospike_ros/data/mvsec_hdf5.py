"""MVSEC's HDF5 layout: a writer for recordings and a reader that streams events in chunks.

``X_data.hdf5`` holds ``davis/{left,right}/events``, N x 4 float64 rows ``[x, y, t, p]`` with
``t`` in seconds and ``p`` in {-1, +1}; ``X_gt.hdf5`` holds ``davis/left/depth_image_rect``
(M x H x W float32 metres, NaN = unknown) with ``depth_image_rect_ts`` (seconds) and the same
for ``depth_image_raw``.

Times. MVSEC stores unix time (~1.5e9 s) as float64, whose spacing there is 2**-22 s (0.24 us):
the nanoseconds of the original ROS stamps are already gone from the file. Multiplying such a
value by 1e9 in float64 loses more (spacing 256 ns at 1.5e18), so the reader splits seconds into
an integer and a fractional part (exact in float64) and rounds only the fraction: the int64 ns
it returns are the stored float64 values rounded to the nearest ns, monotonic like the file.
The writer stores ``sec + nsec / 1e9``; recordings whose times stay below ~2**21 s (24 days,
e.g. the simulator's, which start at 0) round-trip to the exact nanosecond.

Extensions: the writer also stores each camera's CameraInfo (K, D, R, P, distortion model) as
attributes of ``davis/{side}/camera_info`` so a written recording carries its calibration; MVSEC
files carry none, and use the ``indoor_flying_{side}_{x,y}_map.txt`` maps instead.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import h5py
import numpy as np

from stereospike_ros import __version__
from stereospike_ros.atomic import partial_path, remove_stale_partials
from stereospike_ros.data.errors import FormatError, MissingInputError
from stereospike_ros.data.recording import CameraCalibration, StereoRecording
from stereospike_ros.data.sequence import (
    DEFAULT_CHUNK,
    SIDES,
    CalibrationSource,
    DepthFrame,
    PathLike,
    Side,
    build_rectifier,
    check_side,
    clip_events,
    find_map_files,
    sequence_name,
)
from stereospike_ros.events.types import EVENT_DTYPE

log = logging.getLogger(__name__)

EVENTS_KEY = "davis/{side}/events"
DEPTH_KEY = "davis/left/depth_image_rect"
DEPTH_TS_KEY = "davis/left/depth_image_rect_ts"
DEPTH_RAW_KEY = "davis/left/depth_image_raw"
DEPTH_RAW_TS_KEY = "davis/left/depth_image_raw_ts"
CAMERA_INFO_KEY = "davis/{side}/camera_info"
IMAGE_RAW_KEY = "davis/{side}/image_raw"

_NS = 1_000_000_000


def ns_to_seconds(t_ns: np.ndarray) -> np.ndarray:
    """int64 ns -> float64 seconds as ``sec + nsec / 1e9`` (one rounding per term)."""
    sec, nsec = np.divmod(np.asarray(t_ns, dtype=np.int64), _NS)
    return sec.astype(np.float64) + nsec.astype(np.float64) / _NS


def seconds_to_ns(t_s: np.ndarray) -> np.ndarray:
    """float64 seconds -> int64 ns, the stored value rounded to the ns (see module docstring).

    ``t - floor(t_min)`` is exact in float64 (an integer below ``t`` is a multiple of its
    spacing); that fraction times 1e9 is formed in extended precision (x86: 64-bit mantissa),
    where for MVSEC's unix times it is exact, so the one rounding is the final one to ns.
    """
    shape = np.shape(t_s)
    t_s = np.asarray(t_s, dtype=np.float64).reshape(-1)
    if t_s.size == 0:
        return np.zeros(shape, dtype=np.int64)
    lo, hi = float(t_s.min()), float(t_s.max())
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise FormatError(f"event/frame times must be finite, got range [{lo}, {hi}] s")
    if hi - np.floor(lo) >= 2.0**20:  # spans > 12 days: take each value's own whole seconds
        base = np.floor(t_s)
    else:
        base = np.floor(np.float64(lo))
    frac = np.subtract(t_s, base, dtype=np.longdouble)
    frac *= _NS
    np.rint(frac, out=frac)
    out = frac.astype(np.int64)
    out += np.asarray(base).astype(np.int64) * _NS
    return out.reshape(shape)


def _camera_info_attrs(group: h5py.Group, calib: CameraCalibration) -> None:
    group.attrs["height"] = calib.height
    group.attrs["width"] = calib.width
    group.attrs["K"] = np.asarray(calib.K, dtype=np.float64).reshape(3, 3)
    group.attrs["D"] = np.asarray(calib.D, dtype=np.float64).reshape(-1)
    group.attrs["R"] = np.asarray(calib.R, dtype=np.float64).reshape(3, 3)
    group.attrs["P"] = np.asarray(calib.P, dtype=np.float64).reshape(3, 4)
    group.attrs["distortion_model"] = calib.distortion_model
    group.attrs["frame_id"] = calib.frame_id


def _replace_target(path: Path, overwrite: bool) -> Path:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    return partial_path(path)


def write_mvsec_hdf5(
    recording: StereoRecording,
    data_path: PathLike,
    gt_path: PathLike,
    *,
    chunk_rows: int = 1 << 15,
    compression: str | None = None,
    overwrite: bool = False,
) -> None:
    """Write ``recording`` as an MVSEC ``X_data.hdf5`` + ``X_gt.hdf5`` pair.

    Events go out in blocks of ``chunk_rows`` rows so memory stays bounded; each file is written
    under a temporary name and renamed when complete, so an interrupted write leaves no file
    that looks like a recording. ``depth_image_raw`` is a hard link to ``depth_image_rect``
    (a recording's depth is rectified; the simulator's cameras need no rectification).
    """
    data_path, gt_path = Path(data_path), Path(gt_path)
    data_tmp = _replace_target(data_path, overwrite)
    gt_tmp = _replace_target(gt_path, overwrite)
    try:
        with h5py.File(data_tmp, "w") as f:
            f.attrs["created_by"] = f"stereospike_ros {__version__}"
            f.attrs["metadata"] = json.dumps(recording.metadata, default=str, sort_keys=True)
            for side in SIDES:
                events = getattr(recording, f"{side}_events")
                _write_events(f, side, events, chunk_rows, compression)
                calib = getattr(recording, f"{side}_calibration")
                _camera_info_attrs(f.create_group(CAMERA_INFO_KEY.format(side=side)), calib)
        with h5py.File(gt_tmp, "w") as f:
            f.attrs["created_by"] = f"stereospike_ros {__version__}"
            m, h, w = recording.depth.shape
            depth = f.create_dataset(
                DEPTH_KEY,
                shape=(m, h, w),
                maxshape=(None, h, w),
                dtype=np.float32,
                chunks=(1, h, w),
                compression=compression,
            )
            for i in range(m):
                depth[i] = recording.depth[i]
            f.create_dataset(DEPTH_TS_KEY, data=ns_to_seconds(recording.depth_ts_ns))
            f[DEPTH_RAW_KEY] = f[DEPTH_KEY]  # hard links: same data, no copy
            f[DEPTH_RAW_TS_KEY] = f[DEPTH_TS_KEY]
        os.replace(data_tmp, data_path)
        os.replace(gt_tmp, gt_path)
    finally:
        for tmp in (data_tmp, gt_tmp):
            tmp.unlink(missing_ok=True)


def _write_events(
    f: h5py.File, side: str, events: np.ndarray, chunk_rows: int, compression: str | None
) -> None:
    n = len(events)
    ds = f.create_dataset(
        EVENTS_KEY.format(side=side),
        shape=(n, 4),
        maxshape=(None, 4),
        dtype=np.float64,
        chunks=(chunk_rows, 4),
        compression=compression,
    )
    for i in range(0, n, chunk_rows):
        part = events[i : i + chunk_rows]
        block = np.empty((len(part), 4), dtype=np.float64)
        block[:, 0] = part["x"]
        block[:, 1] = part["y"]
        block[:, 2] = ns_to_seconds(part["t"])
        block[:, 3] = np.where(part["p"] != 0, 1.0, -1.0)
        ds[i : i + len(part)] = block


def _open_h5(path: Path, role: str) -> h5py.File:
    if path.is_dir():
        raise FormatError(f"MVSEC {role} file {path} is a folder, not an HDF5 file")
    if not path.is_file():
        raise MissingInputError(f"MVSEC {role} file {path} does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise FormatError(f"{path} is not a readable HDF5 file: {err}") from err


def _keys(f: h5py.File) -> list[str]:
    found: list[str] = []
    f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return found


class MvsecHdf5Sequence:
    """Reads an MVSEC (or our writer's) HDF5 pair without ever loading a whole event array.

    ``gt_path`` may be None for events only. ``calibration``: see ``CalibrationSource``; when
    None, MVSEC maps beside the data file (``{scenario}_{side}_{x,y}_map.txt``, also in
    ``{scenario}_calib/``) or the camera_info our writer stored are used, else identity.
    """

    def __init__(
        self,
        data_path: PathLike,
        gt_path: PathLike | None = None,
        calibration: CalibrationSource = None,
        *,
        name: str | None = None,
    ) -> None:
        self.data_path = Path(data_path)
        self.gt_path = Path(gt_path) if gt_path is not None else None
        self.name = name or sequence_name(self.data_path)
        self._calibration_source = calibration
        self._rectifiers: dict[tuple[str, str], object] = {}
        self._data = _open_h5(self.data_path, "data")
        self._gt: h5py.File | None = None
        try:
            self._events = {side: self._events_dataset(side) for side in SIDES}
            self._depth = self._depth_ts = None
            if self.gt_path is not None:
                self._gt = _open_h5(self.gt_path, "ground-truth")
                self._depth, self._depth_ts = self._depth_datasets()
            self.height, self.width = self._geometry()
            self._stamps: np.ndarray | None = None
        except BaseException:
            self.close()
            raise

    # -- structure --------------------------------------------------------------------------

    def _events_dataset(self, side: str) -> h5py.Dataset:
        key = EVENTS_KEY.format(side=side)
        if key not in self._data:
            raise MissingInputError(
                f"{self.data_path}: no dataset {key!r} (datasets there: "
                f"{', '.join(_keys(self._data)) or 'none'})"
            )
        ds = self._data[key]
        if ds.ndim != 2 or ds.shape[1] != 4:
            raise FormatError(
                f"{self.data_path}: {key!r} is {ds.shape}, expected N x 4 [x, y, t, p]"
            )
        if ds.dtype.kind not in "fiu":
            raise FormatError(f"{self.data_path}: {key!r} holds {ds.dtype}, expected numbers")
        return ds

    def _depth_datasets(self) -> tuple[h5py.Dataset, h5py.Dataset]:
        assert self._gt is not None
        for key in (DEPTH_KEY, DEPTH_TS_KEY):
            if key not in self._gt:
                raise MissingInputError(
                    f"{self.gt_path}: no dataset {key!r} (datasets there: "
                    f"{', '.join(_keys(self._gt)) or 'none'})"
                )
        depth, ts = self._gt[DEPTH_KEY], self._gt[DEPTH_TS_KEY]
        for key, ds in ((DEPTH_KEY, depth), (DEPTH_TS_KEY, ts)):
            if ds.dtype.kind not in "fiu":
                raise FormatError(f"{self.gt_path}: {key!r} holds {ds.dtype}, expected numbers")
        if depth.ndim != 3:
            raise FormatError(f"{self.gt_path}: {DEPTH_KEY!r} is {depth.shape}, expected M x H x W")
        if ts.shape != (depth.shape[0],):
            raise FormatError(
                f"{self.gt_path}: {depth.shape[0]} depth frames but {DEPTH_TS_KEY!r} has shape "
                f"{ts.shape}"
            )
        return depth, ts

    def _geometry(self) -> tuple[int, int]:
        sizes: dict[str, tuple[int, int]] = {}
        if self._depth is not None:
            sizes[f"{self.gt_path}:{DEPTH_KEY}"] = tuple(self._depth.shape[1:])  # type: ignore[assignment]
        for side in SIDES:
            calib = self._carried_calibration(side)
            if calib is not None:
                sizes[f"{self.data_path}:{CAMERA_INFO_KEY.format(side=side)}"] = (
                    calib.height,
                    calib.width,
                )
            key = IMAGE_RAW_KEY.format(side=side)
            if key in self._data and self._data[key].ndim == 3:
                sizes[f"{self.data_path}:{key}"] = tuple(self._data[key].shape[1:])  # type: ignore[assignment]
        if not sizes:
            raise MissingInputError(
                f"{self.data_path}: cannot tell the image size: no ground truth, camera_info or "
                "image_raw; give the _gt.hdf5 file too"
            )
        if len(set(sizes.values())) > 1:
            listed = ", ".join(f"{k} {h}x{w}" for k, (h, w) in sizes.items())
            raise FormatError(f"mismatched resolutions in {self.name}: {listed}")
        return next(iter(sizes.values()))

    def _carried_calibration(self, side: str) -> CameraCalibration | None:
        key = CAMERA_INFO_KEY.format(side=side)
        if key not in self._data:
            return None
        a = self._data[key].attrs
        try:
            return CameraCalibration(
                int(a["height"]),
                int(a["width"]),
                np.array(a["K"]).reshape(3, 3),
                np.array(a["D"]).reshape(-1),
                np.array(a["R"]).reshape(3, 3),
                np.array(a["P"]).reshape(3, 4),
                str(a["distortion_model"]),
                str(a.get("frame_id", "")),
            )
        except (KeyError, ValueError) as err:
            raise FormatError(f"{self.data_path}: malformed {key!r} attributes: {err}") from err

    # -- events -----------------------------------------------------------------------------

    def num_events(self, side: Side) -> int:
        return int(self._events[check_side(side)].shape[0])

    def iter_events(
        self,
        side: Side,
        chunk_size: int = DEFAULT_CHUNK,
        start_ns: int | None = None,
        stop_ns: int | None = None,
    ) -> Iterator[np.ndarray]:
        """EVENT_DTYPE chunks of at most ``chunk_size`` rows, in file order, t in ns.

        Bounds are found by binary search on the (time-sorted) t column, reading single
        values, so starting in the middle of a long recording costs a few reads.
        """
        ds = self._events[check_side(side)]
        first = 0 if start_ns is None else self._search(ds, start_ns)
        last = ds.shape[0] if stop_ns is None else self._search(ds, stop_ns)
        for i in range(first, last, chunk_size):
            events = self._convert(ds, i, min(i + chunk_size, last))
            yield clip_events(events, start_ns, stop_ns)

    def events_between(self, side: Side, t0_ns: int, t1_ns: int) -> np.ndarray:
        """All events with ``t0_ns <= t < t1_ns`` as one array."""
        chunks = list(self.iter_events(side, DEFAULT_CHUNK, t0_ns, t1_ns))
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=EVENT_DTYPE)

    def _convert(self, ds: h5py.Dataset, i: int, j: int) -> np.ndarray:
        """Rows ``[i, j)`` as events, their coordinates and times checked."""
        block = ds[i:j]
        xy = block[:, :2]
        if len(xy) and not (xy.min() >= 0 and xy.max() <= 65535):  # also catches NaN
            row = i + int(np.argmax(~((xy >= 0) & (xy <= 65535)).all(axis=1)))
            raise FormatError(
                f"{self.data_path}:{ds.name}: row {row} has pixel {tuple(block[row - i, :2])}, "
                "not a uint16 coordinate"
            )
        events = np.empty(len(block), dtype=EVENT_DTYPE)
        events["x"] = xy[:, 0]
        events["y"] = xy[:, 1]
        events["t"] = self._times(ds, i, block[:, 2])
        events["p"] = block[:, 3] > 0
        return events

    def _times(self, ds: h5py.Dataset, i: int, seconds: np.ndarray) -> np.ndarray:
        """Rows' times in ns; NaN or Inf is an error naming the row (events slightly out of
        order are fine: frames sort each chunk and count the late ones)."""
        finite = np.isfinite(seconds)
        if not finite.all():
            row = i + int(np.argmin(finite))
            raise FormatError(
                f"{self.data_path}:{ds.name}: row {row} has time {seconds[row - i]} s, not a "
                "finite number"
            )
        return seconds_to_ns(seconds)

    def _search(self, ds: h5py.Dataset, t_ns: int) -> int:
        """First row whose time is >= ``t_ns`` (rows assumed sorted by time)."""
        try:
            return self._bisect(ds, t_ns)
        except FormatError as err:  # a non-finite time met on the way
            raise FormatError(f"{self.data_path}:{ds.name}: {err}") from err

    def _bisect(self, ds: h5py.Dataset, t_ns: int) -> int:
        n = ds.shape[0]
        step = ds.chunks[0] if ds.chunks else 1 << 15
        # Coarse: the last block start whose time is < t_ns, by bisection over block starts.
        lo, hi = 0, (n + step - 1) // step  # answer block index in [lo, hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if int(seconds_to_ns(ds[mid * step, 2])) < t_ns:
                lo = mid
            else:
                hi = mid
        start = lo * step
        times = seconds_to_ns(ds[start : min(start + 2 * step, n), 2])
        return start + int(np.searchsorted(times, t_ns, side="left"))

    # -- ground truth -----------------------------------------------------------------------

    def depth_stamps(self) -> np.ndarray:
        if self._depth_ts is None:
            return np.zeros(0, dtype=np.int64)
        if self._stamps is None:
            self._stamps = self._checked_stamps(self._depth_ts[()])
        return self._stamps

    def _checked_stamps(self, seconds: np.ndarray) -> np.ndarray:
        where = f"{self.gt_path}: {DEPTH_TS_KEY!r}"
        finite = np.isfinite(seconds)
        if not finite.all():
            index = int(np.argmin(finite))
            raise FormatError(f"{where}: frame {index} has time {seconds[index]}, not a number")
        stamps = seconds_to_ns(seconds)
        if (np.diff(stamps) < 0).any():
            index = int(np.argmax(np.diff(stamps) < 0)) + 1
            raise FormatError(
                f"{where}: frame {index} is earlier than frame {index - 1}; depth stamps must "
                "be in time order"
            )
        return stamps

    def depth_frames(self, indices: Iterable[int] | None = None) -> Iterator[DepthFrame]:
        stamps = self.depth_stamps()
        if self._depth is None:
            return
        chosen = range(len(stamps)) if indices is None else indices
        for i in chosen:
            if not 0 <= i < len(stamps):
                raise IndexError(f"{self.gt_path}: depth frame {i} out of range [0, {len(stamps)})")
            yield DepthFrame(int(i), int(stamps[i]), np.asarray(self._depth[i], dtype=np.float32))

    # -- calibration ------------------------------------------------------------------------

    def calibration(self, side: Side) -> CameraCalibration | None:
        source = self._calibration_source
        if isinstance(source, dict) and isinstance(source.get(side), CameraCalibration):
            return source[side]
        return self._carried_calibration(check_side(side))

    def rectifier(self, side: Side, rounding: str = "nearest") -> object:
        side = check_side(side)
        if (side, rounding) not in self._rectifiers:
            source = self._calibration_source
            if source is None:
                source = self._find_maps()
            self._rectifiers[side, rounding] = build_rectifier(
                source,
                side,
                self.height,
                self.width,
                self._carried_calibration(side),
                str(self.data_path),
                rounding,
            )
        return self._rectifiers[side, rounding]

    def _find_maps(self) -> CalibrationSource:
        scenario = re.sub(r"\d+$", "", self.name)
        folder = self.data_path.parent
        for place in (folder, folder / f"{scenario}_calib"):
            if place.is_dir():
                pairs = {side: find_map_files(place, side, scenario) for side in SIDES}
                if all(pairs.values()):
                    log.info("%s: rectifying with MVSEC maps in %s", self.name, place)
                    return pairs  # type: ignore[return-value]
        return None

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        for f in (getattr(self, "_data", None), getattr(self, "_gt", None)):
            if f is not None and f.id.valid:
                f.close()

    def __enter__(self) -> MvsecHdf5Sequence:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"MvsecHdf5Sequence({self.name!r}, {self.height}x{self.width}, "
            f"events L/R {self.num_events('left')}/{self.num_events('right')}, "
            f"{len(self.depth_stamps())} depth frames)"
        )
