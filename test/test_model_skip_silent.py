"""Skipping silent channels (the CPU ``exact`` path) changes no output.

A convolution over channels that hold no spike adds zeros, so dropping them is exact: with
dyadic weights every sum is exact in any order, and outputs must be bit-equal to the reference.
The networks here have channels silenced on purpose (a bias far below the threshold), as a
trained network does on its own, and inputs where every channel, some or none fire.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from test_model_fast_exact import _counts, _dyadic_
from test_model_winograd import DIRECT, _dyadic

from stereospike_ros.model import build_model
from stereospike_ros.model.fast import FastStereoSpike, TapSumConv, UpsampleConv
from stereospike_ros.model.gather import active_channels, index_rows, take_channels
from stereospike_ros.model.inference import compile_for_inference
from stereospike_ros.model.winograd import WinogradConv

CL = torch.channels_last


def _silence_(
    model: torch.nn.Module, fraction: float = 0.5, seed: int = 7
) -> dict[str, torch.Tensor]:
    """Make ``fraction`` of the output channels of every unit but the last decoder one never
    fire (all-negative weights over non-negative spikes never reach the threshold); returns
    the silenced channels per unit. Weights stay dyadic."""
    g = torch.Generator().manual_seed(seed)
    silenced = {}
    names = ["conv1", "conv2", "conv3", "conv4", "deconv4", "deconv3", "deconv2"]
    units = {n: getattr(model, n) for n in names}
    for i, block in enumerate(model.bottleneck):
        units[f"bottleneck.{i}.unit1"] = block.unit1
    with torch.no_grad():
        for name, unit in units.items():
            out = unit.conv.out_channels
            chosen = torch.randperm(out, generator=g)[: int(out * fraction)].sort().values
            w = unit.conv.weight
            w[chosen] = -w[chosen].abs() - 1 / 64
            silenced[name] = chosen
    return silenced


@pytest.mark.parametrize("shape,dim", [((7, 5), 0), ((1, 9, 4), 1), ((2, 3, 9, 5), 2), ((3, 8), 1)])
def test_index_rows_is_index_select(shape, dim):
    x = torch.randn(shape)
    index = torch.tensor([4, 0, 2, 2, 1])
    assert torch.equal(index_rows(x, dim, index), x.index_select(dim, index))


def test_active_channels_and_take_channels():
    x = torch.zeros(2, 6, 5, 7)
    x[1, 2, 4, 6] = 1.0
    x[0, 5, 0, 0] = 3.0
    x = x.contiguous(memory_format=CL)
    channels = active_channels(x)
    assert channels.tolist() == [0, 2, 5]  # channel 0 is kept even when silent
    taken = take_channels(x, channels)
    assert taken.is_contiguous(memory_format=CL)
    assert torch.equal(taken, x[:, [0, 2, 5]])
    assert active_channels(torch.zeros(1, 4, 3, 3)).tolist() == [0]


@pytest.mark.parametrize("space_to_depth", [False, True])
def test_winograd_on_the_active_channels_only(gemm_everywhere, space_to_depth):
    k, stride, padding = (5, 2, 2) if space_to_depth else (3, 1, 1)
    weight, bias = _dyadic((7, 9, k, k), seed=k), _dyadic((7,), seed=2)
    x = _counts((2, 9, 13, 17), multi=True, seed=4)
    x[:, [1, 4, 5, 8]] = 0
    x = x.contiguous(memory_format=CL)
    channels = active_channels(x)
    assert channels.tolist() == [0, 2, 3, 6, 7]
    conv = WinogradConv(weight, bias, stride, padding)
    got = conv(take_channels(x, channels), channels)
    assert torch.equal(got, F.conv2d(x, weight, bias, stride, padding))


@pytest.mark.parametrize("module", ["upsample", "upsample-gemm", "tap-sum"])
def test_upsample_convolutions_on_the_active_channels_only(gemm_everywhere, module):
    in_size, up_size = (17, 22), (37, 48)  # rare rows and columns: patch GEMMs too
    weight, bias = _dyadic((6, 8, 5, 5), seed=5), _dyadic((6,), seed=3)
    s = _counts((2, 8, *in_size), multi=True, seed=9)
    s[:, [0, 3, 4, 7]] = 0
    expected = F.conv2d(F.interpolate(s, size=up_size, mode="nearest"), weight, bias)
    if module == "tap-sum":
        conv = TapSumConv(weight, bias, in_size, up_size, skip_silent=True)
    else:
        gemm = module == "upsample-gemm"
        conv = UpsampleConv(weight, bias, in_size, up_size, True, gemm, skip_silent=True)
        assert bool(conv._patch_slices) == gemm
    got = conv(s.contiguous(memory_format=CL))
    assert torch.equal(got, expected)


@pytest.mark.parametrize("gemm", [False, True])
@pytest.mark.parametrize("activity", ["lively", "silent-input", "silenced-channels"])
def test_network_skipping_silent_channels_is_bit_equal(
    gemm_everywhere, skip_everywhere, gemm, activity
):
    model = _dyadic_(build_model("stereospike", width=0.125, heads=(1, 2, 3, 4)))
    if activity == "silenced-channels":
        _silence_(model)
    x = _counts((2, 4, 37, 53), multi=True)
    if activity == "silent-input":
        x = torch.zeros_like(x)
    fast = FastStereoSpike(model, gemm_kernels=gemm, skip_silent=True)
    dense = FastStereoSpike(model, gemm_kernels=gemm, skip_silent=False)
    assert fast.skip_silent and not dense.skip_silent
    fast.prepare((37, 53))
    plan = fast._plans[(37, 53)]
    skipping = plan.skip_units + [d.skip_silent for d in plan.decoder]
    assert skipping == [False] + [True] * 12  # all but the first layer
    dense.prepare((37, 53))
    assert not any(dense._plans[(37, 53)].skip_units)
    with torch.inference_mode():
        out = model(x, return_all=True)
        got = fast(x)
    assert torch.equal(got, out.depth)
    assert torch.equal(got, dense(x))
    if activity == "silenced-channels":
        # what the skipping rests on: the silenced channels are silent in the spike maps
        for layer in ("conv2", "conv3", "deconv3"):
            assert len(active_channels(out.spikes[layer].contiguous(memory_format=CL))) < (
                0.6 * out.spikes[layer].shape[1]
            )


def test_frozen_exact_path_traced_on_silence_runs_on_spikes(skip_everywhere):
    # The CPU path traces its graph on an all-zero window (channel 0 only is "active" then):
    # the gathers must stay dynamic in the frozen graph, not keep the traced channel count.
    model = _dyadic_(build_model("stereospike", width=0.125, heads=(1, 2)))
    silenced = _silence_(model, fraction=0.25)
    assert silenced
    run = compile_for_inference(model, "exact", input_size=(37, 53))  # traced here, on zeros
    assert run._frozen and all(isinstance(f, torch.jit.ScriptModule) for f in run._frozen.values())
    for seed in (1, 2):
        x = _counts((1, 4, 37, 53), multi=bool(seed - 1), seed=seed)
        with torch.inference_mode():
            expected = model(x)
        assert torch.equal(run(x), expected)
    assert torch.equal(run(torch.zeros(1, 4, 37, 53)), model(torch.zeros(1, 4, 37, 53)))


def test_skipping_is_for_spiking_networks_on_the_cpu_in_channels_last():
    spiking = _dyadic_(build_model("stereospike", width=0.125))
    assert FastStereoSpike(spiking).skip_silent  # the CPU default
    assert not FastStereoSpike(spiking, channels_last=False, skip_silent=True).skip_silent
    # BatchNorm outputs can be negative: a zero maximum does not mean a silent channel
    ann = _dyadic_(build_model("stereospike-ann", width=0.125, activation="tanh"))
    assert not FastStereoSpike(ann, skip_silent=True).skip_silent
    for path, expected in (("exact", True), ("exact-dense", False), (DIRECT, False)):
        run = compile_for_inference(spiking, path, freeze=False)
        assert run._forward.skip_silent is expected, path


def test_full_network_skips_where_it_pays():
    # The real rule on the real shapes (plans only): >= 8192 channel pairs and >= 0.5 G MACs.
    fast = FastStereoSpike(build_model("stereospike").eval())
    fast.prepare((260, 346))
    plan = fast._plans[(260, 346)]
    assert plan.skip_units == [False, False, True, True, True, True, True, True, True]
    assert [d.skip_silent for d in plan.decoder] == [True, True, True, False]
    assert not any(h.skip_silent for h in plan.heads.values())
    for width, size in ((0.25, (260, 346)), (1.0, (37, 53))):  # narrow, or small input
        small = FastStereoSpike(build_model("stereospike", width=width).eval())
        small.prepare(size)
        plan = small._plans[size]
        assert not any(plan.skip_units) and not any(d.skip_silent for d in plan.decoder)
    dense = FastStereoSpike(build_model("stereospike").eval(), skip_silent=False)
    dense.prepare((260, 346))
    plan = dense._plans[(260, 346)]
    assert not any(plan.skip_units) and not any(d.skip_silent for d in plan.decoder)
