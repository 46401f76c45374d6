"""The runtime of ``python -m stereospike_ros demo`` (its options: ``cli/demo.py``): the whole
online pipeline on a simulated recording, or on your own (``--recording PATH``: MVSEC HDF5,
ROS 1 bag, ROS 2 bag).

No ROS install and no downloaded data: it simulates a few seconds of a stereo event camera in
a room (with ground truth), writes them as MVSEC HDF5, and starts three processes that talk
through real DDS, as on a robot: ``event_player`` (events, camera_info, ground-truth depth,
/clock), ``depth_node`` with the bundled weights (windows ended by the ground-truth stamps, the
MVSEC protocol) and ``depth_evaluator``. This process listens to ``/diagnostics`` and prints
the MDE, the node's figures, and where the PNGs and the JSON summary are.

The player publishes the recording's rectification (as ``evaluate`` applies it) and the node
applies it; by default the player runs in lockstep (it waits for each depth answer), so every
ground-truth frame is answered and the MDE equals ``evaluate``'s on the same file
(``--real-time``: paced by the clock instead; a slow machine then skips windows, reported).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

DEPTH_TOPIC = "/davis/left/depth_image_rect"
#: Per-second figures of the node's /diagnostics that the demo averages over the run.
AVERAGED = (
    "inference_ms_mean",
    "publish_ms_mean",
    "overhead_ms_per_window",
    "latency_ms_mean",
    "processing_ms_mean",
)


@dataclass(frozen=True)
class DemoOptions:
    """What to replay and how (the ``demo`` command's options, defaults as there)."""

    out: Path = Path("out/demo")
    #: a user's recording to replay; None: simulate one
    recording: Path | None = None
    #: folder of MVSEC rectification maps for ``recording``
    calibration: Path | None = None
    #: paced by ``rate`` only, instead of lockstep with the node's answers
    real_time: bool = False
    #: checkpoint; '' = the bundled model
    weights: str = ""
    duration: float = 3.0
    rate: float = 0.5
    seed: int = 7
    scene: str = "room"
    motion: str = "hover"
    event_type: str = "dvs_msgs/EventArray"
    device: str = "cpu"
    threads: int = 1
    images: int = 3
    timeout: float = 300.0


def _resolve_weights(value: str) -> Path:
    """The checkpoint to run, loaded once here so that a missing or corrupt file (or NaN
    weights) is one clear error before any process starts."""
    from stereospike_ros.errors import UsageError
    from stereospike_ros.model import load_checkpoint
    from stereospike_ros.ros.parameters import DEFAULT_WEIGHTS, resolve_weights

    path = resolve_weights(value)
    if not path.is_file():
        hint = (
            "the bundled model is not in this checkout; it is made by "
            "`tools/train_default_model.sh` (see docs/training.md, *The bundled model*), "
            "or pass --weights FILE.safetensors"
            if path == DEFAULT_WEIGHTS
            else "check the path"
        )
        problem = "are a folder, not a file" if path.is_dir() else "do not exist"
        raise UsageError(f"weights {path} {problem}: {hint}")
    load_checkpoint(path)
    return path


def _describe_recording(options: DemoOptions) -> tuple[Path, dict]:
    """What the demo says about a user's recording before replaying it (clear errors here)."""
    from stereospike_ros.data.errors import DataError
    from stereospike_ros.data.open import open_sequence

    try:
        sequence = open_sequence(options.recording, calibration=options.calibration)
        try:
            frames = len(sequence.depth_stamps())
            source = sequence.rectifier("left").source
            size = [sequence.height, sequence.width]
        finally:
            sequence.close()
    except (DataError, OSError, ValueError) as err:
        raise DataError(f"cannot replay {options.recording}: {err}") from err
    if not frames:
        raise DataError(f"{options.recording} holds no ground-truth depth frames to score")
    info = {"depth_frames": frames, "size": size, "rectification": source}
    return options.recording.resolve(), info


def _simulate(options: DemoOptions, weights: Path) -> tuple[Path, dict]:
    from stereospike_ros.data.mvsec_hdf5 import write_mvsec_hdf5
    from stereospike_ros.model import checkpoint_metadata
    from stereospike_ros.sim.simulator import SimConfig, simulate

    size = checkpoint_metadata(weights).get("input_size") or [260, 346]
    config = SimConfig(
        name="demo",
        seed=options.seed,
        duration_s=options.duration,
        scene=options.scene,
        motion=options.motion,
        height=int(size[0]),
        width=int(size[1]),
    )
    start = time.monotonic()
    recording = simulate(config)
    data = options.out / "demo_data.hdf5"
    write_mvsec_hdf5(recording, data, options.out / "demo_gt.hdf5", overwrite=True)
    info = {
        "seconds": round(time.monotonic() - start, 2),
        "size": [config.height, config.width],
        "events": [len(recording.left_events), len(recording.right_events)],
        "depth_frames": len(recording.depth),
    }
    return data, info


class _Diagnostics:
    """Keeps the depth node's latest /diagnostics status (heard through DDS in this process)."""

    def __init__(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor

        self.latest: dict[str, str] = {}
        self.samples: dict[str, list[float]] = {key: [] for key in AVERAGED}
        self.level = 0
        self.messages: list[str] = []
        self.context = rclpy.Context()
        rclpy.init(context=self.context, args=[])
        self.node = rclpy.create_node("stereospike_demo", context=self.context)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_diag(self, msg: object) -> None:
        for status in msg.status:
            if status.name.startswith("depth_node"):
                values = {kv.key: kv.value for kv in status.values}
                self.latest.update(values)  # timings are absent from periods without windows
                for key in AVERAGED:
                    if key in values:
                        self.samples[key].append(float(values[key]))
                if status.level and status.message not in self.messages:
                    self.messages.append(status.message)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=1.0)
        self.thread.join(timeout=2.0)  # a C++ wait still running at exit aborts the process
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def _start(module: str, name: str, params: dict, log: Path, env: dict) -> subprocess.Popen:
    argv = [sys.executable, "-m", f"stereospike_ros.ros.{module}", "--ros-args"]
    argv += ["-r", f"__node:={name}"]
    for key, value in params.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        argv += ["-p", f"{key}:={text}"]
    handle = open(log, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env)


def _stop(process: subprocess.Popen, timeout: float = 20.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_demo(options: DemoOptions) -> int:
    """Run the demo; 0 when the evaluator scored at least one frame."""
    started = time.monotonic()
    options = replace(options, out=options.out.resolve())
    options.out.mkdir(parents=True, exist_ok=True)
    weights = _resolve_weights(options.weights)
    data, sim = _prepare_data(options, weights)
    env = _private_domain_env()
    summary_path = options.out / "evaluation.json"
    logs = {name: options.out / f"{name}.log" for name in ("depth_node", "player", "evaluator")}
    diagnostics = _Diagnostics()
    processes: dict[str, subprocess.Popen] = {}
    try:
        _start_processes(processes, options, weights, data, sim, summary_path, logs, env)
        _wait_for_player(processes, options, logs, deadline=started + options.timeout)
        _wait_for_last_window(diagnostics, sim["depth_frames"])
    except RuntimeError as err:
        print(f"demo: {err}", file=sys.stderr)
        for process in processes.values():
            _stop(process)
        diagnostics.close()
        return 1
    codes = {name: _stop(process) for name, process in processes.items()}
    diagnostics.close()
    if not summary_path.is_file():
        print(f"demo: the evaluator wrote no summary:\n{_tail(logs['evaluator'])}", file=sys.stderr)
        return 1
    evaluation = json.loads(summary_path.read_text())
    return _report(options, sim, evaluation, diagnostics, codes, logs, started)


def _prepare_data(options: DemoOptions, weights: Path) -> tuple[Path, dict]:
    """The recording to play and what it holds: ``--recording`` as given, else one simulated
    now; prints what it is."""
    if options.recording is not None:
        data, sim = _describe_recording(options)
        print(
            f"demo: {data}: {sim['depth_frames']} depth frames at {sim['size'][1]}x"
            f"{sim['size'][0]}, rectification {sim['rectification']}",
            flush=True,
        )
        return data, sim
    print(
        f"demo: simulating {options.duration:g} s ({options.scene}, {options.motion}) ...",
        flush=True,
    )
    data, sim = _simulate(options, weights)
    print(
        f"demo: {sim['events'][0]} + {sim['events'][1]} events, {sim['depth_frames']} depth "
        f"frames at {sim['size'][1]}x{sim['size'][0]} in {sim['seconds']} s -> {data}",
        flush=True,
    )
    return data, sim


def _private_domain_env() -> dict[str, str]:
    """The environment of the demo's processes (and this one, which listens to diagnostics)."""
    env = dict(os.environ)
    # A private DDS domain on this host only, so the demo neither hears nor disturbs others.
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env["PYTHONUNBUFFERED"] = "1"
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    return env


def _start_processes(
    processes: dict[str, subprocess.Popen],
    options: DemoOptions,
    weights: Path,
    data: Path,
    sim: dict,
    summary_path: Path,
    logs: dict[str, Path],
    env: dict[str, str],
) -> None:
    """Start the evaluator, the depth node and the player, in that order, into ``processes``
    (so the caller stops those started if a later one fails)."""
    processes["evaluator"] = _start(
        "depth_evaluator",
        "depth_evaluator",
        {
            "depth_topic": "/depth_node/depth",
            "ground_truth_topic": DEPTH_TOPIC,
            "output": summary_path,
            "image_dir": options.out / "images",
            "save_images": options.images,
            "save_every": 5,
            "log_every": 0,
            "wait_for_depth_publisher": True,  # the player's wait then covers node -> evaluator
        },
        logs["evaluator"],
        env,
    )
    processes["depth_node"] = _start(
        "depth_node",
        "depth_node",
        {
            "weights": weights,
            "device": options.device,
            "threads": options.threads,
            "event_type": options.event_type,
            "trigger_topic": DEPTH_TOPIC,
            "reliable": True,
            "rectify": True,
            "replay_watermarks": True,
            "warm_up_size": f"{sim['size'][0]}x{sim['size'][1]}",
            "publish_points": True,
        },
        logs["depth_node"],
        env,
    )
    processes["player"] = _start(
        "event_player",
        "event_player",
        {
            "recording": data,
            "event_type": options.event_type,
            "rate": options.rate,
            "wait_for_subscribers": 1,
            "wait_for_depth_subscribers": 2,  # the node's trigger and the evaluator
            "wait_timeout_s": 120.0,
            "start_delay_s": 1.0,
            "lockstep": not options.real_time,
            **({"calibration": options.calibration} if options.calibration else {}),
        },
        logs["player"],
        env,
    )


def _wait_for_player(
    processes: dict[str, subprocess.Popen],
    options: DemoOptions,
    logs: dict[str, Path],
    deadline: float,
) -> None:
    """Until the player has played the whole recording; RuntimeError when the node stops, the
    player fails or the deadline passes."""
    mode = "in real time" if options.real_time else "in lockstep (every frame answered)"
    print(f"demo: playing at {options.rate:g}x real time {mode} through DDS ...", flush=True)
    while processes["player"].poll() is None:
        node_code = processes["depth_node"].poll()
        if node_code is not None:
            raise RuntimeError(
                f"depth_node stopped (exit {node_code}):\n{_tail(logs['depth_node'])}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {options.timeout:g} s")
        time.sleep(0.2)
    if processes["player"].returncode != 0:
        raise RuntimeError(f"event_player failed:\n{_tail(logs['player'])}")


def _wait_for_last_window(diagnostics: _Diagnostics, frames: int, patience: float = 15.0) -> None:
    """Give the node time to publish the windows still in flight (about one forward pass)."""
    deadline = time.monotonic() + patience
    last, still_since = None, time.monotonic()
    while time.monotonic() < deadline:
        processed = diagnostics.latest.get("windows_processed")
        if processed != last:
            last, still_since = processed, time.monotonic()
        elif time.monotonic() - still_since > 2.5:
            return
        time.sleep(0.25)


def _report(
    options: DemoOptions,
    sim: dict,
    evaluation: dict,
    diagnostics: _Diagnostics,
    codes: dict,
    logs: dict,
    started: float,
) -> int:
    m = evaluation["metrics"]
    node = dict(diagnostics.latest)
    for key, values in diagnostics.samples.items():
        if values:  # the run's mean of the per-second means
            node[key] = f"{sum(values) / len(values):.6g}"

    def figure(key: str, fmt: str = ".1f") -> str:
        value = node.get(key)
        try:
            return format(float(value), fmt)
        except (TypeError, ValueError):
            return "n/a"

    summary = {
        "mde_cm": m.get("mde_cm"),
        "rmse_m": m.get("rmse_m"),
        "delta1": m.get("delta1"),
        "frames_scored": evaluation["pairs"],
        "depth_frames": sim["depth_frames"],
        "windows_processed": node.get("windows_processed"),
        "windows_skipped": node.get("windows_skipped"),
        **{key: node.get(key) for key in AVERAGED},
        "firing_rate": node.get("firing_rate"),
        "warnings": diagnostics.messages,
        "simulation": sim,
        "playback_rate": options.rate,
        "lockstep": not options.real_time,
        "event_type": options.event_type,
        "images": evaluation["images"],
        "evaluation": str(options.out / "evaluation.json"),
        "logs": {k: str(v) for k, v in logs.items()},
        "exit_codes": codes,
        "wall_s": round(time.monotonic() - started, 1),
    }
    path = options.out / "demo_summary.json"
    path.write_text(json.dumps(summary, indent=2))
    mde = "n/a" if m.get("mde_cm") is None else f"{m['mde_cm']:.1f} cm"
    print(
        f"demo: MDE {mde} over {evaluation['pairs']} of {sim['depth_frames']} ground-truth "
        f"frames (RMSE {m.get('rmse_m') or float('nan'):.3f} m, delta1 "
        f"{m.get('delta1') or float('nan'):.3f}); evaluator: frames expected "
        f"{evaluation.get('frames_expected')}, answered {evaluation.get('frames_answered')}, "
        f"missing {evaluation.get('frames_missing')}"
    )
    print(
        f"demo: depth_node processed {node.get('windows_processed', '?')} windows, skipped "
        f"{node.get('windows_skipped', '?')}; per window: inference "
        f"{figure('inference_ms_mean')} ms, "
        f"node overhead {figure('overhead_ms_per_window', '.2f')} ms, latency "
        f"{figure('latency_ms_mean')} ms; firing rate {figure('firing_rate', '.3f')}"
    )
    for image in evaluation["images"]:
        print(f"demo: wrote {image}")
    print(f"demo: summary {path} (evaluator: {options.out / 'evaluation.json'})")
    print(f"demo: done in {summary['wall_s']} s")
    return 0 if evaluation["pairs"] > 0 else 1
