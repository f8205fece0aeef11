"""The plugin's side of the socket: listen, serve Toru's connections, stop cleanly.

The task tree of a running plugin::

    Plugin.serve -> PluginServer.run
    └── root nursery
        ├── signal watcher            SIGINT/SIGTERM -> graceful stop
        └── work nursery
            ├── accept loop           (trio.serve_listeners, in its own cancel scope)
            ├── one task per connection: reads frames, answers lifecycle,
            │   hands KV replies to plugin.kv, starts a task per HTTP request
            └── one task per in-flight HTTP request

A stop (Toru's ``shutdown``, a signal, or :meth:`PluginServer.request_stop`)
closes the listener, gives in-flight requests ``grace`` seconds while the
connections keep reading (their KV replies still arrive), runs the shutdown
hooks, then cancels the rest. The socket file goes in every case.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from toru.plugins.envelope import envelope, kind_of, payload_of
from toru.plugins.framing import FramedStream, ProtocolError
from toru.sdk.http import HTTPError, Response
from toru.sdk.wire import http_reply, parse_http_request, request_id_of

if TYPE_CHECKING:
    from toru.sdk.plugin import Plugin

LISTEN_BACKLOG = 128


class PluginStartError(Exception):
    """The plugin could not start serving; the message names the socket and the reason."""


def bind_unix_socket(path: Path) -> tuple[socket.socket, int]:
    """A listening Unix socket at *path* (mode 0600) and its inode.

    Creates the parent directory; replaces a stale socket file, but never a
    file of another kind. Blocking: call it from a worker thread.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            existing = path.lstat()
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(existing.st_mode):
                raise PluginStartError(
                    f"cannot listen on {path}: it exists and is not a socket; "
                    "remove it or set TORU_PLUGIN_SOCKET to another path"
                )
            path.unlink()  # left by an earlier run that did not stop cleanly
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # The umask closes the window between bind() and chmod() where the
            # socket would otherwise be open to whatever the umask allows.
            previous = os.umask(0o177)
            try:
                sock.bind(str(path))
            finally:
                os.umask(previous)
            os.chmod(path, 0o600)
            sock.listen(LISTEN_BACKLOG)
            return sock, path.stat().st_ino
        except BaseException:
            sock.close()
            raise
    except OSError as exc:
        raise PluginStartError(f"cannot listen on {path}: {exc}") from exc


def remove_socket(path: Path, inode: int) -> None:
    """Remove the socket file we bound, unless something else has taken its place."""
    try:
        current = path.lstat()
    except OSError:
        return
    if current.st_ino == inode and stat.S_ISSOCK(current.st_mode):
        path.unlink(missing_ok=True)


@attrs.define(eq=False)
class PluginServer:
    """One run of a plugin on one socket path."""

    plugin: Plugin
    socket_path: Path
    grace: float = 2.0
    stopping: trio.Event = attrs.field(factory=trio.Event)
    _idle: trio.Event = attrs.field(factory=trio.Event)
    _in_flight: int = 0
    _forced: bool = False
    _drain_scope: trio.CancelScope | None = None

    def request_stop(self) -> None:
        """Begin the graceful stop (idempotent)."""
        self.stopping.set()

    def force_stop(self) -> None:
        """Stop without waiting for in-flight requests (a second signal)."""
        self._forced = True
        self.stopping.set()
        if self._drain_scope is not None:
            self._drain_scope.cancel()

    async def run(
        self,
        *,
        handle_signals: bool = True,
        task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until asked to stop; ``started()`` once the socket is listening."""
        log = self.plugin.log
        async with trio.open_nursery() as root:
            if handle_signals:
                # Before anything else: from here on SIGTERM means a clean stop.
                await root.start(self._watch_signals)
            await self.plugin.run_startup_hooks()
            sock, inode = await trio.to_thread.run_sync(bind_unix_socket, self.socket_path)
            try:
                listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
                log.info(
                    f"plugin {self.plugin.id} listening",
                    socket=str(self.socket_path),
                    pid=os.getpid(),
                )
                async with trio.open_nursery() as work:
                    accepting: trio.CancelScope = await work.start(self._accept, listener, work)
                    task_status.started(self.socket_path)
                    await self.stopping.wait()
                    accepting.cancel()
                    await self._drain()
                    await self.plugin.run_shutdown_hooks(self.grace)
                    work.cancel_scope.cancel()
            finally:
                # Synchronous on purpose: one unlink, and it must happen even under cancellation.
                remove_socket(self.socket_path, inode)
            root.cancel_scope.cancel()
        log.info(f"plugin {self.plugin.id} stopped")

    async def _watch_signals(self, *, task_status: trio.TaskStatus[None]) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self.stopping.is_set():
                    self.plugin.log.info(f"{name} received; stopping", signal=name)
                    self.request_stop()
                else:
                    self.plugin.log.warning(
                        f"{name} received again; stopping without waiting for requests",
                        signal=name,
                    )
                    self.force_stop()

    async def _accept(
        self,
        listener: trio.SocketListener,
        work: trio.Nursery,
        *,
        task_status: trio.TaskStatus[trio.CancelScope],
    ) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await trio.serve_listeners(
                partial(self._serve_connection, work=work), [listener], handler_nursery=work
            )

    async def _drain(self) -> None:
        if self._in_flight == 0 or self._forced:
            return
        self.plugin.log.info(
            f"waiting up to {self.grace:g} s for {self._in_flight} request(s) in flight"
        )
        with trio.move_on_after(self.grace) as scope:
            self._drain_scope = scope
            await self._idle.wait()
        if self._in_flight:
            self.plugin.log.warning(f"stopping with {self._in_flight} request(s) unfinished")

    async def _serve_connection(self, stream: trio.SocketStream, *, work: trio.Nursery) -> None:
        """Read one connection until it ends; its stream is closed by serve_listeners."""
        connection = FramedStream(stream, limit=self.plugin.max_frame)
        log = self.plugin.log
        log.debug("connection opened")
        try:
            while True:
                try:
                    message = await connection.receive()
                except ProtocolError as exc:
                    log.warning(f"protocol error; closing this connection: {exc}")
                    return
                except trio.BrokenResourceError:
                    log.debug("connection reset by Toru")
                    return
                if message is None:
                    log.debug("connection closed by Toru")
                    return
                await self._dispatch(connection, message, work)
        finally:
            self.plugin.kv.connection_lost(connection)

    async def _dispatch(
        self, connection: FramedStream, message: dict[str, Any], work: trio.Nursery
    ) -> None:
        request_id = request_id_of(message)
        payload = payload_of(message)
        if request_id is not None and self.plugin.kv.deliver(request_id, payload):
            return
        kind = kind_of(message)
        if kind == "lifecycle":
            await self._lifecycle(connection, request_id, payload)
        elif kind == "http":
            if request_id is None:
                self.plugin.log.warning("http request without a request_id ignored")
            elif self.stopping.is_set():
                error = HTTPError(503, f"plugin {self.plugin.id} is stopping")
                await self._reply(connection, request_id, error.response())
            else:
                self._in_flight += 1
                work.start_soon(self._handle_http, connection, message, request_id)
        else:
            self.plugin.log.debug("ignored a message", type=kind, request_id=request_id)

    async def _lifecycle(
        self, connection: FramedStream, request_id: str | None, payload: dict[str, Any]
    ) -> None:
        action = payload.get("action")
        action = action.lower() if isinstance(action, str) else ""
        if action == "init":
            instance_id = payload.get("instance_id")
            if isinstance(instance_id, str):
                self.plugin.instance_id = instance_id
            self.plugin.kv.bind(connection)
            self.plugin.log.info("initialised by Toru", instance_id=self.plugin.instance_id)
        elif action == "ping":
            reply = envelope("lifecycle", request_id, {"action": "pong"})
            try:
                await connection.send(reply)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.plugin.log.debug("connection closed before pong")
        elif action == "shutdown":
            self.plugin.log.info("shutdown requested by Toru")
            self.request_stop()
        else:
            self.plugin.log.debug("ignored a lifecycle message", action=action or None)

    async def _handle_http(
        self, connection: FramedStream, message: dict[str, Any], request_id: str
    ) -> None:
        try:
            try:
                request = parse_http_request(message)
            except HTTPError as exc:
                response = exc.response()
            else:
                response = await self.plugin.handle(request)
            await self._reply(connection, request_id, response)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self.stopping.is_set():
                self._idle.set()

    async def _reply(self, connection: FramedStream, request_id: str, response: Response) -> None:
        try:
            try:
                await connection.send(http_reply(request_id, response))
            except ProtocolError as exc:
                self.plugin.log.error(f"reply not sent: {exc}", request_id=request_id)
                error = HTTPError(500, f"reply from plugin {self.plugin.id} is too large")
                await connection.send(http_reply(request_id, error.response()))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.plugin.log.warning(
                "connection closed before the reply was sent", request_id=request_id
            )
