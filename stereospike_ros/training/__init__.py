"""stereospike_ros.training."""
