"""The network step of the depth node, without ROS: two histograms in, depth (and pictures) out.

Kept apart from the node so the demo, the benchmark and the tests run exactly the code the node
runs, and so the evaluator's offline cross-check can recompute the same depth from the same
histograms.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stereospike_ros.model.inputs import stereo_tensor
from stereospike_ros.model.metrics import firing_rates
from stereospike_ros.model.runtimes import RUNTIMES
from stereospike_ros.ros.errors import StartupError

__all__ = ["DepthEstimate", "DepthEstimator", "load_estimator"]


@dataclass
class DepthEstimate:
    """Depth (H, W) float32 metres, NaN where the network gives no usable value."""

    depth: np.ndarray
    firing_rate: float | None  # the paper's mean firing rate over the network's layers
    forward_s: float


class DepthEstimator:
    """Runs a stereo checkpoint on one window; the network is stateless, so nothing to reset.

    ``path`` picks the execution path of ``stereospike_ros.model.inference`` ('exact' = the
    folded fast network, same outputs as 'reference' up to float rounding). Only the reference
    network returns spikes, so with ``firing_rate`` one window in ``FIRING_RATE_EVERY`` runs
    on it and measures the firing rate (its depth is published like any other).
    """

    FIRING_RATE_EVERY = 20

    def __init__(
        self,
        model: torch.nn.Module,
        device: str,
        firing_rate: bool = True,
        path: str = "reference",
        providers: str | None = None,
        onnx_file: str | None = None,
    ) -> None:
        self.model = model.eval()
        self.device = torch.device(device)
        self.firing_rate = firing_rate
        self.path = path
        self._windows = 0
        in_channels = getattr(getattr(model, "config", None), "in_channels", None)
        if in_channels != 4:
            name = getattr(getattr(model, "config", None), "name", type(model).__name__)
            raise StartupError(
                f"the depth node needs a stereo model with 4 input channels "
                f"[L_ON, L_OFF, R_ON, R_OFF]; this checkpoint is {name!r} with {in_channels}"
            )
        self.fast = None
        if path != "reference":
            from stereospike_ros.model.errors import ModelError
            from stereospike_ros.model.inference import ALL_PATHS, compile_for_inference

            if path not in ALL_PATHS:
                raise StartupError(
                    f"inference_path {path!r} is unknown; choose one of {', '.join(ALL_PATHS)}"
                )
            runtime = {"providers": providers, "onnx": onnx_file or None}
            try:
                self.fast = compile_for_inference(
                    model, path, device=self.device, **(runtime if path in RUNTIMES else {})
                )
            except ModelError as err:
                raise StartupError(f"inference_path {path!r}: {err}") from err

    def warm_up(self, height: int, width: int) -> None:
        """Prepare the network for ``height`` x ``width`` windows now, not at the first one.

        The fast paths plan their folding and trace a TorchScript graph per input size (about
        a second at 260 x 346), and their first two runs are slow.
        """
        zeros = np.zeros((2, height, width), dtype=np.uint16)
        windows, self._windows = self._windows, 1  # not a firing-rate window (reference net)
        for _ in range(3):
            self(zeros, zeros)
        self._windows = windows

    @torch.inference_mode()
    def __call__(self, left: np.ndarray, right: np.ndarray) -> DepthEstimate:
        x = stereo_tensor(left, right)[None].to(self.device)
        start = time.perf_counter()
        measure = self.firing_rate and (
            self.fast is None or self._windows % self.FIRING_RATE_EVERY == 0
        )
        self._windows += 1
        rate = None
        if measure:
            out = self.model(x, return_all=True)
            depth_t = out.depth
            rate = firing_rates(out.spikes)["overall"]
        elif self.fast is not None:
            depth_t = self.fast(x)
        else:
            depth_t = self.model(x)
        depth = depth_t[0, 0].float().cpu().numpy()
        forward_s = time.perf_counter() - start
        # REP 117: NaN marks "no estimate"; a non-finite or non-positive depth is not one.
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)
        return DepthEstimate(depth, rate, forward_s)


def load_estimator(
    weights: Path,
    device: str,
    firing_rate: bool = True,
    threads: int = 0,
    path: str = "reference",
    providers: str | None = None,
    onnx_file: str | None = None,
) -> tuple[DepthEstimator, dict]:
    """Load a checkpoint for the node; every way it can fail becomes a StartupError now.

    ``providers`` and ``onnx_file`` (an exported file of these weights; None = export now)
    are for the runtime paths (``onnxruntime``, ``openvino``)."""
    from stereospike_ros.model import CheckpointError, load_checkpoint

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise StartupError(f"device {device!r} requested but CUDA is not available here")
    try:
        torch_device = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise StartupError(f"device {device!r} is not a torch device: {err}") from err
    if threads > 0:
        torch.set_num_threads(threads)
    if not Path(weights).is_file():
        raise StartupError(f"weights file {weights} does not exist")
    try:
        model, metadata = load_checkpoint(weights, device=str(torch_device))
    except CheckpointError as err:
        raise StartupError(f"cannot load weights {weights}: {err}") from err
    estimator = DepthEstimator(model, str(torch_device), firing_rate, path, providers, onnx_file)
    # One tiny forward now, so a model that cannot run fails at start-up, not at window one.
    try:
        zeros = np.zeros((2, 32, 48), dtype=np.uint16)
        estimator(zeros, zeros)
        estimator._windows = 0
    except Exception as err:
        raise StartupError(f"weights {weights} load but do not run on {device}: {err}") from err
    return estimator, dict(metadata)
