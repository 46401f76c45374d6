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
whole kernel on every call, which costs more than a few rows of pixels). On a CPU in float32,
:class:`TapSumConv` replaces the folding for the 512-channel deconv4, and Winograd
(:mod:`~stereospike_ros.model.winograd`) the widest stride-1 folded convolutions, the
encoder's conv3/conv4 and the bottleneck (``gemm_kernels``).

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
residual and skip sums add channels into place (``pruning.ChannelMerge``). Exact as well.

Modules, from the lowest: ``folding`` (which source rows and columns each output reads, folded
kernels), ``upsample_conv`` (:class:`UpsampleConv`), ``tap_sum`` (:class:`TapSumConv`),
``pruning`` (channels that can never fire), ``unit`` (a conv unit with its neuron fused),
``plan`` (per input size: which kernel runs where, which convolutions skip silent channels, and
the rules that decide it), ``network`` (:class:`FastStereoSpike`). They import each other
directly; this package only re-exports for users.
"""

from stereospike_ros.model.fast.folding import nearest_source_index
from stereospike_ros.model.fast.network import FastStereoSpike
from stereospike_ros.model.fast.plan import skipping_pays
from stereospike_ros.model.fast.pruning import live_outputs, never_fire
from stereospike_ros.model.fast.tap_sum import TapSumConv
from stereospike_ros.model.fast.upsample_conv import UpsampleConv

__all__ = [
    "FastStereoSpike",
    "TapSumConv",
    "UpsampleConv",
    "live_outputs",
    "nearest_source_index",
    "never_fire",
    "skipping_pays",
]
