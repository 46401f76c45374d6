"""ROS 1 and ROS 2 bags: what the writers put in, and the readers against rosbags and rclpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_helpers import tiny_recording
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Writer as Ros2Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from stereospike_ros.data.bags import (
    MVSEC_TOPICS,
    BagSequence,
    BagTopics,
    _camera_info_msg,
    write_ros1_bag,
    write_ros2_bag,
)
from stereospike_ros.data.msgdefs import ros2_typestore
from stereospike_ros.data.open import open_sequence
from stereospike_ros.events import encode_event_packet
from stereospike_ros.events.decode_ros1 import decode_event_array_ros1

RPG_EVENT_ARRAY_MD5 = "5e8beee5a6c107e504c2e78903c224b8"  # rpg_dvs_ros, as in MVSEC's bags


@pytest.fixture(scope="module")
def rec():
    return tiny_recording(seed=11, frames=6)


def _raw_messages(path, topic):
    with AnyReader([path]) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [(c, t, bytes(raw)) for c, t, raw in reader.messages(connections=conns)]


def test_ros1_bag_carries_rpg_dvs_definitions_and_rosbags_agrees_with_our_decoder(rec, tmp_path):
    path = tmp_path / "rec.bag"
    write_ros1_bag(rec, path)
    with AnyReader([path]) as reader:
        conns = {c.topic: c for c in reader.connections}
        assert set(conns) == {
            "/davis/left/events",
            "/davis/right/events",
            "/davis/left/camera_info",
            "/davis/right/camera_info",
            "/davis/left/depth_image_rect",
        }
        events_conn = conns["/davis/left/events"]
        assert events_conn.msgtype == "dvs_msgs/msg/EventArray"
        assert events_conn.digest == RPG_EVENT_ARRAY_MD5
        for _, _, raw in list(reader.messages(connections=[events_conn]))[:3]:
            msg = reader.deserialize(raw, events_conn.msgtype)  # rosbags' generic ROS 1 path
            ours = decode_event_array_ros1(raw)
            assert (msg.height, msg.width) == (ours.height, ours.width)
            ref = [
                (e.x, e.y, int(e.ts.sec) * 10**9 + int(e.ts.nanosec), e.polarity)
                for e in msg.events
            ]
            got = [(int(e["x"]), int(e["y"]), int(e["t"]), bool(e["p"])) for e in ours.events]
            assert got == ref


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_ros2_bag_messages_deserialize_with_rclpy_to_what_we_read(rec, tmp_path, storage):
    rclpy_serialization = pytest.importorskip("rclpy.serialization")
    from dvs_msgs.msg import EventArray
    from sensor_msgs.msg import CameraInfo, Image

    path = tmp_path / f"rec_{storage}"
    write_ros2_bag(rec, path, storage)
    events = []
    for _, bag_t, raw in _raw_messages(path, "/davis/right/events"):
        msg = rclpy_serialization.deserialize_message(raw, EventArray)
        assert (msg.height, msg.width) == (rec.height, rec.width)
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        ts = [e.ts.sec * 10**9 + e.ts.nanosec for e in msg.events]
        assert stamp == bag_t == ts[-1]  # stamped with the message's last event
        events += [(e.x, e.y, t, int(e.polarity)) for e, t in zip(msg.events, ts, strict=True)]
    with open_sequence(path) as seq:
        ours = np.concatenate(list(seq.iter_events("right")))
        assert [tuple(int(v) for v in e) for e in ours] == events
        _, _, raw = _raw_messages(path, "/davis/right/camera_info")[0]
        info = rclpy_serialization.deserialize_message(raw, CameraInfo)
        np.testing.assert_array_equal(np.reshape(info.p, (3, 4)), seq.calibration("right").P)
        _, _, raw = _raw_messages(path, "/davis/left/depth_image_rect")[2]
        img = rclpy_serialization.deserialize_message(raw, Image)
        assert img.encoding == "32FC1" and img.step == 4 * rec.width
        depth = np.frombuffer(bytes(img.data), "<f4").reshape(rec.height, rec.width)
        np.testing.assert_array_equal(depth, next(seq.depth_frames([2])).depth)
        np.testing.assert_array_equal(depth, rec.depth[2])


@pytest.mark.parametrize("period_ms", [1, 10])
def test_events_are_cut_into_messages_of_the_requested_duration(rec, tmp_path, period_ms):
    path = tmp_path / "rec.bag"
    period = period_ms * 1_000_000
    write_ros1_bag(rec, path, message_period_ns=period, camera_info_period_ns=100_000_000)
    messages = _raw_messages(path, "/davis/left/events")
    bins = np.unique(rec.left_events["t"] // period)
    assert len(messages) == len(bins)
    for (_, _, raw), b in zip(messages, bins, strict=True):
        t = decode_event_array_ros1(raw).events["t"]
        assert (t // period == b).all()
    infos = _raw_messages(path, "/davis/left/camera_info")
    span = int(max(rec.left_events["t"][-1], rec.right_events["t"][-1], rec.depth_ts_ns[-1]))
    assert len(infos) == span // 100_000_000 + 1


def test_mvsec_style_data_and_gt_bags_open_together(rec, tmp_path):
    events_only = BagTopics(depth="/none")
    write_ros1_bag(rec, tmp_path / "seq_data.bag", topics=events_only)
    write_ros1_bag(rec, tmp_path / "full.bag")
    # a gt bag holds only depth: copy those messages over with rosbags
    from rosbags.rosbag1 import Writer

    with AnyReader([tmp_path / "full.bag"]) as reader, Writer(tmp_path / "seq_gt.bag") as writer:
        conn = next(c for c in reader.connections if c.topic == MVSEC_TOPICS.depth)
        out = writer.add_connection(conn.topic, conn.msgtype, typestore=reader.typestore)
        for _, t, raw in reader.messages(connections=[conn]):
            writer.write(out, t, raw)
    with open_sequence(tmp_path / "seq_data.bag") as seq:
        assert isinstance(seq, BagSequence) and len(seq.paths) == 2
        assert seq.name == "seq"
        np.testing.assert_array_equal(seq.depth_stamps(), rec.depth_ts_ns)
    with open_sequence(tmp_path / "seq") as seq:  # the prefix finds both
        assert len(seq.paths) == 2


def test_ros2_bag_of_event_packets_is_read_in_bulk(rec, tmp_path):
    store = ros2_typestore()
    packet_msg = Path(__file__).parents[1] / "interfaces/event_camera_msgs/msg/EventPacket.msg"
    packet_store = get_typestore(Stores.ROS2_KILTED)
    packet_store.register(
        get_types_from_msg(packet_msg.read_text(), "event_camera_msgs/msg/EventPacket")
    )
    events = {}
    path = tmp_path / "packets"
    with Ros2Writer(path, version=9) as writer:
        conns = {}
        for side in ("left", "right"):
            topic = f"/davis/{side}/events"
            conns[side] = writer.add_connection(
                topic, "event_camera_msgs/msg/EventPacket", typestore=packet_store
            )
            ev = getattr(rec, f"{side}_events").copy()
            ev["t"] -= ev["t"] % 1000  # evt3 carries microseconds
            events[side] = ev
            for i, chunk in enumerate(np.array_split(ev, 7)):
                stamp = int(chunk["t"][-1])
                raw = encode_event_packet(chunk, rec.height, rec.width, stamp, side, "evt3", i, 0)
                writer.write(conns[side], stamp, raw)
        info = writer.add_connection(
            "/davis/left/camera_info", "sensor_msgs/msg/CameraInfo", typestore=store
        )
        msg = _camera_info_msg(store, rec.left_calibration, "left", 0, ros1=False)
        writer.write(info, 0, bytes(store.serialize_cdr(msg, "sensor_msgs/msg/CameraInfo")))
    with open_sequence(path) as seq:
        assert (seq.height, seq.width) == (rec.height, rec.width)
        assert len(seq.depth_stamps()) == 0  # no ground truth in this bag
        for side in ("left", "right"):
            np.testing.assert_array_equal(np.concatenate(list(seq.iter_events(side))), events[side])


def test_writers_refuse_to_overwrite_and_clean_up_after_a_failure(rec, tmp_path, monkeypatch):
    write_ros2_bag(rec, tmp_path / "a", "mcap")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_ros2_bag(rec, tmp_path / "a", "mcap")
    with pytest.raises(ValueError, match="storage"):
        write_ros2_bag(rec, tmp_path / "b", "zip")

    from stereospike_ros.data import bags

    def broken(*args, **kwargs):
        yield 0, MVSEC_TOPICS.left_events, b"\0\1\0\0"
        raise KeyboardInterrupt

    monkeypatch.setattr(bags, "_bag_messages", broken)
    with pytest.raises(KeyboardInterrupt):
        write_ros1_bag(rec, tmp_path / "c.bag")
    assert not (tmp_path / "c.bag").exists()
