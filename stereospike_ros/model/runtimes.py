"""Peer runtimes: an exported network (ONNX bytes) run by ONNX Runtime or OpenVINO.

These are what a deployment would pick instead of PyTorch (embedded GPUs and NPUs take ONNX into
TensorRT, ONNX Runtime or OpenVINO). Both are optional: importing this module needs neither, and
asking for a runtime that is not installed raises :class:`~stereospike_ros.model.errors.OnnxError`
naming the pip command. Each runner maps a ``(B, C, H, W)`` float32 tensor to ``(B, 1, H, W)``
float32 depth in metres on the CPU (the runtime's own device memory is its business).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stereospike_ros.model.errors import OnnxError

__all__ = ["INSTALL", "RUNTIMES", "first_line", "make_runner", "onnxruntime_providers", "require"]

#: optional package -> the pip command that installs the version this package is tested with
INSTALL: dict[str, str] = {
    "onnx": "pip install onnx==1.23.2",
    "onnxruntime": "pip install onnxruntime==1.32.0",
    "openvino": "pip install openvino==2026.4.1",
}
#: Short names of ONNX Runtime execution providers (either spelling is accepted).
PROVIDER_ALIASES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
}

Runner = Callable[[Tensor], Tensor]


def require(runtime: str) -> ModuleType:
    """Import ``runtime`` (``onnx``, ``onnxruntime`` or ``openvino``), or raise a one-line
    OnnxError naming the install command."""
    if runtime not in INSTALL:
        raise OnnxError(f"unknown package {runtime!r}; optional packages: {', '.join(INSTALL)}")
    try:
        return importlib.import_module(runtime)
    except ImportError as err:
        raise OnnxError(
            f"{runtime} is not installed ({err.msg}); install it with: {INSTALL[runtime]}"
        ) from err


def onnxruntime_providers(providers: str | Sequence[str] | None) -> list[str]:
    """Execution providers by full or short name (``cpu``, ``cuda``, ``tensorrt``), in the
    order given (ONNX Runtime falls back along it per node); default: CPU only. A provider this
    ONNX Runtime build lacks is an error listing the ones it has."""
    ort = require("onnxruntime")
    if providers is None or providers == "":
        return ["CPUExecutionProvider"]
    names = providers.split(",") if isinstance(providers, str) else list(providers)
    wanted = [PROVIDER_ALIASES.get(n.strip().lower(), n.strip()) for n in names if n.strip()]
    available = ort.get_available_providers()
    missing = [p for p in wanted if p not in available]
    if missing or not wanted:
        raise OnnxError(
            f"ONNX Runtime {ort.__version__} has no execution provider {', '.join(missing)}; "
            f"this build has {', '.join(available)} (CUDA/TensorRT need the onnxruntime-gpu "
            "package and their libraries)"
        )
    return wanted


def _numpy_input(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())


def _onnxruntime_runner(
    model: bytes, providers: str | Sequence[str] | None, threads: int | None
) -> Runner:
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(
            model, sess_options=options, providers=onnxruntime_providers(providers)
        )
    except OnnxError:
        raise
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... classes
        raise OnnxError(f"ONNX Runtime cannot load the network: {first_line(err)}") from err
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name

    def run(x: Tensor) -> Tensor:
        (depth,) = session.run([output_name], {input_name: _numpy_input(x)})
        return torch.from_numpy(depth)

    run.session = session  # type: ignore[attr-defined]
    return run


@functools.cache
def _openvino_core() -> Any:
    """One OpenVINO Core per process: each Core loads its device plugins again, and a test
    run that created and dropped several (one per probe) crashed later in unrelated code."""
    return require("openvino").Core()


def _openvino_runner(
    model: bytes, input_size: tuple[int, int] | None, batch: int, threads: int | None
) -> Runner:
    core = _openvino_core()
    try:
        network = core.read_model(model=model)
        if input_size is not None:  # a static shape lets OpenVINO plan its kernels once
            channels = network.inputs[0].get_partial_shape()[1]
            network.reshape([batch, channels, *input_size])
        # f32: on CPUs with bf16 units OpenVINO would otherwise round potentials, flipping spikes.
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        compiled = core.compile_model(network, "CPU", config)
    except Exception as err:  # OpenVINO raises RuntimeError with multi-line text
        raise OnnxError(f"OpenVINO cannot load the network: {first_line(err)}") from err
    request = compiled.create_infer_request()

    def run(x: Tensor) -> Tensor:
        request.infer([_numpy_input(x)])
        return torch.from_numpy(np.array(request.get_output_tensor(0).data, copy=True))

    return run


def make_runner(
    runtime: str,
    model: bytes,
    *,
    providers: str | Sequence[str] | None = None,
    input_size: tuple[int, int] | None = None,
    batch: int = 1,
    threads: int | None = None,
) -> Runner:
    """A callable running the ONNX ``model`` bytes in ``runtime`` (see :data:`RUNTIMES`).

    ``providers`` are ONNX Runtime's; ``threads`` the runtime's intra-op threads (None = its
    default); ``input_size`` fixes OpenVINO's shapes (ONNX Runtime takes the file's)."""
    if runtime == "onnxruntime":
        return _onnxruntime_runner(model, providers, threads)
    if runtime == "openvino":
        return _openvino_runner(model, input_size, batch, threads)
    raise OnnxError(f"unknown runtime {runtime!r}; runtimes: {', '.join(RUNTIMES)}")


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


#: The runtimes :func:`make_runner` knows.
RUNTIMES = ("onnxruntime", "openvino")
