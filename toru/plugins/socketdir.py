"""The socket directory: private to one server run, cleaned up after a SIGKILLed one.

Each run of the supervisor creates ``$TMPDIR/toru-XXXXXXXX`` (mode 0700; short, so that
socket paths stay under the 108-byte Unix limit) and writes an ``owner`` file in it: the
server's pid, that process's start time (so that a reused pid is not taken for the owner)
and its pid namespace. The run removes the directory on its way out.

A server that is SIGKILLed cannot: its directory stays, with stale socket files, and so do
the processes its plugins forked (the parent-death signal reaches each plugin, not the
children it started, which keep running with their parent's environment). The next start
looks for such directories, **ours only**: same user, not a symlink, with an owner file
naming a process of this pid namespace that no longer runs. For each, it SIGKILLs the
processes whose ``TORU_PLUGIN_SOCKET`` points into it (only a plugin of that dead run or
a process it started has that), then removes it. Directories without an owner file (made
by a Toru older than this, or by anything else called ``toru-``) are left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import attrs

PREFIX = "toru-"
OWNER_FILE = "owner"
SOCKET_VARIABLE = b"TORU_PLUGIN_SOCKET="


@attrs.frozen
class StaleDirectory:
    """A socket directory of a server that no longer runs, as removed by :func:`clean_stale`."""

    path: Path
    owner_pid: int
    #: Processes of that run (plugin descendants) that were still running, now SIGKILLed.
    killed: list[int]


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None when it does not run."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # dead, only waiting to be reaped
        return None
    return int(fields[19])


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def create() -> Path:
    """A new private socket directory for this process, with its owner file."""
    path = Path(tempfile.mkdtemp(prefix=PREFIX))
    owner = {"pid": os.getpid(), "start": _start_time(os.getpid()), "ns": _pid_namespace()}
    (path / OWNER_FILE).write_text(json.dumps(owner))
    return path


def _owner_if_dead(path: Path) -> int | None:
    """The owner's pid when *path* is ours and its owner no longer runs; else None."""
    try:
        info = path.lstat()
        owner = json.loads((path / OWNER_FILE).read_text())
        pid, start, namespace = int(owner["pid"]), owner["start"], str(owner["ns"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not a directory of ours, or not written by this version
    if not path.is_dir() or path.is_symlink() or info.st_uid != os.getuid():
        return None
    if namespace != _pid_namespace():
        return None  # another container's server: its pids mean nothing here
    if _start_time(pid) == start:
        return None  # still running (a reused pid has another start time)
    return pid


def _processes_using(path: Path) -> list[int]:
    """Processes (readable by us) whose TORU_PLUGIN_SOCKET lies in *path*."""
    found = []
    prefix = SOCKET_VARIABLE + os.fsencode(path) + b"/"
    try:
        entries = list(os.scandir("/proc"))
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours
        if any(item.startswith(prefix) for item in environ.split(b"\0")):
            found.append(int(entry.name))
    return found


def clean_stale(parent: Path, *, keep: Path) -> list[StaleDirectory]:
    """Remove the socket directories in *parent* left by servers that died (blocking).

    Kills what is left of their plugins first. Never raises for one directory: a
    directory that cannot be judged or removed is left as it is.
    """
    cleaned = []
    try:
        entries = [Path(e.path) for e in os.scandir(parent) if e.name.startswith(PREFIX)]
    except OSError:
        return []
    for path in entries:
        if path == keep or (owner := _owner_if_dead(path)) is None:
            continue
        killed = []
        for pid in _processes_using(path):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        shutil.rmtree(path, ignore_errors=True)
        cleaned.append(StaleDirectory(path, owner, killed))
    return cleaned
