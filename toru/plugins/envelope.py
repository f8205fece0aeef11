"""The message envelope both ends write and read, and the timestamp it carries.

Every message on a plugin socket is
``{"type", "timestamp", "request_id", "payload": {"type", ...}}`` (see
``docs/plugins/PROTOCOL.md``). Toru (``toru.plugins.messages``) and the plugin
SDK (``toru.sdk.wire``) build and read it with these functions, so the two
cannot drift apart. Packaged plugins carry this file, so it imports the
standard library only.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def utc_timestamp(unix_seconds: float | None = None) -> str:
    """Now (or *unix_seconds*) as RFC 3339 UTC with milliseconds: ``2026-01-15T14:56:07.123Z``."""
    if unix_seconds is None:
        moment = dt.datetime.now(dt.UTC)
    else:
        moment = dt.datetime.fromtimestamp(unix_seconds, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(kind: str, request_id: str | None, payload: dict[str, Any]) -> dict[str, Any]:
    """One message of *kind*, stamped now: ``payload.type`` and ``request_id`` always present.

    Both are written even when empty because the old Rust SDK refuses a payload
    without ``type`` (PROTOCOL-FACTS); *request_id* None is written as null.
    """
    return {
        "type": kind,
        "timestamp": utc_timestamp(),
        "request_id": request_id,
        "payload": {"type": kind, **payload},
    }


def payload_of(message: dict[str, Any]) -> dict[str, Any]:
    """The message's ``payload`` object; empty when it is missing or not an object."""
    payload = message.get("payload")
    return payload if isinstance(payload, dict) else {}


def kind_of(message: dict[str, Any]) -> str | None:
    """``"lifecycle"``, ``"http"``, ``"kv"``...: from ``type`` or else ``payload.type``.

    Lower-cased; None when neither is a string. Readers do not require
    ``payload.type``, and old plugins may capitalise the kind, hence the fallback
    and the lower-casing.
    """
    kind = message.get("type")
    if not isinstance(kind, str):
        kind = payload_of(message).get("type")
    return kind.lower() if isinstance(kind, str) else None
