"""Writes the parameter tables of docs/nodes.md from the nodes' declarations.

The tables sit between ``<!-- parameters:NODE:begin -->`` and ``<!-- parameters:NODE:end -->``
markers; everything else in the file is left alone. ``test/test_docs_params.py`` fails when
the file is not what this script would write, so a parameter cannot change without its docs.

    python tools/param_docs.py          rewrite docs/nodes.md
    python tools/param_docs.py --check  exit 1 if docs/nodes.md is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stereospike_ros.ros import parameters  # noqa: E402  (ROS-free module)

NODES_DOC = ROOT / "docs" / "nodes.md"

#: Marker name -> the node's parameter table.
TABLES = {
    "depth_node": "DEPTH_NODE_PARAMS",
    "event_player": "PLAYER_PARAMS",
    "depth_evaluator": "EVALUATOR_PARAMS",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _range(param: parameters.Param) -> str:
    if param.choices:
        return ", ".join(f"`{c}`" for c in param.choices)
    if param.low is None and param.high is None:
        return ""
    low = "" if param.low is None else f"{param.low:g}"
    high = "" if param.high is None else f"{param.high:g}"
    return f"{low} .. {high}"


def table(params: tuple[parameters.Param, ...]) -> str:
    """A Markdown table of ``params``: name, type, default, range, run-time change, meaning."""
    rows = [
        "| parameter | type | default | range | changeable at run time | description |",
        "|---|---|---|---|---|---|",
    ]
    for p in params:
        default = repr(p.default) if isinstance(p.default, str) else str(p.default)
        rows.append(
            f"| `{p.name}` | {p.type_name} | `{_cell(default)}` | {_cell(_range(p))} | "
            f"{'no' if p.read_only else 'yes'} | {_cell(p.description)} |"
        )
    return "\n".join(rows)


def render(text: str) -> str:
    """``text`` with every marked table replaced by the current one."""
    for node, attr in TABLES.items():
        params = getattr(parameters, attr, None)
        if params is None:
            continue
        begin, end = f"<!-- parameters:{node}:begin -->", f"<!-- parameters:{node}:end -->"
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        block = f"{begin}\n{table(params)}\n{end}"
        text = pattern.sub(lambda _m, block=block: block, text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = parser.parse_args(argv)
    current = NODES_DOC.read_text()
    wanted = render(current)
    if args.check:
        if current != wanted:
            print(f"{NODES_DOC} is out of date: run python tools/param_docs.py", file=sys.stderr)
            return 1
        return 0
    NODES_DOC.write_text(wanted)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
