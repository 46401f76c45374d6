"""The StereoSpike network family, built by name from a typed config.

StereoSpike (Rançon et al.) is a fully spiking U-Net: an encoder of five "conv units" (Conv2d
without bias followed by an integrate-and-fire neuron), a bottleneck of two spike-element-wise
(SEW, ADD) residual blocks, a decoder that nearest-neighbour upsamples then convolves, skip
connections that add encoder spikes to decoder spikes, and four prediction heads whose outputs
an integrator with infinite threshold sums into the depth map in metres. Every neuron starts
from rest for every sample, so the whole network is a stateless function of one input.

Deliberate differences from the authors' code (urancon/StereoSpike), none of which changes the
result of a trained ``stereospike`` network except the second:

1. Neurons have no state. A single-step IF neuron reset to ``v_reset = 0`` before each sample
   computes ``v = x`` and fires ``H(v - 1)``, so :class:`StatelessIF` computes exactly that,
   with the ATan(alpha=2) surrogate gradient of spikingjelly 2.0 (``surrogate.atan``). The
   authors' ``functional.reset_net`` before every sample is not needed, and two calls on the
   same input always agree. Outputs and gradients equal ``neuron.IFNode`` (tested).
2. The SEW bottleneck uses the ATan surrogate like every other neuron; the authors' code builds
   it with spikingjelly's default ``Sigmoid(alpha=4)`` by accident (the paper says ATan). This
   only changes training gradients, not the forward pass.
3. Upsampling sizes come from the tensors at forward time (skip size + 4 before a 5x5 conv,
   input size + 2 before a head's 3x3 conv), not from constants for 260 x 346, so any input
   size works; at 260 x 346 they equal the authors' constants.
4. The read-out integrator is a running sum (``depth4 = P4``, ``depth3 = P4 + P3``, ...), which
   is what an IF neuron with infinite threshold computes; the four head biases are the paper's
   "shared learnable V_reset".
5. Options the authors had as separate scripts: ``width`` (channel multiplier), ``heads`` (the
   paper's Table 2 ablations; head 1 is always kept) and ``skips`` (Table 3).
6. ``stereospike-ann`` follows the paper's description of the analog twin (same graph: NN
   upsampling, 5x5 convs, heads), with conv biases and ``conv -> activation -> BatchNorm`` in
   the authors' order, LeakyReLU slope 0.1 as theirs. The authors' later ANN code uses 7x7
   separable convs and bilinear upsampling instead; we do not follow that.
7. Without a gradient to compute, spikes are ``(x >= 1)`` directly (same values, no autograd
   bookkeeping).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import surrogate
from torch import Tensor, nn

from stereospike_ros.model.errors import ConfigError, ModelError

#: Activations of the conv units: ``"if"`` is the spiking neuron, the others the ANN twin's.
ACTIVATIONS = ("if", "sigmoid", "tanh", "leakyrelu")
#: Base channel counts of the five encoder levels at ``width = 1`` (bottom, conv1..conv4).
BASE_CHANNELS = (32, 64, 128, 256, 512)
ALL_HEADS = (1, 2, 3, 4)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network; checkpoints carry it.

    ``heads`` are the prediction heads kept, by decoder level (1 = full resolution, 4 = 1/8);
    ``skips`` adds encoder spikes to the decoder. ``activation`` is ``"if"`` for the spiking
    networks, or the ANN twin's ``"sigmoid"``, ``"tanh"`` or ``"leakyrelu"``.
    """

    name: str = "stereospike"
    in_channels: int = 4
    width: float = 1.0
    heads: tuple[int, ...] = ALL_HEADS
    skips: bool = True
    activation: str = "if"
    batch_norm: bool = False
    conv_bias: bool = False
    threshold: float = 1.0
    surrogate_alpha: float = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.in_channels, int) or self.in_channels < 1:
            raise ConfigError(f"in_channels must be a positive int, got {self.in_channels!r}")
        if not isinstance(self.width, int | float) or not math.isfinite(self.width):
            raise ConfigError(f"width must be a positive number, got {self.width!r}")
        if self.width <= 0:
            raise ConfigError(f"width must be a positive number, got {self.width!r}")
        object.__setattr__(self, "width", float(self.width))
        heads = self.heads
        if isinstance(heads, int) or not isinstance(heads, Sequence | set | frozenset):
            raise ConfigError(f"heads must be a collection of levels 1..4, got {heads!r}")
        if not heads or any(isinstance(h, bool) or h not in ALL_HEADS for h in heads):
            raise ConfigError(f"heads must be a non-empty subset of {{1, 2, 3, 4}}, got {heads!r}")
        if 1 not in heads:
            raise ConfigError(
                f"heads {sorted(heads)} lack head 1: the full-resolution head ends the read-out"
            )
        object.__setattr__(self, "heads", tuple(sorted(set(heads))))
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation {self.activation!r} is not one of {ACTIVATIONS}")
        for flag in ("skips", "batch_norm", "conv_bias"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        if not self.threshold > 0 or not self.surrogate_alpha > 0:
            raise ConfigError(
                f"threshold and surrogate_alpha must be positive, got {self.threshold!r}, "
                f"{self.surrogate_alpha!r}"
            )

    @property
    def spiking(self) -> bool:
        return self.activation == "if"

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of bottom, conv1..conv4: 32 * width doubling per level."""
        base = max(1, round(BASE_CHANNELS[0] * self.width))
        return tuple(base * 2**level for level in range(len(BASE_CHANNELS)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``heads`` as a list)."""
        data = asdict(self)
        data["heads"] = list(self.heads)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing ones take defaults."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a model config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys {unknown}; known: {sorted(known)}")
        values = dict(data)
        if "heads" in values and isinstance(values["heads"], list):
            values["heads"] = tuple(values["heads"])
        return cls(**values)


@dataclass
class ModelOutput:
    """What training and analysis need beyond the depth map.

    ``partial_depths`` holds the integrator's running sums by head name in read-out order
    (``depth4`` .. ``depth1`` for the heads present; the last one is ``depth``). ``spikes`` maps
    layer names to spike tensors (activations for the ANN twin); ``penalised`` names the ones
    the spike penalty applies to (bottleneck output and the four tensors the heads read).
    """

    depth: Tensor
    partial_depths: dict[str, Tensor]
    spikes: dict[str, Tensor]
    penalised: tuple[str, ...] = field(default=())

    def penalised_spikes(self) -> list[Tensor]:
        return [self.spikes[name] for name in self.penalised]


class StatelessIF(nn.Module):
    """Single-step IF neuron starting from rest: ``spike = H(x - threshold)``, ATan surrogate.

    Equal to spikingjelly's ``IFNode(v_threshold, v_reset=0, ATan(alpha), detach_reset=True)``
    reset before every sample, with no membrane state to carry or reset (differences 1 and 7).
    """

    def __init__(self, threshold: float = 1.0, alpha: float = 2.0) -> None:
        super().__init__()
        self.threshold = float(threshold)
        self.alpha = float(alpha)

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return surrogate.atan.apply(x - self.threshold, self.alpha)
        return (x >= self.threshold).to(x.dtype)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, alpha={self.alpha}"


def _activation(config: ModelConfig) -> nn.Module:
    if config.activation == "if":
        return StatelessIF(config.threshold, config.surrogate_alpha)
    if config.activation == "sigmoid":
        return nn.Sigmoid()
    if config.activation == "tanh":
        return nn.Tanh()
    return nn.LeakyReLU(0.1)


class ConvUnit(nn.Module):
    """``conv`` then neuron; the ANN twin adds a bias and BatchNorm after the activation."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, padding: int, config: ModelConfig
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=config.conv_bias)
        self.act = _activation(config)
        self.norm = nn.BatchNorm2d(cout) if config.batch_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.act(self.conv(x)))


class SEWBlock(nn.Module):
    """Spike-element-wise residual block, ADD connect: ``unit2(unit1(x)) + x``."""

    def __init__(self, channels: int, config: ModelConfig) -> None:
        super().__init__()
        self.unit1 = ConvUnit(channels, channels, 3, 1, 1, config)
        self.unit2 = ConvUnit(channels, channels, 3, 1, 1, config)

    def forward(self, x: Tensor) -> Tensor:
        return self.unit2(self.unit1(x)) + x


def nn_upsample(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour upsampling as ``nn.UpsamplingNearest2d`` (legacy ``nearest``) does."""
    return F.interpolate(x, size=size, mode="nearest")


class StereoSpike(nn.Module):
    """StereoSpike and its variants; ``forward((B, C, H, W) spike counts) -> (B, 1, H, W) m``.

    Layers are plain attributes (``bottom``, ``conv1``..``conv4``, ``bottleneck``,
    ``deconv4``..``deconv1``, ``predict["depth4"]``..) holding ordinary ``nn.Conv2d`` weights, so
    faster equivalent forwards can be built from the same parameters.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c0, c1, c2, c3, c4 = config.channels
        self.bottom = ConvUnit(config.in_channels, c0, 5, 1, 2, config)
        self.conv1 = ConvUnit(c0, c1, 5, 2, 2, config)
        self.conv2 = ConvUnit(c1, c2, 5, 2, 2, config)
        self.conv3 = ConvUnit(c2, c3, 5, 2, 2, config)
        self.conv4 = ConvUnit(c3, c4, 5, 2, 2, config)
        self.bottleneck = nn.Sequential(SEWBlock(c4, config), SEWBlock(c4, config))
        self.deconv4 = ConvUnit(c4, c3, 5, 1, 0, config)
        self.deconv3 = ConvUnit(c3, c2, 5, 1, 0, config)
        self.deconv2 = ConvUnit(c2, c1, 5, 1, 0, config)
        self.deconv1 = ConvUnit(c1, c0, 5, 1, 0, config)
        head_channels = {4: c3, 3: c2, 2: c1, 1: c0}
        present = [k for k in (4, 3, 2, 1) if k in config.heads]
        self.predict = nn.ModuleDict(
            {f"depth{k}": nn.Conv2d(head_channels[k], 1, 3, 1, 0, bias=True) for k in present}
        )

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise ModelError(f"{self.config.name} expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ModelError(
                f"{self.config.name} expects (B, {self.config.in_channels}, H, W) spike counts, "
                f"got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise ModelError(
                f"{self.config.name} expects float spike counts, got dtype {x.dtype} "
                "(convert with .float())"
            )

    def forward(self, x: Tensor, return_all: bool = False) -> Tensor | ModelOutput:
        """Depth in metres; with ``return_all`` a :class:`ModelOutput` for training."""
        self._check_input(x)
        skips = self.config.skips
        H, W = x.shape[-2:]
        # Encoder: 5x5 convs, stride 2 from conv1 on (ceil halving); binary spikes.
        bottom = self.bottom(x)  # (B, C0, H, W)
        e1 = self.conv1(bottom)  # (B, C1, H/2, W/2)
        e2 = self.conv2(e1)  # (B, C2, H/4, W/4)
        e3 = self.conv3(e2)  # (B, C3, H/8, W/8)
        e4 = self.conv4(e3)  # (B, C4, H/16, W/16)
        # Bottleneck: two SEW ADD blocks; spike counts 0..3.
        z = self.bottleneck(e4)  # (B, C4, H/16, W/16)
        # Decoder: NN-upsample to (skip + 4), 5x5 conv pad 0 -> skip size; add the skip spikes.
        d4 = self.deconv4(nn_upsample(z, _grown(e3, 4)))  # (B, C3, H/8, W/8)
        s4 = d4 + e3 if skips else d4  # skip sums: spike counts 0..2
        d3 = self.deconv3(nn_upsample(s4, _grown(e2, 4)))  # (B, C2, H/4, W/4)
        s3 = d3 + e2 if skips else d3
        d2 = self.deconv2(nn_upsample(s3, _grown(e1, 4)))  # (B, C1, H/2, W/2)
        s2 = d2 + e1 if skips else d2
        d1 = self.deconv1(nn_upsample(s2, _grown(bottom, 4)))  # (B, C0, H, W)
        s1 = d1 + bottom if skips else d1
        # Heads: NN-upsample to (H + 2, W + 2), 3x3 conv with bias -> (B, 1, H, W); the
        # integrator sums them coarse to fine, its running sums are the partial depths.
        potential: Tensor | int = 0
        partial: dict[str, Tensor] = {}
        for name, s in (("depth4", s4), ("depth3", s3), ("depth2", s2), ("depth1", s1)):
            if name in self.predict:
                potential = potential + self.predict[name](nn_upsample(s, (H + 2, W + 2)))
                partial[name] = potential
        depth = partial["depth1"]  # (B, 1, H, W) metres; the config always keeps head 1
        if not return_all:
            return depth
        spikes = {
            "bottom": bottom,
            "conv1": e1,
            "conv2": e2,
            "conv3": e3,
            "conv4": e4,
            "bottleneck": z,
            "deconv4": d4,
            "deconv3": d3,
            "deconv2": d2,
            "deconv1": d1,
        }
        head_inputs = ("deconv4", "deconv3", "deconv2", "deconv1")
        if skips:
            spikes.update(skip4=s4, skip3=s3, skip2=s2, skip1=s1)
            head_inputs = ("skip4", "skip3", "skip2", "skip1")
        return ModelOutput(depth, partial, spikes, ("bottleneck", *head_inputs))


def _grown(t: Tensor, by: int) -> tuple[int, int]:
    return (t.shape[-2] + by, t.shape[-1] + by)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (the paper's count: 18,148,708 for ``stereospike``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- registry: model name -> builder of its config -------------------------------------------


def _stereospike(
    *, width: float = 1.0, heads: Sequence[int] = ALL_HEADS, skips: bool = True
) -> ModelConfig:
    return ModelConfig("stereospike", 4, width, heads, skips)


def _stereospike_mono(
    *, width: float = 1.0, heads: Sequence[int] = ALL_HEADS, skips: bool = True
) -> ModelConfig:
    return ModelConfig("stereospike-mono", 2, width, heads, skips)


def _stereospike_ann(
    *,
    width: float = 1.0,
    heads: Sequence[int] = ALL_HEADS,
    skips: bool = True,
    activation: str = "sigmoid",
) -> ModelConfig:
    if activation == "if":
        raise ConfigError("stereospike-ann is the analog twin; use 'stereospike' for IF neurons")
    return ModelConfig(
        "stereospike-ann",
        4,
        width,
        heads,
        skips,
        activation,
        batch_norm=True,
        conv_bias=True,
    )


#: name -> function(**options) -> ModelConfig
MODELS: dict[str, Callable[..., ModelConfig]] = {
    "stereospike": _stereospike,
    "stereospike-mono": _stereospike_mono,
    "stereospike-ann": _stereospike_ann,
}


def model_config(name: str, **options: Any) -> ModelConfig:
    """The config of model ``name`` with ``options``; unknown names and options are errors."""
    builder = MODELS.get(name)
    if builder is None:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    allowed = list(inspect.signature(builder).parameters)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no option {', '.join(unknown)}; its options: {', '.join(allowed)}"
        )
    return builder(**options)


def build_model(name: str, **options: Any) -> StereoSpike:
    """Build model ``name`` (see :data:`MODELS`) with options ``width``, ``heads``, ``skips``
    (and ``activation`` for the ANN twin)."""
    return StereoSpike(model_config(name, **options))
