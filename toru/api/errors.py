"""JSON errors for the API: one shape everywhere, ``{"error": "..."}``, never a traceback.

A write the disk cannot take (SQLite's "database or disk is full", ``ENOSPC``,
``EDQUOT``), wherever in a handler it happens, answers **507 Insufficient
Storage** with a message that says so and what to do: it is the operator's
problem to fix, not a bug in Toru, and a bare 500 would hide that.

A request body is read by :func:`json_body` alone, which answers 400 for
anything it cannot turn into the expected object, including JSON nested deeper
than :data:`MAX_BODY_DEPTH` levels (which would otherwise overflow the parser's
stack) and escapes such as ``"\\ud800"`` that decode to a lone surrogate (which
would fail later, when SQLite, a log line or a reply encodes it as UTF-8).
"""

from __future__ import annotations

import errno
import json
from typing import Any, TypeVar

import structlog
from quart import Quart, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from toru.converter import StructureError, structure
from toru.plugins.framing import LoneSurrogate, TooDeep, load_json
from toru.plugins.kv import is_storage_full

T = TypeVar("T")

log = structlog.get_logger("toru.api")

#: ``errno`` values that mean "no room to write": the device is full, or the quota is.
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: How deeply a request body may nest arrays and objects (the body itself is level 1).
#: Every API body is a flat object; 64 leaves room and keeps the parser far from its
#: recursion limit.
MAX_BODY_DEPTH = 64


class ApiError(Exception):
    """Answer the request with *status* and ``{"error": message, ...extra}``."""

    def __init__(
        self, status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    response = jsonify({"error": message, **extra})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


async def json_body(cls: type[T]) -> T:
    """The request's JSON object as *cls*; 400 with the reason when it is not one.

    An empty body is ``{}``. Refused with 400: text that is not JSON (or not
    UTF-8/16/32), nesting deeper than :data:`MAX_BODY_DEPTH` levels, a string that
    decodes to a lone surrogate, and an object that does not fit *cls*.
    """
    raw = await request.get_data(as_text=False)
    data = parse_body(raw if isinstance(raw, bytes) else raw.encode("utf-8"))
    try:
        return structure(data, cls)
    except StructureError as exc:
        raise ApiError(400, f"invalid request: {exc}") from exc


def parse_body(raw: bytes) -> object:
    """A request body's JSON value (``{}`` when empty); :class:`ApiError` 400 otherwise.

    The one JSON decoder for request bodies: a handler that wants the value itself,
    not a structured *cls*, calls this rather than ``json.loads``.
    """
    if not raw.strip():
        return {}
    try:
        # Decoded here, strictly: json.loads(bytes) would let UTF-8-encoded surrogates in.
        return load_json(raw.decode(json.detect_encoding(raw)), max_depth=MAX_BODY_DEPTH)
    except TooDeep:
        raise ApiError(
            400, f"the request body is nested deeper than {MAX_BODY_DEPTH} levels"
        ) from None
    except LoneSurrogate:
        raise ApiError(
            400, "the request body has an invalid Unicode escape (a lone surrogate)"
        ) from None
    except ValueError:  # not JSON, not UTF-8 (UnicodeDecodeError), an over-long integer
        raise ApiError(400, "the request body is not valid JSON") from None


def storage_full(error: BaseException) -> str | None:
    """The reason, when *error* (or what caused it, or a leaf of its group) says the disk
    holding the data is full; ``None`` for anything else."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if is_storage_full(current):
            return "database or disk is full"
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return (current.strerror or str(current)).lower()
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        causes = (current.__cause__, None if current.__suppress_context__ else current.__context__)
        pending.extend(cause for cause in causes if cause is not None)
    return None


def storage_full_message(reason: str) -> str:
    """What a client is told (507) when a write found the disk full: what, and what to do."""
    return f"the disk holding Toru's data is full ({reason}); free some space and try again"


def install_error_handlers(app: Quart) -> None:
    @app.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Response:
        return error_response(error.status, error.message, error.headers, **error.extra)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        messages = {
            404: f"no such endpoint: {request.method} {request.path}",
            405: f"method {request.method} is not allowed on {request.path}",
            413: "the request body is too large",
        }
        message = messages.get(status) or (error.description or error.name).strip().lower()
        response = error_response(status, message)
        if status == 405 and (allow := error.get_headers()):
            for name, value in allow:
                if name.lower() == "allow":
                    response.headers["Allow"] = value
        return response

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        request_id = getattr(g, "request_id", "-")
        if (reason := storage_full(error)) is not None:
            # The operator's to fix; no traceback (the log may be on that same full disk).
            log.error(
                "a write failed: the disk is full",
                method=request.method,
                path=request.path,
                reason=reason,
            )
            return error_response(507, storage_full_message(reason), request_id=request_id)
        log.error(
            "unhandled error in request handler",
            method=request.method,
            path=request.path,
            exc_info=error,
        )
        return error_response(
            500,
            f"internal error; the server log has the details under request id {request_id}",
            request_id=request_id,
        )
