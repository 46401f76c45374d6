"""StereoSpike's training loss: scale-invariant regression + gradient matching (+ spike penalty).

Per depth output and per sample, with ``R = prediction - target`` over the ``n`` valid pixels:

- regression: ``(1/n) sum R^2 - (1/n^2) (sum R)^2``, the variance of ``R``;
- gradient matching: ``(1/n) sum over valid pixels of |SobelX * R| + |SobelY * R|``, Sobel
  kernels ``[[1, 0, -1], [2, 0, -2], [1, 0, -1]]`` and its transpose, zero padding 1.

Invalid pixels (target NaN or +-Inf, REP 117, or <= 0 m: the metrics' rule, so loss and
metrics score the same pixels) enter the Sobel filter as a residual of 0, like
the zero padding at the border, and contribute no term of their own. The per-output loss is
``regression + 0.5 * gradient``, summed over the partial depths the model returns
(``depth4`` .. ``depth1``). The optional spike penalty adds ``weight * sum over penalised
tensors of sum(S^2) / (2 * numel)`` (bottleneck output and the four skip sums).

Scale: ``scale="metres"`` (the authors') takes ``R`` in metres, so a pixel 20 m away that is
off by 25 % weighs 400 times a pixel 1 m away off by 25 %: the loss is won on far pixels,
where a stereo rig of MVSEC's baseline resolves nothing (disparity < 2 px beyond 10 m), and a
network can lower it with scene priors instead of disparity. ``scale="log"`` takes
``R = log(p+) - log(target)`` (Eigen et al.'s log depth; ``p+`` = softplus(prediction) with
beta 10, equal to the prediction within 0.1 % above 0.7 m and positive below it, so a negative
prediction still gets a gradient): an error costs the same fraction wherever it is, as
disparity error does, and it is symmetric (predicting everything near is no cheaper than
everything far, unlike ``R / target``).

Batches: each term is computed per sample and averaged over the samples that have valid
pixels. The authors pool all pixels of a batch into one ``n``; they train with batch size 1,
where both are the same. A batch without valid pixels gives loss 0 and gradient 0, not NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from stereospike_ros.model.errors import ModelError
from stereospike_ros.model.network import ModelOutput

_SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))


def valid_depth(target: Tensor) -> Tensor:
    """Ground-truth pixels that count: finite and > 0 m (as ``model.metrics`` counts them)."""
    return torch.isfinite(target) & (target > 0)


def _as_map(t: Tensor, what: str) -> Tensor:
    if t.dim() == 3:
        t = t.unsqueeze(1)
    if t.dim() != 4 or t.shape[1] != 1:
        raise ModelError(f"{what} must be (B, 1, H, W) or (B, H, W), got {tuple(t.shape)}")
    return t


SCALES = ("metres", "log")
#: softplus sharpness of the log scale: p+ = p within 0.1 % for p >= 0.7 m
LOG_BETA = 10.0


def residual(
    prediction: Tensor, target: Tensor, scale: str = "metres"
) -> tuple[Tensor, Tensor, Tensor]:
    """Residual (in ``scale``) with 0 at invalid pixels, the float mask, and the valid count
    per sample."""
    if scale not in SCALES:
        raise ModelError(f"loss scale must be one of {', '.join(SCALES)}, got {scale!r}")
    prediction = _as_map(prediction, "prediction")
    target = _as_map(target, "target")
    if prediction.shape != target.shape:
        raise ModelError(
            f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape"
        )
    valid = valid_depth(target)
    target = torch.where(valid, target, torch.zeros((), dtype=target.dtype, device=target.device))
    mask = valid.to(prediction.dtype)
    if scale == "log":
        positive = F.softplus(prediction, beta=LOG_BETA)
        safe = torch.where(valid, target, torch.ones_like(target))
        r = (torch.log(positive) - torch.log(safe)) * mask
    else:
        r = (prediction - target) * mask
    return r, mask, mask.sum(dim=(1, 2, 3))


def regression_loss(prediction: Tensor, target: Tensor, scale: str = "metres") -> Tensor:
    """Per-sample variance of the residual over valid pixels, shape ``(B,)`` (0 if none)."""
    r, _, n = residual(prediction, target, scale)
    n_safe = n.clamp(min=1.0)
    mean = r.sum(dim=(1, 2, 3)) / n_safe
    mean_sq = r.square().sum(dim=(1, 2, 3)) / n_safe
    return mean_sq - mean.square()


def gradient_matching_loss(prediction: Tensor, target: Tensor, scale: str = "metres") -> Tensor:
    """Per-sample mean of ``|SobelX * R| + |SobelY * R|`` over valid pixels, shape ``(B,)``."""
    r, mask, n = residual(prediction, target, scale)
    sobel_x = torch.tensor(_SOBEL_X, dtype=r.dtype, device=r.device)
    kernels = torch.stack((sobel_x, sobel_x.t())).unsqueeze(1)  # (2, 1, 3, 3)
    grads = F.conv2d(r, kernels, padding=1)  # (B, 2, H, W)
    per_pixel = grads.abs().sum(dim=1, keepdim=True) * mask
    return per_pixel.sum(dim=(1, 2, 3)) / n.clamp(min=1.0)


def spike_penalty(spikes: Sequence[Tensor]) -> Tensor:
    """Quadratic spike penalty: ``sum over tensors of sum(S^2) / (2 * numel)``."""
    terms = [s.square().sum() / (2 * s.numel()) for s in spikes]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def _depths(output: ModelOutput | Mapping[str, Tensor] | Tensor) -> dict[str, Tensor]:
    if isinstance(output, ModelOutput):
        return dict(output.partial_depths)
    if isinstance(output, Tensor):
        return {"depth1": output}
    if isinstance(output, Mapping) and output:
        return dict(output)
    raise ModelError(
        f"loss expects a ModelOutput, a depth tensor or a dict of them, got {type(output)}"
    )


def stereospike_loss(
    output: ModelOutput | Mapping[str, Tensor] | Tensor,
    target: Tensor,
    *,
    gradient_weight: float = 0.5,
    spike_weight: float = 0.0,
    scale: str = "metres",
) -> tuple[Tensor, dict[str, float]]:
    """Total loss to back-propagate, and its parts as floats for logging.

    ``scale``: "metres" or "log" (module docstring). Parts: ``regression`` and
    ``gradient`` (summed over outputs), ``spike_penalty``
    (unweighted), one entry per output (``depth4`` .. ``depth1``: its regression + weighted
    gradient term), ``valid_pixels`` and ``total``.
    """
    depths = _depths(output)
    any_depth = next(iter(depths.values()))
    target = _as_map(target, "target")
    has_valid = valid_depth(target).flatten(1).any(dim=1).to(any_depth.dtype)
    samples = has_valid.sum().clamp(min=1.0)

    parts: dict[str, float] = {}
    total = any_depth.new_zeros(())
    regression_sum = any_depth.new_zeros(())
    gradient_sum = any_depth.new_zeros(())
    for name, depth in depths.items():
        regression = (regression_loss(depth, target, scale) * has_valid).sum() / samples
        gradient = (gradient_matching_loss(depth, target, scale) * has_valid).sum() / samples
        term = regression + gradient_weight * gradient
        parts[name] = float(term.detach())
        regression_sum = regression_sum + regression
        gradient_sum = gradient_sum + gradient
        total = total + term
    penalty = any_depth.new_zeros(())
    if spike_weight:
        if not isinstance(output, ModelOutput):
            raise ModelError("spike_weight > 0 needs the ModelOutput of model(x, return_all=True)")
        penalty = spike_penalty(output.penalised_spikes())
        total = total + spike_weight * penalty
    parts["regression"] = float(regression_sum.detach())
    parts["gradient"] = float(gradient_sum.detach())
    parts["spike_penalty"] = float(penalty.detach())
    parts["valid_pixels"] = float(valid_depth(target).sum())
    parts["total"] = float(total.detach())
    return total, parts
