"""One command-line entry point for the offline tools, shared by ``python -m`` and ``ros2 run``.

Commands live in their own modules (``cli/<command>.py``) and are imported only when chosen, so
``--help`` stays fast and a command that needs ROS never burdens one that does not. Each
command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``:
arguments in, a call into the library, an exit status out.

``python -m stereospike_ros train ...`` and the console script ``train ...`` (what ``ros2 run
stereospike_ros train`` starts) build the same parser, so their options and help are the same;
only the program name in the usage line says how the command was started.

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

#: The program name of usage lines under ``python -m``.
PROG = "python -m stereospike_ros"

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


def invoked_as(default: str) -> str:
    """How this process was started: a console script's file name (``train``, ``stereospike``),
    or ``default`` under ``python -m`` / ``python -c``, where there is no script to name."""
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    return default if name in ("", "-c", "__main__.py") else name


def build_parser(
    only: str | None = None, prog: str = PROG, command_prog: str | None = None
) -> argparse.ArgumentParser:
    """The parser of every command, or of ``only`` (so one command imports only its module).

    ``prog`` names the program in usage lines; ``command_prog``, if given, names the command
    instead of ``<prog> <command>`` (a console script that runs one command).
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="StereoSpike depth from stereo event cameras: offline tools.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS if only is None else [only]:
        module = _load(name)
        named = {"prog": command_prog} if command_prog else {}
        command = sub.add_parser(name, help=module.HELP, description=module.HELP, **named)
        module.add_arguments(command)
    return parser


def main(
    argv: Sequence[str] | None = None, prog: str | None = None, command_prog: str | None = None
) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the chosen command.

    ``prog``: the program name of usage lines; default: ``python -m stereospike_ros``, or the
    console script's name when ``argv`` comes from the command line. ``command_prog``: see
    :func:`build_parser`.
    """
    if argv is None:
        argv, prog = sys.argv[1:], prog or invoked_as(PROG)
    argv = list(argv)
    only = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(only, prog or PROG, command_prog).parse_args(argv)
    # a one-line error names the command (and the benchmark target)
    label = " ".join(str(v) for v in (args.command, getattr(args, "target", None)) if v)
    try:
        return int(_load(args.command).run(args) or 0)
    except (StereoSpikeError, OSError) as err:
        print(f"{label}: error: {error_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{label}: interrupted", file=sys.stderr)
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
    """A console_script for one command: ``ros2 run stereospike_ros <name> ...``, the same
    parser as ``python -m stereospike_ros <name>``, its usage naming the script."""

    def run_command() -> int:
        return main([name, *sys.argv[1:]], command_prog=invoked_as(name))

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
