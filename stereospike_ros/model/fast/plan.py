"""The plan for one input size: which kernel runs each decoder convolution and head, and which
convolutions skip silent channels.

The rules are sizes, not timings: a kernel or a gather pays only above some number of channels
or multiply-accumulates, because the work it adds (transforms, gathers: memory-bound) grows with
the pixels while the work it saves grows with pixels times channels.
"""

from __future__ import annotations

from torch import nn

from stereospike_ros.model.fast.pruning import KeptChannels, narrow
from stereospike_ros.model.fast.tap_sum import TapSumConv
from stereospike_ros.model.fast.upsample_conv import UpsampleConv
from stereospike_ros.model.network import StereoSpike

#: Decoder convolutions over at least this many input channels run as :class:`TapSumConv` on
#: the CPU. It makes fewer products than the folding (25 per source pixel against about 43 at
#: 2.18x), but adds gathered sums that grow with the pixels and output channels, not with the
#: input channels: the products it saves outweigh them only at wide inputs (the 512-channel
#: deconv4, or the ~500 a pruned checkpoint keeps there; at 256 channels folding wins).
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


class SizePlan(nn.Module):
    """The folded decoder and heads for one input size, and which encoder and bottleneck units
    skip silent channels at that size (``skip_units``)."""

    def __init__(
        self,
        model: StereoSpike,
        size: tuple[int, int],
        channels_last: bool,
        gemm: bool,
        skip: bool,
        kept: KeptChannels,
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
            weight, bias = narrow(conv.weight, conv.bias, inputs, outputs)
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
                weight, bias = narrow(head.weight, head.bias, inputs, None)
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
