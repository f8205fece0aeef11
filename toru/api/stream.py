"""``GET /api/stream``: server-sent events of plugin status changes.

Each logged-in browser gets a ``snapshot`` event with every plugin it may see,
then a ``plugin`` event whenever one changes (enable, disable, crash, recovery,
reload). Administrators see the full status; everyone else the public fields
(including ``enabled``, so a sidebar can drop a plugin that was disabled). A
comment line every 15 s keeps proxies from closing an idle stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from quart import Blueprint
from quart.typing import ResponseReturnValue

from toru.api.guards import current_identity, login_required
from toru.api.plugins import view
from toru.api.sse import KEEP_ALIVE_COMMENT, event_stream, receive_or_idle, sse
from toru.plugins.supervisor import Supervisor


def stream_blueprint(supervisor: Supervisor) -> Blueprint:
    bp = Blueprint("stream", __name__, url_prefix="/api")

    @bp.get("/stream")
    @login_required
    async def stream() -> ResponseReturnValue:
        admin = current_identity().is_admin

        async def events() -> AsyncIterator[bytes]:
            with supervisor.subscribe() as changes:
                snapshot = [view(s, admin) for s in supervisor.statuses() if admin or s.enabled]
                yield sse("snapshot", {"plugins": snapshot})
                async for message in receive_or_idle(changes):
                    if message is None:
                        yield KEEP_ALIVE_COMMENT
                    elif message.status is not None:
                        yield sse("plugin", view(message.status, admin))
                    else:
                        yield sse("removed", {"id": message.plugin_id})

        return event_stream(events())

    return bp
