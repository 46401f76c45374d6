"""Launch files, parameters file and rviz config, checked without launch/launch_ros/rviz2.

Those packages are not installable with the PyPI ROS wheels, so the files are checked by
reading them: their Python AST, the YAML, and setup.py. What a running graph can confirm (the
node really declares every YAML parameter, really publishes the rviz topics) is checked again
against a live node in test_ros_nodes.py.
"""

from __future__ import annotations

import ast
import functools
import glob
import sys
from pathlib import Path

import pytest
import yaml

from stereospike_ros.ros.launch_helpers import (
    namespaced_rviz_config,
    require_package,
    resolve_topic,
    rviz_topics,
)
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
        for name in ("create_publisher", "publisher")
        for c in _calls(tree, name)
        if len(c.args) > 1 and isinstance(c.args[1], ast.Constant)
    }


def _rviz_topics() -> list[str]:
    return rviz_topics((ROOT / "config" / "stereospike.rviz").read_text())


def test_every_rviz_topic_is_published_by_the_depth_node():
    doc = yaml.safe_load((ROOT / "config" / "stereospike.rviz").read_text())
    topics = set(_rviz_topics())
    published = {t.replace("~", "depth_node") for t in _published_topics("depth_node")}
    assert topics, "the rviz config shows no topic"
    assert topics <= published, f"not published: {sorted(topics - published)}"
    assert {"depth_node/depth", "depth_node/depth_color", "depth_node/events_image"} <= topics
    assert "depth_node/points" in topics
    classes = {d["Class"] for d in doc["Visualization Manager"]["Displays"]}
    assert {"rviz_default_plugins/Image", "rviz_default_plugins/PointCloud2"} <= classes


# -- namespaces --------------------------------------------------------------------------------

#: Topics that are global by convention and stay absolute in any namespace.
GLOBAL_TOPICS = {"/diagnostics", "/clock"}


def _topic_defaults() -> dict[str, str]:
    """Every topic-valued parameter default of the three nodes, keyed node.parameter."""
    return {
        f"{node}.{name}": param.default
        for node, params in NODE_PARAMS.items()
        for name, param in params.items()
        if name.endswith("_topic") and param.default
    }


def _launch_topic_strings() -> dict[str, str]:
    """String constants of the launch files that are topic names."""
    found = {}
    for path in LAUNCH_FILES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "").endswith(
                "_TOPIC"
            ):
                found[f"{path.name}:{node.targets[0].id}"] = ast.literal_eval(node.value)
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(key, ast.Constant)
                        and str(key.value).endswith("_topic")
                        and isinstance(value, ast.Constant)
                    ):
                        found[f"{path.name}:{key.value}"] = value.value
    return found


def test_every_topic_the_package_names_is_relative_so_a_namespace_moves_it():
    yaml_values = yaml.safe_load((ROOT / "config" / "depth.yaml").read_text())["/**"][
        "ros__parameters"
    ]
    named = {
        **_topic_defaults(),
        **{f"depth.yaml:{k}": v for k, v in yaml_values.items() if k.endswith("_topic") and v},
        **_launch_topic_strings(),
        **{f"rviz:{t}": t for t in _rviz_topics()},
    }
    assert len(named) >= 15, named
    absolute = {k: v for k, v in named.items() if v.startswith("/")}
    assert not absolute, f"absolute topic names ignore the namespace: {absolute}"
    for where, topic in named.items():
        assert resolve_topic(topic, "stereo") == f"/stereo/{topic}", where
        assert resolve_topic(topic, "") == f"/{topic}", where
    for module in ("depth_node", "depth_lifecycle_node", "event_player", "depth_evaluator"):
        published = {t for t in _published_topics(module) if t.startswith("/")}
        assert published <= GLOBAL_TOPICS, (module, published)


def test_replay_topics_meet_in_the_namespace():
    # player -> depth node (events, trigger) -> evaluator (prediction, ground truth) resolve
    # to the same names in one namespace, so namespace:=NS moves the whole replay.
    player = {p.name: p.default for p in PLAYER_PARAMS}
    node = {p.name: p.default for p in DEPTH_NODE_PARAMS}
    evaluator = {p.name: p.default for p in EVALUATOR_PARAMS}
    replay = _launch_topic_strings()
    for ns in ("", "stereo", "/robot1/stereo"):
        r = functools.partial(lambda topic, ns: resolve_topic(topic, ns), ns=ns)
        for side in ("left", "right"):
            assert r(player[f"{side}_events_topic"]) == r(node[f"{side}_events_topic"])
            assert r(player[f"{side}_camera_info_topic"]) == r(node[f"{side}_camera_info_topic"])
        trigger = replay["replay.launch.py:DEPTH_TOPIC"]
        assert r(trigger) == r(player["depth_topic"]) == r(evaluator["ground_truth_topic"])
        # the evaluator runs beside depth_node: its relative depth_topic is the node's ~/depth
        assert r(evaluator["depth_topic"]) == r("depth_node/depth")
        assert r(replay["replay.launch.py:depth_topic"]) == r("depth_node/depth")


def test_launch_files_put_every_node_in_the_namespace_argument():
    for path in LAUNCH_FILES:
        tree = ast.parse(path.read_text())
        text = path.read_text()
        for call in _calls(tree, "Node"):
            namespace = _kw(call, "namespace")
            if namespace is None:  # depth.launch.py passes it through **common
                assert '"namespace": namespace' in text, f"{path.name}: a Node has no namespace"
            else:
                assert "namespace" in ast.unparse(namespace), path.name


@pytest.mark.parametrize("namespace", ["", "stereo", "/robot1/stereo/"])
def test_generated_rviz_config_shows_the_namespaced_depth_node(tmp_path, namespace):
    generated = namespaced_rviz_config(ROOT / "config" / "stereospike.rviz", namespace, tmp_path)
    topics = rviz_topics(generated.read_text())
    prefix = "/" + namespace.strip("/") if namespace.strip("/") else ""
    published = {t.replace("~", f"{prefix}/depth_node") for t in _published_topics("depth_node")}
    assert topics == [f"{prefix}/{t}" for t in _rviz_topics()]
    assert set(topics) <= published
    # the rest of the view is kept (displays, fixed frame)
    doc = yaml.safe_load(generated.read_text())
    original = yaml.safe_load((ROOT / "config" / "stereospike.rviz").read_text())
    assert (
        doc["Visualization Manager"]["Global Options"]
        == (original["Visualization Manager"]["Global Options"])
    )


def test_rviz_is_optional_and_checked_before_any_node_starts(monkeypatch):
    from catkin_pkg.package import parse_package

    monkeypatch.setenv("AMENT_PREFIX_PATH", sys.prefix)  # the venv's ament index, no rviz2

    pkg = parse_package(str(ROOT / "package.xml"))
    assert "rviz2" not in {d.name for d in pkg.exec_depends}
    # this machine has no rviz2: the check names it and how to get it
    with pytest.raises(RuntimeError, match=r"rviz:=true but rviz2 is not installed \(apt install"):
        require_package("rviz2", "rviz:=true", "apt install ros-$ROS_DISTRO-rviz2, or rviz:=false")
    require_package("rclpy", "always", "")  # an installed package passes
    # depth.launch.py: the check comes before the first Node is created
    tree = ast.parse((ROOT / "launch" / "depth.launch.py").read_text())
    check = min(c.lineno for c in _calls(tree, "require_package"))
    assert check < min(c.lineno for c in _calls(tree, "Node"))
    # replay.launch.py: its first action after the arguments is the same check
    replay = (ROOT / "launch" / "replay.launch.py").read_text()
    assert replay.index("OpaqueFunction(function=_check_rviz)") < replay.index("            depth,")


def test_lifecycle_launch_argument_starts_the_managed_node():
    tree = ast.parse((ROOT / "launch" / "depth.launch.py").read_text())
    executables = {_kw(c, "executable").value for c in _calls(tree, "Node")}
    assert {"depth_node", "depth_lifecycle_node"} <= executables
    assert "depth_lifecycle_node" in _console_scripts()
    declared = {c.args[0].value for c in _calls(tree, "DeclareLaunchArgument")}
    assert {"lifecycle", "autostart"} <= declared
    source = (ROOT / "stereospike_ros" / "ros" / "depth_lifecycle_node.py").read_text()
    assert 'declare_parameter(\n            "autostart"' in source


def test_replay_launch_scores_the_depth_node_output_against_the_player_ground_truth():
    tree = ast.parse((ROOT / "launch" / "replay.launch.py").read_text())
    executables = {_kw(c, "executable").value for c in _calls(tree, "Node")}
    assert {"event_player", "depth_evaluator"} <= executables
    strings = _literal_strings(tree)
    assert "depth.launch.py" in strings
    gt = NODE_PARAMS["event_player"]["depth_topic"].default
    assert gt == NODE_PARAMS["depth_evaluator"]["ground_truth_topic"].default
    assert NODE_PARAMS["depth_evaluator"]["depth_topic"].default == "depth_node/depth"
