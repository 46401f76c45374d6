"""Score a checkpoint, and baselines, against ground-truth depth on exactly the same frames.

Frames come from a recording (MVSEC HDF5, ROS 1 / ROS 2 bag with a depth topic), a split's part
of recordings under a folder, or a training cache file. Every predictor sees each frame once,
in one pass, so a network and a baseline are always compared on identical inputs.

Metrics are ``stereospike_ros.model.MetricAccumulator``'s: per frame over valid pixels (ground
truth finite and > 0), then averaged over frames. A prediction may be NaN where a method has
no answer (StereoSGBM where matching fails): such pixels are left out of the metrics and
counted as not covered; ``coverage`` is the fraction of valid pixels that got a finite
prediction (1.0 for the networks). A frame without any covered pixel is skipped and counted.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from stereospike_ros.data.errors import DataError
from stereospike_ros.data.frames import DEFAULT_WINDOW_NS, Frame, FrameOptions
from stereospike_ros.data.sequence import (  # noqa: F401 (re-exported)
    MVSEC_FOCAL_BASELINE,
    StereoSequence,
    focal_baseline_of,
)
from stereospike_ros.errors import UsageError
from stereospike_ros.events.histogram import split_stereo_channels
from stereospike_ros.model.inputs import frame_tensor, resolve_device
from stereospike_ros.model.metrics import MetricAccumulator, dense_macs
from stereospike_ros.model.network import StereoSpike, count_parameters
from stereospike_ros.model.temporal import TemporalFilter
from stereospike_ros.training.errors import TrainingError

log = logging.getLogger(__name__)

DEFAULT_DEPTH_TOPIC = "/davis/left/depth_image_rect"


# -- predictors ------------------------------------------------------------------------------


@dataclass
class Prediction:
    """A depth map ``(H, W)`` in metres (NaN = no answer) and, for spiking nets, the spikes."""

    depth: Tensor
    spikes: Mapping[str, Tensor] | None = None


@runtime_checkable
class Predictor(Protocol):
    """Anything that turns a stereo frame into depth: a network or a classical baseline."""

    name: str

    def __call__(self, frame: Frame) -> Prediction: ...

    def describe(self, height: int, width: int) -> dict[str, Any]:
        """JSON-ready facts for the results table (parameters, MACs, settings)."""
        ...


class ModelPredictor:
    """A StereoSpike-family network; mono networks (2 input channels) see the left camera only.

    ``path`` is an execution path of :func:`~stereospike_ros.model.compile_for_inference`
    (``reference`` by default; ``onnxruntime`` with ``providers``, ...). Only the reference
    network returns spikes, so firing rates are measured on that path alone."""

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str | None = None,
        device: str | torch.device = "cpu",
        metadata: Mapping[str, Any] | None = None,
        path: str = "reference",
        providers: str | None = None,
    ) -> None:
        if not isinstance(model, StereoSpike):
            raise TrainingError(
                f"ModelPredictor needs a StereoSpike network, got {type(model).__name__}"
            )
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.config = model.config
        self.name = name or self.config.name
        self.metadata = dict(metadata or {})
        if self.config.in_channels not in (2, 4):
            raise TrainingError(
                f"{self.name}: a network with {self.config.in_channels} input channels cannot "
                "take stereo event frames (2 = left camera, 4 = both)"
            )
        self.path = path
        self.runner = None
        if path != "reference":
            from stereospike_ros.model.errors import ModelError
            from stereospike_ros.model.inference import RUNTIME_PATHS, compile_for_inference

            runtime = path in RUNTIME_PATHS
            try:
                self.runner = compile_for_inference(
                    model,
                    path,
                    device=None if runtime else self.device,
                    **({"providers": providers} if runtime else {}),
                )
            except ModelError as err:
                raise TrainingError(f"--inference-path {path}: {err}") from err

    def input_tensor(self, frame: Frame) -> Tensor:
        """``(1, C, H, W)`` float counts on the model's device."""
        return frame_tensor(frame, self.config.in_channels)[None].to(self.device)

    @torch.inference_mode()
    def __call__(self, frame: Frame) -> Prediction:
        if self.runner is not None:
            return Prediction(self.runner(self.input_tensor(frame))[0, 0])
        out = self.model(self.input_tensor(frame), return_all=True)
        spikes = out.spikes if self.config.spiking else None
        return Prediction(out.depth[0, 0], spikes)

    def describe(self, height: int, width: int) -> dict[str, Any]:
        return {
            "kind": "network",
            "model": self.config.name,
            "config": self.config.to_dict(),
            "parameters": count_parameters(self.model),
            "dense_macs": dense_macs(self.model, (height, width)).total,
            "spiking": self.config.spiking,
            "inference_path": self.path,
        }


class SmoothedPredictor:
    """Another predictor's depth through a :class:`~stereospike_ros.model.temporal.TemporalFilter`
    (``evaluate --temporal-smoothing``), as the depth node's ``temporal_smoothing`` runs it.

    Frames must come in time order; the filter starts again where time goes back or jumps
    (a new recording), so a split of several recordings is scored recording by recording.
    Named ``"<name>, smoothed <s>"`` unless ``name`` is given."""

    def __init__(self, inner: Predictor, smoothing: float, name: str | None = None) -> None:
        self.inner = inner
        self.filter = TemporalFilter(smoothing)
        self.name = name or f"{inner.name}, smoothed {smoothing:g}"

    def __call__(self, frame: Frame) -> Prediction:
        prediction = self.inner(frame)
        depth = prediction.depth.detach().to("cpu", torch.float32).numpy()
        smoothed = self.filter(depth, int(frame.t_ns))
        return Prediction(torch.from_numpy(smoothed), prediction.spikes)

    def describe(self, height: int, width: int) -> dict[str, Any]:
        return {**self.inner.describe(height, width), "temporal_smoothing": self.filter.smoothing}


def pick_threads(
    model: nn.Module, size: tuple[int, int], device: torch.device, repeats: int = 2
) -> tuple[int, dict[int, float]]:
    """Set torch's CPU threads to the faster of 1 and its default for this model at batch 1.

    At batch 1 torch's intra-op threads often cost more than they save (small convolutions,
    a machine shared with the data reading): measured, not assumed. Returns the chosen count
    and the median seconds per forward of each candidate (timed interleaved, after one
    warm-up each). On a GPU, or with one core, nothing is measured.
    """
    default = torch.get_num_threads()
    if device.type != "cpu" or default <= 1:
        return default, {}
    in_channels = getattr(getattr(model, "config", None), "in_channels", 4)
    x = torch.zeros(1, in_channels, *size)
    times: dict[int, list[float]] = {1: [], default: []}
    with torch.inference_mode():
        for threads in times:  # warm-up: first calls allocate and plan
            torch.set_num_threads(threads)
            model(x)
        for _ in range(repeats):
            for threads in times:
                torch.set_num_threads(threads)
                start = time.perf_counter()
                model(x)
                times[threads].append(time.perf_counter() - start)
    medians = {n: float(np.median(t)) for n, t in times.items()}
    best = min(medians, key=medians.__getitem__)
    torch.set_num_threads(best)
    return best, medians


def as_predictor(model_or_predictor: nn.Module | Predictor, device: str = "cpu") -> Predictor:
    if isinstance(model_or_predictor, nn.Module):
        return ModelPredictor(model_or_predictor, device=device)
    if callable(model_or_predictor) and hasattr(model_or_predictor, "name"):
        return model_or_predictor
    raise TrainingError(
        f"cannot evaluate a {type(model_or_predictor).__name__}: give a StereoSpike network "
        "or a predictor (a callable with .name and .describe)"
    )


# -- results ---------------------------------------------------------------------------------


@dataclass
class EvalResult:
    """One method's scores on the evaluated frames.

    ``metrics``: ``mde_cm``, ``rmse_cm``, ``abs_rel``, ``delta1..3``, ``mde_cm@10m/20m/30m``,
    ``frames``, ``skipped_frames``, ``valid_pixels`` (ground truth), ``scored_pixels``,
    ``coverage``, ``firing_rate/...`` for spiking networks. ``per_frame``: one record per frame
    (sequence, index, t_ns, mde_cm or None, valid_pixels, coverage). ``kept``: predictions kept
    for plots, by frame position.
    """

    name: str
    metrics: dict[str, float]
    per_frame: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    kept: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def frame_mde_cm(self) -> list[float | None]:
        return [r["mde_cm"] for r in self.per_frame]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes None)."""
        return _json_clean(
            {
                "name": self.name,
                **self.metrics,
                "info": self.info,
                "seconds": self.seconds,
                "per_frame": self.per_frame,
            }
        )


def _json_clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _json_clean(value.item())
    return value


class _Scorer:
    """Streams one method's predictions into a MetricAccumulator, with coverage per frame."""

    def __init__(self, predictor: Predictor, keep: set[int]) -> None:
        self.predictor = predictor
        self.acc = MetricAccumulator()
        self.per_frame: list[dict[str, Any]] = []
        self.valid = 0
        self.covered = 0
        self.seconds = 0.0
        self.keep = keep
        self.kept: dict[int, np.ndarray] = {}

    def add(self, position: int, sequence: str, frame: Frame, gt: Tensor) -> None:
        start = time.perf_counter()
        prediction = self.predictor(frame)
        self.seconds += time.perf_counter() - start
        depth = prediction.depth.detach().to("cpu", torch.float64)
        if depth.shape != gt.shape:
            raise TrainingError(
                f"{self.predictor.name} predicted {tuple(depth.shape)} for a "
                f"{tuple(gt.shape)} ground-truth frame ({sequence} frame {frame.index})"
            )
        valid = torch.isfinite(gt) & (gt > 0)
        covered = valid & torch.isfinite(depth)
        n_valid, n_covered = int(valid.sum()), int(covered.sum())
        self.valid += n_valid
        self.covered += n_covered
        scored_gt = torch.where(covered, gt, torch.full_like(gt, math.nan))
        before = self.acc.frames
        spikes = prediction.spikes
        self.acc.update(torch.nan_to_num(depth, nan=0.0), scored_gt, spikes)
        mde = self.acc.frame_mde_cm[-1] if self.acc.frames > before else None
        self.per_frame.append(
            {
                "position": position,
                "sequence": sequence,
                "index": int(frame.index),
                "t_ns": int(frame.t_ns),
                "mde_cm": mde,
                "valid_pixels": n_valid,
                "coverage": n_covered / n_valid if n_valid else None,
            }
        )
        if position in self.keep:
            self.kept[position] = depth.to(torch.float32).numpy()

    def result(self, info: dict[str, Any]) -> EvalResult:
        metrics = self.acc.summary()
        metrics["rmse_cm"] = 100.0 * metrics.pop("rmse_m")
        metrics["scored_pixels"] = metrics.pop("valid_pixels")
        metrics["valid_pixels"] = float(self.valid)
        metrics["coverage"] = self.covered / self.valid if self.valid else math.nan
        metrics["seconds_per_frame"] = self.seconds / max(1, len(self.per_frame))
        if "firing_rate/overall" in metrics:
            metrics["firing_rate"] = metrics["firing_rate/overall"]
        order = (
            "mde_cm", "rmse_cm", "abs_rel", "delta1", "delta2", "delta3",
            "mde_cm@10m", "mde_cm@20m", "mde_cm@30m", "frames", "skipped_frames",
            "valid_pixels", "scored_pixels", "coverage", "firing_rate",
        )  # fmt: skip
        ordered = {k: metrics.pop(k) for k in order if k in metrics}
        ordered.update(metrics)
        return EvalResult(
            self.predictor.name, ordered, self.per_frame, info, self.seconds, self.kept
        )


FrameItem = Frame | tuple[str, Frame] | tuple[Tensor, Tensor]


def _normalise(item: FrameItem, position: int) -> tuple[str, Frame]:
    """``Frame``, ``(sequence, Frame)``, or a ``CachedFrames`` sample ``(x, depth)``."""
    if isinstance(item, Frame):
        return "", item
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Frame):
        return str(item[0]), item[1]
    if isinstance(item, tuple) and len(item) == 2:
        x, depth = (np.asarray(v) for v in item)
        if x.ndim != 3 or x.shape[0] != 4:
            raise TrainingError(f"frame {position}: x must be (4, H, W) counts, got {x.shape}")
        depth = depth.reshape(x.shape[1:])
        return "", Frame(0, position, *split_stereo_channels(x), depth.astype(np.float32))
    raise TrainingError(
        f"frame {position}: expected a Frame, (sequence, Frame) or (x, depth), got "
        f"{type(item).__name__}"
    )


def evaluate_many(
    predictors: Sequence[nn.Module | Predictor],
    frames: Iterable[FrameItem],
    *,
    device: str = "cpu",
    keep: Iterable[int] = (),
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> list[EvalResult]:
    """Score every predictor on the same frames in one pass; ``keep`` positions for plots."""
    wrapped = [as_predictor(p, device) for p in predictors]
    if not wrapped:
        raise TrainingError("nothing to evaluate: no checkpoint and no baseline given")
    names = [p.name for p in wrapped]
    if len(set(names)) != len(names):
        raise TrainingError(f"two methods share a name: {names}; name them apart")
    keep_set = {int(k) for k in keep}
    scorers = [_Scorer(p, keep_set) for p in wrapped]
    shape: tuple[int, int] | None = None
    items = progress(frames) if progress is not None else frames
    for position, item in enumerate(items):
        sequence, frame = _normalise(item, position)
        gt = torch.from_numpy(np.asarray(frame.depth, dtype=np.float64))
        shape = shape or (int(gt.shape[0]), int(gt.shape[1]))
        for scorer in scorers:
            scorer.add(position, sequence, frame, gt)
    if shape is None:
        raise TrainingError("no frames to evaluate (the data or split part is empty)")
    return [s.result(s.predictor.describe(*shape)) for s in scorers]


def evaluate(
    model_or_predictor: nn.Module | Predictor,
    frames: Iterable[FrameItem],
    *,
    device: str = "cpu",
    keep: Iterable[int] = (),
) -> EvalResult:
    """Score one network or predictor on ``frames`` (Frames, (sequence, Frame) or (x, depth))."""
    return evaluate_many([model_or_predictor], frames, device=device, keep=keep)[0]


# -- where frames come from ------------------------------------------------------------------


@dataclass
class EvalData:
    """Frames to evaluate on, opened once; iterate ``frames()``; close when done."""

    description: dict[str, Any]
    height: int
    width: int
    count: int
    focal_baseline: float | None
    _parts: list[tuple[StereoSequence, list[int]]] = field(default_factory=list, repr=False)
    _cache: Any = field(default=None, repr=False)
    _frame_options: FrameOptions = field(default_factory=FrameOptions, repr=False)

    def frames(self) -> Iterator[tuple[str, Frame]]:
        """``(sequence name, Frame)`` in order: recordings streamed, or cache samples."""
        if self._cache is not None:
            for i in range(self.count):
                x, depth = self._cache[i]
                info = self._cache.info(i)
                left, right = split_stereo_channels(x.numpy())
                frame = Frame(info["t_ns"], info["frame_index"], left, right, depth[0].numpy())
                yield info["sequence"], frame
            return
        for sequence, indices in self._parts:
            for frame in self._frame_options.frames(sequence, indices):
                yield sequence.name, frame

    def close(self) -> None:
        for sequence, _ in self._parts:
            sequence.close()
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> EvalData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_frames(spec: str | None, count: int) -> list[int]:
    """``"10:50"``, ``"10:50:5"``, ``"3,7,9"`` or None (all) -> depth-frame indices."""
    if spec is None:
        return list(range(count))
    try:
        if ":" in spec:
            parts = [int(p) if p else None for p in spec.split(":")]
            if len(parts) > 3:
                raise ValueError
            chosen = list(range(count))[slice(*parts)]
        else:
            chosen = sorted({int(p) for p in spec.split(",") if p.strip()})
    except ValueError as err:
        raise TrainingError(
            f"--frames {spec!r}: expected START:STOP[:STEP] or a comma list of indices"
        ) from err
    bad = [i for i in chosen if not 0 <= i < count]
    if bad:
        raise TrainingError(f"--frames {spec!r}: indices {bad[:5]} outside [0, {count})")
    return chosen


def _available_topics(paths: Sequence[Path]) -> str:
    from rosbags.highlevel import AnyReader

    try:
        with AnyReader(list(paths)) as reader:
            return ", ".join(f"{t} [{i.msgtype}]" for t, i in sorted(reader.topics.items()))
    except Exception:  # only for the message; the real error is raised by the caller
        return "unknown"


def _open(path: Any, calibration: Any, depth_topic: str | None) -> StereoSequence:
    from stereospike_ros.data.bags import BagSequence, BagTopics
    from stereospike_ros.data.open import open_sequence

    sequence = open_sequence(path, calibration=calibration)
    if isinstance(sequence, BagSequence):
        topic = depth_topic or DEFAULT_DEPTH_TOPIC
        if topic != sequence.topics.depth:
            paths = sequence.paths
            sequence.close()
            sequence = BagSequence(paths, calibration, topics=BagTopics(depth=topic))
        if not len(sequence.depth_stamps()):
            paths = sequence.paths
            sequence.close()
            raise TrainingError(
                f"bag {' + '.join(map(str, paths))} has no depth images on {topic!r}, so there "
                f"is no ground truth to score against (topics: {_available_topics(paths)}); "
                "pass --depth-topic"
            )
        return sequence
    if not len(sequence.depth_stamps()):
        name = getattr(sequence, "data_path", path)
        sequence.close()
        raise TrainingError(
            f"recording {name} has no ground-truth depth frames (for MVSEC HDF5 the *_gt.hdf5 "
            "file beside it holds them)"
        )
    return sequence


def open_eval_data(
    data: str | Path | Sequence[str | Path],
    *,
    split: str | None = None,
    part: str = "test",
    sequences: Sequence[str] | None = None,
    frames: str | None = None,
    max_frames: int | None = None,
    depth_topic: str | None = None,
    calibration: Any = None,
    window_ms: float = DEFAULT_WINDOW_NS / 1e6,
    fill_holes_px: int = 0,
    rectify: bool = True,
    focal_baseline: float | None = None,
    protocol: str | None = None,
) -> EvalData:
    """Open what ``evaluate`` scores on: a recording, a split's part under a folder, or a cache.

    ``data``: a recording (as ``open_sequence`` takes it) or, with ``split``, the folder of
    recordings; a ``.h5`` training cache is read as is. ``frames`` picks depth-frame indices of
    a single recording (``START:STOP[:STEP]`` or ``i,j,k``); ``max_frames`` caps the total.
    Missing files, bags without the depth topic and empty selections raise ``TrainingError``.
    """
    paths = [Path(data)] if isinstance(data, str | Path) else [Path(p) for p in data]
    if not paths:
        raise TrainingError("no --data given")
    if window_ms <= 0:
        raise TrainingError(f"--window-ms must be positive, got {window_ms}")
    options = FrameOptions.from_window_ms(
        window_ms, fill_holes_px=fill_holes_px, rectify=rectify, protocol=protocol or "default"
    )
    try:
        if split is None and len(paths) == 1 and paths[0].suffix == ".h5" and paths[0].is_file():
            return _open_cache(paths[0], protocol, max_frames, focal_baseline)
        parts: list[tuple[StereoSequence, list[int]]] = []
        description: dict[str, Any] = {"window_ms": window_ms, "fill_holes_px": fill_holes_px}
        description["rectify"] = rectify
        description["protocol"] = options.protocol
        try:
            description |= _open_parts(
                parts, paths, split, part, sequences, frames, options, calibration, depth_topic
            )
            parts = _cap_frames(parts, max_frames)
            return _recordings_data(parts, paths, description, options, focal_baseline)
        except BaseException:
            for sequence, _ in parts:
                sequence.close()
            raise
    except DataError as err:
        raise TrainingError(str(err)) from err


@dataclass(frozen=True)
class EvalDataOptions:
    """What :func:`open_eval_data` opens, as one value (the ``evaluate`` and ``prune``
    commands' data options). ``window_ms`` None: the checkpoint's window, else 50 ms."""

    data: str | Path | Sequence[str | Path]
    split: str | None = None
    part: str = "test"
    sequences: Sequence[str] | None = None
    frames: str | None = None
    max_frames: int | None = None
    depth_topic: str | None = None
    calibration: Any = None
    window_ms: float | None = None
    fill_holes_px: int = 0
    rectify: bool = True
    focal_baseline: float | None = None
    protocol: str | None = None

    def window_ms_for(self, checkpoint_window_ms: float | None) -> float:
        """The window asked for, else the checkpoint's, else 50 ms."""
        return self.window_ms or checkpoint_window_ms or 50.0

    def open(self, checkpoint_window_ms: float | None = None) -> EvalData:
        """:func:`open_eval_data` of these options, with :meth:`window_ms_for`'s window."""
        return open_eval_data(
            self.data,
            split=self.split,
            part=self.part,
            sequences=self.sequences,
            frames=self.frames,
            max_frames=self.max_frames,
            depth_topic=self.depth_topic,
            calibration=self.calibration,
            window_ms=self.window_ms_for(checkpoint_window_ms),
            fill_holes_px=self.fill_holes_px,
            rectify=self.rectify,
            focal_baseline=self.focal_baseline,
            protocol=self.protocol,
        )


def _open_cache(
    path: Path, protocol: str | None, max_frames: int | None, focal_baseline: float | None
) -> EvalData:
    """A complete training cache, read as is; refused when built with another protocol."""
    from stereospike_ros.data.cache import CachedFrames, is_complete

    if not is_complete(path):
        raise TrainingError(f"{path} is not a complete stereospike_ros training cache")
    cache = CachedFrames(path)
    built = cache.options.get("protocol", "default")
    if protocol is not None and protocol != built:
        cache.close()
        raise TrainingError(
            f"{path} was cached with the {built!r} protocol, not {protocol!r}: "
            f"rebuild it with `cache ... --protocol {protocol}`"
        )
    count = len(cache) if max_frames is None else min(len(cache), max_frames)
    if focal_baseline is None:
        focal_baseline = cache.focal_baseline
    return EvalData(
        {"source": "cache", "path": str(path), "sequences": cache.sequences,
         "frames": count, "options": cache.options, "protocol": built,
         "calibrations": cache.calibrations, "focal_baseline": focal_baseline},
        cache.height, cache.width, count, focal_baseline, _cache=cache,
    )  # fmt: skip


def _open_parts(
    parts: list[tuple[StereoSequence, list[int]]],
    paths: list[Path],
    split: str | None,
    part: str,
    sequences: Sequence[str] | None,
    frames: str | None,
    options: FrameOptions,
    calibration: Any,
    depth_topic: str | None,
) -> dict[str, Any]:
    """Open a split's part under a folder, or one recording's chosen frames, appending
    ``(sequence, depth-frame indices)`` to ``parts`` as they open (so the caller closes them
    if a later step fails); returns what to add to the description."""
    from stereospike_ros.data.split_frames import SplitFrames

    if split is not None:
        if len(paths) != 1 or not paths[0].is_dir():
            raise TrainingError(
                f"with --split, --data must be the folder holding the recordings; "
                f"got {', '.join(map(str, paths))}"
            )
        source = SplitFrames(split, paths[0], tuple(sequences or ()), options, calibration)
        parts += source.open(part, lambda path: _open(path, calibration, depth_topic))
        return dict(
            source="split", root=str(paths[0]), split=source.split.name, part=part,
            sequences=source.split.part(part).sequences,
        )  # fmt: skip
    target = paths[0] if len(paths) == 1 else paths
    sequence = _open(target, calibration, depth_topic)
    parts.append((sequence, parse_frames(frames, len(sequence.depth_stamps()))))
    return dict(source="recording", path=[str(p) for p in paths], sequences=[sequence.name])


def _cap_frames(
    parts: list[tuple[StereoSequence, list[int]]], max_frames: int | None
) -> list[tuple[StereoSequence, list[int]]]:
    """The first ``max_frames`` frames over all parts; a recording left with none is closed."""
    if max_frames is None:
        return parts
    left, capped = max_frames, []
    for sequence, indices in parts:
        capped.append((sequence, indices[:left]))
        left -= len(capped[-1][1])
    for sequence, _ in [p for p in capped if not p[1]]:
        sequence.close()
    return [(s, i) for s, i in capped if i]


def _recordings_data(
    parts: list[tuple[StereoSequence, list[int]]],
    paths: list[Path],
    description: dict[str, Any],
    options: FrameOptions,
    focal_baseline: float | None,
) -> EvalData:
    """EvalData over opened recordings: at least one frame, all of one size."""
    count = sum(len(i) for _, i in parts)
    if count == 0:
        raise TrainingError(f"no frames to evaluate in {', '.join(map(str, paths))}")
    sizes = {(s.height, s.width) for s, _ in parts}
    if len(sizes) > 1:
        raise TrainingError(f"recordings of different sizes in one evaluation: {sizes}")
    first = parts[0][0]
    if focal_baseline is None:
        focal_baseline = focal_baseline_of(first)
    description["frames"] = count
    description["focal_baseline"] = focal_baseline
    description["rectification"] = options.rectification(first, "none (--no-rectify)")
    return EvalData(
        description, first.height, first.width, count, focal_baseline,
        _parts=parts, _frame_options=options,
    )  # fmt: skip


def recorded_inputs(
    data: str,
    in_channels: int,
    *,
    split: str | None = None,
    part: str = "test",
    frames: int = 8,
) -> list[Tensor]:
    """Up to ``frames`` event windows of a recording (evenly spread over it), to time on."""
    if frames < 1:
        raise UsageError("--input-frames must be >= 1")
    with open_eval_data(data, split=split, part=part) as eval_data:
        step = max(1, eval_data.count // frames)
        windows = []
        for i, (_, frame) in enumerate(eval_data.frames()):  # streamed: keep only the chosen
            if i % step == 0:
                windows.append(frame_tensor(frame, in_channels))
                if len(windows) == frames:
                    break
    return windows


# -- printing --------------------------------------------------------------------------------


TABLE_COLUMNS = (
    ("MDE cm", "mde_cm", "{:.1f}"),
    ("RMSE cm", "rmse_cm", "{:.1f}"),
    ("AbsRel", "abs_rel", "{:.3f}"),
    ("delta1", "delta1", "{:.3f}"),
    ("delta2", "delta2", "{:.3f}"),
    ("delta3", "delta3", "{:.3f}"),
    ("MDE@10m", "mde_cm@10m", "{:.1f}"),
    ("MDE@20m", "mde_cm@20m", "{:.1f}"),
    ("MDE@30m", "mde_cm@30m", "{:.1f}"),
    ("coverage", "coverage", "{:.3f}"),
    ("firing rate", "firing_rate/overall", "{:.3f}"),
    ("frames", "frames", "{:.0f}"),
)


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return fmt.format(value)


def results_table(
    results: Sequence[EvalResult], columns: Sequence[tuple[str, str, str]] = TABLE_COLUMNS
) -> str:
    """A markdown table, one row per method (``-`` where a metric does not apply)."""
    header = ["method", *(c[0] for c in columns)]
    rows = [[r.name, *(_cell(r.metrics.get(key), fmt) for _, key, fmt in columns)] for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])
