"""Benchmark 6, footprint: idle memory of the core and cold start to the first 200.

- **idle core RSS** (VmRSS of the ``toru serve`` process, after it has been idle
  for *settle* seconds): with no plugins; again after one login (argon2id
  hashes with 64 MiB of memory); and with the two examples enabled, the
  Python one (``toru plugin build examples/hello-plugin-python``) and the
  Rust one (``examples/hello-plugin-rust/build.sh``, skipped without cargo).
  The examples' own RSS is given apart;
- **cold start**: a fresh data directory (no database yet) and no plugins,
  from spawning ``toru serve`` to the first 200 on ``/api/health`` (polled
  every 10 ms); *starts* times, the median reported.

Targets: ≤ 70 MB idle RSS, ≤ 1.5 s cold start.

    .venv/bin/python -m tests.bench.footprint [--starts 5] [--settle 3]
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import trio

from tests.bench.common import (
    REPO,
    Server,
    admin_session,
    build_sdk_plugin,
    emit_json,
    enable,
    machine,
    note,
    parser,
    print_machine,
    print_table,
    rss_mb,
    running_server,
    summary_ms,
    wait_running,
    workdir,
)

PYTHON_EXAMPLE = REPO / "examples" / "hello-plugin-python"
RUST_BUILD = REPO / "examples" / "hello-plugin-rust" / "build.sh"
RSS_TARGET_MB, COLD_START_TARGET_S = 70, 1.5


def install_examples(plugins_dir: Path) -> list[str]:
    build_sdk_plugin(plugins_dir, PYTHON_EXAMPLE)
    ids = ["hello-plugin-python"]
    rust = subprocess.run(
        [str(RUST_BUILD), str(plugins_dir)], capture_output=True, text=True, check=False
    )
    if rust.returncode == 0:
        ids.append("hello-plugin-rust")
    else:
        note(f"the Rust example is left out: build.sh exited {rust.returncode}")
    return ids


async def idle_rss(settle: float, with_examples: bool) -> dict[str, Any]:
    with workdir("footprint") as root:
        ids = install_examples(root / "plugins") if with_examples else []
        enable(root / "plugins", ids)
        async with running_server(root) as server:
            if not ids:
                await trio.sleep(settle)
                before_login = rss_mb(server.pid)
            async with admin_session(server.url) as (http, _):
                plugins: dict[str, float] = {}
                if ids:
                    await wait_running(http, ids)
                    for status in (await http.get("/api/plugins")).json()["plugins"]:
                        plugins[status["id"]] = round(rss_mb(status["pid"]), 1)
            await trio.sleep(settle)
            after = rss_mb(server.pid)
    result: dict[str, Any] = {"plugins": ids, "core_rss_mb": round(after, 1)}
    if not ids:
        result["core_rss_before_login_mb"] = round(before_login, 1)
    result["plugin_rss_mb"] = plugins
    return result


async def cold_starts(starts: int) -> list[float]:
    seconds = []
    for i in range(starts):
        with workdir("cold") as root:
            server = Server(root)
            try:
                await server.spawn()
                seconds.append(await server.wait_healthy(poll=0.01))
            finally:
                await server.stop()
        note(f"cold start #{i + 1}: {seconds[-1] * 1000:.0f} ms")
    return seconds


async def main(starts: int, settle: float) -> None:
    info = machine()
    print_machine(info)
    bare = await idle_rss(settle, with_examples=False)
    examples = await idle_rss(settle, with_examples=True)
    cold = summary_ms(await cold_starts(starts))
    rows = [
        ["idle core RSS, no plugins, before any login", bare["core_rss_before_login_mb"], "MB"],
        ["idle core RSS, no plugins, after one login", bare["core_rss_mb"], "MB"],
        [f"idle core RSS, {' + '.join(examples['plugins'])}", examples["core_rss_mb"], "MB"],
    ]
    rows += [[f"  {p} (its own process)", mb, "MB"] for p, mb in examples["plugin_rss_mb"].items()]
    rows += [
        [f"cold start to first 200, median of {cold['n']}", cold["median_ms"], "ms"],
        ["cold start, min – max", f"{cold['min_ms']:.0f} – {cold['max_ms']:.0f}", "ms"],
    ]
    print_table(
        f"Footprint (targets: idle RSS ≤ {RSS_TARGET_MB} MB, cold start ≤ "
        f"{COLD_START_TARGET_S * 1000:.0f} ms)",
        ["what", "value", "unit"],
        rows,
    )
    emit_json(
        "footprint",
        info,
        {"starts": starts, "settle_s": settle},
        {"no_plugins": bare, "examples": examples, "cold_start": cold},
    )


def cli() -> None:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--starts", type=int, default=5, help="cold starts (5)")
    args.add_argument("--settle", type=float, default=3, help="idle seconds before RSS (3)")
    ns = args.parse_args()
    trio.run(main, ns.starts, ns.settle)


if __name__ == "__main__":
    cli()
