"""Winograd F(2x2, 3x3) convolution for the CPU: the same sums with 2.25x fewer multiplications.

After the decoder is folded, most of the full network's time goes to 3x3 stride-1 convolutions
over 256-1024 channels at small sizes (bottleneck, folded decoder), where a large GEMM keeps a
CPU core's vector units busier than oneDNN's direct convolution does.
Winograd's minimal filtering (Lavin and Gray, 2016) gets each 2x2 output tile from a 4x4 input
tile with 16 products per channel pair instead of 36, as 16 GEMMs ``(tiles, C_in) @ (C_in,
C_out)``. F(2, 3)'s transforms are additions and halvings, so its rounding error is the order of
the direct sum's (max 7e-7 vs 2e-6 on unit-scale potentials, measured) and dyadic weights stay
exact. A stride-2 5x5 convolution is a stride-1 3x3 one over the space-to-depth input (4x the
channels, the 6x6-padded kernel split by phase), so the encoder runs here too.

It only pays for wide layers: the transforms are memory-bound and grow with the pixels, the
products they save with pixels times channels. :func:`worth_it` holds the rule
(docs/inference.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stereospike_ros.model.errors import ModelError
from stereospike_ros.model.gather import index_rows

# G of F(2, 3): U = G w G^T turns each 3x3 kernel into the 4x4 one the 16 GEMMs use.
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))

#: Smallest input-channel count at which a 3x3 Winograd beat oneDNN here (1.5x at 256 and 512
#: channels, 1.08x at 128). A 5x5 stride-2 one needs twice that after space-to-depth (1.34x at
#: 4 x 128 channels, 0.89x at 4 x 64: the space-to-depth copy and the 6x6 padding cost).
MIN_CHANNELS = 256


def worth_it(in_channels: int, kernel: int, stride: int) -> bool:
    """Whether a (kernel, stride) convolution over ``in_channels`` should run as Winograd."""
    if (kernel, stride) == (3, 1):
        return in_channels >= MIN_CHANNELS
    if (kernel, stride) == (5, 2):
        return 4 * in_channels >= 2 * MIN_CHANNELS
    return False


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def supports(
    kernel: int | tuple[int, ...], stride: int | tuple[int, ...], padding: int | tuple[int, ...]
) -> bool:
    """Whether :class:`WinogradConv` computes this convolution: 3x3 stride 1 (any padding) or
    5x5 stride 2 padding 2."""
    k, s = _pair(kernel), _pair(stride)
    return (k, s) == ((3, 3), (1, 1)) or (k, s, _pair(padding)) == ((5, 5), (2, 2), (2, 2))


def _space_to_depth_kernel(weight: Tensor) -> Tensor:
    """(O, C, 5, 5) stride-2 kernel -> (O, 4C, 3, 3) stride-1 kernel over 2x2 phases (p, q, c)."""
    out_c, in_c = weight.shape[:2]
    w6 = weight.new_zeros(out_c, in_c, 6, 6)
    w6[:, :, :5, :5] = weight
    # w6[o, c, 2a + p, 2b + q] -> k[o, (p, q, c), a, b]
    return w6.view(out_c, in_c, 3, 2, 3, 2).permute(0, 3, 5, 1, 2, 4).reshape(out_c, 4 * in_c, 3, 3)


def _transform_input(xn: Tensor, th: int, tw: int) -> Tensor:
    """B^T d B for every 4x4 tile (stride 2) of NHWC ``xn`` -> (16, tiles, C)."""
    batch, _, width, channels = xn.shape
    r = [xn[:, k : k + 2 * th : 2] for k in range(4)]
    rows = xn.new_empty(4, batch, th, width, channels)
    torch.sub(r[0], r[2], out=rows[0])
    torch.add(r[1], r[2], out=rows[1])
    torch.sub(r[2], r[1], out=rows[2])
    torch.sub(r[1], r[3], out=rows[3])
    v = xn.new_empty(4, 4, batch, th, tw, channels)
    for i in range(4):
        c = [rows[i][:, :, k : k + 2 * tw : 2] for k in range(4)]
        torch.sub(c[0], c[2], out=v[i, 0])
        torch.add(c[1], c[2], out=v[i, 1])
        torch.sub(c[2], c[1], out=v[i, 2])
        torch.sub(c[1], c[3], out=v[i, 3])
    return v.view(16, batch * th * tw, channels)


def _transform_output(m: Tensor, batch: int, th: int, tw: int) -> Tensor:
    """A^T M A for every tile of (16, tiles, O) -> NHWC (batch, 2 th, 2 tw, O)."""
    out_c = m.shape[-1]
    m = m.view(4, 4, batch, th, tw, out_c)
    p = m.new_empty(2, 4, batch, th, tw, out_c)
    torch.add(m[0], m[1], out=p[0]).add_(m[2])
    torch.sub(m[1], m[2], out=p[1]).sub_(m[3])
    y = m.new_empty(batch, th, 2, tw, 2, out_c)
    for i in range(2):
        torch.add(p[i, 0], p[i, 1], out=y[:, :, i, :, 0]).add_(p[i, 2])
        torch.sub(p[i, 1], p[i, 2], out=y[:, :, i, :, 1]).sub_(p[i, 3])
    return y.view(batch, 2 * th, 2 * tw, out_c)


class WinogradConv(nn.Module):
    """``F.conv2d(x, weight, bias, stride, padding)`` for 3x3 stride 1 (any padding) or 5x5
    stride 2 padding 2, on channels-last ``x``; returns a channels-last result."""

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        stride: int | tuple[int, int],
        padding: int | tuple[int, int],
    ) -> None:
        super().__init__()
        kernel = tuple(weight.shape[-2:])
        if not supports(kernel, stride, padding):
            raise ModelError(
                f"WinogradConv computes 3x3 stride 1 or 5x5 stride 2 padding 2, got kernel "
                f"{kernel}, stride {stride}, padding {padding}"
            )
        self.space_to_depth = kernel == (5, 5)
        if self.space_to_depth:
            weight = _space_to_depth_kernel(weight)
        self.padding = _pair(padding)
        self.out_channels, self.in_channels = int(weight.shape[0]), int(weight.shape[1])
        g = torch.tensor(_G, dtype=torch.float64, device=weight.device)
        u = torch.einsum("ik,ockl,jl->ijco", g, weight.detach().double(), g)
        self.register_buffer(
            "u",
            u.reshape(16, self.in_channels, self.out_channels).to(weight.dtype).contiguous(),
            persistent=False,
        )
        self.register_buffer(
            "bias", None if bias is None else bias.detach().clone(), persistent=False
        )

    def forward(self, x: Tensor, channels: Tensor | None = None) -> Tensor:
        """``channels``: ``x`` holds only these input channels (the others are all zero)."""
        batch, _, height, width = x.shape
        u = self.u
        if channels is not None:  # rows of u are (phase, channel): 4 phases after space-to-depth
            phases = 4 if self.space_to_depth else 1
            u = u.view(16, phases, self.in_channels // phases, self.out_channels)
            u = index_rows(u, 2, channels).view(16, -1, self.out_channels)
        xn = x.permute(0, 2, 3, 1)
        if self.space_to_depth:
            out_h, out_w = (height - 1) // 2 + 1, (width - 1) // 2 + 1
            th, tw = (out_h + 1) // 2, (out_w + 1) // 2
            # Padded by 2 (the conv's own padding) and up to 2 x (2 th + 2) rows/columns.
            xn = F.pad(xn, (0, 0, 2, 4 * tw + 2 - width, 2, 4 * th + 2 - height))
            channels = xn.shape[-1]
            xn = (
                xn.reshape(batch, 2 * th + 2, 2, 2 * tw + 2, 2, channels)
                .permute(0, 1, 3, 2, 4, 5)
                .reshape(batch, 2 * th + 2, 2 * tw + 2, 4 * channels)
            )
        else:
            ph, pw = self.padding
            out_h, out_w = height + 2 * ph - 2, width + 2 * pw - 2
            th, tw = (out_h + 1) // 2, (out_w + 1) // 2
            bottom, right = 2 * th + 2 - height - ph, 2 * tw + 2 - width - pw
            if ph or pw or bottom or right:
                xn = F.pad(xn, (0, 0, pw, right, ph, bottom))
        m = torch.bmm(_transform_input(xn, th, tw), u)
        y = _transform_output(m, batch, th, tw)
        if self.bias is not None:
            y.add_(self.bias)
        if (2 * th, 2 * tw) != (out_h, out_w):
            y = y[:, :out_h, :out_w].contiguous()
        return y.permute(0, 3, 1, 2)
