"""Training StereoSpike on a split of recordings: resumable, one process or DDP under torchrun.

``train(TrainConfig(...))`` caches the split's train and validation frames (``data`` cache), trains
with the authors' recipe by default and validates on full frames after every epoch. A run folder
holds::

    config.json        the TrainConfig and command that started the run
    train_state.pt     everything needed to continue (weights, Adam, scheduler, RNG, history)
    last.safetensors   the latest epoch's weights + metadata (model.checkpoint)
    best.safetensors   the epoch with the lowest validation MDE
                       (with ``weight_average``: the averaged weights, in both files)
    metrics.csv        one row per epoch
    tb/                TensorBoard event files
    cache/             the split's cache files (unless ``cache_dir`` points elsewhere)

Every file is written to a temporary name and renamed, ``train_state.pt`` last, so a run killed at
any moment continues from the last completed epoch when the same command runs again. The state
is ``torch.save`` of our own plain data and is read back with ``weights_only=True``: nothing but
tensors and builtins is ever unpickled.

Randomness is keyed, not streamed: the sampler's order comes from ``(seed, epoch)`` and each crop
from ``(seed, epoch, sample)``, so a resumed run draws exactly what the uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from stereospike_ros.atomic import atomic_write
from stereospike_ros.events.histogram import LEFT_CHANNELS, RIGHT_CHANNELS
from stereospike_ros.training.errors import TrainingError

log = logging.getLogger(__name__)

STATE_FORMAT = 1
STATE_FILE = "train_state.pt"
CONFIG_FILE = "config.json"

#: Schedules: the authors' code (default) and the paper's text.
RECIPES: dict[str, dict[str, Any]] = {
    "code": {"epochs": 70, "milestones": (8, 42, 60), "gamma": 0.5},
    "paper": {"epochs": 30, "milestones": (10, 25, 40), "gamma": 0.1},
}

#: TrainConfig fields that do not change what a run computes, so they may differ on resume
#: (``epochs``: re-running with more epochs extends a finished run).
_FREE_FIELDS = (
    "epochs",
    "device",
    "workers",
    "threads",
    "progress",
    "resume",
    "export_default",
    "note",
)


@dataclass(frozen=True)
class TrainConfig:
    """A training run; defaults follow the authors' code (see ``RECIPES``)."""

    root: str
    split: str
    out: str
    sequences: tuple[str, ...] | None = None
    cache_dir: str | None = None
    model: str = "stereospike"
    width: float = 1.0
    heads: tuple[int, ...] = (1, 2, 3, 4)
    skips: bool = True
    activation: str | None = None
    epochs: int = 70
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = (8, 42, 60)
    gamma: float = 0.5
    batch_size: int = 1
    spike_weight: float = 0.0
    crop: tuple[int, int] | None = None
    steps_per_epoch: int | None = None
    val_frames: int | None = None
    init_depth_bias: str = "auto"
    init: str | None = None  # checkpoint whose weights a new run starts from (fine-tuning)
    offset_calibration: bool = False
    level_weight: float = 0.0
    loss_scale: str = "metres"  # model.loss: metres (the authors') or log
    vflip: bool = False  # CroppedFrames: upside-down samples
    disparity_shift: int = 0  # CroppedFrames: right camera moved by up to this many pixels
    disparity_shift_fraction: float = 1.0  # CroppedFrames: share of samples shifted at all
    event_density: tuple[float, float] | None = None  # CroppedFrames: count factor range
    weight_average: float = 0.0  # WeightAverage decay per step (0: off)
    seed: int = 0
    window_ms: float = 50.0
    fill_holes: int = 0
    rectify: bool = True
    calibration: str | None = None
    protocol: str = "default"  # stereospike_ros.data.protocol: default or paper
    device: str = "auto"
    amp: bool = False
    workers: int = 0
    threads: int | None = None
    progress: bool = True
    resume: str = "auto"
    export_default: bool = False
    note: str | None = None  # what the data was, in words, for the exported card
    command: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise TrainingError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise TrainingError(f"lr must be positive, got {self.lr!r}")
        if self.spike_weight < 0 or self.level_weight < 0:
            raise TrainingError(
                f"spike_weight and level_weight must be >= 0, got {self.spike_weight!r}, "
                f"{self.level_weight!r}"
            )
        if self.crop is not None and (len(self.crop) != 2 or min(self.crop) < 1):
            raise TrainingError(f"crop must be (height, width) >= 1, got {self.crop!r}")
        if self.disparity_shift < 0:
            raise TrainingError(f"disparity_shift must be >= 0, got {self.disparity_shift!r}")
        if self.disparity_shift and self.model == "stereospike-mono":
            raise TrainingError("disparity_shift moves the right camera: the mono model has none")
        if not 0.0 < self.disparity_shift_fraction <= 1.0:
            raise TrainingError(
                f"disparity_shift_fraction must be in (0, 1], got {self.disparity_shift_fraction!r}"
            )
        if self.disparity_shift_fraction < 1.0 and not self.disparity_shift:
            raise TrainingError("disparity_shift_fraction needs a disparity_shift to apply")
        if self.event_density is not None:
            pair = tuple(float(v) for v in self.event_density)
            if len(pair) != 2 or not 0.0 < pair[0] <= pair[1]:
                raise TrainingError(
                    f"event_density must be (min, max) with 0 < min <= max, got "
                    f"{self.event_density!r}"
                )
        if not 0.0 <= self.weight_average < 1.0:
            raise TrainingError(
                f"weight_average is a decay per step in [0, 1), got {self.weight_average!r}"
            )
        for name in ("steps_per_epoch", "val_frames"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TrainingError(f"{name} must be >= 1 when given, got {value!r}")
        from stereospike_ros.model.loss import SCALES

        if self.loss_scale not in SCALES:
            raise TrainingError(
                f"loss_scale must be {' or '.join(SCALES)}, got {self.loss_scale!r}"
            )
        if self.protocol not in ("default", "paper"):
            raise TrainingError(f"protocol must be default or paper, got {self.protocol!r}")
        if self.note is not None and not self.export_default:
            raise TrainingError(
                "note is written to the exported card: give it with --export-default"
            )
        if self.resume not in ("auto", "never", "force"):
            raise TrainingError(f"resume must be auto, never or force, got {self.resume!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise TrainingError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.init_depth_bias != "auto" and self.init_depth_bias != "none":
            try:
                float(self.init_depth_bias)
            except ValueError:
                raise TrainingError(
                    f"init_depth_bias must be auto, none or metres, got {self.init_depth_bias!r}"
                ) from None

    def model_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "width": self.width,
            "heads": tuple(self.heads),
            "skips": self.skips,
        }
        if self.activation is not None:
            options["activation"] = self.activation
        return options

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict` (a run's ``config.json``); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainingError(f"unknown training config keys {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


# --- files --------------------------------------------------------------------------------------


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def _config_differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    defaults = json.loads(json.dumps(defaults, default=lambda _: None))
    keys = sorted((set(stored) | set(current)) - set(_FREE_FIELDS) - {"command"})
    return [
        f"{k}: run has {stored.get(k)!r}, command gives {current.get(k)!r}"
        for k in keys
        if stored.get(k, defaults.get(k)) != current.get(k)
    ]


def load_state(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The training state of ``run_dir`` (None if it has none); only tensors and builtins load."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch errors alike
        raise TrainingError(f"training state {path} cannot be read: {err}") from err
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TrainingError(f"{path} is not a stereospike_ros training state (format 1)")
    return state


# --- data ---------------------------------------------------------------------------------------


def scale_event_counts(counts: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Event-count histograms as if the scene had produced ``factor`` times as many events
    (float32, whole numbers): below 1 each event is kept with probability ``factor``
    (binomial thinning, what dropping events at random does), above 1
    ``Poisson((factor - 1) * count)`` events are added to each bin, so only where events
    already are."""
    whole = np.rint(counts).astype(np.int64)
    if factor < 1.0:
        whole = rng.binomial(whole, factor)
    elif factor > 1.0:
        whole = whole + rng.poisson((factor - 1.0) * whole)
    return whole.astype(np.float32)


class CroppedFrames(Dataset):
    """Random ``crop`` windows of a frame dataset, drawn from ``(seed, epoch, index)``; with
    ``vflip`` half of them are also turned upside down, with ``shift_px`` the right camera is
    moved sideways.

    An upside-down rectified pair is still a rectified pair with the same disparities (rows
    stay rows), so stereo is untouched, while the monocular prior "the top of the image is
    far" stops holding: a network can no longer lower the loss with where things are in the
    image and has to use what the two cameras disagree on.

    The shift goes further: the right camera's window is taken ``s`` pixels to the right of
    the left one's (``s`` uniform in ``-shift_px..shift_px``), which adds ``s`` pixels to every
    disparity, and the depth becomes ``fB / (fB / depth + s)``. The left image, and so every
    monocular cue, stays the same while the depth changes: only the two cameras' disagreement
    tells the network which. Pixels the shift puts behind the rig or beyond
    ``SHIFT_MAX_DEPTH_M`` leave the loss (NaN); right-camera columns outside the frame are
    empty, as at the border of a real pair. With ``shift_fraction`` below 1 only that share of
    the samples is shifted, the rest keep their true disparity: monocular cues stay useful on
    those, as they are on a real rig, while the shifted ones still force stereo.

    With ``density = (low, high)`` each sample's event counts are scaled by a factor ``g``
    drawn log-uniformly from that range (:func:`scale_event_counts`: events dropped at random
    below 1, added where events already are above 1), as a scene of fainter or stronger
    texture, a slower or faster motion or a higher or lower contrast threshold would. Both
    cameras get the same factor: they watch the same scene move. The depth is unchanged.
    The bundled network reads density as depth in part (its mean MDE over the held-out scene
    families rises from 166 to 203 cm when half of each frame's events are dropped); trained
    with a range of 0.3-3 it did not become insensitive to density and used stereo less
    (docs/benchmarks.md, "Event density augmentation"), so the option is off by default.
    """

    #: pixels a shift would put farther than this (their disparity near 0) are not scored
    SHIFT_MAX_DEPTH_M = 100.0

    def __init__(
        self,
        frames: Dataset,
        crop: tuple[int, int],
        seed: int,
        vflip: bool = False,
        shift_px: int = 0,
        focal_baseline: float | None = None,
        shift_fraction: float = 1.0,
        density: tuple[float, float] | None = None,
    ) -> None:
        self.frames = frames
        self.density = None if density is None else (float(density[0]), float(density[1]))
        self.crop = crop
        self.seed = seed
        self.vflip = vflip
        self.shift_px = int(shift_px)
        self.shift_fraction = float(shift_fraction)
        self.focal_baseline = focal_baseline
        self.epoch = 0
        height, width = frames.height, frames.width
        if crop[0] > height or crop[1] > width:
            raise TrainingError(
                f"crop {crop[0]}x{crop[1]} is larger than the frames ({height}x{width}) of "
                f"{getattr(frames, 'path', 'the dataset')}"
            )
        if self.shift_px and not (focal_baseline and focal_baseline > 0):
            raise TrainingError(
                "a disparity shift needs the rig's focal length x baseline, and the training "
                f"frames of {getattr(frames, 'path', 'the dataset')} do not have one value of "
                "it (recordings without calibration, or of different rigs)"
            )

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, depth = self.frames[i]
        rng = np.random.default_rng((self.seed, self.epoch, i))
        h, w = self.crop
        top = int(rng.integers(0, x.shape[-2] - h + 1))
        left = int(rng.integers(0, x.shape[-1] - w + 1))
        full = x
        x, depth = x[:, top : top + h, left : left + w], depth[:, top : top + h, left : left + w]
        flip = self.vflip and rng.random() < 0.5  # drawn after the window: crops stay as without
        if self.shift_px:  # drawn last: without a shift, crops and flips stay as they were
            shift = int(rng.integers(-self.shift_px, self.shift_px + 1))
            if self.shift_fraction < 1.0 and rng.random() >= self.shift_fraction:
                shift = 0  # drawn after the shift: a fraction of 1 draws as before
            if shift:
                x, depth = self._shifted(full, x, depth, top, left, shift)
        if self.density is not None:  # drawn last: crops, flips and shifts stay as without
            x = self._rescaled(x, rng)
        if flip:
            x, depth = x.flip(-2), depth.flip(-2)
        return x, depth

    def _rescaled(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        low, high = self.density  # type: ignore[misc]
        factor = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        return torch.from_numpy(scale_event_counts(x.numpy(), factor, rng))

    def _shifted(
        self,
        full: torch.Tensor,
        x: torch.Tensor,
        depth: torch.Tensor,
        top: int,
        left: int,
        shift: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` with its right camera taken ``shift`` px to the right, and the depth that goes
        with the larger (or smaller) disparity."""
        from stereospike_ros.model.loss import valid_depth

        h, w = self.crop
        width = full.shape[-1]
        right = torch.zeros_like(x[RIGHT_CHANNELS])
        lo, hi = max(0, left + shift), min(width, left + shift + w)
        if hi > lo:
            right[..., lo - left - shift : hi - left - shift] = full[
                RIGHT_CHANNELS, top : top + h, lo:hi
            ]
        x = torch.cat([x[LEFT_CHANNELS], right])
        fb = float(self.focal_baseline)  # type: ignore[arg-type]
        disparity = fb / depth + shift  # NaN and inf (no depth) stay invalid below
        new = fb / disparity
        bad = ~valid_depth(depth) | ~(disparity * self.SHIFT_MAX_DEPTH_M > fb)
        return x, torch.where(bad, torch.full_like(new, float("nan")), new)


class _Limited(torch.utils.data.Sampler):
    """The first ``limit`` indices of another sampler (a shorter epoch)."""

    def __init__(self, sampler: DistributedSampler, limit: int | None) -> None:
        self.sampler = sampler
        self.limit = limit

    def __iter__(self) -> Iterator[int]:
        for n, index in enumerate(self.sampler):
            if self.limit is not None and n >= self.limit:
                return
            yield index

    def __len__(self) -> int:
        n = len(self.sampler)
        return n if self.limit is None else min(n, self.limit)


def _split_summary(split: Any) -> dict[str, Any]:
    return {
        "name": split.name,
        **{part: {s: len(i) for s, i in split.part(part).items} for part in ("train", "val")},
    }


def prepare_data(config: TrainConfig, run_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Cache the train and val parts (rank 0 converts); returns paths and the split summary."""
    from stereospike_ros.data import DataError, FrameOptions, SplitFrames
    from stereospike_ros.data.cache import cache_split

    root = Path(config.root)
    if not root.is_dir():
        raise TrainingError(f"--root {root} is not a folder of recordings")
    cache_dir = Path(config.cache_dir) if config.cache_dir else run_dir / "cache"
    options = FrameOptions.from_window_ms(
        config.window_ms,
        fill_holes_px=config.fill_holes,
        rectify=config.rectify,
        protocol=config.protocol,
    )
    source = SplitFrames(
        config.split, root, tuple(config.sequences or ()), options, config.calibration
    )
    parts = ("train", "val")
    try:
        split = source.split
        for part in parts:
            if len(split.part(part)) == 0:
                raise TrainingError(
                    f"split {config.split!r} has no {part} frames (sequences: "
                    f"{', '.join(split.sequences) or 'none'})"
                )
        if _rank() == 0:
            files = cache_split(source, cache_dir, parts=parts, progress=progress)
        _barrier()
        if _rank() != 0:  # rank 0 has converted: this only finds its files
            files = cache_split(source, cache_dir, parts=parts, progress=False)
    except DataError as err:
        raise TrainingError(f"cannot prepare the data of split {config.split!r}: {err}") from err
    return {"files": files, "split": _split_summary(split)}


def mean_depth(frames: Dataset, max_frames: int = 200) -> float:
    """Mean valid ground-truth depth over up to ``max_frames`` evenly spaced frames."""
    picks = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), max_frames)).astype(int))
    total, count = 0.0, 0
    for i in picks:
        depth = frames[int(i)][1]
        valid = torch.isfinite(depth) & (depth > 0)
        total += float(depth[valid].sum())
        count += int(valid.sum())
    if count == 0:
        raise TrainingError(f"the training frames of {getattr(frames, 'path', '?')} have no depth")
    return total / count


# --- distributed ----------------------------------------------------------------------------------


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _barrier() -> None:
    if _world() > 1:
        dist.barrier()


def _setup_distributed(device: str) -> torch.device:
    """Join the torchrun group when WORLD_SIZE > 1; the device this process trains on."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"--device {device}: CUDA is not available on this machine")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        index = local if device in ("auto", "cuda") else int(device.split(":")[1])
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def _reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    if _world() > 1:
        dist.all_reduce(t)
    return t.tolist()


# --- the run -------------------------------------------------------------------------------------


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def _resolve_run(config: TrainConfig, run_dir: Path) -> dict[str, Any] | None:
    """Check the run folder against the config; the state to resume from, if any."""
    stored_path = run_dir / CONFIG_FILE
    state = load_state(run_dir)
    if state is None:
        return None
    if config.resume == "never":
        raise TrainingError(
            f"{run_dir} already holds a run (epoch {state['epoch']}); use another --out or "
            "--resume auto to continue it"
        )
    stored = state.get("config") or (
        json.loads(stored_path.read_text()) if stored_path.is_file() else {}
    )
    diffs = _config_differences(stored, config.to_dict())
    if diffs and config.resume != "force":
        raise TrainingError(
            f"{run_dir} holds a run with another configuration ("
            + "; ".join(diffs)
            + "); use another --out, or --resume force to continue it anyway"
        )
    return state


def _initial_bias(config: TrainConfig, frames: Dataset) -> float | None:
    if config.init_depth_bias == "none":
        return None
    if config.init_depth_bias == "auto":
        return mean_depth(frames)
    return float(config.init_depth_bias)


def _checkpoint_metadata(
    config: TrainConfig, data: Mapping[str, Any], size: tuple[int, int], epoch: int, best: dict
) -> dict[str, Any]:
    return {
        "input_size": size,
        "window_ms": config.window_ms,
        "data": {"root": str(Path(config.root).resolve()), "sequences": data["split"]},
        "split": {"name": config.split, "part": "val"},
        "epoch": epoch,
        "best_epoch": best.get("epoch"),
        "training": config.to_dict(),
    }


def _metrics_csv(history: Sequence[Mapping[str, Any]]) -> str:
    keys: list[str] = []
    for row in history:
        keys.extend(k for k in row if k not in keys)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k, "") for k in keys})
    return out.getvalue()


@torch.no_grad()
def validate(
    model: torch.nn.Module,
    frames: Dataset,
    device: torch.device,
    *,
    spike_weight: float = 0.0,
    loss_scale: str = "metres",
    max_frames: int | None = None,
    progress: bool = False,
    amp: bool = False,
) -> dict[str, float]:
    """Loss and metrics (model.metrics) of ``model`` on full ``frames``, one at a time."""
    from tqdm import tqdm

    from stereospike_ros.model import MetricAccumulator, stereospike_loss

    model.eval()
    acc = MetricAccumulator()
    n = len(frames) if max_frames is None else min(len(frames), max_frames)
    picks = np.unique(np.linspace(0, len(frames) - 1, n).astype(int)) if n else []
    losses = []
    for i in tqdm(picks, desc="validate", unit="frame", leave=False, disable=not progress):
        x, gt = frames[int(i)]
        x, gt = x[None].to(device), gt[None].to(device)
        with _autocast(device, amp):
            out = model(x, return_all=True)
        loss, _ = stereospike_loss(_float(out), gt, spike_weight=spike_weight, scale=loss_scale)
        losses.append(float(loss))
        acc.update(out.depth.float(), gt, out.spikes)
    summary = acc.summary()
    summary["loss"] = float(np.mean(losses)) if losses else math.nan
    return summary


def level_loss(out: Any, target: torch.Tensor, scale: str = "metres") -> torch.Tensor:
    """Sum over the partial depths of the squared mean residual over valid pixels (per sample).

    With weight w added to the recipe's variance term it makes the regression
    ``mean(R^2) - (1 - w) mean(R)^2``, Eigen et al.'s scale-invariant form, which sees the
    depth's level; the recipe's loss (w = 0) does not. ``scale="log"`` takes the residual
    the loss of that scale takes (model.loss), which makes this Eigen et al.'s log loss.
    """
    from stereospike_ros.model.loss import residual

    total = target.new_zeros(())
    for depth in out.partial_depths.values():
        r, _, count = residual(depth, target, scale)
        mean = r.sum(dim=(1, 2, 3)) / count.clamp(min=1.0)
        total = total + (mean.square() * (count > 0)).sum() / (count > 0).sum().clamp(min=1)
    return total


class _OffsetTracker:
    """Recent mean of ``gt - prediction`` over valid pixels (an EMA over about 50 frames).

    The loss cannot see a constant offset (variance of the residual; Sobel of it), so nothing
    pins the depth's mean. At each epoch's end the first head's bias is shifted by this mean:
    the loss is unchanged by it and the depth's mean follows the training data.
    """

    def __init__(self, decay: float = 0.98) -> None:
        self.decay = decay
        self.value = 0.0
        self.weight = 0.0

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        valid = torch.isfinite(target) & (target > 0)
        for p, g, v in zip(prediction, target, valid, strict=True):
            if v.any():
                residual = float((g[v] - p[v]).mean())
                self.value = self.decay * self.value + (1 - self.decay) * residual
                self.weight = self.decay * self.weight + (1 - self.decay)

    def totals(self) -> tuple[float, float]:
        """(weighted sum, weight), summable across ranks."""
        return self.value, self.weight


def _print(text: str) -> None:
    print(text, flush=True)


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _float(out: Any) -> Any:
    """The ModelOutput with its depths in float32 (the loss is computed in fp32 under AMP)."""
    if out.depth.dtype == torch.float32:
        return out
    return dataclasses.replace(
        out,
        depth=out.depth.float(),
        partial_depths={k: v.float() for k, v in out.partial_depths.items()},
    )


def train(
    config: TrainConfig,
    on_step: Callable[[int, float], None] | None = None,
) -> Path:
    """Train (or continue) the run ``config.out``; returns the run folder.

    ``on_step(global_step, loss)`` is called after every optimizer step on every rank (a hook for
    tests and tooling; an exception from it stops the run like a crash would).
    """
    threads = torch.get_num_threads()
    try:
        return _train(config, on_step)
    finally:
        torch.set_num_threads(threads)  # ``config.threads`` is this run's, not the caller's


class WeightAverage:
    """An exponential moving average of a network's weights over training steps.

    At batch 1 every step moves the weights by one sample's gradient, so the weights at the end
    of an epoch lean towards its last few hundred samples (validation MDE moves by tens of cm
    from one epoch to the next); an average over the steps leans on none of them (Polyak
    averaging) and is a network of the same shape. The decay starts low, ``min(decay,
    (1 + n) / (10 + n))`` after n updates, so the first epochs' average is not held back by
    the random initial weights. Buffers are copied, not averaged.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        import copy

        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Fold ``model``'s current weights into the average."""
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        mine = list(self.module.parameters())
        theirs = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(mine, theirs, 1.0 - decay)
        for b, src in zip(self.module.buffers(), model.buffers(), strict=True):
            b.copy_(src)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "updates": self.updates,
            "weights": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["weights"])


@dataclass
class _Progress:
    """What the run has done so far, carried from epoch to epoch and saved in the state."""

    epoch: int = 0  # epochs completed
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"mde_cm": math.inf, "epoch": None})


@dataclass
class _Batches:
    """The training batches of this process: its share of the (cropped) frames, in the order
    that ``(seed, epoch)`` keys."""

    dataset: Dataset
    sampler: DistributedSampler
    loader: DataLoader

    def for_epoch(self, epoch: int) -> DataLoader:
        self.sampler.set_epoch(epoch)
        if isinstance(self.dataset, CroppedFrames):
            self.dataset.epoch = epoch
        return self.loader


@dataclass
class _Run:
    """Everything one training process holds from set-up to the end of the run."""

    config: TrainConfig
    run_dir: Path
    device: torch.device
    rank: int
    world: int
    amp: bool
    show_progress: bool  # bars and epoch lines, on rank 0 only
    data: dict[str, Any]  # prepare_data's cache files and split summary
    train_frames: Any  # data.CachedFrames
    val_frames: Any
    size: tuple[int, int]
    model: torch.nn.Module  # the StereoSpike being trained
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    batches: _Batches
    writer: Any  # TensorBoard SummaryWriter, rank 0 only
    average: WeightAverage | None  # with weight_average

    @property
    def kept(self) -> torch.nn.Module:
        """The network that is validated, selected and saved: the weight average if any."""
        return self.model if self.average is None else self.average.module


@dataclass
class _EpochStats:
    """One epoch of this process's training steps."""

    started: float  # perf_counter at the epoch's start
    loss_sum: float = 0.0  # per-sample loss summed over samples
    frames: int = 0
    steps: int = 0
    step_time: float = 0.0  # seconds inside steps (not loading data)
    wall: float = 0.0  # the loop's wall time, data loading included
    offset: _OffsetTracker = field(default_factory=_OffsetTracker)


def _train(config: TrainConfig, on_step: Callable[[int, float], None] | None) -> Path:
    """Each epoch: every process trains on its share and the totals are summed; rank 0 then
    validates, records the epoch, writes its files (the state last) and prints a line, while
    the others wait for it."""
    run, done = _set_up(config)
    for epoch in range(done.epoch, config.epochs):
        stats = _train_epoch(run, done, epoch, on_step)
        run.scheduler.step()
        train_loss, totals = _end_epoch(run, stats)
        if run.rank == 0:
            val = _validate(run, run.kept)
            row = _epoch_row(run, epoch, stats, totals, train_loss, val)
            if run.average is not None:  # the raw weights beside the average, same frames
                row["raw_val_mde_cm"] = _validate(run, run.model)["mde_cm"]
            improved = _record_epoch(done, row, val)
            _save_epoch(run, done, row, train_loss, val, improved)
            _print_epoch(run, row, train_loss, val, improved)
        _barrier()
    _finish(run)
    return run.run_dir


def _validate(run: _Run, model: torch.nn.Module) -> dict[str, float]:
    config = run.config
    return validate(
        model,
        run.val_frames,
        run.device,
        spike_weight=config.spike_weight,
        loss_scale=config.loss_scale,
        max_frames=config.val_frames,
        progress=run.show_progress,
        amp=run.amp,
    )


# --- set-up ---------------------------------------------------------------------------------------


def _set_up(config: TrainConfig) -> tuple[_Run, _Progress]:
    """Join the process group, check the run folder, cache the data, build (or resume) the
    model, its optimizer and the batches."""
    from stereospike_ros.data import CachedFrames

    run_dir = Path(config.out)
    device = _setup_distributed(config.device)
    rank, world = _rank(), _world()
    if config.threads:
        torch.set_num_threads(config.threads)
    amp = config.amp and device.type == "cuda"
    if config.amp and not amp and rank == 0:
        log.warning("--amp applies to CUDA only; training in float32 on %s", device)
    show_progress = config.progress and rank == 0

    state = _resolve_run(config, run_dir)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_text(run_dir / CONFIG_FILE, json.dumps(config.to_dict(), indent=2) + "\n")
    model_cfg = _model_config(config)
    # read --init before caching the data (minutes), so a wrong checkpoint fails at once
    init = _init_weights(config.init, model_cfg) if config.init and state is None else None
    data = prepare_data(config, run_dir, progress=show_progress)
    mono = model_cfg.in_channels == 2
    train_frames = CachedFrames(data["files"]["train"], mono=mono)
    val_frames = CachedFrames(data["files"]["val"], mono=mono)

    model = _initial_model(config, model_cfg, state, init, train_frames)
    model.to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(config.milestones), gamma=config.gamma
    )
    average = WeightAverage(model, config.weight_average) if config.weight_average else None
    done = _Progress()
    if state is not None:
        done = _resume(state, optimizer, scheduler)
        if average is not None and "average" in state:
            average.load_state_dict(state["average"])
        # else (--resume force onto a run without it): the average starts from these weights
        if rank == 0:
            log.info("resuming %s after epoch %d", run_dir, done.epoch)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    batches = _make_batches(config, train_frames, rank, world)
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"), purge_step=done.global_step or None)
    run = _Run(
        config=config,
        run_dir=run_dir,
        device=device,
        rank=rank,
        world=world,
        amp=amp,
        show_progress=show_progress,
        data=data,
        train_frames=train_frames,
        val_frames=val_frames,
        size=(val_frames.height, val_frames.width),
        model=model,
        net=net,
        optimizer=optimizer,
        scheduler=scheduler,
        batches=batches,
        writer=writer,
        average=average,
    )
    return run, done


def _model_config(config: TrainConfig) -> Any:
    from stereospike_ros.model import ModelError, model_config

    try:
        return model_config(config.model, **config.model_options())
    except ModelError as err:
        raise TrainingError(f"model {config.model!r}: {err}") from err


def _initial_model(
    config: TrainConfig,
    model_cfg: Any,
    state: Mapping[str, Any] | None,
    init: Mapping[str, torch.Tensor] | None,
    train_frames: Dataset,
) -> torch.nn.Module:
    """A fresh network seeded from ``config.seed``, with the resumed weights when there is a
    state to continue, else the ``--init`` weights when given."""
    from stereospike_ros.model import StereoSpike

    torch.manual_seed(config.seed)
    model = StereoSpike(model_cfg)
    if state is not None:
        model.load_state_dict(state["model"])
    elif init is not None:
        model.load_state_dict(init)
    else:
        bias = _initial_bias(config, train_frames)
        if bias is not None:  # the loss is blind to a constant offset: start from the mean depth
            first = next(iter(model.predict.values()))
            with torch.no_grad():
                first.bias.fill_(bias)
    return model


def _init_weights(path: str, model_cfg: Any) -> Mapping[str, torch.Tensor]:
    """The weights of checkpoint ``path``, which must hold the architecture the run trains:
    a fine-tuning run keeps every tensor, so a different width or head set is refused here
    rather than half-loaded."""
    from stereospike_ros.model import CheckpointError, load_checkpoint

    try:
        model, _ = load_checkpoint(path, expect=model_cfg)
    except CheckpointError as err:
        raise TrainingError(f"--init: {err}") from err
    return model.state_dict()


def _resume(
    state: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.MultiStepLR,
) -> _Progress:
    """Optimizer, scheduler and random state as the last completed epoch left them."""
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return _Progress(
        epoch=int(state["epoch"]),
        global_step=int(state["global_step"]),
        history=list(state["history"]),
        best=dict(state["best"]),
    )


def _make_batches(config: TrainConfig, train_frames: Dataset, rank: int, world: int) -> _Batches:
    dataset: Dataset = train_frames
    if (
        config.crop is not None
        or config.vflip
        or config.disparity_shift
        or config.event_density is not None
    ):
        crop = tuple(config.crop or (train_frames.height, train_frames.width))
        dataset = CroppedFrames(
            train_frames,
            crop,
            config.seed,
            config.vflip,
            config.disparity_shift,
            getattr(train_frames, "focal_baseline", None),
            config.disparity_shift_fraction,
            config.event_density,
        )
    sampler = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=config.seed, drop_last=True
    )
    limit = None if config.steps_per_epoch is None else config.steps_per_epoch * config.batch_size
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=_Limited(sampler, limit),
        num_workers=config.workers,
        drop_last=True,
        persistent_workers=False,
    )
    if len(loader) == 0:
        raise TrainingError(
            f"{len(dataset)} training frames make no batch of {config.batch_size} on {world} "
            "process(es)"
        )
    return _Batches(dataset, sampler, loader)


# --- one epoch ------------------------------------------------------------------------------------


def _train_epoch(
    run: _Run, done: _Progress, epoch: int, on_step: Callable[[int, float], None] | None
) -> _EpochStats:
    """One pass over this process's batches: forward, loss, step."""
    from tqdm import tqdm

    from stereospike_ros.model import stereospike_loss

    config, device = run.config, run.device
    loader = run.batches.for_epoch(epoch)
    run.net.train()
    stats = _EpochStats(started=time.perf_counter())
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not run.show_progress)
    for x, gt in bar:
        t0 = time.perf_counter()
        x, gt = x.to(device, non_blocking=True), gt.to(device, non_blocking=True)
        with _autocast(device, run.amp):
            out = run.net(x, return_all=True)
        loss, parts = stereospike_loss(
            _float(out), gt, spike_weight=config.spike_weight, scale=config.loss_scale
        )
        if config.level_weight:
            level = level_loss(_float(out), gt, config.loss_scale)
            loss = loss + config.level_weight * level
            parts["total"] += config.level_weight * float(level.detach())
        if not torch.isfinite(loss):
            raise TrainingError(
                f"loss became {float(loss)} at epoch {epoch + 1} step {stats.steps + 1}; "
                "lower --lr or check the data"
            )
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        if run.average is not None:
            run.average.update(run.model)
        stats.offset.update(out.depth.detach().float(), gt)
        stats.step_time += time.perf_counter() - t0
        stats.steps += 1
        done.global_step += 1
        stats.loss_sum += parts["total"] * x.shape[0]
        stats.frames += x.shape[0]
        if run.show_progress:
            bar.set_postfix(loss=f"{parts['total']:.3f}", best_mde=f"{done.best['mde_cm']:.1f}")
        if run.writer is not None and (done.global_step % 10 == 0 or stats.steps == 1):
            run.writer.add_scalar("train/loss_step", parts["total"], done.global_step)
        if on_step is not None:
            on_step(done.global_step, parts["total"])
    bar.close()
    stats.wall = time.perf_counter() - stats.started
    return stats


def _end_epoch(run: _Run, stats: _EpochStats) -> tuple[float, dict[str, float]]:
    """The epoch's train loss and totals over every process; with ``offset_calibration`` the
    first head's bias follows the mean offset the epoch saw (:class:`_OffsetTracker`)."""
    loss_total, frames_total, time_total, shift_sum, shift_n = _reduce_sum(
        [stats.loss_sum, stats.frames, stats.step_time, *stats.offset.totals()], run.device
    )
    shift = shift_sum / shift_n if shift_n else 0.0
    if run.config.offset_calibration and shift_n:
        with torch.no_grad():
            nets = [run.model] + ([run.average.module] if run.average is not None else [])
            for net in nets:
                next(iter(net.predict.values())).bias += shift
    totals = {"frames": frames_total, "step_time": time_total, "shift": shift}
    return loss_total / max(frames_total, 1), totals


def _epoch_row(
    run: _Run,
    epoch: int,
    stats: _EpochStats,
    totals: Mapping[str, float],
    train_loss: float,
    val: Mapping[str, float],
) -> dict[str, Any]:
    """The epoch's line of ``metrics.csv``."""
    return {
        "epoch": epoch + 1,
        "train_loss": train_loss,
        "val_loss": val["loss"],
        **{f"val_{k}": v for k, v in val.items() if k != "loss" and "/" not in k},
        "firing_rate": val.get("firing_rate/overall", math.nan),
        "lr": run.optimizer.param_groups[0]["lr"],
        "offset_shift_m": totals["shift"] if run.config.offset_calibration else 0.0,
        "steps": stats.steps,
        "processes": run.world,
        "s_per_step": totals["step_time"] / max(stats.steps * run.world, 1),
        # every process's samples over the loop's wall time: what the hardware sustains
        "samples_per_s": totals["frames"] / max(stats.wall, 1e-9),
        "epoch_s": time.perf_counter() - stats.started,
    }


def _record_epoch(done: _Progress, row: dict[str, Any], val: Mapping[str, float]) -> bool:
    """Add the epoch to the history; whether it is the best so far (lowest validation MDE)."""
    improved = val["mde_cm"] < done.best["mde_cm"]
    if improved:
        done.best = {"mde_cm": val["mde_cm"], "epoch": row["epoch"]}
    row["best"] = int(improved)
    done.history.append(row)
    done.epoch = row["epoch"]
    return improved


# --- files of an epoch ----------------------------------------------------------------------------


def _save_epoch(
    run: _Run,
    done: _Progress,
    row: Mapping[str, Any],
    train_loss: float,
    val: Mapping[str, float],
    improved: bool,
) -> None:
    """Checkpoints, metrics.csv and TensorBoard scalars, then the training state last: a run
    killed in between resumes from the previous epoch and writes them again."""
    from stereospike_ros.model import save_checkpoint

    config, run_dir, model = run.config, run.run_dir, run.kept
    meta = _checkpoint_metadata(config, run.data, run.size, done.epoch, done.best)
    metrics = {"train_loss": train_loss, **{f"val_{k}": v for k, v in val.items()}}
    if improved:
        save_checkpoint(run_dir / "best.safetensors", model, metrics=metrics, **meta)
    save_checkpoint(run_dir / "last.safetensors", model, metrics=metrics, **meta)
    _write_text(run_dir / "metrics.csv", _metrics_csv(done.history))
    for key, value in row.items():
        if key not in ("epoch", "best") and isinstance(value, float):
            run.writer.add_scalar(f"epoch/{key}", value, done.global_step)
    run.writer.flush()
    new_state = {
        "format": STATE_FORMAT,
        "epoch": done.epoch,
        "global_step": done.global_step,
        "model": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "history": done.history,
        "best": done.best,
        "config": config.to_dict(),
    }
    if run.average is not None:
        new_state["average"] = run.average.state_dict()
    buffer = io.BytesIO()
    torch.save(new_state, buffer)
    atomic_write(run_dir / STATE_FILE, lambda f, b=buffer: f.write(b.getvalue()))


def _print_epoch(
    run: _Run, row: Mapping[str, Any], train_loss: float, val: Mapping[str, float], improved: bool
) -> None:
    from tqdm import tqdm

    (tqdm.write if run.show_progress else _print)(
        f"epoch {row['epoch']}: train loss {train_loss:.4f}  val loss {val['loss']:.4f}  "
        f"val MDE {val['mde_cm']:.1f} cm"
        + (f" (raw weights {row['raw_val_mde_cm']:.1f})" if "raw_val_mde_cm" in row else "")
        + f"  delta1 {val['delta1']:.3f}  "
        f"firing {row['firing_rate']:.3f}  {row['s_per_step']:.3f} s/step  "
        f"{row['samples_per_s']:.1f} samples/s" + ("  (best)" if improved else "")
    )


def _finish(run: _Run) -> None:
    """Close files, export the bundled default (``export_default``), leave the process group."""
    if run.writer is not None:
        run.writer.close()
    run.train_frames.close()
    run.val_frames.close()
    if run.rank == 0 and run.config.export_default:
        from stereospike_ros.training.export import export_default

        export_default(run.run_dir, note=run.config.note)
    _barrier()
    if run.world > 1 and os.environ.get("WORLD_SIZE"):
        dist.destroy_process_group()
