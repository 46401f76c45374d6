"""Shared by the test_model_*.py modules: run torch on one thread while they run.

On a busy 2-core machine, torch's two OpenMP threads wait on each other at every op barrier:
a tiny model's forward pass measured 0.4-0.7 s on 2 threads and 5 ms on 1. Tests use tiny
models, so one thread is what keeps them fast; the thread count is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

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
