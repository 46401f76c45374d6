"""dvs_msgs definitions carried as text, so bags can be read and written without ROS installed.

ROS 1 bags embed their definitions (MVSEC's do); ROS 2 bags from older rosbag2 versions do not,
and rosbags ships no dvs_msgs, so both typestores are built here from the .msg text. The ROS 1
text is rpg_dvs_ros' (md5 ``5e8beee5a6c107e504c2e78903c224b8`` for EventArray, as in MVSEC's
bags); the ROS 2 text is the ros-event-camera/dvs_msgs port (interfaces/dvs_msgs/msg/).
"""

from __future__ import annotations

from functools import cache

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

EVENT_ARRAY = "dvs_msgs/msg/EventArray"
EVENT = "dvs_msgs/msg/Event"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
IMAGE = "sensor_msgs/msg/Image"

ROS1_EVENT_MSG = """\
# A DVS event
uint16 x
uint16 y
time ts
bool polarity
"""

ROS1_EVENT_ARRAY_MSG = """\
# This message contains an array of events
# (0, 0) is at top-left corner of image
#

Header header

uint32 height         # image height
uint32 width          # image width

# an array of events
Event[] events
"""

ROS2_EVENT_MSG = """\
# A single event from a DVS (ROS 2 port of uzh-rpg/rpg_dvs_ros dvs_msgs).
uint16 x
uint16 y
builtin_interfaces/Time ts
bool polarity
"""

ROS2_EVENT_ARRAY_MSG = """\
# A batch of DVS events. (0, 0) is the top-left pixel.
std_msgs/Header header
uint32 height
uint32 width
Event[] events
"""


def _dvs_types(event_msg: str, array_msg: str) -> dict:
    types: dict = {}
    types.update(get_types_from_msg(event_msg, EVENT))
    types.update(get_types_from_msg(array_msg, EVENT_ARRAY))
    return types


@cache
def ros1_typestore() -> Typestore:
    """ROS 1 Noetic types plus dvs_msgs (for writing ROS 1 bags; do not mutate)."""
    store = get_typestore(Stores.ROS1_NOETIC)
    store.register(_dvs_types(ROS1_EVENT_MSG, ROS1_EVENT_ARRAY_MSG))
    return store


@cache
def ros2_typestore() -> Typestore:
    """ROS 2 Kilted types plus dvs_msgs (for writing ROS 2 bags and reading old ones)."""
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(_dvs_types(ROS2_EVENT_MSG, ROS2_EVENT_ARRAY_MSG))
    return store
