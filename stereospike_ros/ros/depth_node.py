"""``depth_node``: stereo events in, StereoSpike depth out, in real time.

Data path: raw CDR bytes (``raw=True`` subscriptions, never one Python object per event) ->
vectorized decoder -> optional rectification -> ``StereoWindower`` (50 ms windows in sensor
time, fixed rate or ended by trigger stamps) -> newest-window mailbox -> inference thread ->
``~/depth`` (32FC1 metres, NaN = no estimate), ``~/camera_info``, ``~/depth_color``,
``~/events_image``, ``~/points``; ``/diagnostics`` once a second.

Threads: event, trigger and camera_info callbacks share one mutually exclusive callback group
(the windower is touched by one thread at a time), the diagnostics timer has its own; ``main``
spins them on one SingleThreadedExecutor thread. Inference runs in a
dedicated thread fed by a one-slot mailbox, so decoding never waits for the network and a slow
network processes the newest window and counts the ones it skipped.

Latency in diagnostics: ``latency_ms`` is publication wall time minus the window end in sensor
time, with the sensor clock mapped to the wall clock by :class:`~stereospike_ros.ros.sync.
ClockOffset` (zero offset when the stamps are already wall time, as with a live driver on this
host; otherwise the smallest arrival-minus-event-time offset of the last 2 s, which excludes
the transport delay of the fastest message). ``processing_ms`` is publication minus the moment
the window became complete (both cameras past its end): the node's own share.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from stereospike_ros.data.recording import CameraCalibration
from stereospike_ros.events import DecodeError, EventsError
from stereospike_ros.ros import convert
from stereospike_ros.ros.camera_yaml import load_camera_yaml
from stereospike_ros.ros.common import (
    declare_parameters,
    event_qos,
    init_without_signal_handlers,
    message_class,
    output_qos,
    spin_until_signal,
    stop_on_signals,
)
from stereospike_ros.ros.errors import ConversionError, StartupError
from stereospike_ros.ros.parameters import (
    DEPTH_NODE_PARAMS,
    normalize_event_type,
    resolve_weights,
)
from stereospike_ros.ros.pipeline import DepthEstimator, load_estimator
from stereospike_ros.ros.sync import ClockOffset, LatestSlot, Timings, header_stamp_ns
from stereospike_ros.ros.visualize import colorize_depth, depth_to_points, events_to_rgb

__all__ = ["DepthNode", "main", "make_executor"]

SIDES = ("left", "right")
DEFAULT_FRAME = "davis_left_optical_frame"


@dataclass
class _Window:
    t_end_ns: int
    left: np.ndarray
    right: np.ndarray
    ready_wall_s: float


@dataclass
class _SideStats:
    messages: int = 0
    events: int = 0
    decode_errors: int = 0
    geometry_errors: int = 0
    uncalibrated: int = 0
    last_arrival: float | None = None  # monotonic seconds
    period_messages: int = 0
    period_events: int = 0


@dataclass
class _NodeStats:
    sides: dict[str, _SideStats] = field(
        default_factory=lambda: {side: _SideStats() for side in SIDES}
    )
    processed: int = 0
    inference_errors: int = 0
    trigger_errors: int = 0
    period_processed: int = 0
    firing_rate: float | None = None
    last_latency_ms: float | None = None


class DepthNode(Node):
    """The online depth estimator; see the module docstring for its threads and topics."""

    def __init__(self, node_name: str = "depth_node", **kwargs: object) -> None:
        super().__init__(node_name, **kwargs)
        p = declare_parameters(self, DEPTH_NODE_PARAMS)
        self.p = p
        try:
            self.event_type = normalize_event_type(p["event_type"])
        except ValueError as err:
            raise StartupError(str(err)) from err
        self.weights = resolve_weights(p["weights"])
        self.estimator: DepthEstimator
        self.estimator, self.metadata = load_estimator(
            self.weights, p["device"], p["firing_rate"], p["threads"], p["inference_path"]
        )
        self._check_window_length()
        self.window_ns = round(p["window_ms"] * 1e6)
        self.period_ns = round((p["period_ms"] or p["window_ms"]) * 1e6)
        self.stats = _NodeStats()
        self.timings = Timings()
        self.clock_offset = ClockOffset()
        self.slot: LatestSlot[_Window] = LatestSlot()
        self._lock = threading.Lock()  # guards geometry, calibration, windower creation
        self.geometry: tuple[int, int] | None = None
        self.windower = None
        self.frame_id = p["frame_id"]
        self.calibrations: dict[str, CameraCalibration | None] = {s: None for s in SIDES}
        self.rectifiers: dict[str, object | None] = {s: None for s in SIDES}
        self._pending_triggers: list[int] = []
        self._decoders = self._make_decoders()
        self._load_calibration_files()

        io_group = MutuallyExclusiveCallbackGroup()
        self._diag_group = MutuallyExclusiveCallbackGroup()
        qos_out = output_qos()
        self.pub_depth = self.create_publisher(Image, "~/depth", qos_out)
        self.pub_info = self.create_publisher(CameraInfo, "~/camera_info", qos_out)
        self.pub_color = self.create_publisher(Image, "~/depth_color", qos_out)
        self.pub_events = self.create_publisher(Image, "~/events_image", qos_out)
        self.pub_points = self.create_publisher(PointCloud2, "~/points", qos_out)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        msg_type = message_class(self.event_type)
        qos_in = event_qos(p["reliable"], p["qos_depth"])
        for side in SIDES:
            topic = p[f"{side}_events_topic"]
            self.create_subscription(
                msg_type,
                topic,
                lambda buf, side=side: self._on_events(side, buf),
                qos_in,
                callback_group=io_group,
                raw=True,
            )
            info_topic = p[f"{side}_camera_info_topic"]
            if info_topic and not p[f"{side}_calibration_file"]:
                self.create_subscription(
                    CameraInfo,
                    info_topic,
                    lambda msg, side=side: self._on_camera_info(side, msg),
                    event_qos(False, 5),
                    callback_group=io_group,
                )
        if p["trigger_topic"]:
            self.create_subscription(
                message_class(p["trigger_type"]),
                p["trigger_topic"],
                self._on_trigger,
                event_qos(p["reliable"], 100),
                callback_group=io_group,
                raw=True,
            )
        self._diag_last = time.monotonic()
        self._skipped_reported = 0
        self._emitted_reported = 0
        self.create_timer(p["diagnostics_period_s"], self._publish_diagnostics, self._diag_group)
        self._worker = threading.Thread(target=self._inference_loop, name="inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"weights {self.weights} ({self.metadata.get('model', {}) or 'model'}) on "
            f"{p['device']}, {p['inference_path']} path; {self.event_type} from "
            f"{p['left_events_topic']} and "
            f"{p['right_events_topic']}; {p['window_ms']:g} ms windows "
            + (
                f"ended by {p['trigger_topic']}"
                if p["trigger_topic"]
                else f"every {self.period_ns / 1e6:g} ms"
            )
        )

    # -- start-up -----------------------------------------------------------------------------

    def _check_window_length(self) -> None:
        trained = self.metadata.get("window_ms")
        if trained is not None and abs(float(trained) - self.p["window_ms"]) > 1e-6:
            self.get_logger().warning(
                f"window_ms {self.p['window_ms']:g} differs from the {trained} ms the weights "
                f"{self.weights} were trained on; spike counts scale with the window"
            )

    def _make_decoders(self) -> dict[str, object]:
        from stereospike_ros.events import EventPacketDecoder, decode_event_array

        if self.event_type == "dvs_msgs/EventArray":
            return {side: decode_event_array for side in SIDES}
        # EVT3 streams carry state (time high, row) from packet to packet: one per camera.
        return {side: EventPacketDecoder().decode for side in SIDES}

    def _load_calibration_files(self) -> None:
        for side in SIDES:
            path = self.p[f"{side}_calibration_file"]
            if path:
                self._set_calibration(side, load_camera_yaml(path), source=path)
        if self.p["rectify"] and not all(
            self.p[f"{side}_calibration_file"] or self.p[f"{side}_camera_info_topic"]
            for side in SIDES
        ):
            raise StartupError(
                "rectify is true but a camera has neither a calibration file nor a "
                "camera_info topic"
            )

    def _set_calibration(self, side: str, calibration: CameraCalibration, source: str) -> None:
        from stereospike_ros.events import Rectifier

        with self._lock:
            if self.rectifiers[side] is not None and self.calibrations[side] is not None:
                return
            self.calibrations[side] = calibration
            if self.p["rectify"]:
                try:
                    self.rectifiers[side] = Rectifier.from_calibration(calibration)
                except EventsError as err:
                    raise StartupError(f"{side} calibration from {source}: {err}") from err
        self.get_logger().info(f"{side} calibration from {source}")

    # -- callbacks (io group: one at a time) ----------------------------------------------------

    def _on_camera_info(self, side: str, msg: CameraInfo) -> None:
        if self.calibrations[side] is not None:
            return
        try:
            calibration = convert.calibration_from_camera_info(msg)
            self._set_calibration(side, calibration, self.p[f"{side}_camera_info_topic"])
        except (ConversionError, StartupError) as err:
            self.get_logger().error(str(err), throttle_duration_sec=5.0)

    def _on_trigger(self, buf: bytes) -> None:
        try:
            stamp = header_stamp_ns(buf)
        except ConversionError as err:
            self.stats.trigger_errors += 1
            self.get_logger().warning(
                f"trigger {self.p['trigger_topic']}: {err}", throttle_duration_sec=5.0
            )
            return
        if self.windower is None:
            self._pending_triggers.append(stamp)
        else:
            # Windows ending here are emitted by the next event message that passes the stamp.
            self.windower.add_triggers([stamp])

    def _on_events(self, side: str, buf: bytes) -> None:
        start = time.perf_counter()
        stats = self.stats.sides[side]
        stats.messages += 1
        stats.period_messages += 1
        stats.last_arrival = time.monotonic()
        wall = time.time()
        try:
            batch = self._decoders[side](buf)
        except DecodeError as err:
            stats.decode_errors += 1
            self.get_logger().warning(
                f"{self.p[f'{side}_events_topic']}: dropped an undecodable message "
                f"({stats.decode_errors} so far): {err}",
                throttle_duration_sec=5.0,
            )
            return
        geometry = (int(batch.height), int(batch.width))
        if self.geometry is None:
            self._start_windows(geometry, batch.frame_id)
        elif geometry != self.geometry:
            stats.geometry_errors += 1
            self.get_logger().warning(
                f"{self.p[f'{side}_events_topic']}: {geometry[1]}x{geometry[0]} events, but the "
                f"node runs at {self.geometry[1]}x{self.geometry[0]}; message dropped",
                throttle_duration_sec=5.0,
            )
            return
        events = batch.events
        if self.p["rectify"]:
            rectifier = self.rectifiers[side]
            if rectifier is None:
                stats.uncalibrated += 1
                self.get_logger().warning(
                    f"rectify is on but no {side} calibration yet; dropping events",
                    throttle_duration_sec=5.0,
                )
                return
            events = rectifier(events)
        stats.events += len(events)
        stats.period_events += len(events)
        if len(events):
            self.clock_offset.observe(int(events["t"][-1]), wall)
        windows = self.windower.push(side, events)
        self.timings.add("decode", time.perf_counter() - start)
        self._emit(windows)

    def _start_windows(self, geometry: tuple[int, int], frame_id: str) -> None:
        from stereospike_ros.events import StereoWindower

        height, width = geometry
        self.geometry = geometry
        if not self.frame_id:
            self.frame_id = frame_id or DEFAULT_FRAME
        self.windower = StereoWindower(
            height,
            width,
            window_ns=self.window_ns,
            period_ns=self.period_ns,
            max_buffered_events=self.p["max_buffered_events"],
            silence_timeout_ns=int(self.p["silence_timeout_s"] * 1e9),
            schedule="trigger" if self.p["trigger_topic"] else "rate",
        )
        if self._pending_triggers:
            self.windower.add_triggers(self._pending_triggers)
            self._pending_triggers = []
        self.get_logger().info(f"events are {width}x{height}; outputs in frame {self.frame_id!r}")

    def _emit(self, windows: Sequence) -> None:
        now = time.time()
        for window in windows:
            self.slot.put(_Window(int(window.t_end_ns), window.left, window.right, now))

    # -- inference thread ---------------------------------------------------------------------

    def _inference_loop(self) -> None:
        while not self.slot.closed:
            window = self.slot.take(timeout=0.2)
            if window is None:
                continue
            try:
                self._process(window)
            except Exception as err:  # keep serving: one bad window must not end the node
                self.stats.inference_errors += 1
                self.get_logger().error(
                    f"window ending {window.t_end_ns} ns failed: {err!r}", throttle_duration_sec=5.0
                )

    def _process(self, window: _Window) -> None:
        estimate = self.estimator(window.left, window.right)
        start = time.perf_counter()
        stamp, frame = window.t_end_ns, self.frame_id
        self.pub_depth.publish(convert.image_from_array(estimate.depth, "32FC1", stamp, frame))
        calibration = self.calibrations["left"]
        if calibration is not None:
            self.pub_info.publish(
                self._output_camera_info(calibration, estimate.depth.shape, stamp)
            )
        if self.p_live("publish_color"):
            color = colorize_depth(
                estimate.depth, self.p_live("min_depth"), self.p_live("max_depth")
            )
            self.pub_color.publish(convert.image_from_array(color, "rgb8", stamp, frame))
        if self.p_live("publish_events_image"):
            rgb = events_to_rgb(window.left)
            self.pub_events.publish(convert.image_from_array(rgb, "rgb8", stamp, frame))
        if self.p_live("publish_points") and calibration is not None:
            P = np.asarray(calibration.P, dtype=float).reshape(3, 4)
            points = depth_to_points(
                estimate.depth,
                P[0, 0],
                P[1, 1],
                P[0, 2],
                P[1, 2],
                self.p_live("points_decimation"),
                self.p_live("points_min_range"),
                self.p_live("points_max_range"),
            )
            self.pub_points.publish(convert.point_cloud_from_xyz(points, stamp, frame))
        published = time.time()
        self.timings.add("inference", estimate.forward_s)
        self.timings.add("publish", time.perf_counter() - start)
        self.timings.add("processing", published - window.ready_wall_s)
        latency = self.clock_offset.latency_s(window.t_end_ns, published)
        if latency is not None:
            self.timings.add("latency", latency)
        self.stats.processed += 1
        self.stats.period_processed += 1
        if estimate.firing_rate is not None:
            self.stats.firing_rate = estimate.firing_rate

    def p_live(self, name: str) -> object:
        """A parameter that may change at run time (not read_only)."""
        return self.get_parameter(name).value

    def _output_camera_info(
        self, calibration: CameraCalibration, shape: tuple[int, int], stamp: int
    ) -> CameraInfo:
        # The depth image lives in the rectified left camera: K = P[:, :3], no distortion.
        P = np.asarray(calibration.P, dtype=float).reshape(3, 4)
        rectified = CameraCalibration(
            shape[0], shape[1], P[:, :3], np.zeros(5), np.eye(3), P, "plumb_bob", self.frame_id
        )
        return convert.camera_info_from_calibration(rectified, stamp, self.frame_id)

    # -- diagnostics --------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        self.get_diagnostics()

    def get_diagnostics(self) -> DiagnosticStatus:
        """Build and publish one DiagnosticArray; returns its status (for tests and tools)."""
        now = time.monotonic()
        elapsed = max(now - self._diag_last, 1e-6)
        self._diag_last = now
        values: dict[str, object] = {}
        warnings: list[str] = []
        seen_any = any(s.last_arrival is not None for s in self.stats.sides.values())
        for side, s in self.stats.sides.items():
            values[f"{side}_event_rate_hz"] = s.period_events / elapsed
            values[f"{side}_message_rate_hz"] = s.period_messages / elapsed
            values[f"{side}_events_total"] = s.events
            values[f"{side}_decode_errors"] = s.decode_errors
            values[f"{side}_geometry_errors"] = s.geometry_errors
            values[f"{side}_uncalibrated_drops"] = s.uncalibrated
            rectifier = self.rectifiers[side]
            if rectifier is not None:
                values[f"{side}_rectify_dropped"] = rectifier.dropped
            silent_for = None if s.last_arrival is None else now - s.last_arrival
            if s.last_arrival is None and seen_any:
                warnings.append(f"{side} camera silent: no message yet")
            elif silent_for is not None and silent_for > self.p["silence_timeout_s"]:
                warnings.append(f"{side} camera silent for {silent_for:.1f} s")
            s.period_events = s.period_messages = 0
        if not seen_any:
            warnings.append("waiting for events on both cameras")
        if self.windower is not None:
            for side in self.windower.silent_sides():
                text = f"{side} camera silent"
                if not any(w.startswith(text) for w in warnings):
                    warnings.append(f"{text} (no events in sensor time)")
            for key, value in asdict(self.windower.counters).items():
                if isinstance(value, dict):
                    for side, count in value.items():
                        values[f"windower_{key}_{side}"] = count
                else:
                    values[f"windower_{key}"] = value
        skipped = self.slot.skipped
        values["windows_processed"] = self.stats.processed
        values["windows_skipped"] = skipped
        values["windows_per_s"] = self.stats.period_processed / elapsed
        values["inference_errors"] = self.stats.inference_errors
        values["trigger_errors"] = self.stats.trigger_errors
        if skipped > self._skipped_reported:
            warnings.append(
                f"falling behind: {skipped - self._skipped_reported} windows skipped "
                "(inference slower than the window rate)"
            )
        self._skipped_reported = skipped
        self.stats.period_processed = 0
        timings = self.timings.drain()
        for name, summary in timings.items():
            values[f"{name}_ms_mean"] = summary["mean_ms"]
            values[f"{name}_ms_max"] = summary["max_ms"]
        # Node overhead per window: the decoding and windowing of one window's worth of
        # messages (all messages of the period over the windows they produced) plus the
        # conversions and publishing of one window's outputs. The forward is not in it.
        emitted = self.slot.put_count - self._emitted_reported
        self._emitted_reported = self.slot.put_count
        if emitted and "decode" in timings:
            decode = timings["decode"]
            values["decode_ms_per_window"] = decode["mean_ms"] * decode["n"] / emitted
            if "publish" in timings:
                values["overhead_ms_per_window"] = (
                    values["decode_ms_per_window"] + timings["publish"]["mean_ms"]
                )
        if self.stats.firing_rate is not None:
            values["firing_rate"] = self.stats.firing_rate
        offset = self.clock_offset.offset_s()
        values["sensor_clock"] = (
            "unknown"
            if offset is None
            else ("wall time" if self.clock_offset.same_clock else f"offset {offset:.3f} s")
        )
        status = DiagnosticStatus(
            level=DiagnosticStatus.WARN if warnings else DiagnosticStatus.OK,
            name=f"{self.get_name()}: stereo depth",
            message="; ".join(warnings) if warnings else "ok",
            hardware_id=self.frame_id or "",
            values=[KeyValue(key=k, value=_format(v)) for k, v in values.items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(array)
        return status

    def shutdown(self) -> None:
        """Stop the inference thread (it finishes the window it is on)."""
        self.slot.close()
        self._worker.join(timeout=5.0)


def make_executor(context: object = None) -> object:
    """The executor ``main`` spins: rclpy's SingleThreadedExecutor.

    Inference has its own thread, so one executor thread for the callbacks is enough. rclpy's
    experimental C++ EventsExecutor was tried (about 5 us per callback instead of about
    180 us) but, with the Kilted wheels used here, it delivered no message at all, held a core
    at 100 % and ignored SIGINT, so it is not used.
    """
    return SingleThreadedExecutor(context=context)


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def main(args: Sequence[str] | None = None) -> int:
    """``ros2 run stereospike_ros depth_node [--ros-args ...]``; non-zero when it cannot start."""
    init_without_signal_handlers(sys.argv if args is None else args)
    with stop_on_signals() as stop:
        node = None
        try:
            node = DepthNode()
            executor = make_executor()
            executor.add_node(node)
            spin_until_signal(executor, stop)
        except StartupError as err:
            rclpy.logging.get_logger("depth_node").fatal(f"cannot start: {err}")
            return 1
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            if node is not None:
                node.shutdown()
                node.destroy_node()
            rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
