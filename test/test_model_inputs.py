"""The network's input tensor, built one way for the node, the evaluator and the benchmarks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stereospike_ros.data.frames import Frame
from stereospike_ros.model.errors import ModelError
from stereospike_ros.model.inputs import CHANNELS, frame_tensor, resolve_device, stereo_tensor


def _histograms(height: int = 3, width: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Left and right (2, H, W) counts whose every value says which channel it came from."""
    left = np.stack([np.full((height, width), 1), np.full((height, width), 2)]).astype(np.uint16)
    right = np.stack([np.full((height, width), 3), np.full((height, width), 4)]).astype(np.uint16)
    return left, right


def test_stereo_tensor_orders_channels_left_on_off_then_right_on_off() -> None:
    left, right = _histograms()
    x = stereo_tensor(left, right)
    assert x.dtype == torch.float32 and tuple(x.shape) == (4, 3, 5)
    assert [float(x[c, 0, 0]) for c in range(4)] == [1.0, 2.0, 3.0, 4.0]
    assert CHANNELS == ("L_ON", "L_OFF", "R_ON", "R_OFF")


def test_mono_network_gets_the_left_camera_only() -> None:
    left, right = _histograms()
    x = stereo_tensor(left, right, in_channels=2)
    assert tuple(x.shape) == (2, 3, 5)
    assert [float(x[c, 0, 0]) for c in range(2)] == [1.0, 2.0]


def test_frame_tensor_equals_stereo_tensor_of_its_histograms() -> None:
    left, right = _histograms()
    frame = Frame(left=left, right=right, depth=np.ones((3, 5), np.float32), t_ns=0, index=0)
    assert torch.equal(frame_tensor(frame, 4), stereo_tensor(left, right))


@pytest.mark.parametrize(
    ("left_shape", "right_shape", "channels", "message"),
    [
        ((2, 3, 5), (2, 3, 4), 4, r"must both be \(2, H, W\)"),
        ((3, 3, 5), (3, 3, 5), 4, r"must both be \(2, H, W\)"),
        ((2, 3, 5), (2, 3, 5), 3, "3 input channels"),
    ],
)
def test_bad_histograms_or_channel_counts_are_named(
    left_shape: tuple[int, ...], right_shape: tuple[int, ...], channels: int, message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        stereo_tensor(np.zeros(left_shape), np.zeros(right_shape), channels)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ModelError, match="--device 'gpu' is not a torch device"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA device"):
            resolve_device("cuda")
