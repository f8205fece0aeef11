"""``toru plugin check BINARY``: run the protocol end to end against any plugin.

Each step prints one line, ``✔`` or ``✘`` and the reason, so an author sees
at once where their plugin stops speaking the protocol. The checker leaves
nothing behind: the child is reaped and its process group swept, the
temporary socket directory removed, whatever happened.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

import attrs
import trio

from toru.plugins import session
from toru.plugins.connection import (
    ConnectionLost,
    PluginChannel,
    PluginConnection,
    RequestTimeout,
)
from toru.plugins.framing import ProtocolError
from toru.plugins.messages import (
    HttpRequest,
    KvReply,
    KvRequest,
    Ping,
    Shutdown,
    decode_http_reply,
    is_pong,
)
from toru.plugins.metadata import MetadataError, PluginMetadata, read_metadata
from toru.plugins.process import ChildProcess, describe_status, stop

SOCKET_TIMEOUT = session.READY_TIMEOUT
PING_TIMEOUT = 5.0
REQUEST_TIMEOUT = 10.0
CHECK_INSTANCE_ID = "toru-plugin-check"
_STEP_ERRORS = (ConnectionLost, RequestTimeout, ProtocolError, OSError, trio.BrokenResourceError)


@attrs.frozen
class Step:
    ok: bool
    name: str
    detail: str

    def line(self) -> str:
        return f"{'✔' if self.ok else '✘'} {self.name:<9} {self.detail}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


@attrs.define
class Checker:
    """One run of the checks; ``report`` receives each step as it completes."""

    binary: Path
    report: Callable[[Step], None]
    usable: bool = True
    stderr_tail: collections.deque[str] = attrs.field(factory=lambda: collections.deque(maxlen=20))
    store: dict[str, str] = attrs.field(factory=dict)

    async def _kv(self, request: KvRequest) -> KvReply:
        """An in-memory store, so a plugin whose pages use KV can be checked too."""
        match request.action:
            case "get":
                return KvReply(value=self.store.get(request.key))
            case "set":
                self.store[request.key] = request.value or ""
                return KvReply()
            case "delete":
                self.store.pop(request.key, None)
                return KvReply()
            case _:
                return KvReply(keys=sorted(k for k in self.store if k.startswith(request.key)))

    def step(self, ok: bool, name: str, detail: str) -> bool:
        self.usable &= ok
        self.report(Step(ok, name, detail))
        return ok

    def last_stderr(self) -> str:
        return f": {self.stderr_tail[-1][:200]}" if self.stderr_tail else ""

    async def run(self) -> bool:
        started = trio.current_time()
        try:
            metadata = await read_metadata(self.binary)
        except MetadataError as exc:
            return self.step(False, "metadata", str(exc))
        mode = "modern, pings" if metadata.modern else "legacy: a connection per exchange"
        self.step(
            True,
            "metadata",
            f"{metadata.id} {metadata.version}, route {metadata.route}, "
            f"protocol {metadata.protocol} ({mode}) in {_ms(trio.current_time() - started)}",
        )
        workdir = Path(tempfile.mkdtemp(prefix="toru-check-"))  # mode 0700
        try:
            await self._run_plugin(metadata, workdir)
        finally:
            leftover = workdir / f"{metadata.id}.sock"
            left = leftover.exists()
            shutil.rmtree(workdir, ignore_errors=True)
            if left:
                self.report(Step(True, "clean-up", "the plugin left its socket file; removed it"))
        return self.usable

    async def _run_plugin(self, metadata: PluginMetadata, workdir: Path) -> None:
        socket_path = session.socket_path_for(workdir, metadata.id)
        if (problem := session.socket_path_problem(socket_path)) is not None:
            self.step(False, "socket", problem)
            return
        env = session.environment(metadata.id, socket_path, CHECK_INSTANCE_ID)
        program = self.binary.resolve()
        async with (
            session.launch(program, env, self.binary.parent) as child,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(self._drain, child.stdout)
            nursery.start_soon(self._drain, child.stderr)
            exited = trio.Event()

            async def watch() -> None:
                await child.wait()
                exited.set()

            nursery.start_soon(watch)
            channel = await self._connect(metadata, child, socket_path, exited, nursery)
            if channel is not None:
                await self._exchange(channel)
            await self._shutdown(child, channel)
            nursery.cancel_scope.cancel()
        self._sweep(child)

    async def _drain(self, stream: trio.lowlevel.FdStream) -> None:
        pending = b""
        while chunk := await stream.receive_some(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            pending = pending[-65536:]
            self.stderr_tail.extend(
                line.decode(errors="replace").strip() for line in lines if line.strip()
            )

    async def _connect(
        self,
        metadata: PluginMetadata,
        child: ChildProcess,
        socket_path: Path,
        exited: trio.Event,
        nursery: trio.Nursery,
    ) -> PluginChannel | None:
        started = trio.current_time()
        try:
            stream = await session.connect(socket_path, exited.is_set, SOCKET_TIMEOUT)
        except TimeoutError:
            self.step(
                False, "socket", f"nothing listened on {socket_path} within {SOCKET_TIMEOUT:g} s"
            )
            return None
        except session.ProcessEnded:
            status = describe_status(child.returncode or 0)
            self.step(False, "socket", f"the plugin {status} before listening{self.last_stderr()}")
            return None
        except OSError as exc:
            self.step(False, "socket", f"cannot connect to {socket_path}: {exc.strerror or exc}")
            return None
        mode = (await trio.Path(socket_path).stat()).st_mode & 0o777
        loose = f" (mode {mode:o}: other users may connect; use 600)" if mode & 0o077 else ""
        self.step(True, "socket", f"listening after {_ms(trio.current_time() - started)}{loose}")
        init = session.init_message(CHECK_INSTANCE_ID, socket_path, "")
        try:
            channel = await session.open_channel(
                stream,
                metadata,
                socket_path,
                init,
                kv_handler=self._kv,
                reader=lambda connection: nursery.start_soon(self._read, connection),
            )
        except _STEP_ERRORS as exc:
            self.step(False, "init", f"could not send init: {exc}")
            return None
        self.step(True, "init", "sent" + (" on its own connection" if not metadata.modern else ""))
        return channel

    async def _read(self, connection: PluginConnection) -> None:
        # A lost connection is reported by whichever step was waiting on it.
        with contextlib.suppress(ConnectionLost):
            await connection.run()

    async def _exchange(self, channel: PluginChannel) -> None:
        if channel.supports_ping:
            started = trio.current_time()
            try:
                reply = await channel.request(Ping(), timeout=PING_TIMEOUT)
            except _STEP_ERRORS as exc:
                self.step(False, "ping", str(exc))
            else:
                took = _ms(trio.current_time() - started)
                if is_pong(reply):
                    self.step(True, "ping", f"pong in {took}")
                else:
                    self.step(False, "ping", f"answered with something other than pong: {reply}")
        else:
            self.step(True, "ping", "no ping support (legacy): liveness comes from exchanges")
        request = HttpRequest("GET", "/", {"accept": "application/json", "x-toru-user": "check"})
        started = trio.current_time()
        try:
            response = decode_http_reply(await channel.request(request, timeout=REQUEST_TIMEOUT))
        except _STEP_ERRORS as exc:
            self.step(False, "GET /", str(exc))
            return
        kind = response.headers.get("content-type", "no content-type")
        self.step(
            response.status < 500,
            "GET /",
            f"{response.status} in {_ms(trio.current_time() - started)} "
            f"({kind}, {len(response.body)} bytes)",
        )

    async def _shutdown(self, child: ChildProcess, channel: PluginChannel | None) -> None:
        ask = (lambda: channel.notify(Shutdown())) if channel is not None else None
        report = await stop(child, ask)
        took = _ms(report.seconds)
        if channel is None:
            # No connection, so no shutdown message: just report how it ended.
            how = {
                "asked": "had exited",
                "sigterm": "SIGTERM ended it",
                "sigkill": "SIGKILL ended it",
            }
            self.report(Step(True, "stopped", f"{how[report.rung]} after {took}"))
        elif report.rung == "asked":
            self.step(True, "shutdown", f"{describe_status(report.returncode)} after {took}")
        elif report.rung == "sigterm":
            self.step(False, "shutdown", f"ignored shutdown; SIGTERM ended it after {took}")
        else:
            self.step(False, "shutdown", f"ignored shutdown and SIGTERM; SIGKILL after {took}")

    def _sweep(self, child: ChildProcess) -> None:
        try:
            os.killpg(child.pid, 0)
        except ProcessLookupError:
            self.report(Step(True, "clean-up", "no process left behind"))
            return
        os.killpg(child.pid, signal.SIGKILL)
        self.step(False, "clean-up", "processes of the plugin's group outlived it; killed them")


async def check_plugin(binary: Path, report: Callable[[Step], None]) -> bool:
    """Run every check on *binary*; True when the plugin is usable by Toru."""
    return await Checker(binary, report).run()


def main(binary: Path) -> int:
    """The CLI entry point: prints each step, exits 0 only for a usable plugin."""

    def show(step: Step) -> None:
        print(step.line(), flush=True)

    usable = trio.run(check_plugin, binary, show)
    print("the plugin is usable" if usable else "the plugin is NOT usable; see ✘ above")
    return 0 if usable else 1
