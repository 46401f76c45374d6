"""EVT 3.0 payloads: against expelliarmus files, hand-built vector words, rollovers, split streams.

Every rule is pinned on both decoders (``jit`` fixture: the compiled pass and the numpy
reference); random word streams cut anywhere check that they agree event for event and leave
the same ``Evt3State``.

Word layouts follow the Prophesee EVT 3.0 documentation (docs.prophesee.ai, "EVT 3.0 Format"):
type in bits 15..12; EVT_ADDR_Y 0x0 (y in 10..0), EVT_ADDR_X 0x2 (polarity bit 11, x 10..0),
VECT_BASE_X 0x3 (polarity bit 11, x 10..0), VECT_12 0x4 (valid bits 11..0), VECT_8 0x5 (valid
bits 7..0), EVT_TIME_LOW 0x6, EVT_TIME_HIGH 0x8, EXT_TRIGGER 0xA, OTHERS 0xE, CONTINUED 0x7/0xF.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stereospike_ros.events import (
    EVENT_DTYPE,
    DecodeError,
    EventsError,
    Evt3State,
    decode_evt3,
    encode_evt3,
    kernels,
)

expelliarmus = pytest.importorskip("expelliarmus")

needs_numba = pytest.mark.skipif(not kernels.HAVE_NUMBA, reason=f"{kernels.kernel_backend()}")


@pytest.fixture(params=[pytest.param(True, marks=needs_numba, id="compiled"), False])
def jit(request: pytest.FixtureRequest) -> bool:
    return request.param


RAW_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])


def words(*values: int) -> bytes:
    return np.array(values, dtype="<u2").tobytes()


def th(v: int) -> int:
    return 0x8000 | v


def tl(v: int) -> int:
    return 0x6000 | v


def addr_y(y: int) -> int:
    return y


def addr_x(x: int, p: int) -> int:
    return 0x2000 | (p << 11) | x


def vect_base_x(x: int, p: int) -> int:
    return 0x3000 | (p << 11) | x


def expelliarmus_payload(tmp_path: Path, events: np.ndarray) -> bytes:
    """Write ``events`` (t in us) with expelliarmus and return the words after the % header."""
    path = tmp_path / "events.raw"
    expelliarmus.Wizard(encoding="evt3").save(path, events)
    data = path.read_bytes()
    start = 0
    while data[start : start + 1] == b"%":
        start = data.index(b"\n", start) + 1
    return data[start:]


def random_raw_events(rng: np.random.Generator, n: int, max_gap_us: int) -> np.ndarray:
    events = np.zeros(n, dtype=RAW_DTYPE)
    events["t"] = np.cumsum(rng.integers(0, max_gap_us, n))
    events["x"] = rng.integers(0, 1280, n)
    events["y"] = rng.integers(1, 720, n)
    events["y"][0] = 1  # keeps the first word from looking like a '%' header line
    events["p"] = rng.integers(0, 2, n)
    return events


def test_expelliarmus_file_decodes_to_its_events_across_many_rollovers(tmp_path, jit):
    # expelliarmus writes no TIME_HIGH when the 12-bit low wraps: the decoder must infer it.
    # Gaps stay under 4096 us, the most such a stream can carry unambiguously.
    rng = np.random.default_rng(0)
    events = random_raw_events(rng, 20_000, 4000)
    assert events["t"][-1] > 2 * 2**24  # two 24-bit rollovers, ~10,000 12-bit wraps
    payload = expelliarmus_payload(tmp_path, events)
    ours = decode_evt3(payload, time_base_ns=5_000, jit=jit)
    np.testing.assert_array_equal(ours["t"], events["t"] * 1000 + 5_000)
    np.testing.assert_array_equal(ours["x"], events["x"])
    np.testing.assert_array_equal(ours["y"], events["y"])
    np.testing.assert_array_equal(ours["p"], events["p"])
    theirs = expelliarmus.Wizard(encoding="evt3").read(tmp_path / "events.raw")
    np.testing.assert_array_equal(ours["t"], theirs["t"] * 1000 + 5_000)


def test_expelliarmus_payload_split_anywhere_decodes_the_same_with_state(tmp_path, jit):
    rng = np.random.default_rng(1)
    events = random_raw_events(rng, 5_000, 4000)
    payload = expelliarmus_payload(tmp_path, events)
    whole = decode_evt3(payload, jit=jit)
    cuts = np.unique(rng.integers(0, len(payload) // 2, 60)) * 2
    state = Evt3State()
    bounds = zip([0, *cuts], [*cuts, None], strict=True)
    parts = [decode_evt3(payload[a:b], state=state, jit=jit) for a, b in bounds]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_encoder_round_trips_gaps_longer_than_a_rollover(jit):
    rng = np.random.default_rng(2)
    events = np.zeros(300, dtype=EVENT_DTYPE)
    events["t"] = 7_000 + np.cumsum(rng.integers(0, 40_000_000, 300)) * 1000  # gaps up to 40 s
    events["x"] = rng.integers(0, 2048, 300)
    events["y"] = rng.integers(0, 2048, 300)
    events["p"] = rng.integers(0, 2, 300)
    payload = encode_evt3(events, 7_000)
    np.testing.assert_array_equal(decode_evt3(payload, 7_000, jit=jit), events)
    big = np.frombuffer(encode_evt3(events, 7_000, big_endian=True), ">u2")
    assert big.tobytes() == np.frombuffer(payload, "<u2").astype(">u2").tobytes()
    np.testing.assert_array_equal(
        decode_evt3(big.tobytes(), 7_000, big_endian=True, jit=jit), events
    )


def test_explicit_time_high_words_set_bits_23_to_12(jit):
    payload = words(th(0x123), tl(0x456), addr_y(9), addr_x(17, 1), th(0x124), addr_x(18, 0))
    out = decode_evt3(payload, jit=jit)
    assert out["t"].tolist() == [0x123456 * 1000, 0x124456 * 1000]  # new high, low kept
    assert out["x"].tolist() == [17, 18]
    assert out["y"].tolist() == [9, 9]
    assert out["p"].tolist() == [1, 0]


def test_time_high_going_back_by_more_than_half_its_range_is_a_24_bit_rollover(jit):
    payload = words(th(0xFFF), tl(0xFFF), addr_x(1, 1), th(0x000), tl(0x001), addr_x(2, 1))
    assert decode_evt3(payload, jit=jit)["t"].tolist() == [0xFFFFFF * 1000, (2**24 + 1) * 1000]
    jitter = words(th(0x100), tl(0x0), addr_x(1, 1), th(0x0FF), tl(0x0), addr_x(2, 1))
    assert decode_evt3(jitter, jit=jit)["t"].tolist() == [0x100000 * 1000, 0x0FF000 * 1000]


def test_time_low_going_back_without_time_high_infers_one_wrap(jit):
    payload = words(th(0x5), tl(0xF00), addr_x(1, 0), tl(0x010), addr_x(2, 0), tl(0x005))
    payload += words(addr_x(3, 0))
    expect = [(0x5 << 12 | 0xF00), (0x6 << 12 | 0x010), (0x7 << 12 | 0x005)]
    assert decode_evt3(payload, jit=jit)["t"].tolist() == [e * 1000 for e in expect]
    # ... but a TIME_LOW after a TIME_HIGH is not compared with the one before it
    fresh = words(th(0x5), tl(0xF00), addr_x(1, 0), th(0x6), tl(0x010), addr_x(2, 0))
    assert decode_evt3(fresh, jit=jit)["t"].tolist() == [expect[0] * 1000, expect[1] * 1000]


def test_vector_words_emit_one_event_per_valid_bit_and_advance_base_x(jit):
    payload = words(
        th(0x001),
        tl(0x005),
        addr_y(7),
        vect_base_x(100, 1),
        0x4000 | 0b1000_0000_0101,  # VECT_12: x = 100, 102, 111; base -> 112
        0x5000 | 0xF00 | 0b1000_0001,  # VECT_8 (bits 11..8 unused): x = 112, 119; base -> 120
        addr_x(5, 0),  # a single event does not move the vector base
        0x5000 | 0b0000_0010,  # VECT_8: x = 121
        addr_y(8),
        vect_base_x(300, 0),
        0x4000 | 0x001,  # VECT_12: x = 300
        0xA000 | 0x101,  # EXT_TRIGGER, ignored
        0xE000 | 0x019,  # OTHERS, ignored
        0x7000 | 0x3,  # CONTINUED_4, ignored
        0xF000 | 0x123,  # CONTINUED_12, ignored
        0x5000 | 0b1000_0000,  # VECT_8 after VECT_12: x = 312 + 7
    )
    out = decode_evt3(payload, time_base_ns=1, jit=jit)
    assert out["x"].tolist() == [100, 102, 111, 112, 119, 5, 121, 300, 319]
    assert out["y"].tolist() == [7] * 7 + [8, 8]
    assert out["p"].tolist() == [1, 1, 1, 1, 1, 0, 1, 0, 0]
    assert set(out["t"].tolist()) == {(1 << 12 | 5) * 1000 + 1}


def test_vector_state_carries_across_payloads(jit):
    first = words(th(0x0), tl(0x0), addr_y(3), vect_base_x(10, 1), 0x4000 | 0x001)
    second = words(0x5000 | 0x01, addr_y(4), 0x4000 | 0x800)
    state = Evt3State()
    a = decode_evt3(first, state=state, jit=jit)
    b = decode_evt3(second, state=state, jit=jit)
    assert a["x"].tolist() + b["x"].tolist() == [10, 22, 30 + 11]
    assert b["y"].tolist() == [3, 4]
    assert b["p"].tolist() == [1, 1]


def test_events_before_a_valid_time_are_dropped_and_counted(jit):
    payload = words(addr_y(1), addr_x(1, 1), th(0x2), addr_x(2, 1), tl(0x3), addr_x(3, 1))
    state = Evt3State()
    out = decode_evt3(payload, state=state, jit=jit)
    assert out["x"].tolist() == [3]
    assert state.events_without_time == 2
    assert out["t"].tolist() == [(0x2 << 12 | 0x3) * 1000]


def test_bad_payloads_raise_decode_error(jit):
    with pytest.raises(DecodeError, match="3 bytes"):
        decode_evt3(b"\x00\x00\x01", jit=jit)
    with pytest.raises(DecodeError, match=r"word 1 .* type 0xb"):
        decode_evt3(words(th(0), 0xB000), jit=jit)
    assert len(decode_evt3(b"", jit=jit)) == 0


def test_a_time_low_before_any_time_high_leaves_time_unknown_in_the_next_payload(jit):
    # TIME_LOW alone gives no time: the events up to the first TIME_LOW after a TIME_HIGH
    # are dropped, whether the stream comes in one payload or is cut after the first word
    stream = words(tl(5), addr_x(1, 0), tl(6), addr_x(2, 0), th(1), addr_x(3, 0), tl(7))
    stream += words(addr_x(4, 0))
    for cuts in ([], [2], [4], [2, 6, 10]):
        state = Evt3State()
        bounds = zip([0, *cuts], [*cuts, None], strict=True)
        out = np.concatenate([decode_evt3(stream[a:b], state=state, jit=jit) for a, b in bounds])
        assert out["x"].tolist() == [4], cuts
        assert out["t"].tolist() == [(1 << 12 | 7) * 1000]
        assert state.events_without_time == 3 and state.high == 1 and state.time_valid


def test_an_undefined_word_raises_and_leaves_the_state_as_it_was(jit):
    state = Evt3State()
    decode_evt3(words(th(1), tl(2), addr_y(3), vect_base_x(4, 1)), state=state, jit=jit)
    before = Evt3State(**vars(state))
    bad = words(addr_x(2, 0), th(9), 0x4FFF, 0xC123, addr_x(3, 0))
    with pytest.raises(DecodeError, match=r"word 3 \(byte 6\) = 0xc123 has type 0xc, which"):
        decode_evt3(bad, state=state, jit=jit)
    big = np.frombuffer(bad, "<u2").astype(">u2").tobytes()
    with pytest.raises(DecodeError, match=r"word 3 \(byte 6\) = 0xc123"):
        decode_evt3(big, state=state, big_endian=True, jit=jit)
    assert state == before


def test_every_payload_type_decodes_alike(jit):
    payload = words(th(2), tl(3), addr_y(4), addr_x(5, 1), vect_base_x(6, 0), 0x4000 | 0x00F)
    arr = np.frombuffer(payload, dtype=np.uint8)
    expected = decode_evt3(payload, jit=False)
    assert len(expected) == 5
    for kind in (bytearray(payload), memoryview(payload), arr, arr.copy(), arr.view("<u2")):
        assert decode_evt3(kind, jit=jit).tobytes() == expected.tobytes()


# ---------------------------------------------------------------- compiled == numpy

DEFINED_TYPES = [0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0x9, 0xA, 0xE, 0xF]


def random_words(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` words of every defined type, in random proportions, orders and values."""
    weights = rng.random(len(DEFINED_TYPES)) ** 3  # some streams rich in time words, some not
    code = rng.choice(DEFINED_TYPES, n, p=weights / weights.sum())
    value = rng.integers(0, 4096, n)
    # most TIME_HIGH words near the 24-bit rollover, so that plausible rollovers happen
    near = (code == 0x8) & (rng.random(n) < 0.9)
    value[near] = rng.integers(-64, 64, int(near.sum())) % 4096
    return ((code << 12) | value).astype(np.uint16)


def decode_in_pieces(
    payload: bytes, cuts: list[int], jit: bool, **kwargs: object
) -> tuple[np.ndarray, Evt3State]:
    state = Evt3State()
    bounds = zip([0, *cuts], [*cuts, None], strict=True)
    parts = [decode_evt3(payload[a:b], state=state, jit=jit, **kwargs) for a, b in bounds]
    return np.concatenate(parts), state


@needs_numba
@pytest.mark.parametrize("big", [False, True])
def test_compiled_and_numpy_decoders_agree_on_random_word_streams_cut_anywhere(big):
    rng = np.random.default_rng(11 + big)
    seen = {"events": 0, "without_time": 0, "epochs": 0, "time_valid": 0, "discontinuities": 0}
    for _ in range(300):
        n = int(rng.integers(0, 120))
        payload = random_words(rng, n).astype(">u2" if big else "<u2").tobytes()
        base = int(rng.integers(0, 2**60))
        cuts = sorted((2 * rng.integers(0, n + 1, int(rng.integers(1, 6)))).tolist())
        ref, ref_state = decode_in_pieces(payload, [], False, time_base_ns=base, big_endian=big)
        for jit, pieces in ((True, []), (True, cuts), (False, cuts)):
            out, state = decode_in_pieces(payload, pieces, jit, time_base_ns=base, big_endian=big)
            assert out.tobytes() == ref.tobytes() and state == ref_state, (payload.hex(), pieces)
        seen["events"] += len(ref)
        seen["without_time"] += ref_state.events_without_time
        seen["epochs"] += ref_state.epoch
        seen["time_valid"] += ref_state.time_valid
        seen["discontinuities"] += ref_state.discontinuities
    assert all(count > 50 for count in seen.values()), seen  # every rule was exercised


@needs_numba
@pytest.mark.parametrize("big", [False, True])
def test_compiled_and_numpy_decoders_agree_on_encoded_streams_cut_anywhere(big):
    rng = np.random.default_rng(5)
    n = 20_000
    events = np.zeros(n, dtype=EVENT_DTYPE)
    gaps = np.where(rng.random(n) < 0.001, rng.integers(0, 40_000_000, n), rng.integers(0, 9, n))
    events["t"] = 123_456 + np.cumsum(gaps) * 1000  # dense, with jumps past 24-bit rollovers
    events["x"] = rng.integers(0, 2048, n)
    events["y"] = np.sort(rng.integers(0, 2048, n))  # runs of one row, as sensors send
    events["p"] = rng.integers(0, 2, n)
    payload = encode_evt3(events, 123_456, big_endian=big)
    cuts = sorted((2 * rng.integers(0, len(payload) // 2, 40)).tolist())
    results = [
        decode_in_pieces(payload, pieces, jit, time_base_ns=123_456, big_endian=big)
        for jit in (False, True)
        for pieces in ([], cuts)
    ]
    assert results[0][0].tobytes() == events.tobytes()
    assert all(out.tobytes() == events.tobytes() for out, _ in results)
    assert all(state == results[0][1] for _, state in results) and results[0][1].epoch > 3


@needs_numba
def test_the_compiled_decoder_checks_its_state_array():
    buf = np.frombuffer(words(th(1), tl(2)), dtype=np.uint8)
    with pytest.raises(EventsError, match="state must be a writeable int64 array of 15"):
        kernels.decode_evt3_words(buf, False, 0, np.zeros(12, dtype=np.int64))
    with pytest.raises(EventsError, match="16-bit words: 3 bytes"):
        kernels.decode_evt3_words(buf[:3], False, 0, np.zeros(15, dtype=np.int64))
    assert kernels.decode_evt3_words(buf, False, 0, np.zeros(15, np.int64), jit=False) is None


def test_a_rollover_lookalike_after_a_jump_is_a_discontinuity_not_a_new_epoch(jit):
    # A short bad packet: TIME_HIGH 0xFFF (a jump from 0x7D0) then 0x000 (looks like a
    # rollover). Taken on faith it moved the camera 16.8 s ahead for good.
    state = Evt3State()
    decode_evt3(words(th(0x7D0), tl(0), addr_x(1, 1)), state=state, jit=jit)
    decode_evt3(words(th(0xFFF), th(0x000)), state=state, jit=jit)
    out = decode_evt3(words(th(0x7D0), tl(5), addr_x(2, 1)), state=state, jit=jit)
    assert out["t"].tolist() == [(0x7D0 << 12 | 5) * 1000]
    assert state.epoch == 0 and state.discontinuities == 3
    # a real rollover (small steps up to it, landing just past it) still counts
    real = words(th(0xFFE), th(0xFFF), tl(0), th(0x001), tl(1), addr_x(3, 0))
    assert decode_evt3(real, jit=jit)["t"].tolist() == [(2**24 + (1 << 12 | 1)) * 1000]


def test_random_words_stay_within_one_epoch(jit):
    rng = np.random.default_rng(9)
    code = rng.choice([0x0, 0x2, 0x6, 0x8], 200_000)
    payload = ((code << 12) | rng.integers(0, 4096, len(code))).astype("<u2").tobytes()
    state = Evt3State()
    out = decode_evt3(payload, state=state, jit=jit)
    # was ~25,000 epochs (4.8 days): every random step back of over half the range was one;
    # now only a step landing just past the rollover after a small step: a handful
    assert state.epoch < 20 and out["t"].max() < 20 * 2**24 * 1000
    assert state.discontinuities > 1000
