"""The :class:`Plugin` an author declares: metadata, routes, hooks, and ``run()``."""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

import attrs
import trio

from toru.plugins.framing import DEFAULT_MAX_FRAME
from toru.sdk.http import HTTPError, Request, Response, to_response
from toru.sdk.kv import KVClient
from toru.sdk.logging import Logger
from toru.sdk.metadata import PluginInfo
from toru.sdk.routing import Handler, Router
from toru.sdk.server import PluginServer, PluginStartError

HandlerT = TypeVar("HandlerT", bound=Handler)
Hook = Callable[[], Awaitable[object]]
HookT = TypeVar("HookT", bound=Hook)

SOCKET_VARIABLE = "TORU_PLUGIN_SOCKET"
INSTANCE_VARIABLE = "TORU_INSTANCE_ID"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _write_utf8(stream: object, text: str) -> None:
    """Write *text* as UTF-8 whatever the locale says (metadata may hold an emoji icon)."""
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        stream.flush()  # type: ignore[attr-defined]
        buffer.write(text.encode("utf-8"))
        buffer.flush()
    else:
        stream.write(text)  # type: ignore[attr-defined]
        stream.flush()  # type: ignore[attr-defined]


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


class Plugin:
    """A Toru plugin written in Python.

    ``Plugin(id=..., name=..., version=..., route=..., icon=None, author=None)``
    validates its metadata at once (``ValueError``). Register handlers with
    :meth:`get`, :meth:`post`, :meth:`put`, :meth:`patch`, :meth:`delete` or
    :meth:`route`, then call :meth:`run` from ``__main__``.
    """

    def __init__(
        self,
        *,
        id: str,
        name: str,
        version: str,
        route: str,
        icon: str | None = None,
        author: str | None = None,
    ) -> None:
        self.metadata = PluginInfo(
            id=id, name=name, version=version, route=route, icon=icon, author=author
        )
        self.router = Router()
        self.kv = KVClient()
        self.log = Logger()
        self.instance_id: str | None = None
        """Toru's instance id, from ``init`` (or ``TORU_INSTANCE_ID`` until then)."""
        self.max_frame = DEFAULT_MAX_FRAME
        self.shutdown_grace = 2.0
        """Seconds in-flight requests (and then the shutdown hooks) get when stopping."""
        self._startup_hooks: list[Hook] = []
        self._shutdown_hooks: list[Hook] = []
        self._server: PluginServer | None = None

    @property
    def id(self) -> str:
        return self.metadata.id

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def version(self) -> str:
        return self.metadata.version

    # --- declaring -------------------------------------------------------------

    def route(self, path: str, methods: Iterable[str] = ("GET",)) -> Callable[[HandlerT], HandlerT]:
        """Decorator registering an ``async def handler(request)`` for *methods* on *path*.

        The handler returns a dict or list (JSON), str, bytes, None (204) or a Response.
        """

        def register(handler: HandlerT) -> HandlerT:
            is_async = inspect.iscoroutinefunction(handler)  # not narrowing HandlerT
            if not is_async:
                raise TypeError(
                    f"handler for {path!r} must be an async function (async def), got {handler!r}"
                )
            self.router.add(path, methods, handler)
            return handler

        return register

    def get(self, path: str) -> Callable[[HandlerT], HandlerT]:
        """Decorator for a GET handler (it answers HEAD too)."""
        return self.route(path, ["GET"])

    def post(self, path: str) -> Callable[[HandlerT], HandlerT]:
        """Decorator for a POST handler."""
        return self.route(path, ["POST"])

    def put(self, path: str) -> Callable[[HandlerT], HandlerT]:
        """Decorator for a PUT handler."""
        return self.route(path, ["PUT"])

    def patch(self, path: str) -> Callable[[HandlerT], HandlerT]:
        """Decorator for a PATCH handler."""
        return self.route(path, ["PATCH"])

    def delete(self, path: str) -> Callable[[HandlerT], HandlerT]:
        """Decorator for a DELETE handler."""
        return self.route(path, ["DELETE"])

    def on_startup(self, hook: HookT) -> HookT:
        """Decorator: ``async def hook()`` run before the socket listens; errors stop the plugin."""
        self._startup_hooks.append(hook)
        return hook

    def on_shutdown(self, hook: HookT) -> HookT:
        """Decorator: ``async def hook()`` run after in-flight requests end; errors are logged."""
        self._shutdown_hooks.append(hook)
        return hook

    # --- answering -------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        """The reply to *request*: routing, the handler, conversion, errors. Never raises.

        ``HTTPError`` from routing or a handler becomes its status; any other
        exception becomes a 500 and a logged traceback.
        """
        started = time.monotonic()
        try:
            handler, params = self.router.resolve(request.method, request.path)
            request = attrs.evolve(request, params=params)
            response = to_response(await handler(request))
        except HTTPError as exc:
            response = exc.response()
        except Exception as exc:
            self.log.exception(
                f"unhandled error in handler for {request.method} {request.path}",
                exc,
                request_id=request.request_id,
            )
            response = Response.json({"error": f"internal error in plugin {self.id}"}, status=500)
        if request.method == "HEAD":
            response = attrs.evolve(response, body=None)
        self.log.debug(
            f"{request.method} {request.path} -> {response.status}",
            request_id=request.request_id,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return response

    async def run_startup_hooks(self) -> None:
        """Run the ``on_startup`` hooks in order; the first failure propagates."""
        for hook in self._startup_hooks:
            await hook()

    async def run_shutdown_hooks(self, grace: float) -> None:
        """Run the ``on_shutdown`` hooks in order, within *grace* seconds; failures are logged."""
        with trio.move_on_after(grace) as scope:
            for hook in self._shutdown_hooks:
                try:
                    await hook()
                except Exception as exc:
                    self.log.exception(f"shutdown hook {hook.__name__} failed", exc)
        if scope.cancelled_caught:
            self.log.warning(f"shutdown hooks did not finish within {grace:g} s")

    # --- running ---------------------------------------------------------------

    async def serve(
        self,
        socket_path: str | os.PathLike[str],
        *,
        handle_signals: bool = True,
        task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on *socket_path*; serve Toru until a shutdown message, a signal or :meth:`stop`.

        ``task_status.started(path)`` once the socket listens. With
        *handle_signals*, SIGINT and SIGTERM trigger the graceful stop.
        """
        if self.instance_id is None:
            self.instance_id = os.environ.get(INSTANCE_VARIABLE) or None
        server = PluginServer(self, Path(socket_path), grace=self.shutdown_grace)
        self._server = server
        try:
            await server.run(handle_signals=handle_signals, task_status=task_status)
        finally:
            self._server = None

    def stop(self) -> None:
        """Ask a running :meth:`serve` to stop gracefully (from the Trio thread)."""
        if self._server is not None:
            self._server.request_stop()

    def main(self, argv: Sequence[str] | None = None) -> int:
        """What :meth:`run` does, returning the exit status instead of exiting."""
        args = list(sys.argv[1:] if argv is None else argv)
        if args == ["--metadata"]:
            _write_utf8(sys.stdout, json.dumps(self.metadata.to_json(), ensure_ascii=False) + "\n")
            return EXIT_OK
        if args in (["--help"], ["-h"]):
            print(self._usage())
            return EXIT_OK
        if args:
            print(f"unknown arguments {' '.join(args)!r}\n{self._usage()}", file=sys.stderr)
            return EXIT_USAGE
        socket_path = os.environ.get(SOCKET_VARIABLE)
        if not socket_path:
            print(
                f"{self.id} is a Toru plugin: it must be started by Toru or by "
                f"`toru plugin check`, which set {SOCKET_VARIABLE} "
                "(`--metadata` prints what it is)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        try:
            trio.run(partial(self.serve, socket_path))
        except BaseException as exc:
            if isinstance(exc, SystemExit):
                raise
            leaves = _leaves(exc)
            if all(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
                return EXIT_OK  # Ctrl+C before the signal watcher started: nothing to clean up
            reason = "; ".join(str(leaf) or type(leaf).__name__ for leaf in leaves)
            if all(isinstance(leaf, PluginStartError) for leaf in leaves):
                # The message says it all (path and cause); a traceback would only bury it.
                self.log.error(f"plugin {self.id} could not start: {reason}")
            else:
                self.log.exception(f"plugin {self.id} stopped on an error: {reason}", exc)
            return EXIT_FAILED
        return EXIT_OK

    def run(self, argv: Sequence[str] | None = None) -> None:
        """The plugin's entry point: ``--metadata``, or serve Toru; exits the process."""
        sys.exit(self.main(argv))

    def _usage(self) -> str:
        return (
            f"{self.name} {self.version} ({self.id}), a Toru plugin.\n"
            "usage: PLUGIN --metadata   print the plugin's metadata as JSON\n"
            f"       PLUGIN             serve Toru on the socket in ${SOCKET_VARIABLE}"
        )
