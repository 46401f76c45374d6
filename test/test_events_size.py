"""``parse_size``: the one parser of ``HxW`` sizes (CLI options and node parameters)."""

from __future__ import annotations

import argparse

import pytest

from stereospike_ros.errors import StereoSpikeError, UsageError
from stereospike_ros.events.types import SizeError, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [("260x346", (260, 346)), ("1x1", (1, 1)), ("480X640", (480, 640)), (" 20 x 30 ", (20, 30))],
)
def test_good_sizes_are_height_then_width(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["", "260", "260x", "x346", "260x346x2", "346by260", "0x346", "260x0", "-1x5", "2.5x3"]
)
def test_anything_else_is_one_error_naming_the_value_and_the_parameter(text):
    with pytest.raises(SizeError) as err:
        parse_size(text, "warm_up_size")
    assert str(err.value).startswith(f"warm_up_size {text!r} is not HxW")
    # a UsageError for the CLIs (one line, exit status 2), a ValueError for other callers
    assert isinstance(err.value, UsageError) and isinstance(err.value, ValueError)
    assert isinstance(err.value, StereoSpikeError)


def test_argparse_shows_the_message_as_the_options_error(capsys):
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--size", type=parse_size)
    assert parser.parse_args(["--size", "12x34"]).size == (12, 34)
    with pytest.raises(SystemExit):
        parser.parse_args(["--size", "12by34"])
    err = capsys.readouterr().err
    assert "tool: error: argument --size: '12by34' is not HxW (two positive integers" in err
