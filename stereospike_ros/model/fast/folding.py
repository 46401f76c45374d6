"""Folding a convolution over a nearest-neighbour upsampled tensor down to the source resolution.

Each output position's kernel taps read a pattern of source positions (``floor(dst * in / out)``
as torch computes it; the sizes here are not exactly 2x, so the pattern changes from row to
row). Taps reading the same source position are summed into one folded tap. A dimension's plan
(:class:`DimPlan`) groups the output positions by pattern: frequent ("dense") patterns are
evaluated at every source position in one stacked convolution, rare ones on gathered positions
only. :func:`plan_folding` picks, for rows and columns, the grouping of the rare patterns that
costs the fewest multiply-accumulates.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from stereospike_ros.model.errors import ModelError

#: A pattern counts as dense (evaluated at every source position) when at least this fraction
#: of source positions starts an output window with it.
DENSE_FRACTION = 0.5
#: What one extra convolution call costs, in multiply-accumulates (dispatch, threads, gathers):
#: rare patterns get their own convolution when that saves more than this.
CALL_COST_MACS = 2_000_000


def nearest_source_index(n_in: int, n_out: int, device: torch.device | str = "cpu") -> Tensor:
    """Source index of each of ``n_out`` positions of ``F.interpolate(mode="nearest")``.

    Asked of torch itself (interpolating ``arange``), so the map is exactly the one the
    reference forward uses on that device, whatever rounding its kernel applies.
    """
    probe = torch.arange(n_in, dtype=torch.float32, device=device).view(1, 1, n_in, 1)
    index = F.interpolate(probe, size=(n_out, 1), mode="nearest").view(-1)
    return index.round().long().cpu()


@dataclass
class Group:
    """Output positions of one dimension that share a convolution."""

    patterns: list[tuple[int, ...]]
    gather: Tensor | None  # source positions to gather (None: dense, all positions)
    stride: int
    padding: int


@dataclass
class DimPlan:
    """How the output positions of one dimension (rows or columns) are computed."""

    groups: list[Group]
    group_of: Tensor  # per output position: group number
    slot_of: Tensor  # per output position: pattern number inside its group
    pos_of: Tensor  # per output position: position in the group's convolution output
    kf: int  # folded kernel size along this dimension
    count: list[int]  # per group: size of its convolution output along this dimension


def plan_dim(n_in: int, n_up: int, k: int, src: Tensor, merge_sparse: bool) -> DimPlan:
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
    groups: list[Group] = []
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
        groups.append(Group(dense, None, 1, pad))
    for chosen in [sparse] if merge_sparse and sparse else [[p] for p in sparse]:
        members = [y for y in range(n_out) if patterns[y] in chosen]
        rows = torch.tensor([int(bases[y]) for y in members], dtype=torch.long)
        gather = (rows[:, None] + torch.arange(kf)).clamp(max=n_in - 1).flatten()
        for i, y in enumerate(members):
            group_of[y] = len(groups)
            slot_of[y] = chosen.index(patterns[y])
            pos_of[y] = i
        count.append(len(members))
        groups.append(Group(chosen, gather, kf, 0))
    return DimPlan(groups, group_of, slot_of, pos_of, kf, count)


def fold_taps(weight: Tensor, dim: int, pattern: tuple[int, ...], kf: int) -> Tensor:
    """Sum the kernel taps along ``dim`` that read the same source offset ``pattern[i]``."""
    shape = list(weight.shape)
    shape[dim] = kf
    out = weight.new_zeros(shape)
    for tap, offset in enumerate(pattern):
        out.select(dim, offset).add_(weight.select(dim, tap))
    return out


def folding_cost(rows: DimPlan, cols: DimPlan, cin: int, cout: int) -> float:
    """Multiply-accumulates of a row and a column plan, plus :data:`CALL_COST_MACS` per
    convolution call (one per pair of a row group and a column group)."""
    total = 0.0
    for gr, nr in zip(rows.groups, rows.count, strict=True):
        for gc, nc in zip(cols.groups, cols.count, strict=True):
            slots = len(gr.patterns) * len(gc.patterns)
            total += nr * nc * slots * rows.kf * cols.kf * cin * cout
            total += CALL_COST_MACS
    return total


def plan_folding(
    weight_shape: tuple[int, ...],
    in_size: tuple[int, int],
    up_size: tuple[int, int],
    device: torch.device,
) -> tuple[DimPlan, DimPlan]:
    """The cheapest row and column plans (:func:`folding_cost`) for a ``(C_out, C_in, kh, kw)``
    kernel reading ``in_size`` upsampled to ``up_size``: rare patterns in one group or one
    group each, chosen per dimension."""
    cout, cin, kh, kw = weight_shape
    src_r = nearest_source_index(in_size[0], up_size[0], device)
    src_c = nearest_source_index(in_size[1], up_size[1], device)
    candidates = (
        (
            plan_dim(in_size[0], up_size[0], kh, src_r, merge_rows),
            plan_dim(in_size[1], up_size[1], kw, src_c, merge_cols),
        )
        for merge_rows in (True, False)
        for merge_cols in (True, False)
    )
    return min(candidates, key=lambda plan: folding_cost(*plan, cin, cout))
