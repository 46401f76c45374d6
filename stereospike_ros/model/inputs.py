"""The network's input, built one way: a stereo pair's spike histograms as one float tensor.

A StereoSpike network takes ``(B, C, H, W)`` counts with the channels ``[L_ON, L_OFF, R_ON,
R_OFF]`` (``C = 4``), or the left camera's two alone for a monocular network (``C = 2``). The
node, the evaluator, the pruner and the benchmarks all build it through :func:`stereo_tensor`,
which stacks the channels with ``events.histogram.stereo_channels`` (the frame cache stores
the same stack), so the channel order is written down in one place.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from stereospike_ros.events.histogram import STEREO_CHANNELS, stereo_channels
from stereospike_ros.model.errors import ModelError

__all__ = ["CHANNELS", "frame_tensor", "resolve_device", "stereo_tensor"]

#: The input channels of a stereo network, in order (a mono network takes the first two).
CHANNELS = STEREO_CHANNELS


class StereoFrame(Protocol):
    """Anything holding a window's two ``(2, H, W)`` count histograms (``data.frames.Frame``)."""

    left: np.ndarray
    right: np.ndarray


def stereo_tensor(left: np.ndarray, right: np.ndarray, in_channels: int = 4) -> Tensor:
    """``(C, H, W)`` float32 counts from two ``(2, H, W)`` histograms, as a network with
    ``in_channels`` inputs takes them: ``[L_ON, L_OFF, R_ON, R_OFF]``, or the left two for a
    monocular network (``in_channels == 2``). Add the batch axis with ``[None]``."""
    left, right = np.asarray(left), np.asarray(right)
    if left.shape != right.shape or left.ndim != 3 or left.shape[0] != 2:
        raise ModelError(
            f"left/right histograms must both be (2, H, W), got {left.shape} and {right.shape}"
        )
    if in_channels not in (2, 4):
        raise ModelError(
            f"a network with {in_channels} input channels cannot take stereo event histograms "
            "(2 = left camera, 4 = both)"
        )
    x = left if in_channels == 2 else stereo_channels(left, right)
    return torch.from_numpy(x.astype(np.float32, copy=False))


def frame_tensor(frame: StereoFrame, in_channels: int) -> Tensor:
    """:func:`stereo_tensor` of a frame's two histograms."""
    return stereo_tensor(frame.left, frame.right, in_channels)


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU, or a name torch does not know,
    is an error naming the option."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise ModelError(f"--device {str(device)!r} is not a torch device ({err})") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for but torch sees no CUDA device")
    return device
