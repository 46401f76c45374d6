"""dvs_msgs is optional: without it the EventPacket path runs, and the dvs_msgs path stops at
start-up with one line naming how to get it (it is in no ROS 2 distribution)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from ros_support import ROOT, ros_env, tiny_checkpoint

pytest.importorskip("rclpy")

# Runs in a child process where importing dvs_msgs fails, as in a workspace without it.
SCRIPT = """
import sys
sys.modules["dvs_msgs"] = None  # import dvs_msgs -> ImportError
import rclpy
from rclpy.parameter import Parameter
from stereospike_ros.ros.depth_node import DepthNode, main

rclpy.init()
node = DepthNode(parameter_overrides=[
    Parameter("weights", value=sys.argv[1]),
    Parameter("event_type", value="event_camera_msgs/EventPacket"),
    Parameter("warm_up_size", value=""),
])
node.shutdown()
node.destroy_node()
rclpy.shutdown()
assert "dvs_msgs" not in [m for m in sys.modules if sys.modules[m] is not None]
print("EventPacket path ok without dvs_msgs")
sys.exit(main(["depth_node", "--ros-args", "-p", "weights:=" + sys.argv[1]]))
"""


def test_without_dvs_msgs_the_packet_path_runs_and_the_dvs_path_names_the_fix(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "tiny.safetensors")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(checkpoint)],
        cwd=ROOT,
        env=ros_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = result.stdout + result.stderr
    assert "EventPacket path ok without dvs_msgs" in out, out
    assert result.returncode == 1, out  # the default event_type is dvs_msgs/EventArray
    fatal = [line for line in out.splitlines() if "cannot start" in line]
    assert len(fatal) == 1, out
    assert "dvs_msgs/EventArray" in fatal[0] and "interfaces/dvs_msgs" in fatal[0], fatal
    assert "Traceback" not in out, out
