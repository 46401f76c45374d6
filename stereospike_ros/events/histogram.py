"""Exact per-pixel spike counts (2, H, W): the StereoSpike network's input.

StereoSpike sums raw spike counts per pixel and polarity over a 50 ms window (channel 0 = ON,
1 = OFF) with no normalisation, so counts must be exact: one ``np.bincount`` over linear
indices, saturating only at the uint16 limit. Events outside the sensor are counted as dropped,
never wrapped onto another pixel (``fallbacks.histogram_counts``). With numba
(``kernels.HAVE_NUMBA``) contiguous EVENT_DTYPE input is counted by one compiled scatter loop
instead, with the same result.
"""

from __future__ import annotations

import numpy as np

from stereospike_ros.events import fallbacks, kernels
from stereospike_ros.events.errors import EventsError

#: A stereo pair's histograms stacked as one ``(4, H, W)`` array, channel by channel: the left
#: camera's ON and OFF counts, then the right's. The network input, the frame cache and the
#: evaluator all stack and split through the helpers below, so the order lives here alone.
STEREO_CHANNELS = ("L_ON", "L_OFF", "R_ON", "R_OFF")
#: The left camera's channels of a stereo stack (all a monocular network sees), and the right's.
LEFT_CHANNELS = slice(0, 2)
RIGHT_CHANNELS = slice(2, 4)


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
    counts, dropped = fallbacks.histogram_counts(events, height, width, t_start, t_end)
    hist = np.minimum(counts, fallbacks.U16_MAX).astype(np.uint16).reshape(2, height, width)
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
    return fallbacks.accumulate_into(hist, events, t_start, t_end)


def stereo_channels(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """One ``(4, H, W)`` array in :data:`STEREO_CHANNELS` order from two ``(2, H, W)``
    histograms (same dtype as the inputs)."""
    return np.concatenate((left, right), axis=0)


def split_stereo_channels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``(left, right)`` ``(2, H, W)`` views of a :func:`stereo_channels` stack."""
    return x[LEFT_CHANNELS], x[RIGHT_CHANNELS]
