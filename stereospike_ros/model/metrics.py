"""Depth metrics, firing rates and operation counts, as the StereoSpike paper reports them.

Depth metrics are computed per frame over its valid pixels (ground truth finite and > 0; NaN
means no measurement), then averaged over frames. Frames without a valid pixel are skipped and
counted. The MDE at a cut-off only looks at ground truth up to that depth; a frame with none is
left out of that average.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from stereospike_ros.model.errors import ModelError
from stereospike_ros.model.network import StereoSpike

DEFAULT_CUTOFFS_M = (10.0, 20.0, 30.0)
#: Layer groups of :attr:`ModelOutput.spikes` for the paper's encoder/decoder firing rates.
ENCODER_LAYERS = ("bottom", "conv1", "conv2", "conv3", "conv4")
DECODER_LAYERS = ("deconv4", "deconv3", "deconv2", "deconv1")


def _frames(t: Tensor, what: str) -> Tensor:
    """``(H, W)``, ``(1, H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)`` -> ``(B, H, W)`` float64."""
    if t.dim() == 2:
        t = t.unsqueeze(0)
    elif t.dim() == 4:
        if t.shape[1] != 1:
            raise ModelError(f"{what} must have one channel, got shape {tuple(t.shape)}")
        t = t[:, 0]
    if t.dim() != 3:
        raise ModelError(f"{what} must be (H, W), (B, H, W) or (B, 1, H, W); got {tuple(t.shape)}")
    return t.detach().to(torch.float64)


def frame_metrics(
    prediction: Tensor, target: Tensor, cutoffs: Sequence[float] = DEFAULT_CUTOFFS_M
) -> dict[str, float] | None:
    """Metrics of one depth frame in metres, or None when it has no valid pixel.

    Keys: ``mde_m``, ``rmse_m``, ``abs_rel``, ``delta1..3`` (fraction with
    ``max(p/g, g/p) < 1.25**k``; a prediction <= 0 fails), ``mde_m@{c}m`` (NaN when no ground
    truth is within ``c``) and ``valid_pixels``.
    """
    pred = _frames(prediction, "prediction")
    gt = _frames(target, "target")
    if pred.shape != gt.shape or pred.shape[0] != 1:
        raise ModelError(
            f"one frame expected: prediction {tuple(prediction.shape)}, "
            f"target {tuple(target.shape)}"
        )
    valid = torch.isfinite(gt) & (gt > 0)
    n = int(valid.sum())
    if n == 0:
        return None
    p, g = pred[valid], gt[valid]
    abs_err = (p - g).abs()
    ratio = torch.where(p > 0, torch.maximum(p / g, g / p), torch.full_like(p, math.inf))
    metrics = {
        "mde_m": float(abs_err.mean()),
        "rmse_m": float(abs_err.square().mean().sqrt()),
        "abs_rel": float((abs_err / g).mean()),
        "delta1": float((ratio < 1.25).double().mean()),
        "delta2": float((ratio < 1.25**2).double().mean()),
        "delta3": float((ratio < 1.25**3).double().mean()),
        "valid_pixels": float(n),
    }
    for cutoff in cutoffs:
        near = g <= cutoff
        metrics[f"mde_m@{cutoff:g}m"] = float(abs_err[near].mean()) if near.any() else math.nan
    return metrics


def firing_rates(spikes: Mapping[str, Tensor]) -> dict[str, float]:
    """Fraction of nonzero entries per layer, and their means: ``encoder``, ``decoder``
    (the deconv layers) and ``overall`` (all layers given, the paper's mean firing rate)."""
    if not spikes:
        raise ModelError("firing_rates needs at least one spike tensor")
    rates = {name: float((s != 0).sum()) / s.numel() for name, s in spikes.items()}
    out = dict(rates)
    for group, names in (("encoder", ENCODER_LAYERS), ("decoder", DECODER_LAYERS)):
        present = [rates[n] for n in names if n in rates]
        if present:
            out[group] = sum(present) / len(present)
    out["overall"] = sum(rates.values()) / len(rates)
    return out


@dataclass
class MetricAccumulator:
    """Streams frames (and optionally spike tensors) in; ``summary()`` gives the averages.

    ``frame_mde_cm`` lists each counted frame's MDE; ``skipped_frames`` counts frames without
    a valid pixel; ``valid_pixels`` sums the counted frames' valid pixels.
    """

    cutoffs: Sequence[float] = DEFAULT_CUTOFFS_M
    frame_mde_cm: list[float] = field(default_factory=list)
    skipped_frames: int = 0
    valid_pixels: int = 0
    _sums: dict[str, float] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)
    _rate_sums: dict[str, float] = field(default_factory=dict)
    _rate_frames: int = 0

    def update(
        self, prediction: Tensor, target: Tensor, spikes: Mapping[str, Tensor] | None = None
    ) -> None:
        """Add a frame or a batch of frames (``(B, 1, H, W)``); ``spikes`` from the same batch."""
        preds = _frames(prediction, "prediction")
        gts = _frames(target, "target")
        if preds.shape != gts.shape:
            raise ModelError(
                f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ"
            )
        for p, g in zip(preds, gts, strict=True):
            metrics = frame_metrics(p, g, self.cutoffs)
            if metrics is None:
                self.skipped_frames += 1
                continue
            self.valid_pixels += int(metrics.pop("valid_pixels"))
            self.frame_mde_cm.append(100.0 * metrics["mde_m"])
            for key, value in metrics.items():
                if not math.isnan(value):
                    self._sums[key] = self._sums.get(key, 0.0) + value
                    self._counts[key] = self._counts.get(key, 0) + 1
        if spikes:
            batch = preds.shape[0]
            for key, rate in firing_rates(spikes).items():
                self._rate_sums[key] = self._rate_sums.get(key, 0.0) + rate * batch
            self._rate_frames += batch

    @property
    def frames(self) -> int:
        return len(self.frame_mde_cm)

    def summary(self) -> dict[str, float]:
        """Means over counted frames: ``mde_cm``, ``rmse_m``, ``abs_rel``, ``delta1..3``,
        ``mde_cm@{c}m``; ``frames``, ``skipped_frames``, ``valid_pixels``; with spikes given,
        ``firing_rate/<layer>`` and ``firing_rate/overall``. NaN where nothing was counted."""

        def mean(key: str) -> float:
            count = self._counts.get(key, 0)
            return self._sums[key] / count if count else math.nan

        out: dict[str, float] = {
            "mde_cm": 100.0 * mean("mde_m"),
            "rmse_m": mean("rmse_m"),
            "abs_rel": mean("abs_rel"),
            "delta1": mean("delta1"),
            "delta2": mean("delta2"),
            "delta3": mean("delta3"),
        }
        for cutoff in self.cutoffs:
            out[f"mde_cm@{cutoff:g}m"] = 100.0 * mean(f"mde_m@{cutoff:g}m")
        out["frames"] = float(self.frames)
        out["skipped_frames"] = float(self.skipped_frames)
        out["valid_pixels"] = float(self.valid_pixels)
        for key, total in self._rate_sums.items():
            out[f"firing_rate/{key}"] = total / self._rate_frames
        return out


# --- operation counts ----------------------------------------------------------------------


@dataclass
class MacCount:
    """Dense multiply-accumulates of one forward pass, by conv layer and by network part."""

    total: int
    by_layer: dict[str, int]
    by_part: dict[str, int]


def _part(layer: str) -> str:
    if layer.startswith("predict"):
        return "heads"
    if layer.startswith("bottleneck"):
        return "bottleneck"
    if layer.startswith("deconv"):
        return "decoder"
    return "encoder"


def dense_macs(
    model: nn.Module, input_size: tuple[int, int] = (260, 346), batch: int = 1
) -> MacCount:
    """Exact dense MACs of every Conv2d (``out.numel() * in/groups * kh * kw``), by forward hooks.

    A :class:`StereoSpike` is re-built from its config on the ``meta`` device, so counting the
    full model costs no arithmetic and no memory; other modules run a real zero input.
    """
    if isinstance(model, StereoSpike):
        with torch.device("meta"):
            probe: nn.Module = StereoSpike(model.config)
        device = torch.device("meta")
    else:
        probe = model
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    counts: dict[str, int] = {}

    def hook(name: str) -> Any:
        def record(module: nn.Conv2d, _inputs: Any, output: Tensor) -> None:
            kh, kw = module.kernel_size
            per_output = module.in_channels // module.groups * kh * kw
            counts[name] = counts.get(name, 0) + output.numel() * per_output

        return record

    handles = [
        m.register_forward_hook(hook(name))
        for name, m in probe.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    try:
        in_channels = next(m for m in probe.modules() if isinstance(m, nn.Conv2d)).in_channels
        with torch.no_grad():
            probe(torch.zeros(batch, in_channels, *input_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
    by_part: dict[str, int] = {}
    for name, macs in counts.items():
        by_part[_part(name)] = by_part.get(_part(name), 0) + macs
    return MacCount(sum(counts.values()), counts, by_part)


def synaptic_operations(model: nn.Module, x: Tensor) -> dict[str, float]:
    """spikingjelly's ``op_counter`` estimate of one forward pass on ``x``.

    ``synops``: spike-driven accumulates of convs fed binary spikes; ``mac``: multiply-accumulates
    of convs fed non-binary values (input counts, SEW sums, skip sums), ``ac``: all
    accumulates, ``energy_*_uj``: its Horowitz 45 nm model (4.6 pJ/MAC, 0.9 pJ/AC, memory at
    24.96 pJ/byte). For comparison ``dense_mac`` and ``dense_energy_uj`` price every
    multiply-accumulate of the same network run as an ANN at 4.6 pJ.
    """
    from spikingjelly.activation_based.op_counter import estimate_simple_energy

    was_training = model.training
    model.eval()
    try:
        report = estimate_simple_energy(model, x)
    finally:
        model.train(was_training)
    dense = dense_macs(model, tuple(x.shape[-2:]), x.shape[0]).total
    e_mac = report.config.cost_config.e_mac_pj
    return {
        "synops": float(report.counts["synop"]),
        "mac": float(report.counts["mac"]),
        "ac": float(report.counts["ac"]),
        "energy_total_uj": report.energy_total_pj * 1e-6,
        "energy_compute_uj": report.energy_compute_pj * 1e-6,
        "energy_memory_uj": report.energy_memory_pj * 1e-6,
        "dense_mac": float(dense),
        "dense_energy_uj": dense * e_mac * 1e-6,
    }
