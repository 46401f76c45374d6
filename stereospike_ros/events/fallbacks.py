"""The numpy reference implementations behind the compiled kernels (``kernels.py``).

They run when numba is missing or switched off, for inputs the kernels do not take, and in
the tests as the result every kernel must equal bit for bit. This module is a leaf of the
events package (it imports only the CDR layouts and the event dtype), so ``kernels.py`` and
the modules that call ``kernels.py`` can all import it without an import cycle.

The EVT 3.0 and libcaer payload decoders keep their numpy paths beside their formats
(``evt3.py``, ``libcaer.py``): those paths are the formats' specification in code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stereospike_ros.events.cdr import event_block_views

__all__ = [
    "U16_MAX",
    "accumulate_into",
    "copy_events",
    "decode_event_array_blocks",
    "histogram_counts",
]

U16_MAX = int(np.iinfo(np.uint16).max)

_COPY_CHUNK = 32768  # events per pass: keeps each slice of the CDR block in cache across fields
_COUNT_CHUNK = 65536  # events per pass: every temporary of the histogram index stays in cache

#: x and y of one EVENT_DTYPE record read as one little-endian uint32 (y << 16 | x)
_XY_OUT = np.dtype({"names": ["xy"], "formats": ["<u4"], "offsets": [0], "itemsize": 13})


def copy_events(block: np.ndarray, out: np.ndarray) -> None:
    """Serialized events (a ``cdr`` record view) -> EVENT_DTYPE ``out``, chunk by chunk.

    Goes through contiguous temporaries because a field-to-field copy between two strided
    record arrays makes numpy walk both strides per element, and so that one chunk of the CDR
    block stays in cache for all fields. In little-endian CDR, x and y sit side by side exactly
    as in EVENT_DTYPE, so they travel as one uint32 (one strided read and one strided write
    instead of two each).
    """
    n = len(block)
    c = min(n, _COPY_CHUNK)
    le_xy = block.dtype["x"].byteorder != ">" and block.dtype.fields["y"][1] == 2
    src_xy = _xy_view(block) if le_xy else None
    out_xy = out.view(_XY_OUT)["xy"]
    xy = np.empty(c, dtype=np.uint32 if le_xy else np.uint16)
    t = np.empty(c, dtype=np.int64)
    out_p = out["p"].view(np.bool_)  # 0/1 bytes: the comparison writes them in place
    for s in range(0, n, _COPY_CHUNK):
        src = block[s : s + _COPY_CHUNK]
        dst = out[s : s + _COPY_CHUNK]
        k = len(src)
        xy_k, t_k = xy[:k], t[:k]
        if src_xy is not None:
            xy_k[...] = src_xy[s : s + _COPY_CHUNK]
            out_xy[s : s + k] = xy_k
        else:
            xy_k[...] = src["x"]
            dst["x"] = xy_k
            xy_k[...] = src["y"]
            dst["y"] = xy_k
        np.multiply(src["sec"], 1_000_000_000, out=t_k, dtype=np.int64)
        t_k += src["nanosec"]
        dst["t"] = t_k
        np.not_equal(src["polarity"], 0, out=out_p[s : s + k])


def _xy_view(block: np.ndarray) -> np.ndarray:
    """The x and y fields of a little-endian serialized event block as one strided uint32."""
    dtype = np.dtype(
        {"names": ["xy"], "formats": ["<u4"], "offsets": [0], "itemsize": block.dtype.itemsize}
    )
    return block.view(dtype)["xy"]


def decode_event_array_blocks(
    data: np.ndarray,
    starts: Sequence[int],
    counts: Sequence[int],
    big_endian: bool,
    out: np.ndarray,
) -> None:
    """``kernels.decode_event_array_blocks`` in numpy; the bounds are the caller's to check."""
    pos = 0
    for s, c in zip(starts, counts, strict=True):
        if c:
            first, rest = event_block_views(data, s, c, bool(big_endian))
            copy_events(first, out[pos : pos + 1])
            copy_events(rest, out[pos + 1 : pos + c])
        pos += c


def histogram_counts(
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
    for start in range(0, n, _COUNT_CHUNK):
        chunk = events[start : start + _COUNT_CHUNK]
        out = idx[start : start + _COUNT_CHUNK]
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


def accumulate_into(
    hist: np.ndarray, events: np.ndarray, t_start: int | None, t_end: int | None
) -> int:
    """``histogram.accumulate_into`` in numpy, on a checked ``hist``; returns events dropped."""
    _, height, width = hist.shape
    counts, dropped = histogram_counts(events, height, width, t_start, t_end)
    flat = hist.reshape(-1)
    counts += flat  # int64: min(old + count, max) is min(old + min(count, max), max)
    np.minimum(counts, U16_MAX, out=counts)
    flat[:] = counts
    return dropped
