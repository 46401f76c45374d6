"""ONNX export of a trained network, checked in ONNX Runtime before the file is written.

Deployment targets (TensorRT on embedded GPUs, ONNX Runtime, OpenVINO on NPUs and CPUs) take
ONNX, not PyTorch. The stateless network is a plain graph (convolutions, nearest upsampling,
``x >= 1`` thresholds, sums), so torch's TorchScript-based exporter (opset 17) writes it as is.
The exported graph is the reference forward: input ``spikes`` ``(B, C, H, W)`` float32 spike
counts in the checkpoint's channel order, output ``depth`` ``(B, 1, H, W)`` float32 metres.
Batch, height and width are dynamic unless a fixed ``input_size`` is asked for.

The file describes itself: its ``metadata_props`` hold the model config, the input size (or
``null`` when dynamic), the window length, the channel order, the checkpoint's SHA-256 and
its tensors' SHA-256, the precision, and a SHA-256 of the ONNX weights (so a corrupted file is
caught on load), each value JSON-encoded. Before writing, the export runs in ONNX Runtime on
event windows (a recording's, or simulated ones) against the torch reference and refuses to
write a file whose depth differs by more than a tolerance.

``precision="fp16"`` stores weights and activations in float16 (inputs and outputs stay
float32): half the file, and what fp16 accelerators run; spike counts are exact in fp16 but
rounded potentials near the threshold can flip spikes, so its depth difference is measured and
reported rather than assumed.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import math
import os
import statistics
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import stereospike_ros
from stereospike_ros.atomic import atomic_write
from stereospike_ros.model import network
from stereospike_ros.model.errors import CheckpointError, OnnxError
from stereospike_ros.model.inputs import stereo_tensor
from stereospike_ros.model.network import StereoSpike
from stereospike_ros.model.runtimes import first_line, make_runner, require

__all__ = [
    "FORMAT",
    "OnnxExport",
    "check_onnx",
    "export_checkpoint",
    "export_onnx_bytes",
    "load_onnx",
    "read_onnx_metadata",
    "simulated_windows",
]

FORMAT = "stereospike_ros.onnx"
FORMAT_VERSION = 1
OPSET = 17
INPUT_NAME = "spikes"
OUTPUT_NAME = "depth"
PRECISIONS = ("fp32", "fp16")
#: Largest |ONNX depth - reference depth| (m) accepted for fp32 (measured: a few 1e-6 m).
FP32_TOLERANCE_M = 1e-4
#: Largest *mean* |ONNX depth - reference depth| (m) accepted for fp16, whose rounding flips
#: a few spikes near the threshold (so its largest difference is large by nature).
FP16_TOLERANCE_M = 0.05
CHANNEL_ORDERS: dict[int, list[str]] = {
    4: ["L_ON", "L_OFF", "R_ON", "R_OFF"],
    2: ["L_ON", "L_OFF"],
}
_EXAMPLE_SIZE = (40, 56)  # traced once; any size works when the axes are dynamic


def _source_index(out: Any, size: Any) -> Tensor:
    """Rows (or columns) nearest upsampling reads, computed as torch's CPU/CUDA kernels do:
    ``min(floor(dst * float32(in / out)), in - 1)`` in float32."""
    out_t, in_t = torch.as_tensor(out), torch.as_tensor(size)
    scale = in_t.to(torch.float32) / out_t.to(torch.float32)
    index = torch.floor(torch.arange(out_t, dtype=torch.float32) * scale).to(torch.int64)
    return torch.minimum(index, in_t - 1)


def _gather_upsample(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest upsampling as two index gathers, equal to :func:`network.nn_upsample`.

    The exporter writes ``nn_upsample`` as an ONNX ``Resize``, whose runtimes compute the source
    pixel as ``dst / float(out / in)`` rather than torch's ``dst * float(in / out)``: at some
    sizes (30 x 41 in a test) one row differs, a spike moves and the depth differs by
    decimetres. Gathers with torch's own index arithmetic agree at every size."""
    rows = _source_index(size[0], x.shape[-2])
    cols = _source_index(size[1], x.shape[-1])
    return x.index_select(2, rows).index_select(3, cols)


_EXPORT_LOCK = threading.Lock()
#: How nearest upsampling is written: ``gather`` (torch's index arithmetic, exact at every size
#: in every runtime) or ``resize`` (ONNX Resize: one pass, faster in the runtimes, but exact
#: only at the sizes where the runtime's rounding picks torch's rows; see resize_is_exact).
UPSAMPLINGS = ("gather", "resize")


@contextlib.contextmanager
def _upsampling(replacement: Any) -> Iterator[None]:
    """Run the network with ``replacement`` in place of ``network.nn_upsample``."""
    with _EXPORT_LOCK:
        original = network.nn_upsample
        network.nn_upsample = replacement
        try:
            yield
        finally:
            network.nn_upsample = original


def upsampling_sizes(
    model: StereoSpike, input_size: tuple[int, int]
) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Every ``(input (H, W), output (H, W))`` the network upsamples at ``input_size``."""
    seen: list[tuple[tuple[int, int], tuple[int, int]]] = []

    def record(x: Tensor, size: tuple[int, int]) -> Tensor:
        pair = ((int(x.shape[-2]), int(x.shape[-1])), (int(size[0]), int(size[1])))
        if pair not in seen:
            seen.append(pair)
        return original(x, size)

    original = network.nn_upsample
    example = torch.zeros(1, model.config.in_channels, *input_size)
    with _upsampling(record), torch.inference_mode():
        model.to("cpu").eval()(example)
    return seen


class _Upsample(nn.Module):
    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        return network.nn_upsample(x, self.size)


def resize_is_exact(runtime: str, sizes: Sequence[tuple[tuple[int, int], tuple[int, int]]]) -> bool:
    """Whether ``runtime`` reads torch's rows and columns in the ONNX ``Resize`` the exporter
    writes for each ``(input, output)`` size pair (probed with one-op graphs on pixel numbers)."""
    for (height, width), out in sizes:
        probe = torch.arange(height * width, dtype=torch.float32).reshape(1, 1, height, width)
        buffer = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Upsample(out), (probe,), buffer, opset_version=OPSET, dynamo=False)
        got = make_runner(runtime, buffer.getvalue(), input_size=(height, width))(probe)
        if not torch.equal(got, network.nn_upsample(probe, out)):
            return False
    return True


class _Half(nn.Module):
    """float32 in, float16 network, float32 out: callers keep feeding float32 counts."""

    def __init__(self, model: StereoSpike) -> None:
        super().__init__()
        self.model = model.half()

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.half()).float()


def export_onnx_bytes(
    model: StereoSpike,
    *,
    input_size: tuple[int, int] | None = None,
    batch: int | None = None,
    precision: str = "fp32",
    opset: int = OPSET,
    upsampling: str = "gather",
) -> bytes:
    """The ONNX bytes of ``model``'s reference forward (no metadata yet).

    ``input_size`` (H, W) and ``batch`` fix those dimensions; None leaves them dynamic.
    ``upsampling``: see :data:`UPSAMPLINGS`."""
    if upsampling not in UPSAMPLINGS:
        raise OnnxError(f"upsampling {upsampling!r} is not one of {', '.join(UPSAMPLINGS)}")
    if not isinstance(model, StereoSpike):
        raise OnnxError(f"ONNX export needs a StereoSpike network, got {type(model).__name__}")
    if precision not in PRECISIONS:
        raise OnnxError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    net: nn.Module = copy.deepcopy(model).to("cpu", torch.float32).eval()
    if precision == "fp16":
        net = _Half(net)
    size = input_size or _EXAMPLE_SIZE
    example = torch.zeros(batch or 1, model.config.in_channels, *size)
    dynamic: dict[int, str] = {} if batch else {0: "batch"}
    if input_size is None:
        dynamic.update({2: "height", 3: "width"})
    buffer = io.BytesIO()
    try:
        upsample = _gather_upsample if upsampling == "gather" else network.nn_upsample
        with warnings.catch_warnings(), torch.no_grad(), _upsampling(upsample):
            # The input checks' Python `if`s are traced away (TracerWarning): shapes are checked
            # by the runtime instead.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (example,),
                buffer,
                opset_version=opset,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic} if dynamic else None,
                do_constant_folding=True,
            )
    except Exception as err:  # torch.onnx raises several error types
        raise OnnxError(f"torch.onnx cannot export {model.config.name}: {err}") from err
    return buffer.getvalue()


def weights_digest(proto: Any) -> str:
    """SHA-256 over the ONNX initializers (names, types, dims, bytes), in file order."""
    numpy_helper = require("onnx").numpy_helper
    digest = hashlib.sha256()
    for init in proto.graph.initializer:
        array = numpy_helper.to_array(init)
        digest.update(f"{init.name}|{init.data_type}|{list(init.dims)}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _with_metadata(raw: bytes, metadata: Mapping[str, Any]) -> bytes:
    onnx = require("onnx")
    proto = onnx.load_from_string(raw)
    proto.producer_name = "stereospike_ros"
    proto.producer_version = stereospike_ros.__version__
    proto.doc_string = (
        f"StereoSpike depth ({metadata['model']}): input {INPUT_NAME} (B, C, H, W) float32 spike "
        f"counts {metadata['channel_order']} over {metadata['window_ms']} ms; output "
        f"{OUTPUT_NAME} (B, 1, H, W) float32 metres"
    )
    values = {**metadata, "weights_sha256": weights_digest(proto)}
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = value if key == "format" else json.dumps(value)
    return proto.SerializeToString()


def _parse(path: Path, raw: bytes) -> Any:
    onnx = require("onnx")
    try:
        return onnx.load_from_string(raw)
    except Exception as err:  # protobuf's DecodeError and friends
        raise OnnxError(f"{path} is not a readable ONNX model ({first_line(err)})") from err


def _metadata_of(path: Path, proto: Any) -> dict[str, Any]:
    props = {p.key: p.value for p in proto.metadata_props}
    if props.get("format") != FORMAT:
        raise OnnxError(
            f"{path} is an ONNX model but not one exported by stereospike_ros "
            f"(no '{FORMAT}' format in its metadata)"
        )
    try:
        metadata = {k: v if k == "format" else json.loads(v) for k, v in props.items()}
    except json.JSONDecodeError as err:
        raise OnnxError(f"{path} is corrupt: unreadable metadata ({err})") from err
    version = metadata.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise OnnxError(
            f"{path} has format version {version!r}; this stereospike_ros "
            f"{stereospike_ros.__version__} reads up to {FORMAT_VERSION}"
        )
    return metadata


def _read(path: str | os.PathLike[str]) -> tuple[Path, bytes]:
    path = Path(path)
    try:
        return path, path.read_bytes()
    except OSError as err:
        raise OnnxError(f"cannot read ONNX file {path}: {err.strerror or err}") from err


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The stereospike_ros metadata of an exported file (values decoded from JSON)."""
    path, raw = _read(path)
    return _metadata_of(path, _parse(path, raw))


def load_onnx(
    path: str | os.PathLike[str], *, expect: Mapping[str, Any] | None = None
) -> tuple[bytes, dict[str, Any]]:
    """``(ONNX bytes, metadata)`` of an exported file, verified: readable, ours, weights
    matching their recorded SHA-256, a valid graph, and equal to ``expect`` on the keys it
    names (e.g. ``{"tensors_sha256": ...}`` of the checkpoint it must come from)."""
    onnx = require("onnx")
    path, raw = _read(path)
    proto = _parse(path, raw)
    metadata = _metadata_of(path, proto)
    if weights_digest(proto) != metadata.get("weights_sha256"):
        raise OnnxError(f"{path} is corrupt: its weights do not match the SHA-256 it recorded")
    try:
        onnx.checker.check_model(proto)
    except Exception as err:  # onnx.checker.ValidationError
        raise OnnxError(f"{path} is not a valid ONNX graph ({first_line(err)})") from err
    for key, wanted in (expect or {}).items():
        if key == "tensors_sha256" and metadata.get(key) != wanted:
            raise OnnxError(
                f"{path} was exported from another network ({metadata.get('checkpoint')}, "
                f"tensors sha256 {str(metadata.get(key))[:12]}...), not from these weights "
                f"({str(wanted)[:12]}...)"
            )
        if metadata.get(key) != wanted:
            raise OnnxError(
                f"{path} does not match: its {key} is {metadata.get(key)!r}, expected {wanted!r}"
            )
    return raw, metadata


def simulated_windows(
    in_channels: int, size: tuple[int, int], count: int = 4, seed: int = 0
) -> list[Tensor]:
    """``count`` (C, H, W) windows of 50 ms from the built-in simulator (a textured room seen
    by a moving stereo rig): real event statistics, no file needed."""
    from stereospike_ros.events.histogram import event_histogram
    from stereospike_ros.sim.simulator import SimConfig, simulate

    height, width = size
    config = SimConfig(
        name="export_check",
        seed=seed,
        duration_s=0.05 * (count + 1),
        scene="room",
        motion="sweep",
        height=height,
        width=width,
        focal_px=226.38 * width / 346,
        noise_rate_hz=0.1,
    )
    recording = simulate(config)
    windows = []
    for t_end in recording.depth_ts_ns[-count:]:
        t0 = int(t_end) - 50_000_000
        left, right = (
            event_histogram(events, height, width, t0, int(t_end))[0]
            for events in (recording.left_events, recording.right_events)
        )
        windows.append(stereo_tensor(left, right, in_channels))
    return windows


@dataclass
class Agreement:
    """How an exported network's depth compares with the torch reference on some windows."""

    windows: int
    max_abs_diff_m: float
    mean_abs_diff_m: float
    sizes: list[list[int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "max_abs_diff_m": self.max_abs_diff_m,
            "mean_abs_diff_m": self.mean_abs_diff_m,
            "sizes": self.sizes,
        }


def compare_with_reference(
    model: StereoSpike,
    raw: bytes,
    windows: Iterable[Tensor],
    *,
    runtime: str = "onnxruntime",
    providers: str | Sequence[str] | None = None,
) -> Agreement:
    """Run the ONNX bytes in ``runtime`` and the torch reference on the same (C, H, W)
    ``windows``; the largest and mean absolute depth difference in metres."""
    runner = make_runner(runtime, raw, providers=providers)
    model = model.to("cpu").eval()
    worst, means, sizes, count = 0.0, [], [], 0
    for window in windows:
        x = window[None].float()
        with torch.inference_mode():
            reference = model(x)
        try:
            depth = runner(x)
        except Exception as err:  # runtime errors (wrong size for a fixed export, ...)
            raise OnnxError(
                f"{runtime} cannot run the network on a {tuple(x.shape)} window: {first_line(err)}"
            ) from err
        if tuple(depth.shape) != tuple(reference.shape):
            raise OnnxError(
                f"{runtime} returned depth of shape {tuple(depth.shape)}, the reference "
                f"{tuple(reference.shape)}"
            )
        diff = (depth.float() - reference).abs()
        if not torch.isfinite(diff).all():
            raise OnnxError(f"{runtime} returned non-finite depth where the reference has none")
        worst = max(worst, float(diff.max()))
        means.append(float(diff.mean()))
        size = list(x.shape[-2:])
        if size not in sizes:
            sizes.append(size)
        count += 1
    if not count:
        raise OnnxError("no window to compare the exported network on")
    return Agreement(count, worst, statistics.fmean(means), sizes)


@dataclass
class OnnxExport:
    """What :func:`export_checkpoint` wrote and measured."""

    path: Path
    metadata: dict[str, Any]
    agreement: Agreement
    tolerance_m: float
    bytes: int


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_tolerance(agreement: Agreement, precision: str, tolerance_m: float) -> None:
    measured = agreement.max_abs_diff_m if precision == "fp32" else agreement.mean_abs_diff_m
    what = "largest" if precision == "fp32" else "mean"
    if not measured <= tolerance_m:
        raise OnnxError(
            f"the {precision} ONNX network disagrees with the reference: {what} depth "
            f"difference {measured:.3g} m over {agreement.windows} windows, above the "
            f"tolerance {tolerance_m:g} m; no file written"
        )


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    input_size: tuple[int, int] | None = None,
    precision: str = "fp32",
    windows: Sequence[Tensor] | None = None,
    windows_source: str | None = None,
    tolerance_m: float | None = None,
    providers: str | Sequence[str] | None = None,
    opset: int = OPSET,
    upsampling: str = "gather",
) -> OnnxExport:
    """Export the network of ``checkpoint`` to ``out`` (ONNX), validated first.

    ``input_size`` fixes H x W (None: dynamic batch, height and width). ``windows``: (C, H, W)
    spike counts to validate on (default: simulated windows at the fixed size, else at the
    checkpoint's training size, plus a small odd size to exercise the dynamic axes). The file
    is written (atomically) only when ONNX Runtime's depth agrees with the reference within
    ``tolerance_m`` (default :data:`FP32_TOLERANCE_M` on the largest difference for fp32,
    :data:`FP16_TOLERANCE_M` on the mean for fp16). ``upsampling="resize"`` (faster in the
    runtimes) needs a fixed ``input_size`` at which ONNX Runtime's Resize reads torch's rows.
    """
    from stereospike_ros.model.checkpoint import load_checkpoint

    checkpoint = Path(checkpoint)
    try:
        model, ckpt_meta = load_checkpoint(checkpoint)
    except CheckpointError as err:
        raise OnnxError(str(err)) from err
    config = model.config
    if precision not in PRECISIONS:
        raise OnnxError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if tolerance_m is None:
        tolerance_m = FP32_TOLERANCE_M if precision == "fp32" else FP16_TOLERANCE_M
    if not (math.isfinite(tolerance_m) and tolerance_m >= 0):
        raise OnnxError(f"tolerance must be a number >= 0 m, got {tolerance_m!r}")
    trained = ckpt_meta.get("input_size")
    if windows is None:
        main = input_size or (tuple(trained) if trained else (260, 346))
        windows = simulated_windows(config.in_channels, main)
        windows_source = f"simulated {main[0]}x{main[1]}"
        if input_size is None:  # the dynamic axes, at a size no layer divides evenly
            windows.append(torch.poisson(torch.full((config.in_channels, 37, 53), 0.5)))
            windows_source += " + random 37x53"
    if upsampling == "resize":
        if input_size is None:
            raise OnnxError("upsampling 'resize' needs a fixed input size (--size HxW)")
        if not resize_is_exact("onnxruntime", upsampling_sizes(model, input_size)):
            raise OnnxError(
                f"at {input_size[0]}x{input_size[1]} ONNX Runtime's Resize reads other rows "
                "than torch's nearest upsampling: export with upsampling 'gather'"
            )
    raw = export_onnx_bytes(
        model, input_size=input_size, precision=precision, opset=opset, upsampling=upsampling
    )
    agreement = compare_with_reference(model, raw, windows, providers=providers)
    _check_tolerance(agreement, precision, tolerance_m)
    ort = require("onnxruntime")
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": stereospike_ros.__version__,
        "model": config.name,
        "config": config.to_dict(),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_size": None if input_size is None else list(input_size),
        "trained_input_size": trained,
        "window_ms": ckpt_meta.get("window_ms"),
        "channel_order": CHANNEL_ORDERS.get(config.in_channels),
        "output_units": "m",
        "precision": precision,
        "opset": opset,
        "upsampling": upsampling,
        "checkpoint": checkpoint.name,
        "checkpoint_sha256": _file_sha256(checkpoint),
        "tensors_sha256": ckpt_meta.get("tensors_sha256"),
        "validation": {
            **agreement.to_dict(),
            "source": windows_source or "given windows",
            "runtime": f"onnxruntime {ort.__version__}",
            "tolerance_m": tolerance_m,
        },
    }
    blob = _with_metadata(raw, metadata)
    path = atomic_write(Path(out), lambda f: f.write(blob))
    return OnnxExport(path, read_onnx_metadata(path), agreement, tolerance_m, len(blob))


def check_onnx(
    path: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    windows: Sequence[Tensor] | None = None,
    runtime: str = "onnxruntime",
    providers: str | Sequence[str] | None = None,
) -> tuple[dict[str, Any], Agreement | None]:
    """Verify an exported file (see :func:`load_onnx`); with ``checkpoint``, also that it was
    exported from that checkpoint's tensors, and its depth against the reference on
    ``windows`` (default: simulated ones at its size)."""
    if checkpoint is None:
        return load_onnx(path)[1], None
    from stereospike_ros.model.checkpoint import load_checkpoint

    try:
        model, ckpt_meta = load_checkpoint(checkpoint)
    except CheckpointError as err:
        raise OnnxError(str(err)) from err
    raw, metadata = load_onnx(path, expect={"tensors_sha256": ckpt_meta.get("tensors_sha256")})
    if windows is None:
        size = metadata.get("input_size") or metadata.get("trained_input_size") or (260, 346)
        windows = simulated_windows(model.config.in_channels, (int(size[0]), int(size[1])))
    return metadata, compare_with_reference(
        model, raw, windows, runtime=runtime, providers=providers
    )
