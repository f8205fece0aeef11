"""``GET /api/stream``: server-sent events of plugin status changes.

Each logged-in browser gets a ``snapshot`` event with every plugin it may see,
then a ``plugin`` event whenever one changes (enable, disable, crash, recovery,
reload), and ``removed`` (``{"id": ...}``) when one it was shown is gone.
Administrators see every plugin, with the full status. Everyone else sees what
the API shows them: enabled plugins only, public fields only. When a plugin they
were shown stops being enabled (disabled, given up, binary removed) they get
``removed`` instead of its status, and a plugin they were never shown sends them
nothing. A comment line every 15 s keeps proxies from closing an idle stream.
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
                visible = [s for s in supervisor.statuses() if admin or s.enabled]
                # The ids this browser was shown and not told since that they are gone.
                # Only those get `removed`: a client never hears of a plugin the API hides.
                shown = {s.id for s in visible}
                yield sse("snapshot", {"plugins": [view(s, admin) for s in visible]})
                async for message in receive_or_idle(changes):
                    if message is None:
                        yield KEEP_ALIVE_COMMENT
                        continue
                    plugin_id, status = message.plugin_id, message.status
                    if status is not None and (admin or status.enabled):
                        shown.add(plugin_id)
                        yield sse("plugin", view(status, admin))
                    elif admin or plugin_id in shown:
                        shown.discard(plugin_id)
                        yield sse("removed", {"id": plugin_id})

        return event_stream(events())

    return bp
