"""What Toru writes to plugins, and the reply shapes it accepts from both old dialects."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from toru.plugins.envelope import envelope, utc_timestamp
from toru.plugins.framing import ProtocolError
from toru.plugins.messages import (
    HttpRequest,
    HttpResponse,
    Init,
    KvReply,
    KvRequest,
    Ping,
    Shutdown,
    decode_http_reply,
    decode_kv_request,
    encode,
    is_pong,
    kind_of,
)
from toru.plugins.metadata import MetadataError, parse_metadata
from toru.sdk.http import HTTPError, Request
from toru.timestamps import iso_utc

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_init_and_shutdown_always_carry_payload_type_and_request_id() -> None:
    """Lifecycle messages have payload.type (the old Rust SDK needs it) and a null request_id."""
    init = encode(Init("inst-1", "/run/p.sock", "/var/log/toru/plugins/p.log"))
    assert init["type"] == "lifecycle"
    assert init["request_id"] is None
    assert RFC3339.match(init["timestamp"])
    fields = {
        "instance_id": "inst-1",
        "plugin_socket": "/run/p.sock",
        "log_path": "/var/log/toru/plugins/p.log",
    }
    assert init["payload"] == {"type": "lifecycle", "action": "init", **fields, "payload": fields}
    shutdown = encode(Shutdown())
    assert shutdown["payload"] == {"type": "lifecycle", "action": "shutdown"}
    assert "request_id" in shutdown


def test_ping_carries_its_request_id() -> None:
    """A ping names the request id its pong must echo."""
    ping = encode(Ping(), "r1")
    assert ping["request_id"] == "r1"
    assert ping["payload"] == {"type": "lifecycle", "action": "ping"}


def test_http_request_is_nested_as_both_old_dialects_read_it() -> None:
    """The request sits in payload.payload, with request_id repeated in payload."""
    frame = encode(HttpRequest("POST", "/a?b=1", {"x-toru-user": "ann"}, b'{"k":1}'), "r2")
    assert frame["type"] == "http"
    assert frame["request_id"] == "r2"
    assert frame["payload"]["type"] == "http"
    assert frame["payload"]["request_id"] == "r2"
    assert frame["payload"]["payload"] == {
        "method": "POST",
        "path": "/a?b=1",
        "headers": {"x-toru-user": "ann"},
        "body": '{"k":1}',
    }


def test_http_request_body_none_when_empty_and_base64_when_binary() -> None:
    """An empty body is null; a non-UTF-8 body goes as body_base64."""
    empty = encode(HttpRequest("GET", "/"), "r")["payload"]["payload"]
    assert empty["body"] is None
    binary = encode(HttpRequest("PUT", "/f", {}, b"\xff\x00\x01"), "r")["payload"]["payload"]
    assert binary["body"] is None
    assert base64.b64decode(binary["body_base64"]) == b"\xff\x00\x01"


def test_kv_replies() -> None:
    """KV replies carry the value, the key list for 'list', or an error."""
    assert encode(KvReply(value="3"), "k")["payload"] == {"type": "kv", "value": "3"}
    assert encode(KvReply(value=None, keys=["a"]), "k")["payload"] == {
        "type": "kv",
        "value": None,
        "keys": ["a"],
    }
    assert encode(KvReply(error="too big"), "k")["payload"] == {"type": "kv", "error": "too big"}


def reply(payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": "http", "request_id": "r", "payload": payload}


def test_clean_reply_with_or_without_payload_type() -> None:
    """The documented reply shape decodes, payload.type optional, headers lower-cased."""
    expected = HttpResponse(201, {"content-type": "text/plain"}, b"made")
    shape = {"status": 201, "headers": {"Content-Type": "text/plain"}, "body": "made"}
    assert decode_http_reply(reply(shape)) == expected
    assert decode_http_reply(reply({"type": "http", **shape})) == expected


def test_old_python_flat_reply_with_extra_fields() -> None:
    """The older Python dialect's flat reply, with fields Toru does not know, is accepted."""
    frame = {
        "type": "http",
        "timestamp": "2026-01-01T00:00:00+00:00",
        "request_id": "r",
        "payload": {"status": 200, "headers": {}, "body": None, "extra": 1},
        "unknown": True,
    }
    assert decode_http_reply(frame) == HttpResponse(200, {}, b"")


def test_old_rust_sdk_reply_with_json_string_body() -> None:
    """The old Rust SDK's reply: the real reply is JSON text in payload.payload.body."""
    inner = {"status": 404, "headers": {"content-type": "application/json"}, "body": '{"e":1}'}
    frame = reply(
        {
            "type": "http",
            "request_id": "r",
            "payload": {"method": "GET", "path": "", "headers": {}, "body": json.dumps(inner)},
        }
    )
    assert decode_http_reply(frame) == HttpResponse(
        404, {"content-type": "application/json"}, b'{"e":1}'
    )


def test_non_string_inner_body_is_reserialised() -> None:
    """A body that is an object, not text, reaches the browser as JSON text."""
    inner = {"status": 200, "headers": {}, "body": {"a": [1, 2]}}
    frame = reply({"payload": {"body": json.dumps(inner)}})
    assert json.loads(decode_http_reply(frame).body) == {"a": [1, 2]}


def test_base64_body() -> None:
    """Binary replies come as body_base64."""
    body = base64.b64encode(b"\x89PNG").decode()
    assert decode_http_reply(reply({"status": 200, "body_base64": body})).body == b"\x89PNG"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"headers": {}}, "neither payload.status nor a JSON-string payload.payload.body"),
        ({"payload": {"body": "not json"}}, "http reply body is not JSON text"),
        ({"payload": {"body": "[1]"}}, "does not hold an object with a status"),
        ({"status": 99}, "status 99 is not between 100 and 599"),
        ({"status": "teapot"}, "http reply is malformed"),
        ({"status": 200, "body_base64": "!!"}, "not valid base64"),
    ],
)
def test_unusable_replies_are_protocol_errors(payload: dict[str, Any], reason: str) -> None:
    """A reply that fits neither shape fails with a reason fit for the plugin's log."""
    with pytest.raises(ProtocolError, match=re.escape(reason)):
        decode_http_reply(reply(payload))


def test_reply_without_payload() -> None:
    """No payload object at all is a protocol error too."""
    with pytest.raises(ProtocolError, match="has no payload object"):
        decode_http_reply({"type": "http", "request_id": "r"})


@pytest.mark.parametrize("action", ["get", "Get", "GET", "set", "Delete", "list"])
def test_kv_actions_are_case_insensitive(action: str) -> None:
    """The old SDK wrote Get/Set/Delete; every case means the same action."""
    frame = {"type": "kv", "request_id": "k", "payload": {"action": action, "key": "n"}}
    assert decode_kv_request(frame) == KvRequest(action.lower(), "n", None)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"action": "drop", "key": "n"}, "kv action 'drop' is not one of delete, get, list, set"),
        ({"action": "set", "key": 5}, "kv key must be a string"),
        ({"action": "set", "key": "n", "value": 5}, "kv value must be a string"),
    ],
)
def test_bad_kv_requests(payload: dict[str, Any], reason: str) -> None:
    """Malformed storage requests are refused with the reason."""
    with pytest.raises(ProtocolError, match=re.escape(reason)):
        decode_kv_request({"type": "kv", "request_id": "k", "payload": payload})


def test_kind_and_pong_detection() -> None:
    """The type comes from the envelope or, failing that, the payload; pong in any case."""
    assert kind_of({"type": "KV"}) == "kv"
    assert kind_of({"payload": {"type": "http"}}) == "http"
    assert kind_of({}) is None
    assert is_pong({"payload": {"action": "Pong"}})
    assert not is_pong({"payload": {"action": "ping"}})


def test_timestamps_are_rfc3339_utc_milliseconds_everywhere() -> None:
    """The server's iso_utc and the shared utc_timestamp give one format: ms precision, Z."""
    assert iso_utc(1767225600.5) == "2026-01-01T00:00:00.500Z"
    assert utc_timestamp(1767225600.5) == "2026-01-01T00:00:00.500Z"
    assert RFC3339.match(utc_timestamp())


def test_envelope_always_writes_payload_type_and_request_id() -> None:
    """The shared envelope copies the kind into payload.type and writes a null request_id."""
    frame = envelope("kv", None, {"value": "1"})
    assert list(frame) == ["type", "timestamp", "request_id", "payload"]
    assert frame["request_id"] is None
    assert frame["payload"] == {"type": "kv", "value": "1"}
    assert RFC3339.match(frame["timestamp"])


@pytest.mark.parametrize(
    ("inner_body", "reason"),
    [
        ("[" * 100_000, "http reply body is nested deeper than 128 levels"),
        ('{"status": 200, "body": "\\ud800"}', "http reply body has an invalid Unicode escape"),
    ],
    ids=["too-deep", "lone-surrogate"],
)
def test_an_old_rust_reply_that_is_too_deep_or_has_a_lone_surrogate_is_a_protocol_error(
    inner_body: str, reason: str
) -> None:
    """The JSON text inside the old Rust SDK's reply goes through the same safe decoder."""
    frame = {"type": "http", "request_id": "r", "payload": {"payload": {"body": inner_body}}}
    with pytest.raises(ProtocolError, match=re.escape(reason)):
        decode_http_reply(frame)


def test_metadata_nested_too_deep_is_a_clear_rejection() -> None:
    """--metadata printing 100 000 nested arrays is rejected with the reason, not a crash."""
    with pytest.raises(MetadataError, match="output is nested deeper than 128 levels"):
        parse_metadata("[" * 100_000)


def test_the_sdks_request_json_refuses_deep_json_with_a_400() -> None:
    """A browser body nested 100 000 deep is the plugin's 400, not a RecursionError."""
    request = Request.from_target("POST", "/", headers={}, body=b"[" * 100_000)
    with pytest.raises(HTTPError) as caught:
        request.json()
    assert caught.value.status == 400
