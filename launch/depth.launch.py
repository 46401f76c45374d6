"""Depth from a live stereo event camera pair: ``ros2 launch stereospike_ros depth.launch.py``.

Parameters come from ``params_file`` (default: the installed config/depth.yaml); the launch
arguments below override single values only when given, so editing the YAML keeps working.

    ros2 launch stereospike_ros depth.launch.py device:=cuda rviz:=true
    ros2 launch stereospike_ros depth.launch.py event_type:=event_camera_msgs/EventPacket \
        left_events_topic:=/event_cam_0/events right_events_topic:=/event_cam_1/events
    ros2 launch stereospike_ros depth.launch.py namespace:=stereo lifecycle:=true autostart:=false

Topic names are relative: with ``namespace:=stereo`` the node reads stereo/davis/left/events
and publishes /stereo/depth_node/depth (absolute names given as arguments stay as they are);
rviz2 gets a copy of its configuration with the topics resolved in that namespace.
``lifecycle:=true`` starts the managed node (configure, activate, ... through its lifecycle
services); ``autostart:=true`` (default) takes it to active by itself.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchContext, LaunchDescription
from stereospike_ros.ros.launch_helpers import namespaced_rviz_config, require_package

PACKAGE = "stereospike_ros"

# Launch argument -> depth_node parameter; an empty value keeps the params file's value.
OVERRIDES = {
    "weights": "weights",
    "device": "device",
    "inference_path": "inference_path",
    "event_type": "event_type",
    "left_events_topic": "left_events_topic",
    "right_events_topic": "right_events_topic",
    "trigger_topic": "trigger_topic",
    "rectify": "rectify",
    "replay_watermarks": "replay_watermarks",
    "reliable": "reliable",
}
# Boolean parameters among them: the launch argument's 'true'/'false' becomes a bool.
BOOLEANS = ("rectify", "replay_watermarks", "reliable")


def _nodes(context: LaunchContext) -> list:
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    # Checked before any node starts, so a failed launch leaves nothing running.
    rviz = arg("rviz").lower() == "true"
    if rviz:
        require_package("rviz2", "rviz:=true", "apt install ros-$ROS_DISTRO-rviz2, or rviz:=false")
    overrides: dict[str, object] = {}
    for argument, parameter in OVERRIDES.items():
        value = arg(argument)
        if value:
            overrides[parameter] = value.lower() == "true" if parameter in BOOLEANS else value
    use_sim_time = arg("use_sim_time").lower() == "true"
    overrides["use_sim_time"] = use_sim_time
    namespace = arg("namespace")
    common = {
        "name": "depth_node",
        "namespace": namespace,
        "parameters": [arg("params_file"), overrides],
        "output": "screen",
        "emulate_tty": True,
    }
    if arg("lifecycle").lower() == "true":
        overrides["autostart"] = arg("autostart").lower() == "true"
        nodes = [Node(package=PACKAGE, executable="depth_lifecycle_node", **common)]
    else:
        nodes = [Node(package=PACKAGE, executable="depth_node", **common)]
    if rviz:
        nodes.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                namespace=namespace,
                arguments=["-d", str(namespaced_rviz_config(arg("rviz_config"), namespace))],
                parameters=[{"use_sim_time": use_sim_time}],
            )
        )
    return nodes


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    arguments = [
        DeclareLaunchArgument(
            "params_file",
            default_value=os.path.join(share, "config", "depth.yaml"),
            description="depth_node parameters (YAML)",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument("weights", default_value="", description="checkpoint file"),
        DeclareLaunchArgument("device", default_value="", description="cpu, cuda, cuda:N"),
        DeclareLaunchArgument(
            "inference_path",
            default_value="",
            description="exact (default), reference, exact-dense, exact-nchw, "
            "compile, bf16, fp16, onnxruntime, openvino",
        ),
        DeclareLaunchArgument(
            "event_type",
            default_value="",
            description="dvs_msgs/EventArray or event_camera_msgs/EventPacket",
        ),
        DeclareLaunchArgument("left_events_topic", default_value="", description="left events"),
        DeclareLaunchArgument("right_events_topic", default_value="", description="right events"),
        DeclareLaunchArgument(
            "trigger_topic", default_value="", description="stamps that end windows"
        ),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false", description="follow /clock (replays)"
        ),
        DeclareLaunchArgument(
            "lifecycle", default_value="false", description="start the managed (lifecycle) node"
        ),
        DeclareLaunchArgument(
            "autostart",
            default_value="true",
            description="lifecycle node: configure and activate at start-up",
        ),
        DeclareLaunchArgument(
            "rviz", default_value="false", description="start rviz2 (must be installed)"
        ),
        DeclareLaunchArgument("rectify", default_value="", description="rectify events"),
        DeclareLaunchArgument(
            "replay_watermarks", default_value="", description="behind event_player: true"
        ),
        DeclareLaunchArgument("reliable", default_value="", description="RELIABLE events"),
        DeclareLaunchArgument(
            "rviz_config",
            default_value=os.path.join(share, "config", "stereospike.rviz"),
            description="rviz2 configuration (relative topics follow the namespace)",
        ),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes)])
