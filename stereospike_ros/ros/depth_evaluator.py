"""``depth_evaluator``: scores predicted depth against ground truth live, as the paper does.

Pairs ``depth_topic`` (default ``/depth_node/depth``) with ``ground_truth_topic`` (default
``/davis/left/depth_image_rect``) by header stamp (exactly, or within ``tolerance_ms``),
accumulates the model metrics (MDE, RMSE, AbsRel, deltas, MDE at cut-offs: per frame over the
valid pixels, then averaged over frames), publishes the running MDE on ``~/mde`` (metres) and
all metrics on ``~/metrics`` (diagnostic_msgs/DiagnosticStatus), logs them every
``log_every`` pairs, and writes a JSON summary at shutdown (and every ``write_every`` pairs).

Valid pixels: ground truth finite and > 0 (and <= ``max_depth`` when set) where the prediction
is finite; the pixels the prediction leaves NaN are counted (``prediction_missing``) rather
than scored, so a node that says "no estimate" is not scored as if it had guessed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.subscription import Subscription
from rclpy.timer import Timer
from sensor_msgs.msg import Image
from std_msgs.msg import Float64

from stereospike_ros.atomic import atomic_write
from stereospike_ros.model.metrics import MetricAccumulator
from stereospike_ros.ros import convert
from stereospike_ros.ros.common import (
    declare_parameters,
    event_qos,
    output_qos,
    run_node,
)
from stereospike_ros.ros.errors import ConversionError, StartupError
from stereospike_ros.ros.parameters import EVALUATOR_PARAMS
from stereospike_ros.ros.sync import StampMatcher
from stereospike_ros.ros.visualize import colorize_depth

__all__ = ["DepthEvaluator", "main", "score_pair"]


def score_pair(
    prediction: np.ndarray, ground_truth: np.ndarray, max_depth: float = 0.0
) -> tuple[np.ndarray, np.ndarray, int]:
    """(prediction, masked ground truth, prediction-missing pixel count) ready for the metrics.

    Ground truth becomes NaN where the prediction is not finite, and beyond ``max_depth`` (> 0).
    """
    if prediction.shape != ground_truth.shape:
        raise ConversionError(
            f"prediction {prediction.shape} and ground truth {ground_truth.shape} differ in size"
        )
    gt = ground_truth.astype(np.float32, copy=True)
    if max_depth > 0:
        gt[gt > max_depth] = np.nan
    pred_ok = np.isfinite(prediction)
    gt_valid = np.isfinite(gt) & (gt > 0)
    missing = int((gt_valid & ~pred_ok).sum())
    gt[~pred_ok] = np.nan
    return np.where(pred_ok, prediction, 0.0).astype(np.float32), gt, missing


class DepthEvaluator(Node):
    """Accumulates metrics over stamp-matched (prediction, ground truth) pairs."""

    def __init__(self, node_name: str = "depth_evaluator", **kwargs: object) -> None:
        super().__init__(node_name, **kwargs)
        p = declare_parameters(self, EVALUATOR_PARAMS)
        self.p = p
        if p["max_depth_color"] <= p["min_depth_color"]:
            raise StartupError("max_depth_color must be larger than min_depth_color")
        self.accumulator = MetricAccumulator()
        self.matcher: StampMatcher[np.ndarray, np.ndarray] = StampMatcher(
            round(p["tolerance_ms"] * 1e6), max_pending=400
        )
        self.stamps_ns: list[int] = []
        self.prediction_missing = 0
        self.answered = 0  # ground-truth frames with a prediction of the same stamp
        self.received = {"prediction": 0, "ground_truth": 0}
        self.conversion_errors = 0
        self.images: list[str] = []
        self.started = time.time()
        if p["image_dir"]:
            Path(p["image_dir"]).mkdir(parents=True, exist_ok=True)
        self._qos = event_qos(p["reliable"], 100)
        self.sub_prediction = self.create_subscription(
            Image, p["depth_topic"], lambda m: self._on_image(m, "prediction"), self._qos
        )
        self.sub_ground_truth: Subscription | None = None
        self._ground_truth_timer: Timer | None = None
        if p["wait_for_depth_publisher"]:
            # A player in lockstep waits for ground-truth readers, then plays as fast as the node
            # answers; if this reader of the node's depth is not matched yet, every answer sent
            # before it is lost. Reading ground truth only once the node is heard makes the
            # player's wait cover this link as well.
            self.get_logger().info(
                f"waiting for a publisher on {p['depth_topic']} before reading "
                f"{p['ground_truth_topic']}"
            )
            self._ground_truth_timer = self.create_timer(0.05, self._subscribe_when_heard)
        else:
            self._subscribe_ground_truth()
        self.pub_mde = self.create_publisher(Float64, "~/mde", output_qos(10))
        self.pub_metrics = self.create_publisher(DiagnosticStatus, "~/metrics", output_qos(10))
        self.get_logger().info(
            f"scoring {p['depth_topic']} against {p['ground_truth_topic']} "
            f"(stamps within {p['tolerance_ms']:g} ms)"
        )

    def _subscribe_ground_truth(self) -> None:
        self.sub_ground_truth = self.create_subscription(
            Image,
            self.p["ground_truth_topic"],
            lambda m: self._on_image(m, "ground_truth"),
            self._qos,
        )

    def _subscribe_when_heard(self) -> None:
        timer = self._ground_truth_timer
        if timer is None or self.sub_prediction.get_publisher_count() == 0:
            return
        self.destroy_timer(timer)
        self._ground_truth_timer = None
        self._subscribe_ground_truth()
        self.get_logger().info(f"heard {self.p['depth_topic']}: reading ground truth")

    def _on_image(self, msg: Image, which: str) -> None:
        self.received[which] += 1
        try:
            depth = convert.depth_from_image(msg)
        except ConversionError as err:
            self.conversion_errors += 1
            topic = self.p["depth_topic" if which == "prediction" else "ground_truth_topic"]
            self.get_logger().warning(f"{topic}: {err}", throttle_duration_sec=5.0)
            return
        stamp = convert.time_to_ns(msg.header.stamp)
        if which == "prediction":
            pairs = self.matcher.add_a(stamp, depth)
        else:
            pairs = self.matcher.add_b(stamp, depth)
        for stamp_ns, prediction, ground_truth in pairs:
            self.answered += 1
            self._score(stamp_ns, prediction, ground_truth)

    def _score(self, stamp_ns: int, prediction: np.ndarray, ground_truth: np.ndarray) -> None:
        try:
            pred, gt, missing = score_pair(prediction, ground_truth, self.p["max_depth"])
        except ConversionError as err:
            self.conversion_errors += 1
            self.get_logger().warning(str(err), throttle_duration_sec=5.0)
            return
        before = self.accumulator.frames
        self.accumulator.update(torch.from_numpy(pred), torch.from_numpy(gt))
        if self.accumulator.frames == before:
            return  # no valid pixel: counted by the accumulator as skipped
        self.stamps_ns.append(stamp_ns)
        self.prediction_missing += missing
        index = len(self.stamps_ns) - 1
        self._maybe_save_images(index, stamp_ns, prediction, ground_truth)
        summary = self.summary()
        self.pub_mde.publish(Float64(data=summary["metrics"]["mde_cm"] / 100.0))
        self.pub_metrics.publish(
            DiagnosticStatus(
                level=DiagnosticStatus.OK,
                name=f"{self.get_name()}: depth metrics",
                message=f"MDE {summary['metrics']['mde_cm']:.2f} cm over {index + 1} frames",
                values=[KeyValue(key=k, value=f"{v:.6g}") for k, v in summary["metrics"].items()],
            )
        )
        if self.p["log_every"] and (index + 1) % self.p["log_every"] == 0:
            self.get_logger().info(summary_line(summary))
        if self.p["write_every"] and (index + 1) % self.p["write_every"] == 0:
            self.write_summary()

    def _maybe_save_images(
        self, index: int, stamp_ns: int, prediction: np.ndarray, ground_truth: np.ndarray
    ) -> None:
        folder = self.p["image_dir"]
        if not folder or len(self.images) >= 2 * self.p["save_images"]:
            return
        if index % max(1, self.p["save_every"]) != 0:
            return
        lo, hi = self.p["min_depth_color"], self.p["max_depth_color"]
        gap = np.full((prediction.shape[0], 4, 3), 255, dtype=np.uint8)
        side_by_side = np.hstack(
            [colorize_depth(prediction, lo, hi), gap, colorize_depth(ground_truth, lo, hi)]
        )
        base = Path(folder) / f"frame_{index:04d}_{stamp_ns}"
        color_path = f"{base}_pred_gt_color.png"
        depth_path = f"{base}_pred_depth_mm.png"
        mm = np.where(np.isfinite(prediction), np.clip(prediction * 1000.0, 0, 65535), 0)
        cv2.imwrite(color_path, cv2.cvtColor(side_by_side, cv2.COLOR_RGB2BGR))
        cv2.imwrite(depth_path, mm.astype(np.uint16))
        self.images += [color_path, depth_path]

    def summary(self) -> dict:
        """Everything the JSON summary holds (metrics in the accumulator's units)."""
        metrics = self.accumulator.summary()
        unmatched_pred, unmatched_gt = self.matcher.pending
        return {
            "depth_topic": self.p["depth_topic"],
            "ground_truth_topic": self.p["ground_truth_topic"],
            "tolerance_ms": self.p["tolerance_ms"],
            "pairs": len(self.stamps_ns),
            # Every ground-truth frame should be answered: a replay in lockstep answers all;
            # in real time, the node's skipped windows show up here as missing.
            "frames_expected": self.received["ground_truth"],
            "frames_answered": self.answered,
            "frames_missing": self.received["ground_truth"] - self.answered,
            "received": dict(self.received),
            "unmatched_predictions": self.matcher.unmatched_a + unmatched_pred,
            "unmatched_ground_truth": self.matcher.unmatched_b + unmatched_gt,
            "prediction_missing_pixels": self.prediction_missing,
            "conversion_errors": self.conversion_errors,
            "metrics": {k: _json_float(v) for k, v in metrics.items()},
            "stamps_ns": list(self.stamps_ns),
            "frame_mde_cm": [_json_float(v) for v in self.accumulator.frame_mde_cm],
            "images": list(self.images),
            "wall_s": time.time() - self.started,
        }

    def write_summary(self) -> Path | None:
        """Write the JSON summary atomically to ``output`` (when set); returns its path."""
        if not self.p["output"]:
            return None
        text = json.dumps(self.summary(), indent=2)
        return atomic_write(self.p["output"], lambda f: f.write(text.encode()))


def _json_float(value: float) -> float | None:
    return None if value != value else float(value)  # NaN -> null (JSON has no NaN)


def summary_line(summary: dict) -> str:
    """One log line: MDE (cm), RMSE, delta1 and the pair counts."""
    m = summary["metrics"]

    def show(key: str, fmt: str) -> str:
        return "n/a" if m.get(key) is None else format(m[key], fmt)

    return (
        f"MDE {show('mde_cm', '.2f')} cm, RMSE {show('rmse_m', '.3f')} m, "
        f"delta1 {show('delta1', '.3f')} over {summary['pairs']} frames; ground-truth frames "
        f"expected {summary['frames_expected']}, answered {summary['frames_answered']}, "
        f"missing {summary['frames_missing']} ({summary['unmatched_predictions']} "
        "predictions unmatched)"
    )


def main(args: Sequence[str] | None = None) -> int:
    """``ros2 run stereospike_ros depth_evaluator``; writes the JSON summary when stopped."""
    return run_node("depth_evaluator", DepthEvaluator, args, on_exit=_report)


def _report(node: DepthEvaluator) -> None:
    summary = node.summary()
    path = node.write_summary()
    print(summary_line(summary) + (f"; summary in {path}" if path else ""), flush=True)


if __name__ == "__main__":
    sys.exit(main())
