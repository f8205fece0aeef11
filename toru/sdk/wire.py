"""Messages on the socket: the envelopes the SDK writes and the request shapes it reads.

The SDK writes the clean shape of PROTOCOL-FACTS.md: ``payload.type`` and
``request_id`` (null when there is none) always present. It reads tolerantly:
unknown fields ignored, ``payload.type`` optional, the HTTP request either in
``payload.payload`` (what Toru sends, for the sake of old plugins) or directly
in ``payload``, ``body`` null or absent, or ``body_base64`` instead. The envelope
itself, and reading a message's kind, are :mod:`toru.plugins.envelope`'s, which
Toru uses too.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from toru.plugins.envelope import envelope, payload_of
from toru.sdk.http import HTTPError, Request, Response


def request_id_of(message: dict[str, Any]) -> str | None:
    """The message's ``request_id`` (or ``payload.request_id``) when it is a string."""
    request_id = message.get("request_id")
    if request_id is None:
        request_id = payload_of(message).get("request_id")
    return request_id if isinstance(request_id, str) else None


def _header_value(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def parse_http_request(message: dict[str, Any]) -> Request:
    """The Request inside an ``http`` message; ``HTTPError(400)`` for a bad ``body_base64``."""
    outer = payload_of(message)
    inner = outer.get("payload")
    fields = inner if isinstance(inner, dict) else outer
    method = fields.get("method")
    target = fields.get("path")
    raw_headers = fields.get("headers")
    headers = (
        {
            str(name): _header_value(value)
            for name, value in raw_headers.items()
            if value is not None
        }
        if isinstance(raw_headers, dict)
        else {}
    )
    encoded = fields.get("body_base64")
    raw = fields.get("body")
    if isinstance(encoded, str):
        try:
            body = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise HTTPError(400, "request body_base64 is not valid base64") from None
    elif raw is None:
        body = b""
    elif isinstance(raw, str):
        body = raw.encode("utf-8")
    else:
        # Not what Toru sends, but a JSON value in place of its text is unambiguous.
        body = json.dumps(raw).encode("utf-8")
    return Request.from_target(
        method if isinstance(method, str) and method else "GET",
        target if isinstance(target, str) and target else "/",
        headers=headers,
        body=body,
        request_id=request_id_of(message),
    )


def http_reply(request_id: str | None, response: Response) -> dict[str, Any]:
    """The clean reply: ``{"status", "headers", "body"}``, or ``body_base64`` for bytes."""
    payload: dict[str, Any] = {"status": response.status, "headers": dict(response.headers)}
    if isinstance(response.body, bytes):
        payload["body_base64"] = base64.b64encode(response.body).decode("ascii")
    else:
        payload["body"] = response.body
    return envelope("http", request_id, payload)
