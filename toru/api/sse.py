"""Server-sent events: framing, keep-alive comments and the response headers.

Used by the status stream (``GET /api/stream``) and a plugin's live log
(``GET /api/plugins/{id}/logs/stream``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import trio
from quart import Response

T = TypeVar("T")

#: A comment line this often keeps proxies from closing an idle stream.
KEEP_ALIVE = 15.0
KEEP_ALIVE_COMMENT = b": keep-alive\n\n"


def sse(event: str, data: Any) -> bytes:
    """One event: its name and a JSON payload on one ``data`` line."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def receive_or_idle(
    channel: trio.abc.ReceiveChannel[T], interval: float = KEEP_ALIVE
) -> AsyncIterator[T | None]:
    """Items from *channel*, and ``None`` after each *interval* without one.

    Ends when the channel is closed (the server or the source is going away).
    """
    while True:
        with trio.move_on_after(interval) as idle:
            try:
                item = await channel.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return
        yield None if idle.cancelled_caught else item


def event_stream(events: AsyncIterator[bytes]) -> Response:
    """A streaming ``text/event-stream`` response with no caching or proxy buffering."""
    response = Response(events, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass events through at once
    response.timeout = None
    return response
