"""Depth from a live stereo event camera pair: ``ros2 launch stereospike_ros depth.launch.py``.

Parameters come from ``params_file`` (default: the installed config/depth.yaml); the launch
arguments below override single values only when given, so editing the YAML keeps working.

    ros2 launch stereospike_ros depth.launch.py device:=cuda rviz:=true
    ros2 launch stereospike_ros depth.launch.py event_type:=event_camera_msgs/EventPacket \
        left_events_topic:=/event_cam_0/events right_events_topic:=/event_cam_1/events
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchContext, LaunchDescription

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


def _depth_node(context: LaunchContext) -> list:
    overrides = {}
    for argument, parameter in OVERRIDES.items():
        value = LaunchConfiguration(argument).perform(context)
        if value:
            overrides[parameter] = value.lower() == "true" if parameter in BOOLEANS else value
    use_sim_time = LaunchConfiguration("use_sim_time").perform(context).lower() == "true"
    overrides["use_sim_time"] = use_sim_time
    return [
        Node(
            package=PACKAGE,
            executable="depth_node",
            name="depth_node",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"), overrides],
            output="screen",
            emulate_tty=True,
        )
    ]


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
            description="exact (default), reference, exact-dense, exact-direct, exact-nchw, "
            "compile, bf16, fp16",
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
        DeclareLaunchArgument("rectify", default_value="", description="rectify events"),
        DeclareLaunchArgument(
            "replay_watermarks", default_value="", description="behind event_player: true"
        ),
        DeclareLaunchArgument("reliable", default_value="", description="RELIABLE events"),
        DeclareLaunchArgument("rviz", default_value="false", description="start rviz2"),
        DeclareLaunchArgument(
            "rviz_config",
            default_value=os.path.join(share, "config", "stereospike.rviz"),
            description="rviz2 configuration",
        ),
    ]
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", LaunchConfiguration("rviz_config")],
        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription([*arguments, OpaqueFunction(function=_depth_node), rviz])
