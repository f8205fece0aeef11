"""Every endpoint of the API so far, called anonymously, as a client and as an admin."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import RunningServer
from tests.support import client

# (method, path, body, anonymous, client, admin) expected statuses.
MATRIX = [
    ("GET", "/api/health", None, 200, 200, 200),
    ("GET", "/api/auth/me", None, 401, 200, 200),
    ("POST", "/api/auth/logout", {}, 401, 200, 200),
    ("POST", "/api/auth/password", {"current_password": "x", "new_password": "y"}, 401, 400, 403),
    ("GET", "/api/auth/history", None, 401, 403, 200),
    ("GET", "/api/users", None, 401, 403, 200),
    ("POST", "/api/users", {"username": "dave", "password": "dave password"}, 401, 403, 201),
    ("PUT", "/api/users/{other}", {"display_name": "Olga"}, 401, 403, 200),
    ("DELETE", "/api/users/{other}", None, 401, 403, 204),
    ("GET", "/api/system/tasks", None, 401, 403, 200),
    ("GET", "/api/plugins", None, 401, 200, 200),
    ("POST", "/api/plugins/rescan", {}, 401, 403, 200),
    ("GET", "/api/plugins/nope", None, 401, 404, 404),
    ("POST", "/api/plugins/nope/enable", {}, 401, 403, 404),
    ("POST", "/api/plugins/nope/disable", {}, 401, 403, 404),
    ("POST", "/api/plugins/nope/restart", {}, 401, 403, 404),
    ("GET", "/api/plugins/nope/events", None, 401, 403, 404),
    ("GET", "/api/plugins/nope/logs", None, 401, 403, 404),
    ("GET", "/api/plugins/nope/bundle.js", None, 401, 404, 404),
    ("POST", "/api/plugins/nope/kv", {"action": "get", "key": "k"}, 401, 404, 404),
    ("GET", "/api/plugins/route/nope/", None, 401, 404, 404),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "anonymous", "as_client", "as_admin"),
    MATRIX,
    ids=[f"{m} {p}" for m, p, *_ in MATRIX],
)
@pytest.mark.parametrize("who", ["anonymous", "client", "admin"])
async def test_endpoint_answers_by_role(
    server: RunningServer,
    admin: httpx.AsyncClient,
    client_user: httpx.AsyncClient,
    who: str,
    method: str,
    path: str,
    body: object,
    anonymous: int,
    as_client: int,
    as_admin: int,
) -> None:
    """Anonymous callers get 401, non-admins 403 on admin endpoints, admins succeed."""
    other = await admin.post("/api/users", json={"username": "olga", "password": "olga password"})
    url = path.format(other=other.json()["id"])
    expected = {"anonymous": anonymous, "client": as_client, "admin": as_admin}[who]
    async with client(server.url) as anon:
        http = {"anonymous": anon, "client": client_user, "admin": admin}[who]
        response = await http.request(method, url, json=body)
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert isinstance(response.json()["error"], str)
        assert response.headers["content-type"] == "application/json"
