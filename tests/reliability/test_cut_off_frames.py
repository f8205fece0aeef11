"""A request frame is never left half-written on a plugin's long-lived connection.

Found by the corpus (``stalls_mid_request.binary``): a plugin that stopped reading while a
large request was being written got the first part of that frame; Toru's timeout
cancelled the write, and everything written afterwards was read by the plugin as the rest
of it. The plugin then waited forever for bytes that never came, every request timed out,
and since the process lived on it was never restarted.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import attrs
import pytest
import trio

from toru.plugins import connection as connection_module
from toru.plugins.connection import ConnectionLost, PluginConnection, RequestTimeout
from toru.plugins.framing import FramedStream
from toru.plugins.messages import HttpRequest

BIG = b"x" * (2 * 1024 * 1024)  # far more than a Unix socket's buffer


@attrs.frozen
class Ends:
    connection: PluginConnection
    #: The plugin's end of the socket: it reads only when a test says so.
    plugin: FramedStream
    #: What the connection's reader ended with.
    lost: list[ConnectionLost]


@pytest.fixture
async def ends(nursery: trio.Nursery) -> AsyncIterator[Ends]:
    """A running PluginConnection over a socket pair."""
    ours, theirs = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    connection = PluginConnection(FramedStream(trio.SocketStream(ours)), "stalled")
    plugin = FramedStream(trio.SocketStream(theirs))
    lost: list[ConnectionLost] = []

    async def run() -> None:
        try:
            await connection.run()
        except ConnectionLost as exc:
            lost.append(exc)

    nursery.start_soon(run)
    yield Ends(connection, plugin, lost)
    await plugin.aclose()


async def test_a_frame_that_cannot_be_written_ends_the_connection(
    ends: Ends, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin reads nothing: the write is given up at the limit, the request times out,
    and the connection is closed with the reason, instead of staying out of step."""
    monkeypatch.setattr(connection_module, "FRAME_WRITE_LIMIT", 0.5)
    connection = ends.connection
    with pytest.raises(RequestTimeout, match="did not answer the POST /upload request"):
        await connection.request(HttpRequest("POST", "/upload", body=BIG), timeout=0.2)
    assert not connection.is_open
    with pytest.raises(ConnectionLost, match="a frame was cut off part-way"):
        await connection.request(HttpRequest("GET", "/"), timeout=5)
    with trio.fail_after(5):
        while not ends.lost:  # noqa: ASYNC110 - the reader is another task of the fixture
            await trio.sleep(0.01)  # it ends on the closed socket
    assert "a frame was cut off part-way" in str(ends.lost[0])


async def test_a_caller_that_gives_up_does_not_cut_its_frame(
    ends: Ends,
) -> None:
    """A request cancelled by its caller (a browser gone) while its large frame is being
    written: the frame is finished, the plugin reads it whole, and the next request on the
    same connection is answered."""
    connection, plugin = ends.connection, ends.plugin
    received: list[dict[str, object] | None] = []
    gave_up = trio.Event()

    async def caller() -> None:
        with trio.move_on_after(0.2):
            await connection.request(HttpRequest("POST", "/upload", body=BIG), timeout=30)
        gave_up.set()

    async def slow_plugin() -> None:
        await trio.sleep(0.5)  # starts reading only after the caller gave up
        received.append(await plugin.receive())

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller)
            nursery.start_soon(slow_plugin)
    assert gave_up.is_set()
    (first,) = received
    assert first is not None
    assert len(first["payload"]["payload"]["body"]) == len(BIG)  # type: ignore[index]

    async def answer() -> None:
        request = await plugin.receive()
        assert request is not None
        reply = {"type": "http", "request_id": request["request_id"], "payload": {"status": 204}}
        await plugin.send(reply)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer)
        reply = await connection.request(HttpRequest("GET", "/"), timeout=5)
    assert reply["payload"]["status"] == 204
    assert connection.is_open
