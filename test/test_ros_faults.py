"""Fault injection through real DDS: the depth node, as its own process, keeps publishing depth.

A talker in this process publishes raw CDR bytes onto the event topics (``publish(bytes)``):
good stereo input, then a fault, then good input again. Each test asserts that depth comes
back for the good input within a bound, that ``/diagnostics`` kept arriving meanwhile, and
that a counter or the diagnostic message names the cause. One node process serves the
EventArray faults (the faults are independent: each ends with the node producing depth);
geometry learning, EventPacket decoding and Ctrl-C need nodes of their own.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from ros_support import start_node, stop, tiny_checkpoint

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from stereospike_ros.events import encode_event_array, encode_event_packet  # noqa: E402
from stereospike_ros.events.types import EVENT_DTYPE, SIDES  # noqa: E402
from stereospike_ros.ros import convert  # noqa: E402

H, W = 32, 48
MS = 1_000_000
DEPTH_BOUND_S = 30.0  # generous: a loaded 2-core machine; a hang never gets there
DIAG_GAP_S = 4.0  # /diagnostics comes every second; a held lock or a stuck thread shows here


def events(t0: int, t1: int, n: int, height: int = H, width: int = W, seed: int = 0):
    rng = np.random.default_rng(seed + t0 % 997)
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(t0, t1, n)) // 1000 * 1000  # whole us (EVT3 keeps them)
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = rng.integers(0, height, n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


class Rig:
    """The talker: publishes raw bytes, hears depth and diagnostics, keeps a sensor clock."""

    def __init__(
        self,
        context: object,
        process: subprocess.Popen,
        packet: bool = False,
        name: str = "depth_node",
        cameras: str = "/davis",
    ) -> None:
        self.process = process
        self.packet = packet
        self.name = name
        self.node = rclpy.create_node("fault_talker", context=context)
        from dvs_msgs.msg import EventArray
        from event_camera_msgs.msg import EventPacket

        msg_type = EventPacket if packet else EventArray
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {
            side: self.node.create_publisher(msg_type, f"{cameras}/{side}/events", qos)
            for side in SIDES
        }
        self.depth_stamps: list[int] = []
        self.diag_times: list[float] = []
        self.status: DiagnosticStatus | None = None
        self.node.create_subscription(
            Image, f"/{name}/depth", lambda m: self.depth_stamps.append(_stamp(m)), 50
        )
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.t_ns = 1_000_000 * MS  # sensor time: 1000 s
        self.seq = {side: 0 for side in SIDES}

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == f"{self.name}: stereo depth":
                self.status = status
                self.diag_times.append(time.monotonic())

    def spin(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.01)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline and self.process.poll() is None:
            if (
                all(p.get_subscription_count() for p in self.pubs.values())
                and self.node.count_publishers(f"/{self.name}/depth")
                and self.status is not None
            ):
                return
            self.executor.spin_once(timeout_sec=0.1)
        raise AssertionError(f"the depth node did not come up: {stop(self.process)[1]}")

    def message(self, side: str, ev: np.ndarray, height: int = H, width: int = W) -> bytes:
        stamp = int(ev["t"][-1]) if len(ev) else self.t_ns
        if self.packet:
            self.seq[side] += 1
            return encode_event_packet(ev, height, width, stamp, "cam", seq=self.seq[side])
        return encode_event_array(ev, height, width, stamp, "cam")

    def publish(self, side: str, data: bytes) -> None:
        self.pubs[side].publish(data)

    def good(self, ms: int = 20, offset: dict[str, int] | None = None) -> None:
        """``ms`` of good stereo input in 5 ms messages per camera; the clock moves on."""
        for _ in range(ms // 5):
            t0, t1 = self.t_ns, self.t_ns + 5 * MS
            for side in SIDES:
                shift = (offset or {}).get(side, 0)
                self.publish(side, self.message(side, events(t0 + shift, t1 + shift, 150)))
            self.t_ns = t1
        self.executor.spin_once(timeout_sec=0.005)

    def depth_resumes(self, bound_s: float = DEPTH_BOUND_S, **good: object) -> float:
        """Feed good input until depth for it arrives; seconds it took (asserts the bound)."""
        start, since = time.monotonic(), self.t_ns
        while time.monotonic() - start < bound_s:
            assert self.process.poll() is None, stop(self.process)[1]
            self.good(**good)
            self.spin(0.02)
            if any(stamp > since for stamp in self.depth_stamps):
                return time.monotonic() - start
        raise AssertionError(
            f"no depth within {bound_s} s of good input; last diagnostics: "
            f"{self.status and self.status.message}"
        )

    def values(self) -> dict[str, str]:
        """The newest diagnostics, after waiting for one more to arrive."""
        before = len(self.diag_times)
        deadline = time.monotonic() + 5.0
        while len(self.diag_times) == before and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
        assert len(self.diag_times) > before, "no /diagnostics for 5 s"
        return {kv.key: kv.value for kv in self.status.values}

    def diagnostics_kept_coming(self, since: float) -> None:
        times = [since] + [t for t in self.diag_times if t >= since] + [time.monotonic()]
        gaps = np.diff(times)
        assert gaps.max() < DIAG_GAP_S, f"/diagnostics stopped for {gaps.max():.1f} s"

    def close(self) -> tuple[int, str]:
        code, out = stop(self.process)
        self.executor.shutdown()
        self.node.destroy_node()
        return code, out


@contextlib.contextmanager
def talking_to(process: subprocess.Popen, **kwargs: object) -> Iterator[Rig]:
    """A Rig in a fresh rclpy context, ready (the node heard, diagnostics arriving)."""
    context = rclpy.Context()
    rclpy.init(context=context)
    rig = Rig(context, process, **kwargs)
    try:
        rig.wait_ready()
        yield rig
    finally:
        rig.executor.shutdown()
        rig.node.destroy_node()
        rclpy.shutdown(context=context)


def _stamp(msg: Image) -> int:
    return convert.time_to_ns(msg.header.stamp)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory):
    return tiny_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.safetensors")


@pytest.fixture(scope="module")
def node_process(checkpoint):
    process = start_node(
        "depth_node",
        {"weights": checkpoint, "threads": 1, "warm_up_size": f"{H}x{W}", "frame_id": "cam"},
        name="depth_node",
    )
    yield process
    code, out = stop(process)
    assert code == 0, out
    # the one-line summary at shutdown names what was dropped, by reason
    summary = [line for line in out.splitlines() if "summary: windows processed" in line]
    assert summary, out[-3000:]
    assert "events dropped" in summary[0], summary[0]


@pytest.fixture
def rig(node_process):
    with talking_to(node_process) as rig:
        rig.depth_resumes()
        yield rig


def test_an_event_far_from_its_message_is_dropped_as_an_outlier(rig):
    # 1. One event per camera much older (t = 0) or much newer (+1 day) than the rest of its
    # message: the windows would otherwise step through ~3.6e10 windows of 50 ms.
    start = time.monotonic()
    before = rig.values()
    for far in (0, rig.t_ns + 86_400 * 10**9):
        for side in SIDES:
            ev = events(rig.t_ns, rig.t_ns + 5 * MS, 150)
            ev["t"][75] = far
            rig.publish(side, rig.message(side, ev))
        rig.t_ns += 5 * MS
        rig.depth_resumes()
    rig.diagnostics_kept_coming(start)
    after = rig.values()
    for side in SIDES:
        dropped = int(after[f"windower_dropped_outlier_{side}"])
        assert dropped - int(before[f"windower_dropped_outlier_{side}"]) >= 2


def test_an_unsynchronised_burst_at_time_zero_resets_once_and_depth_resumes(rig):
    # 1b. A driver's first messages at t = 0 (not one event: whole messages), then its clock.
    start = time.monotonic()
    before = rig.values()
    for k in range(4):
        for side in SIDES:
            rig.publish(side, rig.message(side, events(k * 5 * MS, (k + 1) * 5 * MS, 150)))
    rig.depth_resumes()
    rig.diagnostics_kept_coming(start)
    assert int(rig.values()["windower_resets"]) > int(before["windower_resets"])


def test_a_message_of_another_size_is_dropped_and_counted(rig):
    # 2. Other sizes mid-stream (tiny, empty, larger) never replace the windows' size.
    before = rig.values()
    for height, width in ((2, 2), (0, 0), (260, 346)):
        ev = events(rig.t_ns, rig.t_ns + 5 * MS, 10, max(height, 1), max(width, 1))
        rig.publish("left", rig.message("left", ev, height, width))
    rig.depth_resumes()
    after = rig.values()
    assert int(after["left_geometry_errors"]) - int(before["left_geometry_errors"]) == 3
    assert after["geometry"] == f"{W}x{H}"


def test_garbage_with_many_backward_jumps_costs_linear_time(rig):
    # 4. Random times (a backward jump every other event): the windows must not be re-cut at
    # each jump (quadratic), and diagnostics must not stall behind the batch.
    start = time.monotonic()
    before = rig.values()
    rng = np.random.default_rng(4)
    for _ in range(10):  # messages of 320 kB: large ones may be lost on the way (test 6)
        for side in SIDES:
            ev = events(0, 1, 20_000)
            ev["t"] = rng.integers(0, 2 * rig.t_ns, len(ev))
            rig.publish(side, rig.message(side, ev))
    rig.depth_resumes()
    rig.diagnostics_kept_coming(start)
    after = rig.values()
    for side in SIDES:
        gone = sum(
            int(after[f"windower_dropped_{r}_{side}"]) - int(before[f"windower_dropped_{r}_{side}"])
            for r in ("outlier", "discontinuity")
        )
        assert gone > 40_000, (side, gone)  # of 200k: most arrive (large ones may not)


def test_undecodable_bytes_are_counted_and_depth_continues(rig):
    # Garbled CDR: truncated, wrong encapsulation, a sequence longer than the message.
    before = rig.values()
    good = rig.message("left", events(rig.t_ns, rig.t_ns + 5 * MS, 150))
    for bad in (good[: len(good) // 2], b"\x07\x07" + good[2:], good[:40] + b"\xff" * 8):
        rig.publish("left", bad)
    rig.depth_resumes()
    after = rig.values()
    assert int(after["left_decode_errors"]) - int(before["left_decode_errors"]) == 3


def test_camera_clocks_apart_give_an_error_diagnostic_naming_the_skew(rig):
    # 5. The right camera's clock 10 s ahead of the left one.
    start = time.monotonic()
    status = None
    deadline = time.monotonic() + DEPTH_BOUND_S
    while time.monotonic() < deadline:
        rig.good(20, offset={"right": 10_000 * MS})
        rig.spin(0.02)
        status = rig.status
        if status is not None and status.level == DiagnosticStatus.ERROR:
            break
    assert status is not None and status.level == DiagnosticStatus.ERROR, status
    found = re.search(r"camera clocks disagree: right is ([0-9.]+) s ahead", status.message)
    assert found and float(found[1]) == pytest.approx(10.0, abs=0.1), status.message
    rig.diagnostics_kept_coming(start)
    rig.depth_resumes()  # clocks agree again: depth comes back ...
    deadline = time.monotonic() + 10.0
    while rig.status.level == DiagnosticStatus.ERROR and time.monotonic() < deadline:
        rig.good()
        rig.spin(0.05)
    assert rig.status.level != DiagnosticStatus.ERROR, rig.status.message  # ... and so does OK


def test_best_effort_messages_too_large_for_the_transport_are_counted_lost(node_process):
    # 6. Large best-effort messages between processes: Fast DDS drops their fragments; the
    # node's message-lost status counts them.
    with talking_to(node_process) as rig:
        before = int(rig.values()["left_messages_lost_transport"])
        from dvs_msgs.msg import EventArray

        flood = rig.node.create_publisher(
            EventArray,
            "/davis/left/events",
            QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT),
        )
        rig.spin(1.0)  # discovery of the new writer
        big = rig.message("left", events(rig.t_ns, rig.t_ns + 5 * MS, 250_000))  # 4 MB
        for _ in range(60):
            flood.publish(big)
        rig.spin(2.0)
        lost = int(rig.values()["left_messages_lost_transport"]) - before
        assert lost > 0, rig.status.message
        rig.depth_resumes()


def test_a_tiny_first_message_does_not_fix_the_sensor_size(checkpoint):
    # 2b. A fresh node whose first messages are 2x2 and 0x0: it learns 48x32 from the stream.
    process = start_node(
        "depth_node",
        {"weights": checkpoint, "threads": 1, "warm_up_size": f"{H}x{W}", **_cameras("/fresh")},
        name="fresh_node",
    )
    try:
        with talking_to(process, name="fresh_node", cameras="/fresh") as rig:
            rig.spin(0.5)
            for side in SIDES:
                tiny = events(rig.t_ns, rig.t_ns + MS, 3, 2, 2)
                rig.publish(side, rig.message(side, tiny, 2, 2))
                rig.publish(side, rig.message(side, events(0, 0, 0), 0, 0))
            rig.depth_resumes()
            values = rig.values()
            assert values["geometry"] == f"{W}x{H}"
            assert int(values["left_geometry_errors"]) >= 1
    finally:
        code, out = stop(process)
    assert code == 0, out


def test_event_packets_with_rollover_lookalikes_garbage_and_seq_gaps(tmp_path):
    # 3. EVT3: a short packet whose TIME_HIGH words look like a 24-bit rollover, random words,
    # seq gaps. Weights trained on 48x32 fix the size; another size gets an ERROR diagnostic.
    weights = tiny_checkpoint(tmp_path / "sized.safetensors")
    _set_input_size(weights, (H, W))
    process = start_node(
        "depth_node",
        {
            "weights": weights,
            "threads": 1,
            "warm_up_size": f"{H}x{W}",
            "event_type": "event_camera_msgs/EventPacket",
            **_cameras("/packets"),
        },
        name="packet_node",
    )
    try:
        with talking_to(process, packet=True, name="packet_node", cameras="/packets") as rig:
            rig.depth_resumes()
            start = time.monotonic()
            # TIME_HIGH 0xFFF then 0x000: looks like a rollover (+16.8 s) if taken on faith
            lookalike = np.array([0x8FFF, 0x6000, 0x8000, 0x6001, 0x2005], dtype="<u2").tobytes()
            rig.publish("left", _packet(lookalike, rig.t_ns, seq=rig.seq["left"] + 1))
            rig.seq["left"] += 1
            rng = np.random.default_rng(3)
            noise = rng.integers(0, 2**16, 50_000, dtype=np.uint16)
            noise = noise[np.isin(noise >> 12, [0x1, 0xB, 0xC, 0xD], invert=True)]  # defined types
            rig.publish("right", _packet(noise.tobytes(), rig.t_ns, seq=rig.seq["right"] + 1))
            rig.seq["right"] += 1
            rig.seq["left"] += 7  # seven packets the transport "lost"
            rig.depth_resumes()
            rig.diagnostics_kept_coming(start)
            values = rig.values()
            assert int(values["left_time_discontinuities"]) >= 1
            assert int(values["right_time_discontinuities"]) >= 1
            assert int(values["left_messages_lost_seq"]) == 7
            assert rig.status.level != DiagnosticStatus.ERROR, rig.status.message
            # a stream of another size than the weights': dropped, and an ERROR says why
            deadline = time.monotonic() + DEPTH_BOUND_S
            while rig.status.level != DiagnosticStatus.ERROR and time.monotonic() < deadline:
                for side in SIDES:
                    ev = events(rig.t_ns, rig.t_ns + 5 * MS, 50, 24, 40)
                    rig.publish(side, rig.message(side, ev, 24, 40))
                rig.t_ns += 5 * MS
                rig.spin(0.05)
            assert "40x24" in rig.status.message, rig.status.message
    finally:
        code, out = stop(process)
    assert code == 0, out


def _cameras(prefix: str) -> dict[str, str]:
    """Event topics of a node of its own, apart from the shared node's."""
    return {f"{side}_events_topic": f"{prefix}/{side}/events" for side in SIDES}


def _packet(payload: bytes, time_base: int, seq: int) -> bytes:
    """An EventPacket (48x32, evt3) carrying ``payload`` as it is."""
    head = encode_event_packet(
        events(0, 0, 0), H, W, time_base, "cam", seq=seq, time_base=time_base
    )
    # an empty packet ends with a zero-length events sequence: replace it by the payload
    return head[:-4] + len(payload).to_bytes(4, "little") + payload


def _set_input_size(path, size: tuple[int, int]) -> None:
    from stereospike_ros.model import load_checkpoint, save_checkpoint

    model, _ = load_checkpoint(path)
    save_checkpoint(path, model, window_ms=50.0, input_size=size)


#: node log lines that mark each phase; "import" signals before any line
PHASES = {"import": None, "warm-up": "event kernels:", "running": "exact path;"}
#: the same phases with SIGINT ignored by the parent (a background job of a script, `cmd &`)
IGNORED = {"import, SIGINT ignored": "import", "running, SIGINT ignored": "running"}
CTRL_C_BOUND_S = 3.0  # 2 s is the target (1.4 s measured on a loaded 2-core machine)


@pytest.mark.parametrize("case", [*PHASES, *IGNORED])
def test_ctrl_c_ends_the_node_quickly_in_every_phase(checkpoint, case):
    # Importing; loading weights and warming the network up (a large warm-up size keeps it
    # busy for seconds); running. Before, a warm-up ran to its end and shutdown waited 10 s,
    # and a node started with SIGINT ignored slept through a Ctrl-C sent while it imported.
    phase = IGNORED.get(case, case)
    process = start_node(
        "depth_node",
        {"weights": checkpoint, "threads": 1, "warm_up_size": "1040x1384", **_cameras("/c")},
        name="interrupted_node",
        sigint_ignored=case in IGNORED,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    marker = PHASES[phase]
    deadline = time.monotonic() + (0.5 if marker is None else 120.0)
    while time.monotonic() < deadline and process.poll() is None:
        if marker is not None and any(marker in line for line in lines):
            break
        time.sleep(0.02)
    assert process.poll() is None, "".join(lines)
    assert marker is None or any(marker in line for line in lines), "".join(lines)
    process.send_signal(signal.SIGINT)
    start = time.monotonic()
    try:
        process.wait(timeout=20.0)
    except subprocess.TimeoutExpired:
        process.kill()
    took = time.monotonic() - start
    reader.join(timeout=5.0)
    assert took < CTRL_C_BOUND_S, (took, "".join(lines)[-2000:])
    if phase != "import":
        assert process.returncode == 0, "".join(lines)[-2000:]
    if phase == "running":
        assert any("summary: windows processed" in line for line in lines)


def test_a_stream_size_other_than_the_weights_is_an_error_unless_allowed(tmp_path, ros_context):
    # In this process: the node's own diagnostics, without waiting for a stream.
    from rclpy.parameter import Parameter

    from stereospike_ros.ros.depth_node import DepthNode

    weights = tiny_checkpoint(tmp_path / "sized.safetensors")
    _set_input_size(weights, (H, W))
    for allow in (False, True):
        overrides = [
            Parameter("weights", value=str(weights)),
            Parameter("threads", value=1),
            Parameter("warm_up_size", value="24x40"),
            Parameter("sensor_size", value="24x40"),
            Parameter("allow_size_mismatch", value=allow),
        ]  # own name and topics: a destroyed node lingers in this process's DDS graph a while
        overrides += [Parameter(k, value=v) for k, v in _cameras("/sized").items()]
        node = DepthNode("sized_node", context=ros_context, parameter_overrides=overrides)
        try:
            status = node.get_diagnostics()
        finally:
            node.shutdown()
            node.destroy_node()
        text = (
            f"the event stream is 40x24 but the weights sized.safetensors were trained on {W}x{H}"
        )
        if allow:
            assert text not in status.message and status.level != DiagnosticStatus.ERROR
        else:
            assert status.level == DiagnosticStatus.ERROR and text in status.message
