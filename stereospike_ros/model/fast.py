"""Exact fast forward of a trained StereoSpike: same weights, same outputs, less arithmetic.

Two thirds of the network's 27.5 G dense multiply-accumulates are decoder convolutions that
read a nearest-neighbour upsampled tensor, so every 5 x 5 window reads only 2-3 distinct source
rows and columns. :class:`UpsampleConv` computes ``conv(interpolate(s, size, "nearest"))`` at
the source resolution instead: for each output row it finds the pattern of source rows its
kernel taps read (``floor(dst * in / out)`` as torch computes it; the sizes here are not exactly
2x, so the pattern changes from row to row), adds up the kernel taps that read the same source
pixel, and runs a few small convolutions with the folded kernels. Frequent ("dense") patterns
are evaluated at every source position in one stacked convolution; rare ones (a handful of
rows where the scale is not exactly 2) on gathered rows or columns only. A final gather puts
every output pixel together. At 2x this computes 9 taps per output pixel instead of 25.

In channels-last layout the rare patterns' pixels are gathered as patches and multiplied by
their folded kernels with one GEMM per pattern pair (a small oneDNN convolution re-lays out its
whole kernel on every call). On a CPU in float32, :class:`TapSumConv` replaces the folding for
the 512-channel deconv4, and Winograd (:mod:`~stereospike_ros.model.winograd`) the widest
stride-1 folded convolutions, the encoder's conv3/conv4 and the bottleneck (``gemm_kernels``).

:class:`FastStereoSpike` runs the whole network that way, in channels-last layout, thresholding
in place (``conv.ge_(1)``: no boolean copy, no extra float copy) and adding skips in place.
Outputs equal the reference forward up to float rounding of the folded sums (bit-equal when
the weights are dyadic, see ``test/test_model_fast_exact.py``).

A trained network leaves many channels without a spike in a window; on a CPU the wide
convolutions (:func:`skipping_pays`) gather the input channels that hold one and convolve
only those (``skip_silent``): the dropped terms are zeros, so the outputs do not change, and
the time depends on the spikes.

A channel with no weight and a bias below the threshold can never fire, whatever the window:
a pruned checkpoint (:mod:`~stereospike_ros.model.prune`) has many. Every tensor then holds
only the channels that can be nonzero (:func:`live_outputs`), the never-firing ones are never
computed, the convolutions reading a tensor keep the weights of its channels only, and the
residual and skip sums add channels into place (:class:`_Merge`). Exact as well.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stereospike_ros.model.errors import ModelError
from stereospike_ros.model.gather import (
    add_channels_,
    drop_silent,
    index_rows,
    put_channels,
    take_channels,
)
from stereospike_ros.model.network import ConvUnit, StatelessIF, StereoSpike
from stereospike_ros.model.winograd import WinogradConv, supports, worth_it

#: A pattern counts as dense (evaluated at every source position) when at least this fraction
#: of source positions starts an output window with it.
DENSE_FRACTION = 0.5
#: What one extra convolution call costs, in multiply-accumulates (dispatch, threads, gathers):
#: rare patterns get their own convolution when that saves more than this.
CALL_COST_MACS = 2_000_000
#: Decoder convolutions over at least this many channels run as :class:`TapSumConv` on the
#: CPU (measured at 260 x 346: 43 vs 73 ms at 512 channels, 53 vs 41 ms at 256; 42 vs 74 ms
#: at the 505 a pruned checkpoint keeps).
TAP_SUM_CHANNELS = 384
#: Silent channels are skipped in convolutions with at least this many (input, output) channel
#: pairs and this many dense multiply-accumulates at the planned input size: in smaller ones
#: the gathers cost about what the dropped channels save, more when most channels fire
#: (measured on trained checkpoints of widths 0.25-1; docs/inference.md, *Skipping silent*).
SKIP_MIN_PAIRS = 8192
SKIP_MIN_MACS = 500_000_000


def skipping_pays(
    conv: nn.Conv2d, out_size: tuple[int, int], channels: tuple[int, int] | None = None
) -> bool:
    """Whether skipping the silent input channels of ``conv`` (output ``out_size``) is worth
    its gathers; ``channels`` = (in, out) it keeps when some can never be nonzero."""
    cin, cout = channels or (conv.in_channels, conv.out_channels)
    pairs = cin * cout
    kernel = conv.kernel_size[0] * conv.kernel_size[1]
    macs = pairs * kernel * out_size[0] * out_size[1]
    return pairs >= SKIP_MIN_PAIRS and macs >= SKIP_MIN_MACS


def nearest_source_index(n_in: int, n_out: int, device: torch.device | str = "cpu") -> Tensor:
    """Source index of each of ``n_out`` positions of ``F.interpolate(mode="nearest")``.

    Asked of torch itself (interpolating ``arange``), so the map is exactly the one the
    reference forward uses on that device, whatever rounding its kernel applies.
    """
    probe = torch.arange(n_in, dtype=torch.float32, device=device).view(1, 1, n_in, 1)
    index = F.interpolate(probe, size=(n_out, 1), mode="nearest").view(-1)
    return index.round().long().cpu()


@dataclass
class _Group:
    """Output positions of one dimension that share a convolution."""

    patterns: list[tuple[int, ...]]
    gather: Tensor | None  # source positions to gather (None: dense, all positions)
    stride: int
    padding: int


@dataclass
class _DimPlan:
    groups: list[_Group]
    group_of: Tensor  # per output position: group number
    slot_of: Tensor  # per output position: pattern number inside its group
    pos_of: Tensor  # per output position: position in the group's convolution output
    kf: int  # folded kernel size along this dimension
    count: list[int]  # per group: size of its convolution output along this dimension


def _plan_dim(n_in: int, n_up: int, k: int, src: Tensor, merge_sparse: bool) -> _DimPlan:
    """Group the output positions of one dimension: dense patterns together (stride 1 over all
    sources), rare ones gathered, either all in one group (``merge_sparse``: one convolution
    computing every rare pattern at every gathered position) or one group per pattern."""
    n_out = n_up - k + 1
    if n_out < 1:
        raise ModelError(f"upsampled size {n_up} is smaller than the {k}-tap kernel")
    bases = src[:n_out]
    patterns = [tuple((src[y : y + k] - src[y]).tolist()) for y in range(n_out)]
    kf = max(p[-1] for p in patterns) + 1
    counts = Counter(patterns)
    dense = sorted(p for p, c in counts.items() if c >= DENSE_FRACTION * n_in)
    sparse = sorted(p for p in counts if p not in dense)
    groups: list[_Group] = []
    group_of = torch.empty(n_out, dtype=torch.long)
    slot_of = torch.empty(n_out, dtype=torch.long)
    pos_of = torch.empty(n_out, dtype=torch.long)
    count: list[int] = []
    if dense:
        members = [y for y in range(n_out) if patterns[y] in dense]
        # Bases near the end with a short pattern may start a window past n_in - kf; symmetric
        # padding keeps them inside the convolution output (shifted by the padding).
        pad = max(0, max(int(bases[y]) + kf - n_in for y in members))
        for y in members:
            group_of[y] = len(groups)
            slot_of[y] = dense.index(patterns[y])
            pos_of[y] = int(bases[y]) + pad
        count.append(n_in + 2 * pad - kf + 1)
        groups.append(_Group(dense, None, 1, pad))
    for chosen in [sparse] if merge_sparse and sparse else [[p] for p in sparse]:
        members = [y for y in range(n_out) if patterns[y] in chosen]
        rows = torch.tensor([int(bases[y]) for y in members], dtype=torch.long)
        gather = (rows[:, None] + torch.arange(kf)).clamp(max=n_in - 1).flatten()
        for i, y in enumerate(members):
            group_of[y] = len(groups)
            slot_of[y] = chosen.index(patterns[y])
            pos_of[y] = i
        count.append(len(members))
        groups.append(_Group(chosen, gather, kf, 0))
    return _DimPlan(groups, group_of, slot_of, pos_of, kf, count)


def _fold(weight: Tensor, dim: int, pattern: tuple[int, ...], kf: int) -> Tensor:
    """Sum the kernel taps along ``dim`` that read the same source offset ``pattern[i]``."""
    shape = list(weight.shape)
    shape[dim] = kf
    out = weight.new_zeros(shape)
    for tap, offset in enumerate(pattern):
        out.select(dim, offset).add_(weight.select(dim, tap))
    return out


def _gather(x: Tensor, dim: int, index: Tensor | None, channels_last: bool) -> Tensor:
    """``x.index_select(dim, index)``, keeping the memory layout."""
    if index is None:
        return x
    if not channels_last:
        return x.index_select(dim, index)
    return index_rows(x.permute(0, 2, 3, 1), dim - 1, index).permute(0, 3, 1, 2)


def _conv_weight(weight: Tensor, channels: Tensor | None) -> Tensor:
    """A channels-last conv weight restricted to the input ``channels`` (all when None): its
    input channels are the contiguous dimension, as an activation's are."""
    return weight if channels is None else take_channels(weight, channels)


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


def _narrow(
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


class _Merge(nn.Module):
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
        cout, _, kh, kw = weight.shape
        self.in_size = (int(in_size[0]), int(in_size[1]))
        self.out_size = (up_size[0] - kh + 1, up_size[1] - kw + 1)
        self.out_channels, self.in_channels = cout, int(weight.shape[1])
        self.channels_last = channels_last
        device = weight.device
        src_r = nearest_source_index(in_size[0], up_size[0], device)
        src_c = nearest_source_index(in_size[1], up_size[1], device)
        cin = weight.shape[1]

        def cost(plan: tuple[_DimPlan, _DimPlan]) -> float:
            r, c = plan
            total = 0.0
            for gr, nr in zip(r.groups, r.count, strict=True):
                for gc, nc in zip(c.groups, c.count, strict=True):
                    slots = len(gr.patterns) * len(gc.patterns)
                    total += nr * nc * slots * r.kf * c.kf * cin * cout
                    total += CALL_COST_MACS
            return total

        rows, cols = min(
            (
                (
                    _plan_dim(in_size[0], up_size[0], kh, src_r, mr),
                    _plan_dim(in_size[1], up_size[1], kw, src_c, mc),
                )
                for mr in (True, False)
                for mc in (True, False)
            ),
            key=cost,
        )
        layout = torch.channels_last if channels_last else torch.contiguous_format
        # (name, gather rows?, gather cols?, stride, padding) per pair of row and column groups
        self._combos: list[tuple[str, bool, bool, tuple[int, int], tuple[int, int]]] = []
        # Taps first, (k, k, cout, cin), so that folding adds whole contiguous (cout, cin) blocks;
        # float64 sums of at most k * k taps round once, to the nearest float32.
        w64 = weight.detach().double().permute(2, 3, 0, 1).contiguous()
        row_folded = {p: _fold(w64, 0, p, rows.kf) for g in rows.groups for p in g.patterns}
        for gi, gr in enumerate(rows.groups):
            for gj, gc in enumerate(cols.groups):
                kernels = [
                    _fold(row_folded[pr], 1, pc, cols.kf).permute(2, 3, 0, 1)
                    for pr in gr.patterns
                    for pc in gc.patterns
                ]
                slots = len(kernels)
                # Output channel order: slot-major for channels-last (a pixel's slots are
                # contiguous runs of cout), channel-major for NCHW (a channel's slots are planes).
                stacked = torch.stack(kernels, dim=0 if channels_last else 1)
                stacked = stacked.reshape(slots * cout, *stacked.shape[2:])
                name = f"{gi}_{gj}"
                self.register_buffer(
                    f"weight_{name}",
                    stacked.to(weight.dtype).contiguous(memory_format=layout),
                    persistent=False,
                )
                if bias is not None:
                    b = bias.detach()
                    b = b.repeat(slots) if channels_last else b.repeat_interleave(slots)
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
        self.has_bias = bias is not None
        # Flat index of every output pixel into the concatenated per-pair results.
        y = torch.arange(self.out_size[0])[:, None]
        x = torch.arange(self.out_size[1])[None, :]
        combo = rows.group_of[y] * len(cols.groups) + cols.group_of[x]
        n_slots_c = torch.tensor([len(g.patterns) for g in cols.groups])[cols.group_of[x]]
        n_slots_r = torch.tensor([len(g.patterns) for g in rows.groups])[rows.group_of[y]]
        n_pos_r = torch.tensor(rows.count)[rows.group_of[y]]
        n_pos_c = torch.tensor(cols.count)[cols.group_of[x]]
        slot = rows.slot_of[y] * n_slots_c + cols.slot_of[x]
        position = rows.pos_of[y] * n_pos_c + cols.pos_of[x]
        if channels_last:
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
        # Wide layers, channels-last: the rare pairs (a few rows or columns) as one patch gather
        # and one GEMM each (a small oneDNN convolution re-lays out its whole kernel per call:
        # 2-10 ms at 512 channels for a few dozen pixels; no gain below 256 channels, measured);
        # the primary pair as Winograd.
        self._patch_slices: dict[int, tuple[int, int]] = {}  # pair -> (first index, positions)
        self._pad_patches = False
        self.winograd = nn.ModuleDict()
        if channels_last and gemm and worth_it(cin, 3, 1):
            self._plan_patches(rows, cols, in_size, device)
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
        rows: _DimPlan,
        cols: _DimPlan,
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
                inp = _gather(inp, 2, getattr(self, f"rows_{name}"), cl)
            if gather_cols:
                inp = _gather(inp, 3, getattr(self, f"cols_{name}"), cl)
            weight = _conv_weight(getattr(self, f"weight_{name}"), channels)
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
        # gather, not index_select: index_select along the last dim is ~15x slower on CPU
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


class _Unit(nn.Module):
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
        weight, bias = _narrow(c.weight, c.bias, inputs, outputs)
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
        weight = _conv_weight(self.weight, channels)
        return self.post(F.conv2d(x, weight, self.bias, self.stride, self.padding))


@dataclass
class _KeptChannels:
    """The channels each convolution keeps (None: all), from :func:`live_outputs`."""

    units: list[tuple[int, int]]  # encoder and bottleneck: (in, out) counts kept
    decoder: list[tuple[Tensor | None, Tensor | None]]  # (inputs, outputs) per level 4..1
    heads: list[Tensor | None]  # inputs per level 4..1


class _SizePlan(nn.Module):
    """The folded decoder and heads for one input size, and which encoder and bottleneck units
    skip silent channels at that size (``skip_units``)."""

    def __init__(
        self,
        model: StereoSpike,
        size: tuple[int, int],
        channels_last: bool,
        gemm: bool,
        skip: bool,
        kept: _KeptChannels,
    ) -> None:
        super().__init__()
        H, W = size
        # Encoder sizes as the reference computes them (5x5, padding 2, stride 2: ceil halving).
        sizes = [(H, W)]
        for _ in range(4):
            h, w = sizes[-1]
            sizes.append(((h - 1) // 2 + 1, (w - 1) // 2 + 1))
        # Never the first layer: its input, event counts, need not be non-negative.
        encoder = [getattr(model, n).conv for n in ("conv1", "conv2", "conv3", "conv4")]
        self.skip_units = [False] + [
            skip and skipping_pays(c, sizes[i + 1], kept.units[i + 1])
            for i, c in enumerate(encoder)
        ]
        bottleneck = [u.conv for block in model.bottleneck for u in (block.unit1, block.unit2)]
        self.skip_units += [
            skip and skipping_pays(c, sizes[4], kept.units[5 + i]) for i, c in enumerate(bottleneck)
        ]
        self.decoder = nn.ModuleList()
        for level, name, (inputs, outputs) in zip(
            (4, 3, 2, 1), ("deconv4", "deconv3", "deconv2", "deconv1"), kept.decoder, strict=True
        ):
            conv = getattr(model, name).conv
            weight, bias = _narrow(conv.weight, conv.bias, inputs, outputs)
            target = sizes[level - 1]
            up_size = (target[0] + 4, target[1] + 4)
            pairs = (int(weight.shape[1]), int(weight.shape[0]))
            skipping = skip and skipping_pays(conv, target, pairs)
            if gemm and weight.shape[1] >= TAP_SUM_CHANNELS:
                self.decoder.append(TapSumConv(weight, bias, sizes[level], up_size, skipping))
            else:
                self.decoder.append(
                    UpsampleConv(weight, bias, sizes[level], up_size, channels_last, gemm, skipping)
                )
        self.heads = nn.ModuleDict()
        for level, inputs in zip((4, 3, 2, 1), kept.heads, strict=True):
            name = f"depth{level}"
            if name in model.predict:
                head = model.predict[name]
                weight, bias = _narrow(head.weight, head.bias, inputs, None)
                self.heads[name] = UpsampleConv(
                    weight,
                    bias,
                    sizes[level - 1],
                    (H + 2, W + 2),
                    channels_last,
                    gemm,
                    # one output channel: a handful of products per input value, fewer than
                    # the gather of the active channels costs
                    False,
                )


class FastStereoSpike(nn.Module):
    """Exact fast forward of a :class:`StereoSpike` (any variant), sharing nothing mutable.

    ``forward(x) -> depth`` for ``(B, C, H, W)`` float counts; folded plans are built on first
    use of each input size (or ahead with :meth:`prepare`) and kept. ``gemm_kernels`` (default:
    on for float32 CPU weights, channels-last only) turns on the Winograd / tap-sum GEMMs.
    ``skip_silent`` (default: on for spiking networks on a CPU, channels-last only, unless
    some channels can never fire, ``narrowed``): the wide convolutions (:func:`skipping_pays`
    at the planned size) convolve only the input channels that hold a spike anywhere in the
    batch.
    """

    def __init__(
        self,
        model: StereoSpike,
        channels_last: bool = True,
        gemm_kernels: bool | None = None,
        skip_silent: bool | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, StereoSpike):
            raise ModelError(f"FastStereoSpike needs a StereoSpike, got {type(model).__name__}")
        if model.training:
            raise ModelError("FastStereoSpike computes inference only: call model.eval() first")
        self.config = model.config
        self.channels_last = channels_last
        self._layout = torch.channels_last if channels_last else torch.contiguous_format
        self._source = model
        if gemm_kernels is None:
            weight = model.bottom.conv.weight
            gemm_kernels = weight.device.type == "cpu" and weight.dtype == torch.float32
        self.gemm_kernels = bool(gemm_kernels and channels_last)
        layout, gemm = self._layout, self.gemm_kernels
        device = model.bottom.conv.weight.device
        # Every tensor holds only the channels that can be nonzero (``channels``, None: all):
        # the output channels that never fire (a pruned checkpoint's) are never computed, and
        # the convolutions reading a tensor keep the weights of its channels only.
        self.encoder = nn.ModuleList()
        channels: Tensor | None = None
        kept: list[Tensor | None] = []
        computed: list[Tensor | None] = []  # every unit's live outputs

        def live(unit: ConvUnit, inputs: Tensor | None) -> Tensor | None:
            computed.append(live_outputs(unit, inputs))
            return computed[-1]

        for name in ("bottom", "conv1", "conv2", "conv3", "conv4"):
            unit = getattr(model, name)
            outputs = live(unit, channels)
            self.encoder.append(_Unit(unit, layout, gemm, inputs=channels, outputs=outputs))
            channels = outputs
            kept.append(channels)
        self.bottleneck = nn.ModuleList()
        self.residual = nn.ModuleList()
        for block in model.bottleneck:
            hidden = live(block.unit1, channels)
            outputs = live(block.unit2, hidden)
            self.bottleneck.append(
                _Unit(block.unit1, layout, gemm, inputs=channels, outputs=hidden)
            )
            self.bottleneck.append(_Unit(block.unit2, layout, gemm, inputs=hidden, outputs=outputs))
            merge = _Merge(outputs, channels, block.unit2.conv.out_channels, device)
            self.residual.append(merge)
            channels = merge.channels
        # Their convolutions are folded into the plan: only the neurons are used.
        self.post = nn.ModuleList()
        self.merge = nn.ModuleList()
        decoder: list[tuple[Tensor | None, Tensor | None]] = []
        heads: list[Tensor | None] = []
        for name, skip in zip(
            ("deconv4", "deconv3", "deconv2", "deconv1"), kept[3::-1], strict=True
        ):
            unit = getattr(model, name)
            outputs = live(unit, channels)
            decoder.append((channels, outputs))
            self.post.append(_Unit(unit, layout, False, conv=False))
            if model.config.skips:
                merge = _Merge(outputs, skip, unit.conv.out_channels, device)
                self.merge.append(merge)
                channels = merge.channels
            else:
                channels = outputs
            heads.append(channels)
        self._kept = _KeptChannels(
            [u.channels for u in (*self.encoder, *self.bottleneck)], decoder, heads
        )
        # some output channel can never fire (every narrowed tensor comes from one)
        self.narrowed = any(c is not None for c in computed)
        if skip_silent is None:
            # Pruned networks (channels that never fire) leave few silent per window: the
            # gathers then cost more than they save (measured, docs/inference.md *Pruning*).
            skip_silent = model.bottom.conv.weight.device.type == "cpu" and not self.narrowed
        # Only spikes and their sums are known to be non-negative (BatchNorm outputs are not).
        self.skip_silent = bool(skip_silent and channels_last and model.config.spiking)
        self._plans: dict[tuple[int, int], _SizePlan] = {}

    def prepare(self, size: tuple[int, int]) -> None:
        """Build (once) the folded plan for inputs of ``size`` = (H, W)."""
        size = (int(size[0]), int(size[1]))
        if size not in self._plans:
            with torch.no_grad():
                self._plans[size] = _SizePlan(
                    self._source,
                    size,
                    self.channels_last,
                    self.gemm_kernels,
                    self.skip_silent,
                    self._kept,
                )

    def forward(self, x: Tensor) -> Tensor:
        self._source._check_input(x)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        self.prepare(size)
        plan = self._plans[size]
        x = x.contiguous(memory_format=self._layout)
        skips = self.config.skips
        skip_unit = plan.skip_units
        bottom, c1, c2, c3, c4 = self.encoder
        e0 = bottom(x)
        e1 = c1(e0, skip_unit[1])
        e2 = c2(e1, skip_unit[2])
        e3 = c3(e2, skip_unit[3])
        z = c4(e3, skip_unit[4])
        for i, residual in enumerate(self.residual):
            u1, u2 = self.bottleneck[2 * i], self.bottleneck[2 * i + 1]
            z = residual(u2(u1(z, skip_unit[5 + 2 * i]), skip_unit[6 + 2 * i]), z)
        s = z
        sums = []
        for k, (up, unit, skip) in enumerate(
            zip(plan.decoder, self.post, (e3, e2, e1, e0), strict=True)
        ):
            d = unit.post(up(s))
            s = self.merge[k](d, skip) if skips else d
            sums.append(s)
        potential: Tensor | None = None
        for name, s in zip(("depth4", "depth3", "depth2", "depth1"), sums, strict=True):
            if name in plan.heads:
                p = plan.heads[name](s)
                potential = p if potential is None else potential.add_(p)
        assert potential is not None  # head 1 is always present
        return potential.contiguous()
