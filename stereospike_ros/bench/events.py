"""``python -m stereospike_ros benchmark events``: event ingestion throughput and memory.

Measures, on the same generated messages and in the same run: decode alone, and decode +
rectify + accumulate (bytes -> rectified (2, H, W) counts), for dvs_msgs/EventArray and EVT3
EventPacket messages of 1k .. 5M events, through the fastest exact path (the fused numba
kernel when numba is installed) and through the numpy path; the peak memory of one message
through the fastest path; and rclpy's own ``deserialize_message`` on the EventArray bytes.
rclpy costs ~6-13 us per event, so it is timed only on small messages and its per-event cost
is extrapolated to the large ones (said so in the output).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from stereospike_ros.events import kernels
from stereospike_ros.events.decode import (
    EventPacketDecoder,
    accumulate_event_array,
    decode_event_array,
)
from stereospike_ros.events.encode import encode_event_array, encode_event_packet
from stereospike_ros.events.histogram import event_histogram
from stereospike_ros.events.rectify import Rectifier
from stereospike_ros.events.types import EVENT_DTYPE, SIDES
from stereospike_ros.events.windowing import StereoWindower

HELP = "event decoding, rectification and histogram throughput vs rclpy"
H, W = 260, 346  # MVSEC DAVIS346
RCLPY_MAX_EVENTS = 10_000
NODE_MESSAGES = 4  # per camera, 50 ms each, in the node-path measurement
NODE_MAX_EVENTS = 1_000_000  # per message: 2 x 4 messages of this size are held in memory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        default="1000,10000,100000,1000000,5000000",
        help="events per message, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed runs, best kept")
    parser.add_argument("--no-rclpy", action="store_true", help="skip the rclpy reference")
    parser.add_argument(
        "--no-node", action="store_true", help="skip the node path (decode + rectify + windower)"
    )


def _events(n: int, seed: int = 0, start_ns: int = 1_600_000_000_000_000_000) -> np.ndarray:
    """``n`` random events over the 50 ms from ``start_ns``, time-sorted, whole microseconds."""
    rng = np.random.default_rng(seed)
    events = np.empty(n, dtype=EVENT_DTYPE)
    events["x"] = rng.integers(0, W, n)
    events["y"] = rng.integers(0, H, n)
    events["t"] = start_ns + np.sort(rng.integers(0, 50_000, n)) * 1000
    events["p"] = rng.integers(0, 2, n)
    return events


def _rectifier() -> Rectifier:
    """A DAVIS346-like camera with mild distortion and a small rectifying rotation."""
    K = np.array([[226.4, 0.0, 173.6], [0.0, 226.2, 133.7], [0.0, 0.0, 1.0]])
    D = np.array([-0.048, 0.012, -0.011, 0.003])
    theta = 0.01
    R = np.array(
        [[np.cos(theta), 0.0, np.sin(theta)], [0.0, 1.0, 0.0], [-np.sin(theta), 0.0, np.cos(theta)]]
    )
    P = np.array([[199.6, 0.0, 177.4, 0.0], [0.0, 199.6, 126.8, 0.0], [0.0, 0.0, 1.0, 0.0]])
    return Rectifier.from_camera_info(H, W, K, D, R, P, "equidistant")


def _best(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Fastest wall time and fastest CPU time of this thread, over ``repeat`` runs.

    CPU time leaves out the time the thread waited for a core: on a shared machine it is the
    one-core figure, while wall time also measures the neighbours' load.
    """
    fn()  # warm-up: first-touch page faults, caches
    wall = cpu = float("inf")
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.thread_time()
        fn()
        cpu = min(cpu, time.thread_time() - start_cpu)
        wall = min(wall, time.perf_counter() - start)
    return wall, cpu


def _peak_bytes(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _rclpy_us_per_event(buffers: dict[int, bytes]) -> tuple[float | None, str]:
    try:
        from stereospike_ros.bench.cdr_reference import time_rclpy_deserialize
    except ImportError as err:
        return None, f"rclpy reference unavailable ({err})"
    sizes = [n for n in sorted(buffers) if n <= RCLPY_MAX_EVENTS]
    if not sizes:
        return None, f"rclpy reference unavailable (no size <= {RCLPY_MAX_EVENTS})"
    n = sizes[-1]
    cpu = wall = float("inf")
    try:
        for _ in range(2):  # CPU time of this thread, as for ours
            start = time.thread_time()
            seconds, count = time_rclpy_deserialize(buffers[n], repeat=1)
            cpu = min(cpu, time.thread_time() - start)
            wall = min(wall, seconds)
    except ImportError as err:
        return None, f"rclpy reference unavailable ({err})"
    if count != n:
        return None, f"rclpy decoded {count} events from a {n}-event message"
    per_event = cpu / n * 1e6
    note = (
        f"rclpy deserialize_message: {per_event:.2f} us/event CPU ({wall / n * 1e6:.2f} wall), "
        f"measured at {n} events"
    )
    return per_event, note + f"; extrapolated linearly to the sizes above {n}"


def _node_path(n: int, repeat: int) -> tuple[float, float, int]:
    """What the depth node does per camera: decode, rectify in place, pair into 50 ms windows.

    Each camera sends ``NODE_MESSAGES`` EventArrays of ``n`` events, one per 50 ms, pushed
    alternately; returns the best (wall, CPU) seconds for all of them and the windows emitted.
    """
    base = 1_600_000_000_000_000_000
    step = 50_000_000
    messages = [
        (side, encode_event_array(_events(n, 100 * j + k, base + k * step), H, W, 0, side))
        for k in range(NODE_MESSAGES)
        for j, side in enumerate(SIDES)  # seeds k (left) and 100 + k (right)
    ]
    rectifiers = {side: _rectifier() for side in SIDES}
    windows = 0

    def node() -> None:
        nonlocal windows
        windower = StereoWindower(H, W, window_ns=step)
        emitted = 0
        for side, buf in messages:
            events = decode_event_array(buf).events
            events = kernels.rectify_events(rectifiers[side], events, inplace=True)
            emitted += len(windower.push(side, events))
        windows = emitted

    wall, cpu = _best(node, repeat)
    return wall, cpu, windows


def _full_paths(rect: Rectifier) -> dict[str, Callable[[bytes], object]]:
    """Message name -> decode + rectify + accumulate of one message into a fresh histogram."""

    def event_array(buf: bytes) -> np.ndarray:
        hist = np.zeros((2, H, W), dtype=np.uint16)
        accumulate_event_array(buf, hist, rect)  # fused kernel, or decode + rect + accumulate
        return hist

    def evt3(buf: bytes) -> np.ndarray:
        events = EventPacketDecoder().decode(buf).events
        events = kernels.rectify_events(rect, events, inplace=True)  # numpy Rectifier without
        return event_histogram(events, H, W)[0]

    return {"EventArray": event_array, "EVT3": evt3}


def run(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rect = _rectifier()
    compile_s = kernels.warm_up()
    backend = kernels.kernel_backend()
    compiled = kernels.HAVE_NUMBA and backend.startswith("numba")
    print(f"events benchmark: {H}x{W}, one core, best of {args.repeat} runs")
    print(
        f"kernels: {backend}"
        + (f" (warm_up {compile_s:.2f} s: compile, or load from the cache)" if compiled else "")
    )
    print("path: decode = bytes -> EVENT_DTYPE; full = decode + rectify (LUT) + (2,H,W) histogram")
    if compiled:
        print(
            "EventArray full = one fused numba pass (decode_event_array's kernel + LUT + count); "
            "EVT3: numba decode, rectify and histogram in three passes; 'numpy' column: the "
            "numpy path"
        )
    decoders: dict[str, Callable[[bytes], object]] = {
        "EventArray": decode_event_array,
        "EVT3": lambda b: EventPacketDecoder().decode(b),
    }
    full_paths = _full_paths(rect)
    arrays: dict[int, bytes] = {}
    rows = []
    for n in sizes:
        events = _events(n)
        arr = encode_event_array(events, H, W, 0, "davis_left")
        pkt = encode_event_packet(events, H, W, 0, "davis_left", "evt3")
        arrays[n] = arr
        for name, buf in (("EventArray", arr), ("EVT3", pkt)):
            decode, full = decoders[name], full_paths[name]
            if not np.array_equal(decode(buf).events, events):
                print(f"ERROR: {name} round trip of {n} events differs")
                return 1
            t_dec = _best(lambda buf=buf, decode=decode: decode(buf), args.repeat)
            t_full = _best(lambda buf=buf, full=full: full(buf), args.repeat)
            peak = _peak_bytes(lambda buf=buf, full=full: full(buf))
            numpy = None
            if compiled:
                hist = full(buf)
                with kernels.numpy_only():
                    if not np.array_equal(full(buf), hist):
                        print(f"ERROR: {name} numba and numpy histograms of {n} events differ")
                        return 1
                    numpy = (
                        _best(lambda buf=buf, decode=decode: decode(buf), args.repeat)[1],
                        _best(lambda buf=buf, full=full: full(buf), args.repeat)[1],
                    )
            rows.append((name, n, len(buf), t_dec, t_full, peak, numpy))

    ref, note = (None, "rclpy reference skipped") if args.no_rclpy else _rclpy_us_per_event(arrays)
    print("Mev/s from CPU time of this thread (one core); wall-clock figures in brackets")
    header = (
        f"{'message':<10} {'events':>9} {'MB in':>7} {'decode Mev/s':>17} {'full Mev/s':>15} "
        f"{'full ms':>8} {'peak MB':>8} {'peak/in':>8} {'numpy dec/full':>15} "
        f"{'x rclpy (decode/full)':>22}"
    )
    print(header)
    for name, n, size, (w_dec, t_dec), (w_full, t_full), peak, numpy in rows:
        ratio = "n/a"
        if ref is not None:
            ours_dec, ours_full = t_dec / n * 1e6, t_full / n * 1e6
            ratio = f"{ref / ours_dec:7.0f} / {ref / ours_full:5.0f}"
        dec = f"{n / t_dec / 1e6:.1f} [{n / w_dec / 1e6:.1f}]"
        full = f"{n / t_full / 1e6:.1f} [{n / w_full / 1e6:.1f}]"
        np_col = "-" if numpy is None else f"{n / numpy[0] / 1e6:.1f} / {n / numpy[1] / 1e6:.1f}"
        print(
            f"{name:<10} {n:>9} {size / 1e6:>7.2f} {dec:>17} {full:>15} {t_full * 1e3:>8.2f} "
            f"{peak / 1e6:>8.1f} {peak / size:>8.2f} {np_col:>15} {ratio:>22}"
        )
    print(note)
    if ref is not None:
        print("x rclpy for EVT3 compares with rclpy decoding the same events as a dvs EventArray")
    node_sizes = [n for n in sizes if n <= NODE_MAX_EVENTS]
    if not args.no_node and node_sizes:
        print(
            f"\nnode path: {NODE_MESSAGES} EventArrays per camera, one per 50 ms, each decoded, "
            f"rectified in place and pushed into a StereoWindower (50 ms windows); {backend}"
        )
        print(f"{'events/msg':>10} {'windows':>8} {'Mev/s':>15} {'ms per message':>15}")
        for n in node_sizes:
            wall, cpu, windows = _node_path(n, max(1, min(args.repeat, 3)))
            total = 2 * NODE_MESSAGES * n
            rate = f"{total / cpu / 1e6:.1f} [{total / wall / 1e6:.1f}]"
            per_msg = cpu / (2 * NODE_MESSAGES) * 1e3
            print(f"{n:>10} {windows:>8} {rate:>15} {per_msg:>15.2f}")
    return 0
