"""What a plugin says about itself: the ``--metadata`` object, validated at construction.

The rules mirror Toru's discovery (DESIGN.md, "metadata"), so a plugin that
constructs fine here is never rejected by Toru for its id or route.
"""

from __future__ import annotations

from typing import Any

import attrs

from toru.plugins.naming import ID_PATTERN, ID_RULE, RESERVED_ROUTES

PROTOCOL_VERSION = 2
"""The protocol the SDK speaks: one long-lived, multiplexed connection (PROTOCOL-FACTS)."""


def _check_id(_: object, __: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise ValueError(
            f"plugin id {value!r} is invalid: use {ID_RULE} (no spaces, dots or slashes)"
        )


def _check_route(_: object, __: attrs.Attribute[str], value: object) -> None:
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or not ID_PATTERN.fullmatch(value[1:])
    ):
        raise ValueError(
            f"plugin route {value!r} is invalid: it must be '/' followed by {ID_RULE}, "
            "like '/hello'"
        )
    if value[1:].lower() in RESERVED_ROUTES:
        raise ValueError(f"plugin route {value!r} is reserved for Toru's own pages")


def _check_text(_: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"plugin {attribute.name} {value!r} is invalid: it must be non-empty text")


def _check_optional_text(_: object, attribute: attrs.Attribute[str | None], value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"plugin {attribute.name} {value!r} is invalid: it must be text or None")


@attrs.frozen
class PluginInfo:
    """Identity of a plugin; every field is checked when the object is built (``ValueError``)."""

    id: str = attrs.field(validator=_check_id)
    name: str = attrs.field(validator=_check_text)
    version: str = attrs.field(validator=_check_text)
    route: str = attrs.field(validator=_check_route)
    icon: str | None = attrs.field(default=None, validator=_check_optional_text)
    author: str | None = attrs.field(default=None, validator=_check_optional_text)

    def to_json(self) -> dict[str, Any]:
        """The object ``--metadata`` prints: optional fields left out when None."""
        document: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "route": self.route,
        }
        if self.icon is not None:
            document["icon"] = self.icon
        if self.author is not None:
            document["author"] = self.author
        document["protocol"] = PROTOCOL_VERSION
        return document
