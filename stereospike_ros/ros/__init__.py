"""stereospike_ros.ros."""
