"""One plugin, one task: spawn, connect, judge its health, restart with backoff, stop.

A :class:`PluginRunner` is started by the supervisor with ``nursery.start``
and lives in its own cancel scope. Its loop::

    starting -> running -> (crash | unhealthy | connection lost) -> backoff -> starting
    any state -> (cancelled: disable, restart, reload, server stop) -> stopping -> stopped
    10 failures in a row -> failed (the supervisor disables the plugin)

Ownership, which the structure enforces rather than any convention:

- **Each run owns its child.** ``_run_once`` spawns the process and, in its
  ``finally``, SIGKILLs the whole process group (a synchronous system call)
  and reaps it within a deadline, on every way out: the run's own end, a
  cancellation, an error in Toru. Only then is anything recorded.
- **One place owns each stop's time budget**: ``_stop`` runs the ladder
  (``shutdown`` -> 5 s -> SIGTERM -> 2 s -> SIGKILL) inside one
  ``move_on_after(budget, shield=True)``, and inside that scope keeps draining
  the pipes and reading the connection, so a plugin that logs or calls KV while
  it shuts down is not blocked. When the budget runs out (or :meth:`hurry`
  cuts it short) the group is killed. There is no other shield without a
  deadline: the run's pumps and reader are ordinary, cancellable tasks, resumed
  inside the budget.
- **Bookkeeping never stops the lifecycle.** A lifecycle event that cannot be
  recorded (disk full, I/O error) is logged and the runner carries on; event
  writes are abandoned, not waited for, when their caller is cancelled.

Health: once a run is ready, its rule (:mod:`toru.plugins.health`: pings for
modern plugins, exchanges for legacy ones) may end it as unhealthy; the run
then stops the process and the loop restarts it through backoff.

``task_status.started()`` is called after the *first* attempt, successful or
not: ``enable`` then answers with the real outcome, while the loop keeps
retrying with backoff.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import structlog
import trio

from toru.plugins import health, session
from toru.plugins.connection import (
    ConnectionLost,
    KvHandler,
    PluginChannel,
    PluginConnection,
    QueueFull,
    RequestTimeout,
)
from toru.plugins.errors import PluginUnavailable
from toru.plugins.events import EventLog
from toru.plugins.framing import DEFAULT_MAX_FRAME, FrameTooLarge, ProtocolError
from toru.plugins.health import Finish
from toru.plugins.logs import LineSplitter, PluginLogFile
from toru.plugins.messages import (
    HttpRequest,
    HttpResponse,
    Shutdown,
    decode_http_reply,
)
from toru.plugins.metadata import PluginMetadata
from toru.plugins.process import StopReport, describe_status, stop
from toru.plugins.status import State

log = structlog.get_logger("toru.plugins.runner")

STDERR_TAIL = 20
#: After the process has exited, how long its pipes may take to reach end-of-file (a
#: grandchild may hold them open; it is killed with the group right after).
DRAIN_GRACE = 0.5
#: How long the records made after a stop may take while the runner is being cancelled.
RECORD_GRACE = 2.0
#: A connection that dropped while the process lives: the moment a dying process takes to
#: be reaped after its socket closed, so that a kill -9 reads as the crash it is.
DYING_GRACE = 0.5

__all__ = ["PluginRunner", "State", "Timing"]


@attrs.frozen
class Timing:
    """The lifecycle numbers (DESIGN.md); settings change some, tests shrink them."""

    ready_timeout: float = session.READY_TIMEOUT
    ping_interval: float = 5.0
    ping_timeout: float = 5.0
    missed_pings: int = 3
    #: How long a plugin has to answer an HTTP request (504 after that).
    request_timeout: float = 30.0
    #: Legacy plugins: this many timed-out or refused exchanges in a row = unhealthy.
    legacy_failures: int = 3
    backoff_first: float = 1.0
    backoff_max: float = 16.0
    max_failures: int = 10
    healthy_reset: float = 60.0
    shutdown_grace: float = 5.0
    term_grace: float = 2.0
    #: After SIGKILL, how long the ladder waits for the reap before giving up on politeness.
    kill_grace: float = 2.0
    #: The longest a lifecycle event's write may hold up a step (a hung disk); then it is
    #: abandoned (logged) and the lifecycle goes on.
    record_timeout: float = 2.0

    def backoff(self, failures: int) -> float:
        """1, 2, 4, 8, 16, 16, ... seconds for the 1st, 2nd, ... failure in a row."""
        return float(min(self.backoff_max, self.backoff_first * 2 ** (failures - 1)))

    @property
    def ladder_budget(self) -> float:
        """The most one stop may take: shutdown grace, SIGTERM grace, then the SIGKILL."""
        return self.shutdown_grace + self.term_grace + self.kill_grace

    @property
    def ping_detection(self) -> float:
        """The longest a hung modern plugin stays unjudged: ``interval * misses + timeout``.

        The first ping after the hang is sent at most one interval after it, the
        next ones an interval apart (or at once after a timeout longer than the
        interval), and the last miss is known ``timeout`` after its ping was sent.
        """
        return self.ping_interval * self.missed_pings + self.ping_timeout


Launch = Callable[[Sequence[str | Path], Mapping[str, str], Path], AbstractAsyncContextManager[Any]]
Connect = Callable[[Path, PluginMetadata, Callable[[], bool], float], Awaitable[trio.abc.Stream]]
Stop = Callable[[Any, Callable[[], Awaitable[None]] | None, float, float], Awaitable[StopReport]]


def real_launch(
    argv: Sequence[str | Path], env: Mapping[str, str], cwd: Path
) -> AbstractAsyncContextManager[Any]:
    return session.launch(Path(argv[0]), dict(env), cwd)


async def real_connect(
    socket_path: Path, metadata: PluginMetadata, give_up: Callable[[], bool], timeout: float
) -> trio.abc.Stream:
    return await session.connect(socket_path, give_up, timeout)


async def real_stop(
    child: Any, ask: Callable[[], Awaitable[None]] | None, grace: float, term: float
) -> StopReport:
    return await stop(child, ask, ask_grace=grace, term_grace=term)


_HOW = {"asked": "shutdown message", "sigterm": "SIGTERM", "sigkill": "SIGKILL"}


@attrs.define(eq=False)
class _Run:
    """What one life of the process came to; filled in as it goes, read after the kill."""

    child: Any = None
    spawned_at: float = 0.0
    ready_at: float | None = None
    #: Why the run ended by itself (``None``: it was cancelled, or it is not over).
    reason: str | None = None
    #: The health rule that ended it (``pings``, ``legacy exchanges``), if one did.
    rule: str | None = None
    exited: bool = False
    stop_report: StopReport | None = None
    #: The stop's budget ran out (or was cut short) before the ladder was done.
    cut_short: bool = False
    stop_seconds: float = 0.0

    @property
    def ready_for(self) -> float | None:
        return trio.current_time() - self.ready_at if self.ready_at is not None else None


@attrs.define(eq=False)
class _Pump:
    """One output pipe, drained line by line; may be cancelled and run again without loss."""

    stream: trio.abc.ReceiveStream
    name: str
    on_line: Callable[[str, bytes], None]
    lines: LineSplitter = attrs.field(factory=LineSplitter)
    done: trio.Event = attrs.field(factory=trio.Event)

    async def run(self) -> None:
        # A cancelled receive_some consumes nothing, and the splitter keeps a partial line:
        # the ladder resumes draining exactly where the run's pump stopped.
        try:
            while chunk := await self.stream.receive_some(65536):
                for raw in self.lines.feed(bytes(chunk)):
                    self.on_line(self.name, raw)
            for raw in self.lines.finish():
                self.on_line(self.name, raw)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        self.done.set()


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
    #: Where the plugin's output and Toru's notes about it go; None: Toru's own log.
    log_file: PluginLogFile | None = None
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
    #: ``trio.current_time()`` when the current run became ready.
    ready_at: float | None = None
    healthy: bool = False
    channel: PluginChannel | None = None
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    finished: trio.Event = attrs.field(factory=trio.Event)
    stderr_tail: collections.deque[str] = attrs.field(
        factory=lambda: collections.deque(maxlen=STDERR_TAIL)
    )
    _stop_reason: str = attrs.field(default="stopped", init=False)
    _budget: trio.CancelScope | None = attrs.field(default=None, init=False)
    _hurried: bool = attrs.field(default=False, init=False)

    @property
    def plugin_id(self) -> str:
        return self.metadata.id

    @property
    def socket_path(self) -> Path:
        return session.socket_path_for(self.socket_dir, self.plugin_id)

    @property
    def log_path(self) -> str:
        return str(self.log_file.path) if self.log_file is not None else ""

    def cancel(self, reason: str = "stopped") -> None:
        """Ask the runner to stop; await ``finished`` to know the process is gone."""
        self._stop_reason = reason
        self.scope.cancel()

    def hurry(self) -> None:
        """Cut the stop's budget short: whatever rung the ladder is on, SIGKILL now."""
        self._hurried = True
        if self._budget is not None:
            self._budget.deadline = trio.current_time()

    def _set(self, state: State, **changes: Any) -> None:
        self.state = state
        for name, value in changes.items():
            setattr(self, name, value)
        try:
            self.on_change(self)
        except Exception:
            log.exception("a listener of plugin status changes failed", plugin_id=self.plugin_id)

    async def _record(self, event: str, **details: Any) -> None:
        """Record a lifecycle event: bounded, and one that fails is logged, never raised."""
        await record_event(self.events, self.timing, self.plugin_id, event, details)

    # -- the typed interface the supervisor forwards ---------------------------------------

    async def request(self, message: HttpRequest) -> HttpResponse:
        """Send an HTTP request to the plugin; :class:`PluginUnavailable` says why not."""
        channel = self.channel
        if self.state is not State.RUNNING or channel is None:
            raise PluginUnavailable.not_running(self.plugin_id, self.state.value)
        timeout = self.timing.request_timeout
        try:
            return decode_http_reply(await channel.request(message, timeout=timeout))
        except RequestTimeout as exc:
            raise PluginUnavailable(
                504,
                f"plugin {self.plugin_id!r} did not answer within {timeout:g} s",
                plugin_id=self.plugin_id,
                summary="plugin request timed out",
                detail=str(exc),
            ) from None
        except QueueFull as exc:
            raise PluginUnavailable(
                503, str(exc), plugin_id=self.plugin_id, retry_after=1,
                summary="plugin request refused",
            ) from None  # fmt: skip
        except FrameTooLarge as exc:
            # Nothing was sent: a body under the limit can still grow past the frame limit
            # once encoded (a control byte is six bytes of JSON).
            raise PluginUnavailable(
                413,
                f"the request is too large to send to plugin {self.plugin_id!r}: encoded, it "
                f"is {exc.size / 2**20:.1f} MiB, over the {self.max_frame / 2**20:g} MiB frame "
                "limit (binary or control characters take up to six times their size)",
                plugin_id=self.plugin_id,
                summary="plugin request refused: too large once encoded",
                detail=str(exc),
            ) from None
        except (ConnectionLost, ProtocolError) as exc:
            raise PluginUnavailable(
                502, f"plugin {self.plugin_id!r} failed to answer: {exc}", plugin_id=self.plugin_id,
                detail=str(exc),
            ) from None  # fmt: skip

    # -- the loop ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[PluginRunner]) -> None:
        reported = False

        def report() -> None:
            nonlocal reported
            if not reported:
                reported = True
                task_status.started(self)

        try:
            with self.scope:
                problem = session.socket_path_problem(self.socket_path)
                if problem is not None:
                    self._set(State.FAILED, last_error=problem)
                    await self._record("failed", reason=problem)
                    return
                await self._loop(report)
        finally:
            if self.state is not State.FAILED:
                self._set(State.STOPPED, pid=None, healthy=False, channel=None, ready_at=None)
            self.finished.set()
            report()

    async def _loop(self, report: Callable[[], None]) -> None:
        while True:
            self.generation += 1
            self._set(State.STARTING, healthy=False)
            run = await self._run_once(report)
            reason = run.reason or "stopped"
            ready_for = run.ready_for
            if ready_for is not None and ready_for >= self.timing.healthy_reset:
                self.failures = 0
            self.failures += 1
            self.last_error = reason
            if self.failures >= self.timing.max_failures:
                message = f"failed {self.failures} times in a row: {reason}"
                self._set(State.FAILED, pid=None, last_error=message, healthy=False)
                await self._record("failed", reason=message)
                return
            delay = self.timing.backoff(self.failures)
            self._set(State.BACKOFF, pid=None, ready_at=None, healthy=False)
            report()  # a failed first start: enable answers now, with the reason
            await self._record("backoff", delay=delay, attempt=self.failures, reason=reason)
            await trio.sleep(delay)

    async def _run_once(self, report: Callable[[], None]) -> _Run:
        """One life of the process: spawned here, and killed and reaped here, whatever happens."""
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # a stale socket from a killed run
        self.stderr_tail.clear()  # a crash dossier speaks of its own run only
        env = session.environment(self.plugin_id, self.socket_path, self.instance_id)
        await self._record("starting", generation=self.generation)
        try:
            launched = self.launch([self.binary], env, self.binary.parent)
            child = await launched.__aenter__()
        except OSError as exc:
            reason = f"cannot start {self.binary.name}: {exc.strerror or exc}"
            await self._record("start_failed", reason=reason)
            return _Run(reason=reason)
        run = _Run(child=child, spawned_at=trio.current_time())
        try:
            await self._supervise(run, report)
        finally:
            # Kill first: the group is SIGKILLed (synchronously) and reaped within a deadline
            # on every way out of the run, before anything is recorded or can fail.
            await launched.__aexit__(None, None, None)
            with contextlib.suppress(OSError):
                self.socket_path.unlink()
            # Record after: bounded, and under cancellation too (disable wants its events).
            with trio.move_on_after(RECORD_GRACE, shield=True):
                await self._record_end(run)
        return run

    async def _supervise(self, run: _Run, report: Callable[[], None]) -> None:
        child = run.child
        self._set(State.STARTING, pid=child.pid, ready_at=None)
        await self._record("started", pid=child.pid, generation=self.generation)
        ended = trio.Event()
        exited = trio.Event()
        prefix = f"plugin:{self.plugin_id}"
        pumps = [
            _Pump(child.stdout, "stdout", self._line_of(child.pid)),
            _Pump(child.stderr, "stderr", self._line_of(child.pid)),
        ]
        connection: PluginConnection | None = None
        channel: PluginChannel | None = None

        def finish(reason: str, rule: str | None = None) -> None:
            if run.reason is None:
                run.reason, run.rule = reason, rule
            ended.set()

        try:
            async with trio.open_nursery() as nursery:
                for pump in pumps:
                    nursery.start_soon(pump.run, name=f"{prefix}:{pump.name}")

                async def watch_process() -> None:
                    await child.wait()
                    exited.set()
                    finish("exited")

                nursery.start_soon(watch_process, name=f"{prefix}:process")

                def start_reader(opened: PluginConnection) -> None:
                    nonlocal connection
                    connection = opened
                    nursery.start_soon(self._read, opened, finish, name=f"{prefix}:connection")

                legacy_outcomes, legacy_reports = trio.open_memory_channel[str | None](64)
                try:
                    stream = await self.connect(
                        self.socket_path, self.metadata, exited.is_set, self.timing.ready_timeout
                    )
                    channel = await session.open_channel(
                        stream,
                        self.metadata,
                        self.socket_path,
                        session.init_message(self.instance_id, self.socket_path, self.log_path),
                        kv_handler=self.kv_handler,
                        max_frame=self.max_frame,
                        on_outcome=health.exchange_reporter(legacy_outcomes),
                        reader=start_reader,
                    )
                except session.ProcessEnded:
                    pass
                except (TimeoutError, ConnectionLost, OSError, trio.BrokenResourceError) as exc:
                    finish(f"not ready: {exc}")
                else:
                    run.ready_at = trio.current_time()
                    self._set(State.RUNNING, channel=channel, healthy=True, ready_at=run.ready_at)
                    report()  # before the record: a slow disk does not delay enable's answer
                    await self._record(
                        "ready",
                        pid=child.pid,
                        after_ms=round((run.ready_at - run.spawned_at) * 1000, 1),
                        mode="modern" if self.metadata.modern else "legacy",
                    )
                    rule = self._rule(finish)
                    if self.metadata.modern:
                        nursery.start_soon(
                            partial(
                                health.judge_pings,
                                channel,
                                rule,
                                interval=self.timing.ping_interval,
                                timeout=self.timing.ping_timeout,
                            ),
                            name=f"{prefix}:pinger",
                        )
                    else:
                        nursery.start_soon(
                            health.judge_exchanges, legacy_reports, rule, name=f"{prefix}:health"
                        )
                await ended.wait()
                if not exited.is_set() and (run.reason or "").startswith("connection lost"):
                    with trio.move_on_after(DYING_GRACE):
                        await exited.wait()
                if exited.is_set():
                    run.exited = True
                    # Let the pump collect the last words before the dossier is written.
                    with trio.move_on_after(DRAIN_GRACE):
                        await pumps[1].done.wait()
                nursery.cancel_scope.cancel()
        finally:
            # Whatever ended the run (itself, a cancellation, an error), the channel is gone.
            self._set(
                State.STOPPING if child.returncode is None else self.state,
                channel=None,
                healthy=False,
            )
            if child.returncode is None:
                await self._stop(run, channel, connection, pumps)
            if connection is not None:
                with trio.move_on_after(1, shield=True):
                    await connection.aclose()

    async def _stop(
        self,
        run: _Run,
        channel: PluginChannel | None,
        connection: PluginConnection | None,
        pumps: list[_Pump],
    ) -> None:
        """The shutdown ladder, and the one owner of this stop's time budget.

        Runs under cancellation too (disable, restart, server stop): everything it
        awaits is inside ``move_on_after(budget, shield=True)``. If the budget runs
        out, the group is SIGKILLed; the run's ``finally`` reaps it.
        """
        child = run.child
        why = run.reason or self._stop_reason
        started = trio.current_time()

        async def ask() -> None:
            assert channel is not None
            await channel.notify(Shutdown())

        budget_seconds = 0.0 if self._hurried else self.timing.ladder_budget
        with trio.move_on_after(budget_seconds, shield=True) as budget:
            self._budget = budget
            try:
                async with trio.open_nursery() as recording:
                    # Beside the ladder, not before it: a slow or failing write delays nothing.
                    # It is not cut short when the ladder is done (it would be lost under load,
                    # waiting for its turn at the database); its own timeout and the budget
                    # bound it.
                    prefix = f"plugin:{self.plugin_id}"
                    rule = {"rule": run.rule} if run.rule is not None else {}
                    recording.start_soon(
                        partial(self._record, "stopping", pid=child.pid, reason=why, **rule),
                        name=f"{prefix}:record",
                    )
                    async with trio.open_nursery() as readers:
                        # The plugin's last words and last KV calls: keep reading while it
                        # stops.
                        for pump in pumps:
                            if not pump.done.is_set():
                                readers.start_soon(pump.run, name=f"{prefix}:{pump.name}")
                        if connection is not None:
                            readers.start_soon(connection.serve, name=f"{prefix}:connection")
                        run.stop_report = await self.stopper(
                            child,
                            ask if channel is not None else None,
                            self.timing.shutdown_grace,
                            self.timing.term_grace,
                        )
                        with trio.move_on_after(DRAIN_GRACE):
                            for pump in pumps:
                                await pump.done.wait()
                        readers.cancel_scope.cancel()
            finally:
                self._budget = None
        run.stop_seconds = trio.current_time() - started
        if child.returncode is None:
            run.cut_short = True
            child.kill_group()  # the budget is spent: no more politeness

    async def _record_end(self, run: _Run) -> None:
        """The run's last events, once its process group is gone."""
        child = run.child
        if run.exited and run.stop_report is None and not run.cut_short:
            status = describe_status(child.returncode if child.returncode is not None else 0)
            when = "before it was ready" if run.ready_at is None else "while running"
            run.reason = f"{status} {when}"
            await self._record(
                "crashed",
                pid=child.pid,
                exit=status,
                returncode=child.returncode,
                uptime_s=round(trio.current_time() - run.spawned_at, 3),
                stderr_tail=list(self.stderr_tail),
            )
            return
        if run.stop_report is not None or run.cut_short:
            report = run.stop_report
            how = _HOW.get(report.rung, report.rung) if report is not None else "SIGKILL"
            details: dict[str, Any] = {}
            if run.cut_short:
                details["note"] = (
                    f"the stop's budget ({self.timing.ladder_budget:g} s) ran out"
                    if not self._hurried
                    else "cut short: the server was told to stop now"
                )
            code = child.returncode if child.returncode is not None else -9
            await self._record(
                "stopped",
                pid=child.pid,
                how=how,
                exit=describe_status(code),
                duration_ms=round(run.stop_seconds * 1000, 1),
                **details,
            )

    # -- the run's tasks ---------------------------------------------------------------

    async def _read(self, connection: PluginConnection, finish: Finish) -> None:
        lost = await connection.serve()
        finish(f"connection lost: {lost}")

    def _set_healthy(self, healthy: bool) -> None:
        if self.healthy is not healthy:
            self._set(self.state, healthy=healthy)

    def _rule(self, finish: Finish) -> health.Rule:
        """This run's health rule: pings for modern plugins, exchanges for legacy ones."""
        if self.metadata.modern:
            limit = self.timing.missed_pings
            return health.Rule(
                health.PINGS, limit, "missed_pings", lambda n: f"missed {n} pings in a row",
                self._set_healthy, self._record, finish,
            )  # fmt: skip
        return health.Rule(
            health.LEGACY_EXCHANGES, self.timing.legacy_failures, "failed_exchanges",
            lambda n: f"{n} exchanges in a row timed out or were refused",
            self._set_healthy, self._record, finish,
        )  # fmt: skip

    def _line_of(self, pid: int) -> Callable[[str, bytes], None]:
        def line(stream: str, raw: bytes) -> None:
            text = raw.decode("utf-8", errors="replace").rstrip("\r")
            if not text:
                return
            if stream == "stderr":
                self.stderr_tail.append(text[:500])
            if self.log_file is not None:
                self.log_file.line(stream, text, pid, self.generation)
            else:
                log.info(
                    "plugin output", stream=stream, line=text, pid=pid, generation=self.generation
                )

        return line


async def record_event(
    events: EventLog, timing: Timing, plugin_id: str, event: str, details: dict[str, Any]
) -> None:
    """Record one lifecycle event for whoever makes it (runner or supervisor).

    Bookkeeping never stops the lifecycle: a write that fails is logged and one
    that takes longer than ``timing.record_timeout`` is abandoned (its thread
    finishes on its own), so no step of starting or stopping a plugin can hang
    on the disk or fail because of it.
    """
    with trio.move_on_after(timing.record_timeout) as waited:
        try:
            await events.record(plugin_id, event, **details)
        except trio.Cancelled:
            if not waited.cancel_called:  # our own timeout is reported below
                log.error(
                    "recording a plugin event was abandoned: its caller was cancelled",
                    plugin_id=plugin_id,
                    plugin_event=event,
                )
            raise
        except Exception as exc:
            log.error(
                "could not record a plugin event; the plugin's lifecycle carries on",
                plugin_id=plugin_id,
                plugin_event=event,
                error=repr(exc),
            )
    if waited.cancelled_caught:
        log.error(
            "recording a plugin event took too long; abandoned, the lifecycle carries on",
            plugin_id=plugin_id,
            plugin_event=event,
            timeout_s=timing.record_timeout,
        )
