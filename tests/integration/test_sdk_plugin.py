"""The SDK in a real plugin process, driven over a real Unix socket as Toru would drive it."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from toru.plugins.build import TORU_FILES
from toru.plugins.framing import HEADER, FramedStream

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello-plugin-python" / "plugin.py"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
REPLY_DEADLINE = 10  # seconds: generous for a loaded machine, and a hang still fails the test
START_DEADLINE = 10

TEST_PLUGIN = """
from toru.sdk import KVError, Plugin, Request

plugin = Plugin(id="sdk-test", name="SDK test", version="0.0.1", route="/sdk-test")


@plugin.get("/boom")
async def boom(request: Request) -> None:
    raise RuntimeError("boom in handler")


@plugin.get("/ok")
async def ok(request: Request) -> dict:
    return {"ok": True}


@plugin.get("/echo/{n}")
async def echo(request: Request) -> dict:
    n = request.params["n"]
    return {"n": n, "value": await plugin.kv.get(f"echo-{n}")}


@plugin.get("/kv")
async def kv(request: Request) -> dict:
    try:
        await plugin.kv.set("k", "v")
    except KVError as exc:
        return {"kv_error": str(exc)}
    return {"kv_error": None}


@plugin.post("/body")
async def body(request: Request) -> dict:
    return {"method": request.method, "query": request.query, "body": list(request.body)}


@plugin.get("/bytes")
async def raw(request: Request) -> bytes:
    return bytes([255, 0])


if __name__ == "__main__":
    plugin.run()
"""


# --- harness: a plugin process and the Toru end of its connection ---------------------


@attrs.define
class PluginProcess:
    """A plugin started as Toru starts it: its own process, TORU_PLUGIN_SOCKET set."""

    process: trio.Process
    socket_path: Path
    stderr_path: Path

    async def exit_status(self, deadline: float) -> int:
        """The exit status; fails the test if the process still runs after *deadline* s."""
        with trio.fail_after(deadline):
            return await self.process.wait()

    def stderr_lines(self) -> list[str]:
        return self.stderr_path.read_text().splitlines()

    def stderr_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stderr_lines()]

    async def connect(self) -> FramedStream:
        """Connect once the plugin listens (polled, with a deadline)."""
        with trio.fail_after(START_DEADLINE):
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"plugin exited {self.process.returncode} before listening: "
                        + self.stderr_path.read_text()
                    )
                try:
                    return FramedStream(await trio.open_unix_socket(str(self.socket_path)))
                except (FileNotFoundError, ConnectionRefusedError):
                    await trio.sleep(0.02)  # not listening yet: poll, under the deadline above


@asynccontextmanager
async def plugin_process(
    script: Path, tmp_path: Path, *, socket_path: Path | None = None
) -> AsyncIterator[PluginProcess]:
    """Run *script* with PYTHONPATH=repo root; killed and reaped on the way out, always."""
    socket_path = socket_path or tmp_path / "run" / "plugin.sock"
    stderr_path = tmp_path / "plugin-stderr.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TORU_PLUGIN_SOCKET": str(socket_path)}
    env.pop("TORU_INSTANCE_ID", None)
    with stderr_path.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            [sys.executable, str(script)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        yield PluginProcess(process, socket_path, stderr_path)
    finally:
        with trio.move_on_after(5, shield=True):
            if process.poll() is None:
                process.kill()
            await process.wait()


KVAnswer = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@attrs.define(eq=False)
class _Waiter:
    done: trio.Event = attrs.field(factory=trio.Event)
    reply: dict[str, Any] = attrs.field(factory=dict)


@attrs.define(eq=False)
class Host:
    """The Toru end of one long-lived connection: requests out, replies matched, KV answered."""

    connection: FramedStream
    kv_store: dict[str, str] = attrs.field(factory=dict)
    kv_requests: list[dict[str, Any]] = attrs.field(factory=list)
    kv_answer: KVAnswer | None = None
    unmatched: list[dict[str, Any]] = attrs.field(factory=list)
    closed: trio.Event = attrs.field(factory=trio.Event)
    _arrived: trio.Event = attrs.field(factory=trio.Event)
    _waiting: dict[str, _Waiter] = attrs.field(factory=dict)
    _ids: itertools.count[int] = attrs.field(factory=itertools.count)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read until the plugin closes the connection; the connection is closed on the way out."""
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                while (message := await self._receive()) is not None:
                    waiter = self._waiting.get(message.get("request_id"))  # type: ignore[arg-type]
                    if waiter is not None:
                        waiter.reply = message
                        waiter.done.set()
                    elif message.get("type") == "kv":
                        self.kv_requests.append(message)
                        nursery.start_soon(self._answer_kv, message)
                    else:
                        self.unmatched.append(message)
                        self._arrived.set()
                        self._arrived = trio.Event()
                self.closed.set()
        finally:
            with trio.move_on_after(1, shield=True):
                await self.connection.aclose()

    async def _receive(self) -> dict[str, Any] | None:
        try:
            return await self.connection.receive()
        except trio.BrokenResourceError:
            # The plugin was killed (the harness does that on the way out) with our
            # connection still in its accept queue: a reset is just another end.
            return None

    async def wait_for_unmatched(self, count: int) -> list[dict[str, Any]]:
        """Wait until *count* messages that were neither replies nor KV requests have arrived."""
        with trio.fail_after(REPLY_DEADLINE):
            while len(self.unmatched) < count:
                await self._arrived.wait()
        return self.unmatched

    async def send(self, kind: str, payload: dict[str, Any], request_id: str | None = None) -> None:
        await self.connection.send(
            {
                "type": kind,
                "timestamp": "2026-01-15T14:56:07.123Z",
                "request_id": request_id,
                "payload": {"type": kind, **payload},
            }
        )

    async def request(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a request and return the whole reply message with the same request_id."""
        request_id = f"host-{next(self._ids)}"
        waiter = self._waiting[request_id] = _Waiter()
        try:
            await self.send(kind, payload, request_id)
            with trio.fail_after(REPLY_DEADLINE):
                await waiter.done.wait()
        finally:
            del self._waiting[request_id]
        assert waiter.reply["request_id"] == request_id
        return waiter.reply

    async def http(
        self,
        method: str,
        path: str,
        *,
        body: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """An HTTP request in the nested shape Toru sends; the reply's payload."""
        request_id = f"http-{next(self._ids)}"
        inner = {"method": method, "path": path, "headers": headers or {}, "body": body}
        waiter = self._waiting[request_id] = _Waiter()
        try:
            await self.send("http", {"request_id": request_id, "payload": inner}, request_id)
            with trio.fail_after(REPLY_DEADLINE):
                await waiter.done.wait()
        finally:
            del self._waiting[request_id]
        reply = waiter.reply
        assert (reply["type"], reply["request_id"]) == ("http", request_id)
        assert reply["payload"]["type"] == "http"
        return reply["payload"]  # type: ignore[no-any-return]

    async def _answer_kv(self, message: dict[str, Any]) -> None:
        answer = self.kv_answer or self.answer_from_store
        payload = await answer(message["payload"])
        await self.send("kv", payload, message["request_id"])

    async def answer_from_store(self, payload: dict[str, Any]) -> dict[str, Any]:
        action, key = payload["action"], payload["key"]
        if action == "set":
            self.kv_store[key] = payload["value"]
        elif action == "delete":
            self.kv_store.pop(key, None)
        elif action == "list":
            return {"value": None, "keys": sorted(self.kv_store)}
        return {"value": self.kv_store.get(key)}


async def start_host(
    nursery: trio.Nursery, plugin: PluginProcess, *, instance_id: str | None = "instance-42"
) -> Host:
    """Connect to *plugin*, start reading, and (unless None) send init with *instance_id*."""
    host = Host(await plugin.connect())
    await nursery.start(host.run)
    if instance_id is not None:
        await host.send("lifecycle", {"action": "init", "instance_id": instance_id})
    return host


def json_body(payload: dict[str, Any]) -> Any:
    assert payload["headers"]["content-type"] == "application/json", payload
    return json.loads(payload["body"])


@pytest.fixture
def test_plugin(tmp_path: Path) -> Path:
    script = tmp_path / "test_plugin.py"
    script.write_text(TEST_PLUGIN)
    return script


# --- what a packaged plugin can import -------------------------------------------------


async def test_sdk_imports_no_server_dependency() -> None:
    """`import toru.sdk` loads none of cattrs, structlog, quart, hypercorn, argon2, werkzeug."""
    code = (
        "import sys; import toru.sdk; bad = {m for m in sys.modules if m.split('.')[0] in "
        "{'cattrs','structlog','quart','hypercorn','argon2','werkzeug'}}; assert not bad, bad"
    )
    result = await trio.run_process(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()


async def test_example_runs_from_only_the_files_a_packaged_plugin_carries(tmp_path: Path) -> None:
    """With only the parts of toru a packaged plugin carries (build.TORU_FILES), it runs."""
    root = tmp_path / "bundle"
    for relative in TORU_FILES:
        source, target = REPO / "toru" / relative, root / "toru" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    shutil.copy(EXAMPLE, root / "plugin.py")
    result = await trio.run_process(
        [sys.executable, str(root / "plugin.py"), "--metadata"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["id"] == "hello-plugin-python"


async def test_example_metadata() -> None:
    """The example's --metadata is one JSON object with its id, route, icon and protocol 2."""
    result = await trio.run_process(
        [sys.executable, str(EXAMPLE), "--metadata"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    metadata = json.loads(result.stdout.decode("utf-8"))
    assert {key: metadata[key] for key in ("id", "name", "version", "route", "icon")} == {
        "id": "hello-plugin-python",
        "name": "Hello World (Python)",
        "version": "0.1.0",
        "route": "/hello-python",
        "icon": "🐍",
    }
    assert metadata["protocol"] == 2


# --- the socket --------------------------------------------------------------------------


async def test_socket_is_created_with_mode_0600(tmp_path: Path, nursery: trio.Nursery) -> None:
    """The plugin creates the socket's missing parent directory and the socket with mode 0600."""
    socket_path = tmp_path / "new" / "dir" / "p.sock"
    async with plugin_process(EXAMPLE, tmp_path, socket_path=socket_path) as plugin:
        await start_host(nursery, plugin, instance_id=None)
        mode = socket_path.stat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600


async def test_stale_socket_file_is_replaced(tmp_path: Path, nursery: trio.Nursery) -> None:
    """A socket file left by a dead process is removed and a live socket takes its place."""
    socket_path = tmp_path / "run" / "plugin.sock"
    socket_path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_path))
    stale.close()
    assert stat.S_ISSOCK(socket_path.lstat().st_mode)
    async with plugin_process(EXAMPLE, tmp_path, socket_path=socket_path) as plugin:
        host = await start_host(nursery, plugin)
        reply = await host.request("lifecycle", {"action": "ping"})
        assert reply["payload"]["action"] == "pong"


# --- lifecycle ---------------------------------------------------------------------------


async def test_ping_is_answered_with_pong_and_the_same_request_id(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """A ping gets a lifecycle pong carrying the ping's request_id, payload.type and a UTC time."""
    async with plugin_process(EXAMPLE, tmp_path) as plugin:
        host = await start_host(nursery, plugin)
        reply = await host.request("lifecycle", {"action": "ping"})
        assert reply["type"] == "lifecycle"
        assert reply["payload"] == {"type": "lifecycle", "action": "pong"}
        assert RFC3339_UTC.match(reply["timestamp"])


async def test_shutdown_message_stops_the_plugin(tmp_path: Path, nursery: trio.Nursery) -> None:
    """After `shutdown` the plugin hangs up, exits 0 within 3 s and removes its socket file."""
    async with plugin_process(EXAMPLE, tmp_path) as plugin:
        host = await start_host(nursery, plugin)
        await host.send("lifecycle", {"action": "shutdown"})
        assert await plugin.exit_status(3) == 0
        with trio.fail_after(REPLY_DEADLINE):
            await host.closed.wait()
        assert not plugin.socket_path.exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_stops_the_plugin(
    tmp_path: Path, nursery: trio.Nursery, signum: signal.Signals
) -> None:
    """SIGTERM or SIGINT ends the plugin with status 0 and no socket file left behind."""
    async with plugin_process(EXAMPLE, tmp_path) as plugin:
        await start_host(nursery, plugin)
        plugin.process.send_signal(signum)
        assert await plugin.exit_status(3) == 0
        assert not plugin.socket_path.exists()
    assert any(f"{signum.name} received" in line for line in plugin.stderr_lines())


async def test_in_flight_request_finishes_during_shutdown(
    tmp_path: Path, test_plugin: Path, nursery: trio.Nursery
) -> None:
    """A request in flight at shutdown still gets its reply; one arriving after gets 503."""
    release = trio.Event()
    asked = trio.Event()
    replies: list[dict[str, Any]] = []

    async def held_answer(payload: dict[str, Any]) -> dict[str, Any]:
        asked.set()
        await release.wait()
        return {"value": "late"}

    async def slow_request(host: Host) -> None:
        replies.append(await host.http("GET", "/echo/1"))

    async with plugin_process(test_plugin, tmp_path) as plugin:
        host = await start_host(nursery, plugin)
        host.kv_answer = held_answer
        nursery.start_soon(slow_request, host)
        with trio.fail_after(REPLY_DEADLINE):
            await asked.wait()
        await host.send("lifecycle", {"action": "shutdown"})
        refused = await host.http("GET", "/ok")
        assert refused["status"] == 503
        release.set()
        assert await plugin.exit_status(3) == 0
    [reply] = replies
    assert json_body(reply) == {"n": "1", "value": "late"}


async def test_a_stuck_request_does_not_hold_up_the_stop(
    tmp_path: Path, test_plugin: Path, nursery: trio.Nursery
) -> None:
    """A handler that never finishes gets the 2 s grace, then the plugin exits 0 anyway."""
    asked = trio.Event()

    async def never_answer(payload: dict[str, Any]) -> dict[str, Any]:
        asked.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def stuck_request(host: Host) -> None:
        with trio.move_on_after(REPLY_DEADLINE):
            await host.http("GET", "/echo/1")

    async with plugin_process(test_plugin, tmp_path) as plugin:
        host = await start_host(nursery, plugin)
        host.kv_answer = never_answer
        nursery.start_soon(stuck_request, host)
        with trio.fail_after(REPLY_DEADLINE):
            await asked.wait()
        await host.send("lifecycle", {"action": "shutdown"})
        assert await plugin.exit_status(5) == 0
        assert not plugin.socket_path.exists()
    assert "stopping with 1 request(s) unfinished" in [
        record["message"] for record in plugin.stderr_records()
    ]


# --- HTTP ----------------------------------------------------------------------------------


async def test_get_root_reports_the_instance_id_and_time(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """`GET /` answers 200 JSON with a message, the instance id from init and the UTC time."""
    async with plugin_process(EXAMPLE, tmp_path) as plugin:
        host = await start_host(nursery, plugin, instance_id="instance-42")
        reply = await host.http("GET", "/", headers={"x-toru-user": "carol"})
        assert reply["status"] == 200
        body = json_body(reply)
        assert body["instance_id"] == "instance-42"
        assert "carol" in body["message"]
        assert RFC3339_UTC.match(body["time"])
        missing = await host.http("GET", "/nowhere")
        assert (missing["status"], json_body(missing)) == (
            404,
            {"error": "no route for GET /nowhere"},
        )
        wrong = await host.http("DELETE", "/counter")
        assert wrong["status"] == 405
        assert wrong["headers"]["allow"] == "GET, HEAD"


async def test_counter_is_kept_in_the_hosts_kv(tmp_path: Path, nursery: trio.Nursery) -> None:
    """Two increments then `GET /counter` give 2, kept by the host under `counter` via kv frames."""
    async with plugin_process(EXAMPLE, tmp_path) as plugin:
        host = await start_host(nursery, plugin)
        first = await host.http("POST", "/counter/increment")
        second = await host.http("POST", "/counter/increment")
        assert (json_body(first), json_body(second)) == ({"count": 1}, {"count": 2})
        assert json_body(await host.http("GET", "/counter")) == {"count": 2}
    assert host.kv_store == {"counter": "2"}
    for request in host.kv_requests:
        assert request["type"] == "kv"
        assert request["payload"]["type"] == "kv"
        assert request["payload"]["key"] == "counter"
        assert RFC3339_UTC.match(request["timestamp"])
    assert [r["payload"]["action"] for r in host.kv_requests] == ["get", "set", "get", "set", "get"]
    assert len({request["request_id"] for request in host.kv_requests}) == 5


async def test_fifty_concurrent_requests_are_answered(
    tmp_path: Path, test_plugin: Path, nursery: trio.Nursery
) -> None:
    """50 requests run at once: every handler waits on KV until all 50 have asked; all answer."""
    count = 50
    asked = 0
    everyone_asked = trio.Event()
    results: dict[int, dict[str, Any]] = {}

    async def barrier_answer(payload: dict[str, Any]) -> dict[str, Any]:
        # Only answer once all 50 handlers are waiting: a plugin that served requests one
        # at a time would never get here, and the test would fail on its deadline.
        nonlocal asked
        asked += 1
        if asked == count:
            everyone_asked.set()
        await everyone_asked.wait()
        return {"value": f"value-of-{payload['key']}"}

    async with plugin_process(test_plugin, tmp_path) as plugin:
        host = await start_host(nursery, plugin)
        host.kv_answer = barrier_answer

        async def one(n: int) -> None:
            results[n] = await host.http("GET", f"/echo/{n}")

        async with trio.open_nursery() as requests:
            for n in range(count):
                requests.start_soon(one, n)
    assert sorted(results) == list(range(count))
    for n, reply in results.items():
        assert json_body(reply) == {"n": str(n), "value": f"value-of-echo-{n}"}


async def test_handler_exception_is_a_500_and_the_plugin_keeps_serving(
    tmp_path: Path, test_plugin: Path, nursery: trio.Nursery
) -> None:
    """A raising handler answers 500 and logs its traceback; the next request is answered."""
    async with plugin_process(test_plugin, tmp_path) as plugin:
        host = await start_host(nursery, plugin)
        failed = await host.http("GET", "/boom")
        assert (failed["status"], json_body(failed)) == (
            500,
            {"error": "internal error in plugin sdk-test"},
        )
        assert (await host.http("GET", "/ok"))["status"] == 200
        await host.send("lifecycle", {"action": "shutdown"})
        assert await plugin.exit_status(3) == 0
    [error] = [r for r in plugin.stderr_records() if r["level"] == "error"]
    assert error["message"] == "unhandled error in handler for GET /boom"
    assert "RuntimeError: boom in handler" in error["exception"]


async def test_kv_error_reply_reaches_the_handler_as_kverror(
    tmp_path: Path, test_plugin: Path, nursery: trio.Nursery
) -> None:
    """A KV reply with `error` raises KVError carrying Toru's reason inside the handler."""

    async def refuse(payload: dict[str, Any]) -> dict[str, Any]:
        return {"error": "quota exceeded"}

    async with plugin_process(test_plugin, tmp_path) as plugin:
        host = await start_host(nursery, plugin)
        host.kv_answer = refuse
        assert json_body(await host.http("GET", "/kv")) == {"kv_error": "quota exceeded"}


async def test_kv_before_init_fails_as_not_connected(
    tmp_path: Path, test_plugin: Path, nursery: trio.Nursery
) -> None:
    """Without init there is no host connection for KV: the handler sees 'not connected to Toru'."""
    async with plugin_process(test_plugin, tmp_path) as plugin:
        host = await start_host(nursery, plugin, instance_id=None)
        assert json_body(await host.http("GET", "/kv")) == {"kv_error": "not connected to Toru"}
        assert host.kv_requests == []


async def test_tolerated_request_shapes_and_binary_replies(
    tmp_path: Path, test_plugin: Path, nursery: trio.Nursery
) -> None:
    """Flat payloads, body_base64, no payload.type and unknown fields are read; bytes go base64."""
    async with plugin_process(test_plugin, tmp_path) as plugin:
        host = await start_host(nursery, plugin)
        await host.connection.send({"type": "mystery", "request_id": None, "payload": {}})
        await host.connection.send(
            {
                "type": "http",
                "request_id": "flat-1",
                "unknown": [1],
                "payload": {"method": "POST", "path": "/body?x=1&x=2", "body_base64": "/wA="},
            }
        )
        await host.connection.send(
            {"type": "lifecycle", "request_id": "ping-1", "payload": {"action": "ping"}}
        )
        by_id = {message["request_id"]: message for message in await host.wait_for_unmatched(2)}
        assert json_body(by_id["flat-1"]["payload"]) == {
            "method": "POST",
            "query": {"x": "1"},
            "body": [255, 0],
        }
        assert by_id["ping-1"]["payload"]["action"] == "pong"
        binary = await host.http("GET", "/bytes")
        assert binary["body_base64"] == "/wA="
        assert binary["headers"]["content-type"] == "application/octet-stream"


async def test_protocol_error_closes_only_that_connection(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """An oversized frame on a second connection closes it; the host connection keeps working."""
    async with plugin_process(EXAMPLE, tmp_path) as plugin:
        host = await start_host(nursery, plugin)
        rogue = await trio.open_unix_socket(str(plugin.socket_path))
        try:
            await rogue.send_all(HEADER.pack(0xFFFFFFFF))
            with trio.fail_after(REPLY_DEADLINE):
                assert await rogue.receive_some(1024) == b""
        finally:
            with trio.move_on_after(1, shield=True):
                await rogue.aclose()
        reply = await host.request("lifecycle", {"action": "ping"})
        assert reply["payload"]["action"] == "pong"
        assert json_body(await host.http("GET", "/counter")) == {"count": 0}
    assert any("exceeds the 16 MiB limit" in line for line in plugin.stderr_lines())


# --- logs ----------------------------------------------------------------------------------


async def test_stderr_is_json_lines_with_timestamp_level_and_message(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """Every stderr line of a whole run is one JSON object with timestamp (Z), level, message."""
    async with plugin_process(EXAMPLE, tmp_path) as plugin:
        host = await start_host(nursery, plugin)
        await host.http("POST", "/counter/increment")
        await host.send("lifecycle", {"action": "shutdown"})
        assert await plugin.exit_status(3) == 0
    records = plugin.stderr_records()
    for record in records:
        assert RFC3339_UTC.match(record["timestamp"]), record
        assert record["level"] in {"debug", "info", "warning", "error"}
        assert isinstance(record["message"], str)
    messages = [record["message"] for record in records]
    assert "initialised by Toru" in messages
    assert "counter incremented" in messages
    assert messages[-1] == "plugin hello-plugin-python stopped"
