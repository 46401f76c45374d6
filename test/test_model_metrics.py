"""Depth metrics, firing rates and operation counts against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from model_helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from torch import nn

from stereospike_ros.model import (
    MetricAccumulator,
    ModelError,
    build_model,
    dense_macs,
    firing_rates,
    frame_metrics,
    synaptic_operations,
)

NAN = math.nan
# Valid pixels (gt finite, > 0): errors 1, 0.5, 2 at gt 1, 2.5, 8; the NaN pixel is ignored.
PRED = torch.tensor([[2.0, 2.0], [10.0, 7.0]])
GT = torch.tensor([[1.0, 2.5], [8.0, NAN]])


def test_frame_metrics_match_hand_computed_values():
    m = frame_metrics(PRED, GT, cutoffs=(0.5, 2.0, 5.0, 10.0))
    assert m["mde_m"] == pytest.approx(3.5 / 3)
    assert m["rmse_m"] == pytest.approx(math.sqrt((1 + 0.25 + 4) / 3))
    assert m["abs_rel"] == pytest.approx((1 / 1 + 0.5 / 2.5 + 2 / 8) / 3)
    # ratios max(p/g, g/p): 2, 1.25, 1.25 -> none < 1.25, two < 1.25^2 and < 1.25^3
    assert m["delta1"] == 0.0
    assert m["delta2"] == pytest.approx(2 / 3)
    assert m["delta3"] == pytest.approx(2 / 3)
    assert math.isnan(m["mde_m@0.5m"])  # no ground truth that near
    assert m["mde_m@2m"] == pytest.approx(1.0)
    assert m["mde_m@5m"] == pytest.approx(0.75)
    assert m["mde_m@10m"] == pytest.approx(3.5 / 3)
    assert m["valid_pixels"] == 3


def test_a_non_positive_prediction_fails_every_delta():
    m = frame_metrics(torch.tensor([[-1.0, 1.0]]), torch.tensor([[1.0, 1.0]]))
    assert m["delta1"] == m["delta3"] == 0.5


def test_frame_without_valid_pixels_gives_none():
    assert frame_metrics(PRED, torch.full_like(GT, NAN)) is None
    assert frame_metrics(PRED, torch.zeros_like(GT)) is None


def test_accumulator_averages_per_frame_and_counts_skipped_frames():
    acc = MetricAccumulator()
    gt_c = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    acc.update(PRED, GT)
    acc.update(  # a batch of two: one empty frame, one off by exactly 10 cm
        torch.stack((PRED, gt_c + 0.1)).unsqueeze(1),
        torch.stack((torch.full_like(GT, NAN), gt_c)).unsqueeze(1),
    )
    s = acc.summary()
    assert acc.frame_mde_cm == pytest.approx([350 / 3, 10.0])
    assert s["mde_cm"] == pytest.approx((350 / 3 + 10.0) / 2)
    assert s["mde_cm@10m"] == pytest.approx((350 / 3 + 10.0) / 2)
    assert s["delta1"] == pytest.approx((0.0 + 1.0) / 2)
    assert s["frames"] == 2 and s["skipped_frames"] == 1 and s["valid_pixels"] == 7
    assert MetricAccumulator().summary()["frames"] == 0
    assert math.isnan(MetricAccumulator().summary()["mde_cm"])


def test_accumulator_rejects_mismatched_frames():
    with pytest.raises(ModelError, match="differ"):
        MetricAccumulator().update(torch.zeros(2, 1, 4, 4), torch.zeros(1, 1, 4, 4))


def test_firing_rates_are_fractions_of_nonzero_entries_and_their_means():
    spikes = {
        "bottom": torch.tensor([1.0, 0.0, 0.0, 0.0]),
        "conv1": torch.tensor([1.0, 1.0, 0.0, 0.0]),
        "deconv1": torch.tensor([2.0, 1.0, 1.0, 0.0]),
        "skip1": torch.tensor([3.0, 0.0]),
    }
    rates = firing_rates(spikes)
    assert rates["bottom"] == 0.25 and rates["conv1"] == 0.5 and rates["deconv1"] == 0.75
    assert rates["encoder"] == pytest.approx(0.375)
    assert rates["decoder"] == pytest.approx(0.75)
    assert rates["overall"] == pytest.approx((0.25 + 0.5 + 0.75 + 0.5) / 4)
    acc = MetricAccumulator()
    acc.update(PRED, GT, spikes)
    acc.update(PRED, GT, {k: torch.zeros_like(v) for k, v in spikes.items()})
    assert acc.summary()["firing_rate/conv1"] == pytest.approx(0.25)


def test_dense_macs_of_stereospike_are_27_53_g_with_the_papers_split():
    count = dense_macs(build_model("stereospike"), (260, 346))
    assert count.total == 27_533_033_216
    assert count.by_part == {
        "encoder": 5_012_505_600,
        "bottleneck": 3_529_506_816,
        "decoder": 18_602_393_600,
        "heads": 388_627_200,
    }
    assert count.by_layer["conv4.conv"] == 256 * 25 * 512 * 17 * 22
    assert count.by_layer["predict.depth1"] == 32 * 9 * 260 * 346


def test_dense_macs_counts_any_module_with_a_real_forward():
    conv = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.Conv2d(5, 2, 1, stride=2))
    count = dense_macs(conv, (4, 6), batch=2)
    assert count.total == 2 * (5 * 4 * 6 * 3 * 9 + 2 * 2 * 3 * 5)


def test_synaptic_operations_count_spikes_times_their_reached_fan_out():
    model = build_model("stereospike", width=0.125)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                scale = 3 / m.weight[0].numel() ** 0.5
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * scale)
    x = torch.poisson(torch.full((1, 4, 16, 20), 1.0), generator=generator)
    expected = {"synops": 0, "mac": 0}

    def tally(module: nn.Conv2d, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        (inp,) = inputs
        if bool(((inp == 0) | (inp == 1)).all()):  # binary spikes: one accumulate per synapse hit
            ones = torch.ones_like(module.weight)
            reached = F.conv2d(inp, ones, None, module.stride, module.padding)
            expected["synops"] += int(reached.sum())
        else:  # counts or sums of spikes: dense multiply-accumulates
            kh, kw = module.kernel_size
            expected["mac"] += output.numel() * module.in_channels * kh * kw

    hooks = [m.register_forward_hook(tally) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    ops = synaptic_operations(model, x)
    assert expected["synops"] > 0 and expected["mac"] > 0
    assert ops["synops"] == expected["synops"]
    assert ops["mac"] == expected["mac"]
    assert ops["dense_mac"] == dense_macs(model, (16, 20)).total
    assert ops["energy_total_uj"] > 0
