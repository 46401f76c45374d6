"""stereospike_ros.model."""
