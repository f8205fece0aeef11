"""Requests as a handler sees them, responses as it returns them, and the errors in between."""

from __future__ import annotations

import builtins
import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

import attrs

from toru.plugins.framing import MAX_FRAME_DEPTH, load_json

JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"
BYTES_TYPE = "application/octet-stream"
USER_HEADER = "x-toru-user"


def parse_query(query: str) -> dict[str, list[str]]:
    """``"a=1&a=2&b="`` -> ``{"a": ["1", "2"], "b": [""]}`` (percent-decoded, blanks kept)."""
    return urllib.parse.parse_qs(query, keep_blank_values=True)


def _lower_headers(headers: Mapping[str, object] | None) -> dict[str, str]:
    if not headers:
        return {}
    return {str(name).lower(): str(value) for name, value in headers.items()}


class HTTPError(Exception):
    """Raise from a handler to answer with *status* and ``{"error": message}``.

    ``raise HTTPError(404, "no item 42")``; *headers* are added to the reply.
    """

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = _lower_headers(headers)

    def response(self) -> Response:
        """The reply this error stands for."""
        return Response.json({"error": self.message}, status=self.status, headers=self.headers)


@attrs.frozen
class Request:
    """One HTTP request forwarded by Toru.

    ``path`` is what follows the plugin's route (``/`` at least), without the
    query string; header names are lower-case; ``params`` holds the path
    parameters of the matched route.
    """

    method: str
    path: str
    query_list: Mapping[str, list[str]] = attrs.field(factory=dict)
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_lower_headers)
    body: bytes = b""
    params: Mapping[str, str] = attrs.field(factory=dict)
    request_id: str | None = None

    @classmethod
    def from_target(
        cls,
        method: str,
        target: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: builtins.bytes = b"",
        request_id: str | None = None,
    ) -> Request:
        """A request for *target* (``/path?query``), as Toru would forward it."""
        path, _, query = target.partition("#")[0].partition("?")
        path = path or "/"
        if not path.startswith("/"):
            path = "/" + path
        return cls(
            method=method.upper(),
            path=path,
            query_list=parse_query(query),
            headers=_lower_headers(headers),
            body=body,
            request_id=request_id,
        )

    @property
    def query(self) -> dict[str, str]:
        """Query parameters, first value of each: ``?q=a&q=b`` -> ``{"q": "a"}``."""
        return {name: values[0] for name, values in self.query_list.items() if values}

    @property
    def user(self) -> str | None:
        """The Toru user who made the request (``x-toru-user``), if Toru said."""
        return self.headers.get(USER_HEADER) or None

    def text(self) -> str:
        """The body as UTF-8 text; ``HTTPError(400)`` if it is not UTF-8."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HTTPError(400, f"request body is not UTF-8 text (byte {exc.start})") from None

    def json(self) -> Any:
        """The body parsed as JSON; ``HTTPError(400)`` when it is empty or not JSON."""
        if not self.body.strip():
            raise HTTPError(400, "request body is empty; expected JSON")
        try:
            return load_json(self.text(), max_depth=MAX_FRAME_DEPTH)
        except json.JSONDecodeError as exc:
            raise HTTPError(400, f"request body is not valid JSON: {exc}") from None
        except ValueError as exc:  # nested too deep, a lone surrogate, a huge integer
            raise HTTPError(400, f"request body is not usable JSON: {exc}") from None


def _check_status(_: object, __: attrs.Attribute[int], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 100 <= value <= 599:
        raise ValueError(f"response status {value!r} is invalid: use an integer from 100 to 599")


@attrs.frozen
class Response:
    """A reply with full control: ``Response(status=201, headers={...}, body="...")``.

    A ``str`` body travels as text, a ``bytes`` body as ``body_base64``; ``None``
    means no body. Header names are stored lower-case.
    """

    status: int = attrs.field(default=200, validator=_check_status)
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_lower_headers)
    body: str | builtins.bytes | None = None

    @classmethod
    def json(
        cls, data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        """*data* serialised as JSON, ``content-type: application/json``."""
        body = json.dumps(data, ensure_ascii=False)
        return cls(
            status=status, headers={"content-type": JSON_TYPE, **_lower_headers(headers)}, body=body
        )

    @classmethod
    def text(
        cls, text: str, *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        """Plain UTF-8 text."""
        return cls(
            status=status, headers={"content-type": TEXT_TYPE, **_lower_headers(headers)}, body=text
        )

    @classmethod
    def bytes(
        cls,
        data: builtins.bytes,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        content_type: str = BYTES_TYPE,
    ) -> Response:
        """Raw bytes (sent as ``body_base64``), ``application/octet-stream`` unless told."""
        return cls(
            status=status,
            headers={"content-type": content_type, **_lower_headers(headers)},
            body=builtins.bytes(data),
        )


def to_response(value: object) -> Response:
    """What a handler returned, as a Response.

    dict or list -> JSON 200; str -> text 200; bytes -> octet-stream 200;
    None -> 204; a Response as is. Anything else is a ``TypeError``.
    """
    if isinstance(value, Response):
        return value
    if value is None:
        return Response(status=204)
    if isinstance(value, dict | list):
        return Response.json(value)
    if isinstance(value, str):
        return Response.text(value)
    if isinstance(value, builtins.bytes | bytearray | memoryview):
        return Response.bytes(builtins.bytes(value))
    raise TypeError(
        f"handler returned a {type(value).__name__}; "
        "return a dict, list, str, bytes, None or a Response"
    )
