"""The exact fast paths compute the reference forward.

Tolerance: with dyadic weights (multiples of 1/64, small) and integer spike counts, every sum
either path forms is exact in float32 whatever its order, so thresholds see identical values
and outputs must be bit-equal (``torch.equal``). With ordinary float weights the folded kernel
sums round differently (1e-6 relative), which can flip a spike whose potential sits within
rounding of the threshold; those cases are checked on the pre-threshold upsample-convolution
alone (``UpsampleConv``), with a float tolerance.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_helpers import one_torch_thread  # noqa: F401 (autouse fixture)

from stereospike_ros.model import ModelError, build_model
from stereospike_ros.model.fast import FastStereoSpike, UpsampleConv, nearest_source_index
from stereospike_ros.model.inference import EXACT_PATHS, compile_for_inference


def _dyadic_(model: torch.nn.Module, seed: int = 0, gain: float = 1.6) -> torch.nn.Module:
    """Weights that make every layer fire sometimes, as multiples of 1/64."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                w = torch.randn(p.shape, generator=g) * gain / (0.3 * fan_in) ** 0.5
            elif "bias" in name or "weight" in name:
                w = torch.randn(p.shape, generator=g) * 0.5 + (1.0 if "norm" in name else 0.0)
            else:
                continue
            p.copy_(torch.round(w * 64) / 64)
    return model.eval()


def _counts(shape: tuple[int, ...], multi: bool, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if multi:
        return torch.poisson(torch.full(shape, 0.6), generator=g)
    return (torch.rand(shape, generator=g) < 0.3).float()


@pytest.mark.parametrize("n_in,n_out", [(17, 37), (130, 264), (33, 262), (260, 262), (5, 3)])
def test_source_index_is_torch_nearest(n_in, n_out):
    src = nearest_source_index(n_in, n_out)
    values = torch.arange(n_in, dtype=torch.float32).view(1, 1, 1, n_in)
    expected = F.interpolate(values, size=(1, n_out), mode="nearest").view(-1).long()
    assert torch.equal(src, expected)


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize(
    "in_size,up_size,k",
    [
        ((17, 22), (37, 48), 5),  # decoder 4 at 260x346: 2.18x rows, 2.18x columns
        ((33, 44), (69, 91), 5),
        ((65, 87), (134, 177), 5),
        ((9, 13), (262 // 8, 40), 3),  # a head: ~3x
        ((20, 30), (22, 32), 3),  # head 1: ~1x, a few repeated rows
        ((5, 7), (13, 9), 5),  # odd, unequal scales
        ((7, 9), (30, 41), 5),  # > 4x
        ((12, 10), (8, 9), 3),  # nearest downsampling still folds exactly
        ((1, 1), (5, 7), 5),
    ],
)
def test_upsample_conv_equals_interpolate_then_conv(in_size, up_size, k, channels_last):
    g = torch.Generator().manual_seed(sum(in_size) + k)
    weight = torch.randn(6, 5, k, k, generator=g)
    bias = torch.randn(6, generator=g)
    s = torch.poisson(torch.full((2, 5, *in_size), 0.8), generator=g)
    expected = F.conv2d(F.interpolate(s, size=up_size, mode="nearest"), weight, bias)
    fold = UpsampleConv(weight, bias, in_size, up_size, channels_last=channels_last)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    got = fold(s.contiguous(memory_format=layout))
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


def test_upsample_conv_rejects_other_input_size():
    fold = UpsampleConv(torch.zeros(2, 3, 5, 5), None, (8, 9), (20, 22))
    with pytest.raises(ModelError, match=r"\(8, 9\).*\(8, 10\)"):
        fold(torch.zeros(1, 3, 8, 10))


VARIANTS = [
    ("stereospike", {"width": 0.125}, (37, 53), True),
    ("stereospike", {"width": 0.125}, (20, 31), False),
    ("stereospike", {"width": 0.25, "heads": (1,)}, (20, 31), True),
    ("stereospike", {"width": 0.125, "heads": (1, 3)}, (37, 53), True),
    ("stereospike", {"width": 0.125, "skips": False}, (37, 53), True),
    ("stereospike-mono", {"width": 0.125, "heads": (1, 2)}, (20, 31), True),
]


@pytest.mark.parametrize("name,options,size,channels_last", VARIANTS)
@pytest.mark.parametrize("multi", [False, True])
def test_fast_network_is_bit_equal_with_dyadic_weights(name, options, size, channels_last, multi):
    model = _dyadic_(build_model(name, **options))
    x = _counts((2, model.config.in_channels, *size), multi)
    with torch.inference_mode():
        out = model(x, return_all=True)
        fast = FastStereoSpike(model, channels_last=channels_last)
        got = fast(x)
    rates = {k: float((v != 0).float().mean()) for k, v in out.spikes.items()}
    # the comparison means something only if the decoder fires, neither silent nor saturated
    for layer in ("bottleneck", "deconv4", "deconv2", "deconv1"):
        assert 0.02 < rates[layer] < 0.9, (layer, rates)
    assert got.shape == out.depth.shape
    assert torch.equal(got, out.depth)


def test_fast_network_matches_with_float_weights():
    # Ordinary initialisation scaled up to fire: equal within rounding except flipped spikes,
    # which are rare enough that the depth maps agree almost everywhere.
    torch.manual_seed(3)
    model = build_model("stereospike", width=0.125).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(6)
    x = _counts((1, 4, 45, 61), True)
    with torch.inference_mode():
        ref = model(x)
        got = FastStereoSpike(model)(x)
    close = torch.isclose(got, ref, rtol=1e-4, atol=1e-4)
    assert close.float().mean() > 0.95


def test_fast_ann_twin_matches():
    model = _dyadic_(build_model("stereospike-ann", width=0.125, activation="tanh"))
    x = _counts((1, 4, 37, 53), True)
    with torch.inference_mode():
        ref = model(x)
        got = FastStereoSpike(model)(x)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_fast_network_keeps_a_plan_per_size_and_checks_input():
    model = _dyadic_(build_model("stereospike", width=0.125))
    fast = FastStereoSpike(model)
    with torch.inference_mode():
        for size in [(20, 31), (33, 33), (20, 31)]:
            x = _counts((1, 4, *size), True)
            assert torch.equal(fast(x), model(x))
        with pytest.raises(ModelError, match=r"\(B, 4, H, W\)"):
            fast(torch.zeros(1, 2, 20, 31))
    with pytest.raises(ModelError, match="eval"):
        FastStereoSpike(build_model("stereospike", width=0.125))


@pytest.mark.parametrize("path", [p for p in EXACT_PATHS if p != "compile"])
def test_compile_for_inference_exact_paths(path):
    model = _dyadic_(build_model("stereospike", width=0.125, heads=(1, 2)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = _counts((1, 4, 37, 53), True)
    run = compile_for_inference(model, path, input_size=(37, 53))
    with torch.inference_mode():
        expected = model(x)
    got = run(x.to(torch.int16))  # integer counts are cast, not rejected
    assert got.dtype == torch.float32
    assert torch.equal(got, expected)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ModelError, match=r"\(37, 53\).*\(37, 54\)"):
        run(torch.zeros(1, 4, 37, 54))


@pytest.mark.parametrize("path", ["exact", "exact-nchw"])
def test_frozen_forward_equals_eager_for_each_input_shape(path):
    # The CPU paths trace and freeze one TorchScript graph per input shape (so the forward does
    # not hold the GIL); the plan differs per size, so every shape must get its own graph.
    model = _dyadic_(build_model("stereospike", width=0.125, heads=(1, 2, 3, 4)))
    frozen = compile_for_inference(model, path)
    eager = compile_for_inference(model, path, freeze=False)
    assert "frozen" in repr(frozen) and "frozen" not in repr(eager)
    for shape in [(1, 4, 37, 53), (2, 4, 40, 61), (1, 4, 37, 53)]:
        for multi in (False, True):
            x = _counts(shape, multi, seed=sum(shape))
            assert torch.equal(frozen(x), eager(x)), (shape, multi)
    assert sorted(frozen._frozen) == [(1, 4, 37, 53), (2, 4, 40, 61)]
    assert all(isinstance(f, torch.jit.ScriptModule) for f in frozen._frozen.values())


def test_bf16_path_runs_the_same_graph():
    # Weights and inputs exactly representable in bfloat16 and potentials that stay small
    # integers / 64 keep bf16 exact too, which pins the casts and the plumbing; the accuracy
    # cost with real weights is measured by `benchmark model --accuracy`.
    model = _dyadic_(build_model("stereospike", width=0.125, heads=(1,)))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    x = _counts((1, 4, 20, 31), False)
    run = compile_for_inference(model, "bf16")
    with torch.inference_mode():
        expected = model(x)
    got = run(x)
    assert got.dtype == torch.float32
    assert (got - expected).abs().max() <= expected.abs().max() * 2**-7


def test_compile_for_inference_rejects_bad_arguments():
    model = build_model("stereospike", width=0.125).eval()
    with pytest.raises(ModelError, match="unknown inference path 'fastest'"):
        compile_for_inference(model, "fastest")
    with pytest.raises(ModelError, match="StereoSpike"):
        compile_for_inference(torch.nn.Conv2d(1, 1, 1), "exact")  # type: ignore[arg-type]
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA"):
            compile_for_inference(model, "exact", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("path", ["exact", "reference"])
def test_cuda_graph_replays_the_exact_forward(path):
    model = _dyadic_(build_model("stereospike", width=0.125))
    run = compile_for_inference(model, path, device="cuda", input_size=(37, 53))
    assert run._graph is not None
    with torch.inference_mode():
        for seed in (1, 2):
            x = _counts((1, 4, 37, 53), True, seed)
            assert torch.equal(run(x).cpu(), model(x))
