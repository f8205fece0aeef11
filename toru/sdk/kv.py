"""``plugin.kv``: the plugin's key-value store, kept by Toru and reached over the socket.

Each call is a ``kv`` request on the host connection (the one that most
recently delivered ``init``), matched to Toru's reply by ``request_id``. Any
number of calls may be in flight at once. Failures are a :class:`KVError`:
Toru's error reply, no reply within ``timeout`` seconds, no host connection,
or the connection closing under a waiting call.
"""

from __future__ import annotations

import builtins
import json
import uuid
from typing import Any

import attrs
import trio

from toru.plugins.envelope import envelope
from toru.plugins.framing import FramedStream


class KVError(Exception):
    """A key-value call failed; the message is Toru's reason or says what went wrong."""


@attrs.define(eq=False)
class _Pending:
    connection: FramedStream
    done: trio.Event = attrs.field(factory=trio.Event)
    reply: dict[str, Any] = attrs.field(factory=dict)
    failure: str | None = None


class KVClient:
    """Async access to the plugin's keys: ``await plugin.kv.get("counter")``.

    Keys and values are strings (``get_json``/``set_json`` store JSON text).
    The SDK's server calls :meth:`bind`, :meth:`deliver` and
    :meth:`connection_lost`; plugin code never needs them.
    """

    def __init__(self, *, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._connection: FramedStream | None = None
        self._pending: dict[str, _Pending] = {}

    @property
    def connected(self) -> bool:
        """Whether a host connection is there to carry calls."""
        return self._connection is not None

    async def get(self, key: str) -> str | None:
        """The value of *key*, or None when it is not set."""
        reply = await self._call("get", key)
        value = reply.get("value")
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value)  # a host that stored JSON as JSON: hand back its text

    async def set(self, key: str, value: str) -> None:
        """Store *value* (a string) under *key*."""
        if not isinstance(value, str):
            raise TypeError(
                f"kv value for {key!r} must be a str, not {type(value).__name__}; "
                "use set_json for other values"
            )
        await self._call("set", key, value)

    async def delete(self, key: str) -> None:
        """Remove *key* (no error when it is not set)."""
        await self._call("delete", key)

    async def list(self, prefix: str = "") -> builtins.list[str]:
        """The plugin's keys that start with *prefix*."""
        reply = await self._call("list", prefix, prefix=prefix)
        keys = reply.get("keys")
        if keys is None and isinstance(reply.get("value"), builtins.list):
            keys = reply["value"]
        if not isinstance(keys, builtins.list):
            raise KVError(f"kv list {prefix!r}: Toru's reply has no list of keys")
        return [key for key in keys if isinstance(key, str) and key.startswith(prefix)]

    async def get_json(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under *key*, or *default* when it is not set."""
        text = await self.get(key)
        if text is None:
            return default
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise KVError(f"kv value of {key!r} is not JSON: {exc}") from None

    async def set_json(self, key: str, value: Any) -> None:
        """Store *value* as JSON text under *key*."""
        await self.set(key, json.dumps(value, ensure_ascii=False))

    # --- used by the SDK's server -------------------------------------------------

    def bind(self, connection: FramedStream) -> None:
        """Send calls over *connection* from now on (it delivered ``init``)."""
        self._connection = connection

    def deliver(self, request_id: str, payload: dict[str, Any]) -> bool:
        """Hand a reply to the call waiting for *request_id*; False if none is."""
        pending = self._pending.get(request_id)
        if pending is None or pending.done.is_set():
            return False
        pending.reply = payload
        pending.done.set()
        return True

    def connection_lost(self, connection: FramedStream) -> None:
        """*connection* closed: fail the calls waiting on it, and forget it as host."""
        if self._connection is connection:
            self._connection = None
        for pending in self._pending.values():
            if pending.connection is connection and not pending.done.is_set():
                pending.failure = "the connection to Toru closed before it replied"
                pending.done.set()

    async def _call(
        self, action: str, key: str, value: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        if not isinstance(key, str):
            raise TypeError(f"kv key must be a str, not {type(key).__name__}")
        connection = self._connection
        if connection is None:
            raise KVError("not connected to Toru")
        request_id = f"kv-{uuid.uuid4().hex}"
        pending = _Pending(connection)
        self._pending[request_id] = pending
        payload: dict[str, Any] = {"action": action, "key": key, **extra}
        if value is not None:
            payload["value"] = value
        try:
            try:
                await connection.send(envelope("kv", request_id, payload))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise KVError(f"kv {action} {key!r}: the connection to Toru is closed") from None
            with trio.move_on_after(self.timeout):
                await pending.done.wait()
        finally:
            del self._pending[request_id]
        if not pending.done.is_set():
            raise KVError(f"kv {action} {key!r}: no reply from Toru within {self.timeout:g} s")
        if pending.failure is not None:
            raise KVError(f"kv {action} {key!r}: {pending.failure}")
        error = pending.reply.get("error")
        if error is not None:
            raise KVError(str(error))
        return pending.reply
