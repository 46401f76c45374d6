"""Atomic file replacement, shared by checkpoints, training state, caches and recordings.

A crash (or SIGKILL) mid-save must never leave a half-written file where a good one was, so
every such file is written beside its target under a *partial* name, fsynced, and renamed over
it. A process killed before the rename leaves its partial file behind; the next write of the
same target removes the ones whose writer is gone (:func:`remove_stale_partials`), so a run
that is killed and started again never piles them up.

A partial name says who writes it: ``.<name>.<pid>@<host>~<random>.partial``. A leftover is
stale when its process no longer runs on this host, or, from another host (a shared folder),
when nobody has written to it for :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
#: A partial file of another host is taken for abandoned after this long without a write.
STALE_AFTER_S = 3600.0


def _owner() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def partial_path(path: str | os.PathLike[str]) -> Path:
    """Where this process writes ``path`` before renaming it: a partial name beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.{_owner()}~{os.urandom(4).hex()}{PARTIAL_SUFFIX}")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _is_stale(partial: Path, prefix: str, host: str, now: float) -> bool:
    owner = partial.name[len(prefix) : -len(PARTIAL_SUFFIX)].partition("~")[0]
    pid_text, _, owner_host = owner.partition("@")
    if not pid_text.isdigit():
        return False  # not one of ours: leave it
    pid = int(pid_text)
    if owner_host in ("", host):  # '' : the older '.<name>.<pid>.partial' names
        return pid != os.getpid() and not _running(pid)
    try:
        return now - partial.stat().st_mtime > STALE_AFTER_S
    except FileNotFoundError:
        return False


def remove_stale_partials(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the partial files of ``path`` left by writers that are gone; returns them.

    Partial files of live writers (another run converting the same cache right now) stay.
    """
    path = Path(path)
    prefix = f".{path.name}."
    host, now = socket.gethostname(), time.time()
    removed = []
    pattern = glob.escape(str(path.parent / prefix)) + "*" + PARTIAL_SUFFIX
    for partial in map(Path, glob.glob(pattern)):
        if _is_stale(partial, prefix, host, now):
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
                removed.append(partial)
                log.info("removed %s, left by an interrupted write of %s", partial, path.name)
    return removed


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a partial file in ``path``'s folder, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    tmp = partial_path(path)
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path
