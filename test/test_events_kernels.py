"""The numba event kernels give the numpy path's results bit for bit, and fail loudly on bad input.

Inputs are real serialized messages from ``encode_event_array``, with garbage in the CDR
padding and polarity bytes other than 0/1 (both legal on the wire), in both byte orders.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from stereospike_ros.events import (
    EVENT_DTYPE,
    DecodeError,
    EventsError,
    Rectifier,
    accumulate_into,
    decode_event_array,
    decode_libcaer,
    encode_event_array,
    event_histogram,
    fallbacks,
    kernels,
)
from stereospike_ros.events.cdr import read_event_array_header
from stereospike_ros.events.decode import accumulate_event_array

NS = 1_000_000_000
SIZES = [0, 1, 2, 7, 100_000]
needs_numba = pytest.mark.skipif(not kernels.HAVE_NUMBA, reason=f"{kernels.kernel_backend()}")


def random_events(rng: np.random.Generator, n: int, w: int = 2**16, h: int = 2**16) -> np.ndarray:
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"] = rng.integers(0, w, n)
    events["y"] = rng.integers(0, h, n)
    events["t"] = rng.integers(-(2**31) * NS, 2**31 * NS, n)  # every int32 second
    events["p"] = rng.integers(0, 2, n)
    return events


def serialized(
    rng: np.random.Generator, events: np.ndarray, big: bool, frame_id: str = "cam"
) -> tuple[bytes, int]:
    """EventArray bytes with random padding and polarity bytes 0..255; (bytes, first event)."""
    buf = bytearray(encode_event_array(events, 260, 346, 5, frame_id, big_endian=big))
    head = read_event_array_header(bytes(buf))
    n, start = head.count, head.start
    k = np.arange(n)
    body = np.frombuffer(buf, dtype=np.uint8)
    for offsets in (start + 16 * k[1:] + 2, start + 16 * k[1:] + 3, start + 16 * k[:-1] + 13):
        body[offsets] = rng.integers(0, 256, len(offsets))  # padding: never read
    on = events["p"] != 0
    body[start + 16 * k[on] + 12] = rng.integers(1, 256, int(on.sum()))  # any nonzero is ON
    return bytes(buf), start


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


# ---------------------------------------------------------------- decode


@needs_numba
@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("n", SIZES)
def test_decode_kernel_equals_numpy_path_and_the_encoded_events(rng, n, big):
    events = random_events(rng, n)
    buf, start = serialized(rng, events, big)
    mem = np.frombuffer(buf, dtype=np.uint8)
    fast, slow = np.empty(n, EVENT_DTYPE), np.empty(n, EVENT_DTYPE)
    kernels.decode_event_array_blocks(mem, [start], [n], big, fast, jit=True)
    kernels.decode_event_array_blocks(mem, [start], [n], big, slow, jit=False)
    assert fast.tobytes() == slow.tobytes() == events.tobytes()
    assert decode_event_array(buf).events.tobytes() == events.tobytes()


@pytest.mark.parametrize("jit", [pytest.param(True, marks=needs_numba), False])
@pytest.mark.parametrize("big", [False, True])
def test_joined_messages_decode_in_order_whatever_their_frame_ids(rng, big, jit):
    """Several messages in one buffer, at odd offsets, some empty: as decoding each one."""
    parts, starts, counts, expected = [], [], [], []
    offset = 0
    for n in [3, 0, 1, 2000, 7, 0, 1]:
        frame_id = "x" * int(rng.integers(0, 40))  # shifts the event block's alignment
        events = random_events(rng, n)
        buf, start = serialized(rng, events, big, frame_id)
        gap = bytes(rng.integers(0, 256, int(rng.integers(0, 6)), dtype=np.uint8))
        parts += [buf, gap]
        starts.append(offset + start)
        counts.append(n)
        expected.append(decode_event_array(buf).events)
        offset += len(buf) + len(gap)
    joined = np.frombuffer(b"".join(parts), dtype=np.uint8)
    out = np.empty(sum(counts), EVENT_DTYPE)
    kernels.decode_event_array_blocks(joined, starts, counts, big, out, jit=jit)
    assert out.tobytes() == np.concatenate(expected).tobytes()


@pytest.mark.parametrize("jit", [pytest.param(True, marks=needs_numba), False])
@pytest.mark.parametrize(
    ("starts", "counts", "n_out", "match"),
    [
        ([-1], [1], 1, "sequence 0: 1 events from byte -1"),
        ([0, 90], [2, 1], 3, "sequence 1: 1 events from byte 90 need bytes 90 .. 103, buffer"),
        ([0], [7], 7, r"sequence 0: 7 events from byte 0 need bytes 0 \.\. 109, buffer has 100"),
        ([0], [-2], 0, "sequence 0: -2 events"),
        ([101], [0], 0, "sequence 0: 0 events from byte 101"),
        ([0], [2**62], 0, "sequence 0"),  # 16 * count overflows int64: still caught
        ([0, 20], [2, 2], 3, "event counts add up to 4, out has 3"),
    ],
)
def test_sequences_outside_the_buffer_raise_before_anything_is_written(
    jit, starts, counts, n_out, match
):
    buf = np.zeros(100, dtype=np.uint8)
    out = np.zeros(n_out, dtype=EVENT_DTYPE)
    with pytest.raises(DecodeError, match=match):
        kernels.decode_event_array_blocks(buf, starts, counts, False, out, jit=jit)
    assert not out.tobytes().strip(b"\x00")


def test_decode_blocks_rejects_arrays_of_the_wrong_kind():
    buf = np.zeros(64, dtype=np.uint8)
    out = np.empty(1, EVENT_DTYPE)
    with pytest.raises(EventsError, match="buf must be a uint8 array"):
        kernels.decode_event_array_blocks(buf.view(np.int8), [0], [1], False, out)
    with pytest.raises(EventsError, match="1 starts but 2 counts"):
        kernels.decode_event_array_blocks(buf, [0], [1, 0], False, out)
    with pytest.raises(EventsError, match="out must be a 1-D contiguous EVENT_DTYPE"):
        kernels.decode_event_array_blocks(buf, [0], [2], False, np.empty(4, EVENT_DTYPE)[::2])
    with pytest.raises(EventsError, match="1-D contiguous numpy array"):
        kernels.decode_event_array_blocks(buf[::2], [0], [1], False, out)


@needs_numba
def test_the_compiled_kernels_check_bounds_themselves():
    """Called directly, past the wrapper's checks, they still never read outside ``buf``."""
    compiled = kernels._kernels()
    buf = np.zeros(40, dtype=np.uint8)
    out = np.zeros(3, EVENT_DTYPE)
    starts, counts = np.array([0, 30], dtype=np.int64), np.array([2, 1], dtype=np.int64)
    assert compiled.DECODE[False](buf, starts, counts, out) == 1  # 30 + 13 > 40
    assert not out.tobytes().strip(b"\x00")
    hist = np.zeros(8, np.uint16)
    win = np.zeros(3, np.int64)
    for start, count in [(0, 3), (-1, 1), (41, 0), (0, -1)]:
        args = (buf, start, count, kernels._NO_LUT, 0, 0, 0, hist, 2, 2, win)
        assert compiled.COUNT[False, False, False](*args) == (-1, -1)
    assert not hist.any()


# ---------------------------------------------------------------- fused decode-rectify-count


def small_rectifier(rng: np.random.Generator, h: int, w: int) -> Rectifier:
    """Random maps onto a 9 x 12 image: many raw pixels leave it or are NaN (dropped)."""
    x_map = rng.uniform(-3, 14, (h, w))
    y_map = rng.uniform(-3, 11, (h, w))
    x_map[rng.random((h, w)) < 0.05] = np.nan
    return Rectifier.from_maps(x_map, y_map, out_height=9, out_width=12)


@needs_numba
@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("rectify", [False, True])
@pytest.mark.parametrize("window", [(None, None), (-5, 5), (None, 0), (1, None)])
@pytest.mark.parametrize("n", SIZES)
def test_fused_count_equals_decode_rectify_accumulate(rng, n, big, rectify, window):
    h, w = 11, 13  # raw sensor; events also land beyond it, and off the 8 x 10 histogram
    events = random_events(rng, n, w + 3, h + 2)
    events["t"] = rng.integers(-10, 10, n) * NS + rng.integers(0, NS, n)
    events["x"][rng.random(n) < 0.01] = 65535
    buf, start = serialized(rng, events, big)
    mem = np.frombuffer(buf, dtype=np.uint8)
    t0, t1 = (None if t is None else t * NS for t in window)
    results = []
    for jit in (True, False):
        rect = small_rectifier(np.random.default_rng(3), h, w) if rectify else None
        hist = np.zeros((2, 8, 10), dtype=np.uint16)
        hist[0, 1] = 65534  # a row that saturates on its next ON events
        dropped = kernels.count_event_array(mem, start, n, big, rect, hist, t0, t1, jit=jit)
        rect_counters = None if rect is None else (rect.dropped, rect.last_dropped)
        results.append((dropped, rect_counters, hist))
    (fast, fast_rect, fast_hist), (slow, slow_rect, slow_hist) = results
    assert fast == slow and fast_rect == slow_rect
    assert fast_hist.tobytes() == slow_hist.tobytes()
    if n == 100_000:  # the case is not vacuous: events counted, dropped both ways, saturated
        assert fast_hist.sum() > 1000 and fast[1] > 0 and (fast[0] > 0) == rectify
        assert (fast_hist[0, 1] == 65535).any()


@pytest.mark.parametrize("jit", [pytest.param(True, marks=needs_numba), False])
def test_fused_count_of_a_sequence_outside_the_buffer_raises_and_counts_nothing(jit):
    buf = np.zeros(100, dtype=np.uint8)
    hist = np.zeros((2, 4, 4), dtype=np.uint16)
    with pytest.raises(DecodeError, match=r"7 events from byte 0 need bytes 0 \.\. 109"):
        kernels.count_event_array(buf, 0, 7, False, None, hist, jit=jit)
    assert not hist.any()


def test_accumulate_event_array_equals_the_decoded_path_with_and_without_numba(rng, monkeypatch):
    events = random_events(rng, 5000, 350, 262)
    events["t"] = rng.integers(-2 * NS, 2 * NS, len(events))  # half of them in the window
    buf, _ = serialized(rng, events, False)
    rect = Rectifier.identity(260, 346)
    expected = np.zeros((2, 260, 346), dtype=np.uint16)
    decoded = rect(decode_event_array(buf).events)
    expected_off = accumulate_into(expected, decoded, -NS, NS)
    for have in (kernels.HAVE_NUMBA, False):
        monkeypatch.setattr(kernels, "HAVE_NUMBA", have)
        rect = Rectifier.identity(260, 346)
        hist = np.zeros((2, 260, 346), dtype=np.uint16)
        rect_dropped, off = accumulate_event_array(buf, hist, rect, -NS, NS)
        assert hist.tobytes() == expected.tobytes() and off == expected_off
        assert rect_dropped == rect.dropped == len(events) - len(decoded) > 0


@needs_numba
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("n", SIZES)
def test_rectify_kernel_equals_the_rectifier_with_the_same_counters(rng, n, inplace):
    events = random_events(rng, n, 16, 13)
    events["x"][rng.random(n) < 0.01] = 65535
    fast_rect, slow_rect = (small_rectifier(np.random.default_rng(3), 11, 13) for _ in "ab")
    fast_in, slow_in = events.copy(), events.copy()
    fast = kernels.rectify_events(fast_rect, fast_in, inplace=inplace, jit=True)
    slow = slow_rect(slow_in, inplace=inplace)
    assert fast.tobytes() == slow.tobytes() and fast_in.tobytes() == slow_in.tobytes()
    assert fast_rect.dropped == slow_rect.dropped
    assert fast_rect.last_dropped == slow_rect.last_dropped
    assert np.shares_memory(fast, fast_in) == (inplace and len(fast) > 0)
    if n == 100_000:
        assert 0 < len(fast) < n


def test_rectify_events_hands_strided_input_to_the_rectifier(rng):
    events = random_events(rng, 1000, 16, 13)[::2]
    fast_rect, slow_rect = (small_rectifier(np.random.default_rng(3), 11, 13) for _ in "ab")
    fast = kernels.rectify_events(fast_rect, events)
    assert fast.tobytes() == slow_rect(events).tobytes()
    assert fast_rect.dropped == slow_rect.dropped > 0


# ---------------------------------------------------------------- histogram scatter


@needs_numba
@pytest.mark.parametrize("window", [(None, None), (-3, 4), (None, -1), (2, None)])
@pytest.mark.parametrize("n", [*SIZES, 70_000])
def test_histogram_kernel_equals_numpy_bincount(rng, n, window):
    events = random_events(rng, n, 20, 15)
    events["t"] = rng.integers(-5, 5, n) * NS
    if n == 70_000:
        events["x"], events["y"] = 3, 4  # one pixel past the uint16 limit: saturates
    t0, t1 = (None if t is None else t * NS for t in window)
    fast, slow = np.zeros((2, 12, 18), np.uint16), np.zeros((2, 12, 18), np.uint16)
    fast[1, 2, 3] = slow[1, 2, 3] = 65000
    assert kernels.accumulate_events(fast, events, t0, t1, jit=True) == fallbacks.accumulate_into(
        slow, events, t0, t1
    )
    assert fast.tobytes() == slow.tobytes()


def test_event_histogram_and_accumulate_into_agree_with_their_numpy_path(rng, monkeypatch):
    events = random_events(rng, 30_000, 40, 30)
    events["t"] = rng.integers(-2 * NS, 2 * NS, len(events))
    strided = events[::3]  # not contiguous: takes the numpy path inside the kernel wrapper
    other = np.zeros(len(events), [("t", "<i8"), ("x", "<u4"), ("y", "<u4"), ("p", "i1")])
    for name in ("x", "y", "t", "p"):
        other[name] = events[name]
    results = []
    for have in (kernels.HAVE_NUMBA, False):
        monkeypatch.setattr(kernels, "HAVE_NUMBA", have)
        row = [event_histogram(e, 25, 35, -NS, NS) for e in (events, strided, other)]
        hist = np.full((2, 25, 35), 65535 - 3, dtype=np.uint16)
        row.append((hist, accumulate_into(hist, events)))
        results.append(row)
    for (h_fast, d_fast), (h_slow, d_slow) in zip(*results, strict=True):
        assert h_fast.tobytes() == h_slow.tobytes() and d_fast == d_slow
    assert results[0][1][1] > 0 and results[0][3][0].max() == 65535


# ---------------------------------------------------------------- libcaer payloads


@needs_numba
@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("n", [1, 2, 5000])
def test_libcaer_kernel_equals_numpy_with_rollovers_and_any_data_bits(rng, n, big):
    record = np.dtype(
        [("data", (">" if big else "<") + "u4"), ("ts", (">" if big else "<") + "i4")]
    )
    rec = np.empty(n, dtype=record)
    rec["data"] = rng.integers(0, 2**32, n, dtype=np.uint64)  # valid mark and x/y bits at random
    rec["ts"] = rng.integers(0, 2**31, n)  # unsorted: every step back is a rollover
    payload = rec.tobytes()
    base = int(rng.integers(0, 2**62))
    fast = decode_libcaer(payload, base, big_endian=big, jit=True)
    slow = decode_libcaer(payload, base, big_endian=big, jit=False)
    assert fast.tobytes() == slow.tobytes() and len(fast) == n
    if n == 5000:
        assert slow["t"].max() > 1000 * 2**33 and fast["p"].any() and not fast["p"].all()


@pytest.mark.parametrize("jit", [pytest.param(True, marks=needs_numba), False])
def test_libcaer_negative_timestamp_is_named_by_the_lowest_one(jit):
    payload = struct.pack("<IiIiIiIi", 1, 5, 1, -3, 1, 7, 1, -3)
    with pytest.raises(DecodeError, match="event 1 has a negative timestamp -3"):
        decode_libcaer(payload, jit=jit)
    with pytest.raises(DecodeError, match="event 2 has a negative timestamp -9"):
        decode_libcaer(struct.pack(">IiIiIi", 1, -1, 1, 4, 1, -9), big_endian=True, jit=jit)


# ---------------------------------------------------------------- switches, warm-up, cache


def test_numpy_only_switches_every_function_to_numpy_and_back():
    before = kernels.HAVE_NUMBA
    with kernels.numpy_only():
        assert not kernels.HAVE_NUMBA and kernels.kernel_backend().startswith("numpy")
        assert kernels.warm_up() == 0.0
    assert before == kernels.HAVE_NUMBA


def test_jit_true_without_numba_names_the_reason(monkeypatch):
    monkeypatch.setattr(kernels, "_compiled", None)
    monkeypatch.setattr(kernels, "_AVAILABLE", False)
    monkeypatch.setattr(kernels, "_WHY_NOT", "numba is not installed")
    out = np.empty(0, EVENT_DTYPE)
    with pytest.raises(EventsError, match=r"jit=True.*numba is not installed"):
        kernels.decode_event_array_blocks(np.zeros(4, np.uint8), [0], [0], False, out, jit=True)
    kernels.decode_event_array_blocks(np.zeros(4, np.uint8), [0], [0], False, out)  # numpy


def _python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.strip()


def test_env_var_disables_numba_in_a_fresh_process():
    code = (
        "from stereospike_ros.events import kernels, decode_event_array, encode_event_array\n"
        "import numpy as np, sys\n"
        "e = np.zeros(3, kernels.EVENT_DTYPE); e['x'] = [1, 2, 3]\n"
        "assert decode_event_array(encode_event_array(e, 4, 4, 0, 'c')).events.tobytes() "
        "== e.tobytes()\n"
        "print(kernels.HAVE_NUMBA, kernels.kernel_backend(), 'numba' in sys.modules)"
    )
    out = _python(code, STEREOSPIKE_NO_NUMBA="1")
    assert out == "False numpy (STEREOSPIKE_NO_NUMBA=1) False"


@needs_numba
def test_warm_up_compiles_every_variant_and_a_second_process_loads_them_from_the_cache():
    assert kernels.warm_up() > 0
    compiled = kernels._kernels()
    dispatchers = [*compiled.DECODE.values(), *compiled.COUNT.values()]
    dispatchers += [*compiled.ACCUMULATE.values(), compiled.rectify]
    dispatchers += [*compiled.EVT3.values(), *compiled.LIBCAER.values()]
    assert len(dispatchers) == 17 and all(d.signatures for d in dispatchers)
    assert all(d.targetoptions["nogil"] for d in dispatchers)  # decode beside the network
    code = (
        "from stereospike_ros.events import kernels\n"
        "kernels.warm_up()\n"
        "c = kernels._kernels()\n"
        "ds = [*c.DECODE.values(), *c.COUNT.values(), *c.ACCUMULATE.values(), c.rectify]\n"
        "ds += [*c.EVT3.values(), *c.LIBCAER.values()]\n"
        "print(sum(sum(d.stats.cache_hits.values()) > 0 for d in ds),"
        " sum(sum(d.stats.cache_misses.values()) for d in ds))"
    )
    assert _python(code) == "17 0"
