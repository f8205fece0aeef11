"""Messages between Toru and a plugin: what Toru writes, and what it accepts back.

Toru writes one shape that every existing plugin can read (``payload.type``
and ``request_id`` always present; HTTP requests nested in
``payload.payload``, as both old dialects expect). It reads tolerantly:
unknown fields are ignored, ``payload.type`` is optional, KV actions are
case-insensitive, and HTTP replies come in two shapes — the clean one
(``payload.status``) and the old Rust SDK's (a JSON *string* in
``payload.payload.body`` that holds ``{status, headers, body}``).
See ``docs/plugins/PROTOCOL.md``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import uuid
from typing import Any

import attrs
import cattrs

from toru.converter import wire
from toru.plugins.envelope import envelope

# Re-exported: the connection reads the kind of every frame it receives through here.
from toru.plugins.envelope import kind_of as kind_of
from toru.plugins.framing import (
    MAX_FRAME_DEPTH,
    JsonRefused,
    ProtocolError,
    TooDeep,
    load_json,
)


class Kind(enum.StrEnum):
    LIFECYCLE = "lifecycle"
    HTTP = "http"
    KV = "kv"


KV_ACTIONS = frozenset({"get", "set", "delete", "list"})


@attrs.frozen
class Init:
    instance_id: str
    plugin_socket: str
    log_path: str


@attrs.frozen
class Shutdown:
    pass


@attrs.frozen
class Ping:
    pass


@attrs.frozen
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str] = attrs.field(factory=dict)
    body: bytes = b""


@attrs.frozen
class HttpResponse:
    status: int
    headers: dict[str, str] = attrs.field(factory=dict)
    body: bytes = b""


@attrs.frozen
class KvRequest:
    """A plugin asks Toru for storage; ``action`` is already lower-case."""

    action: str
    key: str = ""
    value: str | None = None


@attrs.frozen
class KvReply:
    value: str | None = None
    keys: list[str] | None = None
    error: str | None = None


ToPlugin = Init | Shutdown | Ping | HttpRequest | KvReply


def new_request_id() -> str:
    return uuid.uuid4().hex


def encode(message: ToPlugin, request_id: str | None = None) -> dict[str, Any]:
    """The wire form of a message from Toru to a plugin."""
    match message:
        case Init():
            fields = attrs.asdict(message)
            # Flat, as documented; nested again under "payload", where the old Rust
            # example reads it. Readers ignore the copy they do not use.
            return envelope(
                Kind.LIFECYCLE.value, None, {"action": "init", **fields, "payload": fields}
            )
        case Shutdown():
            return envelope(Kind.LIFECYCLE.value, None, {"action": "shutdown"})
        case Ping():
            return envelope(Kind.LIFECYCLE.value, request_id, {"action": "ping"})
        case HttpRequest():
            inner: dict[str, Any] = {
                "method": message.method,
                "path": message.path,
                "headers": message.headers,
            }
            try:
                inner["body"] = message.body.decode("utf-8") if message.body else None
            except UnicodeDecodeError:
                inner["body"] = None
                inner["body_base64"] = base64.b64encode(message.body).decode("ascii")
            return envelope(
                Kind.HTTP.value, request_id, {"request_id": request_id, "payload": inner}
            )
        case KvReply():
            reply: dict[str, Any]
            if message.error is not None:
                reply = {"error": message.error}
            else:
                reply = {"value": message.value}
                if message.keys is not None:
                    reply["keys"] = message.keys
            return envelope(Kind.KV.value, request_id, reply)
    raise TypeError(f"not a message to a plugin: {message!r}")


def _payload(frame: dict[str, Any]) -> dict[str, Any]:
    payload = frame.get("payload")
    if not isinstance(payload, dict):
        raise ProtocolError(f"{frame.get('type', 'message')} has no payload object")
    return payload


def is_pong(frame: dict[str, Any]) -> bool:
    payload = frame.get("payload")
    return isinstance(payload, dict) and str(payload.get("action", "")).lower() == "pong"


@attrs.frozen
class _HttpReplyWire:
    status: int
    headers: dict[str, Any] = attrs.field(factory=dict)
    body: Any = None
    body_base64: str | None = None


def decode_http_reply(frame: dict[str, Any]) -> HttpResponse:
    """An HTTP reply in either accepted shape; :class:`ProtocolError` says why not."""
    payload = _payload(frame)
    if "status" not in payload:
        inner = payload.get("payload")
        if not (isinstance(inner, dict) and isinstance(inner.get("body"), str)):
            raise ProtocolError(
                "http reply has neither payload.status nor a JSON-string payload.payload.body"
            )
        # The old Rust SDK: the real reply is JSON text inside the nested body.
        try:
            payload = load_json(inner["body"], max_depth=MAX_FRAME_DEPTH)
        except JsonRefused as exc:
            verb = "is" if isinstance(exc, TooDeep) else "has"
            raise ProtocolError(f"http reply body {verb} {exc}") from None
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"http reply body is not JSON text: {exc.msg}") from None
        except ValueError as exc:  # an integer over Python's digit limit, say
            raise ProtocolError(f"http reply body is not usable JSON: {exc}") from None
        if not isinstance(payload, dict) or "status" not in payload:
            raise ProtocolError("http reply body does not hold an object with a status")
    try:
        reply = wire.structure(payload, _HttpReplyWire)
    except Exception as exc:
        raise ProtocolError(f"http reply is malformed: {_reason(exc)}") from None
    if not 100 <= reply.status <= 599:
        raise ProtocolError(f"http reply status {reply.status} is not between 100 and 599")
    return HttpResponse(
        status=reply.status,
        headers={str(k).lower(): _text(v) for k, v in reply.headers.items()},
        body=_body(reply.body, reply.body_base64),
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _body(body: Any, body_base64: str | None) -> bytes:
    if body_base64 is not None:
        try:
            return base64.b64decode(body_base64, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("http reply body_base64 is not valid base64") from None
    if body is None:
        return b""
    # A non-string body (an object a plugin put there directly) is sent on as JSON text.
    return _text(body).encode("utf-8")


def decode_kv_request(frame: dict[str, Any]) -> KvRequest:
    """A plugin's storage request; the action is lower-cased and must be known."""
    payload = _payload(frame)
    action = payload.get("action")
    if not isinstance(action, str) or action.lower() not in KV_ACTIONS:
        raise ProtocolError(f"kv action {action!r} is not one of {', '.join(sorted(KV_ACTIONS))}")
    key = payload.get("key", "")
    value = payload.get("value")
    if not isinstance(key, str):
        raise ProtocolError("kv key must be a string")
    if value is not None and not isinstance(value, str):
        raise ProtocolError("kv value must be a string (store JSON as text)")
    return KvRequest(action.lower(), key, value)


def _reason(exc: Exception) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, path="payload"))
    return str(exc)
