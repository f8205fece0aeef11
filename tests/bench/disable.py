"""Benchmark 3, disable latency: how long ``POST /api/plugins/{id}/disable`` takes to answer.

Disable answers once the plugin's process is gone, so its latency is the
shutdown ladder: the ``shutdown`` message, 5 s, SIGTERM, 2 s, SIGKILL. Plugins:

- ``bench-sdk`` (the minimal SDK plugin) and ``legacy-python`` (the legacy
  fixture): cooperative, they exit on the message (target ≤ 100 ms);
- ``tiny``: the tiny standard-library plugin, cooperative too;
- ``tiny-ignore-shutdown``: ignores the message, exits on SIGTERM (≈ 5 s);
- ``tiny-ignore-sigterm``: ignores both, only SIGKILL ends it (≈ 7 s).

Each is enabled again (and waited for) between repetitions; the ``stopped``
event's ``how`` says which rung ended it and its ``duration_ms`` is the ladder
alone (``ladder ms``), without the HTTP request and the writes around it.

    .venv/bin/python -m tests.bench.disable [--reps 5] [--slow-reps 3]
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import trio

from tests.bench.common import (
    LEGACY_ID,
    SDK_ID,
    admin_session,
    build_sdk_plugin,
    emit_json,
    enable,
    install_legacy,
    install_tiny,
    machine,
    note,
    parser,
    print_machine,
    print_table,
    running_server,
    summary_ms,
    wait_running,
    workdir,
)

TINY = ("tiny", "tiny-ignore-shutdown", "tiny-ignore-sigterm")
COOPERATIVE = (SDK_ID, LEGACY_ID, "tiny")
EXPECTED = {"tiny-ignore-shutdown": "≈ 5 000", "tiny-ignore-sigterm": "≈ 7 000"}


async def disable_once(http: httpx.AsyncClient, plugin_id: str) -> tuple[float, dict[str, Any]]:
    await wait_running(http, [plugin_id], within=30)
    started = time.monotonic()
    reply = await http.post(f"/api/plugins/{plugin_id}/disable")
    elapsed = time.monotonic() - started
    assert reply.status_code == 200, reply.text
    assert reply.json()["state"] == "stopped", reply.text
    events = (await http.get(f"/api/plugins/{plugin_id}/events", params={"limit": 10})).json()
    stopped = next(e["details"] for e in events["events"] if e["event"] == "stopped")
    enabled = await http.post(f"/api/plugins/{plugin_id}/enable")
    assert enabled.status_code == 200, enabled.text
    return elapsed, stopped


async def main(reps: int, slow_reps: int) -> None:
    info = machine()
    print_machine(info)
    plugins = [*COOPERATIVE, *TINY[1:]]
    results: dict[str, Any] = {}
    with workdir("disable") as root:
        build_sdk_plugin(root / "plugins")
        install_legacy(root / "plugins")
        for plugin_id in TINY:
            install_tiny(root / "plugins", plugin_id)
        enable(root / "plugins", plugins)
        async with running_server(root) as server, admin_session(server.url) as (http, _):
            await wait_running(http, plugins)
            for plugin_id in plugins:
                times, ladders, hows = [], [], []
                for i in range(reps if plugin_id in COOPERATIVE else slow_reps):
                    elapsed, stopped = await disable_once(http, plugin_id)
                    times.append(elapsed)
                    hows.append(stopped["how"])
                    ladders.append(stopped["duration_ms"] / 1000)
                    note(f"{plugin_id} #{i + 1}: {elapsed * 1000:.0f} ms ({stopped['how']})")
                results[plugin_id] = {
                    **summary_ms(times),
                    "ladder_median_ms": summary_ms(ladders)["median_ms"],
                    "how": sorted(set(hows)),
                }
    print_table(
        "Disable latency: POST /disable until it answers (target ≤ 100 ms when cooperative)",
        ["plugin", "ended by", "n", "median ms", "max ms", "ladder ms", "expected ms"],
        [
            [
                p,
                ", ".join(r["how"]),
                r["n"],
                r["median_ms"],
                r["max_ms"],
                r["ladder_median_ms"],
                EXPECTED.get(p, "≤ 100"),
            ]
            for p, r in results.items()
        ],
    )
    emit_json("disable", info, {"reps": reps, "slow_reps": slow_reps}, results)


def cli() -> None:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--reps", type=int, default=5, help="repetitions, cooperative plugins (5)")
    args.add_argument("--slow-reps", type=int, default=3, help="repetitions, the others (3)")
    ns = args.parse_args()
    trio.run(main, ns.reps, ns.slow_reps)


if __name__ == "__main__":
    cli()
