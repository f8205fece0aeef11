"""Hello World (Python): the smallest useful Toru plugin written with the SDK.

GET  /                   a greeting, Toru's instance id and the time
GET  /counter            {"count": N}, N kept in the plugin's key-value store
POST /counter/increment  adds one and returns {"count": N + 1}
"""

from __future__ import annotations

from typing import Any

import trio

from toru.sdk import Plugin, Request, utc_timestamp

plugin = Plugin(
    id="hello-plugin-python",
    name="Hello World (Python)",
    version="0.1.0",
    route="/hello-python",
    icon="🐍",
    author="The Toru developers",
)

COUNTER_KEY = "counter"
# Requests run concurrently: without the lock, two increments at the same instant
# could both read N and both write N + 1.
counter_lock = trio.Lock()


async def read_counter() -> int:
    """The counter from KV; 0 when it was never set (or holds something that is not a number)."""
    value = await plugin.kv.get(COUNTER_KEY)
    try:
        return int(value) if value is not None else 0
    except ValueError:
        plugin.log.warning("counter value is not a number; starting again from 0", value=value)
        return 0


@plugin.get("/")
async def index(request: Request) -> dict[str, Any]:
    greeting = f"Hello, {request.user}!" if request.user else "Hello from Python!"
    return {
        "message": f"{greeting} This page is served by a Toru plugin written with the SDK.",
        "instance_id": plugin.instance_id,
        "time": utc_timestamp(),
    }


@plugin.get("/counter")
async def counter(request: Request) -> dict[str, int]:
    return {"count": await read_counter()}


@plugin.post("/counter/increment")
async def increment(request: Request) -> dict[str, int]:
    async with counter_lock:
        count = await read_counter() + 1
        await plugin.kv.set(COUNTER_KEY, str(count))
    plugin.log.info("counter incremented", count=count, user=request.user)
    return {"count": count}


if __name__ == "__main__":
    plugin.run()
