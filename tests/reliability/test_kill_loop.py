"""Kill loops: plugins SIGKILLed again and again at random moments, on a real server.

What the runner does with repeated kills (``toru/plugins/runner.py``, ``_loop``): every
end of a run that was not a cancellation counts as a failure, **also a kill after the
plugin became ready**; the count is reset only when the run that just ended had been
ready for at least 60 s (``Timing.healthy_reset``), or by a new runner (enable, restart,
hot reload). So ten kills within a minute of each other disable the plugin ("failed 10
times in a row: killed by SIGKILL while running"), after 1+2+4+8+16×5 = 95 s of backoff.
The in-process tests at the end of this module prove both halves of that rule with
shrunk timings. The server-level loop therefore resets the count with a restart before
each kill: every kill is then a first failure, recovered after the contract's 1 s backoff,
and 50 kills take about a minute instead of five give-ups of 95 s each.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from tests.reliability.helpers import (
    Toru,
    children_of,
    fd_kinds,
    install_fixture,
    running_toru,
    short_tmpdir,
    write_config,
    zombies_of,
)
from tests.support import alive, eventually
from toru.db import Database
from toru.plugins.events import EventLog
from toru.plugins.runner import Timing
from toru.plugins.supervisor import Supervisor

ROUTES = {
    "legacy-python": "/api/plugins/route/legacy-python/",
    "hello-plugin-python": "/api/plugins/route/hello-python/",
}
#: Descriptors that may differ between two quiet moments for reasons that are not leaks:
#: a legacy exchange or readiness probe in flight holds one Unix socket for a moment, and
#: a pidfd is duplicated while a task waits on it. TCP sockets are the test's own HTTP
#: keep-alive connections and are not compared at all.
FD_SLACK = 3


@attrs.define
class Victim:
    plugin_id: str
    kills: int
    recoveries: list[float] = attrs.field(factory=list)
    moments: dict[str, int] = attrs.field(factory=dict)


async def kill_loop(toru: Toru, victim: Victim, rng: random.Random) -> None:
    """Restart (count reset), kill at a random moment, wait for the recovery; *kills* times.

    A third of the kills aim at the start itself: the new process is killed as soon as it
    shows up in the status, which is often before it listens (a crash "before it was
    ready"); the others land 0 to 0.3 s after it became ready.
    """
    plugin_id = victim.plugin_id
    for _ in range(victim.kills):
        before = (await toru.status(plugin_id))["pid"]
        if rng.random() < 1 / 3:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(toru.http.post, f"/api/plugins/{plugin_id}/restart")
                with trio.fail_after(30):
                    while True:
                        status = await toru.status(plugin_id)
                        if status["pid"] not in (None, before):
                            break
                victim_pid = status["pid"]
                os.kill(victim_pid, signal.SIGKILL)
                killed_at = trio.current_time()
                victim.moments[status["state"]] = victim.moments.get(status["state"], 0) + 1
        else:
            response = await toru.http.post(f"/api/plugins/{plugin_id}/restart")
            assert response.status_code == 200, response.text
            assert response.json()["state"] == "running", response.json()
            victim_pid = response.json()["pid"]
            await trio.sleep(rng.uniform(0, 0.3))
            os.kill(victim_pid, signal.SIGKILL)
            killed_at = trio.current_time()
            victim.moments["running"] = victim.moments.get("running", 0) + 1

        async def recovered(victim_pid: int = victim_pid) -> bool:
            status = await toru.status(plugin_id)
            return bool(status["state"] == "running" and status["pid"] != victim_pid)

        await eventually(recovered, within=30, what=f"{plugin_id} back after kill", poll=0.01)
        victim.recoveries.append(trio.current_time() - killed_at)
        assert not alive(victim_pid)


async def traffic(toru: Toru, seen: dict[int, int]) -> None:
    """Requests to both victims all along, so kills also land in the middle of exchanges."""
    while True:
        for url in ROUTES.values():
            status = (await toru.http.get(url)).status_code
            seen[status] = seen.get(status, 0) + 1
        await trio.sleep(0.05)


async def watch_zombies(server_pid: int, longest: list[float]) -> None:
    """A child that died is reaped at once (the pidfd wakes its waiter): no zombie lasts."""
    first_seen: dict[int, float] = {}
    while True:
        now = trio.current_time()
        zombies = set(zombies_of(server_pid))
        first_seen = {pid: first_seen.get(pid, now) for pid in zombies}
        if first_seen:
            longest.append(max(now - t for t in first_seen.values()))
        assert all(now - t < 2 for t in first_seen.values()), f"zombies: {first_seen}"
        await trio.sleep(0.1)


@pytest.mark.slow
async def test_fifty_kills_fifty_recoveries_no_zombie_no_leaked_descriptor(
    tmp_path: Path, built_example: Path
) -> None:
    """The legacy fixture is SIGKILLed 50 times and the SDK example 10 times, at random
    moments, both at once, while requests flow: every kill is followed by a recovery with
    a new process, no zombie outlives 2 s, and the server holds the same descriptors as
    before (pipes, pidfds, Unix sockets, files), within a slack of 3."""
    plugins = tmp_path / "plugins"
    shutil.copytree(built_example, plugins)
    install_fixture(plugins)
    write_config(plugins, {"legacy-python": True, "hello-plugin-python": True})
    seed = random.randrange(2**32)
    print(f"\nseed {seed}")
    rng = random.Random(seed)
    victims = [Victim("legacy-python", 50), Victim("hello-plugin-python", 10)]
    with short_tmpdir() as tmpdir:
        async with running_toru(tmp_path, tmpdir=tmpdir) as toru:
            for victim in victims:  # warm-up: one full cycle, every code path loaded
                await kill_loop(toru, Victim(victim.plugin_id, 1), rng)
                assert (await toru.http.get(ROUTES[victim.plugin_id])).status_code == 200
            await quiet(toru)
            before = fd_kinds(toru.pid)

            statuses: dict[int, int] = {}
            zombie_ages: list[float] = []
            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(traffic, toru, statuses)
                nursery.start_soon(watch_zombies, toru.pid, zombie_ages)
                async with trio.open_nursery() as loops:
                    for victim in victims:
                        loops.start_soon(kill_loop, toru, victim, random.Random(rng.random()))
                nursery.cancel_scope.cancel()
            took = trio.current_time() - started

            await quiet(toru)
            after = fd_kinds(toru.pid)
            for victim in victims:
                crashes, reasons = await crashes_of(toru, victim.plugin_id)
                # The warm-up kill, then the loop's: one crash each, each by our SIGKILL.
                assert len(crashes) == victim.kills + 1
                assert {c["exit"] for c in crashes} == {"killed by SIGKILL"}
                assert len(victim.recoveries) == victim.kills
                print(
                    f"{victim.plugin_id}: {victim.kills} kills ({victim.moments}), "
                    f"{len(victim.recoveries)} recoveries, median "
                    f"{statistics.median(victim.recoveries):.2f} s, "
                    f"max {max(victim.recoveries):.2f} s; {reasons}"
                )
            print(f"loop {took:.1f} s; requests by status {statuses}")
            print(f"zombies seen (ages, s): {[round(a, 2) for a in zombie_ages] or 'none'}")
            print(f"server fds before {sum(before.values())}: {before}")
            print(f"server fds after  {sum(after.values())}: {after}")
            assert set(statuses) <= {200, 502, 503}, statuses
            assert zombies_of(toru.pid) == []
            running = {s["pid"] for s in (await toru.http.get("/api/plugins")).json()["plugins"]}
            assert set(children_of(toru.pid)) == running
            compared = {k for k in before.keys() | after.keys() if k != "tcp"}
            grown = {k: after.get(k, 0) - before.get(k, 0) for k in compared}
            assert sum(max(0, n) for n in grown.values()) <= FD_SLACK, grown


async def quiet(toru: Toru) -> None:
    """Both plugins running and healthy, nothing in flight: a moment to count descriptors."""
    for plugin_id in ROUTES:
        await toru.wait_running(plugin_id)
    await eventually(lambda: zombies_of(toru.pid) == [], within=5, what="no zombie")


async def crashes_of(toru: Toru, plugin_id: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The crashed events' details, and the backoff reasons counted (which say whether
    each kill came before or after the plugin was ready)."""
    events = await toru.events(plugin_id)
    crashes = [e["details"] for e in events if e["event"] == "crashed"]
    reasons: dict[str, int] = {}
    for event in events:
        if event["event"] == "backoff":
            reason = event["details"]["reason"]
            reasons[reason] = reasons.get(reason, 0) + 1
    return crashes, reasons


# -- the failure count, in process, with shrunk timings --------------------------------


QUICK = Timing(backoff_first=0.05, backoff_max=0.2, shutdown_grace=1.0, term_grace=0.5)


async def kill_when_running(
    supervisor: Supervisor, plugin_id: str, after: float, killed: list[int]
) -> None:
    """Wait for a new process to be running, let it run *after* s, SIGKILL it."""

    def new_process_running() -> bool:
        status = supervisor.status(plugin_id)
        return bool(status.state == "running" and status.pid not in killed)

    await eventually(new_process_running, within=10, what="running")
    pid: int = supervisor.status(plugin_id).pid
    await trio.sleep(after)
    os.kill(pid, signal.SIGKILL)
    killed.append(pid)


@pytest.mark.parametrize(
    ("healthy_reset", "ran_for", "outcome"),
    [
        pytest.param(60.0, 0.0, "failed", id="kills-within-60s-count-up-to-give-up"),
        pytest.param(0.2, 0.3, "running", id="kills-after-a-healthy-run-reset-the-count"),
    ],
)
async def test_what_repeated_kills_count_for(
    tmp_path: Path, healthy_reset: float, ran_for: float, outcome: str
) -> None:
    """Killing a plugin after it became ready counts as a failure: ten in a row give up
    (disabled, with the reason), unless each run had been ready for ``healthy_reset`` s
    before its kill, which resets the count every time."""
    plugins = tmp_path / "plugins"
    install_fixture(plugins)
    write_config(plugins, {"legacy-python": True})
    timing = attrs.evolve(QUICK, healthy_reset=healthy_reset)
    async with Database.open(tmp_path / "toru.db") as db, trio.open_nursery() as nursery:
        supervisor = Supervisor(plugins, EventLog(db), "i", timing=timing, rescan_interval=3600)
        await nursery.start(supervisor.run)
        killed: list[int] = []
        for _ in range(10):
            await kill_when_running(supervisor, "legacy-python", ran_for, killed)
        if outcome == "failed":
            await eventually(
                lambda: not supervisor.status("legacy-python").enabled,
                within=10,
                what="giving up",
            )
            status = supervisor.status("legacy-python")
            assert status.last_error == (
                "failed 10 times in a row: killed by SIGKILL while running"
            )
            assert status.state == "failed"
            assert json.loads((plugins / ".metadata" / "config.json").read_text()) == {
                "plugins": {"legacy-python": False}
            }
        else:
            await eventually(
                lambda: supervisor.status("legacy-python").pid not in (None, *killed),
                within=10,
                what="a new process after the 10th kill",
            )
            status = supervisor.status("legacy-python")
            assert status.failures_in_a_row == 1
            assert status.restart_count == 10
        assert not any(alive(pid) for pid in killed)
        nursery.cancel_scope.cancel()
