"""``depth_node``: stereo events in, StereoSpike depth out, in real time.

Data path: raw CDR bytes (``raw=True`` subscriptions, never one Python object per event) ->
``StereoIngest`` (ROS-free: header check per message, events queued undecoded, one vectorized
decode per camera when a window is due, optional rectification, ``StereoWindower``: 50 ms
windows in sensor time, fixed rate or ended by trigger stamps) -> newest-window mailbox ->
inference thread -> ``~/depth`` (32FC1 metres, NaN = no estimate), ``~/camera_info``,
``~/depth_color``, ``~/events_image``, ``~/points``; ``/diagnostics`` once a second.

Threads: an ingest thread takes the event (and trigger) messages every ``ingest_period_ms`` from
subscriptions that no executor waits on (``PolledSubscription``: rclpy's executor costs ~300 us
of Python per message, more than the rest of the node's work on it) and owns the windower. The
inference thread runs the network, frozen with TorchScript so that it does not hold the GIL
while the ingest thread works, and publishes. ``main`` spins the camera_info subscriptions, the
diagnostics timer and the parameter services on one SingleThreadedExecutor thread. A slow
network processes the newest window and counts the ones it skipped.

Latency in diagnostics: ``latency_ms`` is publication wall time minus the window end in sensor
time, with the sensor clock mapped to the wall clock by :class:`~stereospike_ros.ros.sync.
ClockOffset` (zero offset when the stamps are already wall time, as with a live driver on this
host; otherwise the smallest arrival-minus-event-time offset of the last 2 s, which excludes
the transport delay of the fastest message). ``processing_ms`` is publication minus the moment
the window became complete (both cameras past its end): the node's own share.

Faults (docs/failure-behaviour.md): every message costs work linear in its size; what the node
does not use is counted per camera and reason, what the transport lost too (message-lost
status, EventPacket ``seq``), and ``/diagnostics`` says it (ERROR for a clock skew between the
cameras or a stream of another size than the weights'); the console gets a throttled WARN when
windows are skipped or data dropped, and one summary line at shutdown.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import CallbackGroup, MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from stereospike_ros.data.recording import CameraCalibration
from stereospike_ros.events import EventsError, Rectifier, kernels
from stereospike_ros.events.cdr import read_header_stamp_ns
from stereospike_ros.events.errors import DecodeError
from stereospike_ros.events.ingest import DroppedMessageError, StereoIngest
from stereospike_ros.events.types import SIDES, SizeError, parse_size
from stereospike_ros.model.temporal import TemporalFilter
from stereospike_ros.ros import convert
from stereospike_ros.ros.camera_yaml import load_camera_yaml
from stereospike_ros.ros.common import (
    PolledSubscription,
    declare_parameters,
    event_qos,
    latched_qos,
    message_class,
    output_qos,
    run_node,
)
from stereospike_ros.ros.errors import ConversionError, StartupError
from stereospike_ros.ros.parameters import (
    DEPTH_NODE_PARAMS,
    normalize_event_type,
    resolve_weights,
)
from stereospike_ros.ros.pipeline import DepthEstimator, load_estimator
from stereospike_ros.ros.sync import ClockOffset, LatestSlot, Timings
from stereospike_ros.ros.visualize import colorize_depth, depth_to_points, events_to_rgb

__all__ = ["DepthNode", "PolledGroup", "main"]

DEFAULT_FRAME = "davis_left_optical_frame"
#: warn when qos_depth x the largest event message could exceed this (DDS keeps whole samples)
HISTORY_WARN_BYTES = 1 << 30
#: Trigger mode keeps this much sensor time of events for a trigger that arrives late (it
#: comes on another topic than the events that pass it).
LATE_TRIGGER_NS = 500_000_000
#: Test-only: seconds the inference thread sleeps per window (a slow machine, made on purpose
#: to check that lockstep replay gives the same results). Never set in production.
TEST_DELAY_ENV = "STEREOSPIKE_TEST_INFERENCE_DELAY_S"


class PolledGroup(CallbackGroup):
    """The group of subscriptions that the ingest thread drains: executors never wait on them.

    rclpy's executors add an entity to their wait set only when its group ``can_execute`` it,
    so these subscriptions cost the executor nothing while still belonging to the node.
    """

    def can_execute(self, entity: object) -> bool:
        return False

    def beginning_execution(self, entity: object) -> bool:
        return False

    def ending_execution(self, entity: object) -> None:
        pass


@dataclass
class _Window:
    t_end_ns: int
    left: np.ndarray
    right: np.ndarray
    ready_wall_s: float


@dataclass
class _NodeStats:
    processed: int = 0
    refused_size: int = 0  # windows of a size the weights were not trained on
    inference_errors: int = 0
    ingest_errors: int = 0
    trigger_errors: int = 0
    period_processed: int = 0
    firing_rate: float | None = None
    last_latency_ms: float | None = None


class DepthNode(Node):
    """The online depth estimator; see the module docstring for its threads and topics."""

    def __init__(self, node_name: str = "depth_node", **kwargs: object) -> None:
        super().__init__(node_name, **kwargs)
        self.p = declare_parameters(self, DEPTH_NODE_PARAMS)
        # Three steps, which the managed node (depth_lifecycle_node) takes on its transitions.
        self._configure()
        self._create_outputs()
        self._start_inputs()

    def _configure(self) -> None:
        """Load the weights, warm the network up, set up the windows (configure)."""
        p = self.p
        try:
            self.event_type = normalize_event_type(p["event_type"])
        except ValueError as err:
            raise StartupError(str(err)) from err
        # Message types now, so a missing one fails here; dvs_msgs is imported only if chosen.
        self._event_msg_type = message_class(self.event_type)
        self._trigger_msg_type = message_class(p["trigger_type"]) if p["trigger_topic"] else None
        self.weights = resolve_weights(p["weights"])
        self.estimator: DepthEstimator
        self.estimator, self.metadata = load_estimator(
            self.weights,
            p["device"],
            p["firing_rate"],
            p["threads"],
            p["inference_path"],
            providers=p["onnx_providers"],
            onnx_file=p["onnx_file"],
        )
        # Compile (or load from numba's cache) the event kernels now, not on the first window.
        compile_s = kernels.warm_up()
        self.get_logger().info(f"event kernels: {kernels.kernel_backend()} ({compile_s:.2f} s)")
        self._warmed: set[tuple[int, int]] = set()
        self.trained_size = _trained_size(self.metadata)
        if p["warm_up_size"]:
            self._warm_up(_parse_size(p["warm_up_size"], "warm_up_size"))
        self._check_window_length()
        self.window_ns = round(p["window_ms"] * 1e6)
        self.period_ns = round((p["period_ms"] or p["window_ms"]) * 1e6)
        self.stats = _NodeStats()
        self.timings = Timings()
        self.clock_offset = ClockOffset()
        self.slot: LatestSlot[_Window] = LatestSlot()
        self.smoother = TemporalFilter(0.0)  # used by the inference thread only
        self._lock = threading.Lock()  # guards calibration
        self._calibrated_size: tuple[int, int] | None = None  # for the ingest thread
        self.frame_id = p["frame_id"]
        self.calibrations: dict[str, CameraCalibration | None] = {s: None for s in SIDES}
        self.maps: dict[str, object] = {}  # Rectifier per side from the rectification topic
        self._test_delay_s = float(os.environ.get(TEST_DELAY_ENV, "0") or 0)
        outlier_ns = round(p["outlier_gap_s"] * 1e9) or None
        self.ingest = StereoIngest(
            self.event_type,
            window_ns=self.window_ns,
            period_ns=self.period_ns,
            schedule="trigger" if p["trigger_topic"] else "rate",
            max_buffered_events=p["max_buffered_events"],
            silence_timeout_ns=int(p["silence_timeout_s"] * 1e9),
            rectify=p["rectify"],
            outlier_ns=None if outlier_ns is None else max(outlier_ns, 2_000_000),
            geometry=self._configured_geometry(),
            on_start=self._on_start,
            watermarks=p["replay_watermarks"],
            late_trigger_ns=LATE_TRIGGER_NS,
        )  # owned by the ingest thread; diagnostics read its counters (no lock)
        self._warm_up_cpu_s = 0.0
        self._load_calibration_files()

    def _create_outputs(self) -> None:
        """The publishers (configure, for the managed node)."""
        publisher = self._output_publisher
        qos_out = output_qos()
        self.pub_depth = publisher(Image, "~/depth", qos_out)
        self.pub_info = publisher(CameraInfo, "~/camera_info", qos_out)
        self.pub_color = publisher(Image, "~/depth_color", qos_out)
        self.pub_events = publisher(Image, "~/events_image", qos_out)
        self.pub_points = publisher(PointCloud2, "~/points", qos_out)
        self.pub_diag = publisher(DiagnosticArray, "/diagnostics", 10)

    def _output_publisher(self, msg_type: type, topic: str, qos: object) -> object:
        """Every output's publisher (the managed node makes them lifecycle publishers)."""
        return self.create_publisher(msg_type, topic, qos)

    def _start_inputs(self) -> None:
        """Subscribe and start the ingest and inference threads (activate)."""
        p = self.p
        io_group = MutuallyExclusiveCallbackGroup()
        self._diag_group = MutuallyExclusiveCallbackGroup()
        self._input_subs: list = []  # what _stop_inputs destroys (subscriptions), with the timer

        # Event and trigger messages are not delivered by the executor (its wake-up costs
        # ~300 us of Python per message): the ingest thread takes them in batches from
        # subscriptions that no executor waits on (see PolledSubscription). They belong to this
        # node, so `ros2 node info` lists them with its other inputs, in a callback group that
        # tells every executor to leave them alone.
        polled = PolledGroup()
        msg_type = self._event_msg_type
        if self.slot.closed:  # started again after _stop_inputs
            self.slot = LatestSlot()
        qos_in = event_qos(p["reliable"], p["qos_depth"])
        self._event_subs = {
            side: PolledSubscription(
                self, msg_type, p[f"{side}_events_topic"], qos_in, polled
            )
            for side in SIDES
        }  # fmt: skip
        self._input_subs += list(self._event_subs.values())
        self._trigger_sub = None
        if p["trigger_topic"]:
            self._trigger_sub = PolledSubscription(
                self,
                self._trigger_msg_type,
                p["trigger_topic"],
                event_qos(p["reliable"], 100),
                polled,
            )
            self._input_subs.append(self._trigger_sub)
        latched = latched_qos()
        for side in SIDES:
            if p[f"{side}_rectification_topic"]:
                sub = self.create_subscription(
                    Image,
                    p[f"{side}_rectification_topic"],
                    lambda msg, side=side: self._on_rectification(side, msg),
                    latched,
                    callback_group=io_group,
                )
                self._input_subs.append(sub)
        for side in SIDES:
            info_topic = p[f"{side}_camera_info_topic"]
            if info_topic and not p[f"{side}_calibration_file"]:
                sub = self.create_subscription(
                    CameraInfo,
                    info_topic,
                    lambda msg, side=side: self._on_camera_info(side, msg),
                    event_qos(False, 5),
                    callback_group=io_group,
                )
                self._input_subs.append(sub)
        self._diag_last = time.monotonic()
        self._warned: dict[str, int] = {}  # what the last console WARN reported
        self._skew_ns: int | None = None  # left minus right sensor clock, last period
        self._history_full_reported: dict[str, int] = {}
        self._lost_checked = 0.0
        self._skipped_reported = 0
        self._startup_skipped = 0
        self._emitted_reported = 0
        self._diag_timer = self.create_timer(
            p["diagnostics_period_s"], self._publish_diagnostics, self._diag_group
        )
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._inference_loop, name="inference", daemon=True)
        self._worker.start()
        self._ingester = threading.Thread(target=self._ingest_loop, name="ingest", daemon=True)
        self._ingester.start()
        self.get_logger().info(
            f"weights {self.weights} ({self.metadata.get('model', {}) or 'model'}) on "
            f"{p['device']}, {p['inference_path']} path; {self.event_type} from "
            f"{self._event_subs['left'].subscription.topic_name} and "
            f"{self._event_subs['right'].subscription.topic_name}; {p['window_ms']:g} ms windows "
            + (
                f"ended by {self._trigger_sub.subscription.topic_name}"
                if p["trigger_topic"]
                else f"every {self.period_ns / 1e6:g} ms"
            )
        )

    # -- start-up -----------------------------------------------------------------------------

    def _configured_geometry(self) -> tuple[int, int] | None:
        """(H, W) from sensor_size, else a calibration file, else the weights; None: learn it."""
        if self.p["sensor_size"]:
            return _parse_size(self.p["sensor_size"], "sensor_size")
        for side in SIDES:
            path = self.p[f"{side}_calibration_file"]
            if path:
                calibration = load_camera_yaml(path)
                return int(calibration.height), int(calibration.width)
        return self.trained_size

    def _check_window_length(self) -> None:
        trained = self.metadata.get("window_ms")
        if trained is not None and abs(float(trained) - self.p["window_ms"]) > 1e-6:
            self.get_logger().warning(
                f"window_ms {self.p['window_ms']:g} differs from the {trained} ms the weights "
                f"{self.weights} were trained on; spike counts scale with the window"
            )

    def _load_calibration_files(self) -> None:
        for side in SIDES:
            path = self.p[f"{side}_calibration_file"]
            if path:
                self._set_calibration(side, load_camera_yaml(path), source=path)
        if self.p["rectify"] and not all(
            self.p[f"{side}_calibration_file"]
            or self.p[f"{side}_camera_info_topic"]
            or self.p[f"{side}_rectification_topic"]
            for side in SIDES
        ):
            raise StartupError(
                "rectify is true but a camera has neither a calibration file nor a "
                "camera_info or rectification topic"
            )

    def _set_calibration(self, side: str, calibration: CameraCalibration, source: str) -> None:
        with self._lock:
            if self.calibrations[side] is not None:
                return
            if self.p["rectify"] and (side not in self.maps or self.p[f"{side}_calibration_file"]):
                try:
                    self.ingest.set_rectifier(side, Rectifier.from_calibration(calibration))
                except EventsError as err:
                    raise StartupError(f"{side} calibration from {source}: {err}") from err
            self.calibrations[side] = calibration
        self.get_logger().info(f"{side} calibration from {source}")
        size = (int(calibration.height), int(calibration.width))
        if side == "left" and not self.p["sensor_size"] and min(size) > 0:
            self._calibrated_size = size  # the ingest thread adopts it (it owns the ingest)

    # -- callbacks (io group: one at a time) ----------------------------------------------------

    def _on_camera_info(self, side: str, msg: CameraInfo) -> None:
        if self.calibrations[side] is not None:
            return
        try:
            calibration = convert.calibration_from_camera_info(msg)
            self._set_calibration(
                side, calibration, self.resolve_topic_name(self.p[f"{side}_camera_info_topic"])
            )
        except (ConversionError, StartupError) as err:
            self.get_logger().error(str(err), throttle_duration_sec=5.0)

    def _on_rectification(self, side: str, msg: Image) -> None:
        """The recording's rectification, as ``evaluate`` applies it (from the event player).

        With ``rectify`` it is used (unless a calibration file was given: then a difference is
        reported); without, a non-identity one is reported, since the depth would then differ
        from the offline evaluation.
        """
        topic = self.resolve_topic_name(self.p[f"{side}_rectification_topic"])
        try:
            maps = convert.rectifier_from_image(msg)
        except ConversionError as err:
            self.get_logger().error(f"{topic}: {err}", throttle_duration_sec=5.0)
            return
        with self._lock:
            if side in self.maps and self.maps[side].pixels_differing(maps) == 0:
                return  # the same maps again (a player restarted)
            self.maps[side] = maps
            current = self.ingest.rectifiers[side]
            if not self.p["rectify"]:
                moved = maps.pixels_differing(Rectifier.identity(maps.height, maps.width))
                if moved:
                    self.get_logger().warning(
                        f"{topic}: the recording's {side} events are rectified offline "
                        f"({moved} raw pixels move) but rectify is false here: this depth will "
                        "differ from evaluate's; set rectify:=true to apply them"
                    )
                return
            if self.p[f"{side}_calibration_file"] and current is not None:
                differ = current.pixels_differing(maps)
                if differ:
                    self.get_logger().warning(
                        f"{side} calibration file {self.p[f'{side}_calibration_file']} and "
                        f"{topic} rectify {differ} raw pixels differently; using the file"
                    )
                return
            if current is not None and current.pixels_differing(maps):
                self.get_logger().warning(
                    f"{topic}: replacing the {side} rectification from camera_info, which "
                    f"differs on {current.pixels_differing(maps)} pixels, by these maps"
                )
            self.ingest.set_rectifier(side, maps)
        self.get_logger().info(f"{side} rectification from {topic}")

    # -- ingest thread: takes event and trigger messages in batches ------------------------------

    def _ingest_loop(self) -> None:
        period = self.p["ingest_period_ms"] / 1000.0
        while not self._stop.is_set():
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                taken, take_cpu = self._ingest_once()
            except Exception as err:  # keep ingesting: one bad batch must not end the node
                self.stats.ingest_errors += 1
                taken, take_cpu = 0, 0.0
                self.get_logger().error(f"ingest failed: {err!r}", throttle_duration_sec=5.0)
            if taken:  # CPU time of this thread: waiting for a core is not the node's cost
                cpu = time.thread_time() - cpu - self._warm_up_cpu_s - take_cpu
                self._warm_up_cpu_s = 0.0
                self.timings.add("decode", cpu)
                self.timings.add("take", take_cpu)
            self._stop.wait(max(0.0, period - (time.perf_counter() - start)))

    def _ingest_once(self) -> tuple[int, float]:
        """Take every queued message, queue its events, push them when a window is due.

        Returns the messages taken and the CPU seconds rclpy spent handing them over.
        """
        taken, take_cpu = 0, 0.0
        size = self._calibrated_size
        if size is not None:
            self._calibrated_size = None
            if self.ingest.set_geometry(size):
                self.get_logger().info(f"sensor size {size[1]}x{size[0]} from the calibration")
        now = time.monotonic()
        if now - self._lost_checked > 0.2:  # cumulative counts: a few reads a second suffice
            self._lost_checked = now
            for side in SIDES:
                lost = self._event_subs[side].lost()
                if lost is not None:
                    self.ingest.counters[side].transport_lost = lost
        if self._trigger_sub is not None:
            for buf in self._trigger_sub.take_all():
                self._on_trigger(buf)
        limit = self.p["qos_depth"]
        for side in SIDES:
            cpu = time.thread_time()
            bufs = self._event_subs[side].take_all(limit)
            take_cpu += time.thread_time() - cpu  # rclpy's share, reported apart
            taken += len(bufs)
            if len(bufs) >= limit:  # KEEP_LAST overwrites silently once the history is full
                self.ingest.counters[side].history_full += 1
            if not bufs:
                continue
            now, last_t = time.monotonic(), None
            for buf in bufs:
                try:
                    last_t = self.ingest.accept(side, buf, now) or last_t
                except DroppedMessageError as err:
                    self._log_drop(err)
            if last_t is not None:  # one sample per batch: the offset is a minimum over 2 s
                self.clock_offset.observe(last_t, time.time())
        self._emit(self.ingest.poll())
        return taken, take_cpu

    def _log_drop(self, err: DroppedMessageError) -> None:
        counters = self.ingest.counters[err.side]
        topic = self._event_subs[err.side].subscription.topic_name  # resolved: namespace, remaps
        if err.reason == "decode":
            text = f"dropped an undecodable message ({counters.decode_errors} so far): {err}"
        elif err.reason == "geometry":
            text = f"{err}; message dropped ({counters.geometry_errors} so far)"
        else:
            text = f"rectify is on but {err}; dropping events ({counters.uncalibrated} so far)"
        self.get_logger().warning(f"{topic}: {text}", throttle_duration_sec=5.0)

    def _on_trigger(self, buf: bytes) -> None:
        try:
            stamp = read_header_stamp_ns(buf)
        except DecodeError as err:
            self.stats.trigger_errors += 1
            self.get_logger().warning(
                f"trigger {self.p['trigger_topic']}: {err}", throttle_duration_sec=5.0
            )
            return
        self.ingest.add_triggers([stamp])

    def _on_start(self, geometry: tuple[int, int], frame_id: str) -> None:
        """The windows' geometry is known or changed (ingest thread, or start-up)."""
        height, width = geometry
        self.get_logger().info(f"windows are {width}x{height}")
        if self.trained_size is not None and geometry != self.trained_size:
            text = self._size_mismatch(geometry)
            if self.p["allow_size_mismatch"]:
                self.get_logger().warning(text + "; running anyway (allow_size_mismatch)")
            else:
                self.get_logger().error(text + "; set allow_size_mismatch:=true to run anyway")
                return
        if geometry not in self._warmed:
            # Before any window exists, so the inference thread is idle. Messages wait in the
            # DDS history meanwhile; that backlog's windows are skipped as start-up.
            cpu = time.thread_time()
            try:
                self._warm_up(geometry)
            except StartupError as err:  # the first window will fail the same way, counted
                self.get_logger().error(str(err))
            self._warm_up_cpu_s = time.thread_time() - cpu  # not ingest work

    def _warm_up(self, geometry: tuple[int, int]) -> None:
        """Plan and trace the network for ``geometry`` (about 1 s at 260 x 346)."""
        start = time.perf_counter()
        try:
            self.estimator.warm_up(*geometry)
        except Exception as err:
            raise StartupError(
                f"the network does not run at {geometry[1]}x{geometry[0]}: {err!r}"
            ) from err
        self._warmed.add(geometry)
        self.get_logger().info(
            f"network ready for {geometry[1]}x{geometry[0]} in {time.perf_counter() - start:.2f} s"
        )

    def _size_mismatch(self, geometry: tuple[int, int]) -> str:
        h, w = self.trained_size  # type: ignore[misc]
        return (
            f"the event stream is {geometry[1]}x{geometry[0]} but the weights {self.weights.name} "
            f"were trained on {w}x{h}"
        )

    def _frame(self) -> str:
        return self.frame_id or self.ingest.frame_id or DEFAULT_FRAME

    def _emit(self, windows: Sequence) -> None:
        now = time.time()
        refuse = (
            self.trained_size is not None
            and self.ingest.geometry != self.trained_size
            and not self.p["allow_size_mismatch"]
        )
        for window in windows:
            if refuse:
                self.stats.refused_size += 1
                continue
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
        if self._test_delay_s:
            time.sleep(self._test_delay_s)
        estimate = self.estimator(window.left, window.right)
        start = time.thread_time()
        stamp, frame = window.t_end_ns, self._frame()
        depth = self._smoothed(estimate.depth, stamp)
        self.pub_depth.publish(convert.image_from_array(depth, "32FC1", stamp, frame))
        calibration = self.calibrations["left"]
        if calibration is not None:
            self.pub_info.publish(self._output_camera_info(calibration, depth.shape, stamp))
        if self.p_live("publish_color"):
            color = colorize_depth(depth, self.p_live("min_depth"), self.p_live("max_depth"))
            self.pub_color.publish(convert.image_from_array(color, "rgb8", stamp, frame))
        if self.p_live("publish_events_image"):
            rgb = events_to_rgb(window.left)
            self.pub_events.publish(convert.image_from_array(rgb, "rgb8", stamp, frame))
        if self.p_live("publish_points") and calibration is not None:
            P = np.asarray(calibration.P, dtype=float).reshape(3, 4)
            points = depth_to_points(
                depth,
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
        self.timings.add("publish", time.thread_time() - start)
        self.timings.add("processing", published - window.ready_wall_s)
        latency = self.clock_offset.latency_s(window.t_end_ns, published)
        if latency is not None:
            self.timings.add("latency", latency)
        if self.stats.processed == 0:
            self._startup_skipped = self.slot.skipped  # the backlog of the warm-up
        self.stats.processed += 1
        self.stats.period_processed += 1
        if estimate.firing_rate is not None:
            self.stats.firing_rate = estimate.firing_rate

    def _smoothed(self, depth: np.ndarray, stamp: int) -> np.ndarray:
        """``depth`` through the temporal filter when ``temporal_smoothing`` is on (read each
        window: it may be changed while running); turning it off drops the filter's state."""
        smoothing = float(self.p_live("temporal_smoothing"))  # type: ignore[arg-type]
        if smoothing <= 0.0:
            self.smoother.reset()
            return depth
        self.smoother.smoothing = smoothing
        return self.smoother(depth, stamp)

    def p_live(self, name: str) -> object:
        """A parameter that may change at run time (not read_only)."""
        return self.get_parameter(name).value

    def _output_camera_info(
        self, calibration: CameraCalibration, shape: tuple[int, int], stamp: int
    ) -> CameraInfo:
        # The depth image lives in the rectified left camera: K = P[:, :3], no distortion.
        P = np.asarray(calibration.P, dtype=float).reshape(3, 4)
        frame = self._frame()
        rectified = CameraCalibration(
            shape[0], shape[1], P[:, :3], np.zeros(5), np.eye(3), P, "plumb_bob", frame
        )
        return convert.camera_info_from_calibration(rectified, stamp, frame)

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
        self._skew_ns = self.ingest.take_clock_skew_ns()
        errors = self._errors()
        self._camera_diagnostics(values, warnings, now, elapsed)
        self._windower_diagnostics(values, warnings)
        self._window_diagnostics(values, warnings, elapsed)
        self._timing_diagnostics(values)
        if self.stats.firing_rate is not None:
            values["firing_rate"] = self.stats.firing_rate
        # Restarts of the temporal filter's running mean (stamps going back, a gap over 0.5 s,
        # a new size): each one is a window published unsmoothed.
        values["temporal_filter_resets"] = self.smoother.resets
        offset = self.clock_offset.offset_s()
        values["sensor_clock"] = (
            "unknown"
            if offset is None
            else ("wall time" if self.clock_offset.same_clock else f"offset {offset:.3f} s")
        )
        self._warn_console(values)
        return self._publish_status(values, errors, warnings)

    def _camera_diagnostics(
        self, values: dict[str, object], warnings: list[str], now: float, elapsed: float
    ) -> None:
        """Each camera's message counters and rates (the period's rates reset), silence, and
        how much DDS may hold of the largest messages."""
        seen_any = any(s.last_arrival is not None for s in self.ingest.counters.values())
        for side, s in self.ingest.counters.items():
            values[f"{side}_event_rate_hz"] = s.period_events / elapsed
            values[f"{side}_message_rate_hz"] = s.period_messages / elapsed
            values[f"{side}_events_total"] = s.events
            values[f"{side}_messages_total"] = s.messages
            values[f"{side}_decode_errors"] = s.decode_errors
            values[f"{side}_geometry_errors"] = s.geometry_errors
            values[f"{side}_uncalibrated_drops"] = s.uncalibrated
            values[f"{side}_dropped_message_events"] = s.dropped_events
            values[f"{side}_messages_lost_transport"] = s.transport_lost
            values[f"{side}_messages_lost_seq"] = s.seq_lost
            values[f"{side}_seq_restarts"] = s.seq_restarts
            values[f"{side}_time_discontinuities"] = s.time_discontinuities
            values[f"{side}_events_without_time"] = s.events_without_time
            values[f"{side}_largest_message_bytes"] = s.largest_message
            values[f"{side}_history_full"] = s.history_full
            if s.history_full > self._history_full_reported.get(side, 0):
                warnings.append(
                    f"{side} DDS history (qos_depth {self.p['qos_depth']}) was full: messages may "
                    "have been overwritten uncounted (the node is behind)"
                )
            self._history_full_reported[side] = s.history_full
            rectifier = self.ingest.rectifiers[side]
            if rectifier is not None:
                values[f"{side}_rectify_dropped"] = rectifier.dropped
            silent_for = None if s.last_arrival is None else now - s.last_arrival
            if s.last_arrival is None and seen_any:
                warnings.append(f"{side} camera silent: no message yet")
            elif silent_for is not None and silent_for > self.p["silence_timeout_s"]:
                warnings.append(f"{side} camera silent for {silent_for:.1f} s")
            s.period_events = s.period_messages = s.period_geometry_errors = 0
        if not seen_any:
            warnings.append("waiting for events on both cameras")
        largest = max(c.largest_message for c in self.ingest.counters.values())
        if largest * self.p["qos_depth"] > HISTORY_WARN_BYTES:
            warnings.append(
                f"event messages of up to {largest / 2**20:.1f} MB with qos_depth "
                f"{self.p['qos_depth']}: DDS may hold {largest * self.p['qos_depth'] / 2**30:.1f}"
                " GB for them; lower qos_depth (docs/failure-behaviour.md)"
            )

    def _windower_diagnostics(self, values: dict[str, object], warnings: list[str]) -> None:
        """The windower's counters (per side where they are) and cameras silent in sensor
        time."""
        windower = self.ingest.windower
        if windower is None:
            return
        # No lock: plain counters read while the ingest thread may add to them (the GIL
        # makes each read whole), so diagnostics never wait for a batch being windowed.
        silent = windower.silent_sides()
        counters = asdict(windower.counters)
        for side in silent:
            text = f"{side} camera silent"
            if not any(w.startswith(text) for w in warnings):
                warnings.append(f"{text} (no events in sensor time)")
        for key, value in counters.items():
            if isinstance(value, dict):
                for side, count in value.items():
                    values[f"windower_{key}_{side}"] = count
            else:
                values[f"windower_{key}"] = value

    def _window_diagnostics(
        self, values: dict[str, object], warnings: list[str], elapsed: float
    ) -> None:
        """Windows processed, skipped and refused, errors, geometry, clock skew; falling
        behind when windows were skipped since the last report (the period's count resets)."""
        skipped = self.slot.skipped
        values["windows_processed"] = self.stats.processed
        values["windows_skipped"] = skipped
        values["windows_skipped_at_startup"] = self._startup_skipped
        values["windows_per_s"] = self.stats.period_processed / elapsed
        values["inference_errors"] = self.stats.inference_errors
        values["ingest_errors"] = self.stats.ingest_errors
        values["trigger_errors"] = self.stats.trigger_errors
        values["windows_refused_size"] = self.stats.refused_size
        values["geometry"] = (
            "unknown"
            if self.ingest.geometry is None
            else f"{self.ingest.geometry[1]}x{self.ingest.geometry[0]}"
        )
        values["geometry_changes"] = self.ingest.geometry_changes
        if self._skew_ns is not None:
            values["clock_skew_s"] = self._skew_ns * 1e-9
        self._skipped_reported = max(self._skipped_reported, self._startup_skipped)
        if skipped > self._skipped_reported:
            warnings.append(
                f"falling behind: {skipped - self._skipped_reported} windows skipped "
                "(inference slower than the window rate)"
            )
        self._skipped_reported = skipped
        self.stats.period_processed = 0

    def _timing_diagnostics(self, values: dict[str, object]) -> None:
        """Each timed stage's mean and max since the last report, and the node's overhead per
        window."""
        timings = self.timings.drain()
        for name, summary in timings.items():
            values[f"{name}_ms_mean"] = summary["mean_ms"]
            values[f"{name}_ms_max"] = summary["max_ms"]
        # Node overhead per window (CPU): checking, decoding and windowing one window's worth of
        # messages (all messages of the period over the windows they produced) plus the
        # conversions and publishing of one window's outputs. Not in it: the forward, and
        # taking the messages out of rclpy (take_ms_per_window, like the DDS threads' work).
        emitted = self.slot.put_count - self._emitted_reported
        self._emitted_reported = self.slot.put_count
        if emitted and "decode" in timings:
            decode, take = timings["decode"], timings["take"]
            values["decode_ms_per_window"] = decode["mean_ms"] * decode["n"] / emitted
            values["take_ms_per_window"] = take["mean_ms"] * take["n"] / emitted
            if "publish" in timings:
                values["overhead_ms_per_window"] = (
                    values["decode_ms_per_window"] + timings["publish"]["mean_ms"]
                )

    def _publish_status(
        self, values: dict[str, object], errors: list[str], warnings: list[str]
    ) -> DiagnosticStatus:
        """One DiagnosticArray of the worst level, errors then warnings as its message."""
        level = (
            DiagnosticStatus.ERROR
            if errors
            else (DiagnosticStatus.WARN if warnings else DiagnosticStatus.OK)
        )
        status = DiagnosticStatus(
            level=level,
            name=f"{self.get_name()}: stereo depth",
            message="; ".join(errors + warnings) if errors or warnings else "ok",
            hardware_id=self._frame(),
            values=[KeyValue(key=k, value=_format(v)) for k, v in values.items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(array)
        return status

    def _errors(self) -> list[str]:
        """What stops correct depth for good until the user acts (ERROR level)."""
        errors = []
        skew = self._skew_ns
        tolerance = self.p["clock_skew_tolerance_s"]
        if skew is not None and abs(skew) * 1e-9 > tolerance:
            ahead = "left" if skew > 0 else "right"
            errors.append(
                f"camera clocks disagree: {ahead} is {abs(skew) * 1e-9:.3f} s ahead "
                f"(clock_skew_tolerance_s {tolerance:g}); windows pair events of different "
                "moments: synchronise the cameras"
            )
        geometry = self.ingest.geometry
        if (
            geometry is not None
            and self.trained_size is not None
            and geometry != self.trained_size
            and not self.p["allow_size_mismatch"]
        ):
            errors.append(self._size_mismatch(geometry) + ": no depth (allow_size_mismatch)")
        for side, c in self.ingest.counters.items():
            if c.period_geometry_errors and c.period_geometry_errors == c.period_messages:
                errors.append(
                    f"every {side} message is dropped: {self.ingest.last_geometry_error} "
                    "(sensor_size)"
                )
        return errors

    def loss_summary(self) -> dict[str, object]:
        """Counters of what was received, lost and dropped, by camera and reason."""
        windower = self.ingest.windower
        w = windower.counters if windower is not None else None
        summary: dict[str, object] = {
            "windows_processed": self.stats.processed,
            "windows_skipped_behind": self.slot.skipped,
            "windows_skipped_incomplete": w.windows_skipped if w else 0,
            "windows_refused_size": self.stats.refused_size,
            "windower_resets": w.resets if w else 0,
        }
        for side, c in self.ingest.counters.items():
            dropped = {
                "decode": c.decode_errors,
                "geometry": c.geometry_errors,
                "uncalibrated": c.uncalibrated,
            }
            dropped_events = {
                "in_dropped_messages": c.dropped_events,
                "without_time": c.events_without_time,
            }
            if w is not None:
                for reason in ("out_of_bounds", "memory", "stale", "outlier", "discontinuity"):
                    dropped_events[reason] = getattr(w, f"dropped_{reason}")[side]
            rectifier = self.ingest.rectifiers[side]
            if rectifier is not None:
                dropped_events["rectify"] = rectifier.dropped
            summary[side] = {
                "messages": c.messages,
                "events": c.events,
                "messages_lost": {"transport": c.transport_lost, "seq": c.seq_lost},
                "messages_dropped": dropped,
                "events_dropped": dropped_events,
            }
        return summary

    def _warn_console(self, values: dict[str, object]) -> None:
        """A throttled WARN line when windows were skipped or data dropped since the last one."""
        totals: dict[str, int] = {"windows skipped": self.slot.skipped - self._startup_skipped}
        summary = self.loss_summary()
        for side in SIDES:
            c = summary[side]
            totals[f"{side} messages lost"] = sum(c["messages_lost"].values())
            totals[f"{side} messages dropped"] = sum(c["messages_dropped"].values())
            totals[f"{side} events dropped"] = sum(c["events_dropped"].values())
        news = {k: v - self._warned.get(k, 0) for k, v in totals.items()}
        news = {k: v for k, v in news.items() if v > 0}
        if not news:
            return
        self._warned = totals
        text = ", ".join(f"{k} +{v}" for k, v in news.items())
        self.get_logger().warning(
            f"falling behind or losing data: {text} (see /diagnostics)",
            throttle_duration_sec=self.p["warn_period_s"],
        )

    def summary_line(self) -> str:
        """One line: windows processed/skipped, events received/lost/dropped by reason."""
        s = self.loss_summary()
        parts = [
            f"windows processed {s['windows_processed']}, skipped {s['windows_skipped_behind']} "
            f"(node behind) and {s['windows_skipped_incomplete']} (empty or incomplete), "
            f"refused {s['windows_refused_size']} (size), resets {s['windower_resets']}"
        ]
        for side in SIDES:
            c = s[side]

            def nonzero(d: dict[str, int]) -> str:
                items = [f"{k} {v}" for k, v in d.items() if v]
                return ", ".join(items) if items else "none"

            parts.append(
                f"{side}: {c['events']} events in {c['messages']} messages, messages lost "
                f"{nonzero(c['messages_lost'])}, messages dropped {nonzero(c['messages_dropped'])}"
                f", events dropped {nonzero(c['events_dropped'])}"
            )
        return "; ".join(parts)

    def destroy_node(self) -> None:
        """Destroy the polled subscriptions through ``PolledSubscription.destroy`` first: a
        plain ``destroy_subscription`` leaves them matched in the DDS graph while their
        loss-status handles live, and other nodes of the process would still see them."""
        for subscription in self.__dict__.pop("_input_subs", []):
            if isinstance(subscription, PolledSubscription):
                subscription.destroy()
        super().destroy_node()

    def shutdown(self) -> None:
        """Stop the ingest and inference threads within about a second, log the summary.

        The threads are daemons: a forward pass still running after the join's timeout does
        not hold up the exit (Ctrl-C ends the node within 2 s).
        """
        self._stop.set()
        self._ingester.join(timeout=0.5)
        self.slot.close()
        self._worker.join(timeout=0.7)
        self.get_logger().info(f"summary: {self.summary_line()}")

    def _stop_inputs(self) -> None:
        """Undo ``_start_inputs``, also one that failed half-way: threads stopped,
        subscriptions and timer destroyed."""
        if hasattr(self, "_ingester"):
            self.shutdown()
        timer = self.__dict__.pop("_diag_timer", None)
        if timer is not None:
            self.destroy_timer(timer)
        for subscription in self.__dict__.pop("_input_subs", []):
            if isinstance(subscription, PolledSubscription):
                subscription.destroy()
            else:
                self.destroy_subscription(subscription)


def _parse_size(text: str, name: str) -> tuple[int, int]:
    """The size parameter ``name``: a bad one is a StartupError, which stops the node."""
    try:
        return parse_size(text, name)
    except SizeError as err:
        raise StartupError(f"{err} (or '' for none)") from None


def _trained_size(metadata: dict) -> tuple[int, int] | None:
    """The (H, W) the weights were trained on, from their metadata, if they say."""
    size = metadata.get("input_size")
    if isinstance(size, list | tuple) and len(size) == 2:
        return int(size[0]), int(size[1])
    return None


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def main(args: Sequence[str] | None = None) -> int:
    """``ros2 run stereospike_ros depth_node [--ros-args ...]``; non-zero when it cannot start."""
    return run_node("depth_node", DepthNode, args, on_exit=DepthNode.shutdown)


if __name__ == "__main__":
    sys.exit(main())
