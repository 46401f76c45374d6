"""One entry point for running a trained network fast: :func:`compile_for_inference`.

The online node and the evaluator call it once, then call the returned :class:`Inference` per
window. Execution paths (``PATHS``, each an :class:`InferencePath` holding its switches):

- ``reference``: the network's own forward under ``torch.inference_mode`` (the yardstick).
- ``exact``: :class:`~stereospike_ros.model.fast.FastStereoSpike`, channels-last: decoder and
  heads folded to the source resolution, thresholds and skip sums in place. Same outputs up to
  float rounding of the folded sums.
  On a CPU, in float32, the wide convolutions run as GEMMs instead of oneDNN's direct
  convolution (:mod:`~stereospike_ros.model.winograd`, Winograd F(2x2, 3x3); a tap-sum GEMM for
  the 512-channel deconv4; one GEMM per rare row/column pattern of the folded decoder).
  For spiking networks on a CPU it also skips silent channels: each wide convolution
  (``fast.plan.skipping_pays``) gathers the input channels that hold a spike anywhere in the window
  and convolves only those (a trained network may leave a tenth to a half of them silent in a
  window; an untrained one nearly all). The terms it drops are zeros, so the outputs do not
  change; the time now depends on the spikes. Channels that can never fire (no weight, as
  ``prune`` leaves them) are never computed.
- ``exact-dense``: ``exact`` convolving every channel (speed independent of the input).
- ``exact-nchw``: the same in plain NCHW layout (pays on some narrow networks / GPUs).
- ``compile``: ``exact`` through ``torch.compile`` (inductor); exact up to float rounding; costs
  compile time on the first call of each input size.
- ``bf16`` / ``fp16``: ``exact`` with weights and activations in bfloat16 / float16. Spikes and
  small counts are exact in both, weights and potentials are rounded: lossy (accuracy cost
  measured by ``benchmark model --accuracy``).

Peer runtimes (``RUNTIME_PATHS``), for deployments that run ONNX rather than PyTorch:

- ``onnxruntime``: the reference graph exported to ONNX (:mod:`~stereospike_ros.model.onnx_export`)
  run by ONNX Runtime on the execution ``providers`` given (CPU by default; CUDA, TensorRT where
  the installed build has them). Equal to the reference up to float rounding.
- ``openvino``: the same ONNX graph compiled by OpenVINO for the CPU.

Both export the network in memory at preparation, or take an exported file (``onnx=``), which
must hold this network's weights. Their runtimes are optional packages: a missing one is a
one-line error naming the pip command.

On CUDA every path with a fixed ``input_size`` is captured once in a CUDA graph and replayed
(``cuda_graph=True``), so a window costs one graph launch. On the CPU the folded paths are traced
and frozen with TorchScript once per input shape (``freeze=True``): the whole forward then runs
in C++ without taking Python's GIL between operators. That is what keeps the online node's
forward at its benchmark speed while its ingest thread decodes events (an eager forward there
needs the GIL back after each of its ~100 operators, and waits for the ingest thread each
time); alone, it also saves Python's dispatch of each operator. Outputs are the same as eager
up to float rounding (tested).
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from stereospike_ros.model.errors import ModelError, OnnxError
from stereospike_ros.model.fast import FastStereoSpike
from stereospike_ros.model.network import StereoSpike


@dataclass(frozen=True)
class InferencePath:
    """Every switch of one execution path, by name (the switches, not the name, decide what runs).

    ``gemm_kernels`` / ``skip_silent`` None leave the choice to :class:`FastStereoSpike` (on for
    float32 on a CPU, where they pay); False turns them off for a path that measures without them.
    """

    name: str
    #: the folded FastStereoSpike; False runs the network's own forward (the reference)
    fast: bool = True
    channels_last: bool = True
    #: weights and activations; anything but float32 rounds them (lossy)
    dtype: torch.dtype = torch.float32
    #: through torch.compile (inductor)
    compile: bool = False
    #: Winograd / tap-sum / pattern GEMMs instead of oneDNN's direct convolutions
    gemm_kernels: bool | None = None
    #: convolve only the input channels that hold a spike in the window
    skip_silent: bool | None = None

    @property
    def exact(self) -> bool:
        """Outputs equal the reference's up to float32 rounding."""
        return self.dtype == torch.float32


#: The execution paths a user picks by name (node parameter, ``--inference-path``).
PATHS: dict[str, InferencePath] = {
    path.name: path
    for path in (
        InferencePath("reference", fast=False, channels_last=False),
        InferencePath("exact"),
        InferencePath("exact-dense", skip_silent=False),
        InferencePath("exact-nchw", channels_last=False),
        InferencePath("compile", compile=True),
        InferencePath("bf16", dtype=torch.bfloat16),
        InferencePath("fp16", dtype=torch.float16),
    )
}
#: Paths whose outputs equal the reference up to float32 rounding.
EXACT_PATHS = tuple(name for name, path in PATHS.items() if path.exact)
#: Paths that run the exported ONNX graph in another runtime (optional packages).
RUNTIME_PATHS = ("onnxruntime", "openvino")
#: Every path :func:`compile_for_inference` takes by name.
ALL_PATHS = (*PATHS, *RUNTIME_PATHS)


class Inference:
    """``depth = inference(x)``: ``(B, C, H, W)`` spike counts (any float/int dtype, any device)
    to ``(B, 1, H, W)`` float32 depth in metres on the inference device."""

    def __init__(
        self,
        forward: Callable[[Tensor], Tensor],
        *,
        path: str,
        device: torch.device,
        dtype: torch.dtype,
        config: object,
        input_size: tuple[int, int] | None,
        batch: int,
        freeze: bool = False,
    ) -> None:
        self._forward = forward
        self._freeze = freeze
        self._frozen: dict[tuple[int, ...], Callable[[Tensor], Tensor]] = {}
        self.path = path
        self.device = device
        self.dtype = dtype
        self.config = config
        self.input_size = input_size
        self.batch = batch
        self._graph: _CudaGraph | None = None

    def __call__(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise ModelError(f"inference expects a torch.Tensor, got {type(x).__name__}")
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            raise ModelError(
                f"inference ({self.path}) was prepared for input {self.input_size}, got spatial "
                f"size {tuple(x.shape[-2:])}; call compile_for_inference with that input_size"
            )
        x = x.to(self.device, self.dtype, non_blocking=True)
        forward = self._forward
        if self._freeze and self._graph is None:
            forward = self._frozen_forward(x)
        with torch.inference_mode():
            if self._graph is not None and tuple(x.shape) == self._graph.shape:
                return self._graph(x)
            return forward(x).float()

    def _frozen_forward(self, x: Tensor) -> Callable[[Tensor], Tensor]:
        """The TorchScript-frozen forward for ``x``'s shape, traced on first use."""
        key = tuple(x.shape)
        frozen = self._frozen.get(key)
        if frozen is None:
            module = self._forward
            prepare = getattr(module, "prepare", None)
            if prepare is not None:
                prepare(key[-2:])  # plan the folding eagerly, or the trace records the planning
            try:
                with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                    # The folded plan is chosen per input size in Python: the trace bakes it in,
                    # which is why there is one trace per shape.
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    # Deprecated upstream in favour of torch.compile, which keeps a Python
                    # wrapper per operator; should it go away, the except below runs eagerly.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    # A fresh tensor: x may be an inference tensor (caller in inference mode).
                    example = torch.zeros_like(x)
                    traced = torch.jit.trace(module, example, check_trace=False)
                    frozen = torch.jit.freeze(traced.eval())
            except Exception as err:  # eager still works, it just holds the GIL
                warnings.warn(
                    f"inference ({self.path}): TorchScript freezing failed for input {key}, "
                    f"running eagerly: {err}",
                    RuntimeWarning,
                    stacklevel=3,
                )
                frozen = module
            self._frozen[key] = frozen
        return frozen

    def __repr__(self) -> str:
        graph = ", cuda graph" if self._graph is not None else ""
        frozen = ", frozen" if self._freeze else ""
        return (
            f"Inference(path={self.path!r}, device={self.device}, dtype={self.dtype}, "
            f"input_size={self.input_size}, batch={self.batch}{graph}{frozen})"
        )


class _CudaGraph:
    """One captured forward for a fixed input shape: copy in, replay, copy out."""

    def __init__(self, forward: Callable[[Tensor], Tensor], example: Tensor) -> None:
        self.shape = tuple(example.shape)
        self.static_in = example.clone()
        stream = torch.cuda.Stream(device=example.device)
        stream.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):  # plans, cuDNN algorithm choice, allocator warm-up
                forward(self.static_in)
        torch.cuda.current_stream(example.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.static_out = forward(self.static_in).float()

    def __call__(self, x: Tensor) -> Tensor:
        self.static_in.copy_(x)
        self.graph.replay()
        return self.static_out.clone()


def compile_for_inference(
    model: StereoSpike,
    path: str | InferencePath = "exact",
    *,
    device: str | torch.device | None = None,
    input_size: tuple[int, int] | None = None,
    batch: int = 1,
    threads: int | None = None,
    cuda_graph: bool = True,
    freeze: bool = True,
    providers: str | Sequence[str] | None = None,
    onnx: str | os.PathLike[str] | bytes | None = None,
) -> Inference:
    """Prepare ``model`` (left untouched) for repeated inference along execution ``path``: a
    name of :data:`ALL_PATHS`, or an :class:`InferencePath` of one's own (how the benchmark
    measures paths that users do not pick, such as the GEMM kernels turned off).

    ``device`` defaults to the model's; ``input_size`` (H, W) builds the folded plan and warms
    up now instead of on the first window, and is required for a CUDA graph; ``threads`` sets
    torch's CPU threads (process-wide); ``freeze`` traces and freezes the folded CPU paths per
    input shape (see the module docstring; ignored for ``reference``, ``compile`` and CUDA).
    The runtime paths take ``providers`` (ONNX Runtime's, e.g. ``"tensorrt,cuda,cpu"``) and
    ``onnx``, an exported file (or its bytes) to run instead of exporting ``model`` now.
    """
    if not isinstance(path, InferencePath) and path not in ALL_PATHS:
        raise ModelError(f"unknown inference path {path!r}; paths: {', '.join(ALL_PATHS)}")
    if not isinstance(model, StereoSpike):
        raise ModelError(f"compile_for_inference needs a StereoSpike, got {type(model).__name__}")
    if batch < 1:
        raise ModelError(f"batch must be >= 1, got {batch}")
    if threads is not None:
        if threads < 1:
            raise ModelError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if path in RUNTIME_PATHS:
        return _runtime_inference(model, path, device, input_size, batch, providers, onnx)
    chosen = path if isinstance(path, InferencePath) else PATHS[path]
    param = next(model.parameters())
    device = torch.device(device) if device is not None else param.device
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device} asked for, but torch sees no CUDA device")
    net = copy.deepcopy(model).eval().to(device=device, dtype=chosen.dtype)
    for p in net.parameters():
        p.requires_grad_(False)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    fast = chosen.fast
    module: nn.Module = (
        FastStereoSpike(
            net,
            channels_last=chosen.channels_last,
            gemm_kernels=chosen.gemm_kernels,
            skip_silent=chosen.skip_silent,
        )
        if fast
        else net
    )
    if input_size is not None:
        input_size = (int(input_size[0]), int(input_size[1]))
        if fast:
            module.prepare(input_size)  # type: ignore[operator]
    forward: Callable[[Tensor], Tensor] = module
    if chosen.compile:
        forward = torch.compile(module, dynamic=False)
    inference = Inference(
        forward,
        path=chosen.name,
        device=device,
        dtype=chosen.dtype,
        config=model.config,
        input_size=input_size,
        batch=batch,
        freeze=freeze and fast and not chosen.compile and device.type == "cpu",
    )
    if input_size is not None:
        example = torch.zeros(batch, model.config.in_channels, *input_size, device=device)
        example = example.to(chosen.dtype)
        if device.type == "cuda" and cuda_graph:
            inference._graph = _CudaGraph(forward, example)
        else:
            inference(example)  # warm-up: plans, compile, allocator
    return inference


def _runtime_inference(
    model: StereoSpike,
    runtime: str,
    device: str | torch.device | None,
    input_size: tuple[int, int] | None,
    batch: int,
    providers: str | Sequence[str] | None,
    onnx: str | os.PathLike[str] | bytes | None,
) -> Inference:
    """The ``onnxruntime`` / ``openvino`` paths: ONNX bytes in a peer runtime's session."""
    from stereospike_ros.model.checkpoint import tensors_digest
    from stereospike_ros.model.onnx_export import (
        export_onnx_bytes,
        load_onnx,
        resize_is_exact,
        upsampling_sizes,
    )
    from stereospike_ros.model.runtimes import make_runner

    if device is not None and torch.device(device).type != "cpu":
        raise OnnxError(
            f"the {runtime} path runs on the runtime's own devices (ONNX Runtime: providers "
            f"such as cuda or tensorrt), not on torch device {device}"
        )
    if input_size is not None:
        input_size = (int(input_size[0]), int(input_size[1]))
    if onnx is None:
        # At a fixed size, ONNX Resize (one pass) where this runtime reads torch's rows there;
        # otherwise gathers, exact at every size but slower in the runtimes.
        exact_resize = input_size is not None and resize_is_exact(
            runtime, upsampling_sizes(model, input_size)
        )
        raw = export_onnx_bytes(
            model, input_size=input_size, upsampling="resize" if exact_resize else "gather"
        )
    elif isinstance(onnx, bytes):
        raw = onnx
    else:
        # An exported file must hold exactly this network's weights.
        raw, _ = load_onnx(onnx, expect={"tensors_sha256": tensors_digest(model.state_dict())})
    runner = make_runner(
        runtime,
        raw,
        providers=providers,
        input_size=input_size,
        batch=batch,
        threads=torch.get_num_threads(),
    )
    inference = Inference(
        runner,
        path=runtime,
        device=torch.device("cpu"),
        dtype=torch.float32,
        config=model.config,
        input_size=input_size,
        batch=batch,
    )
    if input_size is not None:
        inference(torch.zeros(batch, model.config.in_channels, *input_size))  # warm-up
    return inference
