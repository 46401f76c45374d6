"""rclpy's own deserialization, timed: the reference the events benchmark compares against.

Lives in ``ros/`` because it imports rclpy and message types; the benchmark imports it lazily
and reports the ratio as unavailable when ROS is not installed.
"""

from __future__ import annotations

import time

#: message type name -> (module, class)
_TYPES = {
    "dvs_msgs/EventArray": ("dvs_msgs.msg", "EventArray"),
    "event_camera_msgs/EventPacket": ("event_camera_msgs.msg", "EventPacket"),
}


def time_rclpy_deserialize(
    buf: bytes, msg_type: str = "dvs_msgs/EventArray", repeat: int = 3
) -> tuple[float, int]:
    """Best wall time (s) of ``rclpy.serialization.deserialize_message`` on ``buf``.

    Also returns how many events the message held, read back from the deserialized message,
    so the caller can check that both sides decoded the same thing.
    """
    import importlib

    from rclpy.serialization import deserialize_message

    if msg_type not in _TYPES:
        raise ValueError(f"no rclpy reference for {msg_type!r}; known: {', '.join(_TYPES)}")
    module, name = _TYPES[msg_type]
    cls = getattr(importlib.import_module(module), name)
    best = float("inf")
    count = 0
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        msg = deserialize_message(buf, cls)
        best = min(best, time.perf_counter() - start)
        count = len(msg.events)
    return best, count
