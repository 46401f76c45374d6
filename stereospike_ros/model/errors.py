"""Errors of the model subpackage."""

from stereospike_ros.errors import StereoSpikeError


class ModelError(StereoSpikeError, ValueError):
    """Base class: a model that cannot be built, or input it cannot take."""


class ConfigError(ModelError):
    """An unknown model name or option, or an option value out of range."""


class CheckpointError(ModelError):
    """A checkpoint file that is corrupt, truncated, or does not match the expected network."""


class OnnxError(ModelError):
    """An ONNX export that fails or disagrees with the network, an ONNX file that is unreadable
    or not this network's, or a runtime (ONNX Runtime, OpenVINO) that is missing or refuses."""
