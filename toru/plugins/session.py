"""One plugin session, the way both the runner and ``toru plugin check`` hold it.

A session is one life of a plugin process as the protocol sees it: the clean
environment it is given, its socket path (checked against the Unix limit),
the spawn, the wait until it listens, the choice between the modern
multiplexed connection and the legacy connection-per-exchange, and ``init``.
Both the supervisor's runner and the conformance checker call these
functions, so a protocol change is made here once and the checker can never
accept what the server would refuse.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import trio

from toru.plugins.connection import (
    ExchangeOutcome,
    KvHandler,
    LegacyConnection,
    PluginChannel,
    PluginConnection,
    wait_for_socket,
)
from toru.plugins.framing import DEFAULT_MAX_FRAME, FramedStream
from toru.plugins.messages import Init
from toru.plugins.metadata import PluginMetadata
from toru.plugins.process import ChildProcess, plugin_environment, spawned

#: sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107
#: How long a plugin has to listen on its socket after it was spawned (DESIGN: 5 s).
READY_TIMEOUT = 5.0


class ProcessEnded(Exception):
    """The plugin exited while Toru was waiting for it to listen."""


def socket_path_for(socket_dir: Path, plugin_id: str) -> Path:
    return socket_dir / f"{plugin_id}.sock"


def socket_path_problem(socket_path: Path) -> str | None:
    """Why *socket_path* cannot be used for a Unix socket, or ``None`` when it can."""
    if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
        return (
            f"socket path {socket_path} is longer than the Unix limit of "
            f"{MAX_SOCKET_PATH} bytes; use a shorter runtime directory"
        )
    return None


def environment(plugin_id: str, socket_path: Path, instance_id: str) -> dict[str, str]:
    """What a plugin process is given: a clean environment and its three variables."""
    return plugin_environment(
        {
            "TORU_PLUGIN_SOCKET": str(socket_path),
            "TORU_PLUGIN_ID": plugin_id,
            "TORU_INSTANCE_ID": instance_id,
        }
    )


def launch(
    binary: Path, env: dict[str, str], cwd: Path | None = None
) -> AbstractAsyncContextManager[ChildProcess]:
    """Spawn *binary* for the block (see :func:`toru.plugins.process.spawned`)."""
    argv: Sequence[str | Path] = [binary]
    return spawned(argv, env=env, cwd=cwd if cwd is not None else binary.parent)


async def connect(
    socket_path: Path, give_up: Callable[[], bool], timeout: float = READY_TIMEOUT
) -> trio.abc.Stream:
    """Wait until the plugin listens on *socket_path*, then open a connection to it.

    Raises :class:`ProcessEnded` when *give_up()* turns true first (the process
    exited) and ``TimeoutError`` after *timeout*.
    """
    if not await wait_for_socket(socket_path, timeout=timeout, give_up=give_up):
        raise ProcessEnded
    return await trio.open_unix_socket(str(socket_path))


def init_message(instance_id: str, socket_path: Path, log_path: str) -> Init:
    return Init(instance_id, str(socket_path), log_path)


async def open_channel(
    stream: trio.abc.Stream,
    metadata: PluginMetadata,
    socket_path: Path,
    init: Init,
    *,
    kv_handler: KvHandler | None = None,
    max_frame: int = DEFAULT_MAX_FRAME,
    on_outcome: ExchangeOutcome | None = None,
    reader: Callable[[PluginConnection], None] | None = None,
) -> PluginChannel:
    """Turn the first connection into the plugin's channel and send ``init`` on it.

    Modern plugins (``"protocol": 2``) keep *stream* as their long-lived,
    multiplexed connection; *reader* is called with it before ``init`` is sent,
    to start the task that reads it (the caller owns that task). Legacy plugins
    get the old host's treatment: the probe connection is closed, ``init`` goes
    on a connection of its own, and every exchange later on a fresh one, with
    *on_outcome* told how each went (their health rule).
    """
    if not metadata.modern:
        await stream.aclose()
        legacy = LegacyConnection(socket_path, metadata.id, max_frame)
        if on_outcome is not None:
            legacy.on_outcome = on_outcome
        await legacy.notify(init)
        return legacy
    connection = PluginConnection(FramedStream(stream, limit=max_frame), metadata.id, kv_handler)
    if reader is not None:
        reader(connection)
    await connection.notify(init)
    return connection
