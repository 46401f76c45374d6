"""stereospike_ros.ros: the ROS 2 nodes (the only part of the package that imports rclpy).

A node answers Ctrl-C from its first line. Importing a node module takes seconds (torch,
rclpy, numba), and Python runs the package's ``__init__`` first, whether the node starts as a
console script or as ``python -m``: so this is where a SIGINT that the node's parent left
ignored (a non-interactive shell's ``cmd &``) is given back its default, KeyboardInterrupt.
Without it such a node slept through a Ctrl-C sent while it imported; once running, the node
installs its own handlers (``common.stop_on_signals``) whatever the parent did.
"""

import signal
import threading

if (
    threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
):
    signal.signal(signal.SIGINT, signal.default_int_handler)
