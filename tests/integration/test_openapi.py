"""The OpenAPI document is honest: every ``/api`` route of the app is in it and nothing in it
is missing from the app; every documented operation, called anonymously, with an
expired session, as a client and as an admin, answers as its ``x-toru-access`` says; and the
plugin status schemas are exactly the attrs classes the API serialises."""

from __future__ import annotations

import re
import sqlite3
import time
import typing
from pathlib import Path
from types import NoneType, SimpleNamespace, UnionType
from typing import Any

import attrs
import httpx
import jsonschema_rs  # Schemathesis's validator (a test dependency through it)
import pytest

from tests.conftest import CLIENT_PASSWORD, RunningServer
from tests.support import ADMIN_PASSWORD, client, login, make_settings
from toru import __version__
from toru.app import create_app
from toru.openapi import attrs_schema, openapi_document
from toru.plugins.status import Health, Mode, PluginStatus, PublicPluginStatus, State, to_json

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


STATUS_SCHEMAS = [(PluginStatus, "PluginStatus"), (PublicPluginStatus, "PublicPlugin")]


@pytest.mark.parametrize(("cls", "name"), STATUS_SCHEMAS, ids=[name for _, name in STATUS_SCHEMAS])
def test_status_schemas_have_every_field_of_their_class(cls: type, name: str) -> None:
    """Each attrs field is a property, nullable exactly when its type admits None, required
    exactly when it has no default; and the schema has no property the class lacks."""
    schema = DOCUMENT["components"]["schemas"][name]
    hints = typing.get_type_hints(cls)
    fields = attrs.fields(cls)
    assert list(schema["properties"]) == [field.name for field in fields]
    for field in fields:
        admits_none = typing.get_origin(hints[field.name]) is UnionType and NoneType in (
            typing.get_args(hints[field.name])
        )
        nullable = {"type": "null"} in schema["properties"][field.name].get("anyOf", [])
        assert nullable == admits_none, field.name
        assert (field.name in schema["required"]) == (field.default is attrs.NOTHING), field.name


def test_started_at_is_documented_as_a_timestamp() -> None:
    """The refinement the Python type cannot express survives the derivation."""
    started_at = DOCUMENT["components"]["schemas"]["PluginStatus"]["properties"]["started_at"]
    assert started_at == {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}


def test_enums_list_every_value_of_their_python_enum() -> None:
    """``health``, ``state`` and ``mode`` allow exactly the values of their StrEnum."""
    properties = DOCUMENT["components"]["schemas"]["PluginStatus"]["properties"]
    for field, enum_cls in [("health", Health), ("state", State), ("mode", Mode)]:
        assert properties[field] == {"type": "string", "enum": [m.value for m in enum_cls]}


def test_a_field_of_an_unknown_type_is_refused() -> None:
    """A new status field of a type the mapping does not know is an error, not a wrong schema."""

    @attrs.frozen
    class Odd:
        when: list[int]

    with pytest.raises(TypeError, match="no JSON schema for the type"):
        attrs_schema(Odd)


def sample_status(**changes: Any) -> PluginStatus:
    running = PluginStatus(
        id="hello-plugin-python",
        name="Hello World (Python)",
        version="0.1.0",
        author="The Toru developers",
        icon="\N{SNAKE}",
        route="/hello-python",
        protocol=2,
        enabled=True,
        running=True,
        health=Health.HEALTHY,
        state=State.RUNNING,
        pid=30483,
        restart_count=0,
        failures_in_a_row=0,
        last_error=None,
        mode=Mode.MODERN,
        socket="/tmp/toru-vk4sst0l/hello-plugin-python.sock",
        started_at="2026-11-25T20:00:34.626Z",
        uptime_s=256.7,
        binary="/tmp/arch/plugins/hello-plugin-python.binary",
    )
    return attrs.evolve(running, **changes)


STOPPED_WITH_EXTRA = {
    "health": Health.DISABLED,
    "state": State.STOPPED,
    "running": False,
    "enabled": False,
    "pid": None,
    "socket": None,
    "started_at": None,
    "uptime_s": None,
    "author": None,
    "icon": None,
    "mode": Mode.LEGACY,
    "protocol": 1,
    "last_error": "exited 3 before it was ready",
    "extra": {"homepage": "https://example.org", "tags": ["a"]},
}


@pytest.mark.parametrize("changes", [{}, STOPPED_WITH_EXTRA], ids=["running", "stopped"])
def test_the_json_of_a_status_validates_against_its_schema(changes: dict[str, Any]) -> None:
    """``to_json`` of a status, and of its public view, are valid under the schemas the
    document gives them (formats included)."""
    status = sample_status(**changes)
    schemas = DOCUMENT["components"]["schemas"]
    for document, name in [
        (to_json(status), "PluginStatus"),
        (to_json(status.public()), "PublicPlugin"),
    ]:
        validator = jsonschema_rs.Draft202012Validator(schemas[name], validate_formats=True)
        assert [error.message for error in validator.iter_errors(document)] == [], name


def test_a_status_with_a_wrong_value_does_not_validate() -> None:
    """The schema is not vacuous: an unknown state and a missing field are refused."""
    document = to_json(sample_status())
    document["state"] = "sleeping"
    del document["binary"]
    validator = jsonschema_rs.Draft202012Validator(
        DOCUMENT["components"]["schemas"]["PluginStatus"]
    )
    assert len(list(validator.iter_errors(document))) == 2


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
