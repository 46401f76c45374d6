"""dvs_msgs/EventArray CDR: our encoder and decoder against rclpy's own serialization."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from conftest import spin_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stereospike_ros.events import (
    EVENT_DTYPE,
    DecodeError,
    decode_event_array,
    encode_event_array,
)

rclpy = pytest.importorskip("rclpy")
from dvs_msgs.msg import Event, EventArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402

NS = 1_000_000_000


def random_events(rng: np.random.Generator, n: int) -> np.ndarray:
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"] = rng.integers(0, 2**16, n)
    events["y"] = rng.integers(0, 2**16, n)
    events["t"] = rng.integers(-(2**31) * NS, 2**31 * NS, n)
    events["p"] = rng.integers(0, 2, n)
    return events


def to_message(events: np.ndarray, stamp_ns: int, frame_id: str) -> EventArray:
    msg = EventArray(height=260, width=346)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, NS)
    msg.events = [Event(x=int(e["x"]), y=int(e["y"]), polarity=bool(e["p"])) for e in events]
    for ev, sec, nsec in zip(msg.events, *np.divmod(events["t"], NS), strict=True):
        ev.ts.sec, ev.ts.nanosec = int(sec), int(nsec)
    return msg


def reference_cdr(
    events: np.ndarray, stamp_ns: int, frame_id: str, order: str, pad: bytes = b"\xaa"
) -> bytes:
    """A field-by-field CDR writer (struct, one event at a time) to craft big-endian input.

    Padding is filled with ``pad``: garbage by default, as Fast DDS leaves it.
    """
    out = bytearray(b"\x00\x00\x00\x00" if order == ">" else b"\x00\x01\x00\x00")

    def put(fmt: str, value: int) -> None:
        size = struct.calcsize(fmt)
        out.extend(pad * ((-(len(out) - 4)) % size))
        out.extend(struct.pack(order + fmt, value))

    sec, nsec = divmod(stamp_ns, NS)
    put("i", sec)
    put("I", nsec)
    put("I", len(frame_id) + 1)
    out.extend(frame_id.encode() + b"\x00")
    put("I", 260)
    put("I", 346)
    put("I", len(events))
    for e in events:
        put("H", int(e["x"]))
        put("H", int(e["y"]))
        s, ns = divmod(int(e["t"]), NS)
        put("i", s)
        put("I", ns)
        put("B", int(e["p"]))
    return bytes(out)


def assert_same_batch(batch, events: np.ndarray, stamp_ns: int, frame_id: str) -> None:
    assert (batch.height, batch.width) == (260, 346)
    assert batch.stamp_ns == stamp_ns
    assert batch.frame_id == frame_id
    assert batch.events.dtype == EVENT_DTYPE
    for field in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(batch.events[field], events[field], err_msg=field)


sizes = st.sampled_from([0, 1, 2, 3, 17, 1001])
frame_ids = st.text(alphabet="abcxyz_/0123456789é", min_size=0, max_size=9)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=sizes, frame_id=frame_ids, stamp=st.integers(0, 2**31 * NS - 1), seed=st.integers(0, 99))
def test_decoder_reads_rclpy_bytes_and_encoder_matches_them(n, frame_id, stamp, seed):
    events = random_events(np.random.default_rng(seed), n)
    msg = to_message(events, stamp, frame_id)
    theirs = serialize_message(msg)

    assert_same_batch(decode_event_array(theirs), events, stamp, frame_id)

    ours = encode_event_array(events, 260, 346, stamp, frame_id)
    assert len(ours) == len(theirs)
    assert deserialize_message(ours, EventArray) == msg
    # rclpy leaves stale memory in alignment padding; ours writes zeros there and only there
    differ = [i for i in range(len(ours)) if ours[i] != theirs[i]]
    assert all(ours[i] == 0 for i in differ)


def test_large_message_round_trips_through_rclpy():
    events = random_events(np.random.default_rng(7), 100_000)
    ours = encode_event_array(events, 260, 346, 42, "davis_left")
    msg = deserialize_message(ours, EventArray)
    assert len(msg.events) == 100_000
    assert (msg.events[-1].x, msg.events[-1].y) == (events["x"][-1], events["y"][-1])
    assert_same_batch(decode_event_array(serialize_message(msg)), events, 42, "davis_left")


@pytest.mark.parametrize("n", [0, 1, 2, 5])
@pytest.mark.parametrize("frame_id", ["", "a", "ab", "abc", "abcd"])
def test_big_endian_buffers_decode_and_encode_identically(n, frame_id):
    events = random_events(np.random.default_rng(n), n)
    crafted = reference_cdr(events, 5 * NS + 9, frame_id, ">")
    assert_same_batch(decode_event_array(crafted), events, 5 * NS + 9, frame_id)
    ours = encode_event_array(events, 260, 346, 5 * NS + 9, frame_id, big_endian=True)
    assert ours == reference_cdr(events, 5 * NS + 9, frame_id, ">", pad=b"\x00")
    assert_same_batch(decode_event_array(ours), events, 5 * NS + 9, frame_id)
    # the struct writer agrees with rclpy in little-endian, so it is a fair reference
    le = reference_cdr(events, 5 * NS + 9, frame_id, "<")
    assert decode_event_array(le).events.tobytes() == decode_event_array(ours).events.tobytes()


def test_padding_garbage_is_never_read():
    events = random_events(np.random.default_rng(3), 9)
    clean = reference_cdr(events, 1, "abcde", "<")
    batch = decode_event_array(clean)
    assert_same_batch(batch, events, 1, "abcde")
    assert clean.count(b"\xaa") > 0


def test_decoder_accepts_memoryview_and_bytearray():
    events = random_events(np.random.default_rng(4), 3)
    buf = encode_event_array(events, 260, 346, 1, "f")
    for wrapped in (memoryview(buf), bytearray(buf)):
        assert_same_batch(decode_event_array(wrapped), events, 1, "f")


@pytest.mark.parametrize("cut", [0, 3, 5, 12, 20, 33, 40, -1, -13, -14])
def test_truncated_buffers_raise_decode_error(cut):
    buf = encode_event_array(random_events(np.random.default_rng(5), 3), 260, 346, 1, "frame")
    with pytest.raises(DecodeError, match="EventArray"):
        decode_event_array(buf[:cut])


def test_sequence_length_past_the_end_is_rejected_without_allocating():
    buf = bytearray(encode_event_array(random_events(np.random.default_rng(6), 2), 1, 1, 0, ""))
    count_at = len(buf) - 29 - 4
    buf[count_at : count_at + 4] = struct.pack("<I", 2**32 - 1)
    with pytest.raises(DecodeError, match="claims 4294967295 elements"):
        decode_event_array(bytes(buf))


def test_bad_encapsulation_and_strings_are_named():
    buf = bytearray(encode_event_array(random_events(np.random.default_rng(8), 1), 1, 1, 0, "ab"))
    bad_id = bytes([0x00, 0x07]) + bytes(buf[2:])
    with pytest.raises(DecodeError, match="encapsulation id 0x0007"):
        decode_event_array(bad_id)
    no_nul = bytearray(buf)
    no_nul[18] = ord("x")  # the NUL that ends "ab"
    with pytest.raises(DecodeError, match="not NUL-terminated"):
        decode_event_array(bytes(no_nul))
    with pytest.raises(DecodeError, match="unexpected bytes"):
        decode_event_array(bytes(buf) + b"\x00" * 8)


def test_raw_subscription_bytes_from_fast_dds_decode_exactly(ros_context):
    node = rclpy.create_node("events_decode_raw", context=ros_context)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    raw: list[bytes] = []
    node.create_subscription(EventArray, "events_decode/raw", raw.append, qos, raw=True)
    pub = node.create_publisher(EventArray, "events_decode/raw", qos)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    events = random_events(np.random.default_rng(9), 513)
    msg = to_message(events, 77 * NS + 5, "davis_left_optical_frame")

    def publish_until_heard() -> bool:
        if not raw:
            pub.publish(msg)
        return bool(raw)

    assert spin_until(executor, publish_until_heard, timeout=15.0), "nothing crossed DDS"
    assert_same_batch(decode_event_array(raw[0]), events, 77 * NS + 5, "davis_left_optical_frame")
    executor.shutdown()
    node.destroy_node()
