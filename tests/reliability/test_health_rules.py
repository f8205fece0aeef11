"""The health rules (``toru/plugins/runner.py``) against a real ``toru serve``, and how long
a disable takes when the event store fails.

Four plugins (``tests/reliability/health/``), each faulty in its first life only, run on one
server at once with shrunk timings (ping every 0.5 s, 0.5 s to answer, 1 s per web
request). Each must be stopped by the rule that fits its fault, named in its ``unhealthy``
events and in the stop's reason, within the documented bound of the moment its fault began
(the plugin says so on stderr), and then run again, healthy, under a new pid.

The bounds:

- **pings** (modern plugins): ``Timing.ping_detection`` = interval × 3 + timeout after the
  plugin stopped answering (2 s here, 20 s with the default 5 s / 5 s).
- **legacy exchanges** (legacy plugins, never pinged): 3 × the request timeout after the
  first exchange that hangs (3 s here), *as long as requests keep coming one after
  another*, as this test sends them. Only an exchange that timed out while in flight (or a
  refused connection) counts; a request that waited in the queue behind the stuck one
  says nothing about the plugin, so with concurrent callers the bound is 3 timeouts of
  in-flight time plus what the queue adds; and with no traffic at all a legacy plugin is
  judged by its process alone, never by this rule.

Timing is never what fails the suite on its own: each measurement is printed (``-s``) and
checked against its bound plus a margin wide enough for a busy machine.
"""

from __future__ import annotations

import os
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from tests.reliability.helpers import (
    CORPUS,
    Toru,
    running_toru,
    short_tmpdir,
    write_config,
)
from tests.support import alive, eventually, sdk_plugin
from toru.db import Database
from toru.plugins.events import EventLog
from toru.plugins.runner import Timing
from toru.plugins.supervisor import Supervisor

HEALTH = Path(__file__).resolve().parent / "health"
SHRUNK_ENV = {
    "TORU_PING_INTERVAL": "0.5",
    "TORU_PING_TIMEOUT": "0.5",
    "TORU_PLUGIN_REQUEST_TIMEOUT": "1",
}
SHRUNK = Timing(ping_interval=0.5, ping_timeout=0.5, request_timeout=1.0)
#: Added to every bound before it is checked: a busy machine, never a slow Toru.
MARGIN = 3.0
PINGS_REASON = "unhealthy: missed 3 pings in a row"
LEGACY_REASON = "unhealthy: 3 exchanges in a row timed out or were refused"


@attrs.frozen
class Fault:
    file: str
    plugin_id: str
    rule: str
    #: The ``unhealthy`` event's field that counts the failures in a row.
    counter: str
    reason: str
    #: Seconds from the start of the fault to the ``stopping`` event, at most.
    bound: float
    #: The test sends it requests one after another (the legacy rule needs traffic).
    drive: bool = False


def faults(timing: Timing) -> list[Fault]:
    pings = timing.ping_detection
    legacy = timing.legacy_failures * timing.request_timeout
    return [
        Fault("health_never_pongs.binary", "health-never-pongs", "pings", "missed_pings",
              PINGS_REASON, pings),
        Fault("health_wrong_pong_id.binary", "health-wrong-pong-id", "pings", "missed_pings",
              PINGS_REASON, pings),
        Fault("health_blocks_at_40s.binary", "health-blocks-at-40s", "pings", "missed_pings",
              PINGS_REASON, pings),
        Fault("health_legacy_goes_silent.binary", "health-legacy-goes-silent",
              "legacy exchanges", "failed_exchanges", LEGACY_REASON, legacy, drive=True),
    ]  # fmt: skip


def install_health(plugins: Path, *files: str) -> None:
    """Copy the health plugins and the wire helpers they import into *plugins*, each
    script's ``#!/usr/bin/env python3`` pointed at this Python (as ``helpers.install``)."""
    plugins.mkdir(parents=True, exist_ok=True)
    shutil.copy2(CORPUS / "corpus_wire.py", plugins / "corpus_wire.py")
    shutil.copy2(HEALTH / "health_wire.py", plugins / "health_wire.py")
    shebang = b"#!/usr/bin/env python3\n"
    for name in files:
        data = (HEALTH / name).read_bytes()
        assert data.startswith(shebang), name
        (plugins / name).write_bytes(f"#!{sys.executable}\n".encode() + data[len(shebang) :])
        (plugins / name).chmod(0o755)


def unix_time(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def restarted(events: list[dict[str, Any]]) -> bool:
    """A run was stopped and a later one became ready."""
    names = [e["event"] for e in events]
    return "stopping" in names and "ready" in names[names.index("stopping") :]


async def silent_at(toru: Toru, plugin_id: str) -> float:
    """When the plugin said its fault began (its ``going silent`` line on stderr)."""
    found: list[float] = []

    async def logged() -> bool:
        response = await toru.http.get(f"/api/plugins/{plugin_id}/logs?page_size=1000")
        assert response.status_code == 200, response.text
        found[:] = [r["silent_at"] for r in response.json()["logs"] if "silent_at" in r]
        return bool(found)

    await eventually(logged, within=10, what=f"{plugin_id}'s 'going silent' line in its log")
    (when,) = found  # the first life only
    return when


async def drive(toru: Toru, plugin_id: str, statuses: list[int]) -> None:
    """Requests one after another, from the first ``ready`` until Toru stops forwarding them
    (503 while the run stops and backs off): the traffic the legacy rule judges."""
    await toru.wait_running(plugin_id)
    for _ in range(30):
        response = await toru.http.get(f"/api/plugins/route/{plugin_id}/")
        statuses.append(response.status_code)
        if response.status_code not in (200, 504):
            return
    raise AssertionError(f"{plugin_id} was never stopped; answers: {statuses}")


async def check_fault(toru: Toru, fault: Fault, within: float) -> dict[str, float]:
    """One plugin's fault: the rule that stopped it, the reason, the restart, the timing."""
    plugin_id = fault.plugin_id
    statuses: list[int] = []
    async with trio.open_nursery() as nursery:
        if fault.drive:
            nursery.start_soon(drive, toru, plugin_id, statuses)
        history: list[dict[str, Any]] = []

        async def was_restarted() -> bool:
            history[:] = await toru.events(plugin_id)
            return restarted(history)

        await eventually(
            was_restarted, within=within, what=f"{plugin_id} stopped and ready again", poll=0.25
        )
    names = [e["event"] for e in history]
    stop = names.index("stopping")
    first_ready = names.index("ready")
    second_ready = names.index("ready", stop)
    stopping, first_life = history[stop], history[first_ready:stop]
    first_pid = history[names.index("started")]["details"]["pid"]
    second_pid = history[names.index("started", stop)]["details"]["pid"]

    # The rule is named in every unhealthy event, counting 1, 2, 3 up to its limit.
    unhealthy = [e["details"] for e in first_life if e["event"] == "unhealthy"]
    assert [d["rule"] for d in unhealthy] == [fault.rule] * 3, unhealthy
    assert [d[fault.counter] for d in unhealthy] == [1, 2, 3], unhealthy
    assert {d["limit"] for d in unhealthy} == {3}
    assert all(d["reason"] for d in unhealthy)
    # The run was stopped by that rule, for that reason, and restarted through backoff (1 s).
    assert stopping["details"] == {"pid": first_pid, "reason": fault.reason, "rule": fault.rule}
    backoff = next(e for e in history[stop:] if e["event"] == "backoff")
    assert backoff["details"] == {"delay": 1.0, "attempt": 1, "reason": fault.reason}
    if fault.drive:
        # Three answers, then in-flight timeouts, three or more, then Toru stopped forwarding.
        assert statuses[:3] == [200, 200, 200], statuses
        # (A request already on its way when the rule fired may still time out, or find
        # the process gone.)
        assert len(statuses) >= 7, statuses
        assert statuses[3:-1] == [504] * (len(statuses) - 4), statuses
        assert statuses[-1] in (502, 503), statuses

    # Running again under a new pid, healthy, and answering.
    assert second_pid != first_pid
    status: dict[str, Any] = {}

    async def healthy_again() -> bool:
        status.update(await toru.status(plugin_id))
        return (status["state"], status["health"], status["pid"]) == (
            "running", "healthy", second_pid
        )  # fmt: skip

    await eventually(
        healthy_again, within=10, what=f"{plugin_id} healthy under its new pid", poll=0.1
    )
    assert alive(second_pid)
    assert not alive(first_pid)
    answer = await toru.http.get(f"/api/plugins/route/{plugin_id}/")
    assert answer.status_code == 200, answer.text

    began = await silent_at(toru, plugin_id)
    stopped_at = unix_time(stopping["timestamp"])
    first_unhealthy = next(e for e in first_life if e["event"] == "unhealthy")
    # Nothing was judged before the fault (the 40 s plugin answered every ping until then).
    assert unix_time(first_unhealthy["timestamp"]) >= began - 0.01
    measured = {
        "init -> fault": began - unix_time(history[first_ready]["timestamp"]),
        "fault -> 1st unhealthy": unix_time(first_unhealthy["timestamp"]) - began,
        "fault -> stopping": stopped_at - began,
        "stopping -> ready again": unix_time(history[second_ready]["timestamp"]) - stopped_at,
    }
    print(
        f"{plugin_id:<27} rule {fault.rule!r:<19} bound {fault.bound:5.1f} s  "
        + "  ".join(f"{name} {seconds:6.2f} s" for name, seconds in measured.items())
    )
    assert measured["fault -> stopping"] <= fault.bound + MARGIN, measured
    return measured


async def run_faults(
    tmp_path: Path, chosen: list[Fault], env: dict[str, str], within: float
) -> None:
    plugins = tmp_path / "plugins"
    install_health(plugins, *(fault.file for fault in chosen))
    write_config(plugins, {fault.plugin_id: True for fault in chosen})
    with short_tmpdir() as tmpdir:
        async with (
            running_toru(tmp_path, env, tmpdir=tmpdir) as toru,
            trio.open_nursery() as nursery,
        ):
            for fault in chosen:
                nursery.start_soon(check_fault, toru, fault, within)


@pytest.mark.slow
async def test_each_health_rule_restarts_its_plugin_within_its_bound(tmp_path: Path) -> None:
    """A plugin that never pongs, one that pongs with a wrong id, one that blocks 40 s after
    init, and a legacy one that stops answering: each stopped by its named rule within its
    bound, then running again, healthy, under a new pid."""
    print()
    with trio.fail_after(120):
        await run_faults(tmp_path, faults(SHRUNK), SHRUNK_ENV, within=90)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("TORU_MEASURE_DEFAULTS") != "1",
    reason="measures the default 5 s / 5 s ping timings (about 25 s); TORU_MEASURE_DEFAULTS=1",
)
async def test_with_the_default_timings_a_silent_plugin_is_restarted_within_20_s(
    tmp_path: Path,
) -> None:
    """With the default ping interval and timeout (5 s, 5 s), a plugin that never pongs is
    stopped by the pings rule within ``ping_detection`` (20 s) of init."""
    (never_pongs,) = [f for f in faults(Timing()) if f.plugin_id == "health-never-pongs"]
    assert never_pongs.bound == 20.0
    print()
    with trio.fail_after(90):
        await run_faults(tmp_path, [never_pongs], {}, within=60)


# -- disable with a failing event store ----------------------------------------------------


@attrs.define(eq=False)
class FlakyEvents(EventLog):
    """An event log that works, or fails every write (``"raise"``), or hangs every write
    (``"hang"``), as the test says."""

    mode: str = "works"

    async def record(self, plugin_id: str, event: str, **details: Any) -> None:
        if self.mode == "raise":
            raise RuntimeError("disk I/O error")
        if self.mode == "hang":
            await trio.sleep_forever()
        await super().record(plugin_id, event, **details)


async def test_disable_completes_when_every_event_write_fails_or_hangs(tmp_path: Path) -> None:
    """With the default timings, disable of a well-behaved SDK plugin returns, its process
    gone, when every event write raises and when every event write hangs."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    sdk_plugin(plugins, "quiet")
    print()
    async with Database.open(tmp_path / "toru.db") as db, trio.open_nursery() as nursery:
        events = FlakyEvents(db)
        supervisor = Supervisor(plugins, events, "i", timing=Timing(), rescan_interval=3600)
        await nursery.start(supervisor.run)
        for mode in ("raise", "hang"):
            events.mode = "works"
            with trio.fail_after(30):
                status = await supervisor.enable("quiet")
            assert (status.state, status.health) == ("running", "healthy")
            pid = status.pid
            events.mode = mode
            started = trio.current_time()
            with trio.fail_after(15):
                status = await supervisor.disable("quiet")
            took = trio.current_time() - started
            print(f"disable while every event write {'raises' if mode == 'raise' else 'hangs'}:"
                  f" {took:.2f} s (record timeout {Timing().record_timeout:g} s)")  # fmt: skip
            assert (status.state, status.pid, status.enabled) == ("stopped", None, False)
            assert not alive(pid)
        nursery.cancel_scope.cancel()
