"""Decode serialized ROS 2 event messages into ``EventBatch`` without rclpy.

rclpy builds one Python object per event; a ``raw=True`` subscription instead hands over the
CDR bytes, which are read here as strided numpy views: the header fields with ``struct``
(layouts in ``cdr.py``), the event block in a handful of vectorized copies
(``fallbacks.copy_events``), or in one compiled loop when numba is installed (``kernels.py``;
same result). Alignment padding is never read (Fast DDS does not zero it), and every length is
checked against the buffer before use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from stereospike_ros.events import fallbacks, kernels
from stereospike_ros.events.cdr import Buffer, read_event_array_header, read_event_packet_header
from stereospike_ros.events.errors import DecodeError
from stereospike_ros.events.evt3 import Evt3State, decode_evt3
from stereospike_ros.events.libcaer import LibcaerState, decode_libcaer
from stereospike_ros.events.types import EVENT_DTYPE, EventBatch

if TYPE_CHECKING:
    from stereospike_ros.events.rectify import Rectifier


def decode_event_array(buf: Buffer) -> EventBatch:
    """``dvs_msgs/EventArray`` CDR bytes (encapsulation header included) -> EventBatch.

    Either byte order; ``t`` = sec * 1e9 + nanosec as int64 ns; ``p`` = 1 for ON.
    """
    head = read_event_array_header(buf)
    n = head.count
    out = np.empty(n, dtype=EVENT_DTYPE)
    if n:
        mem = np.frombuffer(buf, dtype=np.uint8)
        if kernels.HAVE_NUMBA:
            kernels.decode_event_array_blocks(mem, [head.start], [n], head.big_endian, out)
        else:
            fallbacks.decode_event_array_blocks(mem, [head.start], [n], head.big_endian, out)
    return EventBatch(head.height, head.width, head.stamp_ns, head.frame_id, out)


def accumulate_event_array(
    buf: Buffer,
    hist: np.ndarray,
    rectifier: Rectifier | None = None,
    t_start: int | None = None,
    t_end: int | None = None,
) -> tuple[int, int]:
    """Count a ``dvs_msgs/EventArray``'s events into ``hist`` without building them.

    The same counts as ``accumulate_into(hist, rectifier(decode_event_array(buf).events,
    inplace=True), t_start, t_end)``, in one compiled pass with numba (``kernels.HAVE_NUMBA``).
    Returns (events the rectifier dropped, in-window events that fell off ``hist``).
    """
    head = read_event_array_header(buf)
    mem = np.frombuffer(buf, dtype=np.uint8)
    return kernels.count_event_array(
        mem, head.start, head.count, head.big_endian, rectifier, hist, t_start, t_end
    )


#: encoding -> payload decoder(payload, time_base_ns, big_endian=..., state=...)
PAYLOAD_DECODERS: dict[str, Callable[..., np.ndarray]] = {
    "evt3": decode_evt3,
    "libcaer": decode_libcaer,
}


class EventPacketDecoder:
    """Decodes the ``event_camera_msgs/EventPacket`` stream of ONE camera, keeping EVT3 state.

    A real evt3 driver cuts its word stream anywhere, so time-high, row and vector base carry
    over from one packet to the next; feed every packet of a topic, in order, to one instance.
    ``t`` = ``time_base`` + decoded sensor time (evt3: microseconds since the sensor's counter
    started, times 1000; libcaer: timestamp us * 1000). A ``seq`` lower than the last one
    (a bag that loops, a driver that restarted) starts the stream again: the carried state is
    forgotten first, so the new pass decodes as the first did, its events before the first
    TIME_HIGH dropped and counted, instead of stamped with the previous pass's time high.
    ``last_seq`` is the ``seq`` field of the last packet decoded; ``discontinuities`` counts
    time steps the decoders did not trust (see evt3 and libcaer), ``restarts`` the restarts.
    """

    def __init__(self) -> None:
        self.evt3_state = Evt3State()
        self.libcaer_state = LibcaerState()
        self.last_seq: int | None = None
        self.restarts = 0

    @property
    def discontinuities(self) -> int:
        return self.evt3_state.discontinuities + self.libcaer_state.discontinuities

    def decode(self, buf: Buffer) -> EventBatch:
        head = read_event_packet_header(buf)
        payload = np.frombuffer(buf, dtype=np.uint8, count=head.count, offset=head.start)
        time_base, big_endian = head.time_base, head.is_bigendian
        if self.last_seq is not None and head.seq < self.last_seq:
            self.restart()
        if head.encoding == "evt3":
            events = decode_evt3(payload, time_base, big_endian=big_endian, state=self.evt3_state)
        elif head.encoding == "libcaer":
            events = decode_libcaer(
                payload, time_base, big_endian=big_endian, state=self.libcaer_state
            )
        else:
            raise DecodeError(
                f"event_camera_msgs/EventPacket: unsupported encoding {head.encoding!r} "
                f"(frame_id {head.frame_id!r}); supported: {', '.join(sorted(PAYLOAD_DECODERS))}"
            )
        self.last_seq = head.seq
        return EventBatch(head.height, head.width, head.stamp_ns, head.frame_id, events)

    def restart(self) -> None:
        """Forget what the stream carried (time high, row, vector base); keep the counts."""
        old = self.evt3_state
        self.evt3_state = Evt3State(
            events_without_time=old.events_without_time, discontinuities=old.discontinuities
        )
        self.restarts += 1


def decode_event_packet(buf: Buffer) -> EventBatch:
    """One ``event_camera_msgs/EventPacket`` decoded as the start of its stream.

    For a live evt3 topic use one ``EventPacketDecoder`` per camera instead: a packet cut in
    the middle of the stream needs the state the previous packets left.
    """
    return EventPacketDecoder().decode(buf)
