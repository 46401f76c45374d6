"""The layering rule, enforced on every import of every module.

Layers, lowest first; a module may import its own layer and the layers below it, never one
above, and the imports between modules form no cycle::

    base (errors, atomic) <- events <- data <- sim <- model <- training <- ros <- bench <- cli

Nothing imports ``cli`` or ``bench`` except the command dispatcher above them, and only ``ros``
and ``bench`` (which measures rclpy) import ROS. Every import counts: module level, inside
functions, ``importlib.import_module("...")`` and the dotted module names the command tables
hold as strings, so a lazy import cannot hide an arrow that points the wrong way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "stereospike_ros"

#: Layer of each top-level module or subpackage, lowest first.
LAYERS: list[tuple[str, ...]] = [
    ("", "errors", "atomic"),
    ("events",),
    ("data",),
    ("sim",),
    ("model",),
    ("training",),
    ("ros",),
    ("bench",),
    ("cli",),
    ("__main__",),
]
#: Top-level distributions that only the layers named here may import.
ROS_MODULES = {
    "rclpy",
    "rosidl_runtime_py",
    "rosidl_parser",
    "launch",
    "launch_ros",
    "ament_index_python",
    "dvs_msgs",
    "event_camera_msgs",
    "sensor_msgs",
    "std_msgs",
    "builtin_interfaces",
    "diagnostic_msgs",
    "lifecycle_msgs",
    "rcl_interfaces",
}
ROS_LAYERS = {"ros", "bench"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(module: str) -> int:
    top = _top(module)
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module}: no layer for '{top}' (add it to LAYERS and the docs)")


def _resolve(name: str) -> str:
    """The module ``name`` lives in (``pkg.mod.func`` -> ``pkg.mod``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    """Every (imported name, line) in ``path``: module level and nested, lazy and by string."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                found.append((full if full in MODULES else source, node.lineno))
        elif isinstance(node, ast.Constant) and node.value in MODULES:
            # importlib.import_module("stereospike_ros.x") and command tables of module names
            found.append((node.value, node.lineno))
    return found


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    edges: dict[str, set[str]] = {module: set() for module in MODULES}
    problems = []
    for module, path in MODULES.items():
        layer = _layer(module)
        for name, line in _imports(module, path):
            where = f"{path.relative_to(ROOT)}:{line}"
            top = name.split(".")[0]
            if top in ROS_MODULES and _top(module) not in ROS_LAYERS:
                problems.append(f"{where}: {module} imports {name}; only ros and bench import ROS")
            if top != PACKAGE:
                continue
            target = _resolve(name)
            if target == module:
                continue
            edges[module].add(target)
            if _layer(target) > layer:
                problems.append(
                    f"{where}: {module} ({LAYERS[layer][-1] or 'base'}) imports {target} "
                    f"({LAYERS[_layer(target)][-1]}), a higher layer"
                )
    return edges, list(dict.fromkeys(problems))


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def test_every_import_follows_the_layers():
    _, problems = _graph()
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    edges, _ = _graph()
    cycles = _cycles(edges)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_walker_sees_lazy_string_and_relative_imports(tmp_path):
    """The checks above can fail: a lazy upward import, a string and a cycle are all seen."""
    source = (
        "import importlib\n"
        "def f():\n"
        "    from stereospike_ros.cli import main\n"
        "    importlib.import_module('stereospike_ros.bench')\n"
        "    from . import histogram\n"
    )
    path = tmp_path / "mod.py"
    path.write_text(source)
    names = {name for name, _ in _imports("stereospike_ros.events.mod", path)}
    assert "stereospike_ros.cli" in names or "stereospike_ros.cli.main" in names
    if "stereospike_ros.bench" in MODULES:
        assert "stereospike_ros.bench" in names
    assert "stereospike_ros.events.histogram" in names
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_has_a_layer(module):
    _layer(module)
