"""The nodes over real DDS: player -> depth node -> evaluator, QoS, silence, garbage, weights.

The pipeline test runs the three nodes as their own processes (as ``ros2 launch`` would) and
checks what a user sees on the topics against an offline recomputation from the recording.
The other tests run the depth node in this process, so its counters can be read directly.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from conftest import spin_until
from ros_support import small_recording, start_node, stop, tiny_checkpoint

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from stereospike_ros.events import encode_event_array, event_histogram  # noqa: E402
from stereospike_ros.events.types import EVENT_DTYPE  # noqa: E402
from stereospike_ros.model import MetricAccumulator  # noqa: E402
from stereospike_ros.ros import convert  # noqa: E402
from stereospike_ros.ros.depth_evaluator import score_pair  # noqa: E402
from stereospike_ros.ros.depth_node import DepthNode, main  # noqa: E402
from stereospike_ros.ros.pipeline import load_estimator  # noqa: E402

GT_TOPIC = "/davis/left/depth_image_rect"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory):
    return tiny_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.safetensors")


def _offline_depth(recording, estimator, t_end_ns: int, window_ns: int = 50_000_000):
    """What the node must publish for the window ending at ``t_end_ns``, computed directly."""
    h, w = recording.height, recording.width
    t0 = t_end_ns - window_ns
    left, _ = event_histogram(recording.left_events, h, w, t0, t_end_ns)
    right, _ = event_histogram(recording.right_events, h, w, t0, t_end_ns)
    return estimator(left, right).depth


def test_player_node_evaluator_publish_depth_whose_mde_matches_an_offline_computation(
    tmp_path, checkpoint, ros_context
):
    recording, data = small_recording(tmp_path)
    summary_path = tmp_path / "evaluation.json"
    node = rclpy.create_node("pipeline_listener", context=ros_context)
    received: list[Image] = []
    node.create_subscription(Image, "/depth_node/depth", received.append, 50)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    evaluator = start_node(
        "depth_evaluator",
        {"output": summary_path, "log_every": 0, "wait_for_depth_publisher": True},
        name="depth_evaluator",
    )
    depth_node = start_node(
        "depth_node",
        {
            "weights": checkpoint,
            "trigger_topic": GT_TOPIC,
            "reliable": True,
            "frame_id": "test_optical",
            "threads": 1,
            # the recording's size: prepared before the 1.2 s of playback starts, not during it
            "warm_up_size": "48x64",
        },
        name="depth_node",
    )
    player = None
    try:
        # Play only once the node is up and its depth publisher is known here: a volatile
        # topic does not repeat what was published before a subscriber matched.
        assert spin_until(
            executor,
            lambda: (
                (
                    node.count_publishers("/depth_node/depth") == 1
                    and node.count_subscribers("/davis/right/events") == 1
                )
                or depth_node.poll() is not None
            ),
            timeout=60.0,
        )
        assert depth_node.poll() is None, stop(depth_node)[1]
        spin_until(executor, lambda: False, timeout=0.5)
        player = start_node(
            "event_player",
            {
                "recording": data,
                "rate": 0.5,
                "wait_for_subscribers": 1,
                "wait_for_depth_subscribers": 2,
                "wait_timeout_s": 60.0,
                "start_delay_s": 0.5,
            },
        )
        played = spin_until(executor, lambda: player.poll() is not None, timeout=60.0)
        assert played, "the player did not finish within 60 s"
        frames = len(recording.depth)
        spin_until(executor, lambda: len(received) >= frames - 1, timeout=10.0)
        time.sleep(0.5)
    finally:
        player_code, player_out = stop(player) if player else (None, "not started")
        node_code, node_out = stop(depth_node)
        eval_code, eval_out = stop(evaluator)
        executor.shutdown()
        node.destroy_node()
    assert player_code == 0, player_out
    assert node_code == 0, node_out
    assert eval_code == 0, eval_out

    gt_by_stamp = {int(t): d for t, d in zip(recording.depth_ts_ns, recording.depth, strict=True)}
    # Most frames, not all: on a loaded machine the node may skip (and count) a window, and a
    # reader can match a moment after the player starts. Every frame that arrives is checked.
    assert len(received) >= len(gt_by_stamp) // 2, (len(received), node_out, eval_out)
    for msg in received:
        assert msg.encoding == "32FC1"
        assert (msg.height, msg.width, msg.step) == (48, 64, 64 * 4)
        assert msg.header.frame_id == "test_optical"
        assert convert.time_to_ns(msg.header.stamp) in gt_by_stamp  # windows end at GT stamps

    summary = json.loads(summary_path.read_text())
    accumulator = MetricAccumulator()
    estimator, _ = load_estimator(checkpoint, "cpu", firing_rate=False)
    for msg in received:
        stamp = convert.time_to_ns(msg.header.stamp)
        published = convert.depth_from_image(msg)
        expected = _offline_depth(recording, estimator, stamp)
        np.testing.assert_allclose(published, expected, rtol=1e-5, atol=1e-5, equal_nan=True)
        pred, gt, _ = score_pair(expected, gt_by_stamp[stamp])
        accumulator.update(torch.from_numpy(pred), torch.from_numpy(gt))
    assert summary["pairs"] == accumulator.frames == len(received)
    assert summary["metrics"]["mde_cm"] == pytest.approx(accumulator.summary()["mde_cm"], rel=1e-5)
    assert "MDE" in eval_out


def _events(t0_ns: int, t1_ns: int, n: int, height: int = 32, width: int = 48) -> np.ndarray:
    rng = np.random.default_rng(t0_ns % 1000)
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(t0_ns, t1_ns, n))
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = rng.integers(0, height, n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


def _depth_node(context, checkpoint, **params: object) -> DepthNode:
    overrides = [Parameter("weights", value=str(checkpoint)), Parameter("threads", value=1)]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    return DepthNode(context=context, parameter_overrides=overrides)


def _feed(pubs: dict, t_start_ms: int, t_end_ms: int, sides=("left", "right")) -> None:
    """One 5 ms EventArray per camera per step, stamped in sensor time (zero = 1e9 ns)."""
    for t in range(t_start_ms, t_end_ms, 5):
        t0, t1 = 10**9 + t * 10**6, 10**9 + (t + 5) * 10**6
        for side in sides:
            pubs[side].publish(encode_event_array(_events(t0, t1, 200), 32, 48, t1, "cam"))
        time.sleep(0.002)


def _graph(context, node, talker) -> tuple[SingleThreadedExecutor, list[Image]]:
    """One executor for the node and the talker, and the depth images the talker receives."""
    depth: list[Image] = []
    talker.create_subscription(Image, "/depth_node/depth", depth.append, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(talker)
    return executor, depth


def _wait_matched(executor, node, pubs: dict) -> None:
    """Until the node hears both event publishers and someone hears its depth."""
    assert spin_until(
        executor,
        lambda: (
            all(p.get_subscription_count() for p in pubs.values())
            and node.pub_depth.get_subscription_count()
        ),
        timeout=10.0,
    )


def test_best_effort_node_hears_reliable_and_best_effort_publishers(ros_context, checkpoint):
    node = _depth_node(ros_context, checkpoint)
    assert not node.p["reliable"]
    talker = rclpy.create_node("talker", context=ros_context)
    from dvs_msgs.msg import EventArray

    pubs = {
        "left": talker.create_publisher(
            EventArray,
            "/davis/left/events",
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE),
        ),
        "right": talker.create_publisher(
            EventArray,
            "/davis/right/events",
            QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT),
        ),
    }
    executor, depth = _graph(ros_context, node, talker)
    try:
        _wait_matched(executor, node, pubs)
        # Keep the cameras talking until depth comes back: a best-effort reader may match a
        # moment after the writer does, and whatever is published before that is lost.
        step, deadline = 0, time.monotonic() + 30.0
        while len(depth) < 2 and time.monotonic() < deadline:
            _feed(pubs, step, step + 20)
            executor.spin_once(timeout_sec=0.01)
            step += 20
        assert spin_until(executor, lambda: len(depth) >= 2, timeout=10.0)
    finally:
        node.shutdown()
        executor.shutdown()
    assert node.ingest.counters["left"].messages > 0
    assert node.ingest.counters["right"].messages > 0
    status = node.get_diagnostics()
    assert status.level == DiagnosticStatus.OK, status.message


@pytest.mark.parametrize("wait", [True, False], ids=["waits for the node", "reads at once"])
def test_evaluator_reads_ground_truth_only_once_it_hears_the_depth_publisher(ros_context, wait):
    # A player in lockstep waits for ground-truth readers; with wait_for_depth_publisher the
    # evaluator is one only after its depth subscription matched the node's publisher.
    from stereospike_ros.ros.depth_evaluator import DepthEvaluator

    evaluator = DepthEvaluator(
        context=ros_context,
        parameter_overrides=[
            Parameter("depth_topic", value="/wait_test/depth"),
            Parameter("ground_truth_topic", value="/wait_test/gt"),
            Parameter("wait_for_depth_publisher", value=wait),
        ],
    )
    player = rclpy.create_node("wait_test_player", context=ros_context)
    gt_pub = player.create_publisher(Image, "/wait_test/gt", 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(evaluator)
    executor.add_node(player)
    try:
        early = spin_until(executor, lambda: gt_pub.get_subscription_count() > 0, timeout=1.5)
        node = rclpy.create_node("wait_test_node", context=ros_context)
        node.create_publisher(Image, "/wait_test/depth", 10)
        heard = spin_until(executor, lambda: gt_pub.get_subscription_count() > 0, timeout=10.0)
        node.destroy_node()
    finally:
        executor.shutdown()
        evaluator.destroy_node()
        player.destroy_node()
    assert early is not wait  # waiting: no ground-truth reader before the node is heard
    assert heard


def test_player_in_lockstep_waits_for_an_answer_publisher_that_reaches_it(ros_context, tmp_path):
    # A best-effort publisher of the answer topic is in the graph but cannot reach the
    # player's reliable reader: waiting on the graph alone would start a replay whose answers
    # never arrive (each frame then costs answer_timeout_s).
    from stereospike_ros.ros.event_player import EventPlayer

    _, data = small_recording(tmp_path)
    player = EventPlayer(
        context=ros_context,
        parameter_overrides=[
            Parameter("recording", value=str(data)),
            Parameter("lockstep", value=True),
            Parameter("answer_topic", value="/answer_test/depth"),
            Parameter("wait_timeout_s", value=1.0),
        ],
    )
    node = rclpy.create_node("answer_test_node", context=ros_context)
    try:
        best_effort = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        node.create_publisher(Image, "/answer_test/depth", best_effort)
        deadline = time.monotonic() + 10.0
        while not player.count_publishers("/answer_test/depth") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert player.count_publishers("/answer_test/depth") == 1  # seen in the graph
        unmatched = player.wait_for_subscribers()
        node.create_publisher(Image, "/answer_test/depth", 10)  # reliable: it matches
        player.p["wait_timeout_s"] = 10.0
        matched = player.wait_for_subscribers()
    finally:
        node.destroy_node()
        player.destroy_node()
    assert not unmatched
    assert matched


def test_silent_camera_gives_a_diagnostics_warning_and_garbage_is_counted_and_logged(
    ros_context, checkpoint, capfd
):
    node = _depth_node(ros_context, checkpoint, silence_timeout_s=0.3)
    talker = rclpy.create_node("talker2", context=ros_context)
    from dvs_msgs.msg import EventArray

    qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {
        side: talker.create_publisher(EventArray, f"/davis/{side}/events", qos)
        for side in ("left", "right")
    }
    executor, depth = _graph(ros_context, node, talker)
    try:
        _wait_matched(executor, node, pubs)
        # Garbage first (raw bytes straight onto the topic), then good stereo input.
        pubs["left"].publish(b"\x00\x01\x00\x00" + bytes(range(60)))
        pubs["left"].publish(b"not cdr at all")
        _feed(pubs, 0, 150)
        assert spin_until(executor, lambda: len(depth) >= 1, timeout=10.0), "no depth published"
        assert node.ingest.counters["left"].decode_errors == 2
        # Now only the left camera talks: the right one goes silent.
        _feed(pubs, 150, 300, sides=("left",))
        spin_until(executor, lambda: False, timeout=0.6)
        _feed(pubs, 300, 320, sides=("left",))
        spin_until(executor, lambda: False, timeout=0.2)
        status = node.get_diagnostics()
    finally:
        node.shutdown()
        executor.shutdown()
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.WARN, status.message
    assert "right camera silent" in status.message
    assert values["left_decode_errors"] == "2"
    err = capfd.readouterr().err
    assert "/davis/left/events: dropped an undecodable message" in err


def test_missing_weights_stop_the_node_at_start_up_naming_the_file(tmp_path, capfd):
    missing = tmp_path / "nowhere.safetensors"
    code = main(["depth_node", "--ros-args", "-p", f"weights:={missing}"])
    assert code == 1
    assert f"weights file {missing} does not exist" in capfd.readouterr().err


def test_mismatched_or_corrupt_weights_stop_the_node_at_start_up(tmp_path, capfd):
    mono = tiny_checkpoint(tmp_path / "mono.safetensors", name="stereospike-mono")
    assert main(["depth_node", "--ros-args", "-p", f"weights:={mono}"]) == 1
    assert "4 input channels" in capfd.readouterr().err
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    assert main(["depth_node", "--ros-args", "-p", f"weights:={corrupt}"]) == 1
    assert f"cannot load weights {corrupt}" in capfd.readouterr().err


def test_bad_warm_up_size_stops_the_node_at_start_up(checkpoint, capfd):
    args = ["depth_node", "--ros-args", "-p", f"weights:={checkpoint}"]
    assert main([*args, "-p", "warm_up_size:=346by260"]) == 1
    assert "warm_up_size '346by260' is not HxW" in capfd.readouterr().err


def test_depth_node_process_exits_non_zero_on_missing_weights(tmp_path):
    process = start_node("depth_node", {"weights": tmp_path / "absent.safetensors"})
    process.wait(60)
    code, out = stop(process)
    assert code == 1
    assert "cannot start" in out and "absent.safetensors" in out


def test_exact_inference_path_matches_reference_and_unknown_path_fails_at_start_up(checkpoint):
    from stereospike_ros.ros.errors import StartupError

    rng = np.random.default_rng(1)
    left = rng.poisson(0.5, (2, 32, 48)).astype(np.uint16)
    right = rng.poisson(0.5, (2, 32, 48)).astype(np.uint16)
    reference, _ = load_estimator(checkpoint, "cpu", firing_rate=False, path="reference")
    exact, _ = load_estimator(checkpoint, "cpu", firing_rate=False, path="exact")
    assert exact.fast is not None and reference.fast is None
    np.testing.assert_allclose(
        exact(left, right).depth, reference(left, right).depth, rtol=1e-5, equal_nan=True
    )
    with pytest.raises(StartupError, match="inference_path 'warp' is unknown"):
        load_estimator(checkpoint, "cpu", path="warp")


def test_temporal_smoothing_publishes_the_running_mean_of_the_networks_log_depth(
    ros_context, checkpoint
):
    # Windows of different event densities, so that each window's depth differs from the last;
    # the stream is played twice, as a looping bag does: the second pass goes back in time and
    # the filter starts again, which the diagnostics count.
    node = _depth_node(ros_context, checkpoint, reliable=True, temporal_smoothing=0.6)
    talker = rclpy.create_node("smoothing_talker", context=ros_context)
    from dvs_msgs.msg import EventArray

    qos = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {
        s: talker.create_publisher(EventArray, f"/davis/{s}/events", qos) for s in ("left", "right")
    }
    received: list[Image] = []
    talker.create_subscription(Image, "/depth_node/depth", received.append, 500)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(talker)
    passes: list[tuple[dict[str, np.ndarray], list[Image]]] = []
    try:
        _wait_matched(executor, node, pubs)
        resets_after_first_pass = None
        for loop in range(2):
            sent: dict[str, list[np.ndarray]] = {"left": [], "right": []}
            first = len(received)
            for step, t in enumerate(range(0, 600, 5)):
                t0, t1 = 10**9 + t * 10**6, 10**9 + (t + 5) * 10**6
                rng = np.random.default_rng((loop, step))
                n = 20 + 380 * ((t // 50) % 3)  # 20, 400 or 780 events per 5 ms, by window
                for side in ("left", "right"):
                    ev = np.zeros(n, dtype=EVENT_DTYPE)
                    ev["t"] = np.sort(rng.integers(t0, t1, n))
                    ev["x"], ev["y"] = rng.integers(0, 48, n), rng.integers(0, 32, n)
                    ev["p"] = rng.integers(0, 2, n)
                    sent[side].append(ev)
                    pubs[side].publish(encode_event_array(ev, 32, 48, t1, "cam"))
                if t % 50 == 0 and t >= 100:  # at the pace of the node: it keeps only the newest
                    spin_until(
                        executor,
                        lambda t=t, first=first: len(received) - first >= t // 50 - 1,
                        timeout=5.0,
                    )
                executor.spin_once(timeout_sec=0.002)
            assert spin_until(
                executor, lambda first=first: len(received) - first >= 6, timeout=20.0
            )
            spin_until(executor, lambda: False, timeout=0.3)
            events = {side: np.concatenate(batches) for side, batches in sent.items()}
            passes.append((events, received[first:]))
            if loop == 0:
                resets_after_first_pass = node.smoother.resets
        status = node.get_diagnostics()
    finally:
        node.shutdown()
        executor.shutdown()
    values = {kv.key: kv.value for kv in status.values}
    assert resets_after_first_pass == 0
    assert values["temporal_filter_resets"] == "1"
    estimator, _ = load_estimator(checkpoint, "cpu", firing_rate=False)
    differs = False
    for events, messages in passes:
        state = None  # the second pass goes back in time: the filter starts again
        for msg in messages:
            t_end = convert.time_to_ns(msg.header.stamp)
            left, _ = event_histogram(events["left"], 32, 48, t_end - 50_000_000, t_end)
            right, _ = event_histogram(events["right"], 32, 48, t_end - 50_000_000, t_end)
            raw = estimator(left, right).depth
            log = np.log(raw)
            state = log if state is None else 0.6 * state + 0.4 * log
            published = convert.depth_from_image(msg)
            np.testing.assert_allclose(published, np.exp(state), rtol=1e-4)
            differs |= not np.allclose(published, raw, rtol=1e-3)
    assert differs, "the filter never changed the network's depth: nothing was tested"
