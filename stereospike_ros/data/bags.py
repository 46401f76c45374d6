"""ROS 1 and ROS 2 (sqlite3, MCAP) bags with MVSEC's topics, through rosbags.

Event messages never go through one Python object per event: their serialized bytes are decoded
in bulk (ROS 1: ``events.decode_ros1``; ROS 2 CDR: ``events.decode_event_array``, also
``event_camera_msgs/EventPacket``), and written from bulk encoders. CameraInfo and depth Images
are few and go through rosbags' typestore. dvs_msgs types come from the bag's own definitions
when it carries them, else from the text in ``data.msgdefs``.

Writers split each camera's events into messages of ``message_period_ns`` of sensor time
(aligned to multiples of it, like a DAVIS driver's streaming rate), stamped with the last event
of the message, and write camera_info every ``camera_info_period_ns`` and one
``depth_image_rect`` (32FC1, metres) per ground-truth frame. The bag time of every message is
its header stamp.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import shutil
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag1 import Writer as Ros1Writer
from rosbags.rosbag2 import StoragePlugin
from rosbags.rosbag2 import Writer as Ros2Writer
from rosbags.typesys.store import Typestore

from stereospike_ros.data.errors import FormatError, MissingInputError
from stereospike_ros.data.msgdefs import (
    CAMERA_INFO,
    EVENT_ARRAY,
    IMAGE,
    ros1_typestore,
    ros2_typestore,
)
from stereospike_ros.data.recording import CameraCalibration, StereoRecording
from stereospike_ros.data.sequence import (
    DEFAULT_CHUNK,
    SIDES,
    CalibrationSource,
    DepthFrame,
    PathLike,
    Side,
    build_rectifier,
    check_side,
    clip_events,
    rechunk,
    sequence_name,
)
from stereospike_ros.events.decode_ros1 import decode_event_array_ros1, encode_event_array_ros1
from stereospike_ros.events.types import EventBatch

log = logging.getLogger(__name__)

EVENT_PACKET = "event_camera_msgs/msg/EventPacket"
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
_NS = 1_000_000_000
#: Bag time may be used to seek only when it agrees with sensor time to within this.
_CLOCK_AGREEMENT_NS = _NS
_SEEK_MARGIN_NS = 2 * _NS


@dataclass(frozen=True)
class BagTopics:
    """Topic names; the defaults are MVSEC's."""

    left_events: str = "/davis/left/events"
    right_events: str = "/davis/right/events"
    left_camera_info: str = "/davis/left/camera_info"
    right_camera_info: str = "/davis/right/camera_info"
    depth: str = "/davis/left/depth_image_rect"

    def events(self, side: Side) -> str:
        return self.left_events if side == "left" else self.right_events

    def camera_info(self, side: Side) -> str:
        return self.left_camera_info if side == "left" else self.right_camera_info


MVSEC_TOPICS = BagTopics()


# -- writing ---------------------------------------------------------------------------------


def _frame_id(calib: CameraCalibration, side: str) -> str:
    return calib.frame_id or f"davis_{side}"


def _event_messages(events: np.ndarray, period_ns: int) -> Iterator[tuple[int, np.ndarray]]:
    """(stamp, events) per message: events grouped by ``t // period_ns``, stamp = last event."""
    if not len(events):
        return
    bins = events["t"] // period_ns
    cuts = np.flatnonzero(np.diff(bins)) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [len(events)]))
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        yield int(events["t"][b - 1]), events[a:b]


def _stamp(store: Typestore, stamp_ns: int, frame_id: str, ros1: bool) -> object:
    time = store.types["builtin_interfaces/msg/Time"](sec=stamp_ns // _NS, nanosec=stamp_ns % _NS)
    header = store.types["std_msgs/msg/Header"]
    if ros1:
        return header(seq=0, stamp=time, frame_id=frame_id)
    return header(stamp=time, frame_id=frame_id)


def _camera_info_msg(
    store: Typestore, calib: CameraCalibration, frame_id: str, stamp_ns: int, ros1: bool
) -> object:
    roi = store.types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    arrays = {
        "D": np.asarray(calib.D, dtype=np.float64).reshape(-1),
        "K": np.asarray(calib.K, dtype=np.float64).reshape(9),
        "R": np.asarray(calib.R, dtype=np.float64).reshape(9),
        "P": np.asarray(calib.P, dtype=np.float64).reshape(12),
    }
    if not ros1:
        arrays = {k.lower(): v for k, v in arrays.items()}
    return store.types[CAMERA_INFO](
        header=_stamp(store, stamp_ns, frame_id, ros1),
        height=calib.height,
        width=calib.width,
        distortion_model=calib.distortion_model,
        binning_x=0,
        binning_y=0,
        roi=roi,
        **arrays,
    )


def _depth_msg(
    store: Typestore, depth: np.ndarray, frame_id: str, stamp_ns: int, ros1: bool
) -> object:
    h, w = depth.shape
    data = np.ascontiguousarray(depth, dtype="<f4").view(np.uint8).reshape(-1)
    return store.types[IMAGE](
        header=_stamp(store, stamp_ns, frame_id, ros1),
        height=h,
        width=w,
        encoding="32FC1",
        is_bigendian=0,
        step=4 * w,
        data=data,
    )


def _bag_messages(
    recording: StereoRecording,
    topics: BagTopics,
    store: Typestore,
    ros1: bool,
    message_period_ns: int,
    camera_info_period_ns: int,
) -> Iterator[tuple[int, str, bytes]]:
    """All messages of the bag, (time, topic, serialized bytes), merged in time order."""
    if message_period_ns <= 0 or camera_info_period_ns <= 0:
        raise ValueError(
            f"message_period_ns ({message_period_ns}) and camera_info_period_ns "
            f"({camera_info_period_ns}) must be positive"
        )
    serialize: Callable[[object, str], bytes] = (
        store.serialize_ros1 if ros1 else store.serialize_cdr  # type: ignore[assignment]
    )
    if ros1:
        encode = encode_event_array_ros1
    else:
        from stereospike_ros.events import encode_event_array as encode
    h, w = recording.height, recording.width
    times = [recording.depth_ts_ns[:1], recording.depth_ts_ns[-1:]]
    for side in SIDES:
        t = getattr(recording, f"{side}_events")["t"]
        times += [t[:1], t[-1:]]
    ends = np.concatenate(times).astype(np.int64)
    start, last = (int(ends.min()), int(ends.max())) if len(ends) else (0, 0)

    def events_stream(side: Side) -> Iterator[tuple[int, str, bytes]]:
        calib = getattr(recording, f"{side}_calibration")
        frame_id = _frame_id(calib, side)
        topic = topics.events(side)
        for stamp, chunk in _event_messages(
            getattr(recording, f"{side}_events"), message_period_ns
        ):
            yield stamp, topic, bytes(encode(chunk, h, w, stamp, frame_id))

    def info_stream(side: Side) -> Iterator[tuple[int, str, bytes]]:
        calib = getattr(recording, f"{side}_calibration")
        frame_id = _frame_id(calib, side)
        for stamp in range(start, last + 1, camera_info_period_ns):
            msg = _camera_info_msg(store, calib, frame_id, stamp, ros1)
            yield stamp, topics.camera_info(side), bytes(serialize(msg, CAMERA_INFO))

    def depth_stream() -> Iterator[tuple[int, str, bytes]]:
        frame_id = _frame_id(recording.left_calibration, "left")
        for depth, stamp in zip(recording.depth, recording.depth_ts_ns.tolist(), strict=True):
            msg = _depth_msg(store, depth, frame_id, int(stamp), ros1)
            yield int(stamp), topics.depth, bytes(serialize(msg, IMAGE))

    streams = [info_stream("left"), info_stream("right"), events_stream("left")]
    streams += [events_stream("right"), depth_stream()]
    yield from heapq.merge(*streams, key=lambda m: m[0])


def _msgtypes(topics: BagTopics) -> dict[str, str]:
    types = {topics.events(s): EVENT_ARRAY for s in SIDES}
    types.update({topics.camera_info(s): CAMERA_INFO for s in SIDES})
    types[topics.depth] = IMAGE
    return types


def _prepare_output(path: Path, overwrite: bool) -> None:
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_ros1_bag(
    recording: StereoRecording,
    path: PathLike,
    *,
    message_period_ns: int = 5_000_000,
    camera_info_period_ns: int = _NS,
    topics: BagTopics = MVSEC_TOPICS,
    overwrite: bool = False,
) -> None:
    """Write ``recording`` as a ROS 1 bag (dvs_msgs with rpg_dvs_ros' definitions and md5)."""
    path = Path(path)
    _prepare_output(path, overwrite)
    store = ros1_typestore()
    messages = _bag_messages(
        recording, topics, store, True, message_period_ns, camera_info_period_ns
    )
    _write_bag(path, lambda: Ros1Writer(path), store, topics, messages)


def write_ros2_bag(
    recording: StereoRecording,
    path: PathLike,
    storage: str = "sqlite3",
    *,
    message_period_ns: int = 5_000_000,
    camera_info_period_ns: int = _NS,
    topics: BagTopics = MVSEC_TOPICS,
    overwrite: bool = False,
) -> None:
    """Write ``recording`` as a ROS 2 bag folder (rosbag2 format 9, ``sqlite3`` or ``mcap``)."""
    if storage not in STORAGES:
        raise ValueError(f"unknown bag storage {storage!r}; choose one of {sorted(STORAGES)}")
    path = Path(path)
    _prepare_output(path, overwrite)
    store = ros2_typestore()
    messages = _bag_messages(
        recording, topics, store, False, message_period_ns, camera_info_period_ns
    )

    def open_writer() -> Ros2Writer:
        return Ros2Writer(path, version=9, storage_plugin=STORAGES[storage])

    _write_bag(path, open_writer, store, topics, messages)


def _write_bag(
    path: Path,
    open_writer: Callable[[], Ros1Writer | Ros2Writer],
    store: Typestore,
    topics: BagTopics,
    messages: Iterator[tuple[int, str, bytes]],
) -> None:
    """One connection per topic, every message written; no partial bag left on any failure."""
    try:
        with open_writer() as writer:
            conns = {
                topic: writer.add_connection(topic, msgtype, typestore=store)
                for topic, msgtype in _msgtypes(topics).items()
            }
            for stamp, topic, data in messages:
                writer.write(conns[topic], stamp, data)
    except BaseException:
        _remove(path)
        raise


# -- reading ---------------------------------------------------------------------------------


def _header_stamp(raw: bytes | memoryview, ros1: bool) -> int:
    """The header stamp of a serialized message that starts with std_msgs/Header."""
    if ros1:  # uint32 seq, uint32 sec, uint32 nsec
        sec, nsec = struct.unpack_from("<II", raw, 4)
    else:  # 4-byte encapsulation, int32 sec, uint32 nanosec
        order = "<" if bytes(raw[1:2]) == b"\x01" else ">"
        sec, nsec = struct.unpack_from(order + "iI", raw, 4)
    return sec * _NS + nsec


class BagSequence:
    """A ROS 1 bag (or MVSEC's data + gt bag pair) or a ROS 2 bag, read as a stereo sequence."""

    def __init__(
        self,
        paths: PathLike | Iterable[PathLike],
        calibration: CalibrationSource = None,
        *,
        topics: BagTopics = MVSEC_TOPICS,
        name: str | None = None,
    ) -> None:
        self.paths = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
        if not self.paths:
            raise MissingInputError("BagSequence: no bag path given")
        self.name = name or sequence_name(self.paths[0])
        self.topics = topics
        self._calibration_source = calibration
        self._rectifiers: dict[tuple[str, str], object] = {}
        self._stamps: np.ndarray | None = None
        self._seek_offset: dict[str, int | None] = {}
        self._reader = self._open_reader()
        try:
            self.ros1 = not self._reader.is2
            self._conns = {
                topic: [c for c in self._reader.connections if c.topic == topic]
                for topic in {c.topic for c in self._reader.connections}
            }
            self._check_topics()
            self._infos = {side: self._read_camera_info(side) for side in SIDES}
            self.height, self.width = self._geometry()
        except BaseException:
            self.close()
            raise

    @property
    def what(self) -> str:
        return " + ".join(str(p) for p in self.paths)

    def _open_reader(self) -> AnyReader:
        missing = [p for p in self.paths if not p.exists()]
        if missing:
            raise MissingInputError(f"bag {', '.join(map(str, missing))} does not exist")
        try:
            reader = AnyReader(self.paths, default_typestore=ros2_typestore())
            reader.open()
        except (AnyReaderError, OSError) as err:
            raise FormatError(f"cannot read bag {self.what}: {err}") from err
        return reader

    def _check_topics(self) -> None:
        available = ", ".join(f"{t} [{c[0].msgtype}]" for t, c in sorted(self._conns.items()))
        for side in SIDES:
            topic = self.topics.events(side)
            if topic not in self._conns:
                raise MissingInputError(
                    f"bag {self.what} has no topic {topic!r} (topics: {available or 'none'})"
                )
            msgtype = self._conns[topic][0].msgtype
            if msgtype not in (EVENT_ARRAY, EVENT_PACKET) or (self.ros1 and msgtype != EVENT_ARRAY):
                raise FormatError(
                    f"bag {self.what}: topic {topic!r} is {msgtype}, expected {EVENT_ARRAY}"
                    + ("" if self.ros1 else f" or {EVENT_PACKET}")
                )
        depth = self.topics.depth
        if depth in self._conns and self._conns[depth][0].msgtype != IMAGE:
            raise FormatError(
                f"bag {self.what}: topic {depth!r} is {self._conns[depth][0].msgtype}, "
                f"expected {IMAGE}"
            )
        if depth not in self._conns:
            log.warning("bag %s has no %s: no ground truth", self.what, depth)

    def _messages(
        self, reader: AnyReader | None = None, **selection: object
    ) -> Iterator[tuple[object, int, bytes]]:
        """``reader.messages(**selection)``, a damaged bag (a garbled chunk or record, a
        truncated file or database) raising FormatError naming the bag instead of the
        storage library's error, whatever its type."""
        try:
            yield from (reader or self._reader).messages(**selection)  # type: ignore[arg-type]
        except Exception as err:
            raise FormatError(f"cannot read bag {self.what}: it is damaged ({err})") from err

    def _deserialize(self, raw: bytes, msgtype: str) -> object:
        store = self._reader.typestore
        if msgtype not in store.fielddefs:  # bag without definitions for this type
            store = ros1_typestore() if self.ros1 else ros2_typestore()
        try:
            if self.ros1:
                return store.deserialize_ros1(raw, msgtype)
            return store.deserialize_cdr(raw, msgtype)
        except Exception as err:  # rosbags raises struct, index and unicode errors alike
            raise FormatError(
                f"bag {self.what}: a {msgtype} message does not decode ({err})"
            ) from err

    def _read_camera_info(self, side: Side) -> CameraCalibration | None:
        conns = self._conns.get(self.topics.camera_info(side))
        if not conns:
            return None
        for conn, _, raw in self._messages(connections=conns):
            msg = self._deserialize(raw, conn.msgtype)

            def get(name: str, msg: object = msg) -> np.ndarray:
                # ROS 1 CameraInfo spells the matrices K, D, R, P; ROS 2 k, d, r, p.
                value = getattr(msg, name) if hasattr(msg, name) else getattr(msg, name.lower())
                return np.asarray(value, dtype=np.float64)

            return CameraCalibration(
                int(msg.height),
                int(msg.width),
                get("K").reshape(3, 3),
                get("D").reshape(-1),
                get("R").reshape(3, 3),
                get("P").reshape(3, 4),
                str(msg.distortion_model),
                str(msg.header.frame_id),
            )
        return None

    def _first_batch(self, side: Side) -> EventBatch | None:
        conns = self._conns[self.topics.events(side)]
        for _, _, raw in self._messages(connections=conns):
            return self._decode(raw, conns[0].msgtype)
        return None

    def _geometry(self) -> tuple[int, int]:
        sizes: dict[str, tuple[int, int]] = {}
        for side in SIDES:
            info = self._infos[side]
            if info is not None and info.height and info.width:
                sizes[self.topics.camera_info(side)] = (info.height, info.width)
            batch = self._first_batch(side)
            if batch is not None and batch.height and batch.width:
                sizes[self.topics.events(side)] = (batch.height, batch.width)
        first_depth = next(self._depth_messages(), None)
        if first_depth is not None:
            img = self._deserialize(first_depth[2], IMAGE)
            sizes[self.topics.depth] = (int(img.height), int(img.width))
        if not sizes:
            raise MissingInputError(
                f"bag {self.what}: cannot tell the image size: no camera_info, events or depth"
            )
        if len(set(sizes.values())) > 1:
            listed = ", ".join(f"{t} {h}x{w}" for t, (h, w) in sizes.items())
            raise FormatError(f"bag {self.what}: mismatched resolutions: {listed}")
        return next(iter(sizes.values()))

    # -- events -----------------------------------------------------------------------------

    def _decoder(self, msgtype: str) -> Callable[[bytes], EventBatch]:
        """A bulk decoder for one topic's messages, fed in order (EVT3 carries state)."""
        if self.ros1:
            return decode_event_array_ros1
        from stereospike_ros import events

        if msgtype == EVENT_PACKET:
            return events.EventPacketDecoder().decode
        return events.decode_event_array

    def _decode(self, raw: bytes, msgtype: str) -> EventBatch:
        return self._decoder(msgtype)(raw)

    def _seek_start(self, side: Side, start_ns: int | None) -> int | None:
        """A bag time to start reading from, when bag time tracks sensor time; else None."""
        if start_ns is None:
            return None
        if side not in self._seek_offset:
            conns = self._conns[self.topics.events(side)]
            offset = None
            for _, bag_t, raw in self._messages(connections=conns):
                batch = self._decode(raw, conns[0].msgtype)
                if len(batch.events):
                    offset = bag_t - int(batch.events["t"][-1])
                    break
            if offset is not None and abs(offset) > _CLOCK_AGREEMENT_NS:
                offset = None
            self._seek_offset[side] = offset
        offset = self._seek_offset[side]
        return None if offset is None else start_ns + offset - _SEEK_MARGIN_NS

    def iter_events(
        self,
        side: Side,
        chunk_size: int = DEFAULT_CHUNK,
        start_ns: int | None = None,
        stop_ns: int | None = None,
    ) -> Iterator[np.ndarray]:
        """EVENT_DTYPE chunks of whole messages (about ``chunk_size`` events), bag order.

        Each call reads through its own bag reader, so left and right can be iterated side
        by side. When bag time tracks sensor time (within 1 s), reading seeks to ``start_ns``
        and stops 2 s of bag time after ``stop_ns``; otherwise it scans from the start.
        """
        side = check_side(side)
        seek = self._seek_start(side, start_ns)
        stop_bag = None
        if stop_ns is not None and self._seek_offset.get(side) is not None:
            stop_bag = stop_ns + self._seek_offset[side] + _SEEK_MARGIN_NS  # type: ignore[operator]

        def batches() -> Iterator[np.ndarray]:
            reader = self._open_reader()
            try:
                conns = [c for c in reader.connections if c.topic == self.topics.events(side)]
                decode = self._decoder(conns[0].msgtype)
                for _, _, raw in self._messages(
                    reader, connections=conns, start=seek, stop=stop_bag
                ):
                    yield clip_events(decode(raw).events, start_ns, stop_ns)
            finally:
                reader.close()

        yield from rechunk(batches(), chunk_size)

    # -- ground truth -----------------------------------------------------------------------

    def _depth_messages(self) -> Iterator[tuple[object, int, bytes]]:
        conns = self._conns.get(self.topics.depth)
        if conns:
            yield from self._messages(connections=conns)

    def depth_stamps(self) -> np.ndarray:
        """Header stamps of the depth images (read from the raw bytes, no image decoding)."""
        if self._stamps is None:
            stamps = [_header_stamp(raw, self.ros1) for _, _, raw in self._depth_messages()]
            self._stamps = np.array(stamps, dtype=np.int64)
        return self._stamps

    def depth_frames(self, indices: Iterable[int] | None = None) -> Iterator[DepthFrame]:
        wanted = None if indices is None else list(indices)
        n = len(self.depth_stamps())
        if wanted is not None:
            bad = [i for i in wanted if not 0 <= i < n]
            if bad:
                raise IndexError(f"bag {self.what}: depth frames {bad[:5]} out of range [0, {n})")
            if any(b <= a for a, b in itertools.pairwise(wanted)):
                raise ValueError("depth_frames: indices must be strictly increasing")
        pos = 0
        for i, (_, _, raw) in enumerate(self._depth_messages()):
            if wanted is not None:
                if pos >= len(wanted):
                    return
                if wanted[pos] != i:
                    continue
                pos += 1
            yield DepthFrame(i, _header_stamp(raw, self.ros1), self._depth_image(raw))

    def _depth_image(self, raw: bytes) -> np.ndarray:
        img = self._deserialize(raw, IMAGE)
        h, w, step = int(img.height), int(img.width), int(img.step)
        if img.encoding != "32FC1":
            raise FormatError(
                f"bag {self.what}: {self.topics.depth} has encoding {img.encoding!r}, expected "
                "'32FC1' (metres)"
            )
        if (h, w) != (self.height, self.width) or step < 4 * w or len(img.data) < h * step:
            raise FormatError(
                f"bag {self.what}: {self.topics.depth} image {h}x{w} step {step} with "
                f"{len(img.data)} bytes does not fit {self.height}x{self.width} float32"
            )
        dtype = ">f4" if img.is_bigendian else "<f4"
        rows = np.asarray(img.data[: h * step]).view(np.uint8).reshape(h, step)
        return rows[:, : 4 * w].copy().view(dtype).astype(np.float32)

    # -- calibration ------------------------------------------------------------------------

    def calibration(self, side: Side) -> CameraCalibration | None:
        source = self._calibration_source
        if isinstance(source, dict) and isinstance(source.get(side), CameraCalibration):
            return source[side]
        return self._infos[check_side(side)]

    def rectifier(self, side: Side, rounding: str = "nearest") -> object:
        side = check_side(side)
        if (side, rounding) not in self._rectifiers:
            self._rectifiers[side, rounding] = build_rectifier(
                self._calibration_source,
                side,
                self.height,
                self.width,
                self._infos[side],
                f"bag {self.what}",
                rounding,
            )
        return self._rectifiers[side, rounding]

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        reader = getattr(self, "_reader", None)
        if reader is not None and reader.stack is not None:
            reader.close()

    def __enter__(self) -> BagSequence:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "ROS 1" if self.ros1 else "ROS 2"
        return f"BagSequence({self.name!r}, {kind}, {self.height}x{self.width})"
