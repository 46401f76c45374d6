"""The stereo event-camera simulator: scenes, textures, camera motion, the event model, and the
randomized scene families, all making :class:`~stereospike_ros.data.StereoRecording` objects
that the data writers store like any recording.

It sits above ``data`` (it makes recordings, and the readers never need it) and below ``model``.
``SimConfig`` + ``simulate`` make one recording; ``random_config`` draws one of a family.
"""

from stereospike_ros.sim.families import FAMILIES, random_config
from stereospike_ros.sim.simulator import MVSEC_FOCAL_PX, SimConfig, simulate

__all__ = ["FAMILIES", "MVSEC_FOCAL_PX", "SimConfig", "random_config", "simulate"]
