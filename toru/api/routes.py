"""``ANY /api/plugins/route/{route}/{path...}``: web requests forwarded to the plugin.

The plugin whose metadata route is ``/{route}`` gets the request through its
connection (many in flight at once for modern plugins; one at a time, queued,
for legacy ones), with headers cleaned and Toru's identity headers added. No
lock is shared between plugins: a slow or dead plugin delays only itself.
Status mapping: unknown or disabled route 404; plugin starting or in backoff
503 with ``Retry-After``; no reply within 30 s 504; connection lost or an
unusable reply 502 — each a JSON error naming the plugin, and a log line.

The plugin gets the path exactly as the client sent it after the route segment, still
percent-encoded (``/route/legacy%2Dpython/a%20b`` arrives as ``/a%20b``; the root as
``/``), with the query string; trailing and doubled slashes too (nothing is redirected).
The route segment is found by splitting the raw path on ``/``, so a segment holding an
encoded slash (``legacy%2Fpython``) matches no route: 404.
"""

from __future__ import annotations

from urllib.parse import unquote

import structlog
from quart import Blueprint, Response, g, request
from quart.blueprints import BlueprintSetupState
from quart.typing import ResponseReturnValue
from werkzeug.routing import PathConverter

from toru.api.errors import ApiError
from toru.api.guards import client_address, current_identity, login_required
from toru.config import Settings
from toru.plugins.errors import PluginUnavailable
from toru.plugins.messages import HttpRequest
from toru.plugins.supervisor import Supervisor

log = structlog.get_logger("toru.api.routes")

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "trailers", "transfer-encoding", "upgrade", "proxy-connection"}
)  # fmt: skip
#: Never forwarded to a plugin: the session and credentials are Toru's, not the plugin's.
REQUEST_DROPPED = HOP_BY_HOP | {"cookie", "authorization", "host", "content-length"}
#: Never passed back to the browser: a plugin cannot set Toru's cookies.
RESPONSE_DROPPED = HOP_BY_HOP | {"set-cookie", "content-length"}


def plugin_routes_blueprint(supervisor: Supervisor, settings: Settings) -> Blueprint:
    bp = Blueprint("plugin_routes", __name__, url_prefix="/api/plugins/route")
    limit = settings.max_request_body
    too_large = (
        f"the request body is over the {limit / 2**20:g} MiB limit for plugin routes "
        "(TORU_MAX_REQUEST_BODY_MB)"
    )

    def add_converter(state: BlueprintSetupState) -> None:
        state.app.url_map.converters.setdefault("plugin_rest", RestConverter)

    # Before the rules that use it: a rule's converters are looked up when it is added.
    bp.record_once(add_converter)

    # Every path is answered where it was sent, never redirected (werkzeug redirects
    # between two rules of one endpoint with the same defaults, and to the merged path
    # when only that matches; the Location loses the client's encoding). With
    # `plugin_rest` a doubled slash after the route matches as it is; before it, 404.
    rule = {"methods": METHODS, "merge_slashes": False}

    @bp.route("/<route>", endpoint="forward_root", defaults={"path": ""}, **rule)
    @bp.route("/<route>/<plugin_rest:path>", **rule)
    @login_required
    async def forward(route: str, path: str) -> ResponseReturnValue:
        url = request.full_path if request.query_string else request.path

        def refused(error: PluginUnavailable) -> ApiError:
            """A warning in Toru's log and in the plugin's own file, with the request id."""
            if error.plugin_id is None:
                return ApiError(error.status, error.message)
            log.warning(error.summary, plugin_id=error.plugin_id, reason=error.detail)
            if file := supervisor.log_file(error.plugin_id):
                file.note(
                    "warn", error.summary, request_id=g.request_id, url=url, reason=error.detail
                )
            headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
            return ApiError(error.status, error.message, headers=headers, plugin=error.plugin_id)

        # The path as the browser sent it, still percent-encoded (the SDK decodes it).
        raw_path = (request.scope.get("raw_path") or request.path.encode()).decode("latin-1")
        rest = raw_rest(raw_path, bp.url_prefix or "", route)
        if rest is None:
            raise ApiError(
                404,
                f"no plugin route matches the path {raw_path!r}: a route is a single segment, "
                "and an encoded '/' (%2F) does not belong to one",
            )
        try:
            plugin_id = supervisor.resolve_route(route)
        except PluginUnavailable as error:
            raise refused(error) from None
        if (request.content_length or 0) > limit:
            raise ApiError(413, too_large, plugin=plugin_id)
        raw = await request.get_data(cache=False, as_text=False)
        body = raw if isinstance(raw, bytes) else raw.encode("utf-8")
        if len(body) > limit:
            raise ApiError(413, too_large, plugin=plugin_id)
        identity = current_identity()
        headers = {
            name.lower(): value
            for name, value in request.headers.items()
            if name.lower() not in REQUEST_DROPPED and not name.lower().startswith("x-toru-")
        }
        headers.update(
            {
                "x-toru-user": identity.username,
                "x-toru-role": identity.role.value,
                "x-request-id": g.request_id,
                "x-forwarded-for": client_address(settings.trust_proxy),
            }
        )
        query = request.query_string.decode("latin-1")
        target = (rest or "/") + (f"?{query}" if query else "")
        try:
            reply = await supervisor.request(
                plugin_id, HttpRequest(request.method, target, headers, body)
            )
        except PluginUnavailable as error:
            raise refused(error) from None
        response = Response(reply.body, status=reply.status)
        response.headers.pop("Content-Type", None)
        for name, value in reply.headers.items():
            if name not in RESPONSE_DROPPED:
                response.headers[name] = value
        return response

    return bp


class RestConverter(PathConverter):
    """The path after a plugin's route: like ``path``, but it may be empty or begin with a
    slash (``/route/x//a``), so that it matches as sent instead of after merging slashes."""

    regex = ".*?"
    part_isolating = False  # spans segments (werkzeug would infer True: no '/' in the regex)


def raw_rest(raw_path: str, prefix: str, route: str) -> str | None:
    """What follows the route segment in *raw_path*, exactly as the client encoded it.

    *raw_path* is the request path still percent-encoded (no query string is expected,
    one is cut off), *prefix* the blueprint's decoded prefix and *route* the decoded route
    segment the URL rule matched. The raw path is split on ``/`` and its first segments
    must decode, one by one, to the prefix's and then to *route*: lengths of decoded text
    say nothing about the raw one (``%2D`` is three characters for one). ``None`` when
    they do not: an encoded slash (``legacy%2Fpython``) in the prefix or the route
    segment, which no plugin route contains. ``""`` for the plugin's root.
    """
    expected = [*prefix.split("/"), route]
    raw = raw_path.split("?", 1)[0].split("/")
    if len(raw) < len(expected) or [unquote(piece) for piece in raw[: len(expected)]] != expected:
        return None
    rest = raw[len(expected) :]
    return "/" + "/".join(rest) if rest else ""
