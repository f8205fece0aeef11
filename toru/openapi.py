"""The OpenAPI 3.1 document of Toru's HTTP API, served at ``GET /api/openapi.json``.

Written by hand next to the prose reference (``docs/api.md``) and kept honest by
tests: every ``/api`` route of the app is documented and nothing documented is
missing (``tests/integration/test_openapi.py``), and Schemathesis checks a
running server's answers against it. Each operation says who may call it
(``x-toru-access``: ``anyone``, ``user`` or ``admin``), which the tests use too.

The plugin status schemas are not written by hand: :func:`attrs_schema` derives
them from the attrs classes of ``toru/plugins/status.py``, and the web UI's
TypeScript types are generated from this document (``make api-types``, which
runs ``python -m toru.openapi``). The status shape has that one source.
"""

from __future__ import annotations

import enum
import json
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any

import attrs

from toru.plugins.status import PluginStatus, PublicPluginStatus, ScanError

JSON = "application/json"
Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
    }


def strict(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    """A request body: Toru refuses unknown keys."""
    return {**obj(required, optional), "additionalProperties": False}


STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
BOOLEAN: Schema = {"type": "boolean"}
TIMESTAMP: Schema = {"type": "string", "format": "date-time"}
ROLE: Schema = {"type": "string", "enum": ["client", "admin"]}

_SCALARS: dict[object, Schema] = {
    str: STRING,
    int: INTEGER,
    float: {"type": "number"},
    bool: BOOLEAN,
}
#: What a field's Python type cannot say, by field name: the schema of its non-null value.
_FIELD_SCHEMAS: dict[str, Schema] = {"started_at": TIMESTAMP}


def type_schema(hint: object) -> Schema:
    """The JSON schema of a resolved type hint: ``str``, ``int``, ``float``, ``bool``, a
    ``StrEnum`` (its values, in declaration order), ``dict[str, ...]`` (an object) and
    ``X | None`` (nullable) of those. Anything else is a ``TypeError``, so a new field of a
    type this does not know fails the tests rather than producing a wrong schema."""
    if hint in _SCALARS:
        return _SCALARS[hint]
    if isinstance(hint, type) and issubclass(hint, enum.StrEnum):
        return {"type": "string", "enum": [member.value for member in hint]}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is dict and args[:1] == (str,):
        return {"type": "object"}
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) == 1:
            return nullable(type_schema(rest[0]))
    raise TypeError(f"no JSON schema for the type {hint!r}; teach toru.openapi.type_schema it")


def attrs_schema(cls: type, field_schemas: Mapping[str, Schema] = _FIELD_SCHEMAS) -> Schema:
    """The object schema of an attrs class, as cattrs unstructures it: one property per field
    (in field order), required unless the field has a default. *field_schemas* refines a
    field's schema by name (``started_at`` is a timestamp, not any string); the refinement must
    keep the JSON type the hint gives."""
    hints = typing.get_type_hints(cls)
    required: dict[str, Schema] = {}
    optional: dict[str, Schema] = {}
    for field in attrs.fields(cls):
        hint = hints[field.name]
        schema = type_schema(hint)
        if field.name in field_schemas:
            refined = field_schemas[field.name]
            nullable_hint = typing.get_origin(hint) in (types.UnionType, typing.Union)
            base = schema["anyOf"][0] if nullable_hint else schema
            if refined.get("type") != base.get("type"):
                raise TypeError(
                    f"{cls.__name__}.{field.name}: the schema {refined} does not fit the type "
                    f"{hint!r}"
                )
            schema = nullable(refined) if nullable_hint else refined
        (required if field.default is attrs.NOTHING else optional)[field.name] = schema
    return obj(required, optional)


SCHEMAS: dict[str, Schema] = {
    "Error": obj(
        {"error": STRING},
        {
            "field": STRING,
            "plugin": {"anyOf": [STRING, ref("PluginStatus")]},
            "locked_until": TIMESTAMP,
            "retry_after": INTEGER,
            "request_id": STRING,
        },
    ),
    "Ok": obj({"ok": BOOLEAN}, {"message": STRING}),
    "Identity": obj(
        {
            "id": nullable(INTEGER),
            "username": STRING,
            "role": ROLE,
            "display_name": STRING,
            "source": {"type": "string", "enum": ["database", "environment"]},
        }
    ),
    "User": obj(
        {
            "id": INTEGER,
            "username": STRING,
            "display_name": STRING,
            "role": ROLE,
            "is_active": BOOLEAN,
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "password_changed_at": TIMESTAMP,
        }
    ),
    "HistoryEntry": obj(
        {
            "id": INTEGER,
            "timestamp": TIMESTAMP,
            "username": STRING,
            "address": STRING,
            "user_agent": STRING,
            "outcome": {"type": "string", "enum": ["success", "failure", "locked", "reset"]},
            "reason": STRING,
        }
    ),
    # Derived from toru/plugins/status.py, the one source of the status shape.
    "PublicPlugin": attrs_schema(PublicPluginStatus),
    "PluginStatus": attrs_schema(PluginStatus),
    "Rejected": obj({"file": STRING, "reason": STRING}),
    "PluginList": obj(
        {
            "plugins": {
                "type": "array",
                "items": {"anyOf": [ref("PluginStatus"), ref("PublicPlugin")]},
            }
        },
        {
            "rejected": {"type": "array", "items": ref("Rejected")},
            "scan_error": nullable(ref("ScanError")),
        },
    ),
    "ScanError": {
        **attrs_schema(ScanError),
        "description": "The last failure to scan the plugins directory, until a scan works "
        "again (it is retried every 5 s).",
    },
    "PluginEvent": obj(
        {
            "id": INTEGER,
            "plugin_id": STRING,
            "event": STRING,
            "details": {"type": "object"},
            "timestamp": TIMESTAMP,
        }
    ),
    "LogRecord": {
        **obj({"timestamp": STRING, "level": STRING}),
        "description": "One line of the plugin's log file: the plugin's own fields plus "
        "Toru's (plugin_id, pid, generation, stream; source and event on Toru's records).",
    },
    "TaskNode": obj(
        {
            "name": STRING,
            "system": BOOLEAN,
            "children": {"type": "array", "items": ref("TaskNode")},
        }
    ),
}


def json_content(schema: Schema) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def answer(description: str, schema: Schema | None = None, **extra: Any) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, **extra}
    if schema is not None:
        response["content"] = json_content(schema)
    return response


def error(description: str) -> dict[str, Any]:
    return answer(description, ref("Error"))


def query(name: str, schema: Schema, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def path_param(name: str, schema: Schema) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


PLUGIN_ID = path_param("plugin_id", STRING)
USER_ID = path_param("user_id", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1})
#: Bodiless state-changing requests still send ``Content-Type: application/json`` (CSRF rule).
EMPTY_BODY: Schema = {"type": "object", "maxProperties": 0}
CHANGING = frozenset({"post", "put", "patch", "delete"})


def operation(
    method: str,
    summary: str,
    *,
    access: str,
    responses: dict[str, dict[str, Any]],
    body: Schema | None = None,
    body_required: bool = True,
    params: list[dict[str, Any]] | None = None,
    tag: str,
) -> dict[str, Any]:
    """One operation, with the error answers every operation of its kind can give."""
    all_responses = dict(responses)
    if access != "anyone":
        all_responses.setdefault("401", error("not logged in, or the session expired"))
    if access == "admin":
        all_responses.setdefault("403", error("not an administrator"))
    if method in CHANGING:
        all_responses.setdefault(
            "403", error("the CSRF rule: no JSON content type, or a foreign Origin")
        )
    if body is not None or params:
        all_responses.setdefault("400", error("a malformed body or query parameter"))
    if body is not None:
        all_responses.setdefault("413", error("the request body is too large"))
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "x-toru-access": access,
        "responses": all_responses,
    }
    if access != "anyone":
        op["security"] = [{"session": []}]
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": json_content(body)}
    return op


def paths() -> dict[str, dict[str, Any]]:
    no_plugin = error("no plugin with that id (or a rejected binary)")
    status = answer("the plugin's status", ref("PluginStatus"))
    page = query("page", {"type": "integer", "minimum": 0, "maximum": 1_000_000}, "from 0")
    level = query(
        "level",
        {"type": "string", "enum": ["debug", "info", "warn", "warning", "error"]},
        "minimum severity (any case)",
    )
    event_stream = {"description": "server-sent events", "content": {"text/event-stream": {}}}
    return {
        "/api/health": {
            "get": operation(
                "get",
                "Liveness",
                access="anyone",
                tag="system",
                responses={"200": answer("alive", obj({"status": STRING, "version": STRING}))},
            ),
        },
        "/api/openapi.json": {
            "get": operation(
                "get",
                "This document",
                access="anyone",
                tag="system",
                responses={"200": answer("the OpenAPI document", {"type": "object"})},
            ),
        },
        "/api/system/tasks": {
            "get": operation(
                "get",
                "The live Trio task tree",
                access="admin",
                tag="system",
                responses={
                    "200": answer("the tree", obj({"tree": ref("TaskNode"), "text": STRING}))
                },
            ),
        },
        "/api/auth/login": {
            "post": operation(
                "post",
                "Log in",
                access="anyone",
                tag="auth",
                body=strict({"username": STRING, "password": STRING}),
                responses={
                    "200": answer("logged in; sets the session_id cookie", ref("Identity")),
                    "401": error("wrong username or password, or a deactivated account"),
                    "429": error("too many failed logins; wait Retry-After seconds"),
                },
            ),
        },
        "/api/auth/logout": {
            "post": operation(
                "post",
                "Log out",
                access="user",
                tag="auth",
                body=EMPTY_BODY,
                body_required=False,
                responses={"200": answer("the session ended", ref("Ok"))},
            ),
        },
        "/api/auth/me": {
            "get": operation(
                "get",
                "Who is logged in",
                access="user",
                tag="auth",
                responses={"200": answer("the identity", ref("Identity"))},
            ),
        },
        "/api/auth/password": {
            "post": operation(
                "post",
                "Change one's own password",
                access="user",
                tag="auth",
                body=strict({"current_password": STRING, "new_password": STRING}),
                responses={
                    "200": answer("changed; a new session cookie", ref("Ok")),
                    "400": error("wrong current password, or the policy refuses the new one"),
                    "403": error("the environment administrator (or the CSRF rule)"),
                    "429": error("locked after failed attempts"),
                },
            ),
        },
        "/api/auth/history": {
            "get": operation(
                "get",
                "The login history, newest first",
                access="admin",
                tag="auth",
                params=[
                    query(
                        "page", {"type": "integer", "minimum": 1, "maximum": 1_000_000}, "from 1"
                    ),
                    query("page_size", {"type": "integer", "minimum": 1, "maximum": 500}, "1-500"),
                    query("username", STRING, "only this username"),
                ],
                responses={
                    "200": answer(
                        "one page",
                        obj(
                            {
                                "entries": {"type": "array", "items": ref("HistoryEntry")},
                                "page": INTEGER,
                                "page_size": INTEGER,
                                "total": INTEGER,
                            }
                        ),
                    ),
                },
            ),
        },
        "/api/users": {
            "get": operation(
                "get",
                "Every database user",
                access="admin",
                tag="users",
                responses={
                    "200": answer(
                        "the users", obj({"users": {"type": "array", "items": ref("User")}})
                    )
                },
            ),
            "post": operation(
                "post",
                "Create a user",
                access="admin",
                tag="users",
                body=strict(
                    {"username": STRING, "password": STRING},
                    {"role": ROLE, "display_name": STRING},
                ),
                responses={
                    "201": answer("created", ref("User")),
                    "409": error("the username is taken"),
                },
            ),
        },
        "/api/users/{user_id}": {
            "put": operation(
                "put",
                "Change a user",
                access="admin",
                tag="users",
                params=[USER_ID],
                body=strict(
                    {},
                    {
                        "display_name": nullable(STRING),
                        "role": nullable(ROLE),
                        "is_active": nullable(BOOLEAN),
                        "password": nullable(STRING),
                    },
                ),
                responses={
                    "200": answer("the updated user", ref("User")),
                    "404": error("no user with that id"),
                    "409": error("not allowed on one's own account"),
                },
            ),
            "delete": operation(
                "delete",
                "Delete a user",
                access="admin",
                tag="users",
                params=[USER_ID],
                body=EMPTY_BODY,
                body_required=False,
                responses={
                    "204": {"description": "deleted"},
                    "404": error("no user with that id"),
                    "409": error("not allowed on one's own account"),
                },
            ),
        },
        "/api/plugins": {
            "get": operation(
                "get",
                "The plugins this user may see",
                access="user",
                tag="plugins",
                responses={
                    "200": answer(
                        "full status for admins, the public view for others", ref("PluginList")
                    )
                },
            ),
        },
        "/api/plugins/rescan": {
            "post": operation(
                "post",
                "Scan the plugins directory now",
                access="admin",
                tag="plugins",
                body=EMPTY_BODY,
                body_required=False,
                responses={
                    "200": answer("what the scan found", ref("PluginList")),
                    "503": error("the plugins directory cannot be scanned now; the reason"),
                },
            ),
        },
        "/api/plugins/{plugin_id}": {
            "get": operation(
                "get",
                "One plugin",
                access="user",
                tag="plugins",
                params=[PLUGIN_ID],
                responses={
                    "200": answer(
                        "the status (admins) or public view",
                        {"anyOf": [ref("PluginStatus"), ref("PublicPlugin")]},
                    ),
                    "404": no_plugin,
                },
            ),
        },
        **{
            f"/api/plugins/{{plugin_id}}/{action}": {
                "post": operation(
                    "post",
                    summary,
                    access="admin",
                    tag="plugins",
                    params=[PLUGIN_ID],
                    body=EMPTY_BODY,
                    body_required=False,
                    responses={
                        "200": status,
                        "404": no_plugin,
                        "507": error(
                            "done, but config.json could not be saved (a full disk): the change "
                            "holds until Toru restarts; the body has the plugin's status"
                        ),
                        **extra,
                    },
                ),
            }
            for action, summary, extra in [
                (
                    "enable",
                    "Enable and start a plugin",
                    {
                        "409": error("enabled, but its first start failed"),
                        "503": error("Toru is stopping"),
                    },
                ),
                ("disable", "Disable and stop a plugin", {"503": error("Toru is stopping")}),
                (
                    "restart",
                    "Restart an enabled plugin",
                    {
                        "409": error("the plugin is disabled"),
                        "503": error("Toru is stopping"),
                    },
                ),
            ]
        },
        "/api/plugins/{plugin_id}/events": {
            "get": operation(
                "get",
                "A plugin's lifecycle events, newest first",
                access="admin",
                tag="plugins",
                params=[
                    PLUGIN_ID,
                    query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "1-1000"),
                    query(
                        "before",
                        {"type": "integer", "minimum": 1, "maximum": 2**62},
                        "only events with a lower id",
                    ),
                ],
                responses={
                    "200": answer(
                        "the events",
                        obj({"events": {"type": "array", "items": ref("PluginEvent")}}),
                    ),
                    "404": no_plugin,
                },
            ),
        },
        "/api/plugins/{plugin_id}/logs": {
            "get": operation(
                "get",
                "A plugin's log records, newest first",
                access="admin",
                tag="plugins",
                params=[
                    PLUGIN_ID,
                    page,
                    query(
                        "page_size", {"type": "integer", "minimum": 1, "maximum": 1000}, "1-1000"
                    ),
                    level,
                ],
                responses={
                    "200": answer(
                        "one page",
                        obj(
                            {
                                "logs": {"type": "array", "items": ref("LogRecord")},
                                "page": INTEGER,
                                "page_size": INTEGER,
                                "has_more": BOOLEAN,
                            }
                        ),
                    ),
                    "404": no_plugin,
                },
            ),
        },
        "/api/plugins/{plugin_id}/logs/stream": {
            "get": operation(
                "get",
                "Live follow of a plugin's log (server-sent events)",
                access="admin",
                tag="plugins",
                params=[PLUGIN_ID, level],
                responses={"200": event_stream, "404": no_plugin},
            ),
        },
        "/api/plugins/{plugin_id}/bundle.js": {
            "get": operation(
                "get",
                "A plugin's front end",
                access="user",
                tag="plugins",
                params=[PLUGIN_ID],
                responses={
                    "200": {
                        "description": "the script",
                        "content": {"application/javascript": {"schema": STRING}},
                    },
                    "304": {"description": "unchanged (If-None-Match)"},
                    "404": error("unknown or disabled plugin, or no bundle"),
                    "502": error("the plugin failed to serve its bundle"),
                },
            ),
        },
        "/api/plugins/{plugin_id}/kv": {
            "post": operation(
                "post",
                "A plugin's key-value store, from the browser",
                access="user",
                tag="plugins",
                params=[PLUGIN_ID],
                body=strict({"action": STRING, "key": STRING}, {"value": nullable(STRING)}),
                responses={
                    "200": answer("the value", obj({"value": nullable(STRING)})),
                    "404": error("unknown or disabled plugin"),
                },
            ),
        },
        "/api/plugins/route/{route}/{path}": {
            method: _forwarded(method)
            for method in ("get", "head", "post", "put", "patch", "delete", "options")
        },
        "/api/stream": {
            "get": operation(
                "get",
                "Plugin status changes (server-sent events)",
                access="user",
                tag="plugins",
                responses={"200": event_stream},
            ),
        },
    }


def _forwarded(method: str) -> dict[str, Any]:
    op = operation(
        method,
        "A request forwarded to the plugin serving /{route}",
        access="user",
        tag="plugin routes",
        params=[
            path_param("route", STRING),
            {**path_param("path", STRING), "description": "the rest of the path; may be empty"},
        ],
        responses={
            "default": {"description": "what the plugin answered", "content": {"*/*": {}}},
            "404": error("no enabled plugin serves this route"),
            "413": error("the body is over the plugin-route limit"),
            "502": error("the plugin failed to answer usably"),
            "503": error("the plugin is starting or restarting; see Retry-After"),
            "504": error("no answer within 30 s"),
        },
    )
    if method in CHANGING:
        op["requestBody"] = {"required": False, "content": {"*/*": {}}}
        op["description"] = (
            "Needs Content-Type: application/json or an X-Toru-Request header (CSRF rule)."
        )
    return op


def openapi_document(version: str) -> dict[str, Any]:
    """The whole document; it needs no app, no settings and no running server."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Toru",
            "version": version,
            "description": "The HTTP API of Toru, a self-hosted control panel whose plugins "
            "run as separate processes. Prose reference: docs/api.md.",
        },
        "servers": [{"url": "/"}],
        "paths": paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "session_id"},
            },
        },
    }


def main() -> None:
    """``python -m toru.openapi``: print the document as JSON (what ``make api-types`` feeds
    to openapi-typescript). Keys keep the order they are written in here, which is stable."""
    from toru import __version__

    json.dump(openapi_document(__version__), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
