"""examples/hello-plugin-rust: built with its build.sh, then driven over a real socket.

The test plays Toru's side of a modern (protocol 2) connection: one long-lived connection,
requests multiplexed by request_id, and the plugin's KV requests answered from a dict.
Skipped, with the reason, where cargo or the crates are not available.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from tests.support import RunningPlugin, plugin_connection, run_toru, running_plugin
from toru.plugins.framing import HEADER, FramedStream

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello-plugin-rust"
PLUGIN_ID = "hello-plugin-rust"
INSTANCE_ID = "11111111-2222-3333-4444-555555555555"
# build.sh's status when the crates cannot be obtained (no crates.io, no Debian crates).
NO_CRATES = 3


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugins directory build.sh installed the example into (built once per module)."""
    if shutil.which("cargo") is None:
        pytest.skip("cargo is not installed (rustup.rs, or apt-get install cargo)")
    plugins = tmp_path_factory.mktemp("plugins")
    result = subprocess.run(
        ["bash", str(EXAMPLE / "build.sh"), str(plugins)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if result.returncode == NO_CRATES:
        reason = result.stderr.strip().splitlines()[-1]
        pytest.skip(f"the Rust example's crates are not available ({reason})")
    if result.returncode != 0:
        pytest.fail(f"build.sh failed with status {result.returncode}:\n{result.stderr}")
    return plugins


@pytest.fixture
def binary(installed: Path) -> Path:
    return installed / f"{PLUGIN_ID}.binary"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(kind: str, request_id: str | None, /, **payload: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "timestamp": now(),
        "request_id": request_id,
        "payload": {"type": kind, **payload},
    }


def http_request(
    request_id: str, method: str, path: str, body: str | None = None
) -> dict[str, Any]:
    """A request in the shape Toru sends (PROTOCOL-FACTS, "HTTP")."""
    request = {"method": method, "path": path, "headers": {"user-agent": "test"}, "body": body}
    return envelope("http", request_id, request_id=request_id, payload=request)


@attrs.define(eq=False)
class Host:
    """Toru's side of one modern connection, driven step by step by the test.

    Reading is done on demand: waiting for a reply reads frames, answers (or holds) the
    plugin's KV requests met on the way, and keeps replies to other requests for later.
    """

    framed: FramedStream
    kv: dict[str, str] = attrs.Factory(dict)
    kv_error: str | None = None
    hold_kv: bool = False
    kv_requests: list[dict[str, Any]] = attrs.Factory(list)
    held: list[dict[str, Any]] = attrs.Factory(list)
    replies: dict[str, dict[str, Any]] = attrs.Factory(dict)
    next_id: int = 0

    def new_id(self) -> str:
        self.next_id += 1
        return f"req-{self.next_id}"

    async def send(self, message: dict[str, Any]) -> None:
        await self.framed.send(message)

    async def pump_until(self, done: Callable[[], bool]) -> None:
        """Read and dispatch frames until *done()* (10 s at most)."""
        with trio.fail_after(10):
            while not done():
                message = await self.framed.receive()
                assert message is not None, "the plugin closed the connection"
                if message["type"] == "kv":  # a plugin->core request
                    self.kv_requests.append(message)
                    if self.hold_kv:
                        self.held.append(message)
                    else:
                        await self.answer_kv(message)
                else:
                    self.replies[message["request_id"]] = message

    async def reply_to(self, request_id: str) -> dict[str, Any]:
        await self.pump_until(lambda: request_id in self.replies)
        return self.replies.pop(request_id)

    async def http(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        """Send one request and wait for its reply: (status, decoded JSON body)."""
        request_id = self.new_id()
        await self.send(http_request(request_id, method, path))
        return clean_reply(await self.reply_to(request_id))

    async def answer_kv(self, message: dict[str, Any]) -> None:
        payload = message["payload"]
        action, key = payload["action"].lower(), payload["key"]
        if self.kv_error is not None:
            answer: dict[str, Any] = {"error": self.kv_error}
        elif action == "get":
            answer = {"value": self.kv.get(key)}
        elif action == "set":
            self.kv[key] = payload["value"]
            answer = {"value": None}
        else:
            answer = {"error": f"unexpected action {action!r}"}
        await self.send(envelope("kv", message["request_id"], **answer))

    async def release_kv(self) -> None:
        self.hold_kv = False
        for message in self.held:
            await self.answer_kv(message)
        self.held.clear()


def clean_reply(message: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of a reply, which must be in the clean documented shape."""
    payload = message["payload"]
    assert message["type"] == "http"
    assert payload["type"] == "http"
    assert payload["headers"] == {"content-type": "application/json"}
    return payload["status"], json.loads(payload["body"])


def spawned(binary: Path, tmp_path: Path) -> AbstractAsyncContextManager[RunningPlugin]:
    """The plugin running with its socket in *tmp_path*; killed and reaped on the way out."""
    return running_plugin(binary, tmp_path / "plugin.sock", PLUGIN_ID, INSTANCE_ID)


connection = plugin_connection


@asynccontextmanager
async def session(binary: Path, tmp_path: Path) -> AsyncIterator[tuple[RunningPlugin, Host]]:
    """The plugin started, connected once (long-lived) and initialised, as Toru does."""
    async with spawned(binary, tmp_path) as plugin, connection(plugin) as framed:
        host = Host(framed)
        await host.send(
            envelope(
                "lifecycle",
                None,
                action="init",
                instance_id=INSTANCE_ID,
                plugin_socket=str(plugin.socket),
                log_path=str(tmp_path / "plugin.log"),
            )
        )
        yield plugin, host


async def test_build_installs_binary_and_bundle(installed: Path) -> None:
    """build.sh installs an executable PLUGIN.binary and PLUGIN/bundle.js that registers itself."""
    assert os.access(installed / f"{PLUGIN_ID}.binary", os.X_OK)
    bundle = (installed / PLUGIN_ID / "bundle.js").read_text()
    assert f'var PLUGIN_ID = "{PLUGIN_ID}"' in bundle
    assert "window.ToruPlugins[PLUGIN_ID]" in bundle


async def test_metadata_declares_modern_protocol(binary: Path) -> None:
    """--metadata prints the plugin's identity with "protocol": 2 and exits 0."""
    result = await trio.run_process([str(binary), "--metadata"], capture_stdout=True)
    assert json.loads(result.stdout) == {
        "id": PLUGIN_ID,
        "name": "Hello World (Rust)",
        "version": "0.1.0",
        "route": "/hello-rust",
        "icon": "🦀",
        "author": "The Toru developers",
        "protocol": 2,
    }


async def test_ping_is_answered_with_pong(binary: Path, tmp_path: Path) -> None:
    """A ping on the long-lived connection gets a pong with the same request_id."""
    async with session(binary, tmp_path) as (_, host):
        await host.send(envelope("lifecycle", "ping-7", action="ping"))
        pong = await host.reply_to("ping-7")
    assert pong["type"] == "lifecycle"
    assert pong["payload"] == {"type": "lifecycle", "action": "pong"}


async def test_get_root_reports_instance_and_time(binary: Path, tmp_path: Path) -> None:
    """GET / answers 200 with a message, the instance id from init and the current UTC time."""
    async with session(binary, tmp_path) as (_, host):
        status, body = await host.http("GET", "/")
    assert status == 200
    assert body["message"]
    assert body["instance_id"] == INSTANCE_ID
    assert body["time"].endswith("Z")
    assert abs(datetime.fromisoformat(body["time"]) - datetime.now(UTC)) < timedelta(minutes=1)


async def test_counter_lives_in_toru_kv(binary: Path, tmp_path: Path) -> None:
    """Two increments and a read (with a query string) go through KV over the socket: count 2."""
    async with session(binary, tmp_path) as (_, host):
        assert await host.http("POST", "/counter/increment") == (200, {"count": 1})
        assert await host.http("POST", "/counter/increment") == (200, {"count": 2})
        assert await host.http("GET", "/counter?x=1") == (200, {"count": 2})
    assert host.kv == {"counter": "2"}
    actions = [(m["payload"]["action"], m["payload"]["key"]) for m in host.kv_requests]
    assert actions == [("get", "counter"), ("set", "counter")] * 2 + [("get", "counter")]


async def test_kv_error_becomes_502(binary: Path, tmp_path: Path) -> None:
    """When Toru answers a KV request with an error, the request fails 502 with the reason."""
    async with session(binary, tmp_path) as (_, host):
        host.kv_error = "storage is read-only"
        status, body = await host.http("POST", "/counter/increment")
    assert status == 502
    assert "storage is read-only" in body["error"]


@pytest.mark.slow
async def test_kv_timeout_becomes_500_and_a_late_answer_is_harmless(
    binary: Path, tmp_path: Path
) -> None:
    """No KV answer within 5 s fails the request with 500; the answer arriving later is dropped."""
    async with session(binary, tmp_path) as (_, host):
        host.hold_kv = True
        status, body = await host.http("GET", "/counter")  # takes the plugin's 5 s timeout
        assert status == 500
        assert "within 5 s" in body["error"]
        await host.release_kv()
        host.kv["counter"] = "41"
        assert await host.http("POST", "/counter/increment") == (200, {"count": 42})


async def test_requests_on_one_connection_run_concurrently(binary: Path, tmp_path: Path) -> None:
    """While GET /counter waits for its KV answer, GET / on the same connection is answered."""
    async with session(binary, tmp_path) as (_, host):
        host.hold_kv = True
        await host.send(http_request("counter", "GET", "/counter"))
        await host.pump_until(lambda: bool(host.held))  # /counter is now blocked on KV
        await host.send(http_request("root", "GET", "/"))
        root = clean_reply(await host.reply_to("root"))
        assert "counter" not in host.replies
        await host.release_kv()
        counter = clean_reply(await host.reply_to("counter"))
    assert root[0] == 200
    assert counter == (200, {"count": 0})


async def test_unknown_path_is_404(binary: Path, tmp_path: Path) -> None:
    """A path the plugin does not serve answers 404 with a JSON error naming it."""
    async with session(binary, tmp_path) as (_, host):
        status, body = await host.http("GET", "/nope")
    assert status == 404
    assert "/nope" in body["error"]


async def test_oversized_frame_drops_only_that_connection(binary: Path, tmp_path: Path) -> None:
    """A header announcing 4 GiB closes that connection; the plugin keeps serving the others."""
    async with session(binary, tmp_path) as (plugin, host):
        async with connection(plugin) as rogue:
            await rogue.stream.send_all(HEADER.pack(0xFFFFFFFF))
            with trio.fail_after(5):
                assert await rogue.receive() is None
        await host.send(envelope("lifecycle", "ping-1", action="ping"))
        assert (await host.reply_to("ping-1"))["payload"]["action"] == "pong"


async def test_replaces_stale_socket_file_with_private_socket(binary: Path, tmp_path: Path) -> None:
    """A stale file at the socket path is replaced by a socket only its owner can use (0600)."""
    (tmp_path / "plugin.sock").write_text("stale")
    async with session(binary, tmp_path) as (plugin, host):
        assert (await host.http("GET", "/"))[0] == 200
        mode = plugin.socket.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


async def test_shutdown_exits_zero_and_removes_socket(binary: Path, tmp_path: Path) -> None:
    """Shutdown makes the plugin remove its socket file and exit with status 0."""
    async with session(binary, tmp_path) as (plugin, host):
        await host.send(envelope("lifecycle", None, action="shutdown"))
        with trio.fail_after(5):
            assert await plugin.process.wait() == 0
        assert not plugin.socket.exists()


async def test_passes_the_conformance_checker(binary: Path) -> None:
    """`toru plugin check` accepts the Rust example: modern mode, pong, GET / answered."""
    status, stdout, _ = await run_toru("plugin", "check", str(binary), env=dict(os.environ))
    assert status == 0, stdout
    assert "pong in" in stdout
    assert "the plugin is usable" in stdout


async def test_runs_under_the_supervisor(binary: Path, tmp_path: Path) -> None:
    """The supervisor starts the Rust example (modern mode, pinged), crash-restarts, stops it."""
    from tests.support import alive, eventually
    from toru.db import Database
    from toru.plugins.events import EventLog
    from toru.plugins.runner import Timing
    from toru.plugins.supervisor import Supervisor

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy2(binary, plugins / binary.name)
    async with Database.open(tmp_path / "toru.db") as db, trio.open_nursery() as nursery:
        supervisor = Supervisor(
            plugins,
            EventLog(db),
            INSTANCE_ID,
            timing=Timing(ping_interval=0.2),
            rescan_interval=3600,
        )
        await nursery.start(supervisor.run)
        status = await supervisor.enable(PLUGIN_ID)
        assert (status.state, status.health, status.mode) == (
            "running",
            "healthy",
            "modern",
        )
        first = status.pid
        os.kill(first, signal.SIGKILL)
        await eventually(
            lambda: (
                supervisor.status(PLUGIN_ID).pid not in (None, first)
                and supervisor.status(PLUGIN_ID).state == "running"
            ),
            within=5,
            what="the Rust example restarted",
        )
        second = supervisor.status(PLUGIN_ID).pid
        await supervisor.disable(PLUGIN_ID)
        assert not alive(second)
        stopped = [e for e in await supervisor.events.list(PLUGIN_ID) if e["event"] == "stopped"]
        assert stopped[0]["details"]["how"] == "shutdown message"
        nursery.cancel_scope.cancel()
