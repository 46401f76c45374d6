"""The whole network, fast: :class:`FastStereoSpike` runs a trained StereoSpike with the folded
decoder (:mod:`.plan`), fused units (:mod:`.unit`) and never-firing channels left out
(:mod:`.pruning`), in channels-last layout, thresholding and adding skips in place.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stereospike_ros.model.errors import ModelError
from stereospike_ros.model.fast.plan import SizePlan
from stereospike_ros.model.fast.pruning import ChannelMerge, KeptChannels, live_outputs
from stereospike_ros.model.fast.unit import FusedUnit
from stereospike_ros.model.network import ConvUnit, StereoSpike


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
        device = model.bottom.conv.weight.device
        # Every tensor holds only the channels that can be nonzero (None: all): the output
        # channels that never fire (a pruned checkpoint's) are never computed, and the
        # convolutions reading a tensor keep the weights of its channels only.
        computed: list[Tensor | None] = []  # every unit's live outputs
        kept = self._build_encoder(model, computed)
        channels = self._build_bottleneck(model, kept[-1], device, computed)
        decoder, heads = self._build_decoder(model, channels, kept, device, computed)
        self._kept = KeptChannels(
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
        self._plans: dict[tuple[int, int], SizePlan] = {}

    def _build_encoder(
        self, model: StereoSpike, computed: list[Tensor | None]
    ) -> list[Tensor | None]:
        """The encoder units; the channels each one's output holds."""
        self.encoder = nn.ModuleList()
        channels: Tensor | None = None
        kept: list[Tensor | None] = []
        for name in ("bottom", "conv1", "conv2", "conv3", "conv4"):
            unit = getattr(model, name)
            outputs = _live(unit, channels, computed)
            self.encoder.append(
                FusedUnit(unit, self._layout, self.gemm_kernels, inputs=channels, outputs=outputs)
            )
            channels = outputs
            kept.append(channels)
        return kept

    def _build_bottleneck(
        self,
        model: StereoSpike,
        channels: Tensor | None,
        device: torch.device,
        computed: list[Tensor | None],
    ) -> Tensor | None:
        """The residual blocks' units and sums; the channels the bottleneck's output holds."""
        layout, gemm = self._layout, self.gemm_kernels
        self.bottleneck = nn.ModuleList()
        self.residual = nn.ModuleList()
        for block in model.bottleneck:
            hidden = _live(block.unit1, channels, computed)
            outputs = _live(block.unit2, hidden, computed)
            self.bottleneck.append(
                FusedUnit(block.unit1, layout, gemm, inputs=channels, outputs=hidden)
            )
            self.bottleneck.append(
                FusedUnit(block.unit2, layout, gemm, inputs=hidden, outputs=outputs)
            )
            merge = ChannelMerge(outputs, channels, block.unit2.conv.out_channels, device)
            self.residual.append(merge)
            channels = merge.channels
        return channels

    def _build_decoder(
        self,
        model: StereoSpike,
        channels: Tensor | None,
        kept: list[Tensor | None],
        device: torch.device,
        computed: list[Tensor | None],
    ) -> tuple[list[tuple[Tensor | None, Tensor | None]], list[Tensor | None]]:
        """The decoder's neurons and skip sums (its convolutions are folded into each size's
        plan: only the neurons are used); per level, the (input, output) channels its
        convolution keeps and the channels its head reads."""
        self.post = nn.ModuleList()
        self.merge = nn.ModuleList()
        decoder: list[tuple[Tensor | None, Tensor | None]] = []
        heads: list[Tensor | None] = []
        for name, skip in zip(
            ("deconv4", "deconv3", "deconv2", "deconv1"), kept[3::-1], strict=True
        ):
            unit = getattr(model, name)
            outputs = _live(unit, channels, computed)
            decoder.append((channels, outputs))
            self.post.append(FusedUnit(unit, self._layout, False, conv=False))
            if model.config.skips:
                merge = ChannelMerge(outputs, skip, unit.conv.out_channels, device)
                self.merge.append(merge)
                channels = merge.channels
            else:
                channels = outputs
            heads.append(channels)
        return decoder, heads

    def prepare(self, size: tuple[int, int]) -> None:
        """Build (once) the folded plan for inputs of ``size`` = (H, W)."""
        size = (int(size[0]), int(size[1]))
        if size not in self._plans:
            with torch.no_grad():
                self._plans[size] = SizePlan(
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


def _live(unit: ConvUnit, inputs: Tensor | None, computed: list[Tensor | None]) -> Tensor | None:
    """:func:`live_outputs` of ``unit``, also appended to ``computed``."""
    computed.append(live_outputs(unit, inputs))
    return computed[-1]
