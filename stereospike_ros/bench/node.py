"""``python -m stereospike_ros benchmark node``: what the depth node costs beyond the network.

Starts ``depth_node`` as its own process and feeds it synthetic stereo events through real DDS
from this process, like a live driver (best effort, event times = wall clock, ``message_ms``
per message), then reads the node's own ``/diagnostics`` and listens to ``~/depth``:

1. nominal rate (MVSEC-like): node overhead per window beyond the network's forward, as CPU time
   of the node's threads (taking, decoding and windowing a window's worth of messages, plus
   conversions and publishing of every output; CPU time, because waiting for one of the two
   cores that the publisher also uses is not the node's cost), the forward itself, the whole
   process's CPU per window, and latency window end -> depth received here;
2. a flood (``--flood`` x the rate): resident memory of the node process over time (bounded,
   not growing), skipped windows and drops counted, the node still publishing.

By default the network is a tiny compact one created for the run, so the forward stays short
and the overhead figures are not swamped; ``--weights`` measures a real checkpoint. Both run
on this machine's cores together with the publisher, so treat absolute figures as upper bounds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from stereospike_ros.events.types import SIDES, parse_size

HELP = "depth node overhead, latency, and memory under a 10x event flood (real DDS)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="short phases (about 30 s in all)")
    parser.add_argument(
        "--rate", type=float, default=300_000.0, help="events/s per camera (MVSEC-like: 300k)"
    )
    parser.add_argument("--message-ms", type=float, default=1.0, help="ms of events per message")
    parser.add_argument("--size", type=parse_size, default=(260, 346), help="sensor HxW (260x346)")
    parser.add_argument("--duration", type=float, default=20.0, help="nominal phase, s (20)")
    parser.add_argument("--flood", type=float, default=10.0, help="flood factor (10)")
    parser.add_argument("--flood-duration", type=float, default=60.0, help="flood phase, s (60)")
    parser.add_argument("--weights", default="", help="checkpoint (default: a tiny one)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the node (1)")
    parser.add_argument(
        "--event-type",
        default="dvs_msgs/EventArray",
        choices=("dvs_msgs/EventArray", "event_camera_msgs/EventPacket"),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tiny_weights(folder: Path) -> Path:
    import torch

    from stereospike_ros.model import build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model("stereospike", width=0.125, heads=(1,))
    with torch.no_grad():
        model.predict["depth1"].bias.fill_(3.0)
    return save_checkpoint(folder / "tiny.safetensors", model, window_ms=50.0)


class _Feeder:
    """Publishes synthetic events for both cameras at a given rate, stamped with wall time."""

    def __init__(self, node: object, event_type: str, height: int, width: int, seed: int = 0):
        from stereospike_ros.events import encode_event_array, encode_event_packet
        from stereospike_ros.ros.common import event_qos, message_class

        self.height, self.width = height, width
        msg_type = message_class(event_type)
        qos = event_qos(False, 1000)  # a driver publishes best effort
        self.pubs = {
            side: node.create_publisher(msg_type, f"/davis/{side}/events", qos) for side in SIDES
        }
        if event_type == "dvs_msgs/EventArray":
            self.encode = encode_event_array
        else:
            self.encode = encode_event_packet
        rng = np.random.default_rng(seed)
        pool = 1 << 20
        self.x = rng.integers(0, width, pool).astype(np.uint16)
        self.y = rng.integers(0, height, pool).astype(np.uint16)
        self.p = rng.integers(0, 2, pool).astype(np.uint8)
        self.cursor = 0
        self.events_sent = 0
        self.messages_sent = 0

    def _events(self, n: int, t0: int, t1: int) -> np.ndarray:
        from stereospike_ros.events import EVENT_DTYPE

        events = np.empty(n, dtype=EVENT_DTYPE)
        index = (self.cursor + np.arange(n)) % len(self.x)
        self.cursor = int(index[-1] + 1) if n else self.cursor
        events["x"], events["y"], events["p"] = self.x[index], self.y[index], self.p[index]
        events["t"] = t0 + (np.arange(n, dtype=np.int64) * (t1 - t0)) // max(n, 1)
        return events

    def run(self, rate: float, seconds: float, message_ms: float, stop: threading.Event) -> float:
        """Publish for ``seconds``; returns the event rate per camera actually achieved."""
        start = time.time_ns()
        end = start + int(seconds * 1e9)
        last = start
        sent = 0
        period = message_ms / 1000.0
        while not stop.is_set():
            now = time.time_ns()
            if now >= end:
                break
            n = int(rate * (now - last) / 1e9)
            if n > 0:
                for side, pub in self.pubs.items():
                    events = self._events(n, last, now)
                    pub.publish(self.encode(events, self.height, self.width, now, f"davis_{side}"))
                    self.messages_sent += 1
                sent += n
                last = now
            time.sleep(max(0.0, period - (time.time_ns() - now) / 1e9))
        self.events_sent += 2 * sent
        return sent / max((time.time_ns() - start) / 1e9, 1e-9)


class _Listener:
    """Keeps the node's diagnostics and the arrival latency of ~/depth."""

    def __init__(self, node: object) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image

        from stereospike_ros.ros.common import event_qos

        self.diagnostics: list[tuple[float, dict[str, str], int, str]] = []
        self.latencies_ms: list[float] = []
        self.depth_received = 0
        self.lock = threading.Lock()
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        node.create_subscription(
            Image, "/depth_node/depth", self._on_depth, event_qos(False, 10), raw=True
        )

    def _on_diag(self, msg: object) -> None:
        for status in msg.status:
            if status.name.startswith("depth_node"):
                values = {kv.key: kv.value for kv in status.values}
                with self.lock:
                    self.diagnostics.append(
                        (time.monotonic(), values, status.level, status.message)
                    )

    def _on_depth(self, buf: bytes) -> None:
        from stereospike_ros.events.cdr import read_header_stamp_ns

        latency = (time.time_ns() - read_header_stamp_ns(buf)) / 1e6
        with self.lock:
            self.latencies_ms.append(latency)
            self.depth_received += 1

    def window(self, t0: float, t1: float) -> list[dict[str, str]]:
        with self.lock:
            return [values for t, values, _, _ in self.diagnostics if t0 <= t <= t1]


def _mean(rows: list[dict[str, str]], key: str) -> float | None:
    values = [float(r[key]) for r in rows if key in r]
    return statistics.fmean(values) if values else None


def _last(rows: list[dict[str, str]], key: str) -> str | None:
    values = [r[key] for r in rows if key in r]
    return values[-1] if values else None


class NodeSession:
    """A depth node process under test, and this process's talker beside it (``session``)."""

    def __init__(
        self, node_process: subprocess.Popen, node: object, listener: _Listener, log: Path
    ) -> None:
        self.process = node_process
        self.node = node
        self.listener = listener
        self.log = log
        self.stop = threading.Event()
        self.rss: list[tuple[float, float]] = []

    def sample_memory(self) -> None:
        """Sample the node's RSS every 0.5 s from now on (a daemon thread)."""

        def sample() -> None:
            while not self.stop.is_set() and self.process.poll() is None:
                value = _rss_mb(self.process.pid)
                if value is not None:
                    self.rss.append((time.monotonic(), value))
                time.sleep(0.5)

        threading.Thread(target=sample, daemon=True).start()


@contextlib.contextmanager
def session(params: dict[str, object], threads: int, prefix: str) -> Iterator[NodeSession]:
    """Start ``depth_node`` (``params``) as its own process on a private DDS domain, with a
    talker node spun here; on exit stop the node with SIGINT (as Ctrl-C) and shut down."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    env = dict(os.environ)
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    env["OMP_NUM_THREADS"] = str(max(1, threads))
    log = Path(tempfile.mkdtemp(prefix=prefix)) / "depth_node.log"
    argv = [sys.executable, "-m", "stereospike_ros.ros.depth_node", "--ros-args"]
    for key, value in {"threads": threads, **params}.items():
        argv += ["-p", f"{key}:={value}"]
    node_process = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    context = rclpy.Context()
    rclpy.init(context=context, args=[])
    node = rclpy.create_node("stereospike_benchmark_node", context=context)
    executor = SingleThreadedExecutor(context=context)
    current = NodeSession(node_process, node, _Listener(node), log)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        yield current
    finally:
        current.stop.set()
        if node_process.poll() is None:
            node_process.send_signal(signal.SIGINT)
            try:
                node_process.wait(20)
            except subprocess.TimeoutExpired:
                node_process.kill()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def run(args: argparse.Namespace) -> int:
    if args.weights:  # a bad file is one clear error here, not a node that fails to start
        from stereospike_ros.model import load_checkpoint

        load_checkpoint(args.weights)
    if args.quick:
        args.duration = min(args.duration, 8.0)
        args.flood_duration = min(args.flood_duration, 12.0)
    height, width = args.size
    tmp = Path(tempfile.mkdtemp(prefix="stereospike_bench_node_"))
    weights = Path(args.weights) if args.weights else _tiny_weights(tmp)
    params = {"weights": weights, "event_type": args.event_type, "publish_points": "true"}
    with session(params, args.threads, "stereospike_bench_node_") as current:
        return _measure(args, current, weights, height, width)


def _measure(
    args: argparse.Namespace, current: NodeSession, weights: Path, height: int, width: int
) -> int:
    node_process, listener, rss, log = current.process, current.listener, current.rss, current.log
    feeder = _Feeder(current.node, args.event_type, height, width)
    stop = current.stop

    result: dict[str, object] = {}
    try:
        deadline = time.monotonic() + 120
        while any(p.get_subscription_count() == 0 for p in feeder.pubs.values()):
            if node_process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("depth_node did not start:\n" + log.read_text()[-2000:])
            time.sleep(0.1)
        current.sample_memory()
        print(
            f"benchmark node: {width}x{height}, {args.rate / 1e3:g}k events/s per camera in "
            f"{args.message_ms:g} ms messages ({args.event_type}), weights {weights.name}",
            flush=True,
        )
        feeder.run(args.rate, 2.0, args.message_ms, stop)  # warm-up, not measured
        t0 = time.monotonic()
        n_lat = len(listener.latencies_ms)
        cpu0, received0 = _cpu_s(node_process.pid), listener.depth_received
        nominal_rate = feeder.run(args.rate, args.duration, args.message_ms, stop)
        cpu1, received1 = _cpu_s(node_process.pid), listener.depth_received
        time.sleep(1.2)
        rows = listener.window(t0 + 1.5, time.monotonic())
        latencies = listener.latencies_ms[n_lat:]
        windows = max(received1 - received0, 1)
        forward_ms = _mean(rows, "inference_ms_mean") or 0.0
        cpu_ms = None if cpu0 is None or cpu1 is None else 1e3 * (cpu1 - cpu0) / windows
        result["nominal"] = {
            "events_per_s_per_camera": round(nominal_rate),
            "overhead_ms_per_window": _mean(rows, "overhead_ms_per_window"),
            "decode_ms_per_window": _mean(rows, "decode_ms_per_window"),
            "take_ms_per_window": _mean(rows, "take_ms_per_window"),
            "publish_ms_per_window": _mean(rows, "publish_ms_mean"),
            "forward_ms": _mean(rows, "inference_ms_mean"),
            "process_cpu_ms_per_window": cpu_ms,
            "process_overhead_cpu_ms_per_window": None
            if cpu_ms is None
            else cpu_ms - forward_ms * max(1, args.threads),
            "windows_per_s": _mean(rows, "windows_per_s"),
            "latency_ms_median": statistics.median(latencies) if latencies else None,
            "latency_ms_p95": float(np.percentile(latencies, 95)) if latencies else None,
            "node_latency_ms_mean": _mean(rows, "latency_ms_mean"),
            "windows_skipped": _last(rows, "windows_skipped"),
        }
        rss_before = rss[-1][1] if rss else None
        t1 = time.monotonic()
        received_before = listener.depth_received
        flood_rate = feeder.run(args.rate * args.flood, args.flood_duration, args.message_ms, stop)
        time.sleep(1.2)
        flood_rows = listener.window(t1, time.monotonic())
        flood_rss = [v for t, v in rss if t >= t1]
        half = [v for t, v in rss if t >= t1 + args.flood_duration / 2]
        result["flood"] = {
            "factor": args.flood,
            "events_per_s_per_camera": round(flood_rate),
            "seconds": args.flood_duration,
            "rss_mb_before": rss_before,
            "rss_mb_peak": max(flood_rss) if flood_rss else None,
            "rss_mb_end": flood_rss[-1] if flood_rss else None,
            "rss_mb_growth_second_half": (max(half) - min(half)) if half else None,
            "windows_skipped": _last(flood_rows, "windows_skipped"),
            "windows_processed": _last(flood_rows, "windows_processed"),
            "depth_received": listener.depth_received - received_before,
            "dropped_for_memory": {
                side: _last(flood_rows, key)
                for side, key in (
                    ("left", "windower_dropped_memory_left"),
                    ("right", "windower_dropped_memory_right"),
                )
            },
            "node_alive": node_process.poll() is None,
            "warnings": sorted({m for _, _, level, m in listener.diagnostics if level}),
        }
    except RuntimeError as err:
        print(f"benchmark node: {err}", file=sys.stderr)
        return 1
    finally:
        stop.set()
    _print(result)
    if args.json:
        print(json.dumps(result))
    ok = result["flood"]["node_alive"] and (result["nominal"]["overhead_ms_per_window"] or 1e9) < 5
    return 0 if ok else 1


def _fmt(value: object, fmt: str = ".2f") -> str:
    return "n/a" if value is None else format(float(value), fmt)


def _print(result: dict) -> None:
    n, f = result["nominal"], result["flood"]
    print(
        f"nominal ({n['events_per_s_per_camera'] / 1e3:.0f}k ev/s/camera reached): node overhead "
        f"{_fmt(n['overhead_ms_per_window'])} CPU ms/window (decode+windowing "
        f"{_fmt(n['decode_ms_per_window'])}, conversions+publishing "
        f"{_fmt(n['publish_ms_per_window'])}; target < 5 ms), plus "
        f"{_fmt(n['take_ms_per_window'])} taking the messages from rclpy, beside a "
        f"{_fmt(n['forward_ms'], '.1f')} ms forward; {_fmt(n['windows_per_s'], '.1f')} windows/s"
    )
    print(
        f"whole node process: {_fmt(n['process_cpu_ms_per_window'], '.1f')} CPU ms per window,"
        f" {_fmt(n['process_overhead_cpu_ms_per_window'], '.1f')} ms of it beyond the forward "
        "(the above plus DDS receive threads and the executor; forward CPU taken as wall x "
        "threads)"
    )
    print(
        f"latency window end -> depth received here: median {_fmt(n['latency_ms_median'], '.1f')}"
        f" ms, p95 {_fmt(n['latency_ms_p95'], '.1f')} ms (node's own figure "
        f"{_fmt(n['node_latency_ms_mean'], '.1f')} ms)"
    )
    print(
        f"flood x{f['factor']:g} ({f['events_per_s_per_camera'] / 1e3:.0f}k ev/s/camera reached, "
        f"{f['seconds']:g} s): node RSS {_fmt(f['rss_mb_before'], '.0f')} -> peak "
        f"{_fmt(f['rss_mb_peak'], '.0f')} -> end {_fmt(f['rss_mb_end'], '.0f')} MB (growth over "
        f"the second half {_fmt(f['rss_mb_growth_second_half'], '.1f')} MB); windows skipped "
        f"{f['windows_skipped']}, processed {f['windows_processed']}, depth images received "
        f"{f['depth_received']}; node alive: {f['node_alive']}"
    )
    if f["warnings"]:
        print("node warnings during the run: " + " | ".join(f["warnings"][:5]))
