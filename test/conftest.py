"""Shared fixtures: an isolated ROS 2 graph per test session, spin-until helpers, and the
GEMM-kernel switch of the model tests."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator

import pytest

# Keep our DDS traffic on this machine and off any other test run's domain.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")


@pytest.fixture
def ros_context() -> Iterator[object]:
    """A fresh rclpy context, shut down after the test."""
    rclpy = pytest.importorskip("rclpy")
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.shutdown(context=context)


def spin_until(executor: object, done: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Spin ``executor`` until ``done()`` or ``timeout`` seconds; returns ``done()``."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    return done()


@pytest.fixture
def gemm_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every layer that can run as a GEMM kernel does (the real rules need >= 128 channels)."""
    from stereospike_ros.model import winograd
    from stereospike_ros.model.fast import plan

    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(plan, "TAP_SUM_CHANNELS", 1)


@pytest.fixture
def skip_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every layer that may skip silent channels does (the real rule needs wide layers)."""
    from stereospike_ros.model.fast import plan

    monkeypatch.setattr(plan, "SKIP_MIN_PAIRS", 1)
    monkeypatch.setattr(plan, "SKIP_MIN_MACS", 0)
