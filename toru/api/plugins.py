"""``/api/plugins``: list plugins, enable/disable/restart them, rescan, read events."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import attrs
import trio
from quart import Blueprint, Response, jsonify, request
from quart.typing import ResponseReturnValue

from toru.api.auth import query_int
from toru.api.errors import ApiError, json_body
from toru.api.guards import admin_required, current_identity, login_required
from toru.api.sse import KEEP_ALIVE_COMMENT, event_stream, receive_or_idle, sse
from toru.plugins.errors import PluginError, PluginUnavailable
from toru.plugins.kv import KvError
from toru.plugins.logfile import LEVELS, level_rank, read_page
from toru.plugins.messages import HttpRequest
from toru.plugins.naming import ID_PATTERN
from toru.plugins.status import PluginStatus, State, to_json
from toru.plugins.supervisor import Supervisor

#: How long a logs page waits for the plugin's queued records to reach its file.
LOG_FLUSH_WAIT = 1.0


def view(status: PluginStatus, admin: bool) -> dict[str, Any]:
    """The status as *admin* (full) or any other user (public fields) may see it."""
    return to_json(status if admin else status.public())


def plugin_error(error: PluginError) -> ApiError:
    extra = {"plugin": to_json(error.plugin)} if error.plugin is not None else {}
    return ApiError(error.status, str(error), **extra)


@attrs.frozen
class KvAction:
    action: str
    key: str
    value: str | None = None


def query_level() -> str | None:
    """``?level=``: a minimum severity, checked (400 names the accepted ones)."""
    level = request.args.get("level") or None
    if level is not None and level.lower() not in LEVELS:
        raise ApiError(400, f"level {level!r} is not one of debug, info, warn, error")
    return level


def plugins_blueprint(supervisor: Supervisor) -> Blueprint:
    bp = Blueprint("plugins", __name__, url_prefix="/api/plugins")

    def status_or_error(plugin_id: str) -> PluginStatus:
        try:
            return supervisor.status(plugin_id)
        except PluginError as error:
            raise plugin_error(error) from None

    def full_list() -> Response:
        return jsonify(
            {
                "plugins": [to_json(s) for s in supervisor.statuses()],
                "rejected": supervisor.rejected(),
                "scan_error": to_json(error) if (error := supervisor.scan_error) else None,
            }
        )

    @bp.get("")
    @login_required
    async def list_plugins() -> Response:
        if current_identity().is_admin:
            return full_list()
        statuses = supervisor.statuses()
        return jsonify({"plugins": [view(s, False) for s in statuses if s.enabled]})

    @bp.get("/<plugin_id>")
    @login_required
    async def get_plugin(plugin_id: str) -> Response:
        status = status_or_error(plugin_id)
        if current_identity().is_admin:
            return jsonify(to_json(status))
        if not status.enabled:
            raise ApiError(404, f"no plugin with id {plugin_id!r}")
        return jsonify(view(status, False))

    async def transition(action: str, plugin_id: str) -> PluginStatus:
        try:
            status: PluginStatus = await getattr(supervisor, action)(plugin_id)
        except PluginError as error:
            raise plugin_error(error) from None
        return status

    @bp.post("/<plugin_id>/enable")
    @admin_required
    async def enable(plugin_id: str) -> Response:
        status = await transition("enable", plugin_id)
        if status.state is not State.RUNNING:
            # Enabled (and retried with backoff), but it did not come up: say why.
            raise ApiError(
                409,
                f"plugin {plugin_id!r} is enabled but did not start: {status.last_error}; "
                "it is retried with backoff",
                plugin=to_json(status),
            )
        return jsonify(to_json(status))

    @bp.post("/<plugin_id>/disable")
    @admin_required
    async def disable(plugin_id: str) -> Response:
        return jsonify(to_json(await transition("disable", plugin_id)))

    @bp.post("/<plugin_id>/restart")
    @admin_required
    async def restart(plugin_id: str) -> Response:
        return jsonify(to_json(await transition("restart", plugin_id)))

    @bp.post("/rescan")
    @admin_required
    async def rescan() -> Response:
        try:
            await supervisor.rescan()
        except PluginError as error:
            raise plugin_error(error) from None
        return full_list()

    @bp.get("/<plugin_id>/events")
    @admin_required
    async def events(plugin_id: str) -> Response:
        status_or_error(plugin_id)
        limit = query_int("limit", 100, low=1, high=1000)
        before = query_int("before", 2**62, low=1, high=2**62)
        return jsonify(
            {"events": await supervisor.events.list(plugin_id, limit=limit, before=before)}
        )

    @bp.get("/<plugin_id>/logs")
    @admin_required
    async def logs(plugin_id: str) -> Response:
        """The plugin's log records, newest first: ``?page=0&page_size=100&level=warn``."""
        status_or_error(plugin_id)
        page = query_int("page", 0, low=0, high=1_000_000)
        page_size = query_int("page_size", 100, low=1, high=1000)
        level = query_level()
        file = supervisor.log_file(plugin_id)
        if file is None:
            return jsonify({"logs": [], "page": page, "page_size": page_size, "has_more": False})
        # Records are written by the file's writer task a moment after they are made: wait
        # (briefly: a slow disk must not hold the page up) so a page shows what just happened.
        with trio.move_on_after(LOG_FLUSH_WAIT):
            await file.flush()
        records, more = await trio.to_thread.run_sync(
            lambda: read_page(file.path, page=page, page_size=page_size, level=level)
        )
        return jsonify({"logs": records, "page": page, "page_size": page_size, "has_more": more})

    @bp.get("/<plugin_id>/logs/stream")
    @admin_required
    async def logs_stream(plugin_id: str) -> ResponseReturnValue:
        """Live follow: a ``log`` event per record written from now on (``?level=`` filters)."""
        status_or_error(plugin_id)
        level = query_level()
        minimum = level_rank(level) if level else 0
        file = supervisor.log_file(plugin_id)
        if file is None:
            raise ApiError(404, "Toru runs without a log directory; there is nothing to follow")

        async def events() -> AsyncIterator[bytes]:
            with file.follow() as records:
                yield b": following " + plugin_id.encode() + b"\n\n"
                async for record in receive_or_idle(records):
                    if record is None:
                        yield KEEP_ALIVE_COMMENT
                    elif level_rank(record.get("level")) >= minimum:
                        yield sse("log", record)

        return event_stream(events())

    @bp.get("/<plugin_id>/bundle.js")
    @login_required
    async def bundle(plugin_id: str) -> ResponseReturnValue:
        """The plugin's front end: ``PLUGINS_DIR/ID/bundle.js``, else its own ``GET /bundle.js``."""
        # The id must be a valid, enabled plugin id before it names any file.
        if not ID_PATTERN.fullmatch(plugin_id) or not supervisor.is_enabled(plugin_id):
            raise ApiError(404, f"no enabled plugin with id {plugin_id!r}")
        path = supervisor.plugins_dir / plugin_id / "bundle.js"
        if await trio.Path(path).is_file():
            body = await trio.Path(path).read_bytes()
        else:
            body = await bundle_from_plugin(plugin_id)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]:
            return Response(b"", status=304, headers={"ETag": etag})
        response = Response(body, mimetype="application/javascript")
        response.headers["ETag"] = etag
        # Revalidate every time (cheap with the ETag): a plugin update shows at once.
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def bundle_from_plugin(plugin_id: str) -> bytes:
        try:
            reply = await supervisor.request(plugin_id, HttpRequest("GET", "/bundle.js"))
        except PluginUnavailable as error:
            if error.status in (404, 503):
                raise ApiError(
                    404, f"plugin {plugin_id!r} has no bundle.js (and is not running)"
                ) from None
            raise ApiError(
                502, f"plugin {plugin_id!r} failed to serve bundle.js: {error.detail}"
            ) from None
        if reply.status != 200:
            raise ApiError(404, f"plugin {plugin_id!r} has no bundle.js")
        return reply.body

    @bp.post("/<plugin_id>/kv")
    @login_required
    async def kv(plugin_id: str) -> Response:
        """The browser side of a plugin's storage: ``{action, key, value?}`` -> ``{value}``."""
        store = supervisor.kv_store
        if store is None or not supervisor.is_enabled(plugin_id):
            raise ApiError(404, f"no enabled plugin with id {plugin_id!r}")
        body = await json_body(KvAction)
        try:
            match body.action.lower():
                case "get":
                    return jsonify({"value": await store.get(plugin_id, body.key)})
                case "set":
                    if body.value is None:
                        raise ApiError(400, "set needs a value (a string; store JSON as text)")
                    await store.set(plugin_id, body.key, body.value)
                    return jsonify({"value": body.value})
                case "delete":
                    await store.delete(plugin_id, body.key)
                    return jsonify({"value": None})
                case other:
                    raise ApiError(400, f"unknown action {other!r}; use get, set or delete")
        except KvError as error:
            raise ApiError(400, str(error)) from None

    return bp
