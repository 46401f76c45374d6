"""Errors of the events subpackage."""

from stereospike_ros.errors import StereoSpikeError


class EventsError(StereoSpikeError, ValueError):
    """Base class: bad event input (bytes, geometry, calibration)."""


class DecodeError(EventsError):
    """A buffer is truncated, inconsistent, or in an encoding we do not support."""


class EncodeError(EventsError):
    """Events that cannot be represented in the requested wire format."""


class CalibrationError(EventsError):
    """Camera calibration that cannot be turned into a rectification map."""
