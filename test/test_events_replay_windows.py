"""Windows behind a replay: one per trigger (empty ones too), the last one closed by the
player's watermark stamps, and a trigger that arrives after the events that pass it."""

from __future__ import annotations

import numpy as np

from stereospike_ros.events import encode_event_array
from stereospike_ros.events.histogram import event_histogram
from stereospike_ros.events.ingest import StereoIngest
from stereospike_ros.events.types import EVENT_DTYPE
from stereospike_ros.events.windowing import StereoWindower

H, W = 6, 8
MS = 1_000_000


def _events(times_ms: list[float], x: int = 1) -> np.ndarray:
    events = np.zeros(len(times_ms), dtype=EVENT_DTYPE)
    events["t"] = np.round(np.asarray(times_ms) * MS).astype(np.int64)
    events["x"], events["y"], events["p"] = x, 2, 1
    return events


def test_every_trigger_gets_a_window_even_an_empty_one_once_the_stream_is_closed():
    windower = StereoWindower(H, W, schedule="trigger")
    windower.add_triggers([50 * MS, 100 * MS, 150 * MS, 200 * MS])
    out = []
    for side in ("left", "right"):  # events stop at 120 ms; nothing at all in (120, 200)
        out += windower.push(side, _events([10, 60, 70, 110, 120]))
    assert [w.t_end_ns for w in out] == [50 * MS, 100 * MS]  # the rest waits for later events
    for side in ("left", "right"):
        out += windower.advance(side, 200 * MS)  # the replay says: nothing more before 200 ms
    assert [w.t_end_ns for w in out] == [50 * MS, 100 * MS, 150 * MS, 200 * MS]
    assert int(out[2].left.sum()) == 2 and int(out[3].left.sum()) == 0  # empty, still answered
    rate = StereoWindower(H, W, schedule="rate")  # the rate schedule still skips empty windows
    for side in ("left", "right"):
        rate.push(side, _events([10, 20, 300]))
    assert rate.counters.windows_skipped > 0


def test_watermark_stamps_close_the_last_window_through_the_ingest_path():
    ingest = StereoIngest("dvs_msgs/EventArray", schedule="trigger", watermarks=True)
    ingest.add_triggers([50 * MS, 100 * MS])
    events = _events([5, 20, 49, 51, 90, 99.5])
    windows = []
    for side in ("left", "right"):
        for chunk, stamp in ((events[:3], 50 * MS), (events[3:], 100 * MS)):
            ingest.accept(side, encode_event_array(chunk, H, W, stamp, "cam"))
        windows += ingest.flush()
    assert [w.t_end_ns for w in windows] == [50 * MS, 100 * MS]
    expected = event_histogram(events, H, W, 50 * MS, 100 * MS)[0]
    np.testing.assert_array_equal(windows[1].left, expected)
    plain = StereoIngest("dvs_msgs/EventArray", schedule="trigger")  # stamps not trusted
    plain.add_triggers([50 * MS, 100 * MS])
    for side in ("left", "right"):
        for chunk, stamp in ((events[:3], 50 * MS), (events[3:], 100 * MS)):
            plain.accept(side, encode_event_array(chunk, H, W, stamp, "cam"))
    assert [w.t_end_ns for w in plain.flush()] == [50 * MS]  # the last one waits


def test_a_trigger_arriving_after_the_events_that_pass_it_still_finds_them():
    """Window 100 is emitted when events up to 398 ms are in; the trigger at 300 ms comes
    only then (it travels on another topic): without the slack its events were evicted."""
    events = _events(list(np.arange(0, 500, 2.0)))
    expected = event_histogram(events, H, W, 250 * MS, 300 * MS)[0]
    for late_ns, complete in ((0, False), (500 * MS, True)):
        windower = StereoWindower(H, W, schedule="trigger", late_trigger_ns=late_ns)
        for start in range(0, 200, 5):  # 10 ms messages up to 398 ms
            for side in ("left", "right"):
                windower.push(side, events[start : start + 5])
        windower.add_triggers([100 * MS])
        out = windower.advance("left", 400 * MS) + windower.advance("right", 400 * MS)
        windower.add_triggers([300 * MS])  # late
        for side in ("left", "right"):
            out += windower.push(side, events[200:])
        assert [w.t_end_ns for w in out] == [100 * MS, 300 * MS]
        assert np.array_equal(out[1].left, expected) is complete
