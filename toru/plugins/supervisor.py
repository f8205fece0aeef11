"""The supervisor: owns one runner per enabled plugin, in its own nursery.

It sits in the root nursery beside Hypercorn. ``enable`` starts a runner with
``nursery.start`` and answers once the first start succeeded or failed;
``disable`` cancels the runner's scope and answers once its process is
reaped; transitions of one plugin are serialised by a per-plugin lock, so
racing requests end in the state last asked for. A rescan loop (and
``rescan()``) notices new, changed (hot reload) and removed binaries. Every
status change is broadcast to subscribers (the SSE stream, issue D/E).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import structlog
import trio

from toru.plugins import socketdir
from toru.plugins.discovery import Discovered, accepted, scan
from toru.plugins.enablement import EnableState
from toru.plugins.events import EventLog
from toru.plugins.kv import KvStore
from toru.plugins.logs import PluginLog
from toru.plugins.runner import LineSink, PluginRunner, State, Timing, log_line
from toru.timestamps import iso_utc

log = structlog.get_logger("toru.plugins.supervisor")

RESCAN_INTERVAL = 5.0
SUBSCRIBER_BUFFER = 256


class PluginError(Exception):
    """A request about a plugin cannot be done; ``status`` is the HTTP status that fits."""

    def __init__(self, message: str, *, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@attrs.define(eq=False)
class Supervisor:
    plugins_dir: Path
    events: EventLog
    instance_id: str
    log_dir: Path | None = None
    timing: Timing = attrs.field(factory=Timing)
    rescan_interval: float = RESCAN_INTERVAL
    #: Storage for plugins' KV requests; None: plugins are told there is none.
    kv_store: KvStore | None = None
    line_sink: LineSink = log_line
    #: Extra keyword arguments for every runner (tests pass fake launch/connect here).
    runner_options: dict[str, Any] = attrs.field(factory=dict)

    enablement: EnableState = attrs.field(init=False)
    found: dict[str, Discovered] = attrs.field(factory=dict, init=False)
    runners: dict[str, PluginRunner] = attrs.field(factory=dict, init=False)
    socket_dir: Path = attrs.field(init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    _locks: dict[str, trio.Lock] = attrs.field(factory=dict, init=False)
    _scan_lock: trio.Lock = attrs.field(factory=trio.Lock, init=False)
    _subscribers: set[trio.MemorySendChannel[dict[str, Any]]] = attrs.field(factory=set, init=False)

    _files: dict[str, PluginLog] = attrs.field(factory=dict, init=False)
    _streams_ended: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self.enablement = EnableState.for_plugins_dir(self.plugins_dir)
        if self.log_dir is not None:
            self.events.listeners.append(self._lifecycle_to_file)

    def log_file(self, plugin_id: str) -> PluginLog | None:
        """The plugin's own JSON-lines file (None when Toru runs without a log directory)."""
        if self.log_dir is None:
            return None
        if plugin_id not in self._files:
            path = self.log_dir / "plugins" / f"{plugin_id}.log"
            self._files[plugin_id] = PluginLog(plugin_id, path)
        return self._files[plugin_id]

    def _lifecycle_to_file(self, plugin_id: str, event: str, details: dict[str, Any]) -> None:
        if plugin_id in accepted(self.found.values()) and (file := self.log_file(plugin_id)):
            file.lifecycle(event, details)

    # -- running -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Supervisor]) -> None:
        """Discover, start the enabled plugins (in parallel), then keep rescanning.

        Cancelling this task stops every plugin, in parallel, each through its
        own shutdown ladder.
        """
        # Short, private (0700) and ours alone: socket paths must stay under 108 bytes.
        self.socket_dir = socketdir.create()
        try:
            await self._clean_stale_socket_dirs()
            await self.enablement.load()
            await self._scan()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                async with trio.open_nursery() as starting:
                    for plugin_id in accepted(self.found.values()):
                        if self.enablement.enabled(plugin_id):
                            starting.start_soon(self._start_locked, plugin_id)
                nursery.start_soon(self._rescan_loop, name="supervisor:rescan")
                task_status.started(self)
        finally:
            self._nursery = None
            for file in self._files.values():
                file.close()
            for channel in list(self._subscribers):
                channel.close()
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    async def _clean_stale_socket_dirs(self) -> None:
        """What a SIGKILLed server left: its socket directory and its plugins' children."""
        stale = await trio.to_thread.run_sync(
            partial(socketdir.clean_stale, self.socket_dir.parent, keep=self.socket_dir)
        )
        for found in stale:
            log.warning(
                "removed the socket directory of a server that is gone",
                path=str(found.path),
                owner_pid=found.owner_pid,
                killed_pids=found.killed,
            )

    async def _rescan_loop(self) -> None:
        while True:
            await trio.sleep(self.rescan_interval)
            await self.rescan()

    # -- discovery -----------------------------------------------------------------------

    async def _scan(self) -> list[Discovered]:
        async with self._scan_lock:
            before = self.found
            found = {item.file_name: item for item in await scan(self.plugins_dir, before)}
            self.found = found
        for name, item in found.items():
            old = before.get(name)
            if old is not None and old.fingerprint == item.fingerprint:
                continue
            if item.metadata is None:
                await self.events.record(
                    item.file_name, "rejected", file=item.file_name, reason=item.error
                )
            else:
                await self.events.record(
                    item.metadata.id, "discovered", file=item.file_name,
                    version=item.metadata.version,
                )  # fmt: skip
        return list(found.values())

    async def rescan(self) -> list[Discovered]:
        """Scan now; start new enabled plugins, reload changed ones, stop removed ones."""
        before = {(k, v.fingerprint) for k, v in accepted(self.found.values()).items()}
        await self._scan()
        current = accepted(self.found.values())
        after = {(k, v.fingerprint) for k, v in current.items()}
        async with trio.open_nursery() as nursery:
            for plugin_id, runner in list(self.runners.items()):
                item = current.get(plugin_id)
                if item is None:
                    nursery.start_soon(self._stop_removed, plugin_id)
                elif item.path != runner.binary or item.fingerprint != runner.fingerprint:
                    nursery.start_soon(self._reload, plugin_id)
            for plugin_id in current:
                if self.enablement.enabled(plugin_id) and plugin_id not in self.runners:
                    nursery.start_soon(self._start_locked, plugin_id)
        # Plugins that appeared, changed or went: subscribers hear of them (runners speak
        # for themselves when their state changes).
        for plugin_id in {plugin_id for plugin_id, _ in before ^ after}:
            self._broadcast(plugin_id)
        return list(self.found.values())

    async def _stop_removed(self, plugin_id: str) -> None:
        async with self._lock(plugin_id):
            await self._stop_runner(plugin_id)
            await self.events.record(plugin_id, "removed", reason="its binary is gone")

    async def _reload(self, plugin_id: str) -> None:
        async with self._lock(plugin_id):
            runner = self.runners.get(plugin_id)
            if runner is None or runner.state is State.FAILED:
                return
            await self._stop_runner(plugin_id)
            await self.events.record(plugin_id, "reloaded", reason="its binary changed")
            await self._start(plugin_id)

    # -- transitions ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lock(self, plugin_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(plugin_id, trio.Lock())
        async with lock:
            yield

    def _require(self, plugin_id: str) -> Discovered:
        item = accepted(self.found.values()).get(plugin_id)
        if item is None:
            raise PluginError(f"no plugin with id {plugin_id!r}", status=404)
        return item

    async def enable(self, plugin_id: str) -> dict[str, Any]:
        """Enable and start; returns the status once running or once the first start failed."""
        self._require(plugin_id)
        async with self._lock(plugin_id):
            await self.enablement.set(plugin_id, True)
            await self.events.record(plugin_id, "enabled")
            runner = self.runners.get(plugin_id)
            if runner is not None and runner.state is State.FAILED:
                await self._stop_runner(plugin_id)
            if plugin_id not in self.runners:
                await self._start(plugin_id)
        return self.status(plugin_id)

    async def disable(self, plugin_id: str) -> dict[str, Any]:
        """Disable and stop; returns once the plugin's process is reaped."""
        self._require(plugin_id)
        async with self._lock(plugin_id):
            await self.enablement.set(plugin_id, False)
            await self.events.record(plugin_id, "disabled")
            await self._stop_runner(plugin_id)
        return self.status(plugin_id)

    async def restart(self, plugin_id: str) -> dict[str, Any]:
        """Stop (gracefully) and start again; the plugin must be enabled."""
        self._require(plugin_id)
        async with self._lock(plugin_id):
            if not self.enablement.enabled(plugin_id):
                raise PluginError(f"plugin {plugin_id!r} is disabled; enable it instead")
            await self._stop_runner(plugin_id)
            await self._start(plugin_id)
        return self.status(plugin_id)

    async def _start_locked(self, plugin_id: str) -> None:
        async with self._lock(plugin_id):
            if plugin_id not in self.runners and self.enablement.enabled(plugin_id):
                await self._start(plugin_id)

    async def _start(self, plugin_id: str) -> None:
        if self._nursery is None:
            raise PluginError("the supervisor is not running", status=503)
        item = self._require(plugin_id)
        assert item.metadata is not None
        runner = PluginRunner(
            metadata=item.metadata,
            binary=item.path,
            socket_dir=self.socket_dir,
            instance_id=self.instance_id,
            events=self.events,
            on_change=self._changed,
            kv_handler=self.kv_store.handler_for(plugin_id) if self.kv_store else None,
            line_sink=file.line if (file := self.log_file(plugin_id)) else self.line_sink,
            log_path=str(self.log_dir / "plugins" / f"{plugin_id}.log") if self.log_dir else "",
            timing=self.timing,
            fingerprint=item.fingerprint,
            **self.runner_options,
        )
        self.runners[plugin_id] = runner
        await self._nursery.start(self._run_runner, runner, name=f"plugin:{plugin_id}")

    async def _run_runner(
        self, runner: PluginRunner, *, task_status: trio.TaskStatus[PluginRunner]
    ) -> None:
        # A runner outlives the request that enabled it: its log lines carry its plugin
        # id, not that request's id.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(plugin_id=runner.plugin_id)
        try:
            await runner.run(task_status=task_status)
        except Exception as exc:
            # A bug or a broken database in one runner must not take the server down:
            # its process is already reaped (the run's finally), so mark it and carry on.
            log.exception("plugin runner failed; the plugin is stopped")
            runner.state = State.FAILED
            runner.last_error = f"internal error in Toru's runner: {exc!r}; see the server log"
        if runner.state is State.FAILED:
            # Ten failures in a row: disabled, with the reason kept on the runner.
            await self.enablement.set(runner.plugin_id, False)
            self._changed(runner)

    async def _stop_runner(self, plugin_id: str) -> None:
        runner = self.runners.get(plugin_id)
        if runner is None:
            return
        # Listed (as "stopping") until its process is reaped, then gone.
        runner.cancel()
        await runner.finished.wait()
        if self.runners.get(plugin_id) is runner:
            del self.runners[plugin_id]
        self._broadcast(plugin_id)

    # -- status --------------------------------------------------------------------------

    def status(self, plugin_id: str) -> dict[str, Any]:
        """Full status of one plugin (the admin view)."""
        item = self._require(plugin_id)
        assert item.metadata is not None
        runner = self.runners.get(plugin_id)
        # A runner that gave up is disabled from that moment, also while config.json is
        # still being written (never "failed" and enabled at once).
        failed = runner is not None and runner.state is State.FAILED
        enabled = self.enablement.enabled(plugin_id) and not failed
        live: dict[str, Any] = (
            runner.status()
            if runner is not None
            else {
                "state": State.STOPPED.value,
                "running": False,
                "pid": None,
                "restart_count": 0,
                "failures_in_a_row": 0,
                "last_error": None,
                "started_at": None,
                "healthy": False,
                "mode": "modern" if item.metadata.modern else "legacy",
                "socket": None,
            }
        )
        healthy = live.pop("healthy")
        started_at = live.pop("started_at")
        if runner is not None and started_at is not None:
            uptime = trio.current_time() - started_at
            live["started_at"] = iso_utc(trio_to_wall(started_at))
            live["uptime_s"] = round(uptime, 1)
        else:
            live["started_at"] = None
            live["uptime_s"] = None
        if not enabled:
            health = "disabled"
        elif live["running"] and healthy:
            health = "healthy"
        else:
            health = "unhealthy"
        return {
            **item.metadata.to_json(),
            "enabled": enabled,
            "health": health,
            **live,
            "binary": str(item.path),
        }

    def statuses(self) -> list[dict[str, Any]]:
        return [self.status(plugin_id) for plugin_id in sorted(accepted(self.found.values()))]

    def rejected(self) -> list[dict[str, Any]]:
        return [
            {"file": item.file_name, "reason": item.error}
            for item in sorted(self.found.values(), key=lambda i: i.file_name)
            if item.metadata is None
        ]

    def is_enabled(self, plugin_id: str) -> bool:
        """An accepted plugin that is enabled in config.json."""
        known = plugin_id in accepted(self.found.values())
        return known and self.enablement.enabled(plugin_id)

    def runner_for_route(self, segment: str) -> PluginRunner | None:
        """The runner of the enabled plugin whose route is ``/{segment}``, if any."""
        for plugin_id, item in accepted(self.found.values()).items():
            assert item.metadata is not None
            if item.metadata.route_segment == segment and self.enablement.enabled(plugin_id):
                return self.runners.get(plugin_id)
        return None

    def runner_for(self, plugin_id: str) -> PluginRunner | None:
        return self.runners.get(plugin_id)

    # -- change stream -------------------------------------------------------------------

    def _changed(self, runner: PluginRunner) -> None:
        self._broadcast(runner.plugin_id)

    def _broadcast(self, plugin_id: str) -> None:
        if not self._subscribers:
            return
        try:
            message = {"type": "plugin", "plugin": self.status(plugin_id)}
        except PluginError:
            message = {"type": "removed", "id": plugin_id}
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(message)
            except trio.WouldBlock:
                # A subscriber that does not keep up is dropped, not waited for.
                channel.close()
                self._subscribers.discard(channel)
            except trio.ClosedResourceError:
                self._subscribers.discard(channel)

    def end_streams(self) -> None:
        """End every status and log stream now, and any opened later.

        Called when the server starts to stop, so that open server-sent event streams
        (which never end by themselves) do not hold the HTTP drain for its full timeout.
        """
        self._streams_ended = True
        for channel in list(self._subscribers):
            channel.close()
        self._subscribers.clear()
        for file in self._files.values():
            file.end_followers()

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[trio.MemoryReceiveChannel[dict[str, Any]]]:
        """Receive ``{"type": "plugin", "plugin": status}`` messages while the block runs."""
        send, receive = trio.open_memory_channel[dict[str, Any]](SUBSCRIBER_BUFFER)
        if self._streams_ended:
            send.close()  # the server is stopping: the stream ends at once
        else:
            self._subscribers.add(send)
        try:
            yield receive
        finally:
            self._subscribers.discard(send)
            send.close()


def trio_to_wall(trio_time: float) -> float:
    """Convert a ``trio.current_time()`` reading to Unix time."""
    return time.time() - (trio.current_time() - trio_time)
