"""A convolution over a nearest-neighbour upsampled tensor, computed at the source resolution.

:class:`UpsampleConv` computes ``conv(interpolate(s, size, "nearest"))`` with the kernels that
:mod:`~stereospike_ros.model.fast.folding` folds: a few small convolutions at the source
resolution (one per pair of a row group and a column group), then a gather that puts every
output pixel together. At 2x this computes 9 taps per output pixel instead of 25. In
channels-last layout on a CPU, the rare pattern pairs run as patch GEMMs and the dense pair as
Winograd (:mod:`~stereospike_ros.model.winograd`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stereospike_ros.model.errors import ModelError
from stereospike_ros.model.fast.folding import DimPlan, fold_taps, plan_folding
from stereospike_ros.model.gather import drop_silent, index_rows, input_channels_of
from stereospike_ros.model.winograd import WinogradConv, supports, worth_it


def _gather_dim(x: Tensor, dim: int, index: Tensor | None, channels_last: bool) -> Tensor:
    """``x.index_select(dim, index)``, keeping the memory layout."""
    if index is None:
        return x
    if not channels_last:
        return x.index_select(dim, index)
    return index_rows(x.permute(0, 2, 3, 1), dim - 1, index).permute(0, 3, 1, 2)


class UpsampleConv(nn.Module):
    """``conv2d(interpolate(s, up_size, "nearest"), weight, bias)`` (stride 1, no padding),
    computed at the resolution of ``s`` with folded kernels, for one fixed input size.

    ``channels_last`` picks the layout of input, intermediate and output tensors: it pays for
    wide layers, plain NCHW for narrow ones (measured, see docs/inference.md).
    ``gemm`` (channels-last, at least ``winograd.MIN_CHANNELS`` input channels): the rare
    pattern pairs run as patch GEMMs and the main (dense) pair as
    :class:`~stereospike_ros.model.winograd.WinogradConv`.
    """

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        in_size: tuple[int, int],
        up_size: tuple[int, int],
        channels_last: bool = True,
        gemm: bool = False,
        skip_silent: bool = False,
    ) -> None:
        super().__init__()
        if skip_silent and not channels_last:
            raise ModelError("skipping silent channels needs the channels-last layout")
        self.skip_silent = skip_silent
        cout, cin, kh, kw = weight.shape
        self.in_size = (int(in_size[0]), int(in_size[1]))
        self.out_size = (up_size[0] - kh + 1, up_size[1] - kw + 1)
        self.out_channels, self.in_channels = int(cout), int(cin)
        self.channels_last = channels_last
        self.has_bias = bias is not None
        rows, cols = plan_folding(tuple(weight.shape), in_size, up_size, weight.device)
        self._fold_kernels(weight, bias, rows, cols)
        self._index_output_pixels(rows, cols, weight.device)
        self._choose_gemm_kernels(rows, cols, gemm)

    def _fold_kernels(
        self, weight: Tensor, bias: Tensor | None, rows: DimPlan, cols: DimPlan
    ) -> None:
        """One stacked kernel (every pattern pair's folded taps), bias and gather indices per
        pair of a row group and a column group, as buffers named ``{kind}_{row}_{col}``, and
        ``_combos``: (name, gather rows?, gather cols?, stride, padding) of each pair."""
        cout, device = weight.shape[0], weight.device
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        self._combos: list[tuple[str, bool, bool, tuple[int, int], tuple[int, int]]] = []
        # Taps first, (k, k, cout, cin), so that folding adds whole contiguous (cout, cin) blocks;
        # float64 sums of at most k * k taps round once, to the nearest float32.
        w64 = weight.detach().double().permute(2, 3, 0, 1).contiguous()
        row_folded = {p: fold_taps(w64, 0, p, rows.kf) for g in rows.groups for p in g.patterns}
        for gi, gr in enumerate(rows.groups):
            for gj, gc in enumerate(cols.groups):
                kernels = [
                    fold_taps(row_folded[pr], 1, pc, cols.kf).permute(2, 3, 0, 1)
                    for pr in gr.patterns
                    for pc in gc.patterns
                ]
                slots = len(kernels)
                # Output channel order: slot-major for channels-last (a pixel's slots are
                # contiguous runs of cout), channel-major for NCHW (a channel's slots are planes).
                stacked = torch.stack(kernels, dim=0 if self.channels_last else 1)
                stacked = stacked.reshape(slots * cout, *stacked.shape[2:])
                name = f"{gi}_{gj}"
                self.register_buffer(
                    f"weight_{name}",
                    stacked.to(weight.dtype).contiguous(memory_format=layout),
                    persistent=False,
                )
                if bias is not None:
                    b = bias.detach()
                    b = b.repeat(slots) if self.channels_last else b.repeat_interleave(slots)
                    self.register_buffer(f"bias_{name}", b.contiguous(), persistent=False)
                for tag, index in (("rows", gr.gather), ("cols", gc.gather)):
                    if index is not None:
                        self.register_buffer(f"{tag}_{name}", index.to(device), persistent=False)
                self._combos.append(
                    (
                        name,
                        gr.gather is not None,
                        gc.gather is not None,
                        (gr.stride, gc.stride),
                        (gr.padding, gc.padding),
                    )
                )

    def _index_output_pixels(self, rows: DimPlan, cols: DimPlan, device: torch.device) -> None:
        """Where every output pixel is in the per-pair results: ``index`` into the biggest
        pair's (``_primary``), and ``dst_{j}`` / ``src_{j}`` for the pixels of each other pair
        (``_others``)."""
        y = torch.arange(self.out_size[0])[:, None]
        x = torch.arange(self.out_size[1])[None, :]
        combo = rows.group_of[y] * len(cols.groups) + cols.group_of[x]
        n_slots_c = torch.tensor([len(g.patterns) for g in cols.groups])[cols.group_of[x]]
        n_slots_r = torch.tensor([len(g.patterns) for g in rows.groups])[rows.group_of[y]]
        n_pos_r = torch.tensor(rows.count)[rows.group_of[y]]
        n_pos_c = torch.tensor(cols.count)[cols.group_of[x]]
        slot = rows.slot_of[y] * n_slots_c + cols.slot_of[x]
        position = rows.pos_of[y] * n_pos_c + cols.pos_of[x]
        if self.channels_last:
            within = position * (n_slots_r * n_slots_c) + slot
        else:
            within = slot * (n_pos_r * n_pos_c) + position
        # The biggest pair's result is gathered into every output pixel (its own or a dummy),
        # then the other pairs' pixels are copied over it: no concatenation of the results.
        combo, within = combo.flatten(), within.flatten()
        sizes = torch.bincount(combo, minlength=len(self._combos))
        self._primary = int(sizes.argmax())
        primary = combo == self._primary
        self.register_buffer("index", torch.where(primary, within, 0).to(device), persistent=False)
        self._others = []
        for j in range(len(self._combos)):
            dst = (combo == j).nonzero().flatten()
            if j == self._primary or len(dst) == 0:
                continue
            self.register_buffer(f"dst_{j}", dst.to(device), persistent=False)
            self.register_buffer(f"src_{j}", within[dst].to(device), persistent=False)
            self._others.append(j)

    def _choose_gemm_kernels(self, rows: DimPlan, cols: DimPlan, gemm: bool) -> None:
        """Wide layers, channels-last: the rare pairs (a few rows or columns) as one patch
        gather and one GEMM each, the primary pair as Winograd.

        A small oneDNN convolution re-lays out its whole kernel on every call, which costs more
        than the few dozen pixels of a rare pair at wide layers; below 256 channels the gathers
        and the GEMM cost what they save (``winograd.worth_it`` holds that rule).
        """
        self._patch_slices: dict[int, tuple[int, int]] = {}  # pair -> (first index, positions)
        self._pad_patches = False
        self.winograd = nn.ModuleDict()
        if not (self.channels_last and gemm and worth_it(self.in_channels, 3, 1)):
            return
        self._plan_patches(rows, cols, self.in_size, self.index.device)
        name, _, _, stride, padding = self._combos[self._primary]
        folded = getattr(self, f"weight_{name}")
        if supports(tuple(folded.shape[-2:]), stride, padding):
            self.winograd[name] = WinogradConv(
                folded,
                getattr(self, f"bias_{name}") if self.has_bias else None,
                1,
                padding,
            )

    def _plan_patches(
        self,
        rows: DimPlan,
        cols: DimPlan,
        in_size: tuple[int, int],
        device: torch.device,
    ) -> None:
        """Index of every rare pair's input patches into the flattened (H * W + 1 zero) input,
        and its kernels as one (taps * C_in, slots * C_out) matrix."""
        height, width = in_size
        flats: list[Tensor] = []
        start = 0
        for j, (name, *_rest) in enumerate(self._combos):
            if j == self._primary:
                continue
            gi, gj = (int(v) for v in name.split("_"))
            per_dim = []
            for plan, g, n_src in ((rows, gi, height), (cols, gj, width)):
                group, kf, n = plan.groups[g], plan.kf, plan.count[g]
                if group.gather is None:  # every position, stride 1, symmetric padding
                    src = torch.arange(n)[:, None] - group.padding + torch.arange(kf)
                else:
                    src = group.gather.view(n, kf)
                per_dim.append(torch.where((src >= 0) & (src < n_src), src, -1))
            r, c = per_dim  # (n_r, kf_r), (n_c, kf_c)
            flat = r[:, None, :, None] * width + c[None, :, None, :]
            flat = torch.where((r[:, None, :, None] < 0) | (c[None, :, None, :] < 0), -1, flat)
            flat = torch.where(flat < 0, height * width, flat).flatten()
            weight = getattr(self, f"weight_{name}")  # (slots * C_out, C_in, kf_r, kf_c)
            matrix = weight.permute(2, 3, 1, 0).reshape(-1, weight.shape[0]).contiguous()
            self.register_buffer(f"matrix_{name}", matrix, persistent=False)
            self._patch_slices[j] = (start, len(flat) // (r.shape[1] * c.shape[1]))
            start += len(flat)
            flats.append(flat)
        self.register_buffer(
            "patch_index",
            torch.cat(flats).to(device) if flats else torch.zeros(0, dtype=torch.long),
            persistent=False,
        )
        self._pad_patches = bool(flats) and bool((self.patch_index == height * width).any())

    def forward(self, s: Tensor) -> Tensor:
        if tuple(s.shape[-2:]) != self.in_size:
            raise ModelError(
                f"UpsampleConv planned for input {self.in_size}, got {tuple(s.shape[-2:])}"
            )
        batch, cout, cl = s.shape[0], self.out_channels, self.channels_last
        channels: Tensor | None = None
        if self.skip_silent:
            s, channels = drop_silent(s)
        parts: list[Tensor] = []
        patches: Tensor | None = None
        if self._patch_slices:
            flat = s.permute(0, 2, 3, 1).reshape(batch, s.shape[2] * s.shape[3], s.shape[1])
            if self._pad_patches:
                flat = torch.cat([flat, flat.new_zeros(batch, 1, s.shape[1])], 1)
            patches = index_rows(flat, 1, self.patch_index)
        for j, (name, gather_rows, gather_cols, stride, padding) in enumerate(self._combos):
            if j in self._patch_slices:
                assert patches is not None
                parts.append(self._gemm_part(patches, j, name, batch, channels))
                continue
            bias = getattr(self, f"bias_{name}") if self.has_bias else None
            if name in self.winograd:
                res = self.winograd[name](s, channels)
                parts.append(res.permute(0, 2, 3, 1).reshape(batch, -1, cout))
                continue
            inp = s
            if gather_rows:
                inp = _gather_dim(inp, 2, getattr(self, f"rows_{name}"), cl)
            if gather_cols:
                inp = _gather_dim(inp, 3, getattr(self, f"cols_{name}"), cl)
            weight = input_channels_of(getattr(self, f"weight_{name}"), channels)
            res = F.conv2d(inp, weight, bias, stride, padding)
            if cl:
                parts.append(res.permute(0, 2, 3, 1).reshape(batch, -1, cout))
            else:
                parts.append(res.reshape(batch, cout, -1))
        if cl:
            # a gather of whole pixels (runs of cout contiguous values)
            out = index_rows(parts[self._primary], 1, self.index)
            for j in self._others:
                src = index_rows(parts[j], 1, getattr(self, f"src_{j}"))
                out.index_copy_(1, getattr(self, f"dst_{j}"), src)
            return out.view(batch, *self.out_size, cout).permute(0, 3, 1, 2)
        # gather, not index_select: on a CPU, index_select along the last dim goes element by
        # element
        index = self.index.view(1, 1, -1).expand(batch, cout, -1)
        out = torch.gather(parts[self._primary], 2, index)
        for j in self._others:
            src = getattr(self, f"src_{j}").view(1, 1, -1).expand(batch, cout, -1)
            out.index_copy_(2, getattr(self, f"dst_{j}"), torch.gather(parts[j], 2, src))
        return out.view(batch, cout, *self.out_size)

    def _gemm_part(
        self, patches: Tensor, j: int, name: str, batch: int, channels: Tensor | None
    ) -> Tensor:
        """Rare pair ``j`` as (positions, taps * C_in) @ (taps * C_in, slots * C_out)."""
        first, positions = self._patch_slices[j]
        matrix = getattr(self, f"matrix_{name}")
        taps = matrix.shape[0] // self.in_channels
        if channels is not None:  # rows are (tap, channel)
            matrix = matrix.view(taps, self.in_channels, -1)
            matrix = index_rows(matrix, 1, channels).view(-1, matrix.shape[-1])
        rows = patches[:, first : first + positions * taps]
        rows = rows.reshape(batch, positions, taps * patches.shape[-1])
        res = torch.matmul(rows, matrix)
        if self.has_bias:
            res = res.add_(getattr(self, f"bias_{name}"))
        return res.view(batch, -1, self.out_channels)
