"""The StereoSpike family: sizes, shapes, options, statelessness, IF equivalence, training."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from model_helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from spikingjelly.activation_based import functional, neuron, surrogate
from torch import nn

from stereospike_ros.model import (
    MODELS,
    ConfigError,
    ModelConfig,
    ModelError,
    StereoSpike,
    build_model,
    count_parameters,
    model_config,
    stereospike_loss,
)
from stereospike_ros.model.network import StatelessIF, nn_upsample

TINY = {"width": 0.125}  # 4, 8, 16, 32, 64 channels


def _on_meta(name: str, **options: object) -> StereoSpike:
    with torch.device("meta"):
        return build_model(name, **options)


def _lively(model: nn.Module, seed: int = 0) -> nn.Module:
    """Re-draw conv weights large enough that spikes reach every layer (default init is silent)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * 3 / fan_in**0.5)
    return model


def _spikes(shape: tuple[int, ...], rate: float = 1.0, seed: int = 0) -> torch.Tensor:
    return torch.poisson(torch.full(shape, rate), generator=torch.Generator().manual_seed(seed))


def test_stereospike_has_the_papers_18148708_parameters():
    assert count_parameters(_on_meta("stereospike")) == 18_148_708


def test_mono_and_ann_counts_differ_by_exactly_their_extra_weights():
    full = 18_148_708
    # Mono: the bottom conv sees 2 channels instead of 4 (32 x 2 x 5 x 5 fewer weights).
    assert count_parameters(_on_meta("stereospike-mono")) == full - 32 * 2 * 25
    # ANN: each of the 13 conv units gains a bias and a BatchNorm weight and bias per channel.
    unit_channels = 32 + 64 + 128 + 256 + 512 + 4 * 512 + 256 + 128 + 64 + 32
    assert count_parameters(_on_meta("stereospike-ann")) == full + 3 * unit_channels


def test_removing_heads_removes_exactly_their_convs():
    head_params = {4: 256 * 9 + 1, 3: 128 * 9 + 1, 2: 64 * 9 + 1}
    for heads in ((1, 2, 3), (1, 2), (1,)):
        removed = sum(head_params[k] for k in (2, 3, 4) if k not in heads)
        model = _on_meta("stereospike", heads=heads)
        assert count_parameters(model) == 18_148_708 - removed
        assert sorted(model.predict) == sorted(f"depth{k}" for k in heads)


def test_width_scales_every_channel_count():
    model = _on_meta("stereospike", width=0.25)
    assert model.config.channels == (8, 16, 32, 64, 128)
    assert model.bottom.conv.out_channels == 8 and model.conv4.conv.out_channels == 128
    assert model.deconv1.conv.out_channels == 8 and model.predict["depth1"].in_channels == 8


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("stereospike", {}),
        ("stereospike", {"heads": (1, 2)}),
        ("stereospike", {"heads": [1]}),
        ("stereospike", {"skips": False}),
        ("stereospike-mono", {"heads": (1, 2, 3)}),
        ("stereospike-ann", {}),
        ("stereospike-ann", {"activation": "tanh", "skips": False}),
        ("stereospike-ann", {"activation": "leakyrelu"}),
    ],
)
def test_output_is_one_depth_map_at_input_size_for_any_size_and_option(name, options):
    model = build_model(name, **TINY, **options).eval()
    channels = model.config.in_channels
    for height, width in ((1, 1), (7, 9), (33, 47), (64, 80)):
        x = _spikes((2, channels, height, width), seed=height)
        with torch.no_grad():
            out = model(x, return_all=True)
        assert out.depth.shape == (2, 1, height, width)
        assert torch.isfinite(out.depth).all()
        assert list(out.partial_depths) == [
            f"depth{k}" for k in (4, 3, 2, 1) if k in model.config.heads
        ]
        assert out.partial_depths["depth1"] is out.depth
        assert len(out.penalised) == 5 and all(n in out.spikes for n in out.penalised)


def test_upsampling_sizes_at_260x346_equal_the_authors_constants():
    model = _on_meta("stereospike")
    seen = {}
    for name in ("deconv4", "deconv3", "deconv2", "deconv1", "predict.depth4", "predict.depth1"):
        module = model.get_submodule(name)
        module.register_forward_pre_hook(lambda m, a, name=name: seen.__setitem__(name, a[0].shape))
    model(torch.zeros(1, 4, 260, 346, device="meta"))
    assert seen["deconv4"][-2:] == (33 + 4, 44 + 4)
    assert seen["deconv3"][-2:] == (65 + 4, 87 + 4)
    assert seen["deconv2"][-2:] == (130 + 4, 173 + 4)
    assert seen["deconv1"][-2:] == (260 + 4, 346 + 4)
    assert seen["predict.depth4"][-2:] == seen["predict.depth1"][-2:] == (262, 348)


def test_read_out_integrates_heads_coarse_to_fine():
    model = _lively(build_model("stereospike", **TINY))
    x = _spikes((1, 4, 24, 30))
    with torch.no_grad():
        out = model(x, return_all=True)
        heads = {
            k: model.predict[f"depth{k}"](nn_upsample(out.spikes[f"skip{k}"], (26, 32)))
            for k in (4, 3, 2, 1)
        }
    assert torch.equal(out.partial_depths["depth4"], heads[4])
    assert torch.allclose(out.partial_depths["depth3"], heads[4] + heads[3])
    assert torch.allclose(out.partial_depths["depth2"], heads[4] + heads[3] + heads[2])
    assert torch.allclose(out.depth, heads[4] + heads[3] + heads[2] + heads[1])
    assert torch.equal(out.spikes["skip2"], out.spikes["deconv2"] + out.spikes["conv1"])
    assert out.spikes["bottleneck"].max() <= 3 and out.spikes["skip1"].max() <= 2


def test_without_skips_heads_read_the_decoder_spikes():
    model = _lively(build_model("stereospike", skips=False, **TINY))
    out = model(_spikes((1, 4, 16, 20)), return_all=True)
    assert "skip1" not in out.spikes
    assert out.penalised == ("bottleneck", "deconv4", "deconv3", "deconv2", "deconv1")


def test_stateless_if_equals_a_freshly_reset_spikingjelly_if_node():
    edges = torch.tensor([-1.0, 0.0, 0.5, 0.999, 1.0, 1.0001, 2.5, 7.0])
    x = torch.cat((edges, torch.randn(64, generator=torch.Generator().manual_seed(0)) + 1.0))
    ours_in = x.clone().requires_grad_(True)
    ref_in = x.clone().requires_grad_(True)
    ref = neuron.IFNode(
        v_threshold=1.0,
        v_reset=0.0,
        surrogate_function=surrogate.ATan(alpha=2.0),
        detach_reset=True,
    )
    weights = torch.linspace(-1.0, 2.0, x.numel())
    (StatelessIF(1.0, 2.0)(ours_in) * weights).sum().backward()
    (ref(ref_in) * weights).sum().backward()
    assert torch.equal(ours_in.grad, ref_in.grad)
    with torch.no_grad():  # the no-gradient path too
        functional.reset_net(ref)
        assert torch.equal(StatelessIF()(x), ref(x))


def test_whole_network_equals_the_same_network_built_from_spikingjelly_if_nodes():
    model = _lively(build_model("stereospike", **TINY))
    reference = copy.deepcopy(model)
    for name, module in list(reference.named_modules()):
        if isinstance(module, StatelessIF):
            parent, _, attr = name.rpartition(".")
            node = neuron.IFNode(
                v_reset=0.0, surrogate_function=surrogate.ATan(), detach_reset=True
            )
            setattr(reference.get_submodule(parent), attr, node)
    x = _spikes((2, 4, 20, 28))
    target = torch.rand(2, 1, 20, 28) * 4 + 1
    functional.reset_net(reference)
    out_ref = reference(x, return_all=True)
    out = model(x, return_all=True)
    assert torch.equal(out.depth, out_ref.depth)
    assert out.spikes["conv4"].sum() > 0  # the comparison covers spikes in every layer
    stereospike_loss(out, target, spike_weight=0.5)[0].backward()
    stereospike_loss(out_ref, target, spike_weight=0.5)[0].backward()
    for (name, p), p_ref in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p.grad, p_ref.grad, rtol=1e-5, atol=1e-6), name


def test_two_calls_on_the_same_input_agree_whatever_came_between():
    model = _lively(build_model("stereospike", **TINY))
    x, other = _spikes((1, 4, 16, 20), seed=1), _spikes((1, 4, 16, 20), rate=3.0, seed=2)
    first = model(x).detach()
    model(other).sum().backward()
    with torch.no_grad():
        model(other)
    assert torch.equal(model(x).detach(), first)


@pytest.mark.parametrize("name", ["stereospike", "stereospike-mono"])
def test_spiking_models_give_identical_outputs_in_eval_and_train_mode(name):
    model = _lively(build_model(name, **TINY))
    x = _spikes((2, model.config.in_channels, 16, 20))
    train_out = model.train()(x).detach()
    assert torch.equal(model.eval()(x), train_out)


def test_ann_batchnorm_makes_train_and_eval_differ():
    model = build_model("stereospike-ann", **TINY)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.conv1.conv.bias is not None and isinstance(model.conv1.act, nn.Sigmoid)
    x = _spikes((2, 4, 16, 20))
    assert not torch.allclose(model.train()(x), model.eval()(x))


def test_surrogate_gradients_reach_every_parameter():
    model = _lively(build_model("stereospike", **TINY))
    out = model(_spikes((2, 4, 24, 32)), return_all=True)
    loss, _ = stereospike_loss(out, torch.rand(2, 1, 24, 32) * 5 + 1, spike_weight=0.1)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_a_few_training_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = _lively(build_model("stereospike", **TINY))
    x = _spikes((2, 4, 24, 32))
    yy, xx = torch.meshgrid(torch.arange(24.0), torch.arange(32.0), indexing="ij")
    target = (1.0 + xx / 8 + yy / 12).expand(2, 1, 24, 32).clone()
    target[:, :, :4] = math.nan
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        loss, parts = stereospike_loss(model(x, return_all=True), target)
        loss.backward()
        optimizer.step()
        losses.append(parts["total"])
    assert losses[-1] < 0.8 * losses[0], losses


def test_unknown_model_names_and_options_are_rejected_with_the_known_ones():
    with pytest.raises(ConfigError, match="stereospike, stereospike-mono, stereospike-ann"):
        build_model("stereo-spike")
    with pytest.raises(ConfigError, match="no option activation; its options: width, heads, skips"):
        build_model("stereospike", activation="tanh")
    with pytest.raises(ConfigError, match="lack head 1"):
        model_config("stereospike", heads=(2, 3, 4))
    with pytest.raises(ConfigError, match="subset"):
        model_config("stereospike", heads=(1, 5))
    with pytest.raises(ConfigError, match="width"):
        model_config("stereospike", width=0)
    with pytest.raises(ConfigError, match="activation 'relu'"):
        model_config("stereospike-ann", activation="relu")
    assert set(MODELS) == {"stereospike", "stereospike-mono", "stereospike-ann"}


def test_config_round_trips_through_a_dict_and_rejects_unknown_keys():
    config = model_config("stereospike-ann", width=0.5, heads=[2, 1], activation="tanh")
    assert config.heads == (1, 2)
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown model config keys \\['depth'\\]"):
        ModelConfig.from_dict({**config.to_dict(), "depth": 3})


def test_bad_input_is_rejected_naming_the_expected_shape():
    model = build_model("stereospike", **TINY)
    with pytest.raises(ModelError, match=r"\(B, 4, H, W\).*\(1, 2, 8, 8\)"):
        model(torch.zeros(1, 2, 8, 8))
    with pytest.raises(ModelError, match=r"got shape \(4, 8, 8\)"):
        model(torch.zeros(4, 8, 8))
    with pytest.raises(ModelError, match=r"float spike counts, got dtype torch\.uint8"):
        model(torch.zeros(1, 4, 8, 8, dtype=torch.uint8))
