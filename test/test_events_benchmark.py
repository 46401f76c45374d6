"""The events benchmark runs end to end on tiny sizes (figures are printed, never asserted)."""

from __future__ import annotations

from stereospike_ros.cli import main


def test_events_benchmark_prints_throughput_and_the_rclpy_ratio(capsys):
    assert main(["benchmark", "events", "--sizes", "1000,3000", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "EventArray" in out and "EVT3" in out
    assert "rclpy deserialize_message:" in out or "rclpy reference unavailable" in out
    # the node path pairs 4 messages per camera into 50 ms windows: ends at +50/+100/+150 ms
    # are passed by both cameras; the first is lost when no event falls on the first microsecond
    node = out.split("node path:")[1].splitlines()[2:4]
    assert [line.split()[0] for line in node] == ["1000", "3000"]
    assert all(line.split()[1] in ("2", "3") for line in node)


def test_events_benchmark_without_rclpy_reports_the_ratio_unavailable(capsys):
    assert main(["benchmark", "events", "--sizes", "1000", "--repeat", "1", "--no-rclpy"]) == 0
    out = capsys.readouterr().out
    assert "rclpy reference skipped" in out and "n/a" in out
