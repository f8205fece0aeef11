"""Clients that go away right after asking for a transition, against a real ``toru serve``.

A transition belongs to the supervisor, not to the HTTP handler that asked for it
(``toru/plugins/supervisor.py``): a client that closes its connection at once may cut its
request off before it reaches the supervisor, or leave a transition to complete without
anyone waiting, but never leaves half of one (a process without a runner, a runner
without a process, a second process).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.reliability.helpers import (
    Toru,
    cmdline_mentions,
    running_toru,
    sdk_plugin,
    short_tmpdir,
    write_config,
)
from tests.support import alive, eventually

PLUGIN = "cut-off"
ROUNDS = 50
#: The supervisor's transition tasks: ``supervisor:<action>:<plugin id>``.
TRANSITIONS = ("supervisor:enable:", "supervisor:disable:")


def count_tasks(node: dict[str, Any], wanted: Callable[[str], bool]) -> int:
    """How many tasks of the tree under *node* have a name that is *wanted*."""
    own = 1 if wanted(node["name"]) else 0
    return own + sum(count_tasks(child, wanted) for child in node["children"])


def named(name: str) -> Callable[[str], bool]:
    return lambda task: task == name


async def task_tree(toru: Toru) -> dict[str, Any]:
    response = await toru.http.get("/api/system/tasks")
    assert response.status_code == 200, response.text
    tree: dict[str, Any] = response.json()["tree"]
    return tree


def plugin_processes(binary: Path) -> list[int]:
    """Live processes running the plugin (its ``--metadata`` runs excluded)."""
    return [pid for pid, cmdline in cmdline_mentions(str(binary)) if "--metadata" not in cmdline]


async def cut_off(toru: Toru, action: str) -> None:
    """Send a complete, valid ``POST /api/plugins/<id>/<action>`` and close at once."""
    host, port = toru.server.url.removeprefix("http://").rsplit(":", 1)
    cookie = toru.http.cookies["session_id"]
    request = (
        f"POST /api/plugins/{PLUGIN}/{action} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Cookie: session_id={cookie}\r\n"
        "Content-Type: application/json\r\n"  # the CSRF rule (toru/app.py, check_csrf)
        f"Origin: {toru.server.url}\r\n"
        "Content-Length: 2\r\n"
        "\r\n"
        "{}"
    )
    stream = await trio.open_tcp_stream(host, int(port))
    try:
        await stream.send_all(request.encode())
    finally:
        await stream.aclose()  # without reading a byte of the answer


@pytest.mark.slow
async def test_cut_off_enable_and_disable_requests_leave_no_half_transition(
    tmp_path: Path,
) -> None:
    """After 50 enable/disable requests whose clients hung up at once, the plugin is in one
    whole state, and one normal enable gets it running within 10 s, in one process and one
    task; a disable then leaves nothing."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    binary = sdk_plugin(plugins, PLUGIN)
    write_config(plugins, {PLUGIN: False})
    print()
    with short_tmpdir() as tmpdir, trio.fail_after(90):
        async with running_toru(tmp_path, tmpdir=tmpdir) as toru:
            for round_ in range(ROUNDS):
                await cut_off(toru, "enable" if round_ % 2 == 0 else "disable")

            # Every cut-off request is over (only this test's own request is being handled),
            # and no transition is left running: what reached the supervisor completed.
            async def quiet() -> bool:
                tree = await task_tree(toru)
                handlers = count_tasks(tree, lambda task: task.endswith(".handle_request"))
                transitions = count_tasks(tree, lambda task: task.startswith(TRANSITIONS))
                return handlers == 1 and transitions == 0

            await eventually(quiet, within=20, what="the cut-off requests handled", poll=0.1)
            events = await toru.events(PLUGIN)
            reached = [e["event"] for e in events if e["event"] in ("enabled", "disabled")]
            print(f"{len(reached)} of {ROUNDS} cut-off transitions reached the supervisor")

            # One whole state, whichever request came last: enabled and running in one
            # process, or disabled with none.
            status = await toru.status(PLUGIN)
            if status["enabled"]:
                await toru.wait_running(PLUGIN, within=10)
                assert plugin_processes(binary) == [(await toru.status(PLUGIN))["pid"]]
            else:
                assert (status["state"], status["pid"]) == ("stopped", None)
                assert plugin_processes(binary) == []

            started = trio.current_time()
            with trio.fail_after(10):
                response = await toru.http.post(f"/api/plugins/{PLUGIN}/enable")
                assert response.status_code == 200, response.text
                status = await toru.wait_running(PLUGIN, within=10)
            took = trio.current_time() - started
            print(f"enable after the cut-off requests: running in {took:.2f} s")
            assert status["enabled"] is True
            pid = status["pid"]
            assert alive(pid)
            assert count_tasks(await task_tree(toru), named(f"plugin:{PLUGIN}")) == 1
            assert plugin_processes(binary) == [pid]
            started_pids = [
                e["details"]["pid"] for e in await toru.events(PLUGIN) if e["event"] == "started"
            ]
            assert [p for p in started_pids if alive(p)] == [pid]

            response = await toru.http.post(f"/api/plugins/{PLUGIN}/disable")
            assert response.status_code == 200, response.text
            assert (response.json()["state"], response.json()["pid"]) == ("stopped", None)
            assert not alive(pid)
            assert plugin_processes(binary) == []
            assert count_tasks(await task_tree(toru), named(f"plugin:{PLUGIN}")) == 0
