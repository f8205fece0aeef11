"""``/api/auth``: log in and out, who am I, change my password, login history."""

from __future__ import annotations

import attrs
from quart import Blueprint, Response, jsonify, request

from toru.api.errors import ApiError, json_body
from toru.api.guards import (
    admin_required,
    client_address,
    current_identity,
    login_required,
    resolve_identity,
)
from toru.auth.history import history_page
from toru.auth.service import AuthService, LoginFailed, LoginLocked
from toru.auth.sessions import COOKIE_NAME, SESSION_LIFETIME
from toru.auth.users import UserError
from toru.config import normalize_username
from toru.timestamps import iso_utc

MAX_PAGE_SIZE = 500


@attrs.frozen
class LoginRequest:
    username: str
    password: str


@attrs.frozen
class PasswordChange:
    current_password: str
    new_password: str


def locked_error(error: LoginLocked) -> ApiError:
    return ApiError(
        429,
        f"too many failed logins; try again in {error.retry_after} seconds",
        headers={"Retry-After": str(error.retry_after)},
        locked_until=iso_utc(error.locked_until),
        retry_after=error.retry_after,
    )


def user_error(error: UserError) -> ApiError:
    if error.field:
        return ApiError(error.status, str(error), field=error.field)
    return ApiError(error.status, str(error))


def query_int(name: str, default: int, *, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(400, f"query parameter {name!r} must be an integer from {low} to {high}")
    return value


def auth_blueprint(auth: AuthService) -> Blueprint:
    bp = Blueprint("auth", __name__, url_prefix="/api/auth")
    secure = auth.settings.production

    def set_session_cookie(response: Response, token: str) -> None:
        response.set_cookie(
            COOKIE_NAME,
            token,
            max_age=SESSION_LIFETIME,
            path="/",
            secure=secure,
            httponly=True,
            samesite="Lax",
        )

    def caller() -> tuple[str, str]:
        return client_address(auth.settings.trust_proxy), request.headers.get("User-Agent", "")

    @bp.post("/login")
    async def login() -> Response:
        body = await json_body(LoginRequest)
        address, user_agent = caller()
        try:
            identity, token = await auth.login(
                body.username, body.password, address=address, user_agent=user_agent
            )
        except LoginLocked as error:
            raise locked_error(error) from None
        except LoginFailed as error:
            raise ApiError(401, str(error)) from None
        if (previous := await resolve_identity()) is not None:
            await auth.logout(previous)
        response = jsonify(identity.to_json())
        set_session_cookie(response, token)
        return response

    @bp.post("/logout")
    @login_required
    async def logout() -> Response:
        await auth.logout(current_identity())
        response = jsonify({"ok": True})
        response.delete_cookie(COOKIE_NAME, path="/", secure=secure, httponly=True, samesite="Lax")
        return response

    @bp.get("/me")
    @login_required
    async def me() -> Response:
        return jsonify(current_identity().to_json())

    @bp.post("/password")
    @login_required
    async def change_password() -> Response:
        body = await json_body(PasswordChange)
        address, user_agent = caller()
        try:
            token = await auth.change_own_password(
                current_identity(),
                body.current_password,
                body.new_password,
                address=address,
                user_agent=user_agent,
            )
        except LoginLocked as error:
            raise locked_error(error) from None
        except UserError as error:
            raise user_error(error) from None
        response = jsonify({"ok": True, "message": "password changed; other sessions ended"})
        set_session_cookie(response, token)
        return response

    @bp.get("/history")
    @admin_required
    async def history() -> Response:
        page = query_int("page", 1, low=1, high=1_000_000)
        page_size = query_int("page_size", 50, low=1, high=MAX_PAGE_SIZE)
        username = normalize_username(request.args.get("username", "")) or None
        entries, total = await history_page(
            auth.db, page=page, page_size=page_size, username=username
        )
        return jsonify({"entries": entries, "page": page, "page_size": page_size, "total": total})

    return bp
