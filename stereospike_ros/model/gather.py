"""Gathers for the CPU fast path that stay on torch's quick kernels.

``index_select`` on an inner dimension of a CPU tensor goes element by element, where a gather
of whole rows copies each row at once; a gather of the channels of a channels-last tensor is a
gather along its last, contiguous dimension, not a strided walk over the NCHW view.
"""

from __future__ import annotations

import torch
from torch import Tensor


def index_rows(x: Tensor, dim: int, index: Tensor) -> Tensor:
    """``x.index_select(dim, index)`` for a contiguous ``x``, as a gather of whole rows along
    dim 0 of a 2-D view: torch's fast path (one copy per row), where ``index_select`` on an
    inner dimension of a CPU tensor goes element by element."""
    shape = x.shape
    lead, n = 1, shape[dim]
    for size in shape[:dim]:
        lead *= size
    row = 1
    for size in shape[dim + 1 :]:
        row *= size
    rows = x.reshape(lead * n, row)
    if lead != 1:
        index = (torch.arange(lead, device=index.device)[:, None] * n + index).flatten()
    return rows.index_select(0, index).view(*shape[:dim], index.shape[0] // lead, *shape[dim + 1 :])


def active_channels(x: Tensor) -> Tensor:
    """Indices of the channels of a non-negative ``x`` (spikes, their sums, event counts) that
    are nonzero anywhere in the batch: the others add nothing to any convolution. Channel 0 is
    always kept (a convolution over no channel returns no channel, not its bias)."""
    active = x.amax(dim=(0, 2, 3)) != 0
    active[0] = True
    return torch.nonzero(active).flatten()


def take_channels(x: Tensor, channels: Tensor) -> Tensor:
    """``x.index_select(1, channels)`` for channels-last ``x``, channels-last out (a gather along
    the contiguous channel dimension, not a strided ``index_select`` on dim 1)."""
    batch, c, height, width = x.shape
    picked = x.permute(0, 2, 3, 1).reshape(batch * height * width, c).index_select(1, channels)
    return picked.view(batch, height, width, channels.shape[0]).permute(0, 3, 1, 2)


def input_channels_of(weight: Tensor, channels: Tensor | None) -> Tensor:
    """A channels-last conv weight restricted to the input ``channels`` (all when None): its
    input channels are the contiguous dimension, as an activation's are."""
    return weight if channels is None else take_channels(weight, channels)


def drop_silent(x: Tensor) -> tuple[Tensor, Tensor]:
    """``x`` without its silent channels (:func:`take_channels` of :func:`active_channels`),
    and the channels kept: what a convolution over a non-negative ``x`` needs to skip them."""
    channels = active_channels(x)
    return take_channels(x, channels), channels


def _pixels_by_channels(x: Tensor) -> Tensor:
    """A (pixels, channels) view of a channels-last ``x`` (a view, never a copy: writes to it
    must land in ``x``)."""
    batch, c, height, width = x.shape
    return x.permute(0, 2, 3, 1).view(batch * height * width, c)


def add_channels_(dst: Tensor, positions: Tensor, src: Tensor) -> Tensor:
    """``dst[:, positions] += src`` in place (``src`` has one channel per position); returns
    ``dst``. Both channels-last: an ``index_add_`` along the contiguous channel dimension of
    a (pixels, channels) view (one pass, where ``__setitem__`` would gather, add and scatter)."""
    if not (
        dst.is_contiguous(memory_format=torch.channels_last)
        and src.is_contiguous(memory_format=torch.channels_last)
    ):
        return dst.index_add_(1, positions, src)
    _pixels_by_channels(dst).index_add_(1, positions, _pixels_by_channels(src))
    return dst


def put_channels(src: Tensor, positions: Tensor, width: int) -> Tensor:
    """``src`` widened to ``width`` channels, its channel ``i`` at ``positions[i]`` and zeros
    elsewhere, in ``src``'s memory layout."""
    layout = (
        torch.channels_last
        if src.is_contiguous(memory_format=torch.channels_last)
        else torch.contiguous_format
    )
    shape = (src.shape[0], width, *src.shape[2:])
    out = src.new_zeros(shape).contiguous(memory_format=layout)
    return add_channels_(out, positions, src)
