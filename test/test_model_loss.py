"""The training loss against values computed by hand, NaN masks and empty frames included."""

from __future__ import annotations

import math

import pytest
import torch
from model_helpers import one_torch_thread  # noqa: F401 (autouse fixture)

from stereospike_ros.model import ModelError, ModelOutput, stereospike_loss
from stereospike_ros.model.loss import gradient_matching_loss, regression_loss, spike_penalty

NAN = math.nan
PRED = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]).view(1, 1, 3, 3)
GT = torch.tensor([[1.0, 1.0, 1.0], [1.0, NAN, 1.0], [1.0, 1.0, 2.0]]).view(1, 1, 3, 3)
# Residual with the invalid centre set to 0:  [[0, 1, 2], [3, 0, 5], [6, 7, 7]].
# Valid residuals 0,1,2,3,5,6,7,7: sum 31, sum of squares 173, n = 8.
REGRESSION = 173 / 8 - (31 / 8) ** 2  # 6.609375
# |SobelX * R| + |SobelY * R| at the 8 valid pixels, zero padding (worked out by hand):
# (0,0) 2+6, (0,1) 6+8, (0,2) 2+10, (1,0) 8+18, (1,2) 8+16, (2,0) 14+6, (2,1) 4+8, (2,2) 14+10
GRADIENT = (8 + 14 + 12 + 26 + 24 + 20 + 12 + 24) / 8  # 17.5


def test_regression_term_is_the_variance_of_the_valid_residual():
    assert regression_loss(PRED, GT).tolist() == [pytest.approx(REGRESSION)]


def test_gradient_term_is_sobel_of_the_residual_with_zeros_at_invalid_pixels():
    assert gradient_matching_loss(PRED, GT).tolist() == [pytest.approx(GRADIENT)]


def test_regression_term_ignores_a_constant_offset():
    shifted = regression_loss(PRED + 3.5, GT)
    assert shifted.tolist() == [pytest.approx(REGRESSION)]


def test_total_sums_every_partial_depth_and_reports_its_parts():
    output = ModelOutput(
        depth=PRED,
        partial_depths={"depth2": PRED.clone(), "depth1": PRED},
        spikes={},
    )
    total, parts = stereospike_loss(output, GT)
    per_output = REGRESSION + 0.5 * GRADIENT
    assert float(total) == pytest.approx(2 * per_output)
    assert parts["depth2"] == pytest.approx(per_output)
    assert parts["depth1"] == pytest.approx(per_output)
    assert parts["regression"] == pytest.approx(2 * REGRESSION)
    assert parts["gradient"] == pytest.approx(2 * GRADIENT)
    assert parts["spike_penalty"] == 0.0
    assert parts["valid_pixels"] == 8
    assert parts["total"] == pytest.approx(2 * per_output)


def test_samples_without_valid_pixels_do_not_dilute_the_batch_mean():
    pred = torch.cat((PRED, PRED))
    gt = torch.cat((GT, torch.full_like(GT, NAN)))
    total, _ = stereospike_loss(pred, gt)
    assert float(total) == pytest.approx(REGRESSION + 0.5 * GRADIENT)


def test_no_valid_pixel_gives_zero_loss_and_zero_gradient_not_nan():
    pred = PRED.clone().requires_grad_(True)
    gt = torch.full_like(GT, NAN)
    gt[0, 0, 0, 0] = math.inf  # +Inf (no return, REP 117) is invalid too
    total, parts = stereospike_loss(pred, gt)
    total.backward()
    assert float(total.detach()) == 0.0 and parts["total"] == 0.0
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_gradient_flows_only_from_valid_pixels():
    pred = PRED.clone().requires_grad_(True)
    regression_loss(pred, GT).sum().backward()
    grad = pred.grad[0, 0]
    assert grad[1, 1] == 0.0
    # d var / d r_i = 2 (r_i - mean) / n
    assert float(grad[2, 2]) == pytest.approx(2 * (7 - 31 / 8) / 8)


def test_spike_penalty_is_half_the_mean_square_per_tensor_times_its_weight():
    s1 = torch.tensor([[0.0, 1.0], [2.0, 0.0]])  # sum S^2 = 5, numel 4 -> 5/8
    s2 = torch.tensor([3.0, 0.0, 0.0])  # 9/6
    assert float(spike_penalty([s1, s2])) == pytest.approx(5 / 8 + 9 / 6)
    output = ModelOutput(PRED, {"depth1": PRED}, {"bottleneck": s1, "skip1": s2}, ("bottleneck",))
    total, parts = stereospike_loss(output, GT, spike_weight=0.5)
    assert parts["spike_penalty"] == pytest.approx(5 / 8)
    assert float(total) == pytest.approx(REGRESSION + 0.5 * GRADIENT + 0.5 * 5 / 8)


def test_bad_shapes_and_a_penalty_without_spikes_are_rejected():
    with pytest.raises(ModelError, match=r"prediction \(1, 1, 3, 3\) and target \(1, 1, 2, 3\)"):
        stereospike_loss(PRED, GT[..., :2, :])
    with pytest.raises(ModelError, match="return_all=True"):
        stereospike_loss(PRED, GT, spike_weight=1.0)
    total, _ = stereospike_loss(PRED, GT[:, 0])  # (B, H, W) targets are accepted
    assert float(total) == pytest.approx(REGRESSION + 0.5 * GRADIENT)


def test_log_scale_is_the_variance_of_the_log_depth_ratio():
    pred = torch.tensor([[1.0, 2.0], [4.0, 8.0]]).view(1, 1, 2, 2)
    gt = torch.tensor([[1.0, 1.0], [NAN, 2.0]]).view(1, 1, 2, 2)
    r = torch.log(torch.tensor([1.0, 2.0, 4.0]))  # log(p / gt) at the 3 valid pixels
    expected = float(r.square().mean() - r.mean().square())
    assert regression_loss(pred, gt, "log").tolist() == [pytest.approx(expected, rel=1e-3)]


def test_log_scale_weighs_near_and_far_pixels_alike():
    # The same 25 % error at 1 m and at 20 m: in metres the far scene costs 400 times as much
    # (regression) and 20 times (gradient); in log depth a scene scaled by 20 costs the same (a
    # disparity error of the same fraction costs the same wherever it is), which is what lets
    # near structure matter.
    gt = torch.tensor([1.0, 2.0, 4.0, 8.0]).view(1, 1, 2, 2)
    pred = gt * torch.tensor([1.25, 1.0, 1.0, 0.75]).view(1, 1, 2, 2)
    for scale, ratio in (("metres", 20.0), ("log", 1.0)):
        near = regression_loss(pred, gt, scale), gradient_matching_loss(pred, gt, scale)
        far = (
            regression_loss(pred * 20, gt * 20, scale),
            gradient_matching_loss(pred * 20, gt * 20, scale),
        )
        assert float(far[0]) == pytest.approx(ratio**2 * float(near[0]), rel=1e-3), scale
        assert float(far[1]) == pytest.approx(ratio * float(near[1]), rel=1e-3), scale


def test_log_scale_penalises_too_near_as_much_as_too_far():
    # R / target would make "everything at 0 m" cost at most 1 per pixel; log depth does not
    gt = torch.full((1, 1, 2, 2), 4.0)
    near, _ = stereospike_loss(gt / 2, gt, scale="log")
    far, _ = stereospike_loss(gt * 2, gt, scale="log")
    level = regression_loss(gt / 2, gt, "log")  # a pure scale error: the variance cannot see it
    assert float(level) == pytest.approx(0.0, abs=1e-9)
    assert float(near) == pytest.approx(float(far), abs=1e-6)


def test_log_scale_has_finite_gradients_where_the_prediction_is_zero_or_negative():
    pred = torch.tensor([[0.0, -1.0], [-3.0, 3.0]]).view(1, 1, 2, 2).requires_grad_()
    gt = torch.tensor([[0.5, NAN], [2.0, 20.0]]).view(1, 1, 2, 2)
    total, _ = stereospike_loss(pred, gt, scale="log")
    total.backward()
    assert math.isfinite(total.item()) and torch.isfinite(pred.grad).all()
    assert float(pred.grad[0, 0, 0, 1]) == 0.0  # the invalid pixel gets no gradient
    assert float(pred.grad[0, 0, 1, 0]) < 0.0  # a negative depth is pushed up


def test_unknown_scale_is_named():
    with pytest.raises(ModelError, match="loss scale must be one of metres, log, got 'cm'"):
        stereospike_loss(PRED, GT, scale="cm")
