"""Data protocols: how a recording becomes (spike histograms, ground truth) frames.

``default`` (this package): each camera's events in the ``window`` before each depth stamp,
rectified coordinates rounded to the nearest pixel, ground truth as recorded (NaN = unknown).

``paper`` (the StereoSpike authors' code, for numbers that sit next to the paper's tables):

- ground truth: NaN becomes 0 and a grayscale **area closing** of 24 px (4-connected) fills
  every dark basin smaller than 24 px, holes and valid dips alike; pixels still at 0 are
  unknown. It changes already-valid pixels too (a small patch nearer than its surroundings is
  raised to them);
- **binning** on a fixed grid from each camera's first event after ``first stamp - window``:
  frame k takes the events in the open interval ``(t0 + k w, t0 + (k + 1) w)``, whatever its
  stamp (the same windows as ``default`` only when stamps are exactly ``w`` apart), events at
  or after the last frame's stamp dropped;
- rectified coordinates **truncated** (``int()``): [k, k + 1) lands on pixel k, not the
  nearest.

Loss and metrics count the same ground-truth pixels in both: finite and > 0 m.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["PROTOCOLS", "DataProtocol", "area_closing", "get_protocol"]


@dataclass(frozen=True)
class DataProtocol:
    """One way of cutting frames; see the module docstring for the two that exist."""

    name: str
    gt_closing_px: int = 0  # grayscale area closing of the ground truth (0 = off)
    binning: str = "stamp"  # "stamp": [t - w, t) per depth stamp; "grid": from the first event
    rounding: str = "nearest"  # rectified coordinate -> pixel: "nearest" or "truncate"

    def to_dict(self) -> dict:
        return asdict(self)


PROTOCOLS: dict[str, DataProtocol] = {
    "default": DataProtocol("default"),
    "paper": DataProtocol("paper", gt_closing_px=24, binning="grid", rounding="truncate"),
}


def get_protocol(value: str | DataProtocol | None) -> DataProtocol:
    """A protocol by name (``None`` = default); an unknown name is a ValueError naming both."""
    if isinstance(value, DataProtocol):
        return value
    name = value or "default"
    if name not in PROTOCOLS:
        raise ValueError(f"protocol {name!r} is unknown; choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def area_closing(depth: np.ndarray, area_px: int) -> np.ndarray:
    """Grayscale area closing (4-connected) of a depth map, NaN read as 0 and given back as NaN.

    Each pixel becomes the lowest level ``h`` at which its connected component of
    ``{depth <= h}`` holds at least ``area_px`` pixels: basins (holes at 0 and valid dips)
    smaller than ``area_px`` are raised to the level where they join a large enough region.
    Pixels added in increasing order into a union-find; a component's waiting pixels are
    assigned when it first reaches the area, so each pixel is touched a bounded number of
    times.
    """
    filled = np.nan_to_num(np.asarray(depth, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if area_px <= 1 or filled.size == 0:
        out = filled
    else:
        out = _area_closing(filled, int(area_px))
    out = out.astype(np.float32)
    out[out <= 0] = np.nan
    return out


def _area_closing(image: np.ndarray, area: int) -> np.ndarray:
    order = np.argsort(image.ravel(), kind="stable")
    kernel = _compiled()
    out = (kernel or _closing_loop)(image.ravel().copy(), order, image.shape[1], area)
    return out.reshape(image.shape)


_KERNEL: list = []


def _compiled() -> object:
    """The loop compiled by numba when it is installed, else None (the same loop in Python:
    one interpreted step per pixel, so slow on full frames but correct)."""
    if not _KERNEL:
        try:
            import numba

            _KERNEL.append(numba.njit(cache=True, nogil=True)(_closing_loop))
        except ImportError:  # pragma: no cover - numba is optional
            _KERNEL.append(None)
    return _KERNEL[0]


def _closing_loop(flat: np.ndarray, order: np.ndarray, width: int, area: int) -> np.ndarray:
    """Union-find over the pixels in increasing order (written for numba: arrays, no closures)."""
    n = flat.size
    height = n // width
    parent = np.full(n, -1, dtype=np.int64)
    size = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=np.bool_)
    head = np.full(n, -1, dtype=np.int64)  # waiting pixels of a root: a linked list
    tail = np.full(n, -1, dtype=np.int64)
    nxt = np.full(n, -1, dtype=np.int64)
    out = flat.copy()
    neighbours = np.empty(4, dtype=np.int64)
    for i in range(n):
        p = order[i]
        level = flat[p]
        parent[p] = p
        size[p] = 1
        head[p] = p
        tail[p] = p
        y = p // width
        x = p - y * width
        neighbours[0] = p - width if y > 0 else -1
        neighbours[1] = p + width if y + 1 < height else -1
        neighbours[2] = p - 1 if x > 0 else -1
        neighbours[3] = p + 1 if x + 1 < width else -1
        for k in range(4):
            q = neighbours[k]
            if q < 0 or parent[q] < 0:
                continue
            a = p
            while parent[a] != a:
                a = parent[a]
            b = q
            while parent[b] != b:
                b = parent[b]
            c = q  # path compression of q's branch
            while parent[c] != b:
                c_next = parent[c]
                parent[c] = b
                c = c_next
            if a == b:
                continue
            if size[a] < size[b]:
                a, b = b, a
            parent[b] = a
            size[a] += size[b]
            if head[b] != -1:  # append b's waiting pixels to a's
                if head[a] == -1:
                    head[a] = head[b]
                else:
                    nxt[tail[a]] = head[b]
                tail[a] = tail[b]
            done[a] = done[a] or done[b]
        root = p
        while parent[root] != root:
            root = parent[root]
        if done[root] or size[root] >= area:
            done[root] = True
            w = head[root]
            while w != -1:
                out[w] = level
                w = nxt[w]
            head[root] = -1
            tail[root] = -1
    return out
