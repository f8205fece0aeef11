"""The SDK without a socket: routing, requests, responses, wire shapes, metadata, KV, logs."""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Any

import pytest
import trio
import trio.testing

from toru.plugins.framing import FramedStream
from toru.sdk import (
    HTTPError,
    KVClient,
    KVError,
    Logger,
    Plugin,
    PluginInfo,
    Request,
    Response,
)
from toru.sdk.routing import Router
from toru.sdk.wire import http_reply, parse_http_request

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def make_plugin() -> Plugin:
    return Plugin(id="unit", name="Unit", version="1.0.0", route="/unit")


def body_json(response: Response) -> Any:
    assert isinstance(response.body, str), response
    return json.loads(response.body)


async def call(plugin: Plugin, method: str, target: str, **kwargs: Any) -> Response:
    return await plugin.handle(Request.from_target(method, target, **kwargs))


# --- routing ------------------------------------------------------------------------


async def test_static_routes_match_exactly_and_ignore_one_trailing_slash() -> None:
    """`/` and `/counter` reach their own handlers; `/counter/` is `/counter`."""
    plugin = make_plugin()

    @plugin.get("/")
    async def root(request: Request) -> str:
        return "root"

    @plugin.get("/counter")
    async def counter(request: Request) -> str:
        return "counter"

    assert (await call(plugin, "GET", "/")).body == "root"
    assert (await call(plugin, "GET", "/counter")).body == "counter"
    assert (await call(plugin, "GET", "/counter/")).body == "counter"
    assert (await call(plugin, "GET", "/counter/x")).status == 404


async def test_path_parameters_are_captured_and_percent_decoded() -> None:
    """`{name}` takes one decoded segment; `{name:path}` takes the rest, slashes included."""
    plugin = make_plugin()

    @plugin.get("/items/{item_id}/parts/{part}")
    async def part(request: Request) -> dict[str, Any]:
        return dict(request.params)

    @plugin.get("/files/{rest:path}")
    async def files(request: Request) -> dict[str, Any]:
        return dict(request.params)

    response = await call(plugin, "GET", "/items/a%2Fb/parts/x%20y?q=1")
    assert body_json(response) == {"item_id": "a/b", "part": "x y"}
    assert body_json(await call(plugin, "GET", "/files/a/b/c.txt")) == {"rest": "a/b/c.txt"}
    assert (await call(plugin, "GET", "/files")).status == 404
    assert (await call(plugin, "GET", "/items//parts/x")).status == 404


async def test_routes_are_tried_in_registration_order() -> None:
    """A literal route registered before a parameter route wins for its own path only."""
    plugin = make_plugin()

    @plugin.get("/items/new")
    async def new(request: Request) -> str:
        return "new"

    @plugin.get("/items/{item_id}")
    async def item(request: Request) -> str:
        return f"item {request.params['item_id']}"

    assert (await call(plugin, "GET", "/items/new")).body == "new"
    assert (await call(plugin, "GET", "/items/7")).body == "item 7"


async def test_unknown_path_is_404_with_a_json_error() -> None:
    """A path no route fits is a 404 whose JSON names the method and the path."""
    plugin = make_plugin()
    response = await call(plugin, "GET", "/x?y=1")
    assert response.status == 404
    assert response.headers["content-type"] == "application/json"
    assert body_json(response) == {"error": "no route for GET /x"}


async def test_known_path_with_wrong_method_is_405_with_allow() -> None:
    """A path that exists for other methods is a 405 listing them in `allow`."""
    plugin = make_plugin()

    @plugin.route("/thing", methods=["GET", "PUT"])
    async def thing(request: Request) -> None:
        return None

    @plugin.delete("/thing")
    async def remove(request: Request) -> None:
        return None

    response = await call(plugin, "POST", "/thing")
    assert response.status == 405
    assert response.headers["allow"] == "DELETE, GET, HEAD, PUT"
    assert "POST" in body_json(response)["error"]


async def test_every_method_decorator_registers_its_method() -> None:
    """get/post/put/patch/delete each answer only their own method."""
    plugin = make_plugin()
    for name in ("get", "post", "put", "patch", "delete"):

        async def handler(request: Request) -> str:
            return request.method

        getattr(plugin, name)(f"/{name}")(handler)
    for name in ("get", "post", "put", "patch", "delete"):
        assert (await call(plugin, name, f"/{name}")).body == name.upper()
        other = "POST" if name == "get" else "GET"
        assert (await call(plugin, other, f"/{name}")).status == 405


async def test_head_is_answered_by_get_without_a_body() -> None:
    """HEAD on a GET route gets the GET status and headers, and no body."""
    plugin = make_plugin()

    @plugin.get("/")
    async def index(request: Request) -> dict[str, str]:
        return {"a": "b"}

    response = await call(plugin, "HEAD", "/")
    assert (response.status, response.body) == (200, None)
    assert response.headers["content-type"] == "application/json"


def test_bad_patterns_and_duplicate_routes_are_refused() -> None:
    """Registration rejects malformed patterns, duplicates, non-methods and sync handlers."""
    router = Router()

    async def handler(request: Request) -> None:
        return None

    router.add("/a/{x}", ["GET"], handler)
    with pytest.raises(ValueError, match="already registered"):
        router.add("/a/{y}", ["get"], handler)
    router.add("/a/{y}", ["POST"], handler)  # same pattern, another method: fine
    for pattern, reason in [
        ("a", "must start with '/'"),
        ("/a?b=1", "query strings"),
        ("/{x}/{x}", "repeats"),
        ("/{rest:path}/a", "last segment"),
        ("/a{x}", "one whole parameter"),
    ]:
        with pytest.raises(ValueError, match=re.escape(reason)):
            router.add(pattern, ["GET"], handler)
    with pytest.raises(ValueError, match="not an HTTP method"):
        router.add("/b", ["GE T"], handler)

    def sync_handler(request: Request) -> None:
        return None

    with pytest.raises(TypeError, match="async function"):
        make_plugin().get("/")(sync_handler)  # type: ignore[type-var]


# --- return values and errors --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "status", "content_type", "body"),
    [
        ({"a": 1}, 200, "application/json", '{"a": 1}'),
        ([1, "é"], 200, "application/json", '[1, "é"]'),
        ("hi", 200, "text/plain; charset=utf-8", "hi"),
        (b"\x00\xff", 200, "application/octet-stream", b"\x00\xff"),
        (None, 204, None, None),
        (Response.json({"x": 1}, status=201), 201, "application/json", '{"x": 1}'),
        (Response(status=302, headers={"Location": "/a"}), 302, None, None),
        (Response.text("t", status=418), 418, "text/plain; charset=utf-8", "t"),
        (Response.bytes(b"png", content_type="image/png"), 200, "image/png", b"png"),
    ],
)
async def test_return_values_become_responses(
    value: object, status: int, content_type: str | None, body: object
) -> None:
    """dict/list -> JSON, str -> text, bytes -> octet-stream, None -> 204, Response as is."""
    plugin = make_plugin()

    @plugin.get("/")
    async def index(request: Request) -> object:
        return value

    response = await call(plugin, "GET", "/")
    assert response.status == status
    assert response.headers.get("content-type") == content_type
    assert response.body == body


def test_response_headers_are_lower_case_and_status_is_checked() -> None:
    """Header names are stored lower-case; an impossible status is refused at once."""
    response = Response.json({}, headers={"X-Thing": "1", "Content-Type": "application/ld+json"})
    assert response.headers == {"content-type": "application/ld+json", "x-thing": "1"}
    with pytest.raises(ValueError, match="from 100 to 599"):
        Response(status=1000)


async def test_handler_exception_is_a_500_with_a_logged_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An exception in a handler answers 500 naming the plugin and logs its traceback."""
    plugin = make_plugin()

    @plugin.get("/boom")
    async def boom(request: Request) -> None:
        raise RuntimeError("kaboom")

    response = await call(plugin, "GET", "/boom", request_id="r-1")
    assert response.status == 500
    assert body_json(response) == {"error": "internal error in plugin unit"}
    [line] = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert record["level"] == "error"
    assert record["message"] == "unhandled error in handler for GET /boom"
    assert record["request_id"] == "r-1"
    assert "RuntimeError: kaboom" in record["exception"]


async def test_unsupported_return_value_is_a_500(capsys: pytest.CaptureFixture[str]) -> None:
    """Returning something the SDK cannot send (an int) is a 500 whose log says what to return."""
    plugin = make_plugin()

    @plugin.get("/")
    async def index(request: Request) -> int:
        return 42

    assert (await call(plugin, "GET", "/")).status == 500
    assert "return a dict, list, str, bytes, None or a Response" in capsys.readouterr().err


async def test_http_error_from_a_handler_sets_the_status() -> None:
    """`raise HTTPError(404, ...)` answers that status with the message as JSON."""
    plugin = make_plugin()

    @plugin.get("/items/{item_id}")
    async def item(request: Request) -> None:
        raise HTTPError(404, f"no item {request.params['item_id']}", headers={"X-Why": "gone"})

    response = await call(plugin, "GET", "/items/9")
    assert (response.status, body_json(response)) == (404, {"error": "no item 9"})
    assert response.headers["x-why"] == "gone"


# --- requests ------------------------------------------------------------------------


def test_query_is_parsed_into_first_values_and_lists() -> None:
    """`query` keeps each name's first value; `query_list` keeps them all, decoded, blanks too."""
    request = Request.from_target("get", "/search?q=a%20b&q=c&empty=&flag#frag")
    assert request.method == "GET"
    assert request.path == "/search"
    assert request.query == {"q": "a b", "empty": "", "flag": ""}
    assert request.query_list == {"q": ["a b", "c"], "empty": [""], "flag": [""]}
    assert Request.from_target("GET", "").path == "/"


async def test_json_and_text_helpers_turn_bad_bodies_into_400() -> None:
    """request.json() on bad or empty JSON, or text() on non-UTF-8, answers 400 with the reason."""
    plugin = make_plugin()

    @plugin.post("/json")
    async def parse(request: Request) -> dict[str, Any]:
        return {"got": request.json()}

    @plugin.post("/text")
    async def text(request: Request) -> str:
        return request.text()

    good = await call(plugin, "POST", "/json", body=b'{"a": [1]}')
    assert body_json(good) == {"got": {"a": [1]}}
    for body, reason in [(b"{nope", "not valid JSON"), (b"", "empty"), (b"\xff", "not UTF-8")]:
        response = await call(plugin, "POST", "/json", body=body)
        assert response.status == 400
        assert reason in body_json(response)["error"]
    assert (await call(plugin, "POST", "/text", body="é".encode())).body == "é"
    assert (await call(plugin, "POST", "/text", body=b"\xff")).status == 400


def test_headers_are_lower_case_and_user_comes_from_x_toru_user() -> None:
    """Header names are lower-cased; `user` is the x-toru-user header, None without it."""
    request = Request.from_target("GET", "/", headers={"X-Toru-User": "carol", "Accept": "a"})
    assert request.headers == {"x-toru-user": "carol", "accept": "a"}
    assert request.user == "carol"
    assert Request.from_target("GET", "/").user is None


def test_request_is_read_from_nested_or_flat_payloads() -> None:
    """Toru's nested `payload.payload` and a flat payload both parse; unknown fields are ignored."""
    nested = {
        "type": "http",
        "request_id": "r1",
        "extra": True,
        "payload": {
            "type": "http",
            "request_id": "r1",
            "payload": {
                "method": "post",
                "path": "/a?x=1",
                "headers": {"Content-Type": "text/plain"},
                "body": "hé",
                "future": 1,
            },
        },
    }
    request = parse_http_request(nested)
    assert (request.method, request.path, request.query, request.body) == (
        "POST",
        "/a",
        {"x": "1"},
        "hé".encode(),
    )
    assert request.headers == {"content-type": "text/plain"}
    assert request.request_id == "r1"

    flat = {"payload": {"method": "GET", "path": "/b", "body": None, "request_id": "r2"}}
    request = parse_http_request(flat)
    assert (request.path, request.body, request.request_id) == ("/b", b"", "r2")

    encoded = base64.b64encode(b"\xff\x00").decode()
    binary = {"payload": {"payload": {"path": "/c", "body": None, "body_base64": encoded}}}
    assert parse_http_request(binary).body == b"\xff\x00"
    assert parse_http_request({}).path == "/"
    with pytest.raises(HTTPError, match="base64"):
        parse_http_request({"payload": {"body_base64": "***"}})


def test_replies_use_the_clean_shape_with_base64_for_bytes() -> None:
    """Text bodies go in `body`, bytes in `body_base64`; payload.type and request_id are set."""
    reply = http_reply("r1", Response.json({"a": 1}))
    assert reply["type"] == "http"
    assert RFC3339_UTC.match(reply["timestamp"])
    assert reply["request_id"] == "r1"
    assert reply["payload"] == {
        "type": "http",
        "status": 200,
        "headers": {"content-type": "application/json"},
        "body": '{"a": 1}',
    }
    binary = http_reply(None, Response.bytes(b"\xff"))
    assert binary["request_id"] is None
    assert binary["payload"]["body_base64"] == "/w=="
    assert "body" not in binary["payload"]
    assert http_reply("r", Response(status=204))["payload"]["body"] is None


# --- metadata ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("id", "", "plugin id '' is invalid"),
        ("id", "has space", "no spaces, dots or slashes"),
        ("id", "dotted.id", "plugin id 'dotted.id' is invalid"),
        ("id", "sl/ash", "plugin id 'sl/ash' is invalid"),
        ("id", "-leading", "starting with a letter or digit"),
        ("id", "x" * 65, "1 to 64"),
        ("route", "hello", "must be '/' followed by"),
        ("route", "/a/b", "plugin route '/a/b' is invalid"),
        ("route", "/", "plugin route '/' is invalid"),
        ("name", " ", "plugin name ' ' is invalid"),
        ("version", "", "plugin version '' is invalid"),
    ],
)
def test_invalid_metadata_is_refused_at_construction(field: str, value: str, reason: str) -> None:
    """Plugin(...) raises ValueError naming the bad id, route, name or version."""
    fields = {"id": "ok", "name": "OK", "version": "1", "route": "/ok", field: value}
    with pytest.raises(ValueError, match=re.escape(reason)):
        Plugin(**fields)


def test_valid_metadata_includes_underscores_and_old_style_ids() -> None:
    """Old ids (letters, digits, '-') and '_' are accepted, up to 64 characters."""
    for plugin_id in ["hello-plugin-python", "a", "A_b-9", "x" * 64]:
        assert Plugin(id=plugin_id, name="n", version="1", route="/" + plugin_id).id == plugin_id


def test_metadata_flag_prints_one_json_object(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """`--metadata` prints the metadata with protocol 2, omitting icon/author when None."""
    plugin = Plugin(id="meta", name="Meta", version="2.0", route="/meta", icon="👋")
    assert plugin.main(["--metadata"]) == 0
    assert json.loads(capsysbinary.readouterr().out.decode("utf-8")) == {
        "id": "meta",
        "name": "Meta",
        "version": "2.0",
        "route": "/meta",
        "icon": "👋",
        "protocol": 2,
    }
    assert PluginInfo(id="m", name="M", version="1", route="/m", author="A").to_json() == {
        "id": "m",
        "name": "M",
        "version": "1",
        "route": "/m",
        "author": "A",
        "protocol": 2,
    }


def test_without_a_socket_variable_the_plugin_explains_itself(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no TORU_PLUGIN_SOCKET, run() exits 2 with one line saying Toru must start it."""
    monkeypatch.delenv("TORU_PLUGIN_SOCKET", raising=False)
    assert make_plugin().main([]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "is a Toru plugin" in line
    assert "toru plugin check" in line
    assert make_plugin().main(["--bogus"]) == 2


# --- KV ------------------------------------------------------------------------------


async def test_kv_without_a_host_connection_fails_clearly() -> None:
    """KV before any init raises KVError('not connected to Toru')."""
    with pytest.raises(KVError, match=r"^not connected to Toru$"):
        await KVClient().get("k")


async def serve_kv(
    host: FramedStream, kv: KVClient, answer: Any, seen: list[dict[str, Any]] | None = None
) -> None:
    """Answer every KV request arriving on *host* with answer(payload), recording it in *seen*."""
    while (message := await host.receive()) is not None:
        if seen is not None:
            seen.append(message)
        reply = answer(message["payload"])
        if reply is not None:
            kv.deliver(message["request_id"], reply)


async def test_kv_calls_have_the_documented_shape_and_results(nursery: trio.Nursery) -> None:
    """get/set/delete/list/get_json/set_json send kv frames with unique ids and read the replies."""
    plugin_side, host_side = trio.testing.memory_stream_pair()
    kv = KVClient()
    kv.bind(FramedStream(plugin_side))
    store: dict[str, str] = {}
    requests: list[dict[str, Any]] = []

    def answer(payload: dict[str, Any]) -> dict[str, Any]:
        action, key = payload["action"], payload["key"]
        if action == "set":
            store[key] = payload["value"]
        elif action == "delete":
            store.pop(key, None)
        elif action == "list":
            return {"type": "kv", "value": None, "keys": [*sorted(store), "other:1"]}
        return {"type": "kv", "value": store.get(key)}

    nursery.start_soon(serve_kv, FramedStream(host_side), kv, answer, requests)
    assert await kv.get("missing") is None
    await kv.set("a:1", "one")
    await kv.set_json("a:2", {"n": [1, 2]})
    assert await kv.get("a:1") == "one"
    assert await kv.get_json("a:2") == {"n": [1, 2]}
    assert await kv.get_json("missing", default=7) == 7
    assert await kv.list("a:") == ["a:1", "a:2"]
    await kv.delete("a:1")
    assert await kv.list() == ["a:2", "other:1"]
    with pytest.raises(TypeError, match="must be a str"):
        await kv.set("k", 5)  # type: ignore[arg-type]

    first = requests[0]
    assert first["type"] == "kv"
    assert first["payload"] == {"type": "kv", "action": "get", "key": "missing"}
    assert RFC3339_UTC.match(first["timestamp"])
    assert len({request["request_id"] for request in requests}) == len(requests)
    assert requests[1]["payload"]["value"] == "one"


async def test_kv_error_reply_raises_kverror_with_the_reason(nursery: trio.Nursery) -> None:
    """A reply with `error` raises KVError(reason)."""
    plugin_side, host_side = trio.testing.memory_stream_pair()
    kv = KVClient()
    kv.bind(FramedStream(plugin_side))
    nursery.start_soon(serve_kv, FramedStream(host_side), kv, lambda _: {"error": "disk full"})
    with pytest.raises(KVError, match=r"^disk full$"):
        await kv.set("k", "v")


async def test_kv_times_out_after_ten_seconds(autojump_clock: trio.abc.Clock) -> None:
    """A KV call nobody answers raises KVError after 10 s (virtual time) and is forgotten."""
    plugin_side, host_side = trio.testing.memory_stream_pair()
    kv = KVClient()
    kv.bind(FramedStream(plugin_side))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_kv, FramedStream(host_side), kv, lambda _: None)
        started = trio.current_time()
        with pytest.raises(KVError, match="no reply from Toru within 10 s"):
            await kv.get("k")
        assert trio.current_time() - started == pytest.approx(10)
        assert not kv.deliver("anything", {})
        nursery.cancel_scope.cancel()


async def test_kv_call_fails_when_its_connection_is_lost(nursery: trio.Nursery) -> None:
    """A pending call fails with KVError when its connection goes, and later calls cannot start."""
    plugin_side, host_side = trio.testing.memory_stream_pair()
    kv = KVClient()
    connection = FramedStream(plugin_side)
    kv.bind(connection)
    arrived = trio.Event()

    async def host() -> None:
        await FramedStream(host_side).receive()
        arrived.set()

    async def drop_after_arrival() -> None:
        await arrived.wait()
        kv.connection_lost(connection)

    nursery.start_soon(host)
    nursery.start_soon(drop_after_arrival)
    with pytest.raises(KVError, match="closed before it replied"):
        await kv.get("k")
    assert not kv.connected
    with pytest.raises(KVError, match="not connected"):
        await kv.get("k")


# --- logs ----------------------------------------------------------------------------


def test_log_lines_are_single_json_objects_with_the_required_fields() -> None:
    """Each record is one ASCII JSON line: timestamp (Z), level, message, then fields."""
    out = io.StringIO()
    log = Logger(stream=out)
    log.debug("hidden at info")
    log.info("saved ✓", key="counter", level="spoofed")
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        log.exception("failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert all(line.isascii() for line in lines)
    saved, failed = (json.loads(line) for line in lines)
    assert list(saved)[:3] == ["timestamp", "level", "message"]
    assert RFC3339_UTC.match(saved["timestamp"])
    assert (saved["level"], saved["message"], saved["key"]) == ("info", "saved ✓", "counter")
    assert saved["field_level"] == "spoofed"
    assert failed["level"] == "error"
    assert "ValueError: bad\nvalue" in failed["exception"]
    log.level = "debug"
    log.debug("shown")
    assert json.loads(out.getvalue().splitlines()[-1])["level"] == "debug"
    with pytest.raises(ValueError, match="log level 'loud' is invalid"):
        log.level = "loud"
