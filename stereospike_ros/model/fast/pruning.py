"""Channels that can never fire, proven from the weights, and the sums of narrowed tensors.

A channel with no weight on any input channel that can be nonzero and a bias below the
threshold can never fire, whatever the window: a pruned checkpoint
(:mod:`~stereospike_ros.model.prune`) has many. The fast network then keeps only the channels
that can be nonzero in every tensor (:func:`live_outputs`), each convolution keeps those
channels' weights (:func:`narrow`), and the residual and skip sums add channels into place
(:class:`ChannelMerge`). Exact: the dropped channels are zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from stereospike_ros.model.gather import add_channels_, put_channels
from stereospike_ros.model.network import ConvUnit, StatelessIF


def never_fire(unit: ConvUnit, inputs: Tensor | None = None) -> Tensor:
    """Which output channels of ``unit`` can never spike, whatever its input: no weight on any
    input channel that can be nonzero (``inputs``; None: all) and a bias below the threshold.
    Zero potential never reaches a positive threshold, so dropping them is exact. A pruned
    checkpoint (:mod:`~stereospike_ros.model.prune`) has many; a trained one, none."""
    weight = unit.conv.weight.detach()
    dead = torch.zeros(weight.shape[0], dtype=torch.bool)
    if not isinstance(unit.act, StatelessIF) or not isinstance(unit.norm, nn.Identity):
        return dead
    if inputs is not None:
        weight = weight.index_select(1, inputs.to(weight.device))
    bias = unit.conv.bias
    below = (
        torch.full_like(dead, unit.act.threshold > 0)
        if bias is None
        else (bias.detach() < unit.act.threshold).cpu()
    )
    return (weight.flatten(1) == 0).all(1).cpu() & below


def live_outputs(unit: ConvUnit, inputs: Tensor | None = None) -> Tensor | None:
    """The output channels of ``unit`` worth computing (None: all of them); at least one, so
    that every tensor keeps a channel."""
    dead = never_fire(unit, inputs)
    if not dead.any():
        return None
    live = (~dead).nonzero().flatten()
    return live if len(live) else torch.zeros(1, dtype=torch.long)


def narrow(
    weight: Tensor, bias: Tensor | None, inputs: Tensor | None, outputs: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """A conv's weight and bias restricted to the ``inputs`` and ``outputs`` channels it keeps."""
    weight = weight.detach()
    bias = None if bias is None else bias.detach()
    if outputs is not None:
        outputs = outputs.to(weight.device)
        weight = weight.index_select(0, outputs)
        bias = None if bias is None else bias.index_select(0, outputs)
    if inputs is not None:
        weight = weight.index_select(1, inputs.to(weight.device))
    return weight.contiguous(), bias


class ChannelMerge(nn.Module):
    """``a + b`` of two tensors that hold the channels ``a_channels`` and ``b_channels`` of a
    ``width``-channel map (None: all; the others are zero), in place where one holds the
    other's; ``channels`` is what the sum holds (None: all)."""

    def __init__(
        self,
        a_channels: Tensor | None,
        b_channels: Tensor | None,
        width: int,
        device: torch.device,
    ) -> None:
        super().__init__()
        every = torch.arange(width)
        a = every if a_channels is None else a_channels.cpu()
        b = every if b_channels is None else b_channels.cpu()
        union = torch.unique(torch.cat([a, b]))
        self.channels: Tensor | None = None if len(union) == width else union
        if torch.equal(a, b):
            self.mode = "add"
        elif bool(torch.isin(b, a).all()):
            self.mode = "into_a"
        elif bool(torch.isin(a, b).all()):
            self.mode = "into_b"
        else:
            self.mode = "union"
        self.register_buffer("pos_a", torch.searchsorted(union, a).to(device), persistent=False)
        self.register_buffer("pos_b", torch.searchsorted(union, b).to(device), persistent=False)
        self.width = len(union)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if self.mode == "add":
            return a.add_(b)
        if self.mode == "into_a":
            return add_channels_(a, self.pos_b, b)
        if self.mode == "into_b":
            return add_channels_(b, self.pos_a, a)
        return add_channels_(put_channels(a, self.pos_a, self.width), self.pos_b, b)


@dataclass
class KeptChannels:
    """The channels each convolution keeps (None: all), from :func:`live_outputs`."""

    units: list[tuple[int, int]]  # encoder and bottleneck: (in, out) counts kept
    decoder: list[tuple[Tensor | None, Tensor | None]]  # (inputs, outputs) per level 4..1
    heads: list[Tensor | None]  # inputs per level 4..1
