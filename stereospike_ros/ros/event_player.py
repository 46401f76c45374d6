"""``event_player``: replays a recording onto the topics a stereo event camera driver uses.

Reads an MVSEC HDF5 pair (or a simulator output, same layout), a ROS 1 bag or a ROS 2 bag
through ``stereospike_ros.data.open_sequence`` and publishes, in sensor-time order paced by
the wall clock (``rate``; 0 = as fast as possible):

- left/right events as ``dvs_msgs/EventArray`` or ``event_camera_msgs/EventPacket`` (evt3,
  libcaer), ``message_ms`` of events each, as serialized CDR bytes built by the vectorized
  encoders (no per-event Python objects); header stamp = end of the message's time slot;
- ``camera_info`` of both cameras (when the recording carries calibration) with each depth
  frame;
- the ground-truth depth (``sensor_msgs/Image`` 32FC1 metres, NaN = no data);
- ``/clock`` (rosgraph_msgs/Clock) at up to 100 Hz of sensor time, for ``use_sim_time``;
- each camera's rectification, as ``evaluate`` applies it to this recording (MVSEC maps,
  the camera_info it carries, or identity), once, transient local: a 32FC2 image of the
  rectified (x, y) of every raw pixel (NaN = leaves the image). The depth node rectifies with
  it, or warns at start-up that it does not.

Every event message's header stamp is the end of its time slot: all of the camera's events
before it have been sent (a watermark, read by the depth node with ``replay_watermarks``);
after the last slot an empty message per camera stamped at the last ground-truth frame lets
the node close the last window. ``answer_topic`` (the node's depth) is counted: the summary
says how many ground-truth frames were answered. With ``lockstep`` the player sends the events
past a ground-truth stamp only once that stamp was answered, so every frame is answered and
the result does not depend on the machine's speed.

With ``loop`` the recording starts again with every stamp shifted by its length, so time keeps
increasing for every subscriber. The process exits when done unless ``stay_up``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image

from stereospike_ros.events.cdr import read_header_stamp_ns
from stereospike_ros.events.errors import DecodeError
from stereospike_ros.events.types import EVENT_DTYPE, SIDES
from stereospike_ros.ros import convert
from stereospike_ros.ros.common import (
    declare_parameters,
    event_qos,
    latched_qos,
    message_class,
    output_qos,
)
from stereospike_ros.ros.errors import PlayerError, StartupError
from stereospike_ros.ros.parameters import PLAYER_PARAMS, normalize_event_type
from stereospike_ros.ros.playback import slots

__all__ = ["EventPlayer", "PlayStats", "main"]

CLOCK_PERIOD_NS = 10_000_000


@dataclass
class PlayStats:
    """What one run of the player sent."""

    messages: int = 0
    events: int = 0
    depth_frames: int = 0
    loops: int = 0
    sensor_s: float = 0.0
    wall_s: float = 0.0
    answered: int | None = None  # ground-truth frames answered on answer_topic (None: unheard)

    def summary(self) -> str:
        factor = self.sensor_s / self.wall_s if self.wall_s > 0 else float("inf")
        text = (
            f"played {self.events} events in {self.messages} messages and {self.depth_frames} "
            f"depth frames: {self.sensor_s:.2f} s of recording in {self.wall_s:.2f} s "
            f"({factor:.2f}x real time)"
        )
        if self.answered is not None:
            text += (
                f"; frames expected {self.depth_frames}, answered {self.answered}, missing "
                f"{self.depth_frames - self.answered}"
            )
        return text


class EventPlayer(Node):
    """Publishes a recording; ``play()`` runs the whole replay in the calling thread."""

    def __init__(self, node_name: str = "event_player", **kwargs: object) -> None:
        super().__init__(node_name, **kwargs)
        p = declare_parameters(self, PLAYER_PARAMS)
        self.p = p
        if not p["recording"]:
            raise StartupError("parameter 'recording' is empty: give a recording to play")
        try:
            self.event_type = normalize_event_type(p["event_type"])
        except ValueError as err:
            raise StartupError(str(err)) from err
        self.sequence = _open(p["recording"], p["calibration"])
        self.stats = PlayStats()
        qos = output_qos(1000)
        if not p["reliable"]:
            qos = event_qos(False, 1000)
        msg_type = message_class(self.event_type)
        self.pub_events = {
            side: self.create_publisher(msg_type, p[f"{side}_events_topic"], qos) for side in SIDES
        }
        self.calibrations = {side: self.sequence.calibration(side) for side in SIDES}
        self.pub_info = {
            side: self.create_publisher(CameraInfo, p[f"{side}_camera_info_topic"], output_qos(10))
            for side in SIDES
            if p[f"{side}_camera_info_topic"] and self.calibrations[side] is not None
        }
        self.pub_depth = (
            self.create_publisher(Image, p["depth_topic"], output_qos(100))
            if p["depth_topic"]
            else None
        )
        self.pub_clock = self.create_publisher(Clock, "/clock", 10) if p["publish_clock"] else None
        self._publish_rectification()
        self._answers: set[int] = set()
        self._answer_cv = threading.Condition()
        self._awaited: list[int] = []  # ground-truth stamps sent, answers counted at the end
        self.sub_answer = (
            self.create_subscription(
                Image, p["answer_topic"], self._on_answer, event_qos(True, 100), raw=True
            )
            if p["answer_topic"]
            else None
        )
        self._encode = self._encoder()
        self._seq = 0
        self._stop = threading.Event()
        self.get_logger().info(
            f"{p['recording']}: {self.sequence.width}x{self.sequence.height}, "
            f"{self.event_type} on {p['left_events_topic']} / {p['right_events_topic']}, "
            f"rate {p['rate']:g}, {p['message_ms']:g} ms per message"
        )

    def _publish_rectification(self) -> None:
        """Each camera's rectification as ``evaluate`` applies it, latched for late joiners."""
        from stereospike_ros.events import Rectifier

        qos = latched_qos()
        self.rectifiers = {}
        self.pub_rectification = {}  # kept: a latched sample lives as long as its publisher
        for side in SIDES:
            if self.p["rectify"]:
                try:
                    rectifier = self.sequence.rectifier(side)
                except Exception as err:  # the readers' error types: a bad calibration
                    raise StartupError(
                        f"{side} rectification of {self.p['recording']}: {err}"
                    ) from err
            else:
                rectifier = Rectifier.identity(self.sequence.height, self.sequence.width)
                rectifier.source = "identity (rectify false)"
            self.rectifiers[side] = rectifier
            topic = self.p[f"{side}_rectification_topic"]
            self.get_logger().info(f"{side} rectification: {rectifier.source}")
            if not topic:
                continue
            pub = self.pub_rectification[side] = self.create_publisher(Image, topic, qos)
            maps = np.stack(rectifier.maps(), axis=-1)
            pub.publish(convert.image_from_array(maps, "32FC2", 0, self.p[f"{side}_frame_id"]))

    def _on_answer(self, buf: bytes) -> None:
        try:
            stamp = read_header_stamp_ns(buf)
        except DecodeError:
            return
        with self._answer_cv:
            self._answers.add(stamp)
            self._answer_cv.notify_all()

    def _wait_answer(self, stamp: int, timeout_s: float) -> bool:
        with self._answer_cv:
            return (
                self._answer_cv.wait_for(
                    lambda: stamp in self._answers or self._stop.is_set(), timeout_s
                )
                and stamp in self._answers
            )

    def _watermark(self, stamp: int) -> None:
        """An empty message per camera: every event before ``stamp`` has been sent."""
        for side in SIDES:
            empty = np.zeros(0, dtype=EVENT_DTYPE)
            self.pub_events[side].publish(self._encode(empty, stamp, self.p[f"{side}_frame_id"]))

    def _lockstep_wait(self, before_ns: int) -> None:
        """Wait for the answers to the frames stamped before ``before_ns`` (events up to it
        were sent: say so first, in case the last slot ended earlier)."""
        due = [s for s in self._pending if s <= before_ns]
        if not due:
            return
        self._watermark(before_ns)
        for stamp in due:
            self._pending.remove(stamp)
            if not self._wait_answer(stamp, self.p["answer_timeout_s"]) and not self._stop.is_set():
                self.get_logger().warning(
                    f"lockstep: no answer on {self.p['answer_topic']} for the frame stamped "
                    f"{stamp} ns within {self.p['answer_timeout_s']:g} s; going on"
                )

    def _encoder(self) -> object:
        from stereospike_ros.events import encode_event_array, encode_event_packet

        h, w = self.sequence.height, self.sequence.width
        if self.event_type == "dvs_msgs/EventArray":
            return lambda events, stamp, frame: encode_event_array(events, h, w, stamp, frame)

        encoding = self.p["evt_encoding"]

        def packet(events: object, stamp: int, frame: str) -> bytes:
            self._seq += 1
            return encode_event_packet(events, h, w, stamp, frame, encoding, seq=self._seq)

        return packet

    def stop(self) -> None:
        """Ask ``play()`` to return after the current message."""
        self._stop.set()

    def wait_for_subscribers(self) -> bool:
        """Wait (up to ``wait_timeout_s``) for ``wait_for_subscribers`` on both event topics and
        ``wait_for_depth_subscribers`` on the ground-truth topic (a reader that joins late
        misses what was sent before: topics are volatile)."""
        wanted = [(pub, self.p["wait_for_subscribers"]) for pub in self.pub_events.values()]
        if self.pub_depth is not None:
            wanted.append((self.pub_depth, self.p["wait_for_depth_subscribers"]))
        # the node's maps subscriptions too: its events must not arrive before its rectification
        wanted += [(pub, self.p["wait_for_subscribers"]) for pub in self.pub_rectification.values()]
        wanted = [(pub, n) for pub, n in wanted if n > 0]
        # lockstep: the node's depth must reach this reader (matched, not only seen in the
        # graph), or the first answers are lost and each costs answer_timeout_s
        answer = self.sub_answer if self.p["lockstep"] else None

        def missing() -> list[str]:
            names = [pub.topic_name for pub, n in wanted if pub.get_subscription_count() < n]
            if answer is not None and not answer.get_publisher_count():
                names.append(f"{answer.topic_name} (no publisher to wait for in lockstep)")
            return names

        deadline = time.monotonic() + self.p["wait_timeout_s"]
        while (
            (wanted or answer is not None)
            and time.monotonic() < deadline
            and not self._stop.is_set()
        ):
            if not missing():
                return True
            time.sleep(0.05)
        absent = missing()
        if absent:
            self.get_logger().warning(
                f"too few subscribers on {', '.join(absent)} after "
                f"{self.p['wait_timeout_s']:g} s; playing anyway"
            )
        return not absent

    def play(self) -> PlayStats:
        """Replay (with loops) in this thread; returns the counts of what was sent."""
        self.wait_for_subscribers()
        time.sleep(self.p["start_delay_s"])
        message_ns = round(self.p["message_ms"] * 1e6)
        rate = float(self.p["rate"])
        wall_start = time.monotonic()
        shift = 0
        t_first = None
        last_clock = None
        last_end = 0
        lockstep = bool(self.p["lockstep"])
        self._pending: list[int] = []  # lockstep: stamps sent, answer not yet awaited
        last_stamp = None
        while not self._stop.is_set():
            loop_start = None
            lead = round(self.p["depth_lead_ms"] * 1e6)
            for slot in slots(self.sequence, message_ns, depth_lead_ns=lead):
                if self._stop.is_set():
                    break
                if lockstep:
                    self._lockstep_wait(slot.t_start_ns + shift)
                if loop_start is None:
                    loop_start = slot.t_start_ns
                if t_first is None:
                    t_first = slot.t_start_ns
                if slot.depth:
                    last_stamp = slot.depth[-1][0] + shift
                    self._pending += [stamp + shift for stamp, _ in slot.depth]
                t_end = slot.t_end_ns + shift
                if rate > 0:
                    delay = wall_start + (t_end - t_first) / rate / 1e9 - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                self._publish_slot(slot, shift)
                if self.pub_clock is not None and (
                    last_clock is None or t_end - last_clock >= CLOCK_PERIOD_NS
                ):
                    self.pub_clock.publish(Clock(clock=convert.ns_to_time(t_end)))
                    last_clock = t_end
                last_end = slot.t_end_ns
            if loop_start is not None and not self._stop.is_set():
                # Closes the last window: nothing more comes before the last frame's stamp.
                self._watermark(max(last_end + shift, last_stamp or 0))
                if lockstep:
                    self._lockstep_wait(max(last_end + shift, last_stamp or 0))
            if not self.p["loop"] or loop_start is None:
                break
            shift += last_end - loop_start
            self.stats.loops += 1
        self._awaited = sorted(set(self._awaited))
        self.stats.wall_s = time.monotonic() - wall_start
        self.stats.sensor_s = 0.0 if t_first is None else (last_end + shift - t_first) / 1e9
        return self.stats

    def _publish_slot(self, slot: object, shift: int) -> None:
        p = self.p
        # Ground truth first: its stamp may end a window of the events that follow.
        for stamp, depth in slot.depth:
            stamp += shift
            for side, pub in self.pub_info.items():
                pub.publish(
                    convert.camera_info_from_calibration(
                        self.calibrations[side], stamp, p[f"{side}_frame_id"]
                    )
                )
            if self.pub_depth is not None:
                msg = convert.image_from_array(depth, "32FC1", stamp, p["left_frame_id"])
                self.pub_depth.publish(msg)
            self.stats.depth_frames += 1
            self._awaited.append(stamp)
        for side in SIDES:
            events = getattr(slot, side)
            if not len(events):
                continue
            if shift:
                events = events.copy()
                events["t"] += shift
            data = self._encode(events, slot.t_end_ns + shift, p[f"{side}_frame_id"])
            self.pub_events[side].publish(data)
            self.stats.messages += 1
            self.stats.events += len(events)

    def count_answers(self, patience_s: float = 3.0) -> int | None:
        """Ground-truth frames answered on ``answer_topic``; waits while answers still come
        in (up to ``patience_s`` after the latest, ``answer_timeout_s`` in all)."""
        if not self.p["answer_topic"]:
            return None
        expected = set(self._awaited)
        deadline = time.monotonic() + self.p["answer_timeout_s"]
        with self._answer_cv:
            while not self._stop.is_set() and time.monotonic() < deadline:
                if expected <= self._answers:
                    break
                before = len(self._answers)
                self._answer_cv.wait(patience_s)
                if len(self._answers) == before:
                    break
            answered = len(expected & self._answers)
        self.stats.answered = answered
        return answered

    def wait_for_acks(self, timeout_s: float) -> bool:
        """Wait until reliable subscribers acknowledged everything sent (before exiting)."""
        pubs = [*self.pub_events.values(), *self.pub_info.values(), self.pub_depth]
        return all(
            pub.wait_for_all_acked(Duration(seconds=timeout_s)) for pub in pubs if pub is not None
        )

    def close(self) -> None:
        self.sequence.close()


def _open(path: str, calibration: str = "") -> object:
    from stereospike_ros.data.open import open_sequence

    try:
        return open_sequence(path, calibration=calibration or None)
    except Exception as err:  # the data readers raise their own error types, all mean "bad file"
        raise StartupError(f"cannot open recording {path}: {err}") from err


def main(args: Sequence[str] | None = None) -> int:
    """``ros2 run stereospike_ros event_player --ros-args -p recording:=FILE``."""
    rclpy.init(args=sys.argv if args is None else args)
    node = None
    executor = None
    spinner = None
    try:
        node = EventPlayer()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        stats = node.play()
        node.count_answers()
        node.get_logger().info(stats.summary())
        node.wait_for_acks(5.0)
        if node.p["stay_up"]:
            spinner.join()
    except (StartupError, PlayerError) as err:
        rclpy.logging.get_logger("event_player").fatal(f"cannot play: {err}")
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        if spinner is not None:
            spinner.join(timeout=2.0)  # a C++ wait still running at exit aborts the process
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
