"""Which handler answers a method and path: patterns with ``{name}`` and ``{name:path}``.

``/items/{item_id}`` matches ``/items/42`` with ``item_id="42"``; a last
segment ``{rest:path}`` takes one or more remaining segments, slashes included.
Parameters are percent-decoded after the path is split, so ``%2F`` stays
inside its segment. One trailing slash is ignored (``/counter/`` is
``/counter``). Routes are tried in the order they were added.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable

import attrs

from toru.sdk.http import HTTPError, Request

Handler = Callable[[Request], Awaitable[object]]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP method is a token (RFC 9110)


@attrs.frozen
class Segment:
    """One piece of a pattern: literal text, a ``{name}``, or a final ``{name:path}``."""

    text: str
    param: str | None = None
    rest: bool = False


def split_path(path: str) -> list[str]:
    """``/a/b%20c/`` -> ``["a", "b c"]``: segments, percent-decoded, one trailing slash dropped."""
    path = path or "/"
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    if path == "/":
        return []
    return [urllib.parse.unquote(piece) for piece in path.removeprefix("/").split("/")]


def compile_pattern(pattern: str) -> tuple[Segment, ...]:
    """Parse a route pattern; ``ValueError`` names what is wrong with it."""
    if not pattern.startswith("/"):
        raise ValueError(f"route pattern {pattern!r} is invalid: it must start with '/'")
    if "?" in pattern or "#" in pattern:
        raise ValueError(
            f"route pattern {pattern!r} is invalid: query strings are read from "
            "request.query, not matched"
        )
    pieces = split_path(pattern)
    segments: list[Segment] = []
    seen: set[str] = set()
    for index, piece in enumerate(pieces):
        match = _PARAM.fullmatch(piece)
        if match is None:
            if "{" in piece or "}" in piece:
                raise ValueError(
                    f"route pattern {pattern!r} is invalid: {piece!r} must be literal text "
                    "or one whole parameter like '{item_id}'"
                )
            segments.append(Segment(piece))
            continue
        name, rest = match.group(1), match.group(2) is not None
        if name in seen:
            raise ValueError(f"route pattern {pattern!r} is invalid: parameter {name!r} repeats")
        if rest and index != len(pieces) - 1:
            raise ValueError(
                f"route pattern {pattern!r} is invalid: '{{{name}:path}}' must be the last segment"
            )
        seen.add(name)
        segments.append(Segment(piece, param=name, rest=rest))
    return tuple(segments)


@attrs.frozen
class Route:
    """A pattern, the methods it answers, and its handler."""

    pattern: str
    methods: frozenset[str]
    handler: Handler
    segments: tuple[Segment, ...]

    @property
    def shape(self) -> tuple[tuple[str, bool, bool], ...]:
        """The pattern with parameter names erased: equal shapes match the same paths."""
        return tuple(
            ("" if segment.param else segment.text, segment.param is not None, segment.rest)
            for segment in self.segments
        )

    def match(self, pieces: list[str]) -> dict[str, str] | None:
        """The path parameters if *pieces* (from :func:`split_path`) fit the pattern, else None."""
        params: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if segment.rest:
                remaining = pieces[index:]
                if not remaining or not all(remaining):
                    return None
                assert segment.param is not None
                params[segment.param] = "/".join(remaining)
                return params
            if index >= len(pieces):
                return None
            piece = pieces[index]
            if segment.param is None:
                if piece != segment.text:
                    return None
            elif not piece:
                return None
            else:
                params[segment.param] = piece
        return params if len(pieces) == len(self.segments) else None


@attrs.define(eq=False)
class Router:
    """The routes of one plugin."""

    routes: list[Route] = attrs.field(factory=list)

    def add(self, pattern: str, methods: Iterable[str], handler: Handler) -> Route:
        """Register *handler* for *methods* on *pattern*; ValueError for a clash or bad pattern."""
        if isinstance(methods, str):
            methods = [methods]
        wanted = frozenset(method.upper() for method in methods)
        if not wanted:
            raise ValueError(f"route {pattern!r} needs at least one method")
        for method in wanted:
            if not _TOKEN.fullmatch(method):
                raise ValueError(f"route {pattern!r}: {method!r} is not an HTTP method")
        route = Route(pattern, wanted, handler, compile_pattern(pattern))
        for existing in self.routes:
            if existing.shape == route.shape and existing.methods & wanted:
                clash = ", ".join(sorted(existing.methods & wanted))
                raise ValueError(f"route {clash} {pattern} is already registered")
        self.routes.append(route)
        return route

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and path parameters for a request.

        Raises ``HTTPError(404)`` when no pattern fits *path*, and
        ``HTTPError(405)`` with an ``allow`` header when patterns fit but none
        answers *method*. HEAD is answered by a GET route when no HEAD route fits.
        """
        method = method.upper()
        pieces = split_path(path)
        allowed: set[str] = set()
        fallback: tuple[Handler, dict[str, str]] | None = None
        for route in self.routes:
            params = route.match(pieces)
            if params is None:
                continue
            if method in route.methods:
                return route.handler, params
            if method == "HEAD" and "GET" in route.methods and fallback is None:
                fallback = route.handler, params
            allowed |= route.methods
        if fallback is not None:
            return fallback
        if not allowed:
            raise HTTPError(404, f"no route for {method} {path}")
        if "GET" in allowed:
            allowed.add("HEAD")
        allow = ", ".join(sorted(allowed))
        raise HTTPError(
            405, f"method {method} is not allowed for {path}; use {allow}", headers={"allow": allow}
        )
