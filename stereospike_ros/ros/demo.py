"""``python -m stereospike_ros demo``: the whole online pipeline on a simulated recording, or
on your own (``--recording PATH``: MVSEC HDF5, ROS 1 bag, ROS 2 bag).

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

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HELP = "simulate a recording and run player -> depth node -> evaluator over real DDS"
DEPTH_TOPIC = "/davis/left/depth_image_rect"
#: Per-second figures of the node's /diagnostics that the demo averages over the run.
AVERAGED = (
    "inference_ms_mean",
    "publish_ms_mean",
    "overhead_ms_per_window",
    "latency_ms_mean",
    "processing_ms_mean",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    parser.add_argument(
        "--recording",
        type=Path,
        help="replay this recording (X_data.hdf5, X.bag, ROS 2 bag) instead of simulating one",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        help="folder of MVSEC *_{left,right}_{x,y}_map.txt for --recording (as evaluate's)",
    )
    parser.add_argument(
        "--real-time",
        action="store_true",
        help="pace by --rate only (no lockstep): windows the node cannot keep up with are "
        "skipped and reported missing",
    )
    parser.add_argument("--weights", default="", help="checkpoint (default: the bundled model)")
    parser.add_argument("--duration", type=float, default=3.0, help="simulated seconds (3)")
    parser.add_argument(
        "--rate", type=float, default=0.5, help="playback speed; < 1 gives a slow CPU time (0.5)"
    )
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (7)")
    parser.add_argument("--scene", default="room", help="simulator scene (room)")
    parser.add_argument("--motion", default="hover", help="simulator motion (hover)")
    parser.add_argument(
        "--event-type",
        default="dvs_msgs/EventArray",
        choices=("dvs_msgs/EventArray", "event_camera_msgs/EventPacket"),
    )
    parser.add_argument("--device", default="cpu", help="torch device for the depth node (cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the node (1: the player and evaluator share the cores)",
    )
    parser.add_argument(
        "--images", type=int, default=3, help="prediction/ground-truth PNGs to save (3)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="give up after (s; 300): lockstep takes about one forward pass per frame",
    )


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


def _describe_recording(args: argparse.Namespace) -> tuple[Path, dict]:
    """What the demo says about a user's recording before replaying it (clear errors here)."""
    from stereospike_ros.data.errors import DataError
    from stereospike_ros.data.open import open_sequence

    try:
        sequence = open_sequence(args.recording, calibration=args.calibration)
        try:
            frames = len(sequence.depth_stamps())
            source = sequence.rectifier("left").source
            size = [sequence.height, sequence.width]
        finally:
            sequence.close()
    except (DataError, OSError, ValueError) as err:
        raise DataError(f"cannot replay {args.recording}: {err}") from err
    if not frames:
        raise DataError(f"{args.recording} holds no ground-truth depth frames to score")
    info = {"depth_frames": frames, "size": size, "rectification": source}
    return args.recording.resolve(), info


def _simulate(args: argparse.Namespace, weights: Path) -> tuple[Path, dict]:
    from stereospike_ros.data.mvsec_hdf5 import write_mvsec_hdf5
    from stereospike_ros.model import checkpoint_metadata
    from stereospike_ros.sim.simulator import SimConfig, simulate

    size = checkpoint_metadata(weights).get("input_size") or [260, 346]
    config = SimConfig(
        name="demo",
        seed=args.seed,
        duration_s=args.duration,
        scene=args.scene,
        motion=args.motion,
        height=int(size[0]),
        width=int(size[1]),
    )
    start = time.monotonic()
    recording = simulate(config)
    data = args.out / "demo_data.hdf5"
    write_mvsec_hdf5(recording, data, args.out / "demo_gt.hdf5", overwrite=True)
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


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    weights = _resolve_weights(args.weights)
    if args.recording is not None:
        data, sim = _describe_recording(args)
        print(
            f"demo: {data}: {sim['depth_frames']} depth frames at {sim['size'][1]}x"
            f"{sim['size'][0]}, rectification {sim['rectification']}",
            flush=True,
        )
    else:
        print(f"demo: simulating {args.duration:g} s ({args.scene}, {args.motion}) ...", flush=True)
        data, sim = _simulate(args, weights)
        print(
            f"demo: {sim['events'][0]} + {sim['events'][1]} events, {sim['depth_frames']} depth "
            f"frames at {sim['size'][1]}x{sim['size'][0]} in {sim['seconds']} s -> {data}",
            flush=True,
        )
    env = dict(os.environ)
    # A private DDS domain on this host only, so the demo neither hears nor disturbs others.
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env["PYTHONUNBUFFERED"] = "1"
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    images = args.out / "images"
    summary_path = args.out / "evaluation.json"
    logs = {name: args.out / f"{name}.log" for name in ("depth_node", "player", "evaluator")}
    diagnostics = _Diagnostics()
    processes: dict[str, subprocess.Popen] = {}
    try:
        processes["evaluator"] = _start(
            "depth_evaluator",
            "depth_evaluator",
            {
                "depth_topic": "/depth_node/depth",
                "ground_truth_topic": DEPTH_TOPIC,
                "output": summary_path,
                "image_dir": images,
                "save_images": args.images,
                "save_every": 5,
                "log_every": 0,
            },
            logs["evaluator"],
            env,
        )
        processes["depth_node"] = _start(
            "depth_node",
            "depth_node",
            {
                "weights": weights,
                "device": args.device,
                "threads": args.threads,
                "event_type": args.event_type,
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
                "event_type": args.event_type,
                "rate": args.rate,
                "wait_for_subscribers": 1,
                "wait_for_depth_subscribers": 2,  # the node's trigger and the evaluator
                "wait_timeout_s": 120.0,
                "start_delay_s": 1.0,
                "lockstep": not args.real_time,
                **({"calibration": args.calibration} if args.calibration else {}),
            },
            logs["player"],
            env,
        )
        deadline = started + args.timeout
        mode = "in real time" if args.real_time else "in lockstep (every frame answered)"
        print(f"demo: playing at {args.rate:g}x real time {mode} through DDS ...", flush=True)
        while processes["player"].poll() is None:
            node_code = processes["depth_node"].poll()
            if node_code is not None:
                raise RuntimeError(
                    f"depth_node stopped (exit {node_code}):\n{_tail(logs['depth_node'])}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {args.timeout:g} s")
            time.sleep(0.2)
        if processes["player"].returncode != 0:
            raise RuntimeError(f"event_player failed:\n{_tail(logs['player'])}")
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
    return _report(args, sim, evaluation, diagnostics, codes, logs, started)


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
    args: argparse.Namespace,
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
        "playback_rate": args.rate,
        "lockstep": not args.real_time,
        "event_type": args.event_type,
        "images": evaluation["images"],
        "evaluation": str(args.out / "evaluation.json"),
        "logs": {k: str(v) for k, v in logs.items()},
        "exit_codes": codes,
        "wall_s": round(time.monotonic() - started, 1),
    }
    path = args.out / "demo_summary.json"
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
    print(f"demo: summary {path} (evaluator: {args.out / 'evaluation.json'})")
    print(f"demo: done in {summary['wall_s']} s")
    return 0 if evaluation["pairs"] > 0 else 1
