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
MAX_REQUEST_BODY = 10 * 1024 * 1024
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

    @bp.route("/<route>", defaults={"path": ""}, methods=METHODS)
    @bp.route("/<route>/", defaults={"path": ""}, methods=METHODS)
    @bp.route("/<route>/<path:path>", methods=METHODS)
    @login_required
    async def forward(route: str, path: str) -> ResponseReturnValue:
        runner = supervisor.runner_for_route(route)
        if runner is None:
            raise ApiError(404, f"no enabled plugin serves the route '/{route}'")
        plugin_id = runner.plugin_id
        channel = runner.channel
        if runner.state is not State.RUNNING or channel is None:
            log.warning("request refused: plugin not running", plugin_id=plugin_id,
                        state=runner.state.value)  # fmt: skip
            raise ApiError(
                503,
                f"plugin {plugin_id!r} is {runner.state.value}; try again shortly",
                headers={"Retry-After": "2"},
                plugin=plugin_id,
            )
        if (request.content_length or 0) > MAX_REQUEST_BODY:
            raise ApiError(413, f"the request body is over {MAX_REQUEST_BODY // 2**20} MiB")
        raw = await request.get_data(cache=False, as_text=False)
        body = raw if isinstance(raw, bytes) else raw.encode("utf-8")
        if len(body) > MAX_REQUEST_BODY:
            raise ApiError(413, f"the request body is over {MAX_REQUEST_BODY // 2**20} MiB")
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
            log.warning("plugin request timed out", plugin_id=plugin_id, reason=str(exc))
            raise ApiError(504, f"plugin {plugin_id!r} did not answer within "
                           f"{REQUEST_TIMEOUT:g} s", plugin=plugin_id) from None  # fmt: skip
        except QueueFull as exc:
            log.warning("plugin request refused", plugin_id=plugin_id, reason=str(exc))
            raise ApiError(503, str(exc), headers={"Retry-After": "1"}, plugin=plugin_id) from None
        except (ConnectionLost, ProtocolError) as exc:
            log.warning("plugin request failed", plugin_id=plugin_id, reason=str(exc))
            raise ApiError(502, f"plugin {plugin_id!r} failed to answer: {exc}",
                           plugin=plugin_id) from None  # fmt: skip
        response = Response(reply.body, status=reply.status)
        response.headers.pop("Content-Type", None)
        for name, value in reply.headers.items():
            if name not in RESPONSE_DROPPED:
                response.headers[name] = value
        return response

    return bp
