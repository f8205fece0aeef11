"""``/api/users``: administrators manage database users."""

from __future__ import annotations

from typing import Any

import attrs
from quart import Blueprint, Response, jsonify, make_response
from quart.typing import ResponseReturnValue

from toru.api.auth import user_error
from toru.api.errors import ApiError, json_body
from toru.api.guards import admin_required, current_identity
from toru.auth.identity import Role
from toru.auth.service import AuthService
from toru.auth.users import User, UserError
from toru.timestamps import iso_utc


@attrs.frozen
class CreateUser:
    username: str
    password: str
    role: str = Role.CLIENT.value
    display_name: str = ""


@attrs.frozen
class UpdateUser:
    display_name: str | None = None
    role: str | None = None
    is_active: bool | None = None
    password: str | None = None


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role.value,
        "is_active": user.is_active,
        "created_at": iso_utc(user.created_at),
        "updated_at": iso_utc(user.updated_at),
        "password_changed_at": iso_utc(user.password_changed_at),
    }


#: SQLite's largest integer: no user has a larger id (and SQLite cannot be asked about one).
MAX_ID = 2**63 - 1


def known_id(user_id: int) -> int:
    if user_id > MAX_ID:
        raise ApiError(404, f"no user with id {user_id}")
    return user_id


def users_blueprint(auth: AuthService) -> Blueprint:
    bp = Blueprint("users", __name__, url_prefix="/api/users")

    @bp.get("")
    @admin_required
    async def list_users() -> Response:
        return jsonify({"users": [user_json(user) for user in await auth.users.list()]})

    @bp.post("")
    @admin_required
    async def create_user() -> tuple[Response, int]:
        body = await json_body(CreateUser)
        try:
            user = await auth.users.create(
                body.username, body.password, role=body.role, display_name=body.display_name
            )
        except UserError as error:
            raise user_error(error) from None
        return jsonify(user_json(user)), 201

    @bp.put("/<int:user_id>")
    @admin_required
    async def update_user(user_id: int) -> Response:
        user_id = known_id(user_id)
        body = await json_body(UpdateUser)
        me = current_identity()
        if me.user_id == user_id:
            if body.is_active is False or body.role == Role.CLIENT.value:
                raise ApiError(
                    409,
                    "you cannot deactivate or demote your own account; ask another administrator",
                )
            if body.password is not None:
                raise ApiError(
                    409,
                    "change your own password with POST /api/auth/password, which asks for "
                    "the current one",
                )
        try:
            user = await auth.update_user(
                user_id,
                by=me.username,
                display_name=body.display_name,
                role=body.role,
                is_active=body.is_active,
                password=body.password,
            )
        except UserError as error:
            raise user_error(error) from None
        return jsonify(user_json(user))

    @bp.delete("/<int:user_id>")
    @admin_required
    async def delete_user(user_id: int) -> ResponseReturnValue:
        user_id = known_id(user_id)
        if current_identity().user_id == user_id:
            raise ApiError(409, "you cannot delete your own account; ask another administrator")
        try:
            await auth.users.delete(user_id)
        except UserError as error:
            raise user_error(error) from None
        response = await make_response("", 204)
        del response.headers["Content-Type"]
        return response

    return bp
