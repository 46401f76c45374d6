"""Launch files, parameters file and rviz config, checked without launch/launch_ros/rviz2.

Those packages are not installable with the PyPI ROS wheels, so the files are checked by
reading them: their Python AST, the YAML, and setup.py. What a running graph can confirm (the
node really declares every YAML parameter, really publishes the rviz topics) is checked again
against a live node in test_ros_nodes.py.
"""

from __future__ import annotations

import ast
import glob
from pathlib import Path

import pytest
import yaml

from stereospike_ros.ros.parameters import (
    DEPTH_NODE_PARAMS,
    EVALUATOR_PARAMS,
    PLAYER_PARAMS,
)

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
NODE_PARAMS = {
    "depth_node": {p.name: p for p in DEPTH_NODE_PARAMS},
    "event_player": {p.name: p for p in PLAYER_PARAMS},
    "depth_evaluator": {p.name: p for p in EVALUATOR_PARAMS},
}
ROS_BUILTIN_PARAMS = {"use_sim_time"}


def _setup_value(name: str) -> ast.expr:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            return node.value
        if isinstance(node, ast.keyword) and node.arg == name:
            return node.value
    raise AssertionError(f"setup.py has no {name}")


def _console_scripts() -> dict[str, str]:
    scripts = ast.literal_eval(_setup_value("CONSOLE_SCRIPTS"))
    return dict((s.strip() for s in script.split("=")) for script in scripts)


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    def called(node: ast.Call) -> str | None:
        func = node.func
        return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)

    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and called(n) == name]


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _literal_strings(tree: ast.AST) -> set[str]:
    return {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


@pytest.fixture(params=LAUNCH_FILES, ids=lambda p: p.name)
def launch_file(request) -> tuple[Path, ast.Module]:
    path = request.param
    return path, ast.parse(path.read_text(), filename=str(path))


def test_both_launch_files_exist_and_define_generate_launch_description():
    assert {p.name for p in LAUNCH_FILES} >= {"depth.launch.py", "replay.launch.py"}
    for path in LAUNCH_FILES:
        tree = ast.parse(path.read_text())
        names = {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
        assert "generate_launch_description" in names, path


def test_every_executable_of_this_package_is_a_console_script(launch_file):
    path, tree = launch_file
    scripts = _console_scripts()
    nodes = _calls(tree, "Node")
    assert nodes, f"{path.name} starts no Node"
    for call in nodes:
        package = _kw(call, "package")
        executable = _kw(call, "executable")
        assert isinstance(executable, ast.Constant), f"{path.name}: executable is not literal"
        package_name = package.value if isinstance(package, ast.Constant) else "stereospike_ros"
        if package_name == "stereospike_ros":
            assert executable.value in scripts, f"{path.name}: {executable.value} not installed"
            module, func = scripts[executable.value].split(":")
            source = (ROOT / (module.replace(".", "/") + ".py")).read_text()
            assert f"def {func}(" in source


def test_launch_arguments_are_declared_before_use_and_all_used(launch_file):
    path, tree = launch_file
    declarations = _calls(tree, "DeclareLaunchArgument")
    declared = {c.args[0].value for c in declarations if c.args}
    used = set()
    for helper in ("LaunchConfiguration", "arg"):  # replay.launch.py reads values via arg()
        used |= {
            c.args[0].value
            for c in _calls(tree, helper)
            if c.args and isinstance(c.args[0], ast.Constant)
        }
    for node in tree.body:  # depth.launch.py: launch argument -> parameter overrides
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "OVERRIDES":
            used |= set(ast.literal_eval(node.value))
    assert used <= declared, f"{path.name}: undeclared {sorted(used - declared)}"
    assert declared <= used, f"{path.name}: declared but unused {sorted(declared - used)}"


def test_depth_launch_offers_the_documented_arguments():
    tree = ast.parse((ROOT / "launch" / "depth.launch.py").read_text())
    declared = {c.args[0].value for c in _calls(tree, "DeclareLaunchArgument")}
    for argument in (
        "weights",
        "device",
        "namespace",
        "left_events_topic",
        "right_events_topic",
        "event_type",
        "use_sim_time",
        "rviz",
        "params_file",
    ):
        assert argument in declared


def test_parameters_set_in_launch_files_are_declared_by_the_nodes(launch_file):
    path, tree = launch_file
    for call in _calls(tree, "Node"):
        executable = _kw(call, "executable").value
        if executable not in NODE_PARAMS:
            continue
        params = _kw(call, "parameters")
        for element in getattr(params, "elts", []):
            if isinstance(element, ast.Dict):
                keys = {k.value for k in element.keys if isinstance(k, ast.Constant)}
                unknown = keys - set(NODE_PARAMS[executable]) - ROS_BUILTIN_PARAMS
                assert not unknown, f"{path.name}: {executable} does not declare {unknown}"
    # depth.launch.py maps launch arguments to node parameters through OVERRIDES
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "OVERRIDES":
            for parameter in ast.literal_eval(node.value).values():
                assert parameter in NODE_PARAMS["depth_node"], parameter


def test_config_files_named_by_launch_files_exist_and_are_installed(launch_file):
    path, tree = launch_file
    data_files = _setup_value("data_files")
    installed = {
        (ROOT / match).relative_to(ROOT)
        for call in _calls(data_files, "glob")
        for match in glob.glob(str(ROOT / call.args[0].value))
    }
    named = 0
    for call in _calls(tree, "join"):
        parts = [a.value for a in call.args if isinstance(a, ast.Constant)]
        if parts and parts[0] in ("config", "launch"):
            relative = Path(*parts)
            named += 1
            assert (ROOT / relative).is_file(), f"{path.name} names missing {relative}"
            assert relative in installed, f"{relative} is not installed by setup.py data_files"
    assert named, f"{path.name} names no installed file"


def test_depth_yaml_sets_every_node_parameter_with_its_declared_type():
    doc = yaml.safe_load((ROOT / "config" / "depth.yaml").read_text())
    assert list(doc) == ["/**"], "parameters apply to the node whatever its name/namespace"
    values = doc["/**"]["ros__parameters"]
    declared = NODE_PARAMS["depth_node"]
    assert set(values) == set(declared), (
        f"in YAML only: {sorted(set(values) - set(declared))}; "
        f"declared only: {sorted(set(declared) - set(values))}"
    )
    for name, value in values.items():
        param = declared[name]
        # rclpy refuses an int for a double parameter, so the YAML must spell 50.0, not 50.
        assert type(value) is type(param.default), f"{name}: {value!r} vs {param.default!r}"
        if param.low is not None:
            assert param.low <= value <= param.high, name
        assert value == param.default, f"{name}: YAML default differs from the declared one"


def _published_topics(module: str) -> set[str]:
    tree = ast.parse((ROOT / "stereospike_ros" / "ros" / f"{module}.py").read_text())
    return {
        c.args[1].value
        for c in _calls(tree, "create_publisher")
        if len(c.args) > 1 and isinstance(c.args[1], ast.Constant)
    }


def test_every_rviz_topic_is_published_by_the_depth_node():
    doc = yaml.safe_load((ROOT / "config" / "stereospike.rviz").read_text())
    displays = doc["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"] for d in displays if "Topic" in d}
    published = {t.replace("~", "/depth_node") for t in _published_topics("depth_node")}
    assert topics, "the rviz config shows no topic"
    assert topics <= published, f"not published: {sorted(topics - published)}"
    assert {"/depth_node/depth", "/depth_node/depth_color", "/depth_node/events_image"} <= topics
    assert "/depth_node/points" in topics
    classes = {d["Class"] for d in displays}
    assert {"rviz_default_plugins/Image", "rviz_default_plugins/PointCloud2"} <= classes


def test_replay_launch_scores_the_depth_node_output_against_the_player_ground_truth():
    tree = ast.parse((ROOT / "launch" / "replay.launch.py").read_text())
    executables = {_kw(c, "executable").value for c in _calls(tree, "Node")}
    assert {"event_player", "depth_evaluator"} <= executables
    strings = _literal_strings(tree)
    assert "depth.launch.py" in strings
    gt = NODE_PARAMS["event_player"]["depth_topic"].default
    assert gt == NODE_PARAMS["depth_evaluator"]["ground_truth_topic"].default
    assert NODE_PARAMS["depth_evaluator"]["depth_topic"].default == "/depth_node/depth"
