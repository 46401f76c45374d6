"""Malformed inputs fail with errors that name the file, key, topic or value at fault."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from data_helpers import tiny_recording

from stereospike_ros.data import (
    BagTopics,
    FormatError,
    MissingInputError,
    open_sequence,
    write_mvsec_hdf5,
    write_ros1_bag,
    write_ros2_bag,
)
from stereospike_ros.data.frames import iter_frames
from stereospike_ros.data.mvsec_hdf5 import MvsecHdf5Sequence


@pytest.fixture(scope="module")
def rec():
    return tiny_recording(seed=41, frames=3)


@pytest.fixture
def pair(rec, tmp_path):
    write_mvsec_hdf5(rec, tmp_path / "r_data.hdf5", tmp_path / "r_gt.hdf5")
    return tmp_path / "r_data.hdf5", tmp_path / "r_gt.hdf5"


def test_missing_hdf5_datasets_are_named_with_their_file(pair):
    data, gt = pair
    with h5py.File(data, "a") as f:
        del f["davis/right/events"]
    with pytest.raises(MissingInputError, match=r"r_data\.hdf5: no dataset 'davis/right/events'"):
        open_sequence(data)
    with pytest.raises(MissingInputError, match=r"MVSEC data file .*missing\.hdf5 does not exist"):
        MvsecHdf5Sequence(data.with_name("missing.hdf5"), gt)


def test_missing_ground_truth_timestamps_are_named(pair):
    data, gt = pair
    with h5py.File(gt, "a") as f:
        del f["davis/left/depth_image_rect_ts"]
    with pytest.raises(MissingInputError, match=r"r_gt\.hdf5: no dataset .*rect_ts.*"):
        MvsecHdf5Sequence(data, gt)


def test_wrong_event_array_shape_and_bad_coordinates(pair):
    data, gt = pair
    with h5py.File(data, "a") as f:
        rows = f["davis/left/events"][()]
        del f["davis/left/events"]
        f["davis/left/events"] = rows[:, :3]
    with pytest.raises(FormatError, match=r"'davis/left/events' is \(\d+, 3\), expected N x 4"):
        MvsecHdf5Sequence(data, gt)
    with h5py.File(data, "a") as f:
        del f["davis/left/events"]
        rows[5, 1] = np.nan
        f["davis/left/events"] = rows
    with MvsecHdf5Sequence(data, gt) as seq, pytest.raises(FormatError, match="row 5"):
        list(seq.iter_events("left"))


def test_mismatched_resolutions_name_both_sources(pair, rec):
    data, gt = pair
    with h5py.File(gt, "a") as f:
        del f["davis/left/depth_image_rect"]
        f["davis/left/depth_image_rect"] = np.zeros((3, rec.height + 1, rec.width), np.float32)
    with pytest.raises(FormatError, match=r"mismatched resolutions.*21x28.*20x28"):
        MvsecHdf5Sequence(data, gt)


def test_missing_files_and_prefixes_say_what_was_tried(tmp_path):
    with pytest.raises(MissingInputError, match=r"no recording at .*nope.*nope_data\.hdf5"):
        open_sequence(tmp_path / "nope")
    with pytest.raises(MissingInputError, match=r"do not exist: .*a\.bag"):
        open_sequence([tmp_path / "a.bag", tmp_path / "b.bag"])
    (tmp_path / "x_gt.hdf5").write_bytes(b"")
    with pytest.raises(MissingInputError, match=r"events file .*x_data\.hdf5 is missing"):
        open_sequence(tmp_path / "x_gt.hdf5")
    (tmp_path / "junk_data.hdf5").write_bytes(b"not hdf5 at all")
    with pytest.raises(FormatError, match=r"junk_data\.hdf5 is not a readable HDF5 file"):
        open_sequence(tmp_path / "junk_data.hdf5")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FormatError, match="cannot tell what recording"):
        open_sequence(tmp_path / "notes.txt")


def test_bags_without_the_event_topics_list_what_they_have(rec, tmp_path):
    topics = BagTopics(left_events="/cam0/events", right_events="/cam1/events")
    write_ros1_bag(rec, tmp_path / "other.bag", topics=topics)
    with pytest.raises(MissingInputError, match=r"no topic '/davis/left/events'.*/cam0/events"):
        open_sequence(tmp_path / "other.bag")
    from stereospike_ros.data.bags import BagSequence

    with BagSequence(tmp_path / "other.bag", topics=topics) as seq:  # custom names work
        assert seq.height == rec.height


def test_an_event_topic_of_the_wrong_type_is_named(rec, tmp_path):
    topics = BagTopics(depth="/davis/left/events", left_events="/x", right_events="/y")
    write_ros2_bag(rec, tmp_path / "b", topics=topics)
    wrong = BagTopics(right_events="/y")
    from stereospike_ros.data.bags import BagSequence

    with pytest.raises(FormatError, match=r"'/davis/left/events' is sensor_msgs/msg/Image"):
        BagSequence(tmp_path / "b", topics=wrong)


def test_bag_resolution_mismatch_between_camera_info_and_depth(rec, tmp_path):
    import copy

    bad = copy.deepcopy(rec)
    bad.right_calibration.height = rec.height + 2
    write_ros2_bag(bad, tmp_path / "b", "mcap")
    with pytest.raises(FormatError, match=r"mismatched resolutions: .*camera_info 22x28"):
        open_sequence(tmp_path / "b")


def test_a_calibration_folder_without_maps_is_named(pair, tmp_path):
    (tmp_path / "calib").mkdir()
    (tmp_path / "calib" / "indoor_flying_left_x_map.txt").write_text("0 1\n0 1\n")
    calib = open_sequence(pair[0], calibration=tmp_path / "calib")
    with calib as seq, pytest.raises(MissingInputError, match=r"has no matching y map"):
        list(iter_frames(seq))
    nowhere = open_sequence(pair[0], calibration=tmp_path / "nowhere")
    with nowhere as seq, pytest.raises(MissingInputError, match=r"calibration folder .*nowhere"):
        seq.rectifier("left")
