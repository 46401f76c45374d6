"""Exact per-pixel spike counts (2, H, W): the StereoSpike network's input.

StereoSpike sums raw spike counts per pixel and polarity over a 50 ms window (channel 0 = ON,
1 = OFF) with no normalisation, so counts must be exact: one ``np.bincount`` over linear
indices, saturating only at the uint16 limit. Events outside the sensor are counted as dropped,
never wrapped onto another pixel. With numba (``kernels.HAVE_NUMBA``) contiguous EVENT_DTYPE
input is counted by one compiled scatter loop instead, with the same result.
"""

from __future__ import annotations

import numpy as np

from stereospike_ros.events import kernels
from stereospike_ros.events.errors import EventsError

_U16_MAX = np.iinfo(np.uint16).max


_CHUNK = 65536  # events per pass: every temporary stays in cache


def _counts(
    events: np.ndarray, height: int, width: int, t_start: int | None, t_end: int | None
) -> tuple[np.ndarray, int]:
    """Counts per (channel, y, x) as int64, and the in-window events that lay off the sensor.

    Linear index ``(channel * H + y) * W + x`` (channel 0 = ON, p != 0); events off the sensor
    or outside [t_start, t_end) go to one extra bin that is cut off, so nothing is ever wrapped.
    """
    n = len(events)
    size = 2 * height * width
    idx = np.empty(n, dtype=np.intp)
    dropped = 0
    for start in range(0, n, _CHUNK):
        chunk = events[start : start + _CHUNK]
        out = idx[start : start + _CHUNK]
        x, y = chunk["x"], chunk["y"]
        np.equal(chunk["p"], 0, out=out, casting="unsafe")
        out *= height
        out += y
        out *= width
        out += x
        off = (x >= width) | (y >= height)
        if t_start is not None or t_end is not None:
            t = chunk["t"]
            in_time = np.ones(len(chunk), dtype=bool)
            if t_start is not None:
                in_time &= t >= t_start
            if t_end is not None:
                in_time &= t < t_end
            off &= in_time
            out[~in_time] = size
        if off.any():
            dropped += int(np.count_nonzero(off))
            out[off] = size
    return np.bincount(idx, minlength=size + 1)[:size], dropped


def event_histogram(
    events: np.ndarray,
    height: int,
    width: int,
    t_start: int | None = None,
    t_end: int | None = None,
) -> tuple[np.ndarray, int]:
    """Counts (2, H, W) uint16 over [t_start, t_end) and how many events lay off the sensor."""
    if height <= 0 or width <= 0:
        raise EventsError(f"histogram size must be positive, got {height} x {width}")
    if kernels.HAVE_NUMBA:
        hist = np.zeros((2, height, width), dtype=np.uint16)
        return hist, kernels.accumulate_events(hist, events, t_start, t_end)
    counts, dropped = _counts(events, height, width, t_start, t_end)
    hist = np.minimum(counts, _U16_MAX).astype(np.uint16).reshape(2, height, width)
    return hist, dropped


def accumulate_into(
    hist: np.ndarray, events: np.ndarray, t_start: int | None = None, t_end: int | None = None
) -> int:
    """Add ``events`` to ``hist`` (2, H, W) uint16 in place, saturating; returns events dropped."""
    if hist.dtype != np.uint16 or hist.ndim != 3 or hist.shape[0] != 2:
        raise EventsError(f"hist must be (2, H, W) uint16, got {hist.dtype} {hist.shape}")
    if not hist.flags.c_contiguous:
        raise EventsError("hist must be C-contiguous to be updated in place")
    if kernels.HAVE_NUMBA:
        return kernels.accumulate_events(hist, events, t_start, t_end)
    return _accumulate_numpy(hist, events, t_start, t_end)


def _accumulate_numpy(
    hist: np.ndarray, events: np.ndarray, t_start: int | None, t_end: int | None
) -> int:
    """``accumulate_into`` in numpy: the fallback, and the reference the kernels must equal."""
    _, height, width = hist.shape
    counts, dropped = _counts(events, height, width, t_start, t_end)
    flat = hist.reshape(-1)
    counts += flat  # int64: min(old + count, max) is min(old + min(count, max), max)
    np.minimum(counts, _U16_MAX, out=counts)
    flat[:] = counts
    return dropped
