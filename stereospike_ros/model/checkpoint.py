"""Self-describing checkpoints: safetensors weights plus JSON metadata in the file's header.

A checkpoint is one ``.safetensors`` file. Its header's ``__metadata__`` holds
``{"format": "stereospike_ros.checkpoint", "stereospike_ros": "<json>"}``; the JSON carries
the model name and :class:`ModelConfig`, the input size and window length it was trained for,
the training data and split, metrics at save time, the package and format versions, and a
SHA-256 of the tensors (names, dtypes, shapes, bytes) so that corruption anywhere is caught.
Loading never unpickles and rebuilds the network from the metadata alone.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

import stereospike_ros
from stereospike_ros.atomic import atomic_write
from stereospike_ros.model.errors import CheckpointError, ConfigError
from stereospike_ros.model.network import ModelConfig, StereoSpike

FORMAT = "stereospike_ros.checkpoint"
FORMAT_VERSION = 1
_META_KEY = "stereospike_ros"
#: Metadata keys that save_checkpoint writes itself.
RESERVED_KEYS = ("format_version", "package_version", "model", "config", "tensors_sha256")


def _unwrap(model: nn.Module) -> StereoSpike:
    """The StereoSpike inside DDP (``.module``) or ``torch.compile`` (``._orig_mod``)."""
    for _ in range(3):
        if isinstance(model, StereoSpike):
            return model
        model = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if model is None:
            break
    raise CheckpointError("save_checkpoint needs a StereoSpike model (one built by build_model)")


def tensors_digest(tensors: Mapping[str, Tensor]) -> str:
    """SHA-256 over sorted names, dtypes, shapes and raw bytes; independent of file layout."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _json_ready(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint metadata {what} is not JSON-ready: {err}") from err


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    input_size: tuple[int, int] | None = None,
    window_ms: float | None = None,
    data: Any = None,
    split: Any = None,
    metrics: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """Write ``model`` and its metadata to ``path`` atomically; returns the path.

    The file is written to a temporary file in the same folder, fsynced, then renamed over
    ``path``, so a crash or error leaves either the old file or the new one, never a mix.
    ``extra`` keys (epoch, optimizer settings, ...) must be JSON-serialisable.
    """
    path = Path(path)
    net = _unwrap(model)
    clash = sorted(set(extra) & set(RESERVED_KEYS))
    if clash:
        raise CheckpointError(f"metadata keys {clash} are written by save_checkpoint itself")
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    metadata = {
        "format_version": FORMAT_VERSION,
        "package_version": stereospike_ros.__version__,
        "model": net.config.name,
        "config": net.config.to_dict(),
        "input_size": None if input_size is None else [int(v) for v in input_size],
        "window_ms": None if window_ms is None else float(window_ms),
        "data": data,
        "split": split,
        "metrics": dict(metrics) if metrics is not None else None,
        "saved_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **extra,
        "tensors_sha256": tensors_digest(tensors),
    }
    header = {"format": FORMAT, _META_KEY: json.dumps(_json_ready(metadata, "block"))}
    blob = save_safetensors(tensors, metadata=header)

    return atomic_write(path, lambda f: f.write(blob))


#: safetensors refuses headers above 100 MB; a larger size field means another kind of file.
_MAX_HEADER = 100_000_000
#: Leading bytes of files that are often renamed or mistaken for a checkpoint.
_OTHER_FORMATS = (
    (b"PK\x03\x04", "a zip archive, e.g. torch.save output: convert it with save_checkpoint"),
    (b"\x80", "a Python pickle, e.g. torch.save output: convert it with save_checkpoint"),
    (b"\x89HDF", "an HDF5 file"),
)


def _unreadable(path: Path, err: OSError) -> CheckpointError:
    if path.is_dir():
        return CheckpointError(f"checkpoint {path} is a folder, not a .safetensors file")
    if not path.exists():
        return CheckpointError(f"checkpoint {path} does not exist")
    return CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}")


def _header_size(path: Path, head: bytes, file_size: int) -> int:
    """The header length a safetensors file's first 8 bytes give, checked against the file;
    a file that is not safetensors at all is called that, not a header of absurd length."""
    size = int.from_bytes(head[:8], "little")
    if len(head) < 9 or head[8:9] != b"{" or size > _MAX_HEADER:  # not laid out as safetensors
        if file_size == 0:
            raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
        for magic, what in _OTHER_FORMATS:
            if head.startswith(magic):
                raise CheckpointError(f"{path} is not a safetensors file: it is {what}")
        if len(head) < 9:
            raise CheckpointError(f"checkpoint {path} is truncated: {file_size} bytes, no header")
        if head[8:9] != b"{":
            raise CheckpointError(
                f"{path} is not a safetensors file: it does not start with a length and a JSON "
                "header"
            )
        raise CheckpointError(
            f"{path} is not a safetensors file: its first 8 bytes give a header of {size} bytes"
        )
    if 8 + size > file_size:
        raise CheckpointError(
            f"checkpoint {path} is truncated: header of {size} bytes, file of {file_size}"
        )
    return size


def _parse_header(path: Path, text: bytes) -> dict[str, Any]:
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt: unreadable header ({err})") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {path} is corrupt: header is not a JSON object")
    return header


def _read_header(path: Path, raw: bytes) -> dict[str, Any]:
    """The safetensors JSON header of the whole file ``raw``, checked against its size."""
    size = _header_size(path, raw[:9], len(raw))
    header = _parse_header(path, raw[8 : 8 + size])
    data_len = len(raw) - 8 - size
    ends = [
        v["data_offsets"][1]
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v
    ]
    needed = max(ends, default=0)
    if needed > data_len:
        raise CheckpointError(
            f"checkpoint {path} is truncated: tensors need {needed} bytes, file holds {data_len}"
        )
    return header


def _metadata_of(path: Path, header: Mapping[str, Any]) -> dict[str, Any]:
    block = header.get("__metadata__") or {}
    if not isinstance(block, dict) or block.get("format") != FORMAT or _META_KEY not in block:
        raise CheckpointError(
            f"{path} is not a stereospike_ros checkpoint (no '{FORMAT}' metadata in its header)"
        )
    try:
        metadata = json.loads(block[_META_KEY])
    except (TypeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt: bad metadata JSON ({err})") from err
    if not isinstance(metadata, dict):
        raise CheckpointError(f"checkpoint {path} is corrupt: its metadata is not a JSON object")
    version = metadata.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this stereospike_ros "
            f"{stereospike_ros.__version__} reads up to {FORMAT_VERSION}"
        )
    return metadata


def checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata block of a checkpoint, reading only its header."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            size = _header_size(path, head, os.fstat(f.fileno()).st_size)
            f.seek(8)
            text = f.read(size)
    except OSError as err:
        raise _unreadable(path, err) from err
    header = _parse_header(path, text)
    return _metadata_of(path, header)


def _config_differences(found: ModelConfig, wanted: ModelConfig | Mapping[str, Any]) -> list[str]:
    wanted_dict = wanted.to_dict() if isinstance(wanted, ModelConfig) else dict(wanted)
    if isinstance(wanted_dict.get("heads"), tuple | set | frozenset):
        wanted_dict["heads"] = sorted(wanted_dict["heads"])
    have = found.to_dict()
    unknown = sorted(set(wanted_dict) - set(have))
    if unknown:
        raise ConfigError(f"expect names unknown config keys {unknown}; known: {sorted(have)}")
    return [
        f"config.{k} is {have[k]!r}, expected {v!r}" for k, v in wanted_dict.items() if have[k] != v
    ]


def _expectation_differences(
    metadata: Mapping[str, Any], config: ModelConfig, expect: ModelConfig | Mapping[str, Any]
) -> list[str]:
    if isinstance(expect, ModelConfig):
        return _config_differences(config, expect)
    diffs: list[str] = []
    for key, wanted in expect.items():
        if key == "config":
            diffs += _config_differences(config, wanted)
            continue
        have, wanted = metadata.get(key), _json_ready(wanted, repr(key))
        if have != wanted:
            diffs.append(f"{key} is {have!r}, expected {wanted!r}")
    return diffs


def _check_finite(path: Path, tensors: Mapping[str, Tensor]) -> None:
    """Refuse NaN or Inf weights: a network holding them outputs NaN depth for every input
    (typically the last save of a diverged training run), which no later check would name."""
    bad = {}
    for name, tensor in tensors.items():
        if tensor.is_floating_point():
            count = int((~torch.isfinite(tensor)).sum())
            if count:
                bad[name] = count
    if bad:
        listed = ", ".join(f"{name} ({count})" for name, count in sorted(bad.items())[:4])
        more = f" and {len(bad) - 4} more tensors" if len(bad) > 4 else ""
        raise CheckpointError(
            f"checkpoint {path} holds NaN or Inf weights, in {listed}{more}; it cannot give "
            "depth (was it saved from a training run that diverged?)"
        )


def load_checkpoint(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    expect: ModelConfig | Mapping[str, Any] | None = None,
) -> tuple[StereoSpike, dict[str, Any]]:
    """Rebuild the network saved in ``path``; returns ``(model in eval mode, metadata)``.

    ``expect`` is a :class:`ModelConfig`, or a mapping of metadata keys to required values
    (``{"model": "stereospike", "input_size": [260, 346], "config": {"width": 0.5}}``). Any
    corrupt, truncated or mismatching file raises :class:`CheckpointError` naming the file
    and what differs; so do NaN or Inf weights.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise _unreadable(path, err) from err
    header = _read_header(path, raw)
    metadata = _metadata_of(path, header)
    try:
        config = ModelConfig.from_dict(metadata.get("config") or {})
    except ConfigError as err:
        raise CheckpointError(f"checkpoint {path} holds an invalid model config: {err}") from err
    if expect is not None:
        diffs = _expectation_differences(metadata, config, expect)
        if diffs:
            raise CheckpointError(f"checkpoint {path} does not match: " + "; ".join(diffs))
    try:
        tensors = load_safetensors(raw)
    except Exception as err:  # safetensors raises its own SafetensorError and others
        raise CheckpointError(f"checkpoint {path} is corrupt: {err}") from err
    if tensors_digest(tensors) != metadata.get("tensors_sha256"):
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its tensors do not match the SHA-256 it recorded"
        )
    _check_finite(path, tensors)

    with torch.device("meta"):
        model = StereoSpike(config)
    wanted = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    problems = []
    missing = sorted(set(wanted) - set(found))
    unexpected = sorted(set(found) - set(wanted))
    misshaped = [
        f"{k} {found[k]} in file, {wanted[k]} in model"
        for k in sorted(set(wanted) & set(found))
        if wanted[k] != found[k]
    ]
    if missing:
        problems.append(f"missing tensors {missing}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    if misshaped:
        problems.append("mis-shaped tensors " + "; ".join(misshaped))
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not fit its architecture {config.name} "
            f"({config.to_dict()}): " + "; ".join(problems)
        )
    model.load_state_dict(tensors, strict=True, assign=True)
    return model.to(device).eval(), metadata
