"""``python -m stereospike_ros X --help`` and the console script ``X --help`` (what ``ros2 run
stereospike_ros X`` starts) print the same options and text; only the program name differs.

The console scripts installed in a venv may point at another checkout, so the scripts' functions
are taken from setup.py and called here with ``sys.argv`` as a script would see it, and one
pair also runs as real processes.
"""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stereospike_ros.cli import main

ROOT = Path(__file__).resolve().parents[1]
PROG = "python -m stereospike_ros"


def _cli_scripts() -> dict[str, str]:
    """Console script name -> function name, for the scripts that run ``stereospike_ros.cli``."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "CONSOLE_SCRIPTS":
            scripts = [
                (s.split("=")[0].strip(), s.split("=")[1].strip())
                for s in ast.literal_eval(node.value)
            ]
            return {
                name: target.split(":")[1]
                for name, target in scripts
                if target.split(":")[0] == "stereospike_ros.cli"
            }
    raise AssertionError("setup.py defines no CONSOLE_SCRIPTS")


SCRIPTS = _cli_scripts()
COMMAND_SCRIPTS = sorted(name for name, func in SCRIPTS.items() if func != "main")


def _help(capsys, call) -> str:
    with pytest.raises(SystemExit) as exit_:
        call()
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: "), out
    return out


def _words(text: str) -> list[str]:
    """Help text without its line wrapping (argparse wraps usage by the program name's length)."""
    return text.split()


def test_every_command_but_doctor_and_node_has_a_console_script():
    from stereospike_ros.cli import COMMANDS

    assert set(COMMAND_SCRIPTS) == set(COMMANDS) - {"doctor", "node"}
    assert SCRIPTS["stereospike"] == "main"


@pytest.mark.parametrize("name", COMMAND_SCRIPTS)
def test_console_script_help_is_the_python_m_help_named_for_the_script(name, capsys, monkeypatch):
    module_help = _help(capsys, lambda: main([name, "--help"]))
    script = getattr(importlib.import_module("stereospike_ros.cli"), SCRIPTS[name])
    monkeypatch.setattr(sys, "argv", [f"/opt/ros/lib/stereospike_ros/{name}", "--help"])
    script_help = _help(capsys, script)
    assert module_help.startswith(f"usage: {PROG} {name} ")
    assert script_help.startswith(f"usage: {name} ")
    assert PROG not in script_help
    assert _words(script_help) == _words(module_help.replace(f"{PROG} {name}", name))


def test_nested_targets_and_the_stereospike_script_name_themselves(capsys, monkeypatch):
    module_help = _help(capsys, lambda: main(["benchmark", "model", "--help"]))
    monkeypatch.setattr(sys, "argv", ["/usr/bin/benchmark", "model", "--help"])
    script_help = _help(capsys, importlib.import_module("stereospike_ros.cli").benchmark_main)
    assert script_help.startswith("usage: benchmark model ")
    assert _words(script_help) == _words(module_help.replace(f"{PROG} benchmark", "benchmark"))
    monkeypatch.setattr(sys, "argv", ["/usr/bin/stereospike", "--help"])
    top = _help(capsys, main)
    assert top.startswith("usage: stereospike ") and "train" in top and PROG not in top


def _refused(capsys, call) -> str:
    with pytest.raises(SystemExit) as exit_:
        call()
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_a_bad_option_is_the_same_error_under_either_name(capsys, monkeypatch):
    module_err = _refused(capsys, lambda: main(["train", "--crop", "12by7"]))
    monkeypatch.setattr(sys, "argv", ["/usr/bin/train", "--crop", "12by7"])
    script_err = _refused(capsys, importlib.import_module("stereospike_ros.cli").train_main)
    assert module_err.startswith(f"usage: {PROG} train ") and script_err.startswith("usage: train ")
    assert "train: error: argument --crop: '12by7' is not HxW" in script_err
    assert _words(script_err) == _words(module_err.replace(f"{PROG} train", "train"))


def _stdout(*argv: str) -> str:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_both_ways_of_running_print_the_same_help_as_processes():
    as_module = _stdout(sys.executable, "-m", "stereospike_ros", "report", "--help")
    # What a console script does: sys.argv[0] is the script's path, then it calls report_main.
    code = (
        "import sys; sys.argv = ['/opt/ros/kilted/lib/stereospike_ros/report', '--help']; "
        "from stereospike_ros.cli import report_main; sys.exit(report_main())"
    )
    as_script = _stdout(sys.executable, "-c", code)
    assert as_module.startswith(f"usage: {PROG} report ") and as_script.startswith("usage: report ")
    assert _words(as_script) == _words(as_module.replace(f"{PROG} report", "report"))
