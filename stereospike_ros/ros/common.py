"""rclpy helpers the nodes share: parameter declaration from the tables, QoS, message types."""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.callback_groups import CallbackGroup
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from rclpy.signals import SignalHandlerOptions

from stereospike_ros.ros.errors import StartupError
from stereospike_ros.ros.parameters import Param, unknown_parameters

__all__ = [
    "declare_parameters",
    "event_qos",
    "init_without_signal_handlers",
    "latched_qos",
    "message_class",
    "output_qos",
    "spin_until_signal",
    "stop_on_signals",
]


def init_without_signal_handlers(args: Sequence[str] | None) -> None:
    """rclpy.init, leaving SIGINT/SIGTERM to :func:`stop_on_signals`.

    rclpy's own handler shuts the context down from C; now and then a node stopped that way
    never came back from ``spin()`` (a hang after Ctrl-C, seen in CI), so the evaluator never
    wrote its summary. A Python flag polled between ``spin_once`` calls always ends the loop.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


@contextlib.contextmanager
def interrupt_on_signals(stop: threading.Event) -> Iterator[None]:
    """While inside (a node's start-up: model load, warm-up), SIGINT/SIGTERM raise
    KeyboardInterrupt at once instead of waiting for the loop that polls ``stop``."""

    def interrupt(*_: object) -> None:
        stop.set()
        raise KeyboardInterrupt

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, interrupt)
    try:
        if stop.is_set():
            raise KeyboardInterrupt
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while inside; the previous handlers come back after."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def spin_until_signal(executor: Executor, stop: threading.Event, period_s: float = 0.1) -> None:
    """Spin until ``stop`` is set or the context shuts down."""
    while not stop.is_set() and rclpy.ok(context=executor.context):
        executor.spin_once(timeout_sec=period_s)


N = TypeVar("N", bound=Node)


def run_node(
    name: str,
    factory: Callable[[], N],
    args: Sequence[str] | None,
    on_exit: Callable[[N], None] = lambda node: None,
) -> int:
    """A node's ``main``: init, build, spin until SIGINT/SIGTERM, ``on_exit``, shut down.

    Returns 1 (after one FATAL line) when ``factory`` raises ``StartupError``, else 0; a
    signal during ``factory`` (loading weights, warming up) ends it at once, with 0. One
    SingleThreadedExecutor thread: rclpy's EventsExecutor delivered no message with the Kilted
    wheels (it held a core at 100 % and ignored SIGINT), and the depth node's heavy work has
    threads of its own.
    """
    init_without_signal_handlers(sys.argv if args is None else args)
    with stop_on_signals() as stop:
        node = None
        try:
            with interrupt_on_signals(stop):
                node = factory()
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            spin_until_signal(executor, stop)
        except StartupError as err:
            rclpy.logging.get_logger(name).fatal(f"cannot start: {err}")
            return 1
        except (ExternalShutdownException, KeyboardInterrupt):
            pass
        finally:
            if node is not None:
                on_exit(node)
                node.destroy_node()
            rclpy.try_shutdown()
    return 0


def _descriptor(param: Param) -> ParameterDescriptor:
    text = param.description
    if param.choices:
        text += f" (one of: {', '.join(param.choices)})"
    descriptor = ParameterDescriptor(description=text, read_only=param.read_only)
    if param.low is not None and param.high is not None:
        if isinstance(param.default, bool):
            raise TypeError(f"parameter {param.name}: a bool cannot have a range")
        if isinstance(param.default, int):
            descriptor.integer_range = [
                IntegerRange(from_value=int(param.low), to_value=int(param.high), step=0)
            ]
        else:
            descriptor.floating_point_range = [
                FloatingPointRange(
                    from_value=float(param.low), to_value=float(param.high), step=0.0
                )
            ]
    return descriptor


def declare_parameters(node: Node, table: Iterable[Param]) -> dict[str, Any]:
    """Declare every parameter of ``table`` on ``node``; returns {name: value}.

    A value of the wrong type or outside its range (from a params file or ``-p``) becomes a
    StartupError naming the parameter, instead of an rclpy traceback. A given name that is not
    declared (a typo) gets a WARN naming the nearest declared one.
    """
    table = tuple(table)
    values: dict[str, Any] = {}
    for param in table:
        try:
            node.declare_parameter(param.name, param.default, _descriptor(param))
        except Exception as err:  # rclpy raises several unrelated types here
            raise StartupError(
                f"parameter {node.get_fully_qualified_name()}.{param.name}: {err}"
            ) from err
        values[param.name] = node.get_parameter(param.name).value
    warn_unknown_parameters(node, [param.name for param in table])
    return values


def warn_unknown_parameters(node: Node, declared: Sequence[str]) -> list[str]:
    """WARN about every parameter given to ``node`` (``-p``, a params file) that it does not
    declare; returns the messages.

    rclpy keeps the values given for a node in ``Node._parameter_overrides`` and has no public
    way to list them (only declared parameters are listed); declaring overrides automatically
    instead would lose our types, ranges and read-only flags. rclpy's own parameters
    (use_sim_time, ...) and ``qos_overrides.*`` (declared when publishers are made) are known.
    """
    given = getattr(node, "_parameter_overrides", {})
    candidates = [
        name
        for name in given
        if not name.startswith("qos_overrides.") and not node.has_parameter(name)
    ]
    known = [*declared, *(n for n in ("use_sim_time",) if node.has_parameter(n))]
    messages = unknown_parameters(candidates, known)
    for message in messages:
        node.get_logger().warning(message)
    return messages


def event_qos(reliable: bool, depth: int) -> QoSProfile:
    """Sensor-data QoS (BEST_EFFORT, volatile) with a deeper history, or RELIABLE.

    A BEST_EFFORT subscription hears both best-effort drivers and reliable publishers; a deep
    history absorbs bursts of 1 ms messages while the callback decodes.
    """
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


def output_qos(depth: int = 5) -> QoSProfile:
    """RELIABLE, volatile: heard by both reliable and best-effort subscribers (rviz)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def latched_qos() -> QoSProfile:
    """RELIABLE, transient local, depth 1: the last sample reaches late joiners (the player's
    rectification maps and the node's subscription to them must agree on this)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def message_class(type_name: str) -> type:
    """'sensor_msgs/msg/Image' or 'sensor_msgs/Image' -> the message class."""
    parts = type_name.strip().split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise StartupError(f"message type {type_name!r} is not of the form pkg/msg/Type")
    try:
        module = importlib.import_module(f"{parts[0]}.{parts[1]}")
        return getattr(module, parts[2])
    except (ImportError, AttributeError) as err:
        hint = MISSING_PACKAGE_HINTS.get(parts[0], "")
        raise StartupError(
            f"message type {type_name!r} is not installed: {err}" + (f"; {hint}" if hint else "")
        ) from err


#: How to get a message package that rosdep cannot install. Imported only when a node is asked
#: for one of its types, so a workspace without it runs every other path.
MISSING_PACKAGE_HINTS = {
    "dvs_msgs": "dvs_msgs is in no ROS 2 distribution: add stereospike_ros/interfaces/dvs_msgs "
    "to your colcon workspace and build it (docs/ros2-install.md), or use "
    "event_camera_msgs/EventPacket",
}


class PolledSubscription:
    """A raw subscription read in batches by ``take_all`` instead of one callback per message.

    rclpy's executor costs ~300 us of Python per wake-up (measured here with the Kilted
    wheels), more than decoding a 1 ms event message; a driver publishing 1000 messages/s per
    camera then costs the depth node most of a core before any work. A subscription in a
    callback group that executors never wait on (``depth_node.PolledGroup``) is instead drained
    every few ms by the node's ingest thread. It takes messages exactly as rclpy's executor
    does (``handle.take_message``, the call behind every subscription callback); rclpy has no
    public "take" API.
    """

    def __init__(
        self,
        node: Node,
        msg_type: type,
        topic: str,
        qos: QoSProfile,
        callback_group: CallbackGroup | None = None,
    ) -> None:
        self.topic = topic
        self.subscription = node.create_subscription(
            msg_type, topic, _never_called, qos, raw=True, callback_group=callback_group
        )
        self._node = node
        self._lost_event = _message_lost_event(self.subscription)
        self._lost = 0

    def destroy(self) -> None:
        """Destroy the subscription; its loss-status handle first, which otherwise keeps the
        subscription alive (still matched in the graph) after ``destroy_subscription``."""
        if self._lost_event is not None:
            self._lost_event.destroy_when_not_in_use()
            self._lost_event = None
        self._node.destroy_subscription(self.subscription)

    def lost(self) -> int | None:
        """Messages the transport reports lost on this subscription so far (None: the RMW
        does not report it). Fast DDS counts samples that never arrived, e.g. best-effort
        fragments of a large message dropped on the way; not samples a full history replaced.
        An executor would deliver the same status to ``SubscriptionEventCallbacks(
        message_lost=...)``; executors leave this subscription alone, so it is read here.
        """
        if self._lost_event is None:
            return None
        with self._lost_event:
            status = self._lost_event.take_event()
        total = -1 if status is None else int(status.total_count)
        # Fast DDS's count is an int32 widened to size_t; under a flood it now and then reads
        # as a huge number (2**64 minus about 2**31) and then recovers: keep the largest
        # plausible value (the count only grows).
        if 0 <= total < 2**31:
            self._lost = max(self._lost, total)
        return self._lost

    def take_all(self, limit: int = 100_000) -> list[bytes]:
        """The serialized messages waiting now, oldest first (at most ``limit``)."""
        sub = self.subscription
        out: list[bytes] = []
        with sub.handle:
            take = sub.handle.take_message
            while len(out) < limit:
                taken = take(sub.msg_type, True)
                if taken is None:
                    break
                out.append(taken[0])
        return out


def _message_lost_event(subscription: Any) -> Any:
    """rcl's message-lost status handle of ``subscription``, or None where unsupported."""
    from rclpy.event_handler import QoSSubscriptionEventType, UnsupportedEventTypeError
    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

    try:
        with subscription.handle:
            return _rclpy.EventHandle(
                subscription.handle, QoSSubscriptionEventType.RCL_SUBSCRIPTION_MESSAGE_LOST
            )
    except (UnsupportedEventTypeError, RuntimeError, TypeError):
        return None


def _never_called(_msg: object) -> None:  # pragma: no cover - the node is never spun
    raise AssertionError("a PolledSubscription's node must not be spun by an executor")
