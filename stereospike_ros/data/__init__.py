"""stereospike_ros.data."""
