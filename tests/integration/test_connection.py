"""Connections to a plugin over real Unix sockets: multiplexing, failures, legacy exchanges."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from toru.plugins.connection import (
    ConnectionLost,
    LegacyConnection,
    PluginConnection,
    QueueFull,
    RequestTimeout,
)
from toru.plugins.framing import FramedStream
from toru.plugins.messages import HttpRequest, Init, KvReply, KvRequest, decode_http_reply

Frame = dict[str, Any]


def http_reply(request: Frame, body: str) -> Frame:
    return {
        "type": "http",
        "request_id": request["request_id"],
        "payload": {"type": "http", "status": 200, "headers": {}, "body": body},
    }


Pair = Callable[..., Awaitable[tuple[PluginConnection, FramedStream]]]


@pytest.fixture
async def pair(nursery: trio.Nursery) -> AsyncIterator[Pair]:
    """Make a PluginConnection running in the test's nursery, and the plugin's socket end."""
    plugin_ends: list[FramedStream] = []

    async def make(
        kv_handler: Callable[[KvRequest], Awaitable[KvReply]] | None = None,
    ) -> tuple[PluginConnection, FramedStream]:
        ours, theirs = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        connection = PluginConnection(FramedStream(trio.SocketStream(ours)), "fake", kv_handler)

        async def run() -> None:
            with contextlib.suppress(ConnectionLost):
                await connection.run()

        nursery.start_soon(run)
        plugin_ends.append(FramedStream(trio.SocketStream(theirs)))
        return connection, plugin_ends[-1]

    yield make
    for end in plugin_ends:
        await end.aclose()


async def get(connection: PluginConnection, path: str, timeout: float = 5) -> str:
    frame = await connection.request(HttpRequest("GET", path), timeout=timeout)
    return decode_http_reply(frame).body.decode()


async def test_hundred_concurrent_requests_answered_out_of_order(pair: Pair) -> None:
    """Each of 100 callers gets its own reply although the plugin answers in reverse order."""
    connection, plugin = await pair()
    results: dict[int, str] = {}

    async def caller(i: int) -> None:
        results[i] = await get(connection, f"/item/{i}")

    async def plugin_side() -> None:
        received = [await plugin.receive() for _ in range(100)]
        for request in reversed(received):
            assert request is not None
            await plugin.send(http_reply(request, request["payload"]["payload"]["path"]))

    async with trio.open_nursery() as inner:
        inner.start_soon(plugin_side)
        for i in range(100):
            inner.start_soon(caller, i)
    assert results == {i: f"/item/{i}" for i in range(100)}


async def test_dropped_connection_fails_every_pending_request(pair: Pair) -> None:
    """When the plugin goes away, all waiting callers fail at once with ConnectionLost."""
    connection, plugin = await pair()
    errors: list[BaseException] = []

    async def caller() -> None:
        try:
            await get(connection, "/", timeout=30)
        except ConnectionLost as exc:
            errors.append(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as inner:
            for _ in range(10):
                inner.start_soon(caller)
            for _ in range(10):
                assert await plugin.receive() is not None
            await plugin.aclose()
    assert len(errors) == 10
    assert "plugin 'fake': the plugin closed the connection" in str(errors[0])
    assert not connection.is_open
    with pytest.raises(ConnectionLost):
        await get(connection, "/")


async def test_timeout_leaves_the_connection_usable(pair: Pair, nursery: trio.Nursery) -> None:
    """A request that times out fails alone; its late reply is dropped; the next one works."""
    connection, plugin = await pair()
    with pytest.raises(RequestTimeout, match=r"did not answer the GET /slow request within 0\.2 s"):
        await get(connection, "/slow", timeout=0.2)
    late = await plugin.receive()
    assert late is not None
    await plugin.send(http_reply(late, "too late"))

    async def answer_next() -> None:
        request = await plugin.receive()
        assert request is not None
        await plugin.send(http_reply(request, "on time"))

    nursery.start_soon(answer_next)
    assert await get(connection, "/fast") == "on time"
    assert connection.is_open


async def test_kv_requests_from_the_plugin_reach_the_handler(pair: Pair) -> None:
    """A plugin's KV request (any action case) is answered with the same request id."""
    seen: list[KvRequest] = []

    async def handler(request: KvRequest) -> KvReply:
        seen.append(request)
        return KvReply(value="42")

    _, plugin = await pair(handler)
    await plugin.send(
        {"type": "kv", "request_id": "kv-1", "payload": {"action": "Get", "key": "counter"}}
    )
    reply = await plugin.receive()
    assert reply is not None
    assert reply["request_id"] == "kv-1"
    assert reply["payload"] == {"type": "kv", "value": "42"}
    assert seen == [KvRequest("get", "counter", None)]


async def test_bad_kv_request_and_failing_handler_get_error_replies(pair: Pair) -> None:
    """A malformed KV request or a crashing handler is an error reply, not a dead connection."""

    async def handler(request: KvRequest) -> KvReply:
        raise RuntimeError("disk on fire")

    connection, plugin = await pair(handler)
    await plugin.send({"type": "kv", "request_id": "a", "payload": {"action": "drop"}})
    first = await plugin.receive()
    await plugin.send({"type": "kv", "request_id": "b", "payload": {"action": "get", "key": "k"}})
    second = await plugin.receive()
    assert first is not None
    assert second is not None
    assert "kv action 'drop' is not one of" in first["payload"]["error"]
    assert second["payload"]["error"] == "internal error in Toru's storage; see the server log"
    assert "disk on fire" not in second["payload"]["error"]
    assert connection.is_open


async def test_garbage_frame_drops_the_connection_with_the_reason(pair: Pair) -> None:
    """A frame announcing 4 GiB ends the connection; pending callers learn why."""
    connection, plugin = await pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as inner:

            async def caller() -> None:
                with pytest.raises(ConnectionLost, match="exceeds the 16 MiB limit"):
                    await get(connection, "/", timeout=30)

            inner.start_soon(caller)
            await plugin.receive()
            await plugin.stream.send_all(b"\xff\xff\xff\xff")


@pytest.fixture
async def legacy_plugin(tmp_path: Path) -> AsyncIterator[tuple[Path, dict[str, int]]]:
    """A one-connection-at-a-time plugin that records how many connections overlap."""
    path = tmp_path / "legacy.sock"
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await listener.bind(str(path))
    listener.listen(16)
    stats = {"connections": 0, "concurrent": 0, "max_concurrent": 0, "inits": 0}
    release = trio.Event()

    async def serve() -> None:
        while True:
            sock, _ = await listener.accept()
            stats["connections"] += 1
            stats["concurrent"] += 1
            stats["max_concurrent"] = max(stats["max_concurrent"], stats["concurrent"])
            framed = FramedStream(trio.SocketStream(sock))
            request = await framed.receive()
            if request is not None and request["payload"].get("action") == "init":
                stats["inits"] += 1
            elif request is not None:
                path_ = request["payload"]["payload"]["path"]
                if path_ == "/block":
                    await release.wait()
                await framed.send(http_reply(request, path_))
            await framed.aclose()
            stats["concurrent"] -= 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        stats["release"] = release  # type: ignore[assignment]
        yield path, stats
        nursery.cancel_scope.cancel()
    listener.close()


async def test_legacy_exchanges_run_one_at_a_time_each_on_its_own_connection(
    legacy_plugin: tuple[Path, dict[str, int]],
) -> None:
    """20 concurrent requests to a legacy plugin: 20 connections, never two at once."""
    path, stats = legacy_plugin
    connection = LegacyConnection(path, "old")
    await connection.notify(Init("i", str(path), ""))
    results: dict[int, str] = {}

    async def caller(i: int) -> None:
        frame = await connection.request(HttpRequest("GET", f"/{i}"), timeout=10)
        results[i] = decode_http_reply(frame).body.decode()

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(caller, i)
    assert results == {i: f"/{i}" for i in range(20)}
    assert stats["inits"] == 1
    assert stats["connections"] == 21
    assert stats["max_concurrent"] == 1
    assert not connection.supports_ping


async def test_legacy_queue_is_bounded_and_waiting_counts_toward_the_timeout(
    legacy_plugin: tuple[Path, dict[str, int]],
) -> None:
    """Behind a stuck exchange, waiters time out on their own deadline; past the bound, refusal."""
    path, stats = legacy_plugin
    connection = LegacyConnection(path, "old", max_waiting=2)
    outcomes: list[str] = []

    async def caller(path_: str, timeout: float) -> None:
        try:
            await connection.request(HttpRequest("GET", path_), timeout=timeout)
            outcomes.append("ok")
        except RequestTimeout:
            outcomes.append("timeout")
        except QueueFull:
            outcomes.append("full")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller, "/block", 10)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(caller, "/a", 0.3)
        nursery.start_soon(caller, "/b", 0.3)
        await trio.testing.wait_all_tasks_blocked()
        await caller("/c", 0.3)
        assert outcomes == ["full"]
        await trio.sleep(0.5)  # the two waiters' own 0.3 s deadlines pass
        assert outcomes == ["full", "timeout", "timeout"]
        stats["release"].set()  # type: ignore[attr-defined]
    assert outcomes[-1] == "ok"
    assert await connection.request(HttpRequest("GET", "/after"), timeout=5)
