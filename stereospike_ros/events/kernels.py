"""Compiled event kernels (numba, optional), each with a numpy fallback (``fallbacks.py``) giving
the same bits.

The numpy path makes a dozen passes over every event (strided copies, LUT gather, compaction,
index build, bincount), each a full trip through memory; one compiled loop reads each
serialized event once, rectifies it through the same lookup table and counts it straight into
the (2, H, W) histogram. EVT 3.0 payloads, whose words carry state from one to the next,
decode in one sequential pass instead of numpy's forward fills (``decode_evt3_words``), and
libcaer payloads in one pass instead of ten. Kernels release the GIL (``nogil``), so the
depth node's decode thread runs beside the network's, and are cached on disk (``cache``):
only the first process after an install pays the compile (``warm_up``).

numba is imported on first use, not with this module: importing it is a visible part of a
process's start-up, which the CLIs and tools that never touch events should not pay.
``HAVE_NUMBA`` says whether the event functions (``decode_event_array``, ``event_histogram``,
``accumulate_into``, ...) take the compiled path: False when numba is not installed, when
``STEREOSPIKE_NO_NUMBA`` is set to anything but ``0``, inside ``numpy_only()``, or once
importing numba failed (with a warning). The functions here also take ``jit=None`` (follow
``HAVE_NUMBA``), ``True`` (compiled, or ``EventsError``) or ``False`` (numpy).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from stereospike_ros.events import fallbacks
from stereospike_ros.events.errors import DecodeError, EventsError
from stereospike_ros.events.types import EVENT_DTYPE

if TYPE_CHECKING:
    from stereospike_ros.events.rectify import Rectifier

__all__ = [
    "HAVE_NUMBA",
    "accumulate_events",
    "count_event_array",
    "decode_event_array_blocks",
    "decode_evt3_words",
    "decode_libcaer_records",
    "kernel_backend",
    "numpy_only",
    "rectify_events",
    "warm_up",
]

_ENV = "STEREOSPIKE_NO_NUMBA"
_DISABLED = os.environ.get(_ENV, "").strip() not in ("", "0")
_AVAILABLE = not _DISABLED and importlib.util.find_spec("numba") is not None
_WHY_NOT = f"{_ENV}={os.environ.get(_ENV)}" if _DISABLED else "numba is not installed"
HAVE_NUMBA = _AVAILABLE

#: the kernels index with 32-bit offsets (see _jit.py); larger arrays take the numpy path
_MAX_KERNEL_SIZE = 0xFFFFFFFF
#: an EVT3 byte emits at most 6 events (a 2-byte VECT_12 word: 12)
_MAX_EVT3_BYTES = _MAX_KERNEL_SIZE // 6
#: length of the compiled EVT3 decoder's state array (``_jit.S_*``, ``evt3._state_array``)
EVT3_STATE_SIZE = 15
_NO_LUT = np.zeros(1, dtype=np.uint32)  # placeholder: one kernel type with and without a LUT

#: what runs compiled when numba is on, for ``kernel_backend``
_COMPILED_PATHS = "EventArray decode+count, EVT3 and libcaer decode, histogram, rectify"

_lock = threading.Lock()
_compiled: ModuleType | None = None


def _kernels() -> ModuleType | None:
    """The compiled kernels (numba imported on the first call), or None without numba."""
    global _compiled, _AVAILABLE, HAVE_NUMBA, _WHY_NOT
    if _compiled is not None or not _AVAILABLE:
        return _compiled
    with _lock:
        if _compiled is None and _AVAILABLE:
            try:
                from stereospike_ros.events import _jit
            except Exception as err:  # a broken install (e.g. numpy too new): run on numpy
                _AVAILABLE = HAVE_NUMBA = False
                _WHY_NOT = f"importing numba failed: {err}"
                warnings.warn(
                    f"stereospike_ros.events: {_WHY_NOT}; using the numpy kernels",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return None
            _compiled = _jit
    return _compiled


def _use_jit(jit: bool | None) -> ModuleType | None:
    if jit is False or (jit is None and not HAVE_NUMBA):
        return None
    kernels = _kernels()
    if kernels is None and jit:
        raise EventsError(f"numba kernels requested (jit=True) but unavailable: {_WHY_NOT}")
    return kernels


@contextlib.contextmanager
def numpy_only() -> Iterator[None]:
    """Within the block, every event function takes its numpy path (benchmarks, tests).

    Switches ``HAVE_NUMBA`` for the whole process: not for use while other threads decode.
    """
    global HAVE_NUMBA
    saved, HAVE_NUMBA = HAVE_NUMBA, False
    try:
        yield
    finally:
        HAVE_NUMBA = saved


def kernel_backend() -> str:
    """Which path the event functions take now, for logs and benchmark output."""
    if not HAVE_NUMBA:
        return f"numpy ({_WHY_NOT if not _AVAILABLE else 'numba switched off'})"
    if _kernels() is None:
        return f"numpy ({_WHY_NOT})"
    import numba

    return f"numba {numba.__version__} ({_COMPILED_PATHS})"


# ---------------------------------------------------------------- public functions


def _readonly_bytes(arr: np.ndarray, what: str) -> np.ndarray:
    """``arr`` as a 1-D read-only uint8 view: one kernel type whatever the caller's flags."""
    if not isinstance(arr, np.ndarray) or arr.ndim != 1 or not arr.flags.c_contiguous:
        shape = getattr(arr, "shape", type(arr).__name__)
        raise EventsError(f"{what} must be a 1-D contiguous numpy array, got {shape}")
    view = arr.view(np.uint8)  # always a new view: safe to flag read-only
    view.flags.writeable = False
    return view


def _buffer(buf: np.ndarray) -> np.ndarray:
    if getattr(buf, "dtype", None) != np.uint8:
        raise EventsError(f"buf must be a uint8 array, got {getattr(buf, 'dtype', type(buf))}")
    return _readonly_bytes(buf, "buf")


def _int64s(values: object, what: str) -> np.ndarray:
    arr = np.ascontiguousarray(values, dtype=np.int64)
    if arr.ndim != 1:
        raise EventsError(f"{what} must be 1-D, got shape {arr.shape}")
    return arr


def _check_out(out: np.ndarray) -> None:
    if out.dtype != EVENT_DTYPE or out.ndim != 1 or not out.flags.c_contiguous:
        raise EventsError(
            f"out must be a 1-D contiguous EVENT_DTYPE array, got {out.dtype} {out.shape}"
        )
    if not out.flags.writeable:
        raise EventsError("out is read-only")


def _bad_block(size: int, starts: np.ndarray, counts: np.ndarray, n_out: int) -> int:
    """The check ``_jit.DECODE`` makes: -1, a bad sequence's index, or len(starts)."""
    with np.errstate(over="ignore"):
        bad = (starts < 0) | (counts < 0) | (starts > size)
        bad |= (counts > 0) & (counts > (size - starts + 3) // 16)
    if bad.any():
        return int(np.argmax(bad))
    return -1 if int(counts.sum()) == n_out else len(starts)


def _raise_bad_block(
    bad: int, size: int, starts: Sequence[int], counts: Sequence[int], n_out: int
) -> None:
    if bad == len(starts):
        raise DecodeError(f"event counts add up to {sum(map(int, counts))}, out has {n_out}")
    s, c = int(starts[bad]), int(counts[bad])
    raise DecodeError(
        f"event sequence {bad}: {c} events from byte {s} need bytes {s} .. "
        f"{s + 16 * c - 3 if c > 0 else s}, buffer has {size}"
    )


def decode_event_array_blocks(
    buf: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    big_endian: bool,
    out: np.ndarray,
    *,
    jit: bool | None = None,
) -> None:
    """Decode several serialized ``dvs_msgs/Event`` sequences of one buffer into ``out``.

    ``buf``: uint8 bytes holding the sequences (e.g. several EventArray messages joined);
    ``starts[i]``: byte offset in ``buf`` of sequence i's first event; ``counts[i]``: its
    events; ``out``: EVENT_DTYPE of ``sum(counts)`` records, filled in order (``t`` = sec * 1e9
    + nanosec, ``p`` = polarity != 0). One byte order for all. Raises ``DecodeError`` naming
    the sequence that starts before 0 or ends past ``buf`` (``start + 16 * count - 3``).
    """
    data = _buffer(buf)
    starts = _int64s(starts, "starts")
    counts = _int64s(counts, "counts")
    if len(starts) != len(counts):
        raise EventsError(f"{len(starts)} starts but {len(counts)} counts")
    _check_out(out)
    kernels = _use_jit(jit)
    if max(len(data), len(out)) > _MAX_KERNEL_SIZE:
        kernels = None
    if kernels is not None:  # the kernel checks every sequence before it writes
        bad = int(kernels.DECODE[bool(big_endian)](data, starts, counts, out))
        if bad >= 0:
            _raise_bad_block(bad, len(data), starts, counts, len(out))
        return
    bad = _bad_block(len(data), starts, counts, len(out))
    if bad >= 0:
        _raise_bad_block(bad, len(data), starts, counts, len(out))
    fallbacks.decode_event_array_blocks(data, starts.tolist(), counts.tolist(), big_endian, out)


def _window(t_start: int | None, t_end: int | None) -> tuple[bool, np.ndarray]:
    """(timed, [t0, t1, has_t1]) as the kernels take them; t0 = int64 min when open."""
    t0 = np.iinfo(np.int64).min if t_start is None else int(t_start)
    t1 = 0 if t_end is None else int(t_end)
    timed = t_start is not None or t_end is not None
    return timed, np.array([t0, t1, t_end is not None], dtype=np.int64)


def _check_hist(hist: np.ndarray) -> None:
    if hist.dtype != np.uint16 or hist.ndim != 3 or hist.shape[0] != 2:
        raise EventsError(f"hist must be (2, H, W) uint16, got {hist.dtype} {hist.shape}")
    if not hist.flags.c_contiguous or not hist.flags.writeable:
        raise EventsError("hist must be C-contiguous and writeable to be updated in place")


def count_event_array(
    buf: np.ndarray,
    start: int,
    count: int,
    big_endian: bool,
    rectifier: Rectifier | None,
    hist: np.ndarray,
    t_start: int | None = None,
    t_end: int | None = None,
    *,
    jit: bool | None = None,
) -> tuple[int, int]:
    """Decode, rectify and count one serialized event sequence into ``hist`` in one pass.

    Same result as ``accumulate_into(hist, rectifier(decoded, inplace=True), t_start, t_end)``
    with ``decoded`` = the ``count`` events from byte ``start`` of ``buf`` (uint8): ``hist``
    (2, H, W) uint16, channel 0 = ON, saturating; ``rectifier`` None for events already
    rectified. The rectifier's ``dropped``/``last_dropped`` are updated as its call would.
    Returns (events the rectifier dropped, in-window events that fell off ``hist``).
    """
    _check_hist(hist)
    data = _buffer(buf)
    start, count = int(start), int(count)
    size = len(data)
    if start < 0 or count < 0 or start > size or (count > 0 and count > (size - start + 3) // 16):
        _raise_bad_block(0, size, [start], [count], count)
    kernels = _use_jit(jit)
    if kernels is not None and max(len(data), hist.size) > _MAX_KERNEL_SIZE:
        kernels = None
    if kernels is None:
        events = np.empty(count, dtype=EVENT_DTYPE)
        decode_event_array_blocks(data, [start], [count], big_endian, events, jit=False)
        rect_dropped = 0
        if rectifier is not None:
            events = rectifier(events, inplace=True)
            rect_dropped = rectifier.last_dropped
        return rect_dropped, fallbacks.accumulate_into(hist, events, t_start, t_end)
    if rectifier is None:
        lut, x_bits, raw_h, raw_w = _NO_LUT, 0, 0, 0
    else:  # the Rectifier's own padded table: (y << x_bits) | x, INVALID off the sensor
        lut, x_bits = rectifier.padded_table
        raw_h, raw_w = rectifier.height, rectifier.width
    _, height, width = hist.shape
    timed, win = _window(t_start, t_end)
    kernel = kernels.COUNT[bool(big_endian), rectifier is not None, timed]
    rect_dropped, off = kernel(
        data,
        start,
        count,
        lut,
        x_bits,
        raw_h,
        raw_w,
        hist.reshape(-1),
        height,
        width,
        win,
    )
    if rect_dropped < 0:  # the kernel's own bounds check (unreachable after the one above)
        _raise_bad_block(0, size, [start], [count], count)
    if rectifier is not None:
        rectifier.last_dropped = int(rect_dropped)
        rectifier.dropped += int(rect_dropped)
    return int(rect_dropped), int(off)


def accumulate_events(
    hist: np.ndarray,
    events: np.ndarray,
    t_start: int | None = None,
    t_end: int | None = None,
    *,
    jit: bool | None = None,
) -> int:
    """``histogram.accumulate_into`` as one compiled scatter loop; returns events off ``hist``.

    The loop takes contiguous EVENT_DTYPE events; anything else (any array with x, y, t, p
    fields) goes through the numpy path.
    """
    _check_hist(hist)
    kernels = _use_jit(jit)
    if (
        kernels is None
        or events.dtype != EVENT_DTYPE
        or not events.flags.c_contiguous
        or max(len(events), hist.size) > _MAX_KERNEL_SIZE
    ):
        return fallbacks.accumulate_into(hist, events, t_start, t_end)
    _, height, width = hist.shape
    timed, win = _window(t_start, t_end)
    events = events.view()  # read-only view: one kernel type whatever the caller's flags
    events.flags.writeable = False
    return int(kernels.ACCUMULATE[timed](events, hist.reshape(-1), height, width, win))


def rectify_events(
    rectifier: Rectifier, events: np.ndarray, *, inplace: bool = False, jit: bool | None = None
) -> np.ndarray:
    """``rectifier(events, inplace=inplace)`` as one compiled loop: same events, same counters.

    Contiguous EVENT_DTYPE input only; anything else is handed to the rectifier itself.
    """
    kernels = _use_jit(jit)
    if (
        kernels is None
        or events.dtype != EVENT_DTYPE
        or events.ndim != 1
        or not events.flags.c_contiguous
        or len(events) > _MAX_KERNEL_SIZE
        or (inplace and not events.flags.writeable)
    ):
        return rectifier(events, inplace=inplace)
    out = events if inplace else np.empty_like(events)
    src = events.view()  # read-only view: one kernel type whatever the caller's flags
    src.flags.writeable = False
    table, x_bits = rectifier.padded_table
    kept = int(kernels.rectify(src, out, table, x_bits, rectifier.height, rectifier.width))
    rectifier.last_dropped = len(events) - kept
    rectifier.dropped += rectifier.last_dropped
    return out[:kept]


def decode_evt3_words(
    buf: np.ndarray,
    big_endian: bool,
    time_base_ns: int,
    state: np.ndarray,
    *,
    jit: bool | None = None,
) -> tuple[np.ndarray, int] | None:
    """The compiled EVT 3.0 decoder behind ``evt3.decode_evt3``; None: take the numpy path.

    ``buf``: uint8 bytes of whole 16-bit words; ``state``: int64 array laid out as
    ``_jit.S_*`` (``evt3`` converts its ``Evt3State``), updated in place unless a word has a
    type EVT 3.0 does not define. Returns (events, index of that word or -1); one pass over
    the words to size ``events``, one to decode them.
    """
    data = _buffer(buf)
    if len(data) % 2:
        raise EventsError(f"buf holds 16-bit words: {len(data)} bytes")
    if state.dtype != np.int64 or state.shape != (EVT3_STATE_SIZE,) or not state.flags.writeable:
        raise EventsError(
            f"state must be a writeable int64 array of {EVT3_STATE_SIZE}, got {state.dtype} "
            f"{state.shape}"
        )
    kernels = _use_jit(jit)
    if kernels is None or len(data) > _MAX_EVT3_BYTES:
        return None
    events, kept, bad = kernels.EVT3[bool(big_endian)](data, state, int(time_base_ns))
    return (events if kept == len(events) else events[:kept]), int(bad)


def decode_libcaer_records(
    buf: np.ndarray, big_endian: bool, time_base_ns: int, *, jit: bool | None = None
) -> tuple[np.ndarray, int, int] | None:
    """The compiled loop behind ``libcaer.decode_libcaer``; None: take the numpy path.

    ``buf``: uint8 bytes of whole 8-byte records. Returns (events, index of the lowest
    timestamp when it is negative, else -1, backward steps that were no plausible rollover);
    one pass where numpy makes about ten.
    """
    data = _buffer(buf)
    if len(data) % 8:
        raise EventsError(f"buf holds 8-byte libcaer records: {len(data)} bytes")
    kernels = _use_jit(jit)
    if kernels is None or len(data) > _MAX_KERNEL_SIZE:
        return None
    events, bad, discontinuities = kernels.LIBCAER[bool(big_endian)](data, int(time_base_ns))
    return events, int(bad), int(discontinuities)


def warm_up() -> float:
    """Compile (or load from the on-disk cache) every kernel variant; seconds spent.

    The node calls it at start-up so that no message pays a compile: compiling a kernel cold
    takes far longer than a window's budget, loading it from the cache does not.
    """
    start = time.perf_counter()
    if _use_jit(None) is None:
        return 0.0
    from stereospike_ros.events.rectify import Rectifier

    buf = np.zeros(64, dtype=np.uint8)
    out = np.empty(3, dtype=EVENT_DTYPE)
    hist = np.zeros((2, 2, 2), dtype=np.uint16)
    rect = Rectifier.identity(2, 2)
    for big in (False, True):
        decode_event_array_blocks(buf, [0, 32], [2, 1], big, out, jit=True)
        for rectifier in (None, rect):
            for t_end in (None, 1):
                count_event_array(buf, 0, 2, big, rectifier, hist, None, t_end, jit=True)
    for t_end in (None, 1):
        accumulate_events(hist, out, None, t_end, jit=True)
    rectify_events(rect, out, jit=True)
    for big in (False, True):
        decode_evt3_words(buf, big, 0, np.zeros(EVT3_STATE_SIZE, dtype=np.int64), jit=True)
        decode_libcaer_records(buf, big, 0, jit=True)
    return time.perf_counter() - start
