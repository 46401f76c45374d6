"""``doctor``: a real DDS round trip (``ros/round_trip.py``) and a spiking neuron, in-process."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("dvs_msgs")

from stereospike_ros.cli import main
from stereospike_ros.events import empty_events, encode_event_array
from stereospike_ros.ros.round_trip import dds_round_trip


def test_the_event_array_comes_back_as_the_cdr_bytes_of_its_events():
    trip = dds_round_trip(37)
    assert trip.events == 37 and 0 <= trip.seconds < 10.0
    # the same message as the package's own encoder writes it: 260x346, no frame_id
    assert trip.cdr_bytes == len(encode_event_array(empty_events(37), 260, 346, 0, ""))


def test_doctor_prints_one_ok_line_per_check(capsys):
    assert main(["doctor", "--events", "20"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ok: ")]
    assert len(lines) == 2
    assert lines[0].startswith("ok: DDS (") and "20 events" in lines[0]
    assert lines[1].startswith("ok: torch ") and "IF neuron fired" in lines[1]
