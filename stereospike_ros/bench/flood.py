"""``python -m stereospike_ros benchmark flood``: the depth node under a 10x flood, and what bad
input costs the ingest path.

1. Ingest cost per event (no ROS, this process): the node's ingest path (``StereoIngest``:
   header checks, decoding, windowing) on clean 1 ms EventArrays, and on adversarial ones with
   the same number of events (random times over days: a backward jump at every other event;
   outliers far from their message; unsynchronised bursts at t = 0; messages of other sizes;
   undecodable bytes), as thread CPU time per event, and their ratio (target: within 2x).
2. Flood (real DDS, the node as its own process): both cameras at ``--factor`` x an MVSEC-like
   rate for ``--duration`` s; the node's resident memory over time (target: bounded, under
   1.5 GB), events sent here and received / lost / dropped per reason there (from its
   ``/diagnostics``), windows processed and skipped, depth images received here per second,
   and the node's own summary line at shutdown.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from stereospike_ros.bench.node import _Feeder, _tiny_weights, session
from stereospike_ros.events.types import SIDES, parse_size

HELP = "depth node under a 10x event flood: memory, loss per reason; ingest cost of bad input"
MVSEC_RATE = 300_000.0  # events/s per camera, MVSEC-like (as in ``benchmark node``)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=60.0, help="flood seconds (60)")
    parser.add_argument("--factor", type=float, default=10.0, help="x MVSEC-like rate (10)")
    parser.add_argument(
        "--rate", type=float, default=MVSEC_RATE, help="MVSEC-like events/s per camera (300k)"
    )
    parser.add_argument("--message-ms", type=float, default=1.0, help="ms per message (1)")
    parser.add_argument("--size", type=parse_size, default=(260, 346), help="sensor HxW (260x346)")
    parser.add_argument(
        "--weights", default="default", help="checkpoint; 'default' = bundled, 'tiny' = tiny"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the node (1)")
    parser.add_argument(
        "--ingest-seconds", type=float, default=2.0, help="sensor seconds per ingest run (2)"
    )
    parser.add_argument("--skip-flood", action="store_true", help="only the ingest cost part")
    parser.add_argument(
        "--large-messages",
        action="store_true",
        help="instead: delivery of 1/4/16 MB messages between processes per QoS and transport",
    )


# ---------------------------------------------------------------- 1. ingest cost


def _clean_messages(seconds: float, rate: float, h: int, w: int, seed: int) -> list:
    from stereospike_ros.events import EVENT_DTYPE

    rng = np.random.default_rng(seed)
    per = int(rate / 1000)
    out = []
    t_base = 1_000 * 10**9
    for k in range(int(seconds * 1000)):
        t0 = t_base + k * 10**6
        for side in SIDES:
            ev = np.zeros(per, dtype=EVENT_DTYPE)
            ev["t"] = np.sort(rng.integers(t0, t0 + 10**6, per))
            ev["x"], ev["y"] = rng.integers(0, w, per), rng.integers(0, h, per)
            ev["p"] = rng.integers(0, 2, per)
            out.append((side, ev))
    return out


def _adversarial(messages: list, seed: int) -> list:
    """The same events, made hostile; plus messages that are dropped whole."""
    rng = np.random.default_rng(seed)
    out = []
    for k, (side, ev) in enumerate(messages):
        ev = ev.copy()
        kind = k % 4
        if kind == 0:  # random times over days: a backward jump at every other event
            ev["t"] = rng.integers(0, 86_400 * 10**9, len(ev))
        elif kind == 1:  # outliers far from their message, both ways
            pick = rng.integers(0, len(ev), max(1, len(ev) // 100))
            ev["t"][pick] = np.where(pick % 2, 0, int(ev["t"][0]) + 86_400 * 10**9)
        elif kind == 2 and k % 400 == 2:  # an unsynchronised burst at t = 0
            ev["t"] = np.sort(rng.integers(0, 10**6, len(ev)))
        out.append((side, ev))
    return out


def _encode(messages: list, h: int, w: int) -> list[tuple[str, bytes]]:
    from stereospike_ros.events import encode_event_array

    return [
        (side, encode_event_array(ev, h, w, int(ev["t"].max()), "cam")) for side, ev in messages
    ]


def _ingest_cost(encoded: list[tuple[str, bytes]], h: int, w: int) -> tuple[float, dict]:
    """Thread CPU seconds to ingest ``encoded`` as the node does; the windower's counters."""
    from dataclasses import asdict

    from stereospike_ros.events.ingest import DroppedMessageError, StereoIngest

    ing = StereoIngest("dvs_msgs/EventArray", outlier_ns=10**9, geometry=(h, w))
    windows = 0
    start = time.thread_time()
    for i in range(0, len(encoded), 10):  # batches of 10 messages, like the ingest thread
        now = time.monotonic()
        for side, buf in encoded[i : i + 10]:
            with contextlib.suppress(DroppedMessageError):  # counted: part of the cost
                ing.accept(side, buf, now)
        windows += len(ing.poll())
    windows += len(ing.flush())
    cpu = time.thread_time() - start
    counters = asdict(ing.windower.counters) if ing.windower else {}
    counters["windows"] = windows
    counters["dropped_messages"] = sum(
        c.decode_errors + c.geometry_errors for c in ing.counters.values()
    )
    return cpu, counters


def ingest_cost(args: argparse.Namespace) -> dict:
    from stereospike_ros.events import kernels

    h, w = args.size
    kernels.warm_up()
    clean = _clean_messages(args.ingest_seconds, args.rate, h, w, seed=1)
    hostile = _adversarial(clean, seed=2)
    n_events = sum(len(ev) for _, ev in clean)
    enc_clean, enc_hostile = _encode(clean, h, w), _encode(hostile, h, w)
    # whole messages the node drops: undecodable bytes and other sizes (not in the count)
    from stereospike_ros.events import encode_event_array

    for k in range(0, len(enc_hostile), 50):
        side = enc_hostile[k][0]
        enc_hostile.insert(k, (side, b"\x00\x01\x00\x00garbage"))
        tiny = clean[k][1][:3].copy()
        tiny["x"] = tiny["y"] = 0
        enc_hostile.insert(k, (side, encode_event_array(tiny, 2, 2, 0, "cam")))
    _ingest_cost(enc_clean[:200], h, w)  # warm caches
    runs = {"clean": [], "adversarial": []}
    counters = {}
    for _ in range(3):  # interleaved, best of three: the machine is shared
        for name, enc in (("clean", enc_clean), ("adversarial", enc_hostile)):
            cpu, counters[name] = _ingest_cost(enc, h, w)
            runs[name].append(cpu)
    clean_us = 1e6 * min(runs["clean"]) / n_events
    hostile_us = 1e6 * min(runs["adversarial"]) / n_events
    return {
        "events": n_events,
        "clean_us_per_event": clean_us,
        "adversarial_us_per_event": hostile_us,
        "ratio": hostile_us / clean_us,
        "counters": counters,
    }


# ---------------------------------------------------------------- large messages

LARGE_CONFIGS = (
    ("best effort, default transports", False, None),
    ("reliable, default transports", True, None),
    ("best effort, FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA", False, "LARGE_DATA"),
)


def _receiver(reliable: bool, seconds: float) -> None:
    """Counts the EventArrays on /flood/events for ``seconds`` (run in its own process)."""
    import json

    import rclpy
    from dvs_msgs.msg import EventArray

    from stereospike_ros.ros.common import PolledSubscription, event_qos

    rclpy.init()
    node = rclpy.create_node("stereospike_large_receiver")
    sub = PolledSubscription(node, EventArray, "/flood/events", event_qos(reliable, 100))
    received, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        received += len(sub.take_all())
        time.sleep(0.01)
    print(json.dumps({"received": received, "lost": sub.lost()}), flush=True)


def large_messages(args: argparse.Namespace) -> None:
    """Send 20 messages of each size per configuration to a receiver process; print counts."""
    import json

    import rclpy
    from dvs_msgs.msg import EventArray

    from stereospike_ros.events import EVENT_DTYPE, encode_event_array
    from stereospike_ros.ros.common import event_qos

    count = 20
    print(f"large messages: {count} EventArrays per size, one publisher and one subscriber process")
    for name, reliable, transports in LARGE_CONFIGS:
        env = dict(os.environ)
        env.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
        os.environ["ROS_DOMAIN_ID"] = env["ROS_DOMAIN_ID"]
        for key in ("FASTDDS_BUILTIN_TRANSPORTS",):
            env.pop(key, None)
            os.environ.pop(key, None)
        if transports:
            env["FASTDDS_BUILTIN_TRANSPORTS"] = os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = (
                transports
            )
        rclpy.init()
        node = rclpy.create_node("stereospike_large_sender")
        pub = node.create_publisher(EventArray, "/flood/events", event_qos(reliable, count))
        results = []
        for mb in (1, 4, 16):
            n = mb * 2**20 // 16
            events = np.zeros(n, dtype=EVENT_DTYPE)
            events["t"] = np.arange(n)
            buf = encode_event_array(events, 260, 346, n, "cam")
            code = f"from stereospike_ros.bench.flood import _receiver; _receiver({reliable}, 12.0)"
            receiver = subprocess.Popen(
                [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
            )
            deadline = time.monotonic() + 60
            while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            start = time.monotonic()
            for _ in range(count):
                pub.publish(buf)
            sent_s = time.monotonic() - start
            out, _ = receiver.communicate(timeout=90)
            got = json.loads(out.strip().splitlines()[-1])
            results.append(
                f"{mb} MB: {got['received']}/{count} received, {got['lost']} "
                f"reported lost (published in {sent_s:.1f} s)"
            )
        print(f"  {name}: " + "; ".join(results), flush=True)
        node.destroy_node()
        rclpy.shutdown()


# ---------------------------------------------------------------- 2. flood


class _CappedFeeder(_Feeder):
    """``benchmark node``'s feeder, but a publisher that falls behind skips time instead of
    sending ever larger messages (on a busy machine those grew to 16 MB each, a different
    test: see ``--large-messages``). Skipped events are counted, never sent."""

    skipped_events = 0

    def run(self, rate: float, seconds: float, message_ms: float, stop: threading.Event) -> float:
        start = time.time_ns()
        end = start + int(seconds * 1e9)
        last = start
        sent = 0
        period_ns = int(message_ms * 1e6)
        cap = max(1, int(rate * message_ms / 1000.0))
        while not stop.is_set():
            now = time.time_ns()
            if now >= end:
                break
            if now - last > 4 * period_ns:  # behind: skip to the last 4 messages' worth
                skipped = now - 4 * period_ns
                self.skipped_events += int(rate * (skipped - last) / 1e9)
                last = skipped
            n = int(rate * (now - last) / 1e9)
            if n > 0:
                k = min(n, 4 * cap)
                t_end = last + int(k / rate * 1e9)
                for side, pub in self.pubs.items():
                    events = self._events(k, last, t_end)
                    pub.publish(self.encode(events, self.height, self.width, t_end, side))
                    self.messages_sent += 1
                sent += k
                last = t_end
            time.sleep(max(0.0, period_ns / 1e9 - (time.time_ns() - now) / 1e9))
        self.events_sent += 2 * sent
        return sent / max((time.time_ns() - start) / 1e9, 1e-9)


def flood(args: argparse.Namespace) -> dict:
    h, w = args.size
    tmp = Path(tempfile.mkdtemp(prefix="stereospike_bench_flood_"))
    weights = {"tiny": lambda: str(_tiny_weights(tmp)), "default": lambda: "default"}.get(
        args.weights, lambda: args.weights
    )()
    params = {"weights": weights, "warm_up_size": f"{h}x{w}", "warn_period_s": 10.0}
    with session(params, args.threads, "stereospike_bench_flood_") as current:
        feeder = _CappedFeeder(current.node, "dvs_msgs/EventArray", h, w)
        listener = current.listener
        deadline = time.monotonic() + 180
        while any(p.get_subscription_count() == 0 for p in feeder.pubs.values()) or not (
            listener.diagnostics
        ):
            if current.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("depth_node did not start:\n" + current.log.read_text()[-2000:])
            time.sleep(0.1)
        current.sample_memory()
        rate = args.rate * args.factor
        print(
            f"flood: {w}x{h}, {rate / 1e6:g} M events/s per camera ({args.factor:g} x "
            f"{args.rate / 1e3:g}k) in {args.message_ms:g} ms EventArrays, best effort, "
            f"{args.duration:g} s; weights {weights}",
            flush=True,
        )
        t0 = time.monotonic()
        depth0 = listener.depth_received
        reached = feeder.run(rate, args.duration, args.message_ms, current.stop)
        elapsed = time.monotonic() - t0
        time.sleep(2.5)  # the last diagnostics
        with listener.lock:
            last = listener.diagnostics[-1][1]
            levels = sorted({m for _, _, level, m in listener.diagnostics if level})
        result = {
            "rate_reached": reached,
            "seconds": elapsed,
            "events_sent": feeder.events_sent,
            "events_skipped": 2 * feeder.skipped_events,
            "messages_sent": feeder.messages_sent,
            "depth_per_s": (listener.depth_received - depth0) / elapsed,
            "rss": [(t - t0, v) for t, v in current.rss if t >= t0],
            "diagnostics": last,
            "messages": levels,
            "alive": current.process.poll() is None,
        }
    summary = [line for line in current.log.read_text().splitlines() if "summary:" in line]
    result["summary"] = summary[-1] if summary else "(no summary line)"
    return result


def _print_flood(f: dict) -> None:
    d = f["diagnostics"]
    rss = f["rss"]
    timeline = ", ".join(f"{t:.0f}s {v:.0f}" for t, v in rss[:: max(1, len(rss) // 8)])
    peak = max(v for _, v in rss) if rss else float("nan")
    print(f"node RSS over time (MB): {timeline}; peak {peak:.0f} MB (target < 1536)")
    print(
        f"sent {f['events_sent']:,} events in {f['messages_sent']:,} messages "
        f"({f['rate_reached'] / 1e6:.2f} M ev/s per camera reached in {f['seconds']:.0f} s; "
        f"{f['events_skipped']:,} not sent: the publisher fell behind)"
    )
    for side in SIDES:
        print(
            f"  {side}: received {int(d.get(f'{side}_events_total', 0)):,} events in "
            f"{int(d.get(f'{side}_messages_total', 0)):,} messages; lost in transport "
            f"{d.get(f'{side}_messages_lost_transport')} messages; dropped events: memory "
            f"{d.get(f'windower_dropped_memory_{side}')}, out of bounds "
            f"{d.get(f'windower_dropped_out_of_bounds_{side}')}, outliers "
            f"{d.get(f'windower_dropped_outlier_{side}')}, discontinuity "
            f"{d.get(f'windower_dropped_discontinuity_{side}')}"
        )
    print(
        f"windows processed {d.get('windows_processed')}, skipped (node behind) "
        f"{d.get('windows_skipped')}, skipped (empty/incomplete) "
        f"{d.get('windower_windows_skipped')}; depth {f['depth_per_s']:.2f} images/s received "
        f"here; node alive {f['alive']}"
    )
    if f["messages"]:
        print("diagnostics said: " + " | ".join(f["messages"][:4]))
    print(f"node's shutdown line: {f['summary']}")


def run(args: argparse.Namespace) -> int:
    if args.large_messages:
        large_messages(args)
        return 0
    cost = ingest_cost(args)
    print(
        f"ingest cost ({cost['events']:,} events, {args.size[0]}x{args.size[1]}): clean "
        f"{cost['clean_us_per_event'] * 1e3:.1f} ns/event, adversarial "
        f"{cost['adversarial_us_per_event'] * 1e3:.1f} ns/event: ratio {cost['ratio']:.2f} "
        "(target <= 2)"
    )
    c = cost["counters"]["adversarial"]
    print(
        f"  adversarial run: windows {c['windows']}, resets {c['resets']}, dropped: outlier "
        f"{sum(c['dropped_outlier'].values()):,}, discontinuity "
        f"{sum(c['dropped_discontinuity'].values()):,}, stale {sum(c['dropped_stale'].values()):,}"
        f", messages {c['dropped_messages']}",
        flush=True,
    )
    if args.skip_flood:
        return 0
    result = flood(args)
    _print_flood(result)
    return 0 if result["alive"] else 1  # figures are for reading: only a dead node fails
