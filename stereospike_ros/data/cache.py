"""A training cache: a split's frames converted once into HDF5, read lazily by a Dataset.

One file per split part holds ``x`` (N, 4, H, W) uint16 spike counts ``[L_ON, L_OFF, R_ON,
R_OFF]``, ``depth`` (N, H, W) float32, ``t_ns``, ``frame_index``, ``sequence_id`` (into the
``sequences`` attribute), chunked one frame per chunk so a random sample reads one chunk.

Re-running is a no-op when nothing changed: the file's ``key`` attribute hashes the format
version, the options, the frame indices and each input file's path, size and mtime (not its
contents: touching a file rebuilds). A conversion writes to a temporary name, sets
``complete`` last and renames, so an interrupted one never leaves a file that passes as a cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from stereospike_ros import __version__
from stereospike_ros.atomic import partial_path, remove_stale_partials
from stereospike_ros.data.errors import CacheError, MissingInputError
from stereospike_ros.data.frames import FrameOptions, FrameStats
from stereospike_ros.data.open import open_sequence
from stereospike_ros.data.sequence import CalibrationSource, PathLike, focal_baseline_of
from stereospike_ros.data.split_frames import SplitFrames
from stereospike_ros.data.splits import PARTS, Split
from stereospike_ros.events.histogram import LEFT_CHANNELS, STEREO_CHANNELS, stereo_channels

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


@dataclass(frozen=True, kw_only=True)
class CacheOptions(FrameOptions):
    """Everything besides the inputs that changes the cached frames: the frame options and
    the compression."""

    compression: str | None = "lzf"

    @classmethod
    def of(cls, frames: FrameOptions, compression: str | None = "lzf") -> CacheOptions:
        """The cache options of ``frames`` (a FrameOptions, or a CacheOptions to recompress)."""
        return cls(**{f.name: getattr(frames, f.name) for f in fields(FrameOptions)},
                   compression=compression)  # fmt: skip

    def to_dict(self) -> dict:
        """The options in the order caches have always stored and hashed them (a key that
        changed would rebuild every existing cache)."""
        order = ("window_ns", "fill_holes_px", "rectify", "compression", "protocol")
        return {name: getattr(self, name) for name in order}


#: (recording as open_sequence takes it, depth-frame indices)
CacheItem = tuple[PathLike | Sequence[PathLike], Sequence[int]]


def _input_files(source: PathLike | Sequence[PathLike]) -> list[Path]:
    """The files behind a recording (resolving prefixes the way open_sequence does)."""
    sequence = open_sequence(source)
    try:
        paths = getattr(sequence, "paths", None) or [
            getattr(sequence, "data_path", None),
            getattr(sequence, "gt_path", None),
        ]
    finally:
        sequence.close()
    files: list[Path] = []
    for path in (Path(p) for p in paths if p is not None):
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return files


def cache_key(items: Sequence[CacheItem], options: CacheOptions) -> str:
    """Hash of format version, options, indices and input files' paths, sizes and mtimes."""
    h = hashlib.sha256()
    options_dict = options.to_dict()
    if options_dict["protocol"] == "default":  # caches made before protocols existed stay current
        del options_dict["protocol"]
    h.update(json.dumps({"format": CACHE_FORMAT, "options": options_dict}).encode())
    for source, indices in items:
        for path in _input_files(source):
            st = path.stat()
            h.update(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        h.update(np.asarray(list(indices), dtype=np.int64).tobytes())
    return h.hexdigest()


def is_complete(path: PathLike, key: str | None = None) -> bool:
    """Whether ``path`` is a finished cache (of ``key``, when given)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            ok = bool(f.attrs.get("complete", False)) and f.attrs.get("format") == CACHE_FORMAT
            return ok and (key is None or f.attrs.get("key") == key)
    except OSError:
        return False


def build_cache(
    items: Sequence[CacheItem],
    out_path: PathLike,
    *,
    options: CacheOptions = CacheOptions(),
    calibration: CalibrationSource = None,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Convert the frames of ``items`` into the cache file ``out_path`` unless it is current."""
    out_path = Path(out_path)
    key = cache_key(items, options)
    remove_stale_partials(out_path)  # left by a conversion that was killed
    if not force and is_complete(out_path, key):
        log.info("%s is up to date", out_path)
        return out_path
    total = sum(len(indices) for _, indices in items)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(out_path)
    try:
        with h5py.File(tmp, "w") as f:
            _convert(f, items, total, options, calibration, progress, out_path.name)
            f.attrs["key"] = key
            f.attrs["complete"] = True  # last: a file without it is never used
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def _convert(
    f: h5py.File,
    items: Sequence[CacheItem],
    total: int,
    options: CacheOptions,
    calibration: CalibrationSource,
    progress: bool,
    label: str,
) -> None:
    f.attrs["format"] = CACHE_FORMAT
    f.attrs["created_by"] = f"stereospike_ros {__version__}"
    f.attrs["options"] = json.dumps(options.to_dict())
    f.attrs["channels"] = ",".join(STEREO_CHANNELS)
    names: list[str] = []
    sources: list[str] = []
    focal_baselines: list[float | None] = []  # f x B per recording (px*m), for baselines
    calibrations: list[dict[str, str]] = []  # where each recording's rectification came from
    stats = FrameStats()
    ds: dict[str, h5py.Dataset] = {}
    row = 0
    bar = tqdm(total=total, desc=f"caching {label}", unit="frame", disable=not progress)
    try:
        for source, indices in items:
            sequence = open_sequence(source, calibration=calibration)
            try:
                if not ds:
                    ds = _create(f, total, sequence.height, sequence.width, options.compression)
                elif ds["depth"].shape[1:] != (sequence.height, sequence.width):
                    raise CacheError(
                        f"{sequence.name} is {sequence.height}x{sequence.width} but earlier "
                        f"recordings in this cache are {ds['depth'].shape[1:]}"
                    )
                names.append(sequence.name)
                sources.append(str(source))
                frames = options.frames(sequence, indices, stats)
                focal_baselines.append(focal_baseline_of(sequence))
                calibrations.append(options.rectification(sequence, off="none (rectify off)"))
                for frame in frames:
                    ds["x"][row] = stereo_channels(frame.left, frame.right)
                    ds["depth"][row] = frame.depth
                    ds["t_ns"][row] = frame.t_ns
                    ds["frame_index"][row] = frame.index
                    ds["sequence_id"][row] = len(names) - 1
                    row += 1
                    bar.update()
            finally:
                sequence.close()
    finally:
        bar.close()
    if not ds:
        _create(f, 0, 0, 0, None)
    f.attrs["sequences"] = json.dumps(names)
    f.attrs["sources"] = json.dumps(sources)
    f.attrs["stats"] = json.dumps(asdict(stats))
    f.attrs["focal_baselines"] = json.dumps(focal_baselines)
    f.attrs["calibrations"] = json.dumps(calibrations)
    if row != total:
        raise CacheError(f"wrote {row} frames, expected {total}")


def _create(f: h5py.File, n: int, h: int, w: int, compression: str | None) -> dict:
    """The cache datasets; images chunked one frame per chunk (``h == 0``: an empty cache)."""
    images = {"compression": compression} if h else {}

    def image(name: str, shape: tuple[int, ...], dtype: type) -> h5py.Dataset:
        if h:
            images["chunks"] = (1, *shape)
            images["maxshape"] = (None, *shape)
        return f.create_dataset(name, (n, *shape), dtype, **images)

    return {
        "x": image("x", (4, h, w), np.uint16),
        "depth": image("depth", (h, w), np.float32),
        "t_ns": f.create_dataset("t_ns", (n,), np.int64),
        "frame_index": f.create_dataset("frame_index", (n,), np.int64),
        "sequence_id": f.create_dataset("sequence_id", (n,), np.int32),
    }


def cache_split(
    source: SplitFrames,
    cache_dir: PathLike,
    *,
    parts: Iterable[str] = PARTS,
    compression: str | None = "lzf",
    progress: bool = True,
    force: bool = False,
) -> dict[str, Path]:
    """Cache the ``parts`` of ``source``'s split, one file per part:
    ``cache_dir/<split>_<part>.h5``."""
    options = CacheOptions.of(source.options, compression)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in source.split.name)
    out = {}
    for part in parts:
        out[part] = build_cache(
            source.recordings(part),
            Path(cache_dir) / f"{safe}_{part}.h5",
            options=options,
            calibration=source.calibration,
            progress=progress,
            force=force,
        )
    return out


def build_split_cache(
    split: Split | str,
    root: PathLike,
    cache_dir: PathLike,
    *,
    parts: Iterable[str] = PARTS,
    sequences: Iterable[str] | None = None,
    options: CacheOptions = CacheOptions(),
    calibration: CalibrationSource = None,
    progress: bool = True,
    force: bool = False,
) -> dict[str, Path]:
    """Cache the ``parts`` of ``split`` (a Split, or a name/file for ``load_split``).

    Recordings are looked up under ``root`` by name; ``sequences`` lists the recordings an
    ``auto:`` split cuts (default: none). Files go to ``cache_dir/<split>_<part>.h5``.
    :func:`cache_split` of a :class:`SplitFrames` with these arguments.
    """
    source = SplitFrames(split, Path(root), tuple(sequences or ()), options, calibration)
    return cache_split(
        source,
        cache_dir,
        parts=parts,
        compression=options.compression,
        progress=progress,
        force=force,
    )


class CachedFrames(Dataset):
    """``(x, depth)`` samples of a cache file: x float32 (C, H, W), depth float32 (1, H, W).

    ``mono=True`` keeps the left camera's two channels only (C = 2), else C = 4. The file is
    opened lazily in each process that reads (DataLoader workers included) and never shared.
    """

    def __init__(self, path: PathLike, mono: bool = False) -> None:
        self.path = Path(path)
        self.mono = mono
        if not self.path.is_file():
            raise MissingInputError(f"cache file {self.path} does not exist")
        if not is_complete(self.path):
            raise CacheError(
                f"{self.path} is not a complete stereospike_ros cache (format {CACHE_FORMAT}); "
                "rebuild it"
            )
        with h5py.File(self.path, "r") as f:
            self._len = int(f["x"].shape[0])
            self.height, self.width = (int(v) for v in f["x"].shape[2:])
            self.sequences = json.loads(f.attrs["sequences"])
            self.options = json.loads(f.attrs["options"])
            #: per recording: f x B (px*m) and the origin of its rectification (absent in
            #: caches written before they were recorded)
            self.focal_baselines = json.loads(f.attrs.get("focal_baselines", "[]"))
            self.calibrations = json.loads(f.attrs.get("calibrations", "[]"))
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self._len

    @property
    def focal_baseline(self) -> float | None:
        """The recordings' common f x B, or None when unknown or not one value."""
        values = set(self.focal_baselines)
        return values.pop() if len(values) == 1 and None not in values else None

    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -self._len <= i < self._len:
            raise IndexError(f"{self.path}: sample {i} out of range [0, {self._len})")
        f = self._h5()
        x = f["x"][i, LEFT_CHANNELS] if self.mono else f["x"][i]
        depth = f["depth"][i]
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(depth[None])

    def info(self, i: int) -> dict:
        """Where sample ``i`` came from: sequence name, depth-frame index, stamp."""
        f = self._h5()
        return {
            "sequence": self.sequences[int(f["sequence_id"][i])],
            "frame_index": int(f["frame_index"][i]),
            "t_ns": int(f["t_ns"][i]),
        }

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None  # h5py handles do not cross processes
        state["_pid"] = None
        return state

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
