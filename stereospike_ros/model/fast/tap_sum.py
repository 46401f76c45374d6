"""The 512-channel decoder convolution as one GEMM of every source pixel with every tap.

An alternative to folding (:class:`~stereospike_ros.model.fast.upsample_conv.UpsampleConv`)
for wide channels on a small image, on a CPU in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stereospike_ros.model.errors import ModelError
from stereospike_ros.model.fast.folding import nearest_source_index
from stereospike_ros.model.gather import drop_silent, index_rows


class TapSumConv(nn.Module):
    """Same result as :class:`UpsampleConv` (channels-last), computed as one GEMM of every
    source pixel with all ``kh * kw`` kernel taps, then two gathered sums: each product is made
    once and reused by every output pixel that reads that source pixel (25 products per source
    pixel, against 9 per output pixel, i.e. ~43 per source pixel, for the folding at 2.18x).
    Pays where channels are wide and the image small (the 512-channel deconv4), where the folded
    plan's rare rows and columns are a third of its work.
    """

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        in_size: tuple[int, int],
        up_size: tuple[int, int],
        skip_silent: bool = False,
    ) -> None:
        super().__init__()
        self.skip_silent = skip_silent
        cout, cin, kh, kw = weight.shape
        self.in_size = (int(in_size[0]), int(in_size[1]))
        self.out_size = (up_size[0] - kh + 1, up_size[1] - kw + 1)
        self.out_channels, self.kh, self.kw = cout, kh, kw
        device = weight.device
        # Columns ordered (j, i, o): a source column's kw taps sit next to each other.
        matrix = weight.detach().permute(1, 3, 2, 0).reshape(cin, kw * kh * cout)
        self.register_buffer("matrix", matrix.contiguous(), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach(), persistent=False)
        src_r = nearest_source_index(in_size[0], up_size[0], device)
        src_c = nearest_source_index(in_size[1], up_size[1], device)
        taps_r, taps_c = torch.arange(kh), torch.arange(kw)
        cols = src_c[torch.arange(self.out_size[1])[:, None] + taps_c] * kw + taps_c
        rows = src_r[torch.arange(self.out_size[0])[:, None] + taps_r] * kh + taps_r
        self.register_buffer("cols", cols.flatten().to(device), persistent=False)
        self.register_buffer("rows", rows.flatten().to(device), persistent=False)

    def forward(self, s: Tensor) -> Tensor:
        if tuple(s.shape[-2:]) != self.in_size:
            raise ModelError(
                f"TapSumConv planned for input {self.in_size}, got {tuple(s.shape[-2:])}"
            )
        matrix = self.matrix
        if self.skip_silent:
            s, channels = drop_silent(s)
            matrix = matrix.index_select(0, channels)
        batch, cin, height, width = s.shape
        kh, kw, cout = self.kh, self.kw, self.out_channels
        out_h, out_w = self.out_size
        q = torch.matmul(s.permute(0, 2, 3, 1).reshape(batch, height * width, cin), matrix)
        q = index_rows(q.view(batch, height, width * kw, kh * cout), 2, self.cols)
        r = q.view(batch, height, out_w, kw, kh, cout).sum(3)  # (B, H_src, W_out, kh, O)
        r = r.permute(0, 1, 3, 2, 4).reshape(batch, height * kh, out_w, cout)
        out = index_rows(r, 1, self.rows).view(batch, out_h, kh, out_w, cout).sum(2)
        if self.bias is not None:
            out = out.add_(self.bias)
        return out.permute(0, 3, 1, 2)
