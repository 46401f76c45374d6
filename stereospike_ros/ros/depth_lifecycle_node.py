"""``depth_lifecycle_node``: the depth node as a managed (lifecycle) node, like nav2's servers.

Same parameters, topics and processing as ``depth_node`` (it is the same class, taken through
its steps by the transitions instead of all at once in the constructor):

- configure: load the weights and warm the network up; publishers created, not yet publishing
- activate: subscribe to the events (and trigger, camera_info), start the ingest and inference
  threads; outputs and ``/diagnostics`` are published
- deactivate: threads stopped, subscriptions destroyed; nothing is published
- cleanup: publishers destroyed and the network freed (configure again to reload)
- shutdown: from any state

``autostart:=true`` (parameter) takes the node to active by itself at start-up, for a launch
without a lifecycle manager. Drive it with ``ros2 lifecycle set /depth_node configure`` etc.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Sequence

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn

from stereospike_ros.ros.common import run_node
from stereospike_ros.ros.depth_node import DepthNode
from stereospike_ros.ros.errors import StartupError

__all__ = ["DepthLifecycleNode", "main"]


class DepthLifecycleNode(LifecycleNodeMixin, DepthNode):
    """``DepthNode`` whose configure / activate steps are lifecycle transitions."""

    def __init__(self, node_name: str = "depth_node", **kwargs: object) -> None:
        self._constructed = False
        DepthNode.__init__(self, node_name, **kwargs)  # parameters only (steps deferred below)
        LifecycleNodeMixin.__init__(self)
        self.autostart = self.declare_parameter(
            "autostart",
            False,
            ParameterDescriptor(
                description="configure and activate at start-up (no lifecycle manager needed)",
                read_only=True,
            ),
        ).value
        self._constructed = True
        self._active = False
        self._configured = False
        self._outputs: list = []

    # DepthNode.__init__ calls these three; here the transitions do.
    def _configure(self) -> None:
        if self._constructed:
            DepthNode._configure(self)

    def _create_outputs(self) -> None:
        if self._constructed:
            DepthNode._create_outputs(self)

    def _start_inputs(self) -> None:
        if self._constructed:
            DepthNode._start_inputs(self)

    def _output_publisher(self, msg_type: type, topic: str, qos: object) -> object:
        publisher = self.create_lifecycle_publisher(msg_type, topic, qos)
        self._outputs.append(publisher)
        return publisher

    # -- transitions --------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        def configure() -> None:
            self._configured = True  # partly, if it fails: _free undoes what was done
            self._configure()
            self._create_outputs()

        result = self._step("configure", configure, undo=self._free)
        if result == TransitionCallbackReturn.SUCCESS:
            self.get_logger().info("configured: weights loaded, network warmed up")
            return super().on_configure(state)
        return result

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        def activate() -> None:
            self._active = True
            self._start_inputs()

        result = self._step("activate", activate, undo=self._deactivate)
        if result == TransitionCallbackReturn.SUCCESS:
            self.get_logger().info("active: subscribed, publishing")
            return super().on_activate(state)
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._step("deactivate", self._deactivate)
        if result == TransitionCallbackReturn.SUCCESS:
            self.get_logger().info("inactive: unsubscribed, not publishing")
            return super().on_deactivate(state)
        return result

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._step("cleanup", self._free)
        if result == TransitionCallbackReturn.SUCCESS:
            self.get_logger().info("unconfigured: network and publishers freed")
            return super().on_cleanup(state)
        return result

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured

    def _step(
        self, what: str, step: Callable[[], None], undo: Callable[[], None] | None = None
    ) -> TransitionCallbackReturn:
        """Run one transition's work; a failure is logged (rclpy would only return ERROR)."""
        try:
            step()
        except Exception as err:
            text = str(err) if isinstance(err, StartupError) else repr(err)
            self.get_logger().error(f"{what} failed: {text}")
            if undo is not None:
                try:
                    undo()
                except Exception as undo_err:  # the state is already failed; say so and go on
                    self.get_logger().error(f"undoing {what} failed too: {undo_err!r}")
            # A bad setting (StartupError) leaves the node where it was, ready to try again.
            if isinstance(err, StartupError):
                return TransitionCallbackReturn.FAILURE
            return TransitionCallbackReturn.ERROR
        return TransitionCallbackReturn.SUCCESS

    def _deactivate(self) -> None:
        if self._active:
            self._active = False
            self._stop_inputs()

    def _free(self) -> None:
        for publisher in self._outputs:
            self.destroy_lifecycle_publisher(publisher)
        self._outputs = []
        for name in ("estimator", "ingest", "slot"):
            self.__dict__.pop(name, None)
        self._configured = False
        gc.collect()

    def stop(self) -> None:
        """Whatever state it is in: threads stopped, everything freed (process exit)."""
        self._deactivate()
        if self._configured:
            self._free()


def _start(args: Sequence[str] | None = None) -> DepthLifecycleNode:
    node = DepthLifecycleNode()
    if node.autostart:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise StartupError("autostart: configure failed (see the error above)")
        node.trigger_activate()
    return node


def main(args: Sequence[str] | None = None) -> int:
    """``ros2 run stereospike_ros depth_lifecycle_node [--ros-args ...]``."""
    return run_node("depth_node", _start, args, on_exit=DepthLifecycleNode.stop)


if __name__ == "__main__":
    sys.exit(main())
