"""Errors of the data subpackage: every message names the file, topic, key or value at fault."""

from stereospike_ros.errors import StereoSpikeError


class DataError(StereoSpikeError, ValueError):
    """Base class: a recording, split or cache that cannot be used as given."""


class MissingInputError(DataError, FileNotFoundError):
    """A file, HDF5 key or bag topic that the reader needs is not there."""


class FormatError(DataError):
    """An input that is there but malformed (wrong shape, dtype, encoding, resolution)."""


class SplitError(DataError, KeyError):
    """An unknown split name or a split definition that does not fit its sequences."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CacheError(DataError):
    """A training cache that is incomplete, stale or of another layout."""


class SimulationError(DataError):
    """A simulator configuration that cannot be simulated (bad value, camera inside a wall)."""
