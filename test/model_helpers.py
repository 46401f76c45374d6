"""Shared by the test_model_*.py modules: run torch on one thread while they run.

On a busy 2-core machine, torch's two OpenMP threads wait on each other at every op barrier:
a tiny model's forward pass measured 0.4-0.7 s on 2 threads and 5 ms on 1. Tests use tiny
models, so one thread is what keeps them fast; the thread count is restored afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def rewrite_tensors(source: Path, dest: Path, change: Callable[[dict], dict]) -> Path:
    """A copy of checkpoint ``source`` whose tensors ``change`` rewrites, with their SHA-256
    recorded anew: a consistent file, only what it holds is wrong (NaN, other names, shapes)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from stereospike_ros.model.checkpoint import _META_KEY, tensors_digest

    with safe_open(str(source), "pt") as f:
        header = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)
    tensors = change(tensors)
    meta = json.loads(header[_META_KEY])
    meta["tensors_sha256"] = tensors_digest(tensors)
    header[_META_KEY] = json.dumps(meta)
    save_file(tensors, str(dest), metadata=header)
    return dest
