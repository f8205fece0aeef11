"""Shared by the reliability suite: a real ``toru serve`` with an admin client, the corpus,
and what the kernel tells about a process (children, zombies, descriptors, memory)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.support import ADMIN_PASSWORD, ServerProcess, client, eventually, login, read_log

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
FIXTURES = REPO / "tests" / "fixtures"
#: What a plugin route may answer when the plugin is failing (docs/api.md).
PLUGIN_FAILURE_STATUSES = {502, 503, 504}


def install(plugins: Path, *names: str) -> None:
    """Copy corpus files (mode included) and their wire helper into *plugins*."""
    plugins.mkdir(parents=True, exist_ok=True)
    shutil.copy2(CORPUS / "corpus_wire.py", plugins / "corpus_wire.py")
    for name in names:
        _copy_script(CORPUS / name, plugins / name)


def install_fixture(plugins: Path, name: str = "legacy_python.binary") -> None:
    plugins.mkdir(parents=True, exist_ok=True)
    _copy_script(FIXTURES / name, plugins / name)


def _copy_script(source: Path, target: Path) -> None:
    """Copy a script, mode included, with ``#!/usr/bin/env python3`` pointed at this Python.

    Same program, same standard library; it only skips a version manager's shim (pyenv's
    is a shell script that costs about 0.1 s per start), and the kill loops start plugins
    a hundred times.
    """
    data = source.read_bytes()
    shebang = b"#!/usr/bin/env python3\n"
    if data.startswith(shebang):
        data = f"#!{sys.executable}\n".encode() + data[len(shebang) :]
    target.write_bytes(data)
    shutil.copymode(source, target)


def write_config(plugins: Path, enabled: dict[str, bool]) -> None:
    (plugins / ".metadata").mkdir(parents=True, exist_ok=True)
    (plugins / ".metadata" / "config.json").write_text(json.dumps({"plugins": enabled}))


def sdk_plugin(plugins: Path, plugin_id: str, body: str = "") -> Path:
    """An SDK plugin as a script on this venv's Python (which has the SDK installed)."""
    path = plugins / f"{plugin_id}.binary"
    source = textwrap.dedent(
        f"""\
        import os
        from toru.sdk import Plugin
        plugin = Plugin(id={plugin_id!r}, name={plugin_id!r}, version="1", route="/{plugin_id}")

        @plugin.get("/")
        async def index(request):
            return {{"pid": os.getpid()}}
        """
    )
    path.write_text(f"#!{sys.executable}\n{source}{textwrap.dedent(body)}\nplugin.run()\n")
    path.chmod(0o755)
    return path


@contextmanager
def short_tmpdir() -> Iterator[Path]:
    """A private, short TMPDIR for a server: its socket directory is created in there (the
    Unix socket path limit is 107 bytes, too short for pytest's tmp_path), and this test's
    socket directories are not mixed with those of other servers on the machine."""
    path = Path(tempfile.mkdtemp(prefix="trel-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Toru:
    """A running ``toru serve`` with an administrator's session."""

    def __init__(self, server: ServerProcess, http: httpx.AsyncClient, tmpdir: Path) -> None:
        self.server = server
        self.http = http
        self.tmpdir = tmpdir

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    @property
    def plugins(self) -> Path:
        return self.server.root / "plugins"

    @property
    def logs(self) -> Path:
        return self.server.root / "logs"

    def socket_dirs(self) -> list[Path]:
        return sorted(self.tmpdir.glob("toru-*"))

    def socket_dir(self) -> Path:
        (found,) = self.socket_dirs()
        return found

    async def status(self, plugin_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/api/plugins/{plugin_id}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def events(self, plugin_id: str) -> list[dict[str, Any]]:
        """Oldest first."""
        response = await self.http.get(f"/api/plugins/{plugin_id}/events?limit=1000")
        assert response.status_code == 200, response.text
        return list(reversed(response.json()["events"]))

    async def pids(self, plugin_id: str) -> list[int]:
        """Every process Toru started for the plugin (from its ``started`` events)."""
        return [
            e["details"]["pid"] for e in await self.events(plugin_id) if e["event"] == "started"
        ]

    async def wait_running(self, plugin_id: str, within: float = 30) -> dict[str, Any]:
        await eventually(
            lambda: self._is_running(plugin_id), within=within, what=f"{plugin_id} running"
        )
        return await self.status(plugin_id)

    async def _is_running(self, plugin_id: str) -> bool:
        return bool((await self.status(plugin_id))["state"] == "running")

    def server_log(self) -> list[dict[str, Any]]:
        return read_log(self.logs / "toru.log")


@asynccontextmanager
async def running_toru(
    root: Path, env: dict[str, str] | None = None, *, tmpdir: Path
) -> AsyncIterator[Toru]:
    """``toru serve`` over *root* (plugins/, data/, logs/), its sockets under *tmpdir*.

    Stopped on the way out with SIGTERM, so its plugins go through their ladders and
    their process groups are swept: a SIGKILL would leave their children running (see
    docs/reliability.md, server death). SIGKILL only if it has not stopped in 20 s.
    """
    server = ServerProcess(root, {"TMPDIR": str(tmpdir), **(env or {})})
    try:
        url = await server.start()
        async with client(url) as http:
            http.timeout = httpx.Timeout(90)
            response = await login(http, "admin", ADMIN_PASSWORD)
            assert response.status_code == 200, response.text
            yield Toru(server, http, tmpdir)
    finally:
        if server.process is not None and server.process.poll() is None:
            server.send(signal.SIGTERM)
            with trio.move_on_after(20, shield=True):
                await server.process.wait()
        await server.close()


# -- what the kernel says about a process ------------------------------------------------


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of *pid*, or None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def children_of(pid: int) -> dict[int, str]:
    """The direct children of *pid* and their state letters (``Z`` for a zombie)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None and stat[1] == pid:
                found[int(entry.name)] = stat[0]
    return found


def zombies_of(pid: int) -> list[int]:
    return sorted(child for child, state in children_of(pid).items() if state == "Z")


def open_fds(pid: int) -> dict[int, str]:
    """The open file descriptors of *pid* and what each points to."""
    found = {}
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found[int(entry.name)] = os.readlink(entry)
        except FileNotFoundError:
            continue  # closed while we listed them
    return found


def _socket_inodes(pid: int) -> dict[str, str]:
    """Socket inode -> ``unix`` or ``tcp``, from the process's network namespace tables."""
    kinds = {}
    for table, kind, column in (("unix", "unix", 6), ("tcp", "tcp", 9), ("tcp6", "tcp", 9)):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > column:
                kinds[fields[column]] = kind
    return kinds


def fd_kinds(pid: int) -> dict[str, int]:
    """How many descriptors *pid* has open, by kind: ``unix`` and ``tcp`` sockets, ``pipe``,
    ``pidfd``, ``eventpoll``/..., and files by name."""
    sockets = _socket_inodes(pid)
    kinds: dict[str, int] = {}
    for target in open_fds(pid).values():
        if target.startswith("socket:["):
            kind = sockets.get(target[len("socket:[") : -1], "socket")
        elif target.startswith("pipe:"):
            kind = "pipe"
        elif target.startswith("anon_inode:"):
            kind = target.removeprefix("anon_inode:").strip("[]")
        else:
            kind = Path(target).name  # a file: its name is enough to tell them apart here
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def cmdline_mentions(marker: str) -> list[tuple[int, str]]:
    """Live processes (not zombies) whose command line mentions *marker*."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        stat = proc_stat(int(entry.name))
        if marker in cmdline and stat is not None and stat[0] != "Z":
            found.append((int(entry.name), cmdline))
    return found
