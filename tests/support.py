"""Helpers shared by the tests: settings in a temporary directory, a fast hasher, clients."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import argon2
import attrs
import httpx
import trio

from toru.auth.passwords import PasswordHasher
from toru.config import Settings
from toru.plugins.framing import FramedStream
from toru.plugins.runner import Timing

ADMIN_PASSWORD = "correct horse battery"
JSON = {"Content-Type": "application/json"}


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "plugins_dir": tmp_path / "plugins",
        "data_dir": tmp_path / "data",
        "log_dir": tmp_path / "logs",
        "admin_password": ADMIN_PASSWORD,
    }
    values.update(overrides)
    values["data_dir"].mkdir(parents=True, exist_ok=True)
    return Settings(**values)


def fast_hasher() -> PasswordHasher:
    """argon2id with the cheapest parameters: the auth suite hashes hundreds of passwords.

    Production parameters are exercised by the unit tests of the hasher and by
    every test that starts a real ``toru serve`` process.
    """
    return PasswordHasher(argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def client(base_url: str) -> httpx.AsyncClient:
    """An HTTP client that sends JSON by default, as the web UI does."""
    return httpx.AsyncClient(base_url=base_url, headers=JSON, timeout=30)


async def login(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await http.post("/api/auth/login", json={"username": username, "password": password})


@attrs.frozen
class RunningPlugin:
    process: trio.Process
    socket: Path


@asynccontextmanager
async def running_plugin(
    binary: Path, socket: Path, plugin_id: str, instance_id: str
) -> AsyncIterator[RunningPlugin]:
    """A plugin process with its socket at *socket*; killed and reaped on the way out."""
    env = {
        **os.environ,
        "TORU_PLUGIN_SOCKET": str(socket),
        "TORU_PLUGIN_ID": plugin_id,
        "TORU_INSTANCE_ID": instance_id,
    }
    process = await trio.lowlevel.open_process([str(binary)], env=env, stdin=subprocess.DEVNULL)
    try:
        yield RunningPlugin(process, socket)
    finally:
        with trio.move_on_after(5, shield=True):
            if process.poll() is None:
                process.kill()
            await process.wait()


@asynccontextmanager
async def plugin_connection(plugin: RunningPlugin) -> AsyncIterator[FramedStream]:
    """A new connection to the plugin, retried until it listens (5 s at most)."""
    with trio.fail_after(5):
        while True:
            if plugin.process.poll() is not None:
                raise AssertionError(f"plugin exited with {plugin.process.returncode}")
            try:
                stream = await trio.open_unix_socket(str(plugin.socket))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                await trio.sleep(0.01)  # not listening yet: poll, under the deadline above
    framed = FramedStream(stream)
    try:
        yield framed
    finally:
        with trio.move_on_after(1, shield=True):
            await framed.aclose()


def leftover_processes(marker: str) -> list[str]:
    """Command lines of live processes (other than this one) that mention *marker*."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline:
                found.append(cmdline)
    return found


STUBBORN_PLUGIN = """\
import json, os, signal, socket, sys
if sys.argv[1:] == ["--metadata"]:
    print(json.dumps({"id": "stubborn", "name": "S", "version": "1", "route": "/stubborn"}))
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
server = socket.socket(socket.AF_UNIX)
server.bind(os.environ["TORU_PLUGIN_SOCKET"])
server.listen()
while True:  # reads whatever comes, shutdown included, and carries on
    connection, _ = server.accept()
    connection.recv(65536)
    connection.close()
"""


def write_stubborn_plugin(plugins: Path) -> Path:
    """A legacy plugin that ignores the shutdown message and SIGTERM: only SIGKILL ends it."""
    path = plugins / "stubborn.binary"
    path.write_text(f"#!{sys.executable}\n{STUBBORN_PLUGIN}")
    path.chmod(0o755)
    return path


def alive(pid: int | None) -> bool:
    """True while *pid* runs; a zombie (dead, not yet reaped by init) counts as gone."""
    if pid is None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    within: float,
    what: str,
    poll: float = 0.02,
) -> None:
    """Wait until *predicate()* (sync or async) holds, failing after *within* seconds.

    For state outside this process (another process's life, a file it writes,
    a server's API), where there is no event to wait on: the deadline bounds
    the polling.
    """

    async def holds() -> bool:
        result = predicate()
        return await result if inspect.isawaitable(result) else result

    with trio.move_on_after(within):
        while not await holds():  # noqa: ASYNC110 - no event for another process's state
            await trio.sleep(poll)
        return
    raise AssertionError(f"waited {within} s for {what}; it did not happen")


def install_plugins(plugins: Path, *sources: Path, enabled: Iterable[str]) -> Path:
    """Make *plugins* a plugins directory: each source copied in (a ``toru plugin build``
    output folder, merged, or one ``*.binary``), and ``config.json`` enabling *enabled*."""
    plugins.mkdir(parents=True, exist_ok=True)
    for source in sources:
        if source.is_dir():
            shutil.copytree(source, plugins, dirs_exist_ok=True)
        else:
            shutil.copy2(source, plugins)
    (plugins / ".metadata").mkdir(exist_ok=True)
    (plugins / ".metadata" / "config.json").write_text(
        json.dumps({"plugins": dict.fromkeys(enabled, True)})
    )
    return plugins


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class ServerProcess:
    """A real ``toru serve`` in a child process, found through its JSON log."""

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.log_file = root / "logs" / "toru.log"
        self.stderr_file = root / "stderr.txt"
        self.env = {
            **os.environ,
            "ADMIN_PASSWORD": ADMIN_PASSWORD,
            "TORU_DATA_DIR": str(root / "data"),
            "TORU_LOG_DIR": str(root / "logs"),
            "TORU_PLUGINS_DIR": str(root / "plugins"),
            "STEERING_PORT": "0",
            **(env or {}),
        }
        self.process: trio.Process | None = None
        self.url = ""

    async def start(self) -> str:
        """Start ``toru serve`` and return its URL once its log says it is serving."""
        seen = len(read_log(self.log_file))
        with self.stderr_file.open("ab") as stderr:
            self.process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "toru", "serve"],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        with trio.fail_after(20):
            while True:
                for record in read_log(self.log_file)[seen:]:
                    if record.get("event") == "toru is serving":
                        self.url = record["urls"][0]
                        return self.url
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"toru serve exited {self.process.returncode}: "
                        + self.stderr_file.read_text()
                    )
                await trio.sleep(0.05)  # the log is a file: poll it, with the deadline above

    def send(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait(self, deadline: float) -> int:
        """The exit status, failing the test if the process is still running after *deadline* s."""
        assert self.process is not None
        with trio.fail_after(deadline):
            return await self.process.wait()

    async def close(self) -> None:
        """Kill the process if it still runs, and reap it (also when the test failed)."""
        if self.process is None:
            return
        with trio.move_on_after(10, shield=True):
            if self.process.poll() is None:
                self.process.kill()
            await self.process.wait()


async def run_toru(*args: str, env: dict[str, str], stdin: bytes = b"") -> tuple[int, str, str]:
    """Run ``python -m toru ARGS`` to completion: (exit status, stdout, stderr)."""
    result = await trio.run_process(
        [sys.executable, "-m", "toru", *args],
        env=env,
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


@asynccontextmanager
async def server_process(
    root: Path, env: dict[str, str] | None = None
) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(root, env)
    try:
        yield server
    finally:
        await server.close()


class EventStream:
    """A raw HTTP/1.0 client for server-sent events (no chunking, no client library internals)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.headers = ""

    @classmethod
    async def open(cls, url: str, cookie: str, path: str = "/api/stream") -> EventStream:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self = cls(await trio.open_tcp_stream(host, int(port)))
        request = f"GET {path} HTTP/1.0\r\nHost: {host}\r\nCookie: session_id={cookie}\r\n"
        await self.stream.send_all(request.encode() + b"\r\n")
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += await self.stream.receive_some()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        self.headers = head.decode().lower()
        return self

    async def line(self) -> str:
        while b"\n" not in self.buffer:
            chunk = await self.stream.receive_some()
            if not chunk:
                raise AssertionError("the stream ended")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    async def next_event(self) -> tuple[str, dict[str, Any]]:
        """The next `event:`/`data:` pair (comments skipped)."""
        event = ""
        while True:
            line = await self.line()
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                return event, json.loads(line.removeprefix("data: "))


FAST = Timing(
    ping_interval=0.2,
    ping_timeout=0.5,
    backoff_first=0.05,
    backoff_max=0.4,
    shutdown_grace=1.0,
    term_grace=0.5,
)


def sdk_plugin(plugins: Path, plugin_id: str, extra: str = "", **options: str) -> Path:
    """A small SDK plugin script (runs on this venv's Python, which has toru installed)."""
    path = plugins / f"{plugin_id}.binary"
    path.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            f"""\
            import os, signal, sys, time
            from toru.sdk import Plugin
            plugin = Plugin(id={plugin_id!r}, name={plugin_id!r}, version="1", route="/{plugin_id}")

            @plugin.get("/")
            async def index(request):
                return {{"pid": os.getpid()}}
            """
        )
        + textwrap.dedent(extra)
        + "\nplugin.run()\n"
    )
    path.chmod(0o755)
    return path
