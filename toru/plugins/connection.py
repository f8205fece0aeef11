"""Talking to a running plugin: one long-lived multiplexed connection, or legacy exchanges.

:class:`PluginConnection` (modern plugins, ``"protocol": 2``) keeps one
socket open. Any number of callers send requests at once; each awaits its own
reply, matched by ``request_id``, under its own timeout. A reader task
dispatches replies and hands requests *from* the plugin (KV) to a handler.
When the connection drops, every pending request fails at once with
:class:`ConnectionLost`. It runs in a nursery its owner passes in::

    conn = await nursery.start(PluginConnection(framed, plugin_id, handler).run)

:class:`LegacyConnection` (old plugins) opens a fresh connection per exchange
and runs one exchange at a time, because the old Rust SDK drops a frame that
arrives in the same read as another (see PROTOCOL-FACTS).

Both offer ``request(message, timeout=...)`` (returns the raw reply frame; the
caller decodes it, so one malformed reply fails one request, not the
connection) and ``notify(message)`` for messages that get no reply.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import attrs
import structlog
import trio

from toru.plugins.framing import DEFAULT_MAX_FRAME, FramedStream, FrameTooLarge, ProtocolError
from toru.plugins.messages import (
    HttpRequest,
    Kind,
    KvReply,
    KvRequest,
    ToPlugin,
    decode_kv_request,
    encode,
    kind_of,
    new_request_id,
)

log = structlog.get_logger("toru.plugins.connection")

KvHandler = Callable[[KvRequest], Awaitable[KvReply]]
#: How long writing one request frame may take before the connection is given up: as long
#: as the HTTP request timeout, and about what three missed pings take.
FRAME_WRITE_LIMIT = 30.0
#: Requests from one plugin (KV) served at once. While that many are in progress the
#: connection is not read further: a plugin that floods requests (and reads no replies)
#: backs up in its own socket, not in Toru's memory.
MAX_PLUGIN_REQUESTS = 64
#: Stray messages (replies to nothing) logged one by one on a connection; after that, one
#: line per STRAY_LOG_EVERY, with the count so far.
STRAY_LOG_FIRST = 10
STRAY_LOG_EVERY = 10_000
Frame = dict[str, Any]


class ConnectionLost(Exception):
    """The connection to the plugin is gone; the message says why."""


class RequestTimeout(Exception):
    """The plugin did not answer within the caller's timeout."""


class QueueFull(Exception):
    """Too many requests are already waiting for a legacy plugin."""


class _Unreachable(ConnectionLost):
    """Nothing accepts connections on the plugin's socket."""


class PluginChannel(Protocol):
    """What the rest of Toru needs from a connection, modern or legacy."""

    supports_ping: bool

    async def request(
        self, message: ToPlugin, *, timeout: float, write_limit: float | None = None
    ) -> Frame: ...

    async def notify(self, message: ToPlugin) -> None: ...

    async def aclose(self) -> None: ...


@attrs.define(eq=False)
class _Waiter:
    done: trio.Event = attrs.field(factory=trio.Event)
    reply: Frame | None = None
    error: BaseException | None = None


def _describe(message: ToPlugin) -> str:
    if isinstance(message, HttpRequest):
        return f"{message.method} {message.path}"
    return type(message).__name__.lower()


@attrs.define(eq=False)
class PluginConnection:
    """One long-lived, multiplexed connection to a modern plugin."""

    framed: FramedStream
    plugin_id: str
    kv_handler: KvHandler | None = None
    supports_ping: bool = True
    _pending: dict[str, _Waiter] = attrs.field(factory=dict, init=False)
    _lost: ConnectionLost | None = attrs.field(default=None, init=False)
    _stray: int = attrs.field(default=0, init=False)
    _held: Frame | None = attrs.field(default=None, init=False)
    _serving: trio.Semaphore = attrs.field(
        factory=lambda: trio.Semaphore(MAX_PLUGIN_REQUESTS), init=False
    )

    @classmethod
    async def open(
        cls,
        socket_path: Path,
        plugin_id: str,
        kv_handler: KvHandler | None = None,
        *,
        limit: int = DEFAULT_MAX_FRAME,
    ) -> PluginConnection:
        stream = await trio.open_unix_socket(str(socket_path))
        return cls(FramedStream(stream, limit=limit), plugin_id, kv_handler)

    @property
    def is_open(self) -> bool:
        return self._lost is None

    async def run(
        self, *, task_status: trio.TaskStatus[PluginConnection] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Read until the connection ends; then fail what is pending and raise ConnectionLost.

        Requests from the plugin are served in a nursery owned here, so none
        outlives the connection. The connection is closed on the way out.
        """
        try:
            task_status.started(self)
            raise await self.serve()
        finally:
            self._lose("connection closed")
            with trio.move_on_after(1, shield=True):
                await self.framed.aclose()

    async def serve(self) -> ConnectionLost:
        """Read and dispatch until the connection is lost, and return why.

        Unlike :meth:`run` this may be cancelled and called again: nothing is
        closed and nothing read is lost (a plugin request received but not yet
        being served is kept for the next call). The runner relies on it: its
        reader is cancelled with the run, and the shutdown ladder reads on.
        """
        if self._lost is not None:
            return self._lost
        async with trio.open_nursery() as handlers:
            lost = await self._read_until_lost(handlers)
            handlers.cancel_scope.cancel()
        return lost

    async def _read_until_lost(self, handlers: trio.Nursery) -> ConnectionLost:
        while True:
            if (held := self._held) is not None:  # received by an earlier, cancelled serve()
                self._held = None
                await self._dispatch(held, handlers)
            try:
                frame = await self.framed.receive()
            except ProtocolError as exc:
                return self._lose(f"protocol error: {exc}")
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                return self._lose(f"connection broken: {exc}")
            if frame is None:
                return self._lose("the plugin closed the connection")
            await self._dispatch(frame, handlers)

    def _lose(self, reason: str) -> ConnectionLost:
        if self._lost is None:
            self._lost = ConnectionLost(f"plugin {self.plugin_id!r}: {reason}")
            for waiter in self._pending.values():
                waiter.error = self._lost
                waiter.done.set()
            self._pending.clear()
        return self._lost

    async def _dispatch(self, frame: Frame, handlers: trio.Nursery) -> None:
        request_id = frame.get("request_id")
        waiter = self._pending.pop(request_id, None) if isinstance(request_id, str) else None
        if waiter is not None:
            waiter.reply = frame
            waiter.done.set()
        elif kind_of(frame) == Kind.KV:
            try:
                await self._serving.acquire()  # released by _serve_kv
            except trio.Cancelled:
                self._held = frame  # served by the next serve()
                raise
            handlers.start_soon(self._serve_kv, frame)
        else:
            # A late reply (after its caller timed out) or a message we do not know. Logged
            # one by one at first, then once per STRAY_LOG_EVERY: a plugin sending them
            # without end must not flood Toru's log (nor slow it down writing it).
            self._stray += 1
            if self._stray <= STRAY_LOG_FIRST or self._stray % STRAY_LOG_EVERY == 0:
                log.warning(
                    "ignored a message from the plugin",
                    plugin_id=self.plugin_id,
                    reason=f"reply for unknown request_id {request_id!r}",
                    type=kind_of(frame),
                    ignored_so_far=self._stray,
                )

    async def _serve_kv(self, frame: Frame) -> None:
        try:
            await self._serve_kv_request(frame)
        finally:
            self._serving.release()

    async def _serve_kv_request(self, frame: Frame) -> None:
        request_id = frame.get("request_id")
        if not isinstance(request_id, str):
            log.warning("kv request without a request_id ignored", plugin_id=self.plugin_id)
            return
        try:
            reply = (
                await self.kv_handler(decode_kv_request(frame))
                if self.kv_handler is not None
                else KvReply(error="this host offers no storage")
            )
        except ProtocolError as exc:
            reply = KvReply(error=str(exc))
        except Exception:
            log.exception("kv handler failed", plugin_id=self.plugin_id)
            reply = KvReply(error="internal error in Toru's storage; see the server log")
        # If the connection broke, the reader notices and reports it.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self.framed.send(encode(reply, request_id))

    async def notify(self, message: ToPlugin) -> None:
        """Send a message that gets no reply (init, shutdown)."""
        await self._send(encode(message))

    async def aclose(self) -> None:
        """Close the socket; the reader then ends with ConnectionLost."""
        await self.framed.aclose()

    async def request(
        self, message: ToPlugin, *, timeout: float, write_limit: float | None = None
    ) -> Frame:
        """Send *message* and return the plugin's reply frame.

        Raises :class:`RequestTimeout` after *timeout* seconds (the connection
        stays usable; a late reply is logged and dropped) and
        :class:`ConnectionLost` when the connection is or goes down. A frame whose
        writing has begun is finished even if the caller is cancelled; one that cannot
        be written within *write_limit* (default ``max(timeout, FRAME_WRITE_LIMIT)``;
        the plugin reads nothing) ends the connection, and this request times out.
        """
        if self._lost is not None:
            raise self._lost
        request_id = new_request_id()
        waiter = self._pending[request_id] = _Waiter()
        started = trio.current_time()
        timed_out = RequestTimeout(
            f"plugin {self.plugin_id!r} did not answer the {_describe(message)} request "
            f"within {timeout:g} s"
        )
        try:
            # A frame once begun is finished even if the caller goes away (a browser that
            # closed the page): cut off, it would leave the stream out of step. Only a
            # plugin that reads nothing for FRAME_WRITE_LIMIT s stops it, and then the
            # connection is given up.
            limit = max(timeout, FRAME_WRITE_LIMIT) if write_limit is None else write_limit
            with trio.CancelScope(deadline=started + limit, shield=True) as sending:
                await self._send(encode(message, request_id))
            if sending.cancelled_caught:
                raise timed_out
            with trio.CancelScope(deadline=started + timeout):
                await waiter.done.wait()
        finally:
            self._pending.pop(request_id, None)
        if waiter.error is not None:
            raise waiter.error
        if waiter.reply is None:
            raise timed_out
        return waiter.reply

    async def _send(self, frame: Frame) -> None:
        if self._lost is not None:
            raise self._lost
        try:
            await self.framed.send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise self._lose(f"connection broken: {exc}") from exc
        finally:
            if self.framed.cut_off and self._lost is None:
                # The plugin holds part of a frame and would read anything sent after it as
                # the rest: the connection is useless. Closing it ends the reader, and the
                # runner restarts the plugin.
                self._lose(
                    "a frame was cut off part-way (the plugin did not read it in time); "
                    "the connection cannot carry anything more"
                )
                with trio.move_on_after(1, shield=True):
                    await self.framed.aclose()


#: Told after each legacy exchange whether the plugin answered: ``None`` for an answer (or a
#: failure that says nothing about its liveness, such as a malformed reply), else the reason
#: (a timeout while the exchange was in flight, or a refused connection).
ExchangeOutcome = Callable[[str | None], None]


@attrs.define(eq=False)
class LegacyConnection:
    """Exchanges with an old plugin: a fresh connection each, one at a time, FIFO."""

    socket_path: Path
    plugin_id: str
    limit: int = DEFAULT_MAX_FRAME
    #: Requests allowed to wait behind the one in flight; more are refused at once.
    max_waiting: int = 256
    supports_ping: bool = False
    #: Legacy plugins get no pings: their health is judged by exchanges (the runner's rule).
    on_outcome: ExchangeOutcome = lambda failure: None
    _turn: trio.Lock = attrs.field(factory=trio.Lock, init=False)
    _waiting: int = attrs.field(default=0, init=False)

    async def aclose(self) -> None:
        """Nothing to close: no connection outlives its exchange."""

    async def notify(self, message: ToPlugin) -> None:
        """Connect, write *message*, close: how the old host sent init and shutdown."""
        async with self._turn:
            framed = await self._connect()
            try:
                await framed.send(encode(message))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise ConnectionLost(f"plugin {self.plugin_id!r}: {exc}") from exc
            finally:
                with trio.move_on_after(1, shield=True):
                    await framed.aclose()

    async def request(
        self, message: ToPlugin, *, timeout: float, write_limit: float | None = None
    ) -> Frame:
        """One exchange on its own connection; time spent queueing counts toward *timeout*.

        (*write_limit* is for the modern connection's shared stream; here every frame
        has a connection of its own, bounded by *timeout*.)
        """
        if self._waiting >= self.max_waiting:
            raise QueueFull(
                f"plugin {self.plugin_id!r} already has {self._waiting} requests waiting"
            )
        frame = encode(message, new_request_id())
        reply: Frame | None = None
        queued = True
        self._waiting += 1
        timed_out = RequestTimeout(
            f"plugin {self.plugin_id!r} did not answer the {_describe(message)} request "
            f"within {timeout:g} s"
        )
        timeout_at = trio.current_time() + timeout
        try:
            with trio.move_on_after(timeout):
                async with self._turn:
                    self._waiting -= 1
                    queued = False
                    try:
                        reply = await self._exchange(frame)
                    except _Unreachable as exc:
                        self.on_outcome(str(exc))
                        raise
                    except ConnectionLost:
                        self.on_outcome(None)  # it accepted and answered, if badly: alive
                        raise
                    except trio.Cancelled:
                        # Only a timeout while *this* exchange was in flight says the plugin
                        # is stuck; time spent waiting in the queue says nothing about it.
                        if trio.current_time() >= timeout_at:
                            self.on_outcome(str(timed_out))
                        raise
                    self.on_outcome(None)
        finally:
            if queued:
                self._waiting -= 1
        if reply is None:
            raise timed_out
        return reply

    async def _exchange(self, frame: Frame) -> Frame:
        """Connect, write, read the one reply, close: the connection carries nothing else."""
        framed = await self._connect()
        try:
            await framed.send(frame)
            reply = await framed.receive()
        except FrameTooLarge:
            raise  # nothing was sent: the caller's request is too large, not the plugin's fault
        except ProtocolError as exc:
            raise ConnectionLost(f"plugin {self.plugin_id!r}: protocol error: {exc}") from exc
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ConnectionLost(f"plugin {self.plugin_id!r}: {exc}") from exc
        finally:
            with trio.move_on_after(1, shield=True):
                await framed.aclose()
        if reply is None:
            raise ConnectionLost(
                f"plugin {self.plugin_id!r} closed the connection without replying"
            )
        return reply

    async def _connect(self) -> FramedStream:
        try:
            stream = await trio.open_unix_socket(str(self.socket_path))
        except OSError as exc:
            hint = (
                "; the server is out of file descriptors: raise its file limit"
                if exc.errno == errno.EMFILE
                else ""
            )
            raise _Unreachable(
                f"plugin {self.plugin_id!r}: cannot connect to {self.socket_path}: "
                f"{exc.strerror or exc}{hint}"
            ) from exc
        return FramedStream(stream, limit=self.limit)


async def wait_for_socket(
    socket_path: Path,
    *,
    timeout: float,
    give_up: Callable[[], bool] = lambda: False,
    poll: float = 0.01,
) -> bool:
    """True once *socket_path* accepts a connection; False if *give_up()* turns true first.

    Raises ``TimeoutError`` after *timeout*. The probe connection is closed at
    once. Polling is the only portable way to learn that another process
    started listening; the deadline bounds it.
    """
    with trio.move_on_after(timeout):
        while not give_up():
            try:
                stream = await trio.open_unix_socket(str(socket_path))
            except OSError:
                await trio.sleep(poll)
                continue
            await stream.aclose()
            return True
        return False
    raise TimeoutError(f"nothing listened on {socket_path} within {timeout:g} s")
