"""Errors of offline training and evaluation, each naming the file, option or value at fault."""

from stereospike_ros.errors import StereoSpikeError


class TrainingError(StereoSpikeError):
    """A training or evaluation run cannot proceed (bad data, split, checkpoint or run folder)."""
