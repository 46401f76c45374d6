"""Pruning the channels a trained StereoSpike never fires, so the fast path can skip them.

A trained network leaves some output channels of its conv units silent on every window it
sees (on the simulated benchmark's full-size width-1.0 model: 20 % of the encoder's and
bottleneck's channels, 46 % of the decoder's, over its 360 training windows). Zeroing their weights
changes no output on any window where they stayed silent, and
:class:`~stereospike_ros.model.fast.FastStereoSpike` proves that a channel with no weight and
no bias above the threshold never fires and never computes it. The outputs differ only on a
window where a pruned channel would have fired: calibrate on the training recordings, and
measure the pruned checkpoint on held-out ones (docs/inference.md, *Pruning*).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from stereospike_ros.model.errors import ModelError
from stereospike_ros.model.network import ConvUnit, StatelessIF, StereoSpike


def conv_units(model: StereoSpike) -> dict[str, ConvUnit]:
    """The network's conv units by module name (``bottom`` .. ``deconv1``), in forward order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, ConvUnit)}


def _check_spiking(model: StereoSpike) -> None:
    if not isinstance(model, StereoSpike):
        raise ModelError(f"pruning needs a StereoSpike, got {type(model).__name__}")
    if not model.config.spiking or not all(
        isinstance(u.act, StatelessIF) and isinstance(u.norm, torch.nn.Identity)
        for u in conv_units(model).values()
    ):
        raise ModelError(
            "pruning silent channels needs a spiking network without BatchNorm (activation "
            f"'if'); this one is {model.config.name!r} with activation "
            f"{model.config.activation!r}"
        )
    if model.config.threshold <= 0:
        raise ModelError(
            f"pruning needs a positive firing threshold (zero potential must not fire), got "
            f"{model.config.threshold}"
        )


def silent_channels(model: StereoSpike, windows: Iterable[Tensor]) -> tuple[dict[str, Tensor], int]:
    """Which output channels of each conv unit never fired on any of ``windows`` (``(B, C, H,
    W)`` spike counts); returns ``({unit: bool mask}, windows seen)``."""
    _check_spiking(model)
    units = conv_units(model)
    fired = {name: torch.zeros(u.conv.out_channels, dtype=torch.bool) for name, u in units.items()}

    def record(name: str) -> Callable[[torch.nn.Module, object, Tensor], None]:
        def hook(module: torch.nn.Module, inputs: object, out: Tensor) -> None:
            fired[name] |= (out > 0).any(-1).any(-1).any(0).cpu()

        return hook

    handles = [u.register_forward_hook(record(name)) for name, u in units.items()]
    seen = 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for x in windows:
                model(x)
                seen += 1
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if seen == 0:
        raise ModelError("no calibration window given: cannot tell silent channels")
    return {name: ~f for name, f in fired.items()}, seen


def prune_silent(model: StereoSpike, silent: dict[str, Tensor]) -> StereoSpike:
    """A copy of ``model`` with the weights (and bias) of the ``silent`` output channels zeroed:
    those channels never fire in the copy, whatever its input."""
    _check_spiking(model)
    pruned = copy.deepcopy(model)
    units = conv_units(pruned)
    unknown = sorted(set(silent) - set(units))
    if unknown:
        raise ModelError(f"no conv unit named {unknown} in this network (units: {list(units)})")
    with torch.no_grad():
        for name, mask in silent.items():
            conv = units[name].conv
            if mask.shape != (conv.out_channels,) or mask.dtype != torch.bool:
                raise ModelError(
                    f"silent mask of {name} must be {conv.out_channels} booleans, got "
                    f"{tuple(mask.shape)} {mask.dtype}"
                )
            rows = mask.to(conv.weight.device)
            conv.weight[rows] = 0
            if conv.bias is not None:
                conv.bias[rows] = 0
    return pruned


def prune_on(
    model: StereoSpike, windows: Iterable[Tensor]
) -> tuple[StereoSpike, dict[str, Tensor], int]:
    """:func:`prune_silent` of :func:`silent_channels`: ``(pruned copy, silent masks, windows
    seen)``."""
    silent, seen = silent_channels(model, windows)
    return prune_silent(model, silent), silent, seen


def count_silent(silent: dict[str, Tensor]) -> tuple[int, int]:
    """``(channels never fired, channels)`` over every unit of :func:`silent_channels`."""
    return sum(int(m.sum()) for m in silent.values()), sum(m.numel() for m in silent.values())
