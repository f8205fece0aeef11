"""The smallest SDK plugin, for the benchmarks: one cheap route and a KV load generator.

GET /                                   {"ok": true}, at once (the plugin hop benchmark)
GET /kv?op=get|set&n=N&concurrency=C    N KV calls over the socket, C at a time; answers
                                        {"op", "n", "concurrency", "elapsed_s", "per_s"}
                                        timed inside the plugin (the KV benchmark)
"""

from __future__ import annotations

import time
from typing import Any

import trio

from toru.sdk import HTTPError, Plugin, Request

plugin = Plugin(id="bench-sdk", name="Bench (SDK)", version="1.0.0", route="/bench-sdk")

#: Keys the set loop cycles through: far under the 10 000 keys a plugin may store.
KEYS = 1000


@plugin.get("/")
async def index(request: Request) -> dict[str, bool]:
    return {"ok": True}


@plugin.get("/kv")
async def kv_loop(request: Request) -> dict[str, Any]:
    op = request.query.get("op", "get")
    n = int(request.query.get("n", "1000"))
    concurrency = max(1, int(request.query.get("concurrency", "1")))
    if op not in {"get", "set"}:
        raise HTTPError(400, f"op must be get or set, not {op!r}")
    await plugin.kv.set("k0", "x" * 64)  # something for the gets to find
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:  # the workers share one iterator: n calls in all
            key = f"k{i % KEYS}"
            if op == "get":
                await plugin.kv.get("k0")
            else:
                await plugin.kv.set(key, "x" * 64)

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    elapsed = time.perf_counter() - started
    return {
        "op": op,
        "n": n,
        "concurrency": concurrency,
        "elapsed_s": elapsed,
        "per_s": n / elapsed,
    }


if __name__ == "__main__":
    plugin.run()
