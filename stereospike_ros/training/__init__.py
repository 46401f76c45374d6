"""Offline training and evaluation of the StereoSpike networks.

Modules load on first use (they import torch, OpenCV, matplotlib), so the command line's
``--help`` and the commands that need none of them stay fast.
"""

from stereospike_ros.training.errors import TrainingError

_LAZY = {
    "EvalDataOptions": "stereospike_ros.training.evaluate",
    "EvalResult": "stereospike_ros.training.evaluate",
    "ModelPredictor": "stereospike_ros.training.evaluate",
    "evaluate": "stereospike_ros.training.evaluate",
    "evaluate_many": "stereospike_ros.training.evaluate",
    "open_eval_data": "stereospike_ros.training.evaluate",
    "results_table": "stereospike_ros.training.evaluate",
    "ScoreConfig": "stereospike_ros.training.score",
    "SgbmBaseline": "stereospike_ros.training.baselines",
    "load_baseline": "stereospike_ros.training.baselines",
    "TrainConfig": "stereospike_ros.training.train",
    "export_default": "stereospike_ros.training.export",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EvalDataOptions",
    "EvalResult",
    "ModelPredictor",
    "ScoreConfig",
    "SgbmBaseline",
    "TrainConfig",
    "TrainingError",
    "evaluate",
    "evaluate_many",
    "export_default",
    "load_baseline",
    "open_eval_data",
    "results_table",
]
