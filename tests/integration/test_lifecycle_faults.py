"""The lifecycle under faults and cancellation, with real plugin processes.

Two families, both from issue G:

- a lifecycle-event write that fails (raises, or hangs) at each point of
  start, crash handling, restart and stop: the process is always gone when
  disable returns, no runner task is left behind, and the plugin can be enabled
  again;
- the task that asked for a transition (an HTTP handler, for Toru) is
  cancelled after its 1st, 2nd, ... checkpoint, until the transition would
  have completed anyway; and the whole supervisor is cancelled after the Nth
  step of anything during an enable. Afterwards ``runners`` matches the live
  runner tasks and no process of the plugin survives.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from tests.support import FAST, alive, eventually, sdk_plugin
from toru.db import Database
from toru.plugins import process
from toru.plugins.events import EventLog
from toru.plugins.supervisor import Supervisor

PLUGIN = "subject"
#: shutdown grace + SIGTERM grace + SIGKILL grace of FAST, the reap, and room for a busy CI.
LADDER_BOUND = FAST.ladder_budget + process.REAP_GRACE + 5
TIMING = attrs.evolve(FAST, record_timeout=0.5)


@attrs.define(eq=False)
class FaultyEvents(EventLog):
    """An event log whose write of one event raises an I/O error, or hangs."""

    site: str = ""
    mode: str = "raises"
    hits: int = 0

    async def record(self, plugin_id: str, event: str, **details: Any) -> None:
        if event == self.site:
            self.hits += 1
            if self.mode == "raises":
                raise OSError(errno.EIO, "Input/output error")
            await trio.sleep_forever()
        await super().record(plugin_id, event, **details)


def runner_tasks(supervisor: Supervisor) -> list[str]:
    """Names of the live runner tasks in the supervisor's nursery."""
    nursery = supervisor._nursery
    assert nursery is not None
    return sorted(t.name for t in nursery.child_tasks if t.name.startswith("plugin:"))


def transition_tasks(supervisor: Supervisor) -> list[str]:
    nursery = supervisor._nursery
    assert nursery is not None
    return [t.name for t in nursery.child_tasks if t.name.startswith("supervisor:") and (
        t.name != "supervisor:rescan")]  # fmt: skip


@pytest.fixture
def spawned_pids(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every pid the runners spawn during the test (a real spawn, recorded)."""
    pids: list[int] = []
    real = process.ChildProcess.spawn.__func__  # type: ignore[attr-defined]

    def spawn(cls: type[process.ChildProcess], *args: Any, **kwargs: Any) -> Any:
        child = real(cls, *args, **kwargs)
        pids.append(child.pid)
        return child

    monkeypatch.setattr(process.ChildProcess, "spawn", classmethod(spawn))
    return pids


@attrs.define
class Running:
    supervisor: Supervisor
    nursery: trio.Nursery


@pytest.fixture
async def plugins(tmp_path: Path) -> Path:
    path = tmp_path / "plugins"
    path.mkdir()
    sdk_plugin(path, PLUGIN)
    return path


async def _start(
    db: Database, plugins: Path, nursery: trio.Nursery, events: EventLog
) -> Supervisor:
    supervisor = Supervisor(plugins, events, "i", timing=TIMING, rescan_interval=3600)
    await nursery.start(supervisor.run)
    return supervisor


async def assert_settled(supervisor: Supervisor, pids: list[int]) -> None:
    """No transition in progress, runners == live runner tasks, and (if none) no process."""
    await eventually(lambda: not transition_tasks(supervisor), within=20, what="transitions done")
    await trio.testing.wait_all_tasks_blocked()
    assert runner_tasks(supervisor) == [f"plugin:{p}" for p in sorted(supervisor.runners)]
    if not supervisor.runners:
        assert [pid for pid in pids if alive(pid)] == []


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    async with Database.open(tmp_path / "toru.db") as db:
        yield db


SITES = ["enabled", "starting", "started", "ready", "crashed", "backoff", "stopping", "stopped",
         "disabled"]  # fmt: skip


@pytest.mark.parametrize("mode", ["raises", "hangs"])
@pytest.mark.parametrize("site", SITES)
async def test_a_failing_event_write_never_leaves_a_process_or_a_task(
    database: Database, plugins: Path, spawned_pids: list[int], site: str, mode: str
) -> None:
    """Enable, crash, restart, disable, enable again with one event write failing each time."""
    events = FaultyEvents(database, site=site, mode=mode)
    async with trio.open_nursery() as nursery:
        supervisor = await _start(database, plugins, nursery, events)
        with trio.fail_after(15):
            status = await supervisor.enable(PLUGIN)
        assert status.state == "running"
        first = status.pid
        assert first is not None
        # Crash handling: SIGKILL, then the restart through backoff.
        os.kill(first, signal.SIGKILL)
        await eventually(
            lambda: (
                supervisor.status(PLUGIN).state == "running"
                and supervisor.status(PLUGIN).pid not in (None, first)
            ),
            within=15,
            what="the restart after a crash",
        )
        with trio.fail_after(15):
            status = await supervisor.restart(PLUGIN)
        assert status.state == "running"
        with trio.fail_after(LADDER_BOUND):
            status = await supervisor.disable(PLUGIN)
        assert (status.state, status.pid, status.enabled) == ("stopped", None, False)
        await assert_settled(supervisor, spawned_pids)
        assert len(spawned_pids) >= 3
        # The plugin can be enabled again, fault and all.
        with trio.fail_after(15):
            assert (await supervisor.enable(PLUGIN)).state == "running"
        with trio.fail_after(LADDER_BOUND):
            await supervisor.disable(PLUGIN)
        await assert_settled(supervisor, spawned_pids)
        assert events.hits >= 1, f"the {site!r} write was never attempted"
        nursery.cancel_scope.cancel()
    assert [pid for pid in spawned_pids if alive(pid)] == []


class CancelAfterSteps(trio.abc.Instrument):
    """Cancels *scope* after *task* has run *steps* times (one step: up to a checkpoint)."""

    def __init__(self, task: trio.lowlevel.Task, steps: int, scope: trio.CancelScope) -> None:
        self.task, self.steps, self.scope, self.seen = task, steps, scope, 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.seen += 1
            if self.seen >= self.steps:
                self.scope.cancel()


async def cancelled_after(steps: int, call: Any) -> bool:
    """Run *call* in this task, cancelled after *steps* steps; True if it completed first."""
    scope = trio.CancelScope()
    instrument = CancelAfterSteps(trio.lowlevel.current_task(), steps, scope)
    trio.lowlevel.add_instrument(instrument)
    completed = False
    try:
        with scope:
            await call()
            completed = True
    finally:
        trio.lowlevel.remove_instrument(instrument)
    return completed and not scope.cancelled_caught


@pytest.mark.parametrize("action", ["enable", "disable", "restart"])
async def test_a_cancelled_request_never_leaves_a_stale_runner(
    database: Database, plugins: Path, spawned_pids: list[int], action: str
) -> None:
    """The requester cancelled after its 1st, 2nd, ... checkpoint: the transition completes."""
    async with trio.open_nursery() as nursery:
        supervisor = await _start(database, plugins, nursery, EventLog(database))
        for steps in range(1, 200):
            if action != "enable":
                await supervisor.enable(PLUGIN)
            completed = await cancelled_after(steps, lambda: getattr(supervisor, action)(PLUGIN))
            await assert_settled(supervisor, spawned_pids)
            status = supervisor.status(PLUGIN)
            expected = "stopped" if action == "disable" else "running"
            assert status.state == expected, (steps, status)
            assert (PLUGIN in supervisor.runners) is (expected == "running")
            # A later enable runs the plugin; then back to the starting point.
            assert (await supervisor.enable(PLUGIN)).state == "running"
            await supervisor.disable(PLUGIN)
            await assert_settled(supervisor, spawned_pids)
            if completed:
                print(f"{action} completed after {steps} steps")
                break
        else:
            pytest.fail(f"{action} never completed within 200 steps")
        nursery.cancel_scope.cancel()
    assert [pid for pid in spawned_pids if alive(pid)] == []


async def test_cancelling_the_supervisor_at_any_step_of_an_enable_leaves_no_process(
    database: Database, plugins: Path, spawned_pids: list[int]
) -> None:
    """The whole supervisor cancelled after the Nth step of an enable: nothing survives it."""
    steps = 1
    while True:
        async with trio.open_nursery() as nursery:
            supervisor = await _start(database, plugins, nursery, EventLog(database))
            instrument = _CancelAfterAnySteps(steps, nursery.cancel_scope)
            trio.lowlevel.add_instrument(instrument)
            try:
                with trio.fail_after(LADDER_BOUND):
                    status = await supervisor.enable(PLUGIN)
                finished = status.state == "running" and not nursery.cancel_scope.cancel_called
            except BaseException:
                finished = False
                raise
            finally:
                trio.lowlevel.remove_instrument(instrument)
                nursery.cancel_scope.cancel()
        assert [pid for pid in spawned_pids if alive(pid)] == [], steps
        await supervisor.enablement.set(PLUGIN, False)
        if finished:
            print(f"enable completed after {steps} steps")
            break
        steps += max(1, steps // 4)


class _CancelAfterAnySteps(trio.abc.Instrument):
    def __init__(self, steps: int, scope: trio.CancelScope) -> None:
        self.steps, self.scope, self.seen = steps, scope, 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self.seen += 1
        if self.seen == self.steps:
            self.scope.cancel()
