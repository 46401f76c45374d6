"""Recordings: MVSEC HDF5 and ROS 1/2 bag readers and writers, frames, splits, training cache.

No ROS import: bags go through rosbags. ``CachedFrames`` and the cache builders import torch,
so they load on first use.
"""

from stereospike_ros.data.bags import BagSequence, BagTopics, write_ros1_bag, write_ros2_bag
from stereospike_ros.data.errors import (
    CacheError,
    DataError,
    FormatError,
    MissingInputError,
    SplitError,
)
from stereospike_ros.data.frames import (
    Frame,
    FrameOptions,
    FrameStats,
    fill_small_holes,
    iter_frames,
)
from stereospike_ros.data.mvsec_hdf5 import MvsecHdf5Sequence, write_mvsec_hdf5
from stereospike_ros.data.open import open_sequence
from stereospike_ros.data.recording import CameraCalibration, StereoRecording
from stereospike_ros.data.sequence import DepthFrame, StereoSequence
from stereospike_ros.data.split_frames import SplitFrames
from stereospike_ros.data.splits import Split, SplitPart, load_split

_LAZY = {"CachedFrames", "CacheOptions", "build_cache", "build_split_cache", "cache_split"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from stereospike_ros.data import cache

        return getattr(cache, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BagSequence",
    "BagTopics",
    "CacheError",
    "CacheOptions",
    "CachedFrames",
    "CameraCalibration",
    "DataError",
    "DepthFrame",
    "FormatError",
    "Frame",
    "FrameOptions",
    "FrameStats",
    "MissingInputError",
    "MvsecHdf5Sequence",
    "Split",
    "SplitError",
    "SplitFrames",
    "SplitPart",
    "StereoRecording",
    "StereoSequence",
    "build_cache",
    "build_split_cache",
    "cache_split",
    "fill_small_holes",
    "iter_frames",
    "load_split",
    "open_sequence",
    "write_mvsec_hdf5",
    "write_ros1_bag",
    "write_ros2_bag",
]
