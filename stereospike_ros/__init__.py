"""Dense depth from stereo event cameras with the StereoSpike spiking neural network.

The core (events, model, data, training) imports no ROS; only ``stereospike_ros.ros`` does.
"""

__version__ = "0.1.0"
