"""The numba kernels behind ``kernels.py``; imported only on first use (numba costs ~0.5 s).

Each public kernel is one specialisation of a generic loop that numba inlines with constant
flags (byte order, rectify, time window), so LLVM drops the dead branches and keeps every
flag out of the loop: 1.6x faster than testing runtime flags per event. Indices are masked
to 32 bits (``_IDX``; ``kernels.py`` keeps every array under 4 GiB) so numba's negative-index
wraparound folds away and LLVM merges the byte loads into word loads (3x faster decode); a
32-bit mask is a plain register move, where a wider one costs a BMI2 ``bzhi`` whose count
register LLVM writes partially, chaining the loop's iterations (2x slower). Records are
written and read through numba's record fields, one unaligned load or store per field.

A serialized dvs_msgs/Event k of a sequence whose first event starts at byte s: sec at
s + 16k + 4, nanosec at s + 16k + 8, polarity at s + 16k + 12; x and y at s + 16k (k = 0) or
s + 16k - 2 (k > 0). EVENT_DTYPE records: x@0 y@2 t@4 (little-endian) p@12, 13 bytes.
"""

# ruff: noqa: ANN001 (kernel argument types are numba's to infer)

from __future__ import annotations

import numba
import numpy as np

_IDX = 0xFFFFFFFF  # see above: every index fits 32 bits
_INVALID = 0xFFFFFFFF  # Rectifier's "leaves the image" table entry
_U16_MAX = 0xFFFF

jit = numba.njit(nogil=True, cache=True)
inline = numba.njit(inline="always")
helper = numba.njit(nogil=True)


@helper
def _u32(buf, i, big):
    if big:
        return (
            (np.int64(buf[i]) << 24)
            | (np.int64(buf[i + 1]) << 16)
            | (np.int64(buf[i + 2]) << 8)
            | np.int64(buf[i + 3])
        )
    return (
        np.int64(buf[i])
        | (np.int64(buf[i + 1]) << 8)
        | (np.int64(buf[i + 2]) << 16)
        | (np.int64(buf[i + 3]) << 24)
    )


@helper
def _xy(v, big):
    """x and y from the 4 bytes of a serialized event's x and y read as one integer ``v``."""
    if big:
        return v >> 16, v & 0xFFFF
    return v & 0xFFFF, v >> 16


@helper
def _beyond(v, big, w, h):
    """x >= w or y >= h, tested on ``v`` itself.

    Reading x and y as two 2-byte big-endian loads (which LLVM does when only the halves of
    ``v`` are used) puts them in 16-bit registers whose partial writes chain the loop's
    iterations together: 2x slower on this AMD EPYC.
    """
    if big:
        return v >= (w << 16) or (v & 0xFFFF) >= h
    return (v & 0xFFFF) >= w or (v >> 16) >= h


@helper
def _time(buf, b, big):
    """sec * 1e9 + nanosec of the serialized event whose 16-byte slot starts at ``b``."""
    sec = np.int64(
        np.int32(_u32(buf, b + 4, big))
    )  # int32 seconds (numba wraps, then sign-extends)
    return sec * 1_000_000_000 + _u32(buf, b + 8, big)


@helper
def _outside(size, s, c):
    """Whether ``c`` serialized events from byte ``s`` leave a ``size``-byte buffer."""
    if s < 0 or c < 0 or s > size:
        return True
    return c > 0 and c > (size - s + 3) // 16  # s + 16c - 3 > size, without overflow


@inline
def _decode_blocks(buf, starts, counts, big, out):
    """Checks, then decodes; -1, or the first sequence outside ``buf`` (len(starts): the
    counts do not add up to ``len(out)``), before writing anything."""
    total = 0
    for i in range(len(starts)):
        if _outside(len(buf), starts[i], counts[i]):
            return i
        total += counts[i]
    if total != len(out):
        return len(starts)
    j = 0
    for i in range(len(starts)):
        s = starts[i]
        for k in range(counts[i]):
            b = (s + 16 * k) & _IDX
            a = (b - 2 if k else b) & _IDX
            r = out[j & _IDX]  # record fields: one unaligned store each
            r.x, r.y = _xy(_u32(buf, a, big), big)
            r.t = _time(buf, b, big)
            r.p = buf[b + 12] != 0
            j += 1
    return -1


def _decode_variant(big: bool):
    def decode_blocks(buf, starts, counts, out):
        return _decode_blocks(buf, starts, counts, big, out)

    return jit(decode_blocks)


#: big_endian -> decode_blocks(buf, starts, counts, out) -> -1 or the bad sequence's index
DECODE = {big: _decode_variant(big) for big in (False, True)}


@inline
def _count(buf, start, count, big, rectify, timed, lut, x_bits, raw_h, raw_w, hist, h, w, win):
    """Decode, rectify and count one sequence into flat ``hist``; (rect dropped, off ``hist``).

    ``win`` = (t0, t1, has_t1) int64: keep t0 <= t < t1 (no upper bound unless has_t1).
    (-1, -1) when the sequence leaves ``buf``, before touching ``hist``.
    """
    if _outside(len(buf), start, count):
        return -1, -1
    rect_dropped = 0
    off = 0
    t0, t1, has_t1 = win[0], win[1], win[2] != 0
    for k in range(count):
        b = (start + 16 * k) & _IDX
        a = (b - 2 if k else b) & _IDX
        v = _u32(buf, a, big)
        if rectify:
            if _beyond(v, big, raw_w, raw_h):
                rect_dropped += 1
                continue
            x, y = _xy(v, big)
            v = np.int64(lut[((y << x_bits) | x) & _IDX])  # rectified y << 16 | x
            if v == _INVALID:
                rect_dropped += 1
                continue
            off_hist = _beyond(v, False, w, h)
            x, y = _xy(v, False)
        else:
            off_hist = _beyond(v, big, w, h)
            x, y = _xy(v, big)
        if timed:
            t = _time(buf, b, big)
            if t < t0 or (has_t1 and t >= t1):
                continue
        if off_hist:
            off += 1
            continue
        i = (((0 if buf[b + 12] != 0 else h) + y) * w + x) & _IDX
        c = hist[i]
        if c != _U16_MAX:
            hist[i] = c + 1
    return rect_dropped, off


def _count_variant(big: bool, rectify: bool, timed: bool):
    def count_block(buf, start, count, lut, x_bits, raw_h, raw_w, hist, h, w, win):
        return _count(
            buf, start, count, big, rectify, timed, lut, x_bits, raw_h, raw_w, hist, h, w, win
        )

    return jit(count_block)


#: (big_endian, rectify, timed) -> count_block(buf, start, count, lut, x_bits, raw_h, raw_w,
#: hist, h, w, win)
COUNT = {
    (big, rectify, timed): _count_variant(big, rectify, timed)
    for big in (False, True)
    for rectify in (False, True)
    for timed in (False, True)
}


@inline
def _accumulate(events, hist, h, w, timed, win):
    """EVENT_DTYPE records counted into flat ``hist``; returns the in-window ones off ``hist``."""
    off = 0
    t0, t1, has_t1 = win[0], win[1], win[2] != 0
    for j in range(len(events)):
        r = events[j & _IDX]
        if timed and (r.t < t0 or (has_t1 and r.t >= t1)):
            continue
        x = np.int64(r.x)
        y = np.int64(r.y)
        if x >= w or y >= h:
            off += 1
            continue
        i = (((0 if r.p != 0 else h) + y) * w + x) & _IDX
        c = hist[i]
        if c != _U16_MAX:
            hist[i] = c + 1
    return off


def _accumulate_variant(timed: bool):
    def accumulate(events, hist, h, w, win):
        return _accumulate(events, hist, h, w, timed, win)

    return jit(accumulate)


#: timed -> accumulate(events, hist, h, w, win)
ACCUMULATE = {timed: _accumulate_variant(timed) for timed in (False, True)}


@jit
def rectify(src, dst, lut, x_bits, raw_h, raw_w):
    """``Rectifier.__call__``'s loop: kept events rewritten (and compacted) into ``dst``.

    ``dst`` may be ``src`` itself: record j is read before any record >= j is written.
    Returns how many events were kept.
    """
    pos = 0
    for j in range(len(src)):
        r = src[j & _IDX]
        x = np.int64(r.x)
        y = np.int64(r.y)
        if x >= raw_w or y >= raw_h:
            continue
        v = lut[((y << x_bits) | x) & _IDX]
        if v == _INVALID:
            continue
        t, p = r.t, r.p
        d = dst[pos & _IDX]
        d.x = v & 0xFFFF
        d.y = v >> 16
        d.t = t
        d.p = p
        pos += 1
    return pos
