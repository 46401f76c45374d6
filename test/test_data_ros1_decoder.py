"""The vectorized ROS 1 dvs_msgs/EventArray codec against rosbags' own ROS 1 serializer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stereospike_ros.data.msgdefs import EVENT, EVENT_ARRAY, ros1_typestore
from stereospike_ros.events.decode_ros1 import decode_event_array_ros1, encode_event_array_ros1
from stereospike_ros.events.errors import DecodeError, EncodeError
from stereospike_ros.events.types import EVENT_DTYPE

# rosbags maps ROS 1 ``time`` onto builtin_interfaces/Time (int32 sec), so the comparisons stay
# below 2**31 s (2038); our codec itself takes the full uint32 range.
MAX_T = 2**31 * 10**9


def _events(seed: int, n: int, t_max: int = MAX_T) -> np.ndarray:
    rng = np.random.default_rng(seed)
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"] = rng.integers(0, 2**16, n)
    events["y"] = rng.integers(0, 2**16, n)
    events["t"] = rng.integers(0, t_max, n)
    events["p"] = rng.integers(0, 2, n)
    return events


def _rosbags_message(events: np.ndarray, height: int, width: int, stamp: int, frame_id: str):
    store = ros1_typestore()
    Time = store.types["builtin_interfaces/msg/Time"]
    Event = store.types[EVENT]
    header = store.types["std_msgs/msg/Header"](
        seq=3, stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=frame_id
    )
    items = [
        Event(
            x=int(e["x"]),
            y=int(e["y"]),
            ts=Time(sec=int(e["t"]) // 10**9, nanosec=int(e["t"]) % 10**9),
            polarity=bool(e["p"]),
        )
        for e in events
    ]
    return store.types[EVENT_ARRAY](header=header, height=height, width=width, events=items)


@settings(max_examples=25, deadline=None)
@given(
    n=st.sampled_from([0, 1, 2, 13, 257]),
    seed=st.integers(0, 2**16),
    frame_id=st.text(max_size=9),
    height=st.integers(0, 2**32 - 1),
    width=st.integers(0, 2**32 - 1),
    stamp=st.integers(0, MAX_T - 1),
)
def test_encoder_is_byte_identical_to_rosbags_and_decoder_inverts_it(
    n, seed, frame_id, height, width, stamp
):
    events = _events(seed, n)
    ours = encode_event_array_ros1(events, height, width, stamp, frame_id, seq=3)
    msg = _rosbags_message(events, height, width, stamp, frame_id)
    assert ours == bytes(ros1_typestore().serialize_ros1(msg, EVENT_ARRAY))
    batch = decode_event_array_ros1(ours)
    assert (batch.height, batch.width, batch.stamp_ns, batch.frame_id) == (
        height,
        width,
        stamp,
        frame_id,
    )
    np.testing.assert_array_equal(batch.events, events)


def test_decoder_matches_rosbags_deserializer_on_a_large_message():
    events = _events(7, 3000)
    raw = encode_event_array_ros1(events, 260, 346, 1_504_643_712_000_000_001, "davis_left")
    msg = ros1_typestore().deserialize_ros1(raw, EVENT_ARRAY)
    ref = np.array(
        [
            (e.x, e.y, int(e.ts.sec) * 10**9 + int(e.ts.nanosec), int(e.polarity))
            for e in msg.events
        ],
        dtype=EVENT_DTYPE,
    )
    np.testing.assert_array_equal(decode_event_array_ros1(memoryview(raw)).events, ref)
    assert (
        decode_event_array_ros1(np.frombuffer(raw, np.uint8)).stamp_ns == 1_504_643_712_000_000_001
    )


def test_full_uint32_seconds_round_trip():
    events = _events(5, 50, t_max=2**32 * 10**9)
    raw = encode_event_array_ros1(events, 1, 1, 2**32 * 10**9 - 1)
    batch = decode_event_array_ros1(raw)
    np.testing.assert_array_equal(batch.events, events)
    assert batch.stamp_ns == 2**32 * 10**9 - 1


def test_any_nonzero_polarity_byte_decodes_as_on():
    raw = bytearray(encode_event_array_ros1(_events(1, 4), 1, 1, 0))
    raw[-1] = 7  # polarity of the last event
    assert decode_event_array_ros1(bytes(raw)).events["p"][-1] == 1


@pytest.mark.parametrize(
    ("cut", "match"),
    [(10, "header needs"), (18, "frame_id"), (30, "height/width/count"), (-1, "claims 5 events")],
)
def test_truncated_buffers_raise_decode_error_naming_the_field(cut, match):
    raw = encode_event_array_ros1(_events(2, 5), 260, 346, 5, "davis_left")
    with pytest.raises(DecodeError, match=match):
        decode_event_array_ros1(raw[:cut])


def test_trailing_bytes_are_rejected():
    raw = encode_event_array_ros1(_events(2, 5), 260, 346, 5, "")
    with pytest.raises(DecodeError, match="expected"):
        decode_event_array_ros1(raw + b"\0")


def test_times_outside_ros1_time_raise_encode_error():
    events = _events(3, 2)
    events["t"][0] = -1
    with pytest.raises(EncodeError, match="ROS 1 time"):
        encode_event_array_ros1(events, 1, 1, 0)
    with pytest.raises(EncodeError, match="stamp_ns"):
        encode_event_array_ros1(_events(3, 2), 1, 1, 2**32 * 10**9)
