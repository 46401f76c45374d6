"""Parameter tables of the nodes: one place for names, defaults, ranges and descriptions.

The nodes declare exactly these (with ParameterDescriptor ranges); the docs' parameter tables,
``config/depth.yaml`` and the launch-file checks are tested against them. Plain Python, so the
checks run without a ROS graph.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_WEIGHTS",
    "DEPTH_NODE_PARAMS",
    "EVALUATOR_PARAMS",
    "EVENT_TYPES",
    "PLAYER_PARAMS",
    "Param",
    "resolve_weights",
    "unknown_parameters",
]

#: The bundled model, resolved inside the installed package (the one place that names it).
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "default.safetensors"

#: Accepted values of ``event_type`` (ROS 2 names; the ``pkg/msg/Type`` spelling also works).
EVENT_TYPES = ("dvs_msgs/EventArray", "event_camera_msgs/EventPacket")


@dataclass(frozen=True)
class Param:
    """One declared parameter; ``low``/``high`` become a Floating/IntegerRange (inclusive)."""

    name: str
    default: bool | int | float | str
    description: str
    low: float | None = None
    high: float | None = None
    read_only: bool = True
    choices: tuple[str, ...] = ()

    @property
    def type_name(self) -> str:
        return type(self.default).__name__


def resolve_weights(value: str) -> Path:
    """The weights file a ``weights`` parameter names ('' or 'default' = the bundled model)."""
    if value in ("", "default"):
        return DEFAULT_WEIGHTS
    return Path(value).expanduser()


def unknown_parameters(given: Iterable[str], known: Sequence[str]) -> list[str]:
    """One message per name in ``given`` that is not in ``known``, naming the nearest known
    name (a misspelt parameter is otherwise silently ignored and its default used)."""
    messages = []
    for name in sorted(set(given) - set(known)):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(known))}"
        messages.append(f"unknown parameter '{name}' is ignored; {hint}")
    return messages


def normalize_event_type(value: str) -> str:
    """'dvs_msgs/msg/EventArray' -> 'dvs_msgs/EventArray'; unknown types raise ValueError."""
    parts = value.strip().split("/")
    name = f"{parts[0]}/{parts[-1]}" if len(parts) in (2, 3) else value
    if name not in EVENT_TYPES:
        raise ValueError(f"event_type {value!r} is not supported; choose one of {EVENT_TYPES}")
    return name


DEPTH_NODE_PARAMS: tuple[Param, ...] = (
    Param("weights", "", "checkpoint (.safetensors); '' = the bundled default model"),
    Param("device", "cpu", "torch device: cpu, cuda or cuda:N"),
    Param("threads", 0, "torch CPU threads (0 = torch's default)", 0, 256),
    Param(
        "inference_path",
        "exact",
        "network execution path: exact (folded fast network, outputs equal reference up to "
        "float rounding), reference, exact-dense, exact-nchw, compile, bf16, "
        "fp16 (last two lossy); onnxruntime, openvino (the network exported to ONNX, run by "
        "that runtime: optional packages)",
        choices=(
            "exact",
            "reference",
            "exact-dense",
            "exact-nchw",
            "compile",
            "bf16",
            "fp16",
            "onnxruntime",
            "openvino",
        ),
    ),
    Param(
        "onnx_providers",
        "cpu",
        "ONNX Runtime execution providers in order of preference, comma-separated: cpu, cuda, "
        "tensorrt or full names (inference_path onnxruntime)",
    ),
    Param(
        "onnx_file",
        "",
        "exported .onnx of these weights to run (inference_path onnxruntime/openvino); '' = "
        "export the weights in memory at start-up",
    ),
    Param(
        "warm_up_size",
        "260x346",
        "HxW the network is prepared for at start-up (DAVIS346/MVSEC: 260x346; '' = at the "
        "first message, which then skips the windows of that second)",
    ),
    Param("event_type", EVENT_TYPES[0], "event message type", choices=EVENT_TYPES),
    Param("left_events_topic", "davis/left/events", "left camera events"),
    Param("right_events_topic", "davis/right/events", "right camera events"),
    Param(
        "reliable",
        False,
        "subscribe RELIABLE; the default BEST_EFFORT hears publishers of either reliability",
    ),
    Param("qos_depth", 1000, "history depth of the event subscriptions (messages)", 1, 100000),
    Param(
        "ingest_period_ms",
        5.0,
        "the ingest thread takes queued event messages this often (adds up to this latency)",
        0.5,
        100.0,
    ),
    Param("rectify", False, "rectify events with the cameras' calibration before binning"),
    Param(
        "left_rectification_topic",
        "davis/left/rectification_map",
        "per-pixel rectification maps (32FC2, transient local; the event_player publishes the "
        "recording's): with rectify they win over camera_info, without they are compared "
        "('' = none)",
    ),
    Param("right_rectification_topic", "davis/right/rectification_map", "right maps"),
    Param(
        "replay_watermarks",
        False,
        "replay only (event_player): an event message's header stamp promises that every "
        "event before it was sent, so windows (the last one too) complete at it; live "
        "drivers stamp arrival time: keep false",
    ),
    Param("left_camera_info_topic", "davis/left/camera_info", "left CameraInfo ('' = none)"),
    Param("right_camera_info_topic", "davis/right/camera_info", "right CameraInfo"),
    Param(
        "left_calibration_file",
        "",
        "camera_info YAML of the left camera; overrides the topic when set",
    ),
    Param("right_calibration_file", "", "camera_info YAML of the right camera"),
    Param("window_ms", 50.0, "event window length (sensor time)", 1.0, 1000.0),
    Param(
        "period_ms", 0.0, "time between window ends at a fixed rate (0 = window_ms)", 0.0, 10000.0
    ),
    Param(
        "trigger_topic",
        "",
        "stamps that end windows (e.g. davis/left/depth_image_rect); '' = fixed rate",
    ),
    Param(
        "trigger_type",
        "sensor_msgs/msg/Image",
        "type of trigger_topic; only its header stamp is read (std_msgs/Header first)",
    ),
    Param(
        "max_buffered_events",
        4_000_000,
        "events buffered per camera before the oldest are dropped",
        1000,
        1_000_000_000,
    ),
    Param(
        "silence_timeout_s",
        1.0,
        "a camera without messages this long is reported silent",
        0.05,
        3600.0,
    ),
    Param(
        "sensor_size",
        "",
        "HxW of the event streams; '' = the calibration's size, else the weights' input size, "
        "else learnt from the stream. Messages of another size are dropped and counted",
    ),
    Param(
        "allow_size_mismatch",
        False,
        "run on a stream whose size differs from the weights' training size (else ERROR "
        "diagnostic and no depth)",
    ),
    Param(
        "outlier_gap_s",
        1.0,
        "an event this far (sensor time) from both its neighbours is dropped as an outlier "
        "(0 = keep every event)",
        0.0,
        3600.0,
    ),
    Param(
        "clock_skew_tolerance_s",
        0.5,
        "the two cameras' sensor clocks must agree within this; else ERROR diagnostic",
        0.001,
        3600.0,
    ),
    Param(
        "warn_period_s",
        10.0,
        "console WARN about falling behind or dropped data at most this often",
        0.1,
        3600.0,
    ),
    Param("frame_id", "", "frame of the outputs; '' = the left events' frame_id"),
    Param(
        "temporal_smoothing",
        0.0,
        "weight of the previous depth in a running mean of log depth over windows (0 = off; "
        "s delays depth by s/(1-s) windows: 0.5 by one)",
        0.0,
        0.95,
        read_only=False,
    ),
    Param("min_depth", 0.5, "colour scale near end (m)", 0.0, 1000.0, read_only=False),
    Param("max_depth", 10.0, "colour scale far end (m)", 0.01, 1000.0, read_only=False),
    Param("publish_color", True, "publish ~/depth_color (rgb8)", read_only=False),
    Param("publish_events_image", True, "publish ~/events_image (rgb8)", read_only=False),
    Param("publish_points", False, "publish ~/points (PointCloud2)", read_only=False),
    Param("points_decimation", 2, "keep every N-th pixel of each row/column", 1, 64, False),
    Param("points_min_range", 0.1, "closest depth put in the cloud (m)", 0.0, 1000.0, False),
    Param("points_max_range", 10.0, "farthest depth put in the cloud (m)", 0.0, 1000.0, False),
    Param("firing_rate", True, "measure the network's firing rate (spike density)"),
    Param("diagnostics_period_s", 1.0, "period of /diagnostics", 0.1, 60.0),
)

PLAYER_PARAMS: tuple[Param, ...] = (
    Param("recording", "", "MVSEC HDF5 (data file or prefix), ROS 1 .bag, or ROS 2 bag"),
    Param("event_type", EVENT_TYPES[0], "event message type", choices=EVENT_TYPES),
    Param("evt_encoding", "evt3", "EventPacket payload encoding (evt3, libcaer)"),
    Param("left_events_topic", "davis/left/events", ""),
    Param("right_events_topic", "davis/right/events", ""),
    Param("left_camera_info_topic", "davis/left/camera_info", "'' = do not publish"),
    Param("right_camera_info_topic", "davis/right/camera_info", "'' = do not publish"),
    Param("depth_topic", "davis/left/depth_image_rect", "ground truth ('' = do not publish)"),
    Param("left_frame_id", "davis_left_optical_frame", "frame of left events and depth"),
    Param("right_frame_id", "davis_right_optical_frame", ""),
    Param("rate", 1.0, "playback speed factor (0 = as fast as possible)", 0.0, 1000.0),
    Param("message_ms", 1.0, "sensor time per event message, like a driver", 0.01, 1000.0),
    Param(
        "depth_lead_ms",
        5.0,
        "publish ground truth this much sensor time before its stamp (0 = at its stamp)",
        0.0,
        1000.0,
    ),
    Param("reliable", True, "publish RELIABLE (False: BEST_EFFORT like camera drivers)"),
    Param(
        "calibration",
        "",
        "folder of MVSEC *_{left,right}_{x,y}_map.txt ('' = as evaluate: maps beside the "
        "recording, else the camera_info it carries, else identity)",
    ),
    Param("rectify", True, "publish the recording's rectification (False: identity, raw pixels)"),
    Param(
        "left_rectification_topic",
        "davis/left/rectification_map",
        "rectification maps the depth node applies (transient local; '' = do not publish)",
    ),
    Param("right_rectification_topic", "davis/right/rectification_map", ""),
    Param(
        "lockstep",
        False,
        "send the events past a ground-truth stamp only once answer_topic answered it: "
        "lossless and deterministic at any speed (node: trigger_topic, replay_watermarks)",
    ),
    Param("answer_topic", "depth_node/depth", "depth answers counted (and awaited in lockstep)"),
    Param(
        "answer_timeout_s",
        30.0,
        "lockstep: give up waiting for one answer after this (counted missing)",
        0.1,
        3600.0,
    ),
    Param("publish_clock", True, "publish /clock for use_sim_time"),
    Param("loop", False, "start again at the end"),
    Param("stay_up", False, "keep the node alive after the last message"),
    Param("start_delay_s", 1.0, "wait before the first message (discovery)", 0.0, 3600.0),
    Param(
        "wait_for_subscribers",
        0,
        "wait until both event topics have this many subscribers",
        0,
        1000,
    ),
    Param(
        "wait_for_depth_subscribers",
        0,
        "also wait until the ground-truth topic has this many subscribers",
        0,
        1000,
    ),
    Param("wait_timeout_s", 60.0, "give up waiting for subscribers after this", 0.0, 3600.0),
)

EVALUATOR_PARAMS: tuple[Param, ...] = (
    Param("depth_topic", "depth_node/depth", "predicted depth (32FC1 metres)"),
    Param("ground_truth_topic", "davis/left/depth_image_rect", "ground-truth depth"),
    Param("tolerance_ms", 1.0, "pair stamps closer than this (0 = exact)", 0.0, 10000.0),
    Param("reliable", True, "subscribe RELIABLE (False: BEST_EFFORT)"),
    Param("max_depth", 0.0, "ignore ground truth beyond this (m); 0 = no cut-off", 0.0, 1000.0),
    Param("output", "", "JSON summary written on shutdown ('' = none)"),
    Param("write_every", 0, "also write the JSON every N pairs (0 = only at shutdown)", 0, 10**6),
    Param("log_every", 20, "log the running metrics every N pairs (0 = never)", 0, 10**6),
    Param("image_dir", "", "save prediction/ground-truth PNGs here ('' = none)"),
    Param("save_images", 3, "how many pairs to save as PNG", 0, 10000),
    Param("save_every", 10, "save pairs 0, N, 2N, ... (until save_images are saved)", 1, 10**6),
    Param("min_depth_color", 0.5, "colour scale of saved PNGs (m)", 0.0, 1000.0),
    Param("max_depth_color", 10.0, "colour scale of saved PNGs (m)", 0.01, 1000.0),
    Param(
        "wait_for_depth_publisher",
        False,
        "subscribe to ground truth only once depth_topic has a matched publisher (replays: a "
        "player that waits for ground-truth readers then waits for the node too)",
    ),
)
