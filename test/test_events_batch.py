"""The node's batched EventArray path decodes exactly what the per-message decoder decodes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stereospike_ros.events import DecodeError, decode_event_array, encode_event_array, kernels
from stereospike_ros.events.batch import EventArrayQueue
from stereospike_ros.events.cdr import read_event_array_header
from stereospike_ros.events.types import EVENT_DTYPE


def _events(rng: np.random.Generator, n: int, t0: int) -> np.ndarray:
    events = np.empty(n, dtype=EVENT_DTYPE)
    events["x"] = rng.integers(0, 65536, n)
    events["y"] = rng.integers(0, 65536, n)
    events["t"] = t0 + np.sort(rng.integers(-(10**9), 10**10, n))
    events["p"] = rng.integers(0, 2, n)
    return events


def _message(rng, n, big_endian=False, frame_len=None):
    frame_id = "f" * (int(rng.integers(0, 9)) if frame_len is None else frame_len)
    events = _events(rng, n, int(rng.integers(-(10**12), 10**18)))
    buf = encode_event_array(events, 260, 346, int(rng.integers(0, 10**18)), frame_id, big_endian)
    return buf, events, frame_id


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.sampled_from([0, 1, 2, 3, 7, 300, 1001]), min_size=1, max_size=12),
    orders=st.lists(st.booleans(), min_size=12, max_size=12),
    seed=st.integers(0, 2**32 - 1),
)
def test_queue_drains_the_concatenation_of_per_message_decodes(sizes, orders, seed):
    _check_queue(sizes, orders, seed)
    with kernels.numpy_only():  # the path of installs without numba
        _check_queue(sizes, orders, seed)


def _check_queue(sizes, orders, seed):
    rng = np.random.default_rng(seed)
    queue = EventArrayQueue()
    expected = []
    for n, big in zip(sizes, orders, strict=False):
        buf, events, frame_id = _message(rng, n, big)
        header = queue.add(buf)
        reference = decode_event_array(buf)
        assert (header.height, header.width, header.frame_id, header.count) == (
            260,
            346,
            frame_id,
            n,
        )
        assert header.stamp_ns == reference.stamp_ns and header.big_endian == big
        assert header.first_t == (int(events["t"][0]) if n else None)
        assert header.last_t == (int(events["t"][-1]) if n else None)
        expected.append(reference.events)
    assert queue.pending_events == sum(sizes) and queue.pending_messages == len(sizes)
    drained = queue.drain()
    assert drained.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(drained, np.concatenate(expected))
    assert queue.pending_events == 0 and len(queue.drain()) == 0


def test_decoded_events_and_pre_parsed_headers_keep_arrival_order():
    rng = np.random.default_rng(4)
    queue = EventArrayQueue()
    a, b = _message(rng, 4)[0], _message(rng, 6, big_endian=True)[0]
    decoded = _events(rng, 3, 0)
    queue.add(a, read_event_array_header(a))
    queue.add_decoded(decoded)
    queue.add(b)
    assert queue.pending_events == 13 and queue.pending_messages == 3
    expected = [decode_event_array(a).events, decoded, decode_event_array(b).events]
    np.testing.assert_array_equal(queue.drain(), np.concatenate(expected))


def test_queue_accepts_read_only_memoryviews_and_releases_nothing_early():
    rng = np.random.default_rng(3)
    queue = EventArrayQueue()
    bufs = [_message(rng, n)[0] for n in (5, 0, 9)]
    for buf in bufs:
        queue.add(memoryview(buf))
    del bufs  # the queue must keep the bytes alive on its own
    assert len(queue.drain()) == 14


@pytest.mark.parametrize(
    "mangle,match",
    [
        (lambda b: b[:3], "shorter than the 4-byte"),
        (lambda b: b"\x01\x01" + b[2:], "encapsulation"),
        (lambda b: b[:-5], "truncated"),
        (lambda b: b + b"\x00" * 8, "unexpected bytes"),
        (lambda b: b[:12] + b"\x00\x00\x00\x00" + b[16:], "length 0"),
        (lambda b: b[:12] + b"\xff\xff\x00\x00" + b[16:], "truncated"),
        (lambda b: b[:16] + b"\xff" + b[17:], "UTF-8"),
        (lambda b: b[:23] + b"\x01" + b[24:], "NUL-terminated"),
    ],
)
def test_bad_messages_raise_the_decoders_error_and_queue_nothing(mangle, match):
    rng = np.random.default_rng(5)
    buf, _, _ = _message(rng, 10, frame_len=7)  # frame_id "fffffff" + its NUL: bytes 16-23
    bad = mangle(buf)
    with pytest.raises(DecodeError, match=match):
        decode_event_array(bad)
    queue = EventArrayQueue()
    with pytest.raises(DecodeError, match=match):
        queue.add(bad)
    with pytest.raises(DecodeError):
        read_event_array_header(bad)
    assert queue.pending_messages == 0 and len(queue.drain()) == 0
    queue.add(buf)  # and good input still goes through afterwards
    np.testing.assert_array_equal(queue.drain(), decode_event_array(buf).events)
