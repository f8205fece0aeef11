"""Benchmark 5, scale: 1, 10, 50 and 100 plugins enabled in one server.

The plugins are copies of tests/bench/plugins/tiny.py (standard library,
``"protocol": 2``, so Toru keeps a connection to each and pings it every 5 s),
installed as ``scale-001.binary``, ``scale-002.binary``, ...: distinct ids and
routes. All are enabled before the server starts. For each count:

- **to all running**: from spawning ``toru serve`` to the last plugin's
  ``ready`` event (its log line in ``plugin-supervisor.log``); the API is then
  asked to confirm that every one is ``running``;
- **core RSS**: VmRSS of the server process once all run (idle) and after the
  load below; the plugins' own RSS is given apart;
- **event-loop lag** during *duration* seconds of load: ``wrk -c10`` on the
  routes of 10 plugins (closed loop, as fast as they answer) while every plugin's
  route is requested once a second and the supervisor pings them. Measured two
  ways: inside the server, the overshoot of a ``trio.sleep(0.01)`` running in
  Toru's own loop (``tests/bench/lagprobe.py`` runs the real ``toru serve``
  with that one extra task); and from outside, the latency of
  ``GET /api/health`` sampled every 50 ms (a proxy: it includes queueing behind
  wrk's requests).

Targets at 100 plugins: ≤ 10 s to all running, ≤ 150 MB core RSS, ≤ 20 ms p99 lag.

    .venv/bin/python -m tests.bench.scale [--counts 1 10 50 100] [--duration 10]
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.bench.common import (
    admin_session,
    emit_json,
    enable,
    install_tiny,
    lua_rotating_paths,
    machine,
    note,
    parser,
    percentile,
    plugin_states,
    print_machine,
    print_table,
    rss_mb,
    run_wrk,
    running_server,
    wait_running,
    workdir,
)
from tests.bench.lagprobe import read_lag

LOADED = 10
HEALTH_EVERY = 0.05
#: The lag probe writes its samples twice a second: wait for the last ones.
FLUSH_WAIT = 0.6


def children_rss_mb(pid: int) -> float:
    """Sum of VmRSS over the direct children of *pid* (the plugin processes)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                total += rss_mb(int(entry.name))
        except (OSError, ValueError):
            continue
    return total


def ready_times(log_dir: Path) -> dict[str, float]:
    """plugin id -> Unix time of its first ``ready`` event, from plugin-supervisor.log."""
    ready: dict[str, float] = {}
    path = log_dir / "plugin-supervisor.log"
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "ready":
            when = dt.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
            ready.setdefault(record["plugin_id"], when.timestamp())
    return ready


async def load_phase(
    url: str, cookie: str, ids: list[str], duration: float
) -> tuple[dict[str, Any], list[float], int, int]:
    """wrk on 10 plugins, every plugin once a second, /api/health every 50 ms."""
    health: list[float] = []
    pinged = {"ok": 0, "failed": 0}
    wrk_result: dict[str, Any] = {}
    headers = {"Cookie": f"session_id={cookie}"}
    async with (
        httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as pinger,
        httpx.AsyncClient(base_url=url, timeout=30) as prober,
        trio.open_nursery() as nursery,
    ):

        async def ping(plugin_id: str) -> None:
            reply = await pinger.get(f"/api/plugins/route/{plugin_id}/")
            pinged["ok" if reply.status_code == 200 else "failed"] += 1

        async def ping_all() -> None:
            # Each plugin once a second, spread evenly; a slow answer delays no other ping.
            gap = 1 / len(ids)
            while True:
                for plugin_id in ids:
                    nursery.start_soon(ping, plugin_id)
                    await trio.sleep(gap)

        async def sample_health() -> None:
            while True:
                started = time.perf_counter()
                await prober.get("/api/health")
                health.append((time.perf_counter() - started) * 1000)
                await trio.sleep(HEALTH_EVERY)

        async def load() -> None:
            paths = [f"/api/plugins/route/{plugin_id}/" for plugin_id in ids[:LOADED]]
            wrk_result.update(
                await run_wrk(
                    url,
                    paths[0],
                    connections=LOADED,
                    duration=duration,
                    cookie=cookie,
                    lua=lua_rotating_paths(paths),
                )
            )
            nursery.cancel_scope.cancel()

        nursery.start_soon(ping_all)
        nursery.start_soon(sample_health)
        nursery.start_soon(load)
    return wrk_result, health, pinged["ok"], pinged["failed"]


async def one_count(count: int, duration: float) -> dict[str, Any]:
    ids = [f"scale-{i:03d}" for i in range(1, count + 1)]
    with workdir(f"scale{count}") as root:
        for plugin_id in ids:
            install_tiny(root / "plugins", plugin_id)
        enable(root / "plugins", ids)
        lag_file = root / "lag.jsonl"
        command = [sys.executable, "-m", "tests.bench.lagprobe"]
        spawned_wall = time.time()
        async with running_server(
            root, command=command, env={"TORU_BENCH_LAG_FILE": str(lag_file)}
        ) as server:
            health_up = time.monotonic() - server.spawned_at
            async with admin_session(server.url) as (http, cookie):
                await wait_running(http, ids, within=120)
                ready = ready_times(root / "logs")
                all_running = max(ready.values()) - spawned_wall
                await trio.sleep(2)  # idle: what it holds once everything has started
                rss_idle = rss_mb(server.pid)
                plugins_rss = children_rss_mb(server.pid)
                started = time.monotonic()
                wrk, health, pinged, failed = await load_phase(server.url, cookie, ids, duration)
                ended = time.monotonic()
                rss_loaded = rss_mb(server.pid)
                states = await plugin_states(http)
                still_running = sum(states.get(i) == "running" for i in ids)
            await trio.sleep(FLUSH_WAIT)
            lag, collections = read_lag(lag_file, started, ended)
    full = [ms for generation, ms in collections if generation == 2]
    return {
        "plugins": count,
        "to_all_running_s": round(all_running, 2),
        "to_health_s": round(health_up, 2),
        "core_rss_idle_mb": round(rss_idle, 1),
        "core_rss_loaded_mb": round(rss_loaded, 1),
        "plugins_rss_mb": round(plugins_rss, 1),
        "lag_samples": len(lag),
        "lag_p50_ms": round(percentile(lag, 50), 2),
        "lag_p99_ms": round(percentile(lag, 99), 2),
        "lag_max_ms": round(max(lag, default=float("nan")), 2),
        "gc_collections": len(collections),
        "gc_full_collections": len(full),
        "gc_max_ms": round(max((ms for _, ms in collections), default=0.0), 2),
        "health_samples": len(health),
        "health_p50_ms": round(percentile(health, 50), 2),
        "health_p99_ms": round(percentile(health, 99), 2),
        "load_rps": round(wrk["rps"], 1),
        "load_errors": wrk["errors"],
        "pinged_ok": pinged,
        "pinged_failed": failed,
        "running_after_load": still_running,
    }


async def main(counts: list[int], duration: float) -> None:
    info = machine()
    print_machine(info)
    results = []
    for count in counts:
        note(f"{count} plugins")
        result = await one_count(count, duration)
        note(json.dumps(result))
        results.append(result)
    print_table(
        "Scale: N tiny modern plugins (targets at 100: all running ≤ 10 s, core RSS ≤ 150 MB, "
        "p99 lag ≤ 20 ms)",
        ["plugins", "all running s", "core RSS idle MB", "core RSS loaded MB", "plugins RSS MB",
         "lag p50 ms", "lag p99 ms", "lag max ms", "longest GC ms", "health p50 ms",
         "health p99 ms",
         "load req/s", "errors"],
        [
            [r["plugins"], r["to_all_running_s"], r["core_rss_idle_mb"], r["core_rss_loaded_mb"],
             r["plugins_rss_mb"], r["lag_p50_ms"], r["lag_p99_ms"], r["lag_max_ms"],
             r["gc_max_ms"],
             r["health_p50_ms"], r["health_p99_ms"], r["load_rps"], r["load_errors"]]
            for r in results
        ],
    )  # fmt: skip
    emit_json(
        "scale",
        info,
        {"counts": counts, "duration_s": duration, "loaded_plugins": LOADED, "plugin": "tiny.py"},
        results,
    )


def cli() -> None:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--counts", type=int, nargs="+", default=[1, 10, 50, 100])
    args.add_argument("--duration", type=float, default=10, help="seconds of load (10)")
    ns = args.parse_args()
    trio.run(main, ns.counts, ns.duration)


if __name__ == "__main__":
    cli()
