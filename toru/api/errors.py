"""JSON errors for the API: one shape everywhere, ``{"error": "..."}``, never a traceback."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import structlog
from quart import Quart, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from toru.converter import StructureError, structure

T = TypeVar("T")

log = structlog.get_logger("toru.api")


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
    """The request's JSON object as *cls*; 400 with the reason when it is not one."""
    raw = await request.get_data(as_text=False)
    if not raw.strip():
        data: object = {}
    else:
        try:
            data = json.loads(raw)
        except ValueError:  # not JSON, or not UTF-8 (UnicodeDecodeError is a ValueError)
            raise ApiError(400, "the request body is not valid JSON") from None
    try:
        return structure(data, cls)
    except StructureError as exc:
        raise ApiError(400, f"invalid request: {exc}") from exc


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
