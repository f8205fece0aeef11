"""What the supervisor tells the rest of Toru about a plugin: one frozen value each.

:class:`PluginStatus` is the full (administrator's) view and
:class:`PublicPluginStatus` what every logged-in user may see. They are the one
source of the plugin status shape: the API's JSON (:func:`to_json`), the OpenAPI
schema (``toru/openapi.py`` derives it from these classes) and, through the
OpenAPI document, the web UI's TypeScript types. The two classes are kept
apart on purpose (no inheritance): a full status is never a public one, so a
view that forgets :meth:`PluginStatus.public` is a type error, not a leak.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
import cattrs


class State(enum.StrEnum):
    """The runner's own state (finer than ``health``)."""

    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class Health(enum.StrEnum):
    """The old host's three-valued health, kept for its clients."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    DISABLED = "disabled"


class Mode(enum.StrEnum):
    """How Toru talks to the plugin (``"protocol": 2`` in its metadata selects modern)."""

    MODERN = "modern"
    LEGACY = "legacy"


@attrs.frozen
class PublicPluginStatus:
    """What every logged-in user may see of an enabled plugin: enough for the sidebar."""

    id: str
    name: str
    version: str
    author: str | None
    icon: str | None
    route: str
    enabled: bool
    running: bool
    health: Health
    state: State


@attrs.frozen
class PluginStatus:
    """The full status of one plugin, as administrators see it."""

    id: str
    name: str
    version: str
    author: str | None
    icon: str | None
    route: str
    protocol: int
    enabled: bool
    running: bool
    health: Health
    state: State
    pid: int | None
    #: Starts since the plugin was enabled, the first one excluded.
    restart_count: int
    failures_in_a_row: int
    last_error: str | None
    mode: Mode
    #: The socket path while a runner exists; ``None`` otherwise.
    socket: str | None
    #: ISO 8601 UTC, while running.
    started_at: str | None
    uptime_s: float | None
    binary: str
    #: Metadata fields Toru does not know, as the plugin sent them (absent when none).
    extra: dict[str, Any] = attrs.field(factory=dict)

    def public(self) -> PublicPluginStatus:
        """The public view of this status."""
        return PublicPluginStatus(
            **{field.name: getattr(self, field.name) for field in attrs.fields(PublicPluginStatus)}
        )


@attrs.frozen
class ScanError:
    """The last failure to scan the plugins directory, shown until a scan succeeds again."""

    message: str
    #: ISO 8601 UTC of the first failure in the current streak ...
    since: str
    #: ... and how many scans have failed since.
    attempts: int


_json = cattrs.Converter()


def to_json(status: PluginStatus | PublicPluginStatus | ScanError) -> dict[str, Any]:
    """The status as the API sends it (``extra`` left out when empty)."""
    document: dict[str, Any] = _json.unstructure(status)
    if isinstance(status, PluginStatus) and not status.extra:
        del document["extra"]
    return document
