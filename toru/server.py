"""The root nursery: signals, the HTTP server and (issue C) the plugin supervisor.

::

    trio.run(serve)
    └── root nursery
        ├── signal watcher      SIGINT/SIGTERM -> graceful stop; a second one forces it
        ├── supervisor          plugins: one runner task per enabled plugin
        └── Hypercorn serve()   HTTP, stops accepting on ``stopping``, drains for 5 s

A stop request is one ``trio.Event``. Hypercorn's ``shutdown_trigger`` waits
on it; when ``serve()`` returns for any reason (Hypercorn also returns quietly
after swallowing a KeyboardInterrupt) that counts as a stop request too, and the
rest of the nursery is cancelled, which is how the supervisor will shut plugins
down with its own deadlines (in parallel, each runner its own ladder).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Sequence
from typing import TypeVar

import hypercorn.config
import hypercorn.trio
import structlog
import trio

from toru import __version__
from toru.app import create_app
from toru.auth.passwords import PasswordHasher
from toru.auth.service import AuthService
from toru.config import Settings
from toru.db import Database, ensure_instance_id
from toru.plugins.events import EventLog
from toru.plugins.kv import KvStore
from toru.plugins.logs import open_plugin_logs
from toru.plugins.process import REAP_GRACE
from toru.plugins.runner import Timing
from toru.plugins.supervisor import Supervisor

log = structlog.get_logger("toru.server")

GRACEFUL_TIMEOUT = 5.0
#: What a stop may take beyond the slowest ladder: closing the database, the log drain.
STOP_MARGIN = 1.0


class StartupError(Exception):
    """Toru could not start; the message says what to change."""


E = TypeVar("E", bound=BaseException)


def first_leaf(error: BaseException, kind: type[E]) -> E | None:
    """The first *kind* exception inside *error*, looking through exception groups."""
    if isinstance(error, kind):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := first_leaf(inner, kind)) is not None:
                return found
    return None


def hypercorn_config(settings: Settings) -> hypercorn.config.Config:
    config = hypercorn.config.Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.accesslog = logging.getLogger("hypercorn.access")
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = GRACEFUL_TIMEOUT
    config.include_server_header = False
    return config


async def watch_signals(
    stopping: trio.Event, force: Callable[[], None], *, task_status: trio.TaskStatus[None]
) -> None:
    """First SIGINT/SIGTERM asks for a graceful stop; a second one makes it immediate."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            name = signal.Signals(signum).name
            if not stopping.is_set():
                log.info("stop requested", signal=name)
                stopping.set()
            else:
                log.warning("second stop signal: stopping now, without waiting", signal=name)
                force()


async def serve_http(
    settings: Settings,
    auth: AuthService,
    supervisor: Supervisor,
    stopping: trio.Event,
    done: trio.Event,
    *,
    task_status: trio.TaskStatus[Sequence[str]],
) -> None:
    """Run Hypercorn until *stopping* is set; report the bound URLs when listening.

    Sets *done* once Hypercorn has drained its connections and returned.
    """
    try:
        await hypercorn.trio.serve(
            create_app(auth, supervisor),
            hypercorn_config(settings),
            shutdown_trigger=stopping.wait,
            task_status=task_status,
        )
    finally:
        stopping.set()
        done.set()


async def run_supervisor(
    supervisor: Supervisor,
    scope: trio.CancelScope,
    done: trio.Event,
    *,
    task_status: trio.TaskStatus[Supervisor],
) -> None:
    """The supervisor in a scope of its own, so the server can stop it before the rest."""
    try:
        with scope:
            await supervisor.run(task_status=task_status)
    finally:
        done.set()


async def serve(
    settings: Settings,
    *,
    handle_signals: bool = True,
    stopping: trio.Event | None = None,
    hasher: PasswordHasher | None = None,
    task_status: trio.TaskStatus[Sequence[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run Toru until a stop is requested (a signal, or *stopping* being set).

    ``task_status.started`` receives the URLs Hypercorn listens on (with the
    real port when ``settings.port`` is 0). Raises :class:`StartupError` (inside
    an exception group) when it cannot listen. A stop takes at most
    :func:`stop_bound` seconds, whatever the plugins do.
    """
    stopping = trio.Event() if stopping is None else stopping
    log.info("toru starting", version=__version__, data_dir=str(settings.data_dir))
    timing = Timing(
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        request_timeout=settings.plugin_request_timeout,
    )
    async with Database.open(settings.database_path) as db:
        instance_id = await db.run(ensure_instance_id)
        auth = await AuthService.create(db, settings, hasher=hasher)
        # The plugins' log writers outlive the supervisor: a plugin's last words during
        # its shutdown ladder still reach its file.
        async with (
            open_plugin_logs(settings.log_dir) as plugin_logs,
            trio.open_nursery() as nursery,
        ):
            # Plugins first, so the API never sees a half-started plugin platform.
            supervisor = Supervisor(
                plugins_dir=settings.plugins_dir,
                events=EventLog(db),
                instance_id=instance_id,
                logs=plugin_logs,
                kv_store=KvStore(db),
                timing=timing,
            )

            def force() -> None:
                supervisor.hurry()
                nursery.cancel_scope.cancel()

            if handle_signals:
                await nursery.start(watch_signals, stopping, force)
            supervisor_scope = trio.CancelScope()
            supervisor_done = trio.Event()
            try:
                await nursery.start(
                    run_supervisor, supervisor, supervisor_scope, supervisor_done,
                    name="supervisor",
                )  # fmt: skip
            except OSError as error:
                raise StartupError(
                    f"cannot prepare the plugins directory {settings.plugins_dir}: "
                    f"{error.strerror or error}; fix it or point TORU_PLUGINS_DIR elsewhere"
                ) from error
            http_done = trio.Event()
            try:
                urls = await nursery.start(
                    serve_http, settings, auth, supervisor, stopping, http_done
                )
            except* OSError as group:
                os_error = first_leaf(group, OSError)
                raise StartupError(
                    f"cannot listen on {settings.host}:{settings.port}: "
                    f"{getattr(os_error, 'strerror', None) or os_error}; stop whatever uses it "
                    "or pick another port with -p/--port or STEERING_PORT"
                ) from group
            log.info("toru is serving", urls=list(urls), instance_id=instance_id)
            task_status.started(urls)
            await stopping.wait()
            # Event streams never end by themselves: end them, so the drain is not held up.
            supervisor.end_streams()
            # Hypercorn stops accepting and drains open requests (at most GRACEFUL_TIMEOUT)
            # while the plugins go through their ladders, all in parallel: the stop takes
            # as long as the slowest of them, never their sum. The signal watcher still
            # listens meanwhile (a second signal must not find the default handler back).
            supervisor_scope.cancel()
            with trio.move_on_after(stop_bound(timing)):
                await supervisor_done.wait()
                await http_done.wait()
            nursery.cancel_scope.cancel()
    log.info("toru stopped")


def stop_bound(timing: Timing) -> float:
    """The longest a stop may take: the slower of the HTTP drain and a plugin's ladder
    (with its reap), plus a margin for the rest."""
    return max(GRACEFUL_TIMEOUT, timing.ladder_budget + REAP_GRACE) + STOP_MARGIN
