"""Rectify events with a per-pixel lookup table: raw pixel -> nearest rectified pixel.

Stereo depth needs epipolar-aligned events, and events only ever sit on integer raw pixels, so
the whole undistortion + rectification is computed once per camera (OpenCV, or MVSEC's map
files) and applied to every event as one table gather. Events whose rectified pixel falls
outside the rectified image, or whose raw pixel lies outside the sensor, are dropped and
counted: never clamped onto the border.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stereospike_ros.events.errors import CalibrationError
from stereospike_ros.events.types import EVENT_DTYPE

_INVALID = np.uint32(0xFFFFFFFF)
#: distortion model (sensor_msgs/CameraInfo name) -> accepted numbers of coefficients
_MODELS = {"plumb_bob": (4, 5, 8, 12, 14), "rational_polynomial": (8, 12, 14), "equidistant": (4,)}


class Rectifier:
    """Maps raw (x, y) to rectified (x, y) for one camera; call it on an event array.

    ``dropped`` counts every event dropped since construction, ``last_dropped`` those of the
    latest call. ``height``/``width`` are the raw sensor size; ``out_height``/``out_width``
    the rectified image size (the same unless given).
    """

    def __init__(
        self,
        height: int,
        width: int,
        lut: np.ndarray,
        out_height: int | None = None,
        out_width: int | None = None,
    ) -> None:
        lut = np.asarray(lut)
        if lut.shape != (height * width,) or lut.dtype != np.uint32:
            raise CalibrationError(
                f"lookup table must be uint32 of shape ({height * width},), got {lut.dtype} "
                f"{lut.shape}"
            )
        self.height, self.width = int(height), int(width)
        self.out_height = self.height if out_height is None else int(out_height)
        self.out_width = self.width if out_width is None else int(out_width)
        # Power-of-two rows and columns, with at least one invalid row and column beyond the
        # sensor: the index of raw (x, y) is then (y << x_bits) | x, cut straight out of the
        # packed (y << 16 | x) word with shifts and masks; raw pixels beyond the table (only
        # garbage input) are clipped onto its invalid last row or column first.
        self._x_bits, self._y_bits = self.width.bit_length(), self.height.bit_length()
        table = np.full((1 << self._y_bits, 1 << self._x_bits), _INVALID, dtype=np.uint32)
        table[: self.height, : self.width] = lut.reshape(self.height, self.width)
        self._lut = table.ravel()
        self._beyond = ~(((1 << self._y_bits) - 1) << 16 | ((1 << self._x_bits) - 1)) & 0xFFFFFFFF
        self.dropped = 0
        self.last_dropped = 0
        #: what the table was built from, for messages ("identity", "MVSEC maps ...", ...)
        self.source = "lookup table"

    # ---- constructors
    @classmethod
    def identity(cls, height: int, width: int) -> Rectifier:
        """Already-rectified events (simulator, pre-rectified recordings)."""
        y, x = np.mgrid[0:height, 0:width].astype(np.uint32)
        rectifier = cls(height, width, ((y << 16) | x).ravel())
        rectifier.source = "identity"
        return rectifier

    @classmethod
    def from_maps(
        cls,
        x_map: np.ndarray,
        y_map: np.ndarray,
        out_height: int | None = None,
        out_width: int | None = None,
        source: str = "maps",
        rounding: str = "nearest",
    ) -> Rectifier:
        """``x_map[y, x]``, ``y_map[y, x]``: rectified float coordinates of raw pixel (x, y).

        ``rounding``: ``nearest`` pixel (default) or ``truncate`` (``int()``, the StereoSpike
        authors' code: a rectified coordinate in [k, k + 1) lands on pixel k).
        """
        x_map = np.asarray(x_map, dtype=np.float64)
        y_map = np.asarray(y_map, dtype=np.float64)
        if x_map.ndim != 2 or x_map.shape != y_map.shape or x_map.size == 0:
            raise CalibrationError(
                f"{source}: x and y maps must be 2-D and of one shape, got {x_map.shape} and "
                f"{y_map.shape}"
            )
        height, width = x_map.shape
        out_h = height if out_height is None else out_height
        out_w = width if out_width is None else out_width
        packed = _pack(x_map, y_map, out_h, out_w, rounding)
        rectifier = cls(height, width, packed, out_h, out_w)
        rectifier.source = source
        return rectifier

    @classmethod
    def from_mvsec_maps(
        cls, x_map_path: str | Path, y_map_path: str | Path, rounding: str = "nearest"
    ) -> Rectifier:
        """MVSEC ``*_x_map.txt`` / ``*_y_map.txt`` (260 x 346 text floats indexed [y, x])."""
        maps = [_load_map(Path(p)) for p in (x_map_path, y_map_path)]
        source = f"MVSEC maps {x_map_path}, {y_map_path}"
        return cls.from_maps(*maps, source=source, rounding=rounding)

    @classmethod
    def from_camera_info(
        cls,
        height: int,
        width: int,
        K: Any,  # noqa: N803 (CameraInfo field names)
        D: Any,  # noqa: N803 (CameraInfo field names)
        R: Any,  # noqa: N803 (CameraInfo field names)
        P: Any,  # noqa: N803 (CameraInfo field names)
        distortion_model: str = "plumb_bob",
        rounding: str = "nearest",
    ) -> Rectifier:
        """From ``sensor_msgs/CameraInfo`` fields; ``plumb_bob`` or ``equidistant`` (fisheye).

        Rectified pixel = P * R * undistort(K, D, raw pixel), as OpenCV's undistortPoints
        computes it (iterated to 1e-9); the rectified image has the same size as the raw one.
        """
        import cv2  # imported here: only calibration needs OpenCV

        K = _matrix(K, (3, 3), "K")
        R = _matrix(R, (3, 3), "R")
        P = _matrix(P, (3, 4), "P")
        D = np.asarray(D, dtype=np.float64).ravel()
        if distortion_model not in _MODELS:
            raise CalibrationError(
                f"distortion_model {distortion_model!r} is not supported; supported: "
                f"{', '.join(_MODELS)}"
            )
        if len(D) == 0:
            D = np.zeros(_MODELS[distortion_model][0])
        if len(D) not in _MODELS[distortion_model]:
            raise CalibrationError(
                f"{distortion_model} takes {_MODELS[distortion_model]} coefficients, D has {len(D)}"
            )
        if height <= 0 or width <= 0 or height > 0xFFFF or width > 0xFFFF:
            raise CalibrationError(f"bad image size {height} x {width}")
        y, x = np.mgrid[0:height, 0:width].astype(np.float64)
        pts = np.stack([x.ravel(), y.ravel()], axis=-1)[:, None, :]
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-9)
        if distortion_model == "equidistant":
            rect = cv2.fisheye.undistortPoints(pts, K, D, R=R, P=P, criteria=criteria)
        else:
            rect = cv2.undistortPoints(pts, K, D, R=R, P=P, criteria=criteria)
        rect = rect.reshape(height, width, 2)
        rectifier = cls(height, width, _pack(rect[..., 0], rect[..., 1], height, width, rounding))
        rectifier.source = f"camera_info ({distortion_model})"
        return rectifier

    @classmethod
    def from_calibration(cls, calibration: Any) -> Rectifier:
        """From any object with CameraInfo-like ``height width K D R P distortion_model``."""
        try:
            return cls.from_camera_info(
                calibration.height,
                calibration.width,
                calibration.K,
                calibration.D,
                calibration.R,
                calibration.P,
                getattr(calibration, "distortion_model", "plumb_bob"),
            )
        except AttributeError as err:
            raise CalibrationError(f"{type(calibration).__name__} lacks a field: {err}") from err

    # ---- inspection
    def lut(self) -> np.ndarray:
        """(height, width) uint32: ``y << 16 | x`` of each raw pixel's rectified pixel, or
        0xFFFFFFFF where it leaves the image."""
        table = self._lut.reshape(1 << self._y_bits, 1 << self._x_bits)
        return table[: self.height, : self.width].copy()

    def maps(self) -> tuple[np.ndarray, np.ndarray]:
        """(x_map, y_map) float32 (H, W): the integer rectified pixel of each raw pixel, NaN
        where it leaves the image. ``Rectifier.from_maps`` of them rebuilds this table exactly
        (that is how the event player hands its rectification to the depth node)."""
        lut = self.lut()
        valid = lut != _INVALID
        x_map = np.where(valid, lut & 0xFFFF, np.nan).astype(np.float32)
        y_map = np.where(valid, lut >> 16, np.nan).astype(np.float32)
        return x_map, y_map

    @property
    def padded_table(self) -> tuple[np.ndarray, int]:
        """(table, x_bits): the flat padded table that ``__call__`` and the compiled kernels
        index with ``(y << x_bits) | x``; ``y << 16 | x`` of the rectified pixel, or 0xFFFFFFFF.
        Read it, never write it: the Rectifier owns it."""
        return self._lut, self._x_bits

    def pixels_differing(self, other: Rectifier) -> int:
        """How many raw pixels the two tables send to different places (all, if the sizes
        differ)."""
        if (self.height, self.width) != (other.height, other.width):
            return self.height * self.width
        return int((self.lut() != other.lut()).sum())

    # ---- use
    def __call__(self, events: np.ndarray, *, inplace: bool = False) -> np.ndarray:
        """Rectified ``events`` (EVENT_DTYPE) without the ones that leave the image.

        Returns a new array unless ``inplace``, which rewrites (and compacts) ``events`` itself
        and returns a view of its kept head: use it on freshly decoded batches.
        """
        if events.dtype != EVENT_DTYPE:
            raise TypeError(f"events must have EVENT_DTYPE, got {events.dtype}")
        n = len(events)
        out = events if inplace else np.empty_like(events)
        src, dst = events.view(_RECORD), out.view(_RECORD)
        src_xy, dst_xy = events.view(_XY)["xy"], out.view(_XY)["xy"]
        src_t, dst_t, src_p, dst_p = events["t"], out["t"], events["p"], out["p"]
        c = min(n, _CHUNK)
        idx, tmp = np.empty(c, dtype=np.intp), np.empty(c, dtype=np.intp)
        word = np.empty(c, dtype=np.uint32)
        packed, keep = np.empty(c, dtype=np.uint32), np.empty(c, dtype=bool)
        x_bits, x_mask = self._x_bits, (1 << self._x_bits) - 1
        pos = 0
        for start in range(0, n, _CHUNK):  # chunks keep every temporary in cache
            k0 = min(_CHUNK, n - start)
            i, t, xy, pk, kk = idx[:k0], tmp[:k0], word[:k0], packed[:k0], keep[:k0]
            xy[...] = src_xy[start : start + _CHUNK]  # y << 16 | x, one strided read
            np.bitwise_and(xy, self._beyond, out=t, casting="unsafe")
            if t.any():  # coordinates beyond the table: clip them onto its invalid edges
                np.minimum(xy >> 16, (1 << self._y_bits) - 1, out=i, casting="unsafe")
                np.minimum(xy & 0xFFFF, x_mask, out=t, casting="unsafe")
                i <<= x_bits
            else:
                np.right_shift(xy, 16 - x_bits, out=i, casting="unsafe")
                i &= ~x_mask
                np.bitwise_and(xy, x_mask, out=t, casting="unsafe")
            i |= t
            np.take(self._lut, i, out=pk)
            np.not_equal(pk, _INVALID, out=kk)
            kept = np.flatnonzero(kk)
            k = len(kept)
            if k == k0:  # nothing dropped: move the records only if they must shift
                if not inplace or pos != start:
                    dst[pos : pos + k] = src[start : start + _CHUNK]
                dst_xy[pos : pos + k] = pk
            else:  # gather the kept events field by field (faster than 13-byte records)
                stop = start + _CHUNK
                kept_t, kept_p = src_t[start:stop].take(kept), src_p[start:stop].take(kept)
                dst_t[pos : pos + k] = kept_t
                dst_p[pos : pos + k] = kept_p
                dst_xy[pos : pos + k] = pk.take(kept)
            pos += k
        self.last_dropped = n - pos
        self.dropped += self.last_dropped
        return out[:pos]


_CHUNK = 65536
_RECORD = np.dtype((np.void, EVENT_DTYPE.itemsize))
#: x and y of an EVENT_DTYPE record as one little-endian uint32: y << 16 | x, as the table packs
_XY = np.dtype({"names": ["xy"], "formats": ["<u4"], "offsets": [0], "itemsize": 13})


ROUNDINGS = ("nearest", "truncate")


def _pack(
    x_map: np.ndarray, y_map: np.ndarray, out_h: int, out_w: int, rounding: str = "nearest"
) -> np.ndarray:
    """Round to the nearest pixel (or truncate); pack (y << 16 | x), INVALID where it leaves
    the image. Truncation keeps [0, size): ``int()`` of a coordinate in (-1, 0) would give 0,
    but the authors drop negative coordinates before truncating, as this does."""
    if rounding not in ROUNDINGS:
        raise CalibrationError(f"rounding {rounding!r} is not one of {ROUNDINGS}")
    offset = 0.5 if rounding == "nearest" else 0.0
    with np.errstate(invalid="ignore"):
        rx = np.floor(x_map + offset)
        ry = np.floor(y_map + offset)
        valid = (rx >= 0) & (rx < out_w) & (ry >= 0) & (ry < out_h)  # NaN compares False
    packed = np.full(x_map.shape, _INVALID, dtype=np.uint32)
    packed[valid] = (ry[valid].astype(np.uint32) << 16) | rx[valid].astype(np.uint32)
    return packed.ravel()


def _matrix(value: Any, shape: tuple[int, int], name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size != shape[0] * shape[1]:
        raise CalibrationError(f"{name} must have {shape[0]}x{shape[1]} values, got {arr.shape}")
    arr = arr.reshape(shape)
    if not np.isfinite(arr).all():
        raise CalibrationError(f"{name} has non-finite values: {arr.tolist()}")
    return arr


def _load_map(path: Path) -> np.ndarray:
    try:
        text = path.read_text()
    except OSError as err:
        raise CalibrationError(f"cannot read rectification map {path}: {err}") from err
    try:
        rows = [np.array(r.replace(",", " ").split(), dtype=np.float64) for r in text.splitlines()]
    except ValueError as err:
        raise CalibrationError(f"{path}: not a table of numbers: {err}") from err
    rows = [r for r in rows if len(r)]
    if not rows or len({len(r) for r in rows}) != 1:
        lengths = sorted({len(r) for r in rows})
        raise CalibrationError(f"{path}: rows have different lengths {lengths}")
    return np.stack(rows)
