"""Benchmark 1, the plugin hop: what routing a request through a plugin costs.

One real ``toru serve`` with the minimal SDK plugin (modern: one multiplexed
connection) and the legacy fixture (a fresh connection per exchange, one at a
time) enabled; one load generator, ``wrk -t1``, with the administrator's session
cookie; at each concurrency, in the same run:

- ``GET /api/health``: direct, no session lookup (the baseline of the ratio);
- ``GET /api/auth/me``: direct, with the session lookup every plugin request pays,
  so the hop itself can be told apart from authentication;
- ``GET /api/plugins/route/bench-sdk/`` and ``GET /api/plugins/route/legacy-python/``.

Reports requests/s, p50/p99 latency, and per plugin the throughput ratio
plugin ÷ direct and the added p50 (targets: ≥ 0.7 and ≤ 0.5 ms).

    .venv/bin/python -m tests.bench.hop [--duration 8] [--concurrency 1 16 64]
"""

from __future__ import annotations

from typing import Any

import trio

from tests.bench.common import (
    LEGACY_ID,
    LEGACY_ROUTE,
    SDK_ID,
    SDK_ROUTE,
    admin_session,
    build_sdk_plugin,
    cpu_seconds,
    emit_json,
    enable,
    install_legacy,
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

TARGETS = {
    "direct": "/api/health",
    "direct+auth": "/api/auth/me",
    "sdk plugin": f"/api/plugins/route/{SDK_ROUTE}/",
    "legacy plugin": f"/api/plugins/route/{LEGACY_ROUTE}/",
}
PLUGIN_TARGETS = ("sdk plugin", "legacy plugin")
THROUGHPUT_TARGET, ADDED_P50_TARGET_MS = 0.7, 0.5


async def main(duration: float, concurrencies: list[int], warmup: float) -> None:
    info = machine()
    print_machine(info)
    with workdir("hop") as root:
        build_sdk_plugin(root / "plugins")
        install_legacy(root / "plugins")
        enable(root / "plugins", [SDK_ID, LEGACY_ID])
        async with running_server(root) as server, admin_session(server.url) as (http, cookie):
            await wait_running(http, [SDK_ID, LEGACY_ID])
            statuses = {s["id"]: s for s in (await http.get("/api/plugins")).json()["plugins"]}
            plugin_pid = {
                "sdk plugin": statuses[SDK_ID]["pid"],
                "legacy plugin": statuses[LEGACY_ID]["pid"],
            }
            for name, path in TARGETS.items():
                note(f"warm-up {name}")
                await run_wrk(server.url, path, connections=16, duration=warmup, cookie=cookie)
            points: list[dict[str, Any]] = []
            for c in concurrencies:
                for name, path in TARGETS.items():
                    note(f"c={c} {name} ({duration:g} s)")
                    watched = [server.pid, plugin_pid.get(name, 0)]
                    before = [cpu_seconds(pid) for pid in watched]
                    w = await run_wrk(
                        server.url, path, connections=c, duration=duration, cookie=cookie
                    )
                    used = [cpu_seconds(pid) - b for pid, b in zip(watched, before, strict=True)]
                    points.append(
                        {
                            "target": name,
                            "path": path,
                            "concurrency": c,
                            "rps": round(w["rps"], 1),
                            "p50_ms": w["p50_us"] / 1000,
                            "p90_ms": w["p90_us"] / 1000,
                            "p99_ms": w["p99_us"] / 1000,
                            "max_ms": w["max_us"] / 1000,
                            "requests": w["requests"],
                            "errors": w["errors"],
                            # CPU per request, from /proc: steadier than req/s on a busy machine.
                            "server_cpu_ms": round(used[0] * 1000 / w["requests"], 3),
                            "plugin_cpu_ms": round(used[1] * 1000 / w["requests"], 3),
                        }
                    )
                    if w["errors"]:
                        note(f"  {w['errors']} errors: {w}")
    print_table(
        "Plugin hop: raw numbers (CPU ms per request: Toru's process, the plugin's process)",
        ["concurrency", "target", "req/s", "p50 ms", "p99 ms", "errors", "Toru CPU ms",
         "plugin CPU ms"],
        [
            [p["concurrency"], p["target"], p["rps"], round(p["p50_ms"], 2),
             round(p["p99_ms"], 2), p["errors"], round(p["server_cpu_ms"], 2),
             round(p["plugin_cpu_ms"], 2)]
            for p in points
        ],
    )  # fmt: skip
    ratios = []
    for c in concurrencies:
        at = {p["target"]: p for p in points if p["concurrency"] == c}
        for plugin in PLUGIN_TARGETS:
            for base in ("direct", "direct+auth"):
                ratio = at[plugin]["rps"] / at[base]["rps"]
                added = at[plugin]["p50_ms"] - at[base]["p50_ms"]
                ratios.append(
                    {
                        "concurrency": c,
                        "plugin": plugin,
                        "baseline": base,
                        "throughput_ratio": round(ratio, 3),
                        "added_p50_ms": round(added, 3),
                        "meets_targets": ratio >= THROUGHPUT_TARGET
                        and added <= ADDED_P50_TARGET_MS,
                    }
                )
    print_table(
        f"Plugin hop: plugin ÷ baseline (targets: ratio ≥ {THROUGHPUT_TARGET}, "
        f"added p50 ≤ {ADDED_P50_TARGET_MS} ms, against direct)",
        ["concurrency", "plugin", "baseline", "throughput ratio", "added p50 ms"],
        [
            [
                r["concurrency"],
                r["plugin"],
                r["baseline"],
                round(r["throughput_ratio"], 2),
                round(r["added_p50_ms"], 2),
            ]
            for r in ratios
        ],
    )
    emit_json(
        "hop",
        info,
        {"duration_s": duration, "concurrency": concurrencies, "wrk_threads": 1},
        {"points": points, "ratios": ratios},
    )


def cli() -> None:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--duration", type=float, default=8, help="seconds per point (8)")
    args.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    args.add_argument("--warmup", type=float, default=1, help="seconds of warm-up per target")
    ns = args.parse_args()
    trio.run(main, ns.duration, ns.concurrency, ns.warmup)


if __name__ == "__main__":
    cli()
