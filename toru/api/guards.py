"""Who may call what: decorators that read well at the route, and the request's identity.

``@login_required`` answers 401 to anonymous callers; ``@admin_required``
answers 401 to anonymous callers and 403 to everyone who is not an admin.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from quart import current_app, g, request

from toru.api.errors import ApiError
from toru.auth.identity import Identity
from toru.auth.sessions import COOKIE_NAME, SessionStore

P = ParamSpec("P")
R = TypeVar("R")


SESSIONS_EXTENSION = "toru.sessions"


async def resolve_identity() -> Identity | None:
    """The caller behind the session cookie, looked up once per request and only when asked.

    Endpoints that need no identity (``/api/health``) never touch the database.
    """
    if "identity" not in g:
        token = request.cookies.get(COOKIE_NAME)
        sessions: SessionStore = current_app.extensions[SESSIONS_EXTENSION]
        g.identity = await sessions.resolve(token) if token else None
    identity: Identity | None = g.identity
    return identity


def current_identity() -> Identity:
    """The logged-in caller; only call this behind ``@login_required``/``@admin_required``."""
    identity: Identity | None = g.get("identity")
    if identity is None:
        raise ApiError(401, "log in first")
    return identity


def login_required(view: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(view)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        if await resolve_identity() is None:
            raise ApiError(401, "log in first")
        return await view(*args, **kwargs)

    return guarded


def admin_required(view: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(view)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        identity = await resolve_identity()
        if identity is None:
            raise ApiError(401, "log in first")
        if not identity.is_admin:
            raise ApiError(403, "only administrators may do this")
        return await view(*args, **kwargs)

    return guarded


def client_address(trust_proxy: bool) -> str:
    """The caller's address: the socket peer, or the proxy's ``X-Forwarded-For`` when trusted.

    With a trusted proxy the *last* ``X-Forwarded-For`` entry is used: it is the
    one our proxy added; anything before it came from the client and can be forged.
    """
    if trust_proxy:
        forwarded = request.headers.get("X-Forwarded-For", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-1]
    return request.remote_addr or "-"
