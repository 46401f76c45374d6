"""event_camera_msgs/EventPacket CDR and its libcaer payload, against rclpy serialization."""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest

from stereospike_ros.events import (
    EVENT_DTYPE,
    DecodeError,
    EncodeError,
    EventPacketDecoder,
    decode_event_packet,
    decode_libcaer,
    encode_event_packet,
    encode_evt3,
    encode_libcaer,
)

pytest.importorskip("rclpy")
from event_camera_msgs.msg import EventPacket
from rclpy.serialization import deserialize_message, serialize_message


def sorted_events(rng: np.random.Generator, n: int, t0_ns: int = 10**18) -> np.ndarray:
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["t"] = t0_ns + np.cumsum(rng.integers(0, 3_000, n)) * 1000  # whole microseconds
    events["x"] = rng.integers(0, 346, n)
    events["y"] = rng.integers(0, 260, n)
    events["p"] = rng.integers(0, 2, n)
    return events


def packet(payload: bytes, encoding: str, time_base: int, frame_id: str = "cam") -> EventPacket:
    msg = EventPacket(height=260, width=346, seq=3, time_base=time_base, encoding=encoding)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 34
    msg.events = payload
    return msg


@pytest.mark.parametrize("encoding", ["evt3", "libcaer"])
@pytest.mark.parametrize("frame_id", ["", "a", "left_cam"])
@pytest.mark.parametrize("n", [0, 1, 1000])
def test_rclpy_packets_decode_and_ours_deserialize_identically(encoding, frame_id, n):
    events = sorted_events(np.random.default_rng(n), n)
    time_base = int(events["t"][0]) if n else 0
    payload = (encode_evt3 if encoding == "evt3" else encode_libcaer)(events, time_base)
    msg = packet(payload, encoding, time_base, frame_id)

    batch = decode_event_packet(serialize_message(msg))
    assert (batch.height, batch.width, batch.frame_id) == (260, 346, frame_id)
    assert batch.stamp_ns == 12 * 10**9 + 34
    np.testing.assert_array_equal(batch.events, events)

    ours = encode_event_packet(events, 260, 346, 12 * 10**9 + 34, frame_id, encoding, seq=3)
    assert deserialize_message(ours, EventPacket) == msg
    assert len(ours) == len(serialize_message(msg))


def test_big_endian_packet_round_trips():
    events = sorted_events(np.random.default_rng(1), 50)
    for encoding in ("evt3", "libcaer"):
        buf = encode_event_packet(events, 260, 346, 5, "f", encoding, big_endian=True)
        assert buf[:2] == b"\x00\x00"
        np.testing.assert_array_equal(decode_event_packet(buf).events, events)


def test_libcaer_bit_layout_matches_event_camera_codecs():
    # event_camera_codecs libcaer decoder: uint32 data (polarity bit 1, y bits 2..16, x bits
    # 17..31), int32 timestamp in us; t = time_base + ts * 1000.
    data = (345 << 17) | (259 << 2) | (1 << 1) | 1
    raw = struct.pack("<Ii", data, 1234) + struct.pack("<Ii", (7 << 17) | (8 << 2), 1235)
    out = decode_libcaer(raw, time_base_ns=10**9)
    assert out["x"].tolist() == [345, 7]
    assert out["y"].tolist() == [259, 8]
    assert out["p"].tolist() == [1, 0]
    assert out["t"].tolist() == [10**9 + 1_234_000, 10**9 + 1_235_000]
    assert encode_libcaer(out, 10**9) == struct.pack("<Ii", data, 1234) + struct.pack(
        "<Ii", (7 << 17) | (8 << 2) | 1, 1235
    )


def test_libcaer_timestamp_rollover_inside_a_packet_adds_2_pow_31_us():
    raw = struct.pack("<IiIi", 0, 2**31 - 1, 0, 5)
    assert decode_libcaer(raw)["t"].tolist() == [(2**31 - 1) * 1000, (2**31 + 5) * 1000]
    events = np.zeros(2, dtype=EVENT_DTYPE)
    events["t"] = [(2**31 - 1) * 1000, (2**31 + 5) * 1000]
    assert encode_libcaer(events) == struct.pack("<IiIi", 1, 2**31 - 1, 1, 5)


def test_evt3_stream_split_over_packets_needs_one_decoder_per_camera():
    events = sorted_events(np.random.default_rng(2), 3000, t0_ns=0)
    payload = encode_evt3(events, 0)
    cuts = [0, 1000, 2002, 4000, len(payload)]
    decoder = EventPacketDecoder()
    parts = []
    for a, b in itertools.pairwise(cuts):
        buf = serialize_message(packet(payload[a:b], "evt3", 0))
        parts.append(decoder.decode(buf).events)
    np.testing.assert_array_equal(np.concatenate(parts), events)


def test_a_looping_evt3_stream_decodes_each_pass_as_the_first():
    # A bag recorded mid-stream: its first packet starts between TIME_HIGH words. When the
    # bag loops, seq goes back; the second pass must not stamp its first events with the
    # time high the first pass ended on (that put them a whole pass late).
    events = sorted_events(np.random.default_rng(5), 3000, t0_ns=0)
    payload = encode_evt3(events, 0)[10:]
    cuts = [0, 1000, 2002, 4000, len(payload)]
    bufs = []
    for seq, (a, b) in enumerate(itertools.pairwise(cuts), start=7):
        msg = packet(payload[a:b], "evt3", 0)
        msg.seq = seq
        bufs.append(serialize_message(msg))
    decoder = EventPacketDecoder()
    first = np.concatenate([decoder.decode(b).events for b in bufs])
    dropped = decoder.evt3_state.events_without_time
    assert 0 < dropped < 10 and len(first) > len(events) - 10
    np.testing.assert_array_equal(first, events[-len(first) :])  # the words cut off hold the rest
    second = np.concatenate([decoder.decode(b).events for b in bufs])
    np.testing.assert_array_equal(second, first)
    assert decoder.restarts == 1 and decoder.discontinuities == 0
    assert decoder.evt3_state.events_without_time == 2 * dropped  # counts survive a restart


def test_unsupported_encoding_is_named_with_the_supported_ones():
    buf = serialize_message(packet(b"\x00" * 8, "libcaer_cmp", 0, "right"))
    with pytest.raises(DecodeError, match=r"'libcaer_cmp'.*'right'.*evt3, libcaer"):
        decode_event_packet(buf)
    with pytest.raises(EncodeError, match="mono"):
        encode_event_packet(sorted_events(np.random.default_rng(0), 2), 1, 1, 0, "", "mono")


def test_truncated_or_inconsistent_packets_raise_decode_error():
    buf = serialize_message(
        packet(encode_libcaer(sorted_events(np.random.default_rng(3), 4)), "libcaer", 0)
    )
    for cut in (2, 10, 30, 60, len(buf) - 1):
        with pytest.raises(DecodeError, match="EventPacket"):
            decode_event_packet(buf[:cut])
    odd = serialize_message(packet(b"\x00" * 12, "libcaer", 0))
    with pytest.raises(DecodeError, match="12 bytes, not a multiple of the 8-byte"):
        decode_event_packet(odd)


@pytest.mark.parametrize("big_endian", [False, True])
def test_every_header_alignment_decodes_the_fields_rclpy_reads(big_endian):
    """frame_id lengths 0..9 move every later field through each CDR alignment."""
    events = np.zeros(3, dtype=EVENT_DTYPE)
    events["t"] = [5_000, 6_000, 9_000]
    events["x"] = [1, 2, 3]
    for n_frame in range(10):
        for encoding in ("evt3", "libcaer"):
            buf = encode_event_packet(
                events, 260, 346, 7 * 10**9 + 1, "f" * n_frame, encoding, seq=9 + n_frame,
                time_base=1_000 * (n_frame % 5), big_endian=big_endian,
            )  # fmt: skip
            decoder = EventPacketDecoder()
            batch = decoder.decode(buf)
            msg = deserialize_message(buf, EventPacket)
            assert (batch.height, batch.width, batch.frame_id) == (260, 346, msg.header.frame_id)
            assert batch.stamp_ns == msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            assert decoder.last_seq == msg.seq == 9 + n_frame
            assert msg.time_base == 1_000 * (n_frame % 5) and msg.encoding == encoding
            np.testing.assert_array_equal(batch.events, events)


@pytest.mark.parametrize("jit", [False, None])
def test_libcaer_counts_implausible_steps_back_instead_of_adding_rollovers(jit):
    from stereospike_ros.events.libcaer import LibcaerState

    rec = np.zeros(4, dtype=[("data", "<u4"), ("ts", "<i4")])
    rec["data"] = 1
    rec["ts"] = [2**31 - 10, 5, 1_000, 10]  # a rollover (lands 5 us past), then garbage back
    state = LibcaerState()
    out = decode_libcaer(rec.tobytes(), 0, jit=jit, state=state)
    # the step back from 1000 to 10 is no rollover: the time goes back, within the epoch
    assert (out["t"] // 1000).tolist() == [2**31 - 10, 2**31 + 5, 2**31 + 1_000, 2**31 + 10]
    assert state.discontinuities == 1
