"""Errors of the ROS 2 nodes and conversions."""

from stereospike_ros.errors import StereoSpikeError


class RosError(StereoSpikeError):
    """Base class of errors raised by ``stereospike_ros.ros``."""


class ConversionError(RosError, ValueError):
    """A message (or array) that cannot be converted: wrong encoding, size, step or shape."""


class StartupError(RosError):
    """A node cannot start: bad weights, parameters or calibration; the message says which."""


class PlayerError(RosError):
    """A recording that the event player cannot replay."""
