"""The errors the supervisor's interface raises to the HTTP layer (and anyone else)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from toru.plugins.status import PluginStatus


class PluginError(Exception):
    """A request about a plugin cannot be done; ``status`` is the HTTP status that fits.

    ``plugin`` is the plugin's status after the attempt, when there is one worth
    showing (a transition that happened but could not be saved, for example).
    """

    def __init__(
        self, message: str, *, status: int = 409, plugin: PluginStatus | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.plugin = plugin


class PluginUnavailable(Exception):
    """A request for a plugin cannot be served: the one error of :meth:`Supervisor.request`.

    ``status`` is the HTTP status (404 no enabled plugin serves it, 503 starting or
    restarting or queue full, 504 no reply in time, 502 the plugin failed or replied
    garbage); ``retry_after`` is seconds for a ``Retry-After`` header, when one fits;
    ``plugin_id`` names the plugin when there is one; ``summary`` is the few words a
    log line says it with and ``detail`` the precise cause (the message is what the
    client is told).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        plugin_id: str | None = None,
        retry_after: int | None = None,
        summary: str = "plugin request failed",
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.plugin_id = plugin_id
        self.retry_after = retry_after
        self.summary = summary
        self.detail = detail or message

    @classmethod
    def not_running(cls, plugin_id: str, state: str) -> PluginUnavailable:
        """503 with ``Retry-After: 2``: enabled, but not running at the moment (starting,
        restarting, in backoff, stopping)."""
        return cls(
            503,
            f"plugin {plugin_id!r} is {state}; try again shortly",
            plugin_id=plugin_id,
            retry_after=2,
            summary="request refused: plugin not running",
            detail=f"state {state}",
        )
