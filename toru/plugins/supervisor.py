"""The supervisor: owns one runner per enabled plugin, in its own nursery.

It sits in the root nursery beside Hypercorn, and it is the HTTP layer's one
door to the plugins: ``status``/``statuses`` give :class:`PluginStatus` values,
``resolve_route`` and ``request`` forward web requests (one error,
:class:`PluginUnavailable`), and ``enable``/``disable``/``restart``/``rescan``
are the transitions. Nobody else reads a runner's state or its channel.

Ownership:

- **A transition belongs to the supervisor, not to whoever asked.** Each one
  runs in a task of the supervisor's nursery; the caller (an HTTP handler,
  which Quart-Trio cancels when the client goes away) only waits for its
  result. So a transition is never cut off half-way; it completes (each step
  is bounded) and a caller that stayed gets the outcome. Transitions of one
  plugin are serialised by a per-plugin lock, so racing requests end in the
  state last asked for.
- **The runner's entry belongs to the runner's task.** ``_run_runner`` puts it
  into ``runners`` before its first checkpoint and takes it out (checked by
  identity) when it ends, whoever cancelled whom: ``runners`` always matches
  the live runner tasks. A runner that gave up leaves its last words in
  ``_gave_up`` so its status and reason stay visible.
- **A bad tick never stops the supervisor.** An error in discovery or rescan
  (``EMFILE``, permission denied, a vanished directory) is logged with its
  reason, shown in :attr:`scan_error` (and the API), and retried on the next
  tick.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import attrs
import structlog
import trio

from toru.plugins import socketdir
from toru.plugins.discovery import Discovered, accepted, scan
from toru.plugins.enablement import EnableState, NotSaved
from toru.plugins.errors import PluginError, PluginUnavailable
from toru.plugins.events import EventLog
from toru.plugins.kv import KvStore
from toru.plugins.logs import PluginLogFile, PluginLogs
from toru.plugins.messages import HttpRequest, HttpResponse
from toru.plugins.runner import PluginRunner, Timing, record_event
from toru.plugins.status import Health, Mode, PluginStatus, ScanError, State
from toru.timestamps import iso_utc

log = structlog.get_logger("toru.plugins.supervisor")

RESCAN_INTERVAL = 5.0
SUBSCRIBER_BUFFER = 256

__all__ = ["PluginError", "PluginUnavailable", "ScanError", "StatusChange", "Supervisor"]

T = TypeVar("T")


@attrs.frozen
class StatusChange:
    """One message of the change stream: a plugin's new status, or ``None`` when it is gone."""

    plugin_id: str
    status: PluginStatus | None


@attrs.frozen
class _GaveUp:
    """What a runner that gave up (ten failures in a row) left for the status."""

    last_error: str | None
    failures: int
    generation: int
    mode: Mode
    socket: str


@attrs.define(eq=False)
class Supervisor:
    plugins_dir: Path
    events: EventLog
    instance_id: str
    #: The plugins' own log files; None: Toru runs without them (output goes to toru.log).
    logs: PluginLogs | None = None
    timing: Timing = attrs.field(factory=Timing)
    rescan_interval: float = RESCAN_INTERVAL
    #: Storage for plugins' KV requests; None: plugins are told there is none.
    kv_store: KvStore | None = None

    enablement: EnableState = attrs.field(init=False)
    found: dict[str, Discovered] = attrs.field(factory=dict, init=False)
    #: One entry per live runner task, owned by that task (see the module documentation).
    runners: dict[str, PluginRunner] = attrs.field(factory=dict, init=False)
    socket_dir: Path = attrs.field(init=False)
    scan_error: ScanError | None = attrs.field(default=None, init=False)
    _gave_up: dict[str, _GaveUp] = attrs.field(factory=dict, init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    _locks: dict[str, trio.Lock] = attrs.field(factory=dict, init=False)
    _scan_lock: trio.Lock = attrs.field(factory=trio.Lock, init=False)
    _subscribers: set[trio.MemorySendChannel[StatusChange]] = attrs.field(factory=set, init=False)
    _streams_ended: bool = attrs.field(default=False, init=False)
    _hurried: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self.enablement = EnableState.for_plugins_dir(self.plugins_dir)
        if self.logs is not None:
            self.events.listeners.append(self._lifecycle_to_file)

    def log_file(self, plugin_id: str) -> PluginLogFile | None:
        """The plugin's own JSON-lines file (None when Toru runs without a log directory)."""
        return self.logs.file(plugin_id) if self.logs is not None else None

    def _lifecycle_to_file(self, plugin_id: str, event: str, details: dict[str, Any]) -> None:
        if plugin_id in accepted(self.found.values()) and (file := self.log_file(plugin_id)):
            file.lifecycle(event, details)

    # -- running -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Supervisor]) -> None:
        """Discover, start the enabled plugins (in parallel), then keep rescanning.

        Cancelling this task stops every plugin, in parallel, each through its
        own shutdown ladder (:meth:`hurry` cuts the ladders short).
        """
        # Short, private (0700) and ours alone: socket paths must stay under 108 bytes.
        self.socket_dir = await trio.to_thread.run_sync(socketdir.create)
        try:
            await self._clean_stale_socket_dirs()
            await self.enablement.load()
            with contextlib.suppress(PluginError):  # recorded in scan_error, retried
                await self._scan_reporting()
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
            for channel in list(self._subscribers):
                channel.close()
            with trio.move_on_after(5, shield=True):
                await trio.to_thread.run_sync(
                    partial(shutil.rmtree, self.socket_dir, ignore_errors=True),
                    abandon_on_cancel=True,
                )

    def hurry(self) -> None:
        """Stop now: every ladder in progress, and any begun later, goes straight to SIGKILL."""
        self._hurried = True
        for runner in list(self.runners.values()):
            runner.hurry()

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
            try:
                await self._rescan()
            except PluginError:
                pass  # already logged and kept in scan_error; the next tick retries
            except Exception as exc:
                # One bad tick (a bug, an odd file system) must not take every plugin down.
                log.exception("rescan failed; retrying at the next tick")
                self._scan_failed(f"rescan failed: {exc!r}; see the server log")

    # -- discovery -----------------------------------------------------------------------

    def _scan_failed(self, message: str) -> None:
        previous = self.scan_error
        if previous is not None and previous.message == message:
            self.scan_error = attrs.evolve(previous, attempts=previous.attempts + 1)
            return
        log.error("plugin discovery failed; retrying", reason=message)
        self.scan_error = ScanError(message, iso_utc(time.time()), 1)

    async def _scan_reporting(self) -> list[Discovered]:
        """Scan; a directory that cannot be read becomes :attr:`scan_error` and a 503."""
        try:
            found = await self._scan()
        except OSError as exc:
            hint = (
                " (too many open files: raise the server's file limit)"
                if (exc.errno == errno.EMFILE)
                else ""
            )
            message = (
                f"cannot scan the plugins directory {self.plugins_dir}: "
                f"{exc.strerror or exc}{hint}; retrying every {self.rescan_interval:g} s"
            )
            self._scan_failed(message)
            raise PluginError(message, status=503) from exc
        if self.scan_error is not None:
            log.info("plugin discovery works again", after_attempts=self.scan_error.attempts)
            self.scan_error = None
        return found

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
                await self._record(
                    item.file_name, "rejected", file=item.file_name, reason=item.error
                )
            else:
                await self._record(
                    item.metadata.id, "discovered", file=item.file_name,
                    version=item.metadata.version,
                )  # fmt: skip
        return list(found.values())

    async def rescan(self) -> list[Discovered]:
        """Scan now; start new enabled plugins, reload changed ones, stop removed ones.

        Runs in the supervisor's nursery like a transition (a reload cut in half
        by a client that went away would leave a plugin stopped). :class:`PluginError`
        (503) when the directory cannot be scanned (also kept in :attr:`scan_error`).
        """
        return await self._transition("rescan", self._rescan)

    async def _rescan(self) -> list[Discovered]:
        before = {(k, v.fingerprint) for k, v in accepted(self.found.values()).items()}
        await self._scan_reporting()
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
            await self._stop_runner(plugin_id, "its binary is gone")
            await self._record(plugin_id, "removed", reason="its binary is gone")

    async def _reload(self, plugin_id: str) -> None:
        async with self._lock(plugin_id):
            if plugin_id not in self.runners:
                return
            await self._stop_runner(plugin_id, "its binary changed")
            await self._record(plugin_id, "reloaded", reason="its binary changed")
            if plugin_id in accepted(self.found.values()):
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

    async def _record(self, plugin_id: str, event: str, **details: Any) -> None:
        """Record a supervisor event: bounded, and one that fails is logged, never raised."""
        await record_event(self.events, self.timing, plugin_id, event, details)

    async def _transition(
        self, action: str, perform: Callable[[], Awaitable[T]], plugin_id: str | None = None
    ) -> T:
        """Run *perform* in the supervisor's own nursery and wait for its result.

        The caller may be cancelled (a client that went away): the transition
        completes anyway, and nobody is left with half of it.
        """
        if plugin_id is not None:
            self._require(plugin_id)
        nursery = self._nursery
        if nursery is None:
            raise PluginError("the supervisor is not running", status=503)
        done = trio.Event()
        results: list[T] = []
        errors: list[Exception] = []

        async def transition() -> None:
            try:
                results.append(await perform())
            except Exception as exc:  # delivered to the caller, if it still waits
                errors.append(exc)
            finally:
                done.set()

        what = f"{action} {plugin_id!r}" if plugin_id is not None else action
        # (The periodic rescan is "supervisor:rescan"; one asked for over HTTP is not it.)
        name = f"supervisor:{action}:{plugin_id}" if plugin_id else f"supervisor:{action}:asked"
        nursery.start_soon(transition, name=name)
        await done.wait()
        if errors:
            raise errors[0]
        if not results:
            raise PluginError(f"the server is stopping; {what} was cut short", status=503)
        return results[0]

    async def _save_enabled(self, plugin_id: str, enabled: bool | None = None) -> str | None:
        """Save the enable state (assigning *enabled* first, when given); the reason when it
        holds in memory but could not be saved."""
        if enabled is not None:
            self.enablement.assign(plugin_id, enabled)
        try:
            await self.enablement.save()
        except NotSaved as exc:
            log.error("could not save the plugin enable state", plugin_id=plugin_id, error=str(exc))
            return str(exc)
        return None

    def _not_saved(self, plugin_id: str, done: str, problem: str) -> PluginError:
        return PluginError(
            f"plugin {plugin_id!r} is {done}, but {problem}",
            status=507,
            plugin=self.status(plugin_id),
        )

    async def enable(self, plugin_id: str) -> PluginStatus:
        """Enable and start; returns the status once running or once the first start failed."""
        return await self._transition("enable", partial(self._enable, plugin_id), plugin_id)

    async def _enable(self, plugin_id: str) -> PluginStatus:
        async with self._lock(plugin_id):
            self._require(plugin_id)
            problem = await self._save_enabled(plugin_id, True)
            await self._record(plugin_id, "enabled")
            self._gave_up.pop(plugin_id, None)
            if plugin_id not in self.runners:
                await self._start(plugin_id)
        if problem is not None:
            raise self._not_saved(plugin_id, "enabled until Toru restarts", problem)
        return self.status(plugin_id)

    async def disable(self, plugin_id: str) -> PluginStatus:
        """Disable and stop; returns once the plugin's process is reaped."""
        return await self._transition("disable", partial(self._disable, plugin_id), plugin_id)

    async def _disable(self, plugin_id: str) -> PluginStatus:
        async with self._lock(plugin_id):
            # Stop first: whatever the disk says, the process is gone when this returns.
            self.enablement.assign(plugin_id, False)
            await self._stop_runner(plugin_id, "disabled by an administrator")
            problem = await self._save_enabled(plugin_id)
            self._gave_up.pop(plugin_id, None)
            self._broadcast(plugin_id)
            await self._record(plugin_id, "disabled")
        if problem is not None:
            raise self._not_saved(plugin_id, "stopped and disabled until Toru restarts", problem)
        return self.status(plugin_id)

    async def restart(self, plugin_id: str) -> PluginStatus:
        """Stop (gracefully) and start again; the plugin must be enabled."""
        return await self._transition("restart", partial(self._restart, plugin_id), plugin_id)

    async def _restart(self, plugin_id: str) -> PluginStatus:
        async with self._lock(plugin_id):
            self._require(plugin_id)
            if not self.enablement.enabled(plugin_id):
                raise PluginError(f"plugin {plugin_id!r} is disabled; enable it instead")
            await self._stop_runner(plugin_id, "restarted by an administrator")
            self._gave_up.pop(plugin_id, None)
            await self._start(plugin_id)
        return self.status(plugin_id)

    async def _start_locked(self, plugin_id: str) -> None:
        async with self._lock(plugin_id):
            enabled = self.enablement.enabled(plugin_id) and plugin_id not in self._gave_up
            if plugin_id not in self.runners and enabled:
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
            log_file=self.log_file(plugin_id),
            timing=self.timing,
            fingerprint=item.fingerprint,
        )
        await self._nursery.start(self._run_runner, runner, name=f"plugin:{plugin_id}")

    async def _run_runner(
        self, runner: PluginRunner, *, task_status: trio.TaskStatus[PluginRunner]
    ) -> None:
        plugin_id = runner.plugin_id
        # The entry is this task's: in before its first checkpoint, out when it ends.
        self.runners[plugin_id] = runner
        if self._hurried:
            runner.hurry()
        # A runner outlives the request that enabled it: its log lines carry its plugin
        # id, not that request's id.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(plugin_id=plugin_id)
        try:
            await runner.run(task_status=task_status)
        except Exception as exc:
            # A bug in one runner must not take the server down: its process is already
            # reaped (the run's finally), so mark it and carry on.
            log.exception("plugin runner failed; the plugin is stopped")
            runner.state = State.FAILED
            runner.last_error = f"internal error in Toru's runner: {exc!r}; see the server log"
        finally:
            if self.runners.get(plugin_id) is runner:
                del self.runners[plugin_id]
            if runner.state is State.FAILED:
                self._gave_up[plugin_id] = _GaveUp(
                    runner.last_error,
                    runner.failures,
                    runner.generation,
                    Mode.MODERN if runner.metadata.modern else Mode.LEGACY,
                    str(runner.socket_path),
                )
            self._broadcast(plugin_id)
        if runner.state is State.FAILED:
            # It gave up: disabled (shown at once through _gave_up; saved here, unless an
            # administrator enabled it again meanwhile).
            async with self._lock(plugin_id):
                if plugin_id in self._gave_up:
                    await self._save_enabled(plugin_id, False)
            self._broadcast(plugin_id)

    async def _stop_runner(self, plugin_id: str, reason: str) -> None:
        runner = self.runners.get(plugin_id)
        if runner is None:
            return
        # Listed (as "stopping") until its process is reaped; its task then removes it.
        runner.cancel(reason)
        await runner.finished.wait()

    # -- the HTTP layer's door ---------------------------------------------------------------

    def resolve_route(self, segment: str) -> str:
        """The id of the enabled plugin serving ``/{segment}``; 404 or 503 as PluginUnavailable."""
        for plugin_id, item in accepted(self.found.values()).items():
            assert item.metadata is not None
            if item.metadata.route_segment == segment and self.is_enabled(plugin_id):
                self._running_runner(plugin_id)
                return plugin_id
        raise PluginUnavailable(404, f"no enabled plugin serves the route '/{segment}'")

    async def request(self, plugin_id: str, message: HttpRequest) -> HttpResponse:
        """Forward *message* to the running plugin; :class:`PluginUnavailable` says why not."""
        if not self.is_enabled(plugin_id):
            raise PluginUnavailable(404, f"no enabled plugin with id {plugin_id!r}")
        return await self._running_runner(plugin_id).request(message)

    def _running_runner(self, plugin_id: str) -> PluginRunner:
        """The live runner of an enabled plugin; 503 while there is none (between two)."""
        runner = self.runners.get(plugin_id)
        if runner is None:
            state = State.FAILED if plugin_id in self._gave_up else State.STOPPED
            raise PluginUnavailable.not_running(plugin_id, state.value)
        return runner

    # -- status --------------------------------------------------------------------------

    def status(self, plugin_id: str) -> PluginStatus:
        """Full status of one plugin (the admin view)."""
        item = self._require(plugin_id)
        metadata = item.metadata
        assert metadata is not None
        runner = self.runners.get(plugin_id)
        gave_up = self._gave_up.get(plugin_id)
        mode = Mode.MODERN if metadata.modern else Mode.LEGACY
        # A runner that gave up is disabled from that moment, also while config.json is
        # still being written (never "failed" and enabled at once).
        failed = gave_up is not None or (runner is not None and runner.state is State.FAILED)
        enabled = self.enablement.enabled(plugin_id) and not failed
        started_at = uptime = None
        if runner is not None:
            state, pid, healthy = runner.state, runner.pid, runner.healthy
            restarts, failures, last_error = (
                max(0, runner.generation - 1), runner.failures, runner.last_error
            )  # fmt: skip
            socket: str | None = str(runner.socket_path)
            if runner.state is State.RUNNING and runner.ready_at is not None:
                uptime = round(trio.current_time() - runner.ready_at, 1)
                started_at = iso_utc(trio_to_wall(runner.ready_at))
        elif gave_up is not None:
            state, pid, healthy = State.FAILED, None, False
            restarts, failures, last_error = (
                max(0, gave_up.generation - 1), gave_up.failures, gave_up.last_error
            )  # fmt: skip
            socket = gave_up.socket
        else:
            state, pid, healthy, restarts, failures, last_error = (
                State.STOPPED, None, False, 0, 0, None
            )  # fmt: skip
            socket = None
        running = state is State.RUNNING
        if not enabled:
            health = Health.DISABLED
        elif running and healthy:
            health = Health.HEALTHY
        else:
            health = Health.UNHEALTHY
        return PluginStatus(
            id=metadata.id,
            name=metadata.name,
            version=metadata.version,
            author=metadata.author,
            icon=metadata.icon,
            route=metadata.route,
            protocol=metadata.protocol,
            enabled=enabled,
            running=running,
            health=health,
            state=state,
            pid=pid,
            restart_count=restarts,
            failures_in_a_row=failures,
            last_error=last_error,
            mode=mode,
            socket=socket,
            started_at=started_at,
            uptime_s=uptime,
            binary=str(item.path),
            extra=dict(metadata.extra),
        )

    def statuses(self) -> list[PluginStatus]:
        return [self.status(plugin_id) for plugin_id in sorted(accepted(self.found.values()))]

    def rejected(self) -> list[dict[str, Any]]:
        return [
            {"file": item.file_name, "reason": item.error}
            for item in sorted(self.found.values(), key=lambda i: i.file_name)
            if item.metadata is None
        ]

    def is_enabled(self, plugin_id: str) -> bool:
        """An accepted plugin that is enabled in config.json (and has not given up)."""
        known = plugin_id in accepted(self.found.values())
        return known and self.enablement.enabled(plugin_id) and plugin_id not in self._gave_up

    # -- change stream -------------------------------------------------------------------

    def _changed(self, runner: PluginRunner) -> None:
        self._broadcast(runner.plugin_id)

    def _broadcast(self, plugin_id: str) -> None:
        if not self._subscribers:
            return
        try:
            message = StatusChange(plugin_id, self.status(plugin_id))
        except PluginError:
            message = StatusChange(plugin_id, None)
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
        if self.logs is not None:
            self.logs.end_followers()

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[trio.MemoryReceiveChannel[StatusChange]]:
        """Receive a :class:`StatusChange` for every change while the block runs."""
        send, receive = trio.open_memory_channel[StatusChange](SUBSCRIBER_BUFFER)
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
