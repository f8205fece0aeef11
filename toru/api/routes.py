"""``ANY /api/plugins/route/{route}/{path...}``: web requests forwarded to the plugin.

The plugin whose metadata route is ``/{route}`` gets the request through its
connection (many in flight at once for modern plugins; one at a time, queued,
for legacy ones), with headers cleaned and Toru's identity headers added. No
lock is shared between plugins: a slow or dead plugin delays only itself.
Status mapping: unknown or disabled route 404; plugin starting or in backoff
503 with ``Retry-After``; no reply within 30 s 504; connection lost or an
unusable reply 502 — each a JSON error naming the plugin, and a log line.
"""

from __future__ import annotations

import structlog
from quart import Blueprint, Response, g, request
from quart.typing import ResponseReturnValue

from toru.api.errors import ApiError
from toru.api.guards import client_address, current_identity, login_required
from toru.config import Settings
from toru.plugins.connection import ConnectionLost, QueueFull, RequestTimeout
from toru.plugins.framing import ProtocolError
from toru.plugins.messages import HttpRequest, decode_http_reply
from toru.plugins.runner import State
from toru.plugins.supervisor import Supervisor

log = structlog.get_logger("toru.api.routes")

REQUEST_TIMEOUT = 30.0
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

    @bp.route("/<route>", defaults={"path": ""}, methods=METHODS)
    @bp.route("/<route>/", defaults={"path": ""}, methods=METHODS)
    @bp.route("/<route>/<path:path>", methods=METHODS)
    @login_required
    async def forward(route: str, path: str) -> ResponseReturnValue:
        def report(message: str, **details: str) -> None:
            """A warning in Toru's log and in the plugin's own file, with the request id."""
            log.warning(message, plugin_id=plugin_id, **details)
            if file := supervisor.log_file(plugin_id):
                file.note("warn", message, request_id=g.request_id, url=url, **details)

        url = request.full_path if request.query_string else request.path
        runner = supervisor.runner_for_route(route)
        if runner is None:
            raise ApiError(404, f"no enabled plugin serves the route '/{route}'")
        plugin_id = runner.plugin_id
        channel = runner.channel
        if runner.state is not State.RUNNING or channel is None:
            report("request refused: plugin not running", state=runner.state.value)
            raise ApiError(
                503,
                f"plugin {plugin_id!r} is {runner.state.value}; try again shortly",
                headers={"Retry-After": "2"},
                plugin=plugin_id,
            )
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
        # The path as the browser sent it, still percent-encoded (the SDK decodes it).
        raw_path = (request.scope.get("raw_path") or request.path.encode()).decode("latin-1")
        rest = raw_path.split("?", 1)[0][len(f"{bp.url_prefix}/{route}") :]
        query = request.query_string.decode("latin-1")
        target = (rest or "/") + (f"?{query}" if query else "")
        message = HttpRequest(request.method, target, headers, body)
        try:
            frame = await channel.request(message, timeout=REQUEST_TIMEOUT)
            reply = decode_http_reply(frame)
        except RequestTimeout as exc:
            report("plugin request timed out", reason=str(exc))
            raise ApiError(504, f"plugin {plugin_id!r} did not answer within "
                           f"{REQUEST_TIMEOUT:g} s", plugin=plugin_id) from None  # fmt: skip
        except QueueFull as exc:
            report("plugin request refused", reason=str(exc))
            raise ApiError(503, str(exc), headers={"Retry-After": "1"}, plugin=plugin_id) from None
        except (ConnectionLost, ProtocolError) as exc:
            report("plugin request failed", reason=str(exc))
            raise ApiError(502, f"plugin {plugin_id!r} failed to answer: {exc}",
                           plugin=plugin_id) from None  # fmt: skip
        response = Response(reply.body, status=reply.status)
        response.headers.pop("Content-Type", None)
        for name, value in reply.headers.items():
            if name not in RESPONSE_DROPPED:
                response.headers[name] = value
        return response

    return bp
