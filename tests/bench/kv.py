"""Benchmark 4, KV: key-value operations per second, over the socket and through the web API.

Durability stays on (WAL, ``synchronous=FULL``: every acknowledged ``set`` is
on disk). Three measurements, one server:

- **socket (SDK)**: the minimal SDK plugin's ``GET /kv?op=&n=&concurrency=``
  route runs N ``plugin.kv.get``/``set`` calls over its socket, C at a time,
  and reports the time it measured itself (targets: ≥ 5 000 get/s,
  ≥ 2 000 set/s);
- **web API**: ``POST /api/plugins/bench-sdk/kv`` from wrk (one thread, C
  connections, the admin's session), ``get`` of one key and ``set`` cycling
  over 1 000 keys;
- **SQLite alone**: the same upsert, one transaction each, straight on a
  connection with Toru's pragmas in the same directory: the disk's floor for
  one-write-per-commit, without Toru.

    .venv/bin/python -m tests.bench.kv [--gets 5000] [--sets 2000] [--duration 5]
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import trio

from tests.bench.common import (
    SDK_ID,
    SDK_ROUTE,
    admin_session,
    build_sdk_plugin,
    emit_json,
    enable,
    machine,
    note,
    parser,
    print_machine,
    print_table,
    run_wrk,
    running_server,
    wait_running,
    workdir,
)
from toru.db import connect

GET_TARGET, SET_TARGET = 5000, 2000
VALUE = "x" * 64
WEB_GET = (
    'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
    'wrk.body = \'{"action": "get", "key": "k0"}\'\n'
)
WEB_SET = (
    'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
    "local i = 0\n"
    "request = function()\n  i = (i + 1) % 1000\n"
    '  return wrk.format(nil, nil, nil, \'{"action": "set", "key": "k\' .. i .. '
    f'\'", "value": "{VALUE}"}}\')\nend\n'
)


def sqlite_floor(directory: Path, seconds: float = 2.0) -> float:
    """Upserts per second, one transaction each, with Toru's pragmas (WAL, synchronous=FULL)."""
    conn = connect(directory / "floor.db")
    try:
        conn.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)")
        done, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO kv VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                (f"k{done % 1000}", VALUE),
            )
            conn.execute("COMMIT")
            done += 1
        return done / elapsed
    finally:
        conn.close()


async def main(gets: int, sets: int, duration: float, concurrencies: list[int]) -> None:
    info = machine()
    print_machine(info)
    socket_rows: list[dict[str, Any]] = []
    web_rows: list[dict[str, Any]] = []
    with workdir("kv") as root:
        build_sdk_plugin(root / "plugins")
        enable(root / "plugins", [SDK_ID])
        async with running_server(root) as server, admin_session(server.url) as (http, cookie):
            await wait_running(http, [SDK_ID])
            path = f"/api/plugins/route/{SDK_ROUTE}/kv"
            await http.get(path, params={"op": "set", "n": 200})  # warm-up
            for op, n in (("get", gets), ("set", sets)):
                for c in concurrencies:
                    reply = await http.get(path, params={"op": op, "n": n, "concurrency": c})
                    reply.raise_for_status()
                    data = reply.json()
                    note(f"socket {op} c={c}: {data['per_s']:.0f}/s")
                    socket_rows.append(
                        {"op": op, "concurrency": c, "n": n, "per_s": round(data["per_s"])}
                    )
            kv_path = f"/api/plugins/{SDK_ID}/kv"
            for op, lua in (("get", WEB_GET), ("set", WEB_SET)):
                for c in concurrencies:
                    w = await run_wrk(
                        server.url, kv_path, connections=c, duration=duration,
                        cookie=cookie, lua=lua,
                    )  # fmt: skip
                    note(f"web {op} c={c}: {w['rps']:.0f}/s, {w['errors']} errors")
                    web_rows.append(
                        {
                            "op": op,
                            "concurrency": c,
                            "per_s": round(w["rps"]),
                            "p50_ms": w["p50_us"] / 1000,
                            "p99_ms": w["p99_us"] / 1000,
                            "errors": w["errors"],
                        }
                    )
        floor = await trio.to_thread.run_sync(sqlite_floor, root)
    print_table(
        f"KV over the socket, SDK calls timed in the plugin (targets: get ≥ {GET_TARGET}/s, "
        f"set ≥ {SET_TARGET}/s)",
        ["op", "in flight", "calls", "ops/s"],
        [[r["op"], r["concurrency"], r["n"], r["per_s"]] for r in socket_rows],
    )
    print_table(
        "KV through the web API (POST /api/plugins/{id}/kv, wrk)",
        ["op", "connections", "ops/s", "p50 ms", "p99 ms", "errors"],
        [
            [
                r["op"],
                r["concurrency"],
                r["per_s"],
                round(r["p50_ms"], 2),
                round(r["p99_ms"], 2),
                r["errors"],
            ]
            for r in web_rows
        ],
    )
    print_table(
        "SQLite alone: one upsert per transaction, WAL + synchronous=FULL, same disk",
        ["commits/s"],
        [[round(floor)]],
    )
    emit_json(
        "kv",
        info,
        {"gets": gets, "sets": sets, "duration_s": duration, "concurrency": concurrencies},
        {"socket": socket_rows, "web": web_rows, "sqlite_commits_per_s": round(floor)},
    )


def cli() -> None:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--gets", type=int, default=5000, help="get calls per socket run (5000)")
    args.add_argument("--sets", type=int, default=2000, help="set calls per socket run (2000)")
    args.add_argument("--duration", type=float, default=5, help="seconds per web API point (5)")
    args.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    ns = args.parse_args()
    trio.run(main, ns.gets, ns.sets, ns.duration, ns.concurrency)


if __name__ == "__main__":
    cli()
