"""One command-line entry point for the offline tools, shared by ``python -m`` and ``ros2 run``.

Commands live in their own modules and are imported only when chosen, so ``--help`` stays fast
and a command that needs ROS never burdens one that does not. Each command module defines
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.

Errors are reported here, once for every command: a :class:`~stereospike_ros.errors.
StereoSpikeError` (bad input: the library's message names the file and the problem) or an
``OSError`` (a file that cannot be opened, a folder where a file was expected) becomes one line
``<command>: error: <message>`` on stderr and exit status 2, as argparse does for bad options.
Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from stereospike_ros.errors import StereoSpikeError

#: command -> its module (spelled out, so that the layering test sees every one)
COMMANDS: dict[str, str] = {
    "doctor": "stereospike_ros.cli.doctor",
    "benchmark": "stereospike_ros.cli.benchmark",
    "cache": "stereospike_ros.cli.cache",
    "inspect": "stereospike_ros.cli.inspect",
    "demo": "stereospike_ros.cli.demo",
    "node": "stereospike_ros.cli.node",
    "simulate": "stereospike_ros.cli.simulate",
    "evaluate": "stereospike_ros.cli.evaluate",
    "export": "stereospike_ros.cli.export",
    "prune": "stereospike_ros.cli.prune",
    "report": "stereospike_ros.cli.report",
    "train": "stereospike_ros.cli.train",
}


def _load(name: str) -> object:
    return importlib.import_module(COMMANDS[name])


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of ``only`` (so one command imports only its module)."""
    parser = argparse.ArgumentParser(
        prog="python -m stereospike_ros",
        description="StereoSpike depth from stereo event cameras: offline tools.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS if only is None else [only]:
        module = _load(name)
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the chosen command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    only = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(only).parse_args(argv)
    prog = " ".join(str(v) for v in (args.command, getattr(args, "target", None)) if v)
    try:
        return int(_load(args.command).run(args) or 0)
    except (StereoSpikeError, OSError) as err:
        print(f"{prog}: error: {error_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def error_line(err: BaseException) -> str:
    """``err`` as one line: the library's message, or for an ``OSError`` its file and reason."""
    if isinstance(err, OSError) and not isinstance(err, StereoSpikeError) and err.filename:
        reason = err.strerror or str(err)
        if isinstance(err, FileExistsError) and os.path.isfile(err.filename):
            reason = "is a file, where a folder is needed"
        elif isinstance(err, NotADirectoryError):
            reason += " (part of this path is a file, where a folder is needed)"
        text = f"{err.filename}: {reason}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def entry(name: str) -> Callable[[], int]:
    """A console_script for one command: ``ros2 run stereospike_ros <name> ...``."""

    def run_command() -> int:
        return main([name, *sys.argv[1:]])

    run_command.__name__ = f"{name}_main"
    return run_command


benchmark_main = entry("benchmark")
cache_main = entry("cache")
inspect_main = entry("inspect")
demo_main = entry("demo")
simulate_main = entry("simulate")
evaluate_main = entry("evaluate")
export_main = entry("export")
prune_main = entry("prune")
report_main = entry("report")
train_main = entry("train")
