"""docs/nodes.md carries every node parameter exactly as the nodes declare it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("param_docs", ROOT / "tools" / "param_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nodes_doc_has_a_table_per_node_and_is_current() -> None:
    tool = _tool()
    text = (ROOT / "docs" / "nodes.md").read_text()
    for node in tool.TABLES:
        assert f"<!-- parameters:{node}:begin -->" in text, node
    assert text == tool.render(text), "docs/nodes.md is stale: run python tools/param_docs.py"


def test_every_declared_parameter_is_in_the_doc() -> None:
    from stereospike_ros.ros import parameters

    text = (ROOT / "docs" / "nodes.md").read_text()
    for attr in _tool().TABLES.values():
        for param in getattr(parameters, attr):
            assert f"| `{param.name}` |" in text, param.name


def test_a_changed_description_makes_the_doc_stale() -> None:
    tool = _tool()
    text = (ROOT / "docs" / "nodes.md").read_text()
    assert tool.render(text.replace("| description |", "| meaning |", 1)) != text.replace(
        "| description |", "| meaning |", 1
    )
