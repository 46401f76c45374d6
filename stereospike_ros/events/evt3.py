"""Prophesee EVT 3.0 payloads (``event_camera_msgs/EventPacket`` encoding ``evt3``), vectorized.

EVT 3.0 is a stream of 16-bit words, type in bits 15..12. It only sends what changed: a word
sets the row (EVT_ADDR_Y), the time (EVT_TIME_HIGH: bits 23..12 of a 24-bit microsecond
counter, EVT_TIME_LOW: bits 11..0), a vector base (VECT_BASE_X: x and polarity), or emits
events (EVT_ADDR_X: one event; VECT_12 / VECT_8: one event per set bit at base_x + bit, then
base_x advances by 12 / 8). A decoder therefore carries state; here that state is forward-filled
with ``np.maximum.accumulate`` over word indices, so Python never loops over words.

Time rules (documented because sensors and writers differ):
- the 24-bit counter rolls over every 16.78 s; a TIME_HIGH more than half its range (2048)
  below the previous one starts a new epoch (+2**24 us) only when it is plausible: it lands at
  most ``PLAUSIBLE_STEP`` (256, about 1 s) past the rollover, and the TIME_HIGH before it was
  not itself a jump. Any other step larger than ``PLAUSIBLE_STEP`` either way is a
  discontinuity (a lost packet, a restarted sensor, garbage): counted in
  ``Evt3State.discontinuities``, the epoch kept, the time taken as the new TIME_HIGH says, so
  one bad packet cannot shift a camera's time by 16.8 s for good. A small step back is jitter;
- a TIME_LOW smaller than the previous TIME_LOW with no TIME_HIGH between them means the
  12-bit low counter wrapped and the writer sent no TIME_HIGH (expelliarmus does this):
  time high is then advanced by one (+4096 us);
- events before the stream has seen a TIME_HIGH followed by a TIME_LOW have no time and are
  dropped (counted in ``Evt3State.events_without_time``), as event_camera_codecs does.

With numba installed (``kernels.HAVE_NUMBA``) the same rules run as one compiled sequential
pass over the words (``_jit.EVT3``); this vectorized path is the reference and the fallback,
and both give the same events and leave the same state, however the stream is cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stereospike_ros.events import kernels
from stereospike_ros.events.errors import DecodeError, EncodeError
from stereospike_ros.events.types import EVENT_DTYPE, empty_events

ADDR_Y, ADDR_X, VECT_BASE_X, VECT_12, VECT_8 = 0x0, 0x2, 0x3, 0x4, 0x5
TIME_LOW, CONTINUED_4, TIME_HIGH, PADDING, EXT_TRIGGER = 0x6, 0x7, 0x8, 0x9, 0xA
OTHERS, CONTINUED_12 = 0xE, 0xF
_KNOWN = np.zeros(16, dtype=bool)
_KNOWN[[ADDR_Y, ADDR_X, VECT_BASE_X, VECT_12, VECT_8, TIME_LOW, CONTINUED_4, TIME_HIGH]] = True
_KNOWN[[PADDING, EXT_TRIGGER, OTHERS, CONTINUED_12]] = True
_POPCOUNT12 = np.array([bin(i).count("1") for i in range(4096)], dtype=np.int64)
_BITS12 = np.arange(12, dtype=np.uint16)
_HALF_HIGH = 2048  # a TIME_HIGH step back larger than this may be a 24-bit rollover
PLAUSIBLE_STEP = 256  # TIME_HIGH units (4096 us): a larger step is a discontinuity
_MAX_STEP = PLAUSIBLE_STEP  # the encoder bridges gaps in steps the decoder trusts


@dataclass
class Evt3State:
    """Decoder state carried from one payload to the next of the same camera.

    ``high`` is the absolute time-high count (units of 4096 us, rollovers included) or None
    before the first TIME_HIGH; ``last_th`` the last 12-bit TIME_HIGH value seen.
    """

    high: int | None = None
    last_th: int | None = None
    epoch: int = 0
    low: int | None = None
    low_after_high: bool = False
    time_valid: bool = False
    y: int = 0
    base_x: int = 0
    polarity: int = 0
    events_without_time: int = 0
    th_jump: bool = False  # the last TIME_HIGH step was a discontinuity (no rollover next)
    discontinuities: int = 0


def _state_array(state: Evt3State) -> np.ndarray:
    """``state`` as the compiled decoder's int64 array (field order: ``_jit.S_*``)."""
    return np.array(
        [
            state.high or 0,
            state.high is not None,
            state.last_th or 0,
            state.last_th is not None,
            state.epoch,
            state.low or 0,
            state.low is not None,
            state.low_after_high,
            state.time_valid,
            state.y,
            state.base_x,
            state.polarity,
            state.events_without_time,
            state.th_jump,
            state.discontinuities,
        ],
        dtype=np.int64,
    )


def _store_state(state: Evt3State, arr: np.ndarray) -> None:
    """Copy the compiled decoder's state array back into ``state``."""
    high, has_high, last_th, has_last_th, epoch, low, has_low, *rest = arr.tolist()
    low_after_high, time_valid, y, base_x, polarity, without_time, th_jump, discont = rest
    state.high = high if has_high else None
    state.last_th = last_th if has_last_th else None
    state.epoch = epoch
    state.low = low if has_low else None
    state.low_after_high = bool(low_after_high)
    state.time_valid = bool(time_valid)
    state.y, state.base_x, state.polarity = y, base_x, polarity
    state.events_without_time = without_time
    state.th_jump, state.discontinuities = bool(th_jump), discont


def _undefined_word(words: np.ndarray, bad: int) -> DecodeError:
    word = int(words[bad])
    return DecodeError(
        f"evt3 payload: word {bad} (byte {2 * bad}) = 0x{word:04x} has type "
        f"0x{word >> 12:x}, which EVT 3.0 does not define"
    )


def _ffill(mask: np.ndarray, at: np.ndarray) -> np.ndarray:
    """How many True of ``mask`` lie at or before each position in ``at`` (a forward fill index)."""
    return np.cumsum(mask, dtype=np.int32)[at]


def decode_evt3(
    payload: bytes | bytearray | memoryview | np.ndarray,
    time_base_ns: int = 0,
    *,
    big_endian: bool = False,
    state: Evt3State | None = None,
    jit: bool | None = None,
) -> np.ndarray:
    """Events (``EVENT_DTYPE``) of one EVT 3.0 payload; ``t`` = time_base_ns + sensor us * 1000.

    Pass the same ``state`` for consecutive payloads of one camera: real drivers cut the
    stream anywhere, so a payload may start without TIME_HIGH. Without ``state`` the payload is
    decoded as the start of a stream. Raises DecodeError on an odd byte count or a word type
    that EVT 3.0 does not define (``state`` is then left as it was). ``jit``: as in
    ``kernels`` (None: compiled when numba is available, False: the numpy path).
    """
    if state is None:
        state = Evt3State()
    raw = payload if isinstance(payload, np.ndarray) else np.frombuffer(payload, dtype=np.uint8)
    raw = raw.view(np.uint8).reshape(-1)
    if len(raw) % 2:
        raise DecodeError(f"evt3 payload has {len(raw)} bytes; EVT 3.0 words are 2 bytes each")
    words = raw.view(">u2" if big_endian else "<u2")
    n = len(words)
    if n == 0:
        return empty_events()
    if jit or (jit is None and kernels.HAVE_NUMBA):
        arr = _state_array(state)
        found = kernels.decode_evt3_words(
            np.ascontiguousarray(raw), big_endian, time_base_ns, arr, jit=jit
        )
        if found is not None:
            events, bad = found
            if bad >= 0:
                raise _undefined_word(words, bad)
            _store_state(state, arr)
            return events
    code = (words >> 12).astype(np.uint8)
    val = words & 0x0FFF
    known = _KNOWN[code]
    if not known.all():
        raise _undefined_word(words, int(np.flatnonzero(~known)[0]))

    # ---- time, computed only at the TIME_HIGH / TIME_LOW words (absolute microseconds)
    is_th = code == TIME_HIGH
    is_tl = code == TIME_LOW
    th_pos = np.flatnonzero(is_th)
    tl_pos = np.flatnonzero(is_tl)
    h = val[th_pos].astype(np.int64)
    prev_h = np.empty_like(h)
    if len(h):
        prev_h[0] = h[0] if state.last_th is None else state.last_th
        prev_h[1:] = h[:-1]
    d = h - prev_h
    roll_values = (d < -_HALF_HIGH) & (d + 4096 <= PLAUSIBLE_STEP)
    small = np.abs(d) <= PLAUSIBLE_STEP
    jump_values = ~small & ~roll_values
    after_jump = np.concatenate([[state.th_jump], jump_values[:-1]])
    rollover = roll_values & ~after_jump
    epochs = state.epoch + np.cumsum(rollover)
    h_abs = epochs * 4096 + h
    th_discontinuities = int(np.count_nonzero(~small & ~rollover))

    low = val[tl_pos].astype(np.int64)
    seg = np.searchsorted(th_pos, tl_pos)  # how many TIME_HIGH words precede each TIME_LOW
    prev_low = np.empty_like(low)
    same_seg = np.empty(len(low), dtype=bool)
    if len(low):
        prev_low[0] = low[0] if state.low is None else state.low
        prev_low[1:] = low[:-1]
        same_seg[0] = seg[0] == 0 and state.low is not None and state.low_after_high
        same_seg[1:] = seg[1:] == seg[:-1]
    inferred = np.cumsum((low < prev_low) & same_seg)  # low wrapped without a TIME_HIGH
    seg_first = np.searchsorted(seg, seg, side="left")
    h_ext = np.concatenate([[0 if state.high is None else state.high], h_abs])
    tl_high = h_ext[seg] + np.where(seg > 0, inferred - inferred[seg_first], inferred)
    tl_time = tl_high * 4096 + low
    # a TIME_HIGH applies with the last TIME_LOW until the next TIME_LOW arrives
    low_ext = np.concatenate([[0 if state.low is None else state.low], low])
    th_time = h_abs * 4096 + low_ext[np.searchsorted(tl_pos, th_pos)]

    is_time = is_th | is_tl
    time_pos = np.flatnonzero(is_time)
    time_val = np.empty(len(time_pos) + 1, dtype=np.int64)  # [0] = the time carried in
    time_val[0] = state.high * 4096 + state.low if state.time_valid else 0
    time_val[1:][np.searchsorted(time_pos, th_pos)] = th_time
    time_val[1:][np.searchsorted(time_pos, tl_pos)] = tl_time

    # events count from the first TIME_LOW that follows a TIME_HIGH (or all, if time is known)
    if state.time_valid:
        valid_from = -1
    elif state.high is not None:
        valid_from = int(tl_pos[0]) if len(tl_pos) else n
    else:
        after_th = tl_pos[tl_pos > th_pos[0]] if len(th_pos) else tl_pos[:0]
        valid_from = int(after_th[0]) if len(after_th) else n

    # ---- events: y, time and vector base forward-filled by counting the words that set them
    is_x = code == ADDR_X
    is_vec = (code == VECT_12) | (code == VECT_8)
    has_vec = bool(is_vec.any())
    ev_pos = np.flatnonzero(is_x | is_vec) if has_vec else np.flatnonzero(is_x)
    first = int(np.searchsorted(ev_pos, valid_from, side="right"))
    is_y = code == ADDR_Y
    y_val = np.concatenate([[state.y], val[is_y] & 0x7FF])
    is_vbx = code == VECT_BASE_X
    carried = (state.y, state.base_x, state.polarity)
    dropped_pos, ev_pos = ev_pos[:first], ev_pos[first:]
    if len(h):
        state.th_jump = bool(jump_values[-1])
        state.discontinuities += th_discontinuities
    _update_state(state, code, val, th_pos, tl_pos, h, h_abs, epochs, tl_high, low, valid_from)

    y_ev = y_val[_ffill(is_y, ev_pos)]
    t_ev = time_val[_ffill(is_time, ev_pos)]
    ev_val = val[ev_pos]
    if not has_vec:
        out = np.empty(len(ev_pos), dtype=EVENT_DTYPE)
        out["x"] = ev_val & 0x7FF
        out["y"] = y_ev
        out["t"] = t_ev * 1000 + int(time_base_ns)
        out["p"] = ev_val >> 11
        state.events_without_time += len(dropped_pos)
        return out

    ev_code = code[ev_pos]
    ev_is_x = ev_code == ADDR_X
    mask = np.where(ev_code == VECT_8, ev_val & 0x00FF, ev_val)
    counts = np.where(ev_is_x, 1, _POPCOUNT12[mask])
    starts = np.cumsum(counts) - counts
    out = np.empty(int(counts.sum()), dtype=EVENT_DTYPE)
    t_ev = t_ev * 1000 + int(time_base_ns)

    xs = np.flatnonzero(ev_is_x)
    sx = starts[xs]
    out["x"][sx] = ev_val[xs] & 0x7FF
    out["y"][sx] = y_ev[xs]
    out["t"][sx] = t_ev[xs]
    out["p"][sx] = ev_val[xs] >> 11

    # vector words: base_x = last VECT_BASE_X + 12 / 8 per vector word since then
    vs = np.flatnonzero(~ev_is_x)
    adv = np.where(code == VECT_12, 12, 0) + np.where(code == VECT_8, 8, 0)
    adv_excl = np.cumsum(adv) - adv
    vpos = ev_pos[vs]
    k = _ffill(is_vbx, vpos)
    vbx_pos = np.concatenate([[-1], np.flatnonzero(is_vbx)])[k]
    vbx_val = val[np.maximum(vbx_pos, 0)].astype(np.int64)
    base = np.where(
        k > 0,
        (vbx_val & 0x7FF) + adv_excl[vpos] - adv_excl[np.maximum(vbx_pos, 0)],
        carried[1] + adv_excl[vpos],
    )
    pol = np.where(k > 0, vbx_val >> 11, carried[2])
    bits = (mask[vs][:, None] >> _BITS12) & 1
    rows, cols = np.nonzero(bits)
    vcounts = counts[vs]
    rank = np.arange(len(rows)) - (np.cumsum(vcounts) - vcounts)[rows]
    dest = starts[vs][rows] + rank
    out["x"][dest] = np.minimum(base[rows] + cols, 0xFFFF)
    out["y"][dest] = y_ev[vs][rows]
    out["t"][dest] = t_ev[vs][rows]
    out["p"][dest] = pol[rows]
    if len(dropped_pos):
        dcode = code[dropped_pos]
        dmask = np.where(dcode == VECT_8, val[dropped_pos] & 0xFF, val[dropped_pos])
        state.events_without_time += int(np.where(dcode == ADDR_X, 1, _POPCOUNT12[dmask]).sum())
    return out


def _update_state(
    state: Evt3State,
    code: np.ndarray,
    val: np.ndarray,
    th_pos: np.ndarray,
    tl_pos: np.ndarray,
    h: np.ndarray,
    h_abs: np.ndarray,
    epochs: np.ndarray,
    tl_high: np.ndarray,
    low: np.ndarray,
    valid_from: int,
) -> None:
    """Leave ``state`` as it stands after the last word of this payload."""
    if len(th_pos) and (not len(tl_pos) or th_pos[-1] > tl_pos[-1]):
        state.high = int(h_abs[-1])
        state.low_after_high = False
    elif len(tl_pos):
        if state.high is not None or len(th_pos):  # no TIME_HIGH yet: the high stays unknown
            state.high = int(tl_high[-1])
        state.low_after_high = True
    if len(th_pos):
        state.last_th = int(h[-1])
        state.epoch = int(epochs[-1])
    if len(tl_pos):
        state.low = int(low[-1])
    if valid_from < len(code):
        state.time_valid = True
    ys = np.flatnonzero(code == ADDR_Y)
    if len(ys):
        state.y = int(val[ys[-1]] & 0x7FF)
    vbx = np.flatnonzero(code == VECT_BASE_X)
    start = int(vbx[-1]) if len(vbx) else -1
    if start >= 0:
        state.base_x = int(val[start] & 0x7FF)
        state.polarity = int(val[start] >> 11)
    tail = code[start + 1 :]
    state.base_x += 12 * int(np.count_nonzero(tail == VECT_12))
    state.base_x += 8 * int(np.count_nonzero(tail == VECT_8))


def encode_evt3(events: np.ndarray, time_base_ns: int = 0, *, big_endian: bool = False) -> bytes:
    """EVT 3.0 words for time-sorted ``events``, times relative to ``time_base_ns`` in us.

    Emits TIME_HIGH, TIME_LOW and EVT_ADDR_Y only when they change, then one EVT_ADDR_X per
    event (no vector words). A time jump is bridged by extra TIME_HIGH words at most 2048
    apart, so ``decode_evt3`` recovers any gap, 24-bit rollovers included. Sub-microsecond
    parts of ``t - time_base_ns`` are truncated.
    """
    events = np.asarray(events)
    n = len(events)
    if n == 0:
        return b""
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    if x.max() > 0x7FF or y.max() > 0x7FF:
        raise EncodeError(f"evt3 addresses are 11 bits: got x max {x.max()}, y max {y.max()}")
    rel = events["t"].astype(np.int64) - int(time_base_ns)
    if rel.min() < 0:
        raise EncodeError(
            f"event time {int(events['t'][int(np.argmin(rel))])} ns precedes time_base "
            f"{int(time_base_ns)} ns"
        )
    us = rel // 1000
    if n > 1 and np.any(np.diff(us) < 0):
        i = int(np.flatnonzero(np.diff(us) < 0)[0])
        raise EncodeError(f"evt3 needs time-sorted events: event {i + 1} is earlier than {i}")
    high = us >> 12
    dh = np.diff(high, prepend=0)  # bridged from 0: a fresh decoder starts at epoch 0
    n_th = np.where(dh > 0, -(-dh // _MAX_STEP), 0)
    n_th[0] = max(n_th[0], 1)  # always open with TIME_HIGH
    n_tl = np.ones(n, dtype=np.int64)
    n_tl[1:] = us[1:] != us[:-1]
    n_y = np.ones(n, dtype=np.int64)
    n_y[1:] = y[1:] != y[:-1]
    per_event = n_th + n_tl + n_y + 1
    start = np.cumsum(per_event) - per_event
    out = np.empty(int(per_event.sum()), dtype=np.uint16)

    # TIME_HIGH words: intermediate steps of 2048, the last one the event's own high
    ev = np.repeat(np.arange(n), n_th)
    k = np.arange(len(ev)) - np.repeat(np.cumsum(n_th) - n_th, n_th)
    prev_high = np.where(ev > 0, high[np.maximum(ev - 1, 0)], 0)
    th_val = np.where(k == n_th[ev] - 1, high[ev], prev_high + _MAX_STEP * (k + 1))
    out[start[ev] + k] = (TIME_HIGH << 12) | (th_val & 0xFFF)
    pos = start + n_th
    tl = np.flatnonzero(n_tl)
    out[pos[tl]] = (TIME_LOW << 12) | (us[tl] & 0xFFF)
    pos = pos + n_tl
    ay = np.flatnonzero(n_y)
    out[pos[ay]] = (ADDR_Y << 12) | y[ay]
    pos = pos + n_y
    out[pos] = (ADDR_X << 12) | ((events["p"] != 0).astype(np.int64) << 11) | x
    return out.astype(">u2" if big_endian else "<u2", copy=False).tobytes()
