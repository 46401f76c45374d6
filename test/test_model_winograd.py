"""The CPU GEMM kernels (Winograd F(2x2, 3x3), tap sums, rare-pattern patch GEMMs) compute the
same convolutions as oneDNN.

Dyadic weights (multiples of 1/64) and integer counts make every sum exact in float32 whatever
its order (Winograd's transforms only add and halve), so those cases must be bit-equal; float
weights are compared against a float64 convolution with a float32-rounding tolerance.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from test_model_fast_exact import VARIANTS, _counts, _dyadic_

from stereospike_ros.model import ModelError, build_model, compile_for_inference
from stereospike_ros.model import winograd as winograd_module
from stereospike_ros.model.fast import FastStereoSpike, TapSumConv, UpsampleConv
from stereospike_ros.model.inference import InferencePath
from stereospike_ros.model.winograd import WinogradConv

CONVS = [
    # (kernel, stride, padding, input size): the network's shapes, odd and even, tiny
    (3, 1, 1, (17, 22)),
    (3, 1, 0, (15, 20)),
    (3, 1, 0, (6, 9)),
    (3, 1, (0, 1), (7, 8)),
    (3, 1, 1, (1, 1)),
    (5, 2, 2, (33, 44)),
    (5, 2, 2, (65, 87)),
    (5, 2, 2, (2, 3)),
]


def _dyadic(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.round(torch.randn(shape, generator=g) * 16) / 64


@pytest.mark.parametrize("kernel,stride,padding,size", CONVS)
@pytest.mark.parametrize("bias", [False, True])
def test_winograd_equals_conv(kernel, stride, padding, size, bias):
    g = torch.Generator().manual_seed(kernel + sum(size))
    weight = torch.randn(7, 6, kernel, kernel, generator=g) / (6 * kernel * kernel) ** 0.5
    b = torch.randn(7, generator=g) if bias else None
    x = _counts((2, 6, *size), multi=True, seed=sum(size))
    conv = WinogradConv(weight, b, stride, padding)
    got = conv(x.contiguous(memory_format=torch.channels_last))
    expected = F.conv2d(
        x.double(), weight.double(), None if b is None else b.double(), stride, padding
    )
    assert got.shape == expected.shape
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)
    # dyadic weights: every sum exact, so bit-equal to oneDNN's direct convolution
    wd = _dyadic(weight.shape, seed=kernel)
    bd = None if b is None else _dyadic(b.shape, seed=1)
    exact = WinogradConv(wd, bd, stride, padding)(x.contiguous(memory_format=torch.channels_last))
    assert torch.equal(exact, F.conv2d(x, wd, bd, stride, padding))


def test_winograd_rejects_other_convolutions():
    with pytest.raises(ModelError, match=r"kernel \(5, 5\), stride 1"):
        WinogradConv(torch.zeros(2, 2, 5, 5), None, 1, 2)
    with pytest.raises(ModelError, match=r"kernel \(3, 3\), stride 2"):
        WinogradConv(torch.zeros(2, 2, 3, 3), None, 2, 1)


def test_worth_it_follows_channel_width():
    assert winograd_module.worth_it(512, 3, 1) and not winograd_module.worth_it(128, 3, 1)
    assert winograd_module.worth_it(128, 5, 2) and not winograd_module.worth_it(64, 5, 2)
    assert not winograd_module.worth_it(4096, 1, 1)


@pytest.mark.parametrize(
    "in_size,up_size,k",
    [((17, 22), (37, 48), 5), ((9, 13), (32, 40), 3), ((5, 7), (13, 9), 5), ((12, 10), (8, 9), 3)],
)
def test_tap_sum_conv_equals_interpolate_then_conv(in_size, up_size, k):
    weight, bias = _dyadic((6, 5, k, k), seed=k), _dyadic((6,), seed=2)
    s = _counts((2, 5, *in_size), multi=True, seed=sum(in_size))
    expected = F.conv2d(F.interpolate(s, size=up_size, mode="nearest"), weight, bias)
    got = TapSumConv(weight, bias, in_size, up_size)(
        s.contiguous(memory_format=torch.channels_last)
    )
    assert torch.equal(got, expected)
    with pytest.raises(ModelError, match="planned for input"):
        TapSumConv(weight, bias, in_size, up_size)(torch.zeros(1, 5, 3, 3))


@pytest.mark.parametrize(
    "in_size,up_size,k",
    [
        ((17, 22), (37, 48), 5),
        ((65, 87), (134, 177), 5),
        ((5, 7), (13, 9), 5),
        ((20, 30), (22, 32), 3),
    ],
)
def test_upsample_conv_patch_gemms_and_winograd(gemm_everywhere, in_size, up_size, k):
    weight, bias = _dyadic((6, 5, k, k), seed=k), _dyadic((6,), seed=3)
    s = _counts((2, 5, *in_size), multi=True, seed=sum(up_size))
    expected = F.conv2d(F.interpolate(s, size=up_size, mode="nearest"), weight, bias)
    fold = UpsampleConv(weight, bias, in_size, up_size, channels_last=True, gemm=True)
    assert fold._patch_slices  # these sizes all have rare rows or columns
    got = fold(s.contiguous(memory_format=torch.channels_last))
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name,options,size,channels_last", [v for v in VARIANTS if v[3]])
@pytest.mark.parametrize("multi", [False, True])
def test_fast_network_with_gemm_kernels_is_bit_equal(
    gemm_everywhere, name, options, size, channels_last, multi
):
    model = _dyadic_(build_model(name, **options))
    x = _counts((2, model.config.in_channels, *size), multi)
    fast = FastStereoSpike(model, gemm_kernels=True)
    with torch.inference_mode():
        expected = model(x)
        got = fast(x)
    plan = fast._plans[size]
    assert all(isinstance(d, TapSumConv) for d in plan.decoder)
    assert sum(u.winograd is not None for u in fast.encoder) == 4  # all but the 5x5 stride-1
    assert torch.equal(got, expected)


#: exact-dense without the GEMM kernels (the benchmark's measurement-only exact-direct)
DIRECT = InferencePath("exact-direct", gemm_kernels=False, skip_silent=False)


def test_frozen_exact_path_with_gemm_kernels(gemm_everywhere):
    model = _dyadic_(build_model("stereospike", width=0.125, heads=(1, 2, 3, 4)))
    x = _counts((1, 4, 37, 53), True)
    with torch.inference_mode():
        expected = model(x)
    for path in ("exact", DIRECT):
        run = compile_for_inference(model, path, input_size=(37, 53))
        assert torch.equal(run(x), expected), path


def test_full_network_plan_uses_gemm_kernels_where_they_pay():
    # The real rules on the real shapes (plans only: no full-size forward in a unit test).
    model = build_model("stereospike").eval()
    fast = FastStereoSpike(model)
    fast.prepare((260, 346))
    plan = fast._plans[(260, 346)]
    wide = [u.winograd is not None for u in fast.encoder]
    assert wide == [False, False, False, True, True]  # conv3, conv4 (128, 256 channels in)
    assert all(u.winograd is not None for u in fast.bottleneck)
    assert isinstance(plan.decoder[0], TapSumConv)  # deconv4, 512 channels
    assert [isinstance(d, UpsampleConv) for d in plan.decoder[1:]] == [True, True, True]
    assert list(plan.decoder[1].winograd) == ["0_0"]  # deconv3: 256 channels
    assert not list(plan.decoder[2].winograd) and not list(plan.decoder[3].winograd)
    direct = FastStereoSpike(model, gemm_kernels=False)
    direct.prepare((260, 346))
    assert all(u.winograd is None for u in [*direct.encoder, *direct.bottleneck])
    assert not any(isinstance(d, TapSumConv) for d in direct._plans[(260, 346)].decoder)
