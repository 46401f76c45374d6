"""An encoder or bottleneck unit of the fast network: its convolution and its neuron fused."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stereospike_ros.model.errors import ModelError
from stereospike_ros.model.fast.pruning import narrow
from stereospike_ros.model.gather import drop_silent, input_channels_of
from stereospike_ros.model.network import ConvUnit, StatelessIF
from stereospike_ros.model.winograd import WinogradConv, supports, worth_it


class FusedUnit(nn.Module):
    """A conv unit's conv (same weights) with its neuron fused as an in-place threshold.

    ``conv=False`` keeps the neuron only (decoder units, whose convolutions the plan folds);
    with ``gemm`` a wide convolution runs as Winograd and the direct weights are not kept.
    ``forward(x, skip=True)`` (non-negative channels-last inputs) convolves only the input
    channels holding a spike anywhere; the size plan decides per input size.
    """

    def __init__(
        self,
        unit: ConvUnit,
        layout: torch.memory_format,
        gemm: bool,
        conv: bool = True,
        inputs: Tensor | None = None,
        outputs: Tensor | None = None,
    ) -> None:
        super().__init__()
        c = unit.conv
        self.stride, self.padding = c.stride, c.padding
        self.act, self.norm = unit.act, unit.norm
        # the input and output channels it keeps (the others are never nonzero)
        weight, bias = narrow(c.weight, c.bias, inputs, outputs)
        self.channels = (int(weight.shape[1]), int(weight.shape[0]))
        self.winograd: WinogradConv | None = None
        if (
            conv
            and gemm
            and supports(c.kernel_size, c.stride, c.padding)
            and worth_it(weight.shape[1], c.kernel_size[0], c.stride[0])
        ):
            self.winograd = WinogradConv(weight, bias, c.stride, c.padding)
        direct = conv and self.winograd is None
        self.weight = (
            nn.Parameter(weight.contiguous(memory_format=layout), requires_grad=False)
            if direct
            else None
        )
        self.bias = nn.Parameter(bias, False) if direct and bias is not None else None

    def post(self, v: Tensor) -> Tensor:
        """Neuron (and BatchNorm of the ANN twin) applied to a conv output it may overwrite."""
        if isinstance(self.act, StatelessIF):
            return v.ge_(self.act.threshold)
        return self.norm(self.act(v))

    def forward(self, x: Tensor, skip: bool = False) -> Tensor:
        channels: Tensor | None = None
        if skip:
            x, channels = drop_silent(x)
        if self.winograd is not None:
            return self.post(self.winograd(x, channels))
        if self.weight is None:
            raise ModelError("this unit keeps its neuron only: its convolution is folded")
        weight = input_channels_of(self.weight, channels)
        return self.post(F.conv2d(x, weight, self.bias, self.stride, self.padding))
