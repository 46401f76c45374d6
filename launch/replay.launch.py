"""Replay a recording through the depth node and score it live against its ground truth.

    ros2 launch stereospike_ros replay.launch.py recording:=/data/indoor_flying1_data.hdf5
    ros2 launch stereospike_ros replay.launch.py recording:=/data/indoor_flying1.bag \
        rate:=0.5 output:=/tmp/indoor_flying1_mde.json rviz:=true

Starts event_player (events, camera_info, ground-truth depth, /clock), depth_node (through
depth.launch.py) and depth_evaluator. By default the node's windows end at the ground-truth
stamps (``trigger:=true``), the MVSEC protocol, so every depth frame is scored on the 50 ms
of events before it. The player publishes the recording's rectification (as ``evaluate``
applies it; ``calibration:=FOLDER`` of MVSEC maps for bags) and the node applies it; with
``lockstep:=true`` (default) the player waits for each answer, so every frame is scored and
the MDE equals ``evaluate``'s on any machine (``lockstep:=false``: real time, skips counted).
With ``namespace:=NS`` all three run in NS and talk over NS/davis/... and NS/depth_node/depth
(every topic name here is relative).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

from launch import LaunchContext, LaunchDescription
from stereospike_ros.ros.launch_helpers import require_package

PACKAGE = "stereospike_ros"
DEPTH_TOPIC = "davis/left/depth_image_rect"  # relative: follows the namespace


def _check_rviz(context: LaunchContext) -> list:
    # Before any node starts (depth.launch.py checks again), so nothing is left running.
    if LaunchConfiguration("rviz").perform(context).lower() == "true":
        require_package("rviz2", "rviz:=true", "apt install ros-$ROS_DISTRO-rviz2, or rviz:=false")
    return []


def _player_and_evaluator(context: LaunchContext) -> list:
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    use_sim_time = arg("use_sim_time").lower() == "true"
    player = Node(
        package=PACKAGE,
        executable="event_player",
        name="event_player",
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            {
                "recording": arg("recording"),
                "event_type": arg("event_type"),
                "rate": float(arg("rate")),
                "message_ms": float(arg("message_ms")),
                "loop": arg("loop").lower() == "true",
                "depth_topic": DEPTH_TOPIC,
                "wait_for_subscribers": 1,
                # the evaluator, and the node when its windows end at ground-truth stamps; the
                # evaluator reads ground truth only once it hears the node, so the player's wait
                # covers node -> evaluator too and no answer is lost to discovery
                "wait_for_depth_subscribers": 2 if arg("trigger").lower() == "true" else 1,
                "calibration": arg("calibration"),
                "lockstep": arg("lockstep").lower() == "true",
                "answer_topic": "depth_node/depth",
            }
        ],
        output="screen",
        emulate_tty=True,
    )
    evaluator = Node(
        package=PACKAGE,
        executable="depth_evaluator",
        name="depth_evaluator",
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            {
                "depth_topic": "depth_node/depth",
                "ground_truth_topic": DEPTH_TOPIC,
                "output": arg("output"),
                "wait_for_depth_publisher": True,
                "use_sim_time": use_sim_time,
            }
        ],
        output="screen",
        emulate_tty=True,
    )
    return [player, evaluator]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    arguments = [
        DeclareLaunchArgument(
            "recording", description="MVSEC HDF5 data file, ROS 1 .bag or ROS 2 bag folder"
        ),
        DeclareLaunchArgument(
            "event_type",
            default_value="dvs_msgs/EventArray",
            description="dvs_msgs/EventArray or event_camera_msgs/EventPacket",
        ),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed"),
        DeclareLaunchArgument(
            "message_ms", default_value="1.0", description="sensor time per event message"
        ),
        DeclareLaunchArgument("loop", default_value="false", description="replay forever"),
        DeclareLaunchArgument(
            "lockstep", default_value="true", description="wait for each answer (lossless)"
        ),
        DeclareLaunchArgument(
            "calibration", default_value="", description="folder of MVSEC rectification maps"
        ),
        DeclareLaunchArgument(
            "trigger", default_value="true", description="end windows at ground-truth stamps"
        ),
        DeclareLaunchArgument("output", default_value="", description="evaluator JSON summary"),
        DeclareLaunchArgument("weights", default_value="", description="checkpoint file"),
        DeclareLaunchArgument("device", default_value="", description="cpu, cuda, cuda:N"),
        DeclareLaunchArgument(
            "namespace", default_value="", description="namespace of all three nodes"
        ),
        DeclareLaunchArgument(
            "params_file",
            default_value=os.path.join(share, "config", "depth.yaml"),
            description="depth_node parameters (YAML)",
        ),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock"),
        DeclareLaunchArgument("rviz", default_value="false", description="start rviz2"),
    ]
    depth = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "depth.launch.py")),
        launch_arguments={
            "params_file": LaunchConfiguration("params_file"),
            "namespace": LaunchConfiguration("namespace"),
            "weights": LaunchConfiguration("weights"),
            "device": LaunchConfiguration("device"),
            "event_type": LaunchConfiguration("event_type"),
            "use_sim_time": LaunchConfiguration("use_sim_time"),
            "rviz": LaunchConfiguration("rviz"),
            "rectify": "true",
            "replay_watermarks": "true",
            "reliable": "true",
            "trigger_topic": PythonExpression(
                ["'", DEPTH_TOPIC, "' if '", LaunchConfiguration("trigger"), "' == 'true' else ''"]
            ),
        }.items(),
    )
    return LaunchDescription(
        [
            *arguments,
            OpaqueFunction(function=_check_rviz),
            depth,
            OpaqueFunction(function=_player_and_evaluator),
        ]
    )
