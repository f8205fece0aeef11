"""One plugin, one task: spawn, connect, ping, restart with backoff, stop by cancellation.

A :class:`PluginRunner` is started by the supervisor with ``nursery.start``
and lives in its own cancel scope. Its loop::

    starting -> running -> (crash | unhealthy | connection lost) -> backoff -> starting
    any state -> (cancelled: disable, restart, reload, server stop) -> stopping -> stopped
    10 failures in a row -> failed (the supervisor disables the plugin)

Each run owns a nursery holding the child process (reaped there whatever
happens), its stdout/stderr pumps, the connection reader and the pinger. The
shutdown ladder runs in that run's ``finally``, shielded with its own
deadline, so when cancelling a runner's scope returns, the process is gone.
``task_status.started()`` is called after the *first* attempt, successful
or not: ``enable`` then answers with the real outcome, while the loop keeps
retrying with backoff.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol

import attrs
import structlog
import trio

from toru.plugins.connection import (
    ConnectionLost,
    KvHandler,
    LegacyConnection,
    PluginChannel,
    PluginConnection,
    RequestTimeout,
    wait_for_socket,
)
from toru.plugins.events import EventLog
from toru.plugins.framing import DEFAULT_MAX_FRAME, FramedStream
from toru.plugins.logs import LineSplitter
from toru.plugins.messages import Init, Ping, Shutdown, is_pong
from toru.plugins.metadata import PluginMetadata
from toru.plugins.process import describe_status, plugin_environment, spawned, stop

log = structlog.get_logger("toru.plugins.runner")

#: sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107
STDERR_TAIL = 20


class State(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


@attrs.frozen
class Timing:
    """The lifecycle numbers (DESIGN.md); tests shrink them."""

    ready_timeout: float = 5.0
    ping_interval: float = 5.0
    ping_timeout: float = 5.0
    missed_pings: int = 3
    backoff_first: float = 1.0
    backoff_max: float = 16.0
    max_failures: int = 10
    healthy_reset: float = 60.0
    shutdown_grace: float = 5.0
    term_grace: float = 2.0

    def backoff(self, failures: int) -> float:
        """1, 2, 4, 8, 16, 16, ... seconds for the 1st, 2nd, ... failure in a row."""
        return float(min(self.backoff_max, self.backoff_first * 2 ** (failures - 1)))


class Process(Protocol):
    """What a runner needs of a child process (real: ``process.ChildProcess``)."""

    @property
    def pid(self) -> int: ...

    returncode: int | None
    stdout: trio.abc.ReceiveStream
    stderr: trio.abc.ReceiveStream

    async def wait(self) -> int: ...


Launch = Callable[[Sequence[str | Path], Mapping[str, str], Path], AbstractAsyncContextManager[Any]]
Connect = Callable[[Path, PluginMetadata, Callable[[], bool], float], Awaitable[trio.abc.Stream]]
Stop = Callable[[Any, Callable[[], Awaitable[None]] | None, float, float], Awaitable[Any]]
LineSink = Callable[[str, str, int, int], None]


def real_launch(
    argv: Sequence[str | Path], env: Mapping[str, str], cwd: Path
) -> AbstractAsyncContextManager[Any]:
    return spawned(argv, env=env, cwd=cwd)


async def real_connect(
    socket_path: Path, metadata: PluginMetadata, give_up: Callable[[], bool], timeout: float
) -> trio.abc.Stream:
    """Wait until the plugin listens, then open the long-lived connection."""
    if not await wait_for_socket(socket_path, timeout=timeout, give_up=give_up):
        raise _ProcessEnded
    return await trio.open_unix_socket(str(socket_path))


async def real_stop(
    child: Any, ask: Callable[[], Awaitable[None]] | None, grace: float, term: float
) -> Any:
    return await stop(child, ask, ask_grace=grace, term_grace=term)


class _ProcessEnded(Exception):
    """The child exited while we were waiting for it to listen."""


def log_line(stream: str, line: str, pid: int, generation: int) -> None:
    """Default sink: plugin output as Toru log lines (issue D writes per-plugin files)."""
    log.info("plugin output", stream=stream, line=line, pid=pid, generation=generation)


@attrs.define(eq=False)
class PluginRunner:
    """Keeps one plugin running; see the module documentation for the loop."""

    metadata: PluginMetadata
    binary: Path
    socket_dir: Path
    instance_id: str
    events: EventLog
    on_change: Callable[[PluginRunner], None] = lambda runner: None
    kv_handler: KvHandler | None = None
    line_sink: LineSink = log_line
    log_path: str = ""
    timing: Timing = attrs.field(factory=Timing)
    launch: Launch = real_launch
    connect: Connect = real_connect
    stopper: Stop = real_stop
    max_frame: int = DEFAULT_MAX_FRAME
    #: The binary's identity when this runner started (hot reload compares it).
    fingerprint: Any = None

    state: State = State.STOPPED
    pid: int | None = None
    #: Starts since enable (the first one included); also the log "generation".
    generation: int = 0
    #: Failed starts or crashes in a row (reset by a run healthy for ``healthy_reset`` s).
    failures: int = 0
    last_error: str | None = None
    started_at: float | None = None
    healthy: bool = False
    channel: PluginChannel | None = None
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    finished: trio.Event = attrs.field(factory=trio.Event)
    stderr_tail: collections.deque[str] = attrs.field(
        factory=lambda: collections.deque(maxlen=STDERR_TAIL)
    )

    @property
    def plugin_id(self) -> str:
        return self.metadata.id

    @property
    def socket_path(self) -> Path:
        return self.socket_dir / f"{self.plugin_id}.sock"

    def cancel(self) -> None:
        """Ask the runner to stop; await ``finished`` to know the process is gone."""
        self.scope.cancel()

    def _set(self, state: State, **changes: Any) -> None:
        self.state = state
        for name, value in changes.items():
            setattr(self, name, value)
        self.on_change(self)

    async def run(self, *, task_status: trio.TaskStatus[PluginRunner]) -> None:
        reported = False

        def report() -> None:
            nonlocal reported
            if not reported:
                reported = True
                task_status.started(self)

        try:
            with self.scope:
                if len(os.fsencode(self.socket_path)) > MAX_SOCKET_PATH:
                    message = (
                        f"socket path {self.socket_path} is longer than the Unix limit of "
                        f"{MAX_SOCKET_PATH} bytes; use a shorter runtime directory"
                    )
                    await self.events.record(self.plugin_id, "failed", reason=message)
                    self._set(State.FAILED, last_error=message)
                    return
                await self._loop(report)
        finally:
            if self.state is not State.FAILED:
                self._set(State.STOPPED, pid=None, healthy=False, channel=None)
            self.finished.set()
            report()

    async def _loop(self, report: Callable[[], None]) -> None:
        while True:
            self.generation += 1
            self._set(State.STARTING, healthy=False)
            reason, ran_for = await self._run_once(report)
            if ran_for is not None and ran_for >= self.timing.healthy_reset:
                self.failures = 0
            self.failures += 1
            self.last_error = reason
            if self.failures >= self.timing.max_failures:
                message = f"failed {self.failures} times in a row: {reason}"
                await self.events.record(self.plugin_id, "failed", reason=message)
                self._set(State.FAILED, pid=None, last_error=message, healthy=False)
                return
            delay = self.timing.backoff(self.failures)
            self._set(State.BACKOFF, pid=None, started_at=None, healthy=False)
            report()  # a failed first start: enable answers now, with the reason
            await self.events.record(
                self.plugin_id, "backoff", delay=delay, attempt=self.failures, reason=reason
            )
            await trio.sleep(delay)

    async def _run_once(self, report: Callable[[], None]) -> tuple[str, float | None]:
        """One life of the process; returns why it ended and how long it was ready."""
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # a stale socket from a killed run
        self.stderr_tail.clear()  # a crash dossier speaks of its own run only
        env = plugin_environment(
            {
                "TORU_PLUGIN_SOCKET": str(self.socket_path),
                "TORU_PLUGIN_ID": self.plugin_id,
                "TORU_INSTANCE_ID": self.instance_id,
            }
        )
        await self.events.record(self.plugin_id, "starting", generation=self.generation)
        try:
            launched = self.launch([self.binary], env, self.binary.parent)
            child = await launched.__aenter__()
        except OSError as exc:
            reason = f"cannot start {self.binary.name}: {exc.strerror or exc}"
            await self.events.record(self.plugin_id, "start_failed", reason=reason)
            return reason, None
        try:
            return await self._supervise(child, report)
        finally:
            with trio.move_on_after(self._ladder_seconds() + 5, shield=True):
                await launched.__aexit__(None, None, None)
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()

    def _ladder_seconds(self) -> float:
        return self.timing.shutdown_grace + self.timing.term_grace + 5

    async def _supervise(self, child: Any, report: Callable[[], None]) -> tuple[str, float | None]:
        spawned_at = trio.current_time()
        self._set(State.STARTING, pid=child.pid, started_at=None)
        await self.events.record(
            self.plugin_id, "started", pid=child.pid, generation=self.generation
        )
        ended = trio.Event()
        reasons: list[str] = []
        ready_at: float | None = None
        channel: PluginChannel | None = None
        #: Every connection opened in this run, closed at its end even if never ready.
        opened: list[PluginChannel] = []

        def finish(reason: str) -> None:
            if not reasons:
                reasons.append(reason)
            ended.set()

        exited = trio.Event()
        stderr_done = trio.Event()
        prefix = f"plugin:{self.plugin_id}"
        async with trio.open_nursery() as nursery:
            # The pumps are shielded: they must drain the pipes during the shutdown ladder
            # too. They end when the pipes close, which the finally below guarantees.
            nursery.start_soon(self._pump, child.stdout, "stdout", child.pid, trio.Event(),
                               name=f"{prefix}:stdout")  # fmt: skip
            nursery.start_soon(self._pump, child.stderr, "stderr", child.pid, stderr_done,
                               name=f"{prefix}:stderr")  # fmt: skip

            async def watch_process() -> None:
                await child.wait()
                exited.set()
                finish("exited")

            nursery.start_soon(watch_process, name=f"{prefix}:process")
            try:
                try:
                    channel = await self._open_channel(child, exited, nursery, finish, opened)
                except _ProcessEnded:
                    pass
                except (TimeoutError, ConnectionLost, OSError, trio.BrokenResourceError) as exc:
                    finish(f"not ready: {exc}")
                else:
                    ready_at = trio.current_time()
                    self._set(State.RUNNING, channel=channel, healthy=True, started_at=ready_at)
                    await self.events.record(
                        self.plugin_id,
                        "ready",
                        pid=child.pid,
                        after_ms=round((ready_at - spawned_at) * 1000, 1),
                        mode="modern" if self.metadata.modern else "legacy",
                    )
                    report()
                    if self.metadata.modern:
                        nursery.start_soon(self._pinger, channel, finish, name=f"{prefix}:pinger")
                await ended.wait()
                if not exited.is_set() and reasons[0].startswith("connection lost"):
                    # A dying process closes its socket a moment before it is reaped: give
                    # it that moment, so a kill -9 reads as the crash it is.
                    with trio.move_on_after(0.5):
                        await exited.wait()
                if exited.is_set():
                    # Let the pump collect the last words before the dossier is written.
                    with trio.move_on_after(0.5):
                        await stderr_done.wait()
                    reason = await self._crashed(child, spawned_at, ready_at)
                else:
                    reason = reasons[0]
            finally:
                # Normal end (unhealthy, connection lost, not ready) or cancellation
                # (disable, restart, reload, server stop): the ladder, shielded, bounded.
                if child.returncode is None:
                    await self._stop_child(child, reasons[0] if reasons else "stopped", channel)
                with trio.move_on_after(5, shield=True):
                    for connection in opened:
                        await connection.aclose()
                    await child.stdout.aclose()
                    await child.stderr.aclose()
                self.channel = None
                nursery.cancel_scope.cancel()
        ran_for = trio.current_time() - ready_at if ready_at is not None else None
        return reason, ran_for

    async def _open_channel(
        self,
        child: Any,
        exited: trio.Event,
        nursery: trio.Nursery,
        finish: Callable[[str], None],
        opened: list[PluginChannel],
    ) -> PluginChannel:
        stream = await self.connect(
            self.socket_path, self.metadata, exited.is_set, self.timing.ready_timeout
        )
        init = Init(self.instance_id, str(self.socket_path), self.log_path)
        if not self.metadata.modern:
            # The old host's way: init on its own connection, every exchange on a fresh one.
            await stream.aclose()
            legacy = LegacyConnection(self.socket_path, self.plugin_id, self.max_frame)
            await legacy.notify(init)
            return legacy
        connection = PluginConnection(
            FramedStream(stream, limit=self.max_frame), self.plugin_id, self.kv_handler
        )
        opened.append(connection)

        async def read() -> None:
            # Shielded like the pumps: the shutdown message and the plugin's last KV
            # calls need the connection during the ladder; closing it ends this task.
            try:
                with trio.CancelScope(shield=True):
                    await connection.run()
            except ConnectionLost as exc:
                finish(f"connection lost: {exc}")

        nursery.start_soon(read, name=f"plugin:{self.plugin_id}:connection")
        await connection.notify(init)
        return connection

    async def _pinger(self, channel: PluginChannel, finish: Callable[[str], None]) -> None:
        answered_once = False
        missed = 0
        while True:
            await trio.sleep(self.timing.ping_interval)
            try:
                reply = await channel.request(Ping(), timeout=self.timing.ping_timeout)
                ok = is_pong(reply)
            except RequestTimeout:
                ok = False
            except ConnectionLost as exc:
                finish(f"connection lost: {exc}")
                return
            if ok:
                answered_once, missed = True, 0
                if not self.healthy:
                    self._set(self.state, healthy=True)
                continue
            if not answered_once:
                continue  # never answered: judged by liveness alone
            missed += 1
            if self.healthy:
                self._set(self.state, healthy=False)
            await self.events.record(self.plugin_id, "unhealthy", missed_pings=missed)
            if missed >= self.timing.missed_pings:
                finish(f"unhealthy: missed {missed} pings in a row")
                return

    async def _stop_child(self, child: Any, why: str, channel: PluginChannel | None) -> None:
        """The shutdown ladder, shielded with its own deadline (it runs while cancelled)."""
        self._set(State.STOPPING, channel=None, healthy=False)

        async def ask() -> None:
            assert channel is not None
            await channel.notify(Shutdown())

        started = trio.current_time()
        with trio.move_on_after(self._ladder_seconds(), shield=True):
            await self.events.record(self.plugin_id, "stopping", pid=child.pid, reason=why)
            report = await self.stopper(
                child,
                ask if channel is not None else None,
                self.timing.shutdown_grace,
                self.timing.term_grace,
            )
            how = {"asked": "shutdown message", "sigterm": "SIGTERM", "sigkill": "SIGKILL"}
            await self.events.record(
                self.plugin_id,
                "stopped",
                pid=child.pid,
                how=how.get(report.rung, report.rung),
                exit=describe_status(report.returncode),
                duration_ms=round((trio.current_time() - started) * 1000, 1),
            )

    async def _crashed(self, child: Any, spawned_at: float, ready_at: float | None) -> str:
        status = describe_status(child.returncode if child.returncode is not None else 0)
        when = "before it was ready" if ready_at is None else "while running"
        reason = f"{status} {when}"
        await self.events.record(
            self.plugin_id,
            "crashed",
            pid=child.pid,
            exit=status,
            returncode=child.returncode,
            uptime_s=round(trio.current_time() - spawned_at, 3),
            stderr_tail=list(self.stderr_tail),
        )
        return reason

    async def _pump(
        self,
        stream: trio.abc.ReceiveStream,
        name: str,
        pid: int,
        done: trio.Event,
    ) -> None:
        """Drain one output pipe line by line, so a chatty plugin never blocks on it."""
        lines = LineSplitter()
        try:
            with trio.CancelScope(shield=True):  # ended by closing the pipe; see _supervise
                while chunk := await stream.receive_some(65536):
                    for raw in lines.feed(bytes(chunk)):
                        self._line(name, raw, pid)
            for raw in lines.finish():
                self._line(name, raw, pid)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        finally:
            done.set()

    def _line(self, stream: str, raw: bytes, pid: int) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        if not line:
            return
        if stream == "stderr":
            self.stderr_tail.append(line[:500])
        self.line_sink(stream, line, pid, self.generation)

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "running": self.state is State.RUNNING,
            "pid": self.pid,
            "restart_count": max(0, self.generation - 1),
            "failures_in_a_row": self.failures,
            "last_error": self.last_error,
            "started_at": self.started_at if self.state is State.RUNNING else None,
            "healthy": self.healthy,
            "mode": "modern" if self.metadata.modern else "legacy",
            "socket": str(self.socket_path),
        }
