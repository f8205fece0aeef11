"""The two legacy-dialect fixtures behave as the old host's plugins did (see tests/fixtures).

These tests pin the fixtures themselves: Toru's legacy mode is tested against them, so they
must keep reproducing the old dialects, including the Rust SDK's frame-discarding quirk.
"""

from __future__ import annotations

import json
import signal
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from tests.support import RunningPlugin, plugin_connection, running_plugin
from toru.plugins.framing import FramedStream, encode_frame

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
INSTANCE_ID = "11111111-2222-3333-4444-555555555555"
# Long enough for a local Python process to answer many times over; only ever used to show
# that an answer does NOT come, so a slow machine cannot make a test fail.
SILENCE = 0.5


@attrs.frozen
class LegacyPlugin:
    binary: Path
    plugin_id: str
    route: str


PYTHON = LegacyPlugin(FIXTURES / "legacy_python.binary", "legacy-python", "/legacy-python")
RUST = LegacyPlugin(FIXTURES / "legacy_rust_dialect.binary", "legacy-rust-dialect", "/legacy-rust")


@pytest.fixture(params=[PYTHON, RUST], ids=["python", "rust-dialect"])
def legacy(request: pytest.FixtureRequest) -> LegacyPlugin:
    return request.param


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def lifecycle(action: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "lifecycle",
        "timestamp": now(),
        "request_id": None,
        "payload": {"type": "lifecycle", "action": action, **fields},
    }


def init_message(socket: Path) -> dict[str, Any]:
    return lifecycle(
        "init", instance_id=INSTANCE_ID, plugin_socket=str(socket), log_path="/dev/null"
    )


def ping(request_id: str = "ping-1") -> dict[str, Any]:
    message = lifecycle("ping")
    message["request_id"] = request_id
    return message


def http_request(
    request_id: str,
    method: str = "GET",
    path: str = "/",
    headers: dict[str, str] | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    """A request in the shape both old dialects read (PROTOCOL-FACTS, "HTTP")."""
    return {
        "type": "http",
        "timestamp": now(),
        "request_id": request_id,
        "payload": {
            "type": "http",
            "request_id": request_id,
            "payload": {"method": method, "path": path, "headers": headers or {}, "body": body},
        },
    }


def http_reply(message: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    """(status, headers, decoded JSON body) from either legacy reply shape."""
    payload = message["payload"]
    if "status" not in payload:  # the old Rust SDK: the response is JSON text in a request
        payload = json.loads(payload["payload"]["body"])
    return payload["status"], payload["headers"], json.loads(payload["body"])


def spawned(fixture: LegacyPlugin, tmp_path: Path) -> AbstractAsyncContextManager[RunningPlugin]:
    """The fixture running with its socket in *tmp_path*; killed and reaped on the way out."""
    return running_plugin(fixture.binary, tmp_path / "plugin.sock", fixture.plugin_id, INSTANCE_ID)


connection = plugin_connection


async def send_init(plugin: RunningPlugin) -> None:
    """Init as Toru sends it to a legacy plugin: its own connection (connect, write, close)."""
    async with connection(plugin) as framed:
        await framed.send(init_message(plugin.socket))


async def receive(framed: FramedStream) -> dict[str, Any]:
    with trio.fail_after(5):
        message = await framed.receive()
    assert message is not None, "the plugin closed the connection without answering"
    return message


async def assert_silent(framed: FramedStream) -> None:
    """Nothing arrives on *framed* for SILENCE seconds."""
    with trio.move_on_after(SILENCE) as waited:
        message = await framed.receive()
    assert waited.cancelled_caught, f"expected no answer, got {message!r}"


async def exchange(plugin: RunningPlugin, request: dict[str, Any]) -> dict[str, Any]:
    """One legacy exchange: a fresh connection, the request, its reply, close."""
    async with connection(plugin) as framed:
        await framed.send(request)
        return await receive(framed)


async def test_metadata_declares_no_protocol(legacy: LegacyPlugin) -> None:
    """--metadata prints the fixture's id and route, and no protocol field (legacy mode)."""
    result = await trio.run_process([str(legacy.binary), "--metadata"], capture_stdout=True)
    metadata = json.loads(result.stdout)
    assert metadata["id"] == legacy.plugin_id
    assert metadata["route"] == legacy.route
    assert {"name", "version", "icon"} <= metadata.keys()
    assert "protocol" not in metadata


async def test_get_root_on_a_fresh_connection_after_init(
    legacy: LegacyPlugin, tmp_path: Path
) -> None:
    """After init on its own connection, GET / on a fresh connection answers 200 JSON."""
    async with spawned(legacy, tmp_path) as plugin:
        await send_init(plugin)
        reply = await exchange(plugin, http_request("r1"))
    assert reply["request_id"] == "r1"
    status, _, body = http_reply(reply)
    assert status == 200
    assert "legacy" in body["message"]


async def test_python_dialect_replies_flat(tmp_path: Path) -> None:
    """The old Python dialect's reply: flat status/headers/body, no payload.type, +00:00 time."""
    async with spawned(PYTHON, tmp_path) as plugin:
        reply = await exchange(plugin, http_request("r1"))
    assert set(reply["payload"]) == {"status", "headers", "body"}
    assert reply["payload"]["status"] == 200
    assert isinstance(reply["payload"]["body"], str)
    assert reply["timestamp"].endswith("+00:00")


async def test_rust_dialect_replies_with_json_text_in_a_request(tmp_path: Path) -> None:
    """The old Rust SDK's reply: an http request message whose body is the response as JSON text."""
    async with spawned(RUST, tmp_path) as plugin:
        reply = await exchange(plugin, http_request("r1"))
    payload = reply["payload"]
    assert payload["type"] == "http"
    assert payload["request_id"] == "r1"
    assert payload["payload"]["path"] == ""
    assert "status" not in payload
    inner = json.loads(payload["payload"]["body"])
    assert inner["status"] == 200
    assert json.loads(inner["body"])["message"]


async def test_echo_shows_what_was_sent(legacy: LegacyPlugin, tmp_path: Path) -> None:
    """/echo answers the method, path (with query), headers and body it received."""
    request = http_request("r1", "POST", "/echo/x?q=1", headers={"x-probe": "yes"}, body='{"a": 1}')
    async with spawned(legacy, tmp_path) as plugin:
        status, _, body = http_reply(await exchange(plugin, request))
    assert status == 200
    assert body == {
        "method": "POST",
        "path": "/echo/x?q=1",
        "headers": {"x-probe": "yes"},
        "body": '{"a": 1}',
    }


async def test_unknown_path_is_404(legacy: LegacyPlugin, tmp_path: Path) -> None:
    """A path the fixture does not serve answers 404 with a JSON error."""
    async with spawned(legacy, tmp_path) as plugin:
        status, _, body = http_reply(await exchange(plugin, http_request("r1", path="/nope")))
    assert status == 404
    assert "nope" in body["error"]


async def test_ping_is_never_answered(legacy: LegacyPlugin, tmp_path: Path) -> None:
    """A ping gets no reply, and the plugin then answers a request on the same connection."""
    async with spawned(legacy, tmp_path) as plugin, connection(plugin) as framed:
        await framed.send(ping())
        await assert_silent(framed)
        await framed.send(http_request("r1"))
        reply = await receive(framed)
    assert reply["request_id"] == "r1"


async def test_serves_one_connection_at_a_time(legacy: LegacyPlugin, tmp_path: Path) -> None:
    """While one connection is open a request on a second waits; closing the first frees it."""
    async with spawned(legacy, tmp_path) as plugin, AsyncExitStack() as connections:
        first = await connections.enter_async_context(connection(plugin))
        await first.send(http_request("first"))
        assert (await receive(first))["request_id"] == "first"
        second = await connections.enter_async_context(connection(plugin))
        await second.send(http_request("second"))
        await assert_silent(second)
        await first.aclose()
        assert (await receive(second))["request_id"] == "second"


async def test_shutdown_exits_zero(legacy: LegacyPlugin, tmp_path: Path) -> None:
    """Shutdown on its own connection makes the fixture exit with status 0."""
    async with spawned(legacy, tmp_path) as plugin:
        async with connection(plugin) as framed:
            await framed.send(lifecycle("shutdown"))
        with trio.fail_after(5):
            assert await plugin.process.wait() == 0


async def test_sigterm_exits_zero(legacy: LegacyPlugin, tmp_path: Path) -> None:
    """SIGTERM ends the fixture with status 0."""
    async with spawned(legacy, tmp_path) as plugin:
        await send_init(plugin)  # proves it is up and listening before the signal
        plugin.process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            assert await plugin.process.wait() == 0


async def test_rust_dialect_loses_a_request_pipelined_behind_init(tmp_path: Path) -> None:
    """Init and GET in one write: the GET is discarded; the same GET on a fresh connection works."""
    async with spawned(RUST, tmp_path) as plugin:
        async with connection(plugin) as framed:
            await framed.stream.send_all(
                encode_frame(init_message(plugin.socket)) + encode_frame(http_request("lost"))
            )
            await assert_silent(framed)
            # Still reading this connection: a request sent on its own now is answered, so
            # "lost" was dropped, not merely delayed (the fixture answers in order).
            await framed.send(http_request("later"))
            assert (await receive(framed))["request_id"] == "later"
        reply = await exchange(plugin, http_request("fresh"))
    assert reply["request_id"] == "fresh"
    assert http_reply(reply)[0] == 200


async def test_python_dialect_answers_a_request_pipelined_behind_init(tmp_path: Path) -> None:
    """The Python dialect has no such quirk: init and GET in one write, the GET is answered."""
    async with spawned(PYTHON, tmp_path) as plugin, connection(plugin) as framed:
        await framed.stream.send_all(
            encode_frame(init_message(plugin.socket)) + encode_frame(http_request("kept"))
        )
        assert (await receive(framed))["request_id"] == "kept"


async def test_rust_dialect_ignores_a_payload_without_type(tmp_path: Path) -> None:
    """A request whose payload lacks payload.type gets no reply; with it, the same is answered."""
    untyped = http_request("untyped")
    del untyped["payload"]["type"]
    async with spawned(RUST, tmp_path) as plugin, connection(plugin) as framed:
        await framed.send(untyped)
        await assert_silent(framed)
        await framed.send(http_request("typed"))
        assert (await receive(framed))["request_id"] == "typed"
