"""Administrators manage users; every change that should end sessions does."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import CLIENT_PASSWORD, RunningServer
from tests.support import client, login


async def carol_id(admin: httpx.AsyncClient) -> int:
    users = (await admin.get("/api/users")).json()["users"]
    return next(user["id"] for user in users if user["username"] == "carol")


async def test_create_list_update_delete(admin: httpx.AsyncClient) -> None:
    """The full life of a user through the API, with the fields the UI needs."""
    created = await admin.post(
        "/api/users",
        json={"username": "Dave", "password": "dave password", "display_name": " Dave D "},
    )
    assert created.status_code == 201
    dave = created.json()
    assert dave["username"] == "dave"
    assert dave["display_name"] == "Dave D"
    assert dave["role"] == "client"
    assert dave["is_active"] is True
    assert dave["created_at"].endswith("Z")
    assert "password" not in str(dave).replace("password_changed_at", "")

    listed = (await admin.get("/api/users")).json()["users"]
    assert [user["username"] for user in listed] == ["dave"]

    updated = await admin.put(f"/api/users/{dave['id']}", json={"role": "admin"})
    assert updated.status_code == 200
    assert updated.json()["role"] == "admin"

    deleted = await admin.delete(f"/api/users/{dave['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert "content-type" not in deleted.headers
    assert (await admin.get("/api/users")).json()["users"] == []
    missing = await admin.delete(f"/api/users/{dave['id']}")
    assert missing.status_code == 404
    assert f"no user with id {dave['id']}" == missing.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"username": "a b", "password": "long enough"}, 400, "username must be"),
        ({"username": "eve", "password": "short"}, 400, "at least 8"),
        ({"username": "evelyn12", "password": "EVELYN12"}, 400, "same as the username"),
        ({"username": "eve", "password": "long enough", "role": "root"}, 400, "role 'root'"),
        ({"username": "admin", "password": "long enough"}, 409, "environment administrator"),
        ({"username": "eve", "password": "long enough", "colour": "red"}, 400, "extra fields"),
        ({"username": 7, "password": "long enough"}, 400, "body.username"),
        ({"password": "long enough"}, 400, "required field missing"),
    ],
)
async def test_bad_user_requests_are_explained(
    admin: httpx.AsyncClient, body: dict[str, object], status: int, fragment: str
) -> None:
    """Every refused creation says what was wrong, and nothing is created."""
    response = await admin.post("/api/users", json=body)
    assert response.status_code == status
    assert fragment in response.json()["error"]
    assert (await admin.get("/api/users")).json()["users"] == []


async def test_duplicate_username_is_a_conflict(admin: httpx.AsyncClient) -> None:
    """Usernames are unique regardless of case."""
    assert (
        await admin.post("/api/users", json={"username": "eve", "password": "long enough"})
    ).status_code == 201
    again = await admin.post("/api/users", json={"username": "EVE", "password": "long enough"})
    assert again.status_code == 409
    assert "already exists" in again.json()["error"]


async def test_deactivation_ends_sessions_and_blocks_login(
    admin: httpx.AsyncClient, client_user: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    """A deactivated user is signed out at once and cannot log in until reactivated."""
    user_id = await carol_id(admin)
    response = await admin.put(f"/api/users/{user_id}", json={"is_active": False})
    assert response.json()["is_active"] is False
    assert (await client_user.get("/api/auth/me")).status_code == 401
    refused = await login(anon, "carol", CLIENT_PASSWORD)
    assert refused.status_code == 401
    assert "deactivated" in refused.json()["error"]
    await admin.put(f"/api/users/{user_id}", json={"is_active": True})
    assert (await login(anon, "carol", CLIENT_PASSWORD)).status_code == 200


async def test_deletion_ends_sessions(
    admin: httpx.AsyncClient, client_user: httpx.AsyncClient
) -> None:
    """Deleting a user invalidates their cookie immediately."""
    await admin.delete(f"/api/users/{await carol_id(admin)}")
    assert (await client_user.get("/api/auth/me")).status_code == 401


async def test_admin_password_reset_ends_sessions_and_clears_the_lock(
    admin: httpx.AsyncClient, client_user: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    """A reset signs the user out everywhere and lifts a login lock on their name."""
    for _ in range(3):
        await login(anon, "carol", "wrong guess")
    assert (await login(anon, "carol", CLIENT_PASSWORD)).status_code == 429
    reset = await admin.put(
        f"/api/users/{await carol_id(admin)}", json={"password": "reset by admin"}
    )
    assert reset.status_code == 200
    assert (await client_user.get("/api/auth/me")).status_code == 401
    assert (await login(anon, "carol", "reset by admin")).status_code == 200


async def test_role_change_applies_to_existing_sessions(
    admin: httpx.AsyncClient, client_user: httpx.AsyncClient
) -> None:
    """Promoting a client lets their current session use admin endpoints at once."""
    assert (await client_user.get("/api/users")).status_code == 403
    await admin.put(f"/api/users/{await carol_id(admin)}", json={"role": "admin"})
    assert (await client_user.get("/api/users")).status_code == 200


async def test_admins_cannot_lock_themselves_out(
    server: RunningServer, admin: httpx.AsyncClient
) -> None:
    """A database admin may not deactivate, demote or delete their own account."""
    await admin.post(
        "/api/users", json={"username": "root2", "password": "root2 password", "role": "admin"}
    )
    async with client(server.url) as root2:
        me = (await login(root2, "root2", "root2 password")).json()
        for body in ({"is_active": False}, {"role": "client"}):
            response = await root2.put(f"/api/users/{me['id']}", json=body)
            assert response.status_code == 409
            assert "your own account" in response.json()["error"]
        assert (await root2.delete(f"/api/users/{me['id']}")).status_code == 409
        own_reset = await root2.put(f"/api/users/{me['id']}", json={"password": "no check at all"})
        assert own_reset.status_code == 409
        assert "/api/auth/password" in own_reset.json()["error"]
        renamed = await root2.put(f"/api/users/{me['id']}", json={"display_name": "Root Two"})
        assert renamed.status_code == 200
        assert (await root2.get("/api/auth/me")).json()["display_name"] == "Root Two"


async def test_update_validates_before_writing(admin: httpx.AsyncClient) -> None:
    """A request with one bad field changes nothing, not even the good fields."""
    user_id = (
        await admin.post("/api/users", json={"username": "fay", "password": "fay password"})
    ).json()["id"]
    response = await admin.put(
        f"/api/users/{user_id}",
        json={"display_name": "Fay", "role": "wizard", "password": "new password 1"},
    )
    assert response.status_code == 400
    users = (await admin.get("/api/users")).json()["users"]
    assert users[0]["display_name"] == ""
    async with client(str(admin.base_url)) as http:
        assert (await login(http, "fay", "fay password")).status_code == 200
