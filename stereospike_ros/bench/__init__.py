"""Benchmarks: scripts that print speed, memory and accuracy figures
(``python -m stereospike_ros benchmark <target>``).

Speed and memory targets are checked here rather than in timed unit tests: each target measures
its paths and a reference in the same run and prints ratios, since shared machines are noisy.
One module per target (``events``, ``data``, ``model``, ``node``, ``flood``, ``sim``,
``families``), each with ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``, plus
``cdr_reference`` (the rclpy decoder ``events`` compares against). This layer sits above every
library layer (it measures them, rclpy included); only the command line imports it.
"""
