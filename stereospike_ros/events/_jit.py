"""The numba kernels behind ``kernels.py``; imported only on first use (importing numba is slow).

Each public kernel is one specialisation of a generic loop that numba inlines with constant
flags (byte order, rectify, time window), so LLVM drops the dead branches and keeps every
flag out of the loop instead of testing runtime flags per event. Indices are masked to 32
bits (``_IDX``; ``kernels.py`` keeps every array under 4 GiB) so numba's negative-index
wraparound folds away and LLVM merges the byte loads into word loads; a 32-bit mask is a
plain register move, where a wider one costs a BMI2 ``bzhi`` whose count register LLVM writes
partially, chaining the loop's iterations so that they cannot overlap. Records are
written and read through numba's record fields, one unaligned load or store per field.

A serialized dvs_msgs/Event k of a sequence whose first event starts at byte s: sec at
s + 16k + 4, nanosec at s + 16k + 8, polarity at s + 16k + 12; x and y at s + 16k (k = 0) or
s + 16k - 2 (k > 0). EVENT_DTYPE records: x@0 y@2 t@4 (little-endian) p@12, 13 bytes.
"""

# ruff: noqa: ANN001 (kernel argument types are numba's to infer)

from __future__ import annotations

import numba
import numpy as np

from stereospike_ros.events.types import EVENT_DTYPE

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
    iterations together, so that they cannot overlap.
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


# ---------------------------------------------------------------- EVT 3.0

# Copies of evt3.py's word types and rollover rule, not imports: numba's on-disk cache keys
# on this file alone, so everything the kernels' results depend on is written here.
_ADDR_Y, _ADDR_X, _VECT_BASE_X, _VECT_12, _VECT_8 = 0x0, 0x2, 0x3, 0x4, 0x5
_TIME_LOW, _TIME_HIGH = 0x6, 0x8
_HALF_HIGH = 2048  # a TIME_HIGH step back larger than this may be a 24-bit rollover
_PLAUSIBLE = 256  # ... if it lands at most this far past it; see evt3's time rules
#: events each word type can emit at most (0: none); -1 marks a type EVT 3.0 does not define
_EVT3_EVENTS = np.array([0, -1, 1, 0, 12, 8, 0, 0, 0, 0, 0, -1, -1, -1, 0, 0], dtype=np.int64)
_POP12 = np.array([bin(i).count("1") for i in range(4096)], dtype=np.uint8)
_CTZ12 = np.array([(i & -i).bit_length() - 1 if i else 12 for i in range(4096)], dtype=np.uint8)

#: layout of the int64 state array that mirrors ``evt3.Evt3State`` (HAS_*: 1 = not None);
#: ``evt3._state_array`` writes the fields in this order
(
    S_HIGH,
    S_HAS_HIGH,
    S_LAST_TH,
    S_HAS_LAST_TH,
    S_EPOCH,
    S_LOW,
    S_HAS_LOW,
    S_LOW_AFTER_HIGH,
    S_TIME_VALID,
    S_Y,
    S_BASE_X,
    S_POLARITY,
    S_WITHOUT_TIME,
    S_TH_JUMP,
    S_DISCONTINUITIES,
) = range(15)  # kernels.EVT3_STATE_SIZE


@helper
def _u16(buf, i, big):
    if big:
        return (np.int64(buf[i]) << 8) | np.int64(buf[i + 1])
    return np.int64(buf[i]) | (np.int64(buf[i + 1]) << 8)


@inline
def _evt3_capacity(buf, big):
    """(events the words can emit at most, index of the first undefined word or -1)."""
    n = len(buf) // 2
    total = 0
    for i in range(n):
        w = _u16(buf, (2 * i) & _IDX, big)
        c = w >> 12
        k = _EVT3_EVENTS[c]
        if k < 0:
            return 0, i
        if k == 12:
            total += _POP12[w & 0xFFF]
        elif k == 8:
            total += _POP12[w & 0xFF]
        else:
            total += k
    return total, -1


@inline
def _decode_evt3(buf, big, state, time_base):
    """One sequential pass with ``evt3.decode_evt3``'s rules; (events, kept, bad word or -1).

    ``state`` (see S_*) is read at the start and written back only when every word is
    defined, so a payload that raises leaves it as it was.
    """
    cap, bad = _evt3_capacity(buf, big)
    out = np.empty(cap, dtype=EVENT_DTYPE)
    if bad >= 0:
        return out, 0, bad
    high, has_high = state[S_HIGH], state[S_HAS_HIGH] != 0
    last_th, has_last_th = state[S_LAST_TH], state[S_HAS_LAST_TH] != 0
    epoch = state[S_EPOCH]
    low, has_low = state[S_LOW], state[S_HAS_LOW] != 0
    low_after_high, time_valid = state[S_LOW_AFTER_HIGH] != 0, state[S_TIME_VALID] != 0
    y, base_x, polarity = state[S_Y], state[S_BASE_X], state[S_POLARITY]
    without = state[S_WITHOUT_TIME]
    th_jump, discont = state[S_TH_JUMP] != 0, state[S_DISCONTINUITIES]
    t = (high * 4096 + low) * 1000 + time_base if time_valid else 0
    j = 0
    for i in range(len(buf) // 2):
        w = _u16(buf, (2 * i) & _IDX, big)
        c = w >> 12
        v = w & 0xFFF
        if c == _ADDR_X:
            if time_valid:
                r = out[j & _IDX]
                r.x = v & 0x7FF
                r.y = y
                r.t = t
                r.p = v >> 11
                j += 1
            else:
                without += 1
        elif c == _ADDR_Y:
            y = v & 0x7FF
        elif c == _TIME_LOW:
            if has_low and low_after_high and v < low:
                high += 1  # the 12-bit low wrapped and no TIME_HIGH was sent
            low, has_low, low_after_high = v, True, True
            if has_high:
                time_valid = True
            t = (high * 4096 + low) * 1000 + time_base
        elif c in (_VECT_12, _VECT_8):
            m = v if c == _VECT_12 else v & 0xFF
            if time_valid:
                while m:
                    r = out[j & _IDX]
                    r.x = min(base_x + _CTZ12[m], _U16_MAX)
                    r.y = y
                    r.t = t
                    r.p = polarity
                    j += 1
                    m &= m - 1
            else:
                without += _POP12[m]
            base_x += 12 if c == _VECT_12 else 8
        elif c == _VECT_BASE_X:
            base_x, polarity = v & 0x7FF, v >> 11
        elif c == _TIME_HIGH:
            if has_last_th:
                d = v - last_th
                roll = d < -_HALF_HIGH and d + 4096 <= _PLAUSIBLE
                small = -_PLAUSIBLE <= d <= _PLAUSIBLE
                if roll and not th_jump:
                    epoch += 1  # the 24-bit counter rolled over
                elif not small:
                    discont += 1
                th_jump = not small and not roll
            last_th, has_last_th = v, True
            high, has_high, low_after_high = epoch * 4096 + v, True, False
            t = (high * 4096 + (low if has_low else 0)) * 1000 + time_base
        # other defined types (padding, triggers, continued, others) carry no events
    state[S_HIGH], state[S_HAS_HIGH] = (high, 1) if has_high else (0, 0)
    state[S_LAST_TH], state[S_HAS_LAST_TH] = last_th, has_last_th
    state[S_EPOCH] = epoch
    state[S_LOW], state[S_HAS_LOW] = low, has_low
    state[S_LOW_AFTER_HIGH], state[S_TIME_VALID] = low_after_high, time_valid
    state[S_Y], state[S_BASE_X], state[S_POLARITY] = y, base_x, polarity
    state[S_WITHOUT_TIME] = without
    state[S_TH_JUMP], state[S_DISCONTINUITIES] = th_jump, discont
    return out, j, -1


def _evt3_variant(big: bool):
    def decode_evt3(buf, state, time_base):
        return _decode_evt3(buf, big, state, time_base)

    return jit(decode_evt3)


#: big_endian -> decode_evt3(buf, state, time_base) -> (events, kept, undefined word or -1)
EVT3 = {big: _evt3_variant(big) for big in (False, True)}


# ---------------------------------------------------------------- libcaer

_CAER_ROLLOVER_US = 1 << 31  # a copy of libcaer._ROLLOVER_US (see the EVT 3.0 note above)
_CAER_PLAUSIBLE_US = 1_000_000  # a copy of libcaer.PLAUSIBLE_US


@inline
def _decode_libcaer(buf, big, time_base):
    """``libcaer.decode_libcaer``'s loop; (events, index of the lowest timestamp if negative
    or -1, discontinuities). 8-byte records: uint32 data (x 31..17, y 16..2, polarity bit 1),
    int32 us."""
    n = len(buf) // 8
    out = np.empty(n, dtype=EVENT_DTYPE)
    wraps = 0
    discont = 0
    prev = np.int64(0)
    lowest, lowest_at = np.int64(0), -1
    for k in range(n):
        b = (8 * k) & _IDX
        data = _u32(buf, b, big)
        ts = np.int64(np.int32(_u32(buf, b + 4, big)))
        if ts < lowest:
            lowest, lowest_at = ts, k
        if k and ts < prev:
            if ts - prev + _CAER_ROLLOVER_US <= _CAER_PLAUSIBLE_US:
                wraps += 1  # the 31-bit counter rolled over inside the packet
            else:
                discont += 1
        prev = ts
        r = out[k & _IDX]
        r.x = (data >> 17) & 0x7FFF
        r.y = (data >> 2) & 0x7FFF
        r.p = (data >> 1) & 1
        r.t = (ts + wraps * _CAER_ROLLOVER_US) * 1000 + time_base
    return out, lowest_at, discont


def _libcaer_variant(big: bool):
    def decode_libcaer(buf, time_base):
        return _decode_libcaer(buf, big, time_base)

    return jit(decode_libcaer)


#: big_endian -> decode_libcaer(buf, time_base) -> (events, negative timestamp's index or -1,
#: discontinuities)
LIBCAER = {big: _libcaer_variant(big) for big in (False, True)}
