"""``libcaer`` payloads of ``event_camera_msgs/EventPacket`` (uncompressed), vectorized.

Layout as event_camera_codecs' libcaer decoder reads it (libcaer's polarity event): 8 bytes
per event, a little-endian uint32 ``data`` (bit 0 valid mark, bit 1 polarity, bits 2..16 y,
bits 17..31 x) then an int32 ``timestamp`` in microseconds. The event time in ns is
``time_base + timestamp * 1000``; when the 31-bit timestamp goes backwards inside a packet and
lands at most ``PLAUSIBLE_US`` (1 s) past the rollover, it has rolled over and ``2**31`` us are
added (the driver folds earlier rollovers into ``time_base``). Any other step back is a
discontinuity (garbage, a corrupted record): counted in ``LibcaerState.discontinuities``, the
timestamp taken as it is, for the windower's jump rules to handle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stereospike_ros.events import kernels
from stereospike_ros.events.errors import DecodeError, EncodeError
from stereospike_ros.events.types import EVENT_DTYPE, empty_events

_ROLLOVER_US = 1 << 31
PLAUSIBLE_US = 1_000_000  # a rollover lands at most this far past 2**31 us


@dataclass
class LibcaerState:
    """What one camera's libcaer packets left behind (counts only: no time carries over)."""

    discontinuities: int = 0


def _record(big_endian: bool) -> np.dtype:
    order = ">" if big_endian else "<"
    return np.dtype([("data", order + "u4"), ("ts", order + "i4")])


def decode_libcaer(
    payload: bytes | bytearray | memoryview | np.ndarray,
    time_base_ns: int = 0,
    *,
    big_endian: bool = False,
    jit: bool | None = None,
    state: LibcaerState | None = None,
) -> np.ndarray:
    """Events (``EVENT_DTYPE``) of one libcaer payload; raises DecodeError on a partial event.

    One compiled pass when numba is available (``jit`` as in ``kernels``), same events.
    ``state`` counts the discontinuities met.
    """
    if state is None:
        state = LibcaerState()
    raw = payload if isinstance(payload, np.ndarray) else np.frombuffer(payload, dtype=np.uint8)
    raw = raw.view(np.uint8).reshape(-1)
    if len(raw) % 8:
        raise DecodeError(
            f"libcaer payload has {len(raw)} bytes, not a multiple of the 8-byte event size"
        )
    rec = raw.view(_record(big_endian))
    if len(rec) == 0:
        return empty_events()
    if jit or (jit is None and kernels.HAVE_NUMBA):
        found = kernels.decode_libcaer_records(
            np.ascontiguousarray(raw), big_endian, time_base_ns, jit=jit
        )
        if found is not None:
            if found[1] >= 0:
                raise _negative(found[1], int(rec["ts"][found[1]]))
            state.discontinuities += found[2]
            return found[0]
    data = rec["data"]
    ts = rec["ts"].astype(np.int64)
    if ts.min() < 0:
        bad = int(np.argmin(ts))
        raise _negative(bad, int(ts[bad]))
    steps = ts[1:] - ts[:-1]
    back = steps < 0
    plausible = back & (steps + _ROLLOVER_US <= PLAUSIBLE_US)
    state.discontinuities += int(np.count_nonzero(back & ~plausible))
    wraps = np.zeros(len(ts), dtype=np.int64)
    np.cumsum(plausible, out=wraps[1:])
    out = np.empty(len(rec), dtype=EVENT_DTYPE)
    out["x"] = (data >> 17) & 0x7FFF
    out["y"] = (data >> 2) & 0x7FFF
    out["p"] = (data >> 1) & 1
    out["t"] = (ts + wraps * _ROLLOVER_US) * 1000 + int(time_base_ns)
    return out


def _negative(index: int, ts: int) -> DecodeError:
    return DecodeError(f"libcaer payload: event {index} has a negative timestamp {ts}")


def encode_libcaer(events: np.ndarray, time_base_ns: int = 0, *, big_endian: bool = False) -> bytes:
    """libcaer bytes of time-sorted ``events``; timestamps are ``(t - time_base_ns) // 1000``.

    Rollovers of the 31-bit microsecond counter are written as such; a gap of 2**31 us or more
    between consecutive events, or one that lands more than ``PLAUSIBLE_US`` past a rollover,
    cannot be told from a discontinuity and raises EncodeError.
    """
    events = np.asarray(events)
    if len(events) == 0:
        return b""
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    if x.max() > 0x7FFF or y.max() > 0x7FFF:
        raise EncodeError(f"libcaer addresses are 15 bits: got x max {x.max()}, y max {y.max()}")
    us = (events["t"].astype(np.int64) - int(time_base_ns)) // 1000
    if us.min() < 0:
        raise EncodeError(f"event times precede time_base {int(time_base_ns)} ns")
    gaps = np.diff(us)
    if len(gaps) and (gaps.min() < 0 or gaps.max() >= _ROLLOVER_US):
        bad = int(np.flatnonzero((gaps < 0) | (gaps >= _ROLLOVER_US))[0])
        raise EncodeError(
            f"libcaer needs time-sorted events less than 2**31 us apart: events {bad} and "
            f"{bad + 1} are {int(gaps[bad])} us apart"
        )
    wrapped = (us[1:] // _ROLLOVER_US != us[:-1] // _ROLLOVER_US) & (
        us[1:] % _ROLLOVER_US >= PLAUSIBLE_US
    )
    if wrapped.any():
        bad = int(np.flatnonzero(wrapped)[0])
        raise EncodeError(
            f"libcaer: event {bad + 1} lands {int(us[bad + 1] % _ROLLOVER_US)} us past a "
            f"rollover of the 2**31 us counter; a decoder trusts at most {PLAUSIBLE_US} us"
        )
    rec = np.empty(len(events), dtype=_record(big_endian))
    rec["data"] = (x << 17) | (y << 2) | ((events["p"] != 0).astype(np.int64) << 1) | 1
    rec["ts"] = us % _ROLLOVER_US
    return rec.tobytes()
