"""The Quart-Trio application: blueprints, the web UI, request ids, CSRF rule, security headers.

``create_app`` takes the services it needs as arguments; nothing here opens a
database or starts a task, so the app can be served by Hypercorn in the root
nursery (``toru.server``) and built just the same in tests.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import structlog
import trio
from quart import Quart, Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import RequestEntityTooLarge

from toru.api.auth import auth_blueprint
from toru.api.errors import ApiError, install_error_handlers
from toru.api.guards import SESSIONS_EXTENSION
from toru.api.plugins import plugins_blueprint
from toru.api.routes import plugin_routes_blueprint
from toru.api.stream import stream_blueprint
from toru.api.system import system_blueprint
from toru.api.users import users_blueprint
from toru.auth.service import AuthService
from toru.plugins.supervisor import Supervisor
from toru.webui import CONTENT_SECURITY_POLICY, webui_blueprint

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_BODY_BYTES = 16 * 1024 * 1024
BODY_DRAIN_SECONDS = 10.0
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def create_app(auth: AuthService, supervisor: Supervisor | None = None) -> Quart:
    """Build the app around an :class:`AuthService` (which carries the settings).

    Without a *supervisor* (tools, some tests) the plugin endpoints are absent.
    """
    settings = auth.settings
    app = QuartTrio("toru", static_folder=None)  # the web UI serves files (toru/webui.py)
    # Core endpoints take small JSON bodies; plugin routes check their own (larger) limit.
    app.config["MAX_CONTENT_LENGTH"] = max(MAX_BODY_BYTES, settings.max_request_body + 1)
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.strict_slashes = False
    app.extensions[SESSIONS_EXTENSION] = auth.sessions

    @app.before_request
    async def start_request() -> None:
        incoming = request.headers.get("X-Request-Id", "")
        trusted = settings.trust_proxy and _REQUEST_ID.fullmatch(incoming)
        g.request_id = incoming if trusted else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=g.request_id)
        if request.path.startswith("/api/") and request.method in STATE_CHANGING:
            check_csrf(trust_proxy=settings.trust_proxy)

    @app.after_request
    async def finish_request(response: Response) -> Response:
        await drain_body(response)
        response.headers["X-Request-Id"] = g.get("request_id", "-")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        # Added, not defaulted: a plugin route's own policy can only tighten Toru's.
        response.headers.add("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    install_error_handlers(app)
    app.register_blueprint(system_blueprint())
    app.register_blueprint(auth_blueprint(auth))
    app.register_blueprint(users_blueprint(auth))
    if supervisor is not None:
        app.register_blueprint(plugin_routes_blueprint(supervisor, settings))
        app.register_blueprint(plugins_blueprint(supervisor))
        app.register_blueprint(stream_blueprint(supervisor))
    app.register_blueprint(webui_blueprint())
    return app


PLUGIN_ROUTES = "/api/plugins/route/"
#: Plugin routes accept any body (forms, uploads); this header proves the request is ours.
CSRF_HEADER = "X-Toru-Request"


async def drain_body(response: Response) -> None:
    """Receive the rest of a request body the handler did not read (a 401, 403 or 404
    answered before the body arrived, an endpoint that takes none).

    Hypercorn 0.18 neither reuses nor closes a keep-alive connection whose response
    ended before the request body did: the client's next request on it hangs. Reading
    the body first keeps the connection usable. A body that is too large or too slow
    is given up on, and the connection is closed instead.
    """
    if request.method in {"GET", "HEAD"} and not request.content_length:
        return
    with trio.move_on_after(BODY_DRAIN_SECONDS) as slow:
        try:
            await request.get_data(cache=False)
        except RequestEntityTooLarge:
            response.headers["Connection"] = "close"
    if slow.cancelled_caught:
        response.headers["Connection"] = "close"


def check_csrf(*, trust_proxy: bool) -> None:
    """Refuse a state-changing request a browser could send from another site.

    A cross-site form or a "simple" fetch cannot set ``Content-Type:
    application/json`` nor a custom header without a CORS preflight, which Toru
    never grants; and a present ``Origin`` must name this host. Plugin routes
    take any body, so there the ``X-Toru-Request`` header may stand in for the
    JSON content type.
    """
    custom_header_ok = request.path.startswith(PLUGIN_ROUTES) and CSRF_HEADER in request.headers
    if request.mimetype != "application/json" and not custom_header_ok:
        raise ApiError(
            403,
            f"{request.method} requests to the API must send Content-Type: application/json",
        )
    origin = request.headers.get("Origin")
    if origin is None:
        return
    host = request.headers.get("Host", "")
    if trust_proxy:
        # The last entry, as with X-Forwarded-For: the one our own proxy wrote.
        host = request.headers.get("X-Forwarded-Host", host).split(",")[-1].strip()
    origin_host = urlsplit(origin).netloc if origin != "null" else ""
    if not origin_host or origin_host.lower() != host.lower():
        raise ApiError(403, f"cross-origin request refused: Origin {origin!r} is not this site")
