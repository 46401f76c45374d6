"""The one event representation every decoder, reader and node shares.

A structured numpy array keeps a batch of events in one contiguous block that vectorized code
(histograms, rectification, windowing) can slice without Python touching single events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

#: A camera of the stereo pair.
Side = Literal["left", "right"]
#: Both cameras, in the order the network stacks their histograms.
SIDES: tuple[Side, Side] = ("left", "right")

#: x, y: pixel column and row, (0, 0) top-left; t: sensor time in nanoseconds; p: 1 = ON, 0 = OFF.
EVENT_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])


def empty_events(n: int = 0) -> np.ndarray:
    """A zeroed event array of length ``n``."""
    return np.zeros(n, dtype=EVENT_DTYPE)


@dataclass
class EventBatch:
    """One decoded message: the sensor geometry, the header, and its events.

    ``stamp_ns`` is the message header stamp (for EventPacket: host arrival time); event times
    ``events['t']`` are sensor time in nanoseconds.
    """

    height: int
    width: int
    stamp_ns: int
    frame_id: str
    events: np.ndarray = field(default_factory=empty_events)

    def __len__(self) -> int:
        return len(self.events)
