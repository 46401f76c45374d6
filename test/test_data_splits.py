"""Splits: MVSEC indoor_flying 1-3 with the authors' index offset, custom and automatic splits."""

from __future__ import annotations

import json
import logging

import pytest

from stereospike_ros.data.errors import SplitError
from stereospike_ros.data.splits import MVSEC_INDEX_OFFSET, load_split

MVSEC_COUNTS = {"indoor_flying1": 1300, "indoor_flying2": 1700, "indoor_flying3": 1900}


@pytest.mark.parametrize(
    ("name", "held_out", "n_val", "n_test", "dropped", "n_train"),
    [
        ("split1", "indoor_flying1", 200, 860, 1, (1581 - 159) + (1816 - 124)),
        ("split2", "indoor_flying2", 200, 1100, 0, (1261 - 79) + (1816 - 124)),
        ("split3", "indoor_flying3", 200, 1342, 0, (1261 - 79) + (1581 - 119)),
    ],
)
def test_mvsec_split_counts(name, held_out, n_val, n_test, dropped, n_train):
    split = load_split(name, MVSEC_COUNTS)
    assert (len(split.val), len(split.test), len(split.train)) == (n_val, n_test, n_train)
    assert split.val.sequences == split.test.sequences == [held_out]
    assert held_out not in split.train.sequences
    assert "indoor_flying4" not in split.sequences
    assert split.dropped == {"val": 0, "test": dropped}
    val, test = split.val.items[0][1], split.test.items[0][1]
    assert not set(val) & set(test)


def test_split1_index_lists_count_after_the_first_two_frames_and_drop_1060(caplog):
    with caplog.at_level(logging.WARNING):
        split = load_split("split1")
    assert MVSEC_INDEX_OFFSET == 2
    val, test = split.val.items[0][1], split.test.items[0][1]
    # slice [139, 1201): list index i is frame 139 + 2 + i
    assert val[0] == 139 + 2 + 1 and val[-1] == 139 + 2 + 1059 == 1200  # last frame of the slice
    assert test[0] == 139 + 2 + 0 and test[-1] == 139 + 2 + 1058  # 1060 would be frame 1201
    assert max(test) < 1201 and min(val + test) >= 139 + 2
    assert "1060" in caplog.text and "dropped" in caplog.text


def test_training_parts_use_the_whole_slices():
    split = load_split("split2")
    assert split.train.items[0] == ("indoor_flying1", tuple(range(79, 1261)))
    assert split.train.items[1] == ("indoor_flying3", tuple(range(124, 1816)))


def test_ranges_past_a_sequence_end_are_reported():
    with pytest.raises(SplitError, match=r"indoor_flying2.*runs past its 1000 depth frames"):
        load_split("split1", {**MVSEC_COUNTS, "indoor_flying2": 1000})


def test_unknown_split_names_list_the_known_ones():
    with pytest.raises(SplitError, match="split1, split2, split3, auto:TRAIN") as info:
        load_split("split4")
    assert "split4" in str(info.value)
    with pytest.raises(SplitError, match="part"):
        load_split("split1").part("training")


def test_auto_split_cuts_each_sequence_into_contiguous_blocks():
    split = load_split("auto:0.8", {"a": 100, "b": 10})
    assert split.train.items == (("a", tuple(range(80))), ("b", tuple(range(8))))
    assert split.val.items == (("a", tuple(range(80, 90))), ("b", (8,)))
    assert split.test.items == (("a", tuple(range(90, 100))), ("b", (9,)))
    three = load_split("auto:0.5:0.5", {"a": 10})
    assert (len(three.train), len(three.val), len(three.test)) == (5, 5, 0)
    with pytest.raises(SplitError, match="auto:TRAIN"):
        load_split("auto:x", {"a": 10})
    with pytest.raises(SplitError, match="sequence -> frame count"):
        load_split("auto:0.8")


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_custom_split_files(tmp_path, suffix):
    definition = {
        "name": "mine",
        "offset": 1,
        "sequences": {
            "seq_a": {"range": [10, 20], "part": "train"},
            "seq_b": {"fractions": {"train": 0.5, "val": 0.25, "test": 0.25}},
            "seq_c": {"range": [0, 10], "val": [0, 2, 9], "test": "rest"},
        },
    }
    path = tmp_path / f"mine{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(definition))
    else:
        import yaml

        path.write_text(yaml.safe_dump(definition))
    split = load_split(path, {"seq_a": 30, "seq_b": 8, "seq_c": 10})
    assert split.name == "mine"
    assert split.part("train").items == (("seq_a", tuple(range(10, 20))), ("seq_b", (0, 1, 2, 3)))
    assert split.val.items == (("seq_b", (4, 5)), ("seq_c", (1, 3)))  # 9 + 1 is past the end
    assert split.test.items == (("seq_b", (6, 7)), ("seq_c", (0, 2, 4, 5, 6, 7, 8, 9)))
    assert split.dropped["val"] == 1


@pytest.mark.parametrize(
    ("sequences", "match"),
    [
        ({"s": {"part": "holdout"}}, "part 'holdout'"),
        ({"s": {"part": "train", "fractions": {"train": 1}}}, "exactly one of"),
        ({"s": {"fractions": {"train": 0.5}}}, "sum to 1"),
        ({"s": {"range": [5, 2], "part": "train"}}, "not a valid slice"),
        ({"s": {"rang": [0, 2]}}, "unknown keys"),
        ({"s": {"val": "rest", "test": "rest"}}, "'rest' for two parts"),
    ],
)
def test_malformed_split_files_name_the_problem(tmp_path, sequences, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"sequences": sequences}))
    with pytest.raises(SplitError, match=match):
        load_split(path, {"s": 10})


def test_missing_and_unparsable_split_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.json"):
        load_split(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SplitError, match="does not parse"):
        load_split(bad)
    open_ended = tmp_path / "open.json"
    open_ended.write_text(json.dumps({"sequences": {"s": {"part": "train"}}}))
    with pytest.raises(SplitError, match="frame count"):
        load_split(open_ended)
