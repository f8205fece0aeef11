"""Who is making a request: roles and the identity a session resolves to."""

from __future__ import annotations

import enum

import attrs


class Role(enum.StrEnum):
    CLIENT = "client"
    ADMIN = "admin"


@attrs.frozen
class Identity:
    """A logged-in principal. ``user_id`` is None for the environment administrator."""

    username: str
    role: Role
    user_id: int | None
    display_name: str = ""
    session_hash: str = attrs.field(default="", repr=False)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def is_environment_admin(self) -> bool:
        return self.user_id is None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.user_id,
            "username": self.username,
            "role": self.role.value,
            "display_name": self.display_name,
            "source": "environment" if self.is_environment_admin else "database",
        }
