"""The StereoSpike network family (torch, spikingjelly): build by name, train, measure, save.

No ROS import. ``build_model(name, **options)`` returns a stateless ``nn.Module`` mapping
``(B, C, H, W)`` spike counts to ``(B, 1, H, W)`` depth in metres.
"""

from stereospike_ros.model.checkpoint import checkpoint_metadata, load_checkpoint, save_checkpoint
from stereospike_ros.model.errors import CheckpointError, ConfigError, ModelError, OnnxError
from stereospike_ros.model.inference import Inference, compile_for_inference
from stereospike_ros.model.loss import stereospike_loss
from stereospike_ros.model.metrics import (
    MetricAccumulator,
    dense_macs,
    firing_rates,
    frame_metrics,
    synaptic_operations,
)
from stereospike_ros.model.network import (
    MODELS,
    ModelConfig,
    ModelOutput,
    StereoSpike,
    build_model,
    count_parameters,
    model_config,
)

__all__ = [
    "MODELS",
    "CheckpointError",
    "ConfigError",
    "Inference",
    "MetricAccumulator",
    "ModelConfig",
    "ModelError",
    "ModelOutput",
    "OnnxError",
    "StereoSpike",
    "build_model",
    "checkpoint_metadata",
    "compile_for_inference",
    "count_parameters",
    "dense_macs",
    "firing_rates",
    "frame_metrics",
    "load_checkpoint",
    "model_config",
    "save_checkpoint",
    "stereospike_loss",
    "synaptic_operations",
]
