"""Logging in and out over real HTTP: cookies, errors, throttling, password changes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx

from tests.conftest import CLIENT_PASSWORD, RunningServer, StartServer
from tests.support import ADMIN_PASSWORD, client, login, make_settings


async def test_admin_login_sets_a_hardened_session_cookie(anon: httpx.AsyncClient) -> None:
    """The session cookie is HttpOnly, SameSite=Lax, Path=/, 7 days, and not Secure in dev."""
    response = await login(anon, "admin", ADMIN_PASSWORD)
    assert response.status_code == 200
    assert response.json() == {
        "id": None,
        "username": "admin",
        "role": "admin",
        "display_name": "Administrator",
        "source": "environment",
    }
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("session_id=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "max-age"} <= attributes
    assert "samesite=lax" in cookie.lower()
    assert "max-age=604800" in cookie.lower()
    assert "secure" not in attributes


async def test_production_cookie_is_secure(start_server: StartServer, tmp_path: Path) -> None:
    """With PRODUCTION on, the session cookie carries Secure."""
    running = await start_server(make_settings(tmp_path, production=True))
    async with client(running.url) as http:
        response = await login(http, "admin", ADMIN_PASSWORD)
    assert "; secure" in response.headers["set-cookie"].lower()


async def test_username_is_case_insensitive(anon: httpx.AsyncClient) -> None:
    """'ADMIN' logs in as 'admin'."""
    response = await login(anon, "  ADMIN ", ADMIN_PASSWORD)
    assert response.status_code == 200
    assert response.json()["username"] == "admin"


async def test_wrong_password_and_unknown_user_get_the_same_answer(
    anon: httpx.AsyncClient,
) -> None:
    """A bad login answers 401 without saying whether the user exists."""
    wrong = await login(anon, "admin", "not the password")
    unknown = await login(anon, "nobody", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"error": "wrong username or password"}
    assert "set-cookie" not in wrong.headers


async def test_client_reads_me_and_is_refused_admin_endpoints(
    client_user: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    """The 'done when' path: a client reads /me, gets 403 on /api/users; anonymous gets 401."""
    me = await client_user.get("/api/auth/me")
    assert me.status_code == 200
    assert me.json()["username"] == "carol"
    assert me.json()["role"] == "client"
    assert (await client_user.get("/api/users")).status_code == 403
    assert (await anon.get("/api/users")).status_code == 401


async def test_fourth_wrong_password_is_locked_with_retry_after(
    anon: httpx.AsyncClient, client_user: httpx.AsyncClient
) -> None:
    """Three failures lock the username for a minute: the fourth try answers 429."""
    for _ in range(3):
        assert (await login(anon, "carol", "wrong password")).status_code == 401
    locked = await login(anon, "carol", CLIENT_PASSWORD)
    assert locked.status_code == 429
    retry_after = int(locked.headers["retry-after"])
    assert 55 <= retry_after <= 60
    body = locked.json()
    assert body["retry_after"] == retry_after
    until = dt.datetime.fromisoformat(body["locked_until"])
    remaining = (until - dt.datetime.now(dt.UTC)).total_seconds()
    assert 50 < remaining <= 60
    assert "try again in" in body["error"]


async def test_logout_ends_the_session(admin: httpx.AsyncClient) -> None:
    """After logout the old cookie no longer works, even if a client replays it."""
    cookie = admin.cookies["session_id"]
    response = await admin.post("/api/auth/logout")
    assert response.status_code == 200
    assert 'session_id=""' in response.headers["set-cookie"] or "max-age=0" in (
        response.headers["set-cookie"].lower()
    )
    admin.cookies.set("session_id", cookie)
    assert (await admin.get("/api/auth/me")).status_code == 401


async def test_garbage_cookie_is_anonymous(anon: httpx.AsyncClient) -> None:
    """A cookie that is not one of ours is treated as no session at all."""
    for value in ["x", "A" * 43, "%%%", "A" * 5000]:
        anon.cookies.set("session_id", value)
        assert (await anon.get("/api/auth/me")).status_code == 401


async def test_login_again_replaces_the_previous_session(
    server: RunningServer, admin: httpx.AsyncClient
) -> None:
    """Logging in while logged in ends the old session and issues a new one."""
    old = admin.cookies["session_id"]
    assert (await login(admin, "admin", ADMIN_PASSWORD)).status_code == 200
    assert admin.cookies["session_id"] != old
    async with client(server.url) as replay:
        replay.cookies.set("session_id", old)
        assert (await replay.get("/api/auth/me")).status_code == 401


async def test_password_change_ends_other_sessions_and_keeps_this_one(
    server: RunningServer, client_user: httpx.AsyncClient
) -> None:
    """Changing your password signs out every other session; the caller gets a fresh cookie."""
    async with client(server.url) as other:
        assert (await login(other, "carol", CLIENT_PASSWORD)).status_code == 200
        response = await client_user.post(
            "/api/auth/password",
            json={"current_password": CLIENT_PASSWORD, "new_password": "a brand new secret"},
        )
        assert response.status_code == 200, response.text
        assert (await client_user.get("/api/auth/me")).status_code == 200
        assert (await other.get("/api/auth/me")).status_code == 401
        assert (await login(other, "carol", CLIENT_PASSWORD)).status_code == 401
        assert (await login(other, "carol", "a brand new secret")).status_code == 200


async def test_password_change_checks_current_password_and_policy(
    client_user: httpx.AsyncClient,
) -> None:
    """A wrong current password or a weak new one is a 400 that names the field."""
    wrong = await client_user.post(
        "/api/auth/password",
        json={"current_password": "nope nope", "new_password": "a brand new secret"},
    )
    assert wrong.status_code == 400
    assert wrong.json()["field"] == "current_password"
    weak = await client_user.post(
        "/api/auth/password", json={"current_password": CLIENT_PASSWORD, "new_password": "short"}
    )
    assert weak.status_code == 400
    assert weak.json()["field"] == "new_password"
    assert "at least 8" in weak.json()["error"]


async def test_environment_admin_is_told_why_it_cannot_change_its_password(
    admin: httpx.AsyncClient,
) -> None:
    """The environment admin's password lives in ADMIN_PASSWORD; the API says so."""
    response = await admin.post(
        "/api/auth/password",
        json={"current_password": ADMIN_PASSWORD, "new_password": "another password"},
    )
    assert response.status_code == 403
    assert "ADMIN_PASSWORD" in response.json()["error"]


async def test_login_history_records_every_attempt(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    """Successes, failures and locked attempts all appear in the history, newest first."""
    for _ in range(4):
        await login(anon, "mallory", "guess guess")
    history = await admin.get("/api/auth/history", params={"username": "Mallory"})
    assert history.status_code == 200
    body = history.json()
    assert body["total"] == 4
    assert [entry["outcome"] for entry in body["entries"]] == [
        "locked",
        "failure",
        "failure",
        "failure",
    ]
    assert body["entries"][1]["reason"] == "unknown username"
    everything = (await admin.get("/api/auth/history", params={"page_size": 2})).json()
    assert len(everything["entries"]) == 2
    assert everything["total"] >= 5  # mallory's four and the admin's own login
    bad = await admin.get("/api/auth/history", params={"page": "0"})
    assert bad.status_code == 400
    assert "page" in bad.json()["error"]
