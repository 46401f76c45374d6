"""Baselines scored beside the network on the same frames: classical stereo and other checkpoints.

``sgbm``: OpenCV's semi-global block matching (Hirschmüller 2008) on event-count images, which
needs no training. Per camera the ON + OFF counts of the window become an 8-bit image (counts
clipped at the 99th percentile of the non-zero pixels, scaled to 0..255, Gaussian-blurred so
that sparse event dots form matchable texture); StereoSGBM matches left to right; disparity
``d > 0`` becomes depth ``f x B / d`` (``f x B`` from the recording's calibration, MVSEC's
19.941772 px*m for its scenes, or an explicit value). Pixels SGBM leaves unmatched (no events,
occlusions, the left border of ``num_disparities`` columns, failed uniqueness checks) are NaN:
not scored, counted against ``coverage``.

Checkpoints of ``stereospike-ann`` or ``stereospike-mono`` (or any other) are loaded and run as
networks by ``load_baseline``; a mono network takes the left camera's two channels.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stereospike_ros.data.frames import Frame
from stereospike_ros.model.checkpoint import load_checkpoint
from stereospike_ros.model.errors import CheckpointError
from stereospike_ros.training.errors import TrainingError
from stereospike_ros.training.evaluate import ModelPredictor, Prediction

BASELINES = ("sgbm",)


def count_image(hist: np.ndarray, percentile: float = 99.0, blur_sigma: float = 1.0) -> np.ndarray:
    """(2, H, W) ON/OFF counts -> (H, W) uint8: total count, clipped, scaled, blurred."""
    import cv2

    counts = np.asarray(hist, dtype=np.float32).sum(axis=0)
    nonzero = counts[counts > 0]
    if not nonzero.size:
        return np.zeros(counts.shape, np.uint8)
    top = max(float(np.percentile(nonzero, percentile)), 1.0)
    image = np.clip(counts / top, 0.0, 1.0) * 255.0
    if blur_sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur_sigma)
    return np.round(image).astype(np.uint8)


class SgbmBaseline:
    """StereoSGBM on event-count images; depth = f x B / disparity, NaN where unmatched."""

    def __init__(
        self,
        focal_baseline: float,
        *,
        name: str = "sgbm",
        min_depth_m: float = 1.0,
        num_disparities: int | None = None,
        block_size: int = 7,
        blur_sigma: float = 1.0,
        uniqueness_ratio: int = 5,
    ) -> None:
        if not (isinstance(focal_baseline, int | float) and focal_baseline > 0):
            raise TrainingError(
                f"the sgbm baseline needs f x B > 0 (px*m), got {focal_baseline!r}: the "
                "recording carries no right camera_info; pass --focal-baseline"
            )
        if block_size < 1 or block_size % 2 == 0:
            raise TrainingError(f"sgbm block size must be odd and positive, got {block_size}")
        self.name = name
        self.focal_baseline = float(focal_baseline)
        self.min_depth_m = float(min_depth_m)
        self.num_disparities = num_disparities
        self.block_size = int(block_size)
        self.blur_sigma = float(blur_sigma)
        self.uniqueness_ratio = int(uniqueness_ratio)
        self._matcher: Any = None
        self._width = 0

    def disparities_for(self, width: int) -> int:
        """A multiple of 16 covering ``f x B / min_depth``, below the image width."""
        if self.num_disparities is not None:
            wanted = self.num_disparities
        else:
            wanted = math.ceil(self.focal_baseline / self.min_depth_m)
        wanted = 16 * max(1, math.ceil(wanted / 16))
        return max(16, min(wanted, 16 * ((width - self.block_size) // 16)))

    def _make(self, width: int) -> Any:
        import cv2

        if self._matcher is None or self._width != width:
            bs = self.block_size
            self._matcher = cv2.StereoSGBM_create(
                minDisparity=0,
                numDisparities=self.disparities_for(width),
                blockSize=bs,
                P1=8 * bs * bs,
                P2=32 * bs * bs,
                disp12MaxDiff=1,
                uniquenessRatio=self.uniqueness_ratio,
                speckleWindowSize=50,
                speckleRange=2,
                mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY,
            )
            self._width = width
        return self._matcher

    def disparity(self, frame: Frame) -> np.ndarray:
        """(H, W) float32 disparity in px; <= 0 where SGBM found no match."""
        left = count_image(frame.left, blur_sigma=self.blur_sigma)
        right = count_image(frame.right, blur_sigma=self.blur_sigma)
        raw = self._make(left.shape[1]).compute(left, right)
        return raw.astype(np.float32) / 16.0  # SGBM returns fixed-point disparity x 16

    def __call__(self, frame: Frame) -> Prediction:
        disparity = self.disparity(frame)
        left_active = np.asarray(frame.left).sum(axis=0) > 0
        matched = disparity > 0
        depth = np.full(disparity.shape, np.nan, dtype=np.float32)
        depth[matched] = self.focal_baseline / disparity[matched]
        # No match can be trusted where the whole neighbourhood saw no event.
        import cv2

        kernel = np.ones((self.block_size, self.block_size), np.uint8)
        near_events = cv2.dilate(left_active.astype(np.uint8), kernel) > 0
        depth[~near_events] = np.nan
        return Prediction(torch.from_numpy(depth))

    def describe(self, height: int, width: int) -> dict[str, Any]:
        return {
            "kind": "classical",
            "method": "OpenCV StereoSGBM (3-way) on ON+OFF event-count images",
            "focal_baseline": self.focal_baseline,
            "num_disparities": self.disparities_for(width),
            "block_size": self.block_size,
            "blur_sigma": self.blur_sigma,
            "uniqueness_ratio": self.uniqueness_ratio,
            "parameters": 0,
            "dense_macs": None,
            "spiking": False,
        }


def load_baseline(
    spec: str,
    *,
    focal_baseline: float | None,
    device: str = "cpu",
    input_size: tuple[int, int] | None = None,
    any_size: bool = False,
    qualified: bool = False,
) -> Any:
    """``sgbm`` or a checkpoint path (an ANN twin, a mono network, any StereoSpike variant),
    named ``<model>:<file stem>``, or with ``qualified`` ``<model>:<folder>/<file stem>`` (two
    runs' ``best.safetensors`` side by side)."""
    if spec == "sgbm":
        return SgbmBaseline(focal_baseline)  # type: ignore[arg-type]
    path = Path(spec)
    if not path.exists():
        raise TrainingError(
            f"baseline {spec!r} is neither one of {BASELINES} nor an existing checkpoint file"
        )
    model, metadata = load_model(path, device=device, input_size=input_size, any_size=any_size)
    stem = f"{path.resolve().parent.name}/{path.stem}" if qualified else path.stem
    return ModelPredictor(model, name=f"{model.config.name}:{stem}", device=device,
                          metadata=metadata)  # fmt: skip


def load_model(
    path: str | Path,
    *,
    device: str = "cpu",
    expect_model: str | None = None,
    input_size: tuple[int, int] | None = None,
    any_size: bool = False,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a checkpoint for evaluation, refusing one for another architecture or input size.

    ``expect_model`` is the architecture the caller needs; ``input_size`` the frames' (H, W),
    compared with the size the checkpoint was trained for unless ``any_size``.
    """
    from stereospike_ros.model.inputs import resolve_device

    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"checkpoint {path} does not exist")
    expect = {"model": expect_model} if expect_model else None
    try:
        model, metadata = load_checkpoint(path, device=resolve_device(device), expect=expect)
    except CheckpointError as err:
        raise TrainingError(str(err)) from err
    trained = metadata.get("input_size")
    mismatch = trained is not None and input_size is not None and list(trained) != list(input_size)
    if mismatch and not any_size:
        raise TrainingError(
            f"checkpoint {path} was trained on {trained[0]}x{trained[1]} frames but the "
            f"data is {input_size[0]}x{input_size[1]}; pass --any-size to run it anyway"
        )
    return model, metadata
