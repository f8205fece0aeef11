"""The OpenAPI document is honest: every ``/api`` route of the app is in it and nothing in it
is missing from the app; and every documented operation, called anonymously, with an
expired session, as a client and as an admin, answers as its ``x-toru-access`` says."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.conftest import CLIENT_PASSWORD, RunningServer
from tests.support import ADMIN_PASSWORD, client, login, make_settings
from toru import __version__
from toru.app import create_app
from toru.openapi import openapi_document

DOCUMENT = openapi_document(__version__)
IGNORED_METHODS = {"HEAD", "OPTIONS"}  # answered by the framework for every route
CONVERTER = re.compile(r"<(?:[^:>]+:)?([a-z_]+)>")


def app_operations(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every /api route the app serves."""
    settings = make_settings(tmp_path)
    app = create_app(SimpleNamespace(settings=settings, sessions=None), SimpleNamespace())  # type: ignore[arg-type]
    found = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = CONVERTER.sub(r"{\1}", rule.rule).rstrip("/")
        if path == "/api/plugins/route/{route}":
            path += "/{path}"  # the same operation with an empty rest of the path
        for method in rule.methods or ():
            if method not in IGNORED_METHODS or path.startswith("/api/plugins/route/"):
                found.add((method, path))
    return found


def documented_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in DOCUMENT["paths"].items()
        for method in operations
    }


def test_every_route_is_documented_and_nothing_else(tmp_path: Path) -> None:
    served, documented = app_operations(tmp_path), documented_operations()
    assert served - documented == set(), "routes the document is missing"
    assert documented - served == set(), "documented operations the app does not serve"


def test_every_operation_says_who_may_call_it() -> None:
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            assert operation["x-toru-access"] in {"anyone", "user", "admin"}, (method, path)
            if operation["x-toru-access"] != "anyone":
                assert "401" in operation["responses"], (method, path)


async def test_the_document_is_served(server: RunningServer) -> None:
    async with client(server.url) as anonymous:
        answer = await anonymous.get("/api/openapi.json")
    assert answer.status_code == 200
    assert answer.json()["openapi"] == "3.1.0"
    assert answer.json()["paths"].keys() == DOCUMENT["paths"].keys()


def sample_url(path: str, user_id: int) -> str:
    return (
        path.replace("{plugin_id}", "nope")
        .replace("{user_id}", str(user_id))
        .replace("{route}", "nope")
        .replace("{path}", "x")
    )


async def call(http: httpx.AsyncClient, method: str, url: str) -> int:
    """The status only; streams are closed as soon as their headers arrive."""
    headers = {"Content-Type": "application/json"}
    body: Any = b"{}" if method in {"POST", "PUT", "PATCH", "DELETE"} else None
    async with http.stream(method, url, headers=headers, content=body) as response:
        return response.status_code


OPERATIONS = sorted(documented_operations())


async def expire(server: RunningServer, http: httpx.AsyncClient) -> None:
    """Make *http*'s session one that has run out (the row stays, past its expiry)."""
    with sqlite3.connect(server.settings.database_path) as db:
        db.execute("UPDATE sessions SET expires_at = ?", (time.time() - 1,))


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
async def test_access_matrix(
    server: RunningServer, admin: httpx.AsyncClient, method: str, path: str
) -> None:
    """anonymous and expired: 401 unless anyone may call it; client: 403 on admin operations,
    never 401; admin: never 401 or 403."""
    access = DOCUMENT["paths"][path][method.lower()]["x-toru-access"]
    made = await admin.post("/api/users", json={"username": "carol", "password": CLIENT_PASSWORD})
    url = sample_url(path, made.json()["id"])
    async with client(server.url) as anonymous, client(server.url) as carol:
        await login(carol, "carol", CLIENT_PASSWORD)
        anonymous_status = await call(anonymous, method, url)
        client_status = await call(carol, method, url)
        admin_status = await call(admin, method, url)
        async with client(server.url) as stale:
            await login(stale, "admin", ADMIN_PASSWORD)
            await expire(server, stale)
            expired_status = await call(stale, method, url)

    if access == "anyone":
        assert anonymous_status not in {401, 403}
        assert expired_status not in {401, 403}
    else:
        assert anonymous_status == 401
        assert expired_status == 401
        assert client_status not in {401}
    if access == "admin":
        assert client_status == 403
    assert admin_status not in {401, 403}, admin_status
