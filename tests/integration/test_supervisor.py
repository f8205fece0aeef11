"""The supervisor with real plugin processes: start, crash, restart, disable, reload, give up."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support import FAST, alive, eventually, sdk_plugin, write_stubborn_plugin
from toru.db import Database
from toru.plugins import health
from toru.plugins.connection import PluginConnection
from toru.plugins.events import EventLog
from toru.plugins.runner import Timing
from toru.plugins.supervisor import PluginError, Supervisor

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
Start = Callable[..., Awaitable[Supervisor]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """Start a Supervisor over tmp_path/plugins, with a real database; stopped afterwards."""
    async with Database.open(tmp_path / "toru.db") as db, trio.open_nursery() as nursery:

        async def run(enabled: dict[str, bool] | None = None, **options: Any) -> Supervisor:
            plugins = tmp_path / "plugins"
            if enabled is not None:
                (plugins / ".metadata").mkdir(parents=True, exist_ok=True)
                config = plugins / ".metadata" / "config.json"
                config.write_text(json.dumps({"plugins": enabled}))
            supervisor = Supervisor(
                plugins_dir=plugins,
                events=EventLog(db),
                instance_id="test-instance",
                timing=options.pop("timing", FAST),
                rescan_interval=options.pop("rescan_interval", 3600),
                **options,
            )
            await nursery.start(supervisor.run)
            return supervisor

        yield run
        nursery.cancel_scope.cancel()


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    path = tmp_path / "plugins"
    path.mkdir()
    return path


async def events_of(supervisor: Supervisor, plugin_id: str) -> list[dict[str, Any]]:
    return list(reversed(await supervisor.events.list(plugin_id, limit=1000)))


async def test_starts_enabled_plugins_of_every_dialect(plugins: Path, start: Start) -> None:
    """Enabled SDK and legacy plugins run with pids and are healthy; disabled ones do not."""
    sdk_plugin(plugins, "modern")
    sdk_plugin(plugins, "idle")
    for name in ("legacy_python.binary", "legacy_rust_dialect.binary"):
        shutil.copy2(FIXTURES / name, plugins / name)
    supervisor = await start({"modern": True, "legacy-python": True, "legacy-rust-dialect": True})
    by_id = {s.id: s for s in supervisor.statuses()}
    assert set(by_id) == {"modern", "idle", "legacy-python", "legacy-rust-dialect"}
    for plugin_id in ("modern", "legacy-python", "legacy-rust-dialect"):
        status = by_id[plugin_id]
        assert (status.state, status.health, status.enabled) == (
            "running",
            "healthy",
            True,
        ), status
        assert alive(status.pid)
    assert by_id["modern"].mode == "modern"
    assert by_id["legacy-python"].mode == "legacy"
    assert (by_id["idle"].state, by_id["idle"].health) == ("stopped", "disabled")


async def test_kill_9_is_a_crash_then_a_restart(plugins: Path, start: Start) -> None:
    """SIGKILL of a plugin records a crash with the signal and brings it back with a new pid."""
    sdk_plugin(plugins, "victim", 'print("about to be killed", file=sys.stderr, flush=True)\n')
    supervisor = await start({"victim": True})
    first = supervisor.status("victim").pid
    os.kill(first, signal.SIGKILL)
    await eventually(
        lambda: (
            supervisor.status("victim").state == "running"
            and supervisor.status("victim").pid != first
        ),
        within=5,
        what="a restarted plugin",
    )
    crash = next(e for e in await events_of(supervisor, "victim") if e["event"] == "crashed")
    assert crash["details"]["exit"] == "killed by SIGKILL"
    assert crash["details"]["pid"] == first
    assert "about to be killed" in crash["details"]["stderr_tail"]
    assert supervisor.status("victim").restart_count == 1


async def test_disable_returns_after_the_process_is_gone(plugins: Path, start: Start) -> None:
    """disable() answers once the pid no longer exists, and config.json says false."""
    sdk_plugin(plugins, "tidy")
    supervisor = await start({"tidy": True})
    pid = supervisor.status("tidy").pid
    status = await supervisor.disable("tidy")
    assert not alive(pid)
    assert (status.state, status.enabled, status.pid) == ("stopped", False, None)
    config = json.loads((plugins / ".metadata" / "config.json").read_text())
    assert config["plugins"]["tidy"] is False
    stopped = [e for e in await events_of(supervisor, "tidy") if e["event"] == "stopped"]
    assert stopped[-1]["details"]["how"] == "shutdown message"


async def test_enable_answers_with_the_outcome_of_the_first_start(
    plugins: Path, start: Start
) -> None:
    """Enabling a plugin that dies on start answers at once with the reason (and keeps trying)."""
    sdk_plugin(plugins, "good")
    broken = plugins / "dies.binary"
    broken.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --metadata ]; then echo \'{"id":"dies","name":"D","version":"1",'
        '"route":"/dies"}\'; exit 0; fi\necho "cannot open database" >&2\nexit 3\n'
    )
    broken.chmod(0o755)
    supervisor = await start({})
    status = await supervisor.enable("dies")
    assert (status.state, status.pid, status.uptime_s) == ("backoff", None, None)
    assert status.last_error == "exited 3 before it was ready"
    assert (await supervisor.enable("good")).state == "running"


async def test_ten_failures_in_a_row_disable_the_plugin(plugins: Path, start: Start) -> None:
    """A plugin that never comes up is given up on after 10 tries, with the reason recorded."""
    broken = plugins / "dies.binary"
    broken.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --metadata ]; then echo \'{"id":"dies","name":"D","version":"1",'
        '"route":"/dies"}\'; exit 0; fi\nexit 3\n'
    )
    broken.chmod(0o755)
    supervisor = await start({"dies": True})
    await eventually(
        lambda: supervisor.status("dies").state == "failed", within=20, what="giving up"
    )
    status = supervisor.status("dies")
    assert status.last_error == "failed 10 times in a row: exited 3 before it was ready"
    assert status.enabled is False
    assert json.loads((plugins / ".metadata" / "config.json").read_text())["plugins"] == {
        "dies": False
    }
    events = [e["event"] for e in await events_of(supervisor, "dies")]
    assert events.count("crashed") == 10
    assert events.count("backoff") == 9
    assert events[-1] == "failed"


async def test_ignoring_shutdown_and_sigterm_gets_sigkill_after_5_plus_2_s(
    plugins: Path, start: Start
) -> None:
    """With the contract's numbers: shutdown message, 5 s, SIGTERM, 2 s, SIGKILL."""
    write_stubborn_plugin(plugins)
    supervisor = await start({"stubborn": True}, timing=Timing())
    pid = supervisor.status("stubborn").pid
    started = trio.current_time()
    await supervisor.disable("stubborn")
    took = trio.current_time() - started
    assert not alive(pid)
    assert 7 <= took < 8.5
    stopped = [e for e in await events_of(supervisor, "stubborn") if e["event"] == "stopped"]
    assert stopped[-1]["details"]["how"] == "SIGKILL"


async def test_grandchildren_are_gone_after_disable(plugins: Path, start: Start) -> None:
    """A plugin that forks a SIGTERM-ignoring grandchild leaves nothing after disable."""
    marker = plugins / "grandchild.pid"
    sdk_plugin(
        plugins,
        "forker",
        f"""
        @plugin.on_startup
        async def fork():
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                time.sleep(300)
                os._exit(0)
            open({str(marker)!r}, "w").write(str(pid))
        """,
    )
    supervisor = await start({"forker": True})
    pid = supervisor.status("forker").pid
    grandchild = int(marker.read_text())
    assert alive(grandchild)
    await supervisor.disable("forker")
    assert not alive(pid)
    await eventually(lambda: not alive(grandchild), within=2, what="the grandchild gone")


async def test_missed_pings_restart_a_hung_plugin(plugins: Path, start: Start) -> None:
    """A modern plugin that answered pings and then stops answering is restarted."""
    sdk_plugin(
        plugins,
        "hangs",
        """
        import threading
        @plugin.on_startup
        async def hang_later():
            # After a second, block the event loop: no more pongs, process still alive.
            threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGSTOP)).start()
        """,
    )
    supervisor = await start({"hangs": True})
    first = supervisor.status("hangs").pid
    await eventually(
        lambda: (
            supervisor.status("hangs").pid not in (None, first)
            and supervisor.status("hangs").state == "running"
        ),
        within=15,
        what="a restart after missed pings",
    )
    events = await events_of(supervisor, "hangs")
    assert [e for e in events if e["event"] == "unhealthy"][-1]["details"]["missed_pings"] == 3
    stopping = [e for e in events if e["event"] == "stopping"]
    assert stopping[0]["details"]["reason"] == "unhealthy: missed 3 pings in a row"
    assert not alive(first)


async def test_enable_disable_races_end_in_the_last_requested_state(
    plugins: Path, start: Start
) -> None:
    """50 interleaved enable/disable calls: the final state is the last one asked for."""
    sdk_plugin(plugins, "flappy")
    supervisor = await start({})
    order: list[str] = []

    async def flip(i: int) -> None:
        action = "enable" if i % 2 == 0 else "disable"
        order.append(action)
        await getattr(supervisor, action)("flappy")

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(flip, i)
            await trio.lowlevel.checkpoint()
    status = supervisor.status("flappy")
    last = order[-1]
    assert status.enabled is (last == "enable")
    assert status.state == ("running" if last == "enable" else "stopped")
    if last == "disable":
        assert status.pid is None


async def test_changed_binary_is_reloaded(plugins: Path, start: Start) -> None:
    """Rewriting an enabled plugin's binary restarts it gracefully on the next rescan."""
    path = sdk_plugin(plugins, "hot")
    supervisor = await start({"hot": True})
    first = supervisor.status("hot").pid
    path.write_text(path.read_text() + "\n# version 2\n")
    await supervisor.rescan()
    status = supervisor.status("hot")
    assert status.state == "running"
    assert status.pid != first
    assert not alive(first)
    assert "reloaded" in [e["event"] for e in await events_of(supervisor, "hot")]


async def test_broken_binaries_do_not_stop_the_good_ones(plugins: Path, start: Start) -> None:
    """A directory with a broken binary: the good plugin runs, the broken one is listed."""
    sdk_plugin(plugins, "good")
    (plugins / "bad.binary").write_text("#!/bin/sh\necho not json\n")
    (plugins / "bad.binary").chmod(0o755)
    supervisor = await start({"good": True})
    assert supervisor.status("good").state == "running"
    assert supervisor.rejected() == [
        {"file": "bad.binary", "reason": "invalid JSON at line 1 column 1: Expecting value"}
    ]
    with pytest.raises(PluginError, match="no plugin with id 'bad'"):
        await supervisor.enable("bad")


async def test_stopping_the_supervisor_stops_every_plugin(plugins: Path, tmp_path: Path) -> None:
    """Cancelling the supervisor's task stops all plugins in parallel and removes its sockets."""
    for name in ("one", "two", "three"):
        sdk_plugin(plugins, name)
    (plugins / ".metadata").mkdir()
    (plugins / ".metadata" / "config.json").write_text(
        json.dumps({"plugins": {"one": True, "two": True, "three": True}})
    )
    async with Database.open(tmp_path / "toru.db") as db:
        supervisor = Supervisor(plugins, EventLog(db), "i", timing=FAST)
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            pids = [supervisor.status(n).pid for n in ("one", "two", "three")]
            assert all(alive(pid) for pid in pids)
            started = trio.current_time()
            nursery.cancel_scope.cancel()
        assert trio.current_time() - started < 2
    assert not any(alive(pid) for pid in pids)
    assert not supervisor.socket_dir.exists()


class BrokenEvents(EventLog):
    """An event log whose database fails for every event."""

    async def record(self, plugin_id: str, event: str, **details: Any) -> None:
        raise RuntimeError("disk I/O error")


async def test_a_failing_event_log_stops_nothing(plugins: Path, tmp_path: Path) -> None:
    """Events that cannot be written are logged; the plugin starts, runs and stops as usual."""
    sdk_plugin(plugins, "unrecorded")
    async with Database.open(tmp_path / "toru.db") as db, trio.open_nursery() as nursery:
        supervisor = Supervisor(plugins, BrokenEvents(db), "i", timing=FAST)
        await nursery.start(supervisor.run)
        status = await supervisor.enable("unrecorded")
        assert (status.state, status.health) == ("running", "healthy")
        pid = status.pid
        status = await supervisor.disable("unrecorded")
        assert (status.state, status.pid, status.enabled) == ("stopped", None, False)
        assert not alive(pid)
        nursery.cancel_scope.cancel()


async def test_a_failing_runner_is_contained(
    plugins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug inside one runner stops that plugin (reaped), not the supervisor or others."""
    sdk_plugin(plugins, "unlucky")
    sdk_plugin(plugins, "bystander")

    async def broken_pinger(channel: PluginConnection, *args: Any, **kwargs: Any) -> None:
        if channel.plugin_id == "unlucky":
            raise RuntimeError("a bug in the pinger")
        await trio.sleep_forever()

    monkeypatch.setattr(health, "judge_pings", broken_pinger)
    async with Database.open(tmp_path / "toru.db") as db, trio.open_nursery() as nursery:
        supervisor = Supervisor(plugins, EventLog(db), "i", timing=FAST)
        await nursery.start(supervisor.run)
        await supervisor.enable("bystander")
        await supervisor.enable("unlucky")
        await eventually(
            lambda: not supervisor.status("unlucky").enabled, within=5, what="disabled"
        )
        status = supervisor.status("unlucky")
        assert status.state == "failed"
        assert status.last_error is not None
        assert "internal error in Toru's runner" in status.last_error
        assert "unlucky" not in supervisor.runners
        started = [e for e in await supervisor.events.list("unlucky") if e["event"] == "started"]
        assert not alive(started[0]["details"]["pid"])
        assert supervisor.status("bystander").state == "running"
        nursery.cancel_scope.cancel()
