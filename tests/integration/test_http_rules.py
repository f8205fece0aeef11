"""Rules every API request follows: CSRF, JSON errors, request ids, headers, proxies."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import RunningServer, StartServer
from tests.support import ADMIN_PASSWORD, client, login, make_settings


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_state_changing_requests_need_json(
    server: RunningServer, content_type: str | None
) -> None:
    """A form post or a plain-text fetch (what another site can send) is refused with 403."""
    headers = {"Content-Type": content_type} if content_type else {}
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(
            "/api/auth/login",
            content=f'{{"username": "admin", "password": "{ADMIN_PASSWORD}"}}',
            headers=headers,
        )
    assert response.status_code == 403
    assert "Content-Type: application/json" in response.json()["error"]
    assert "set-cookie" not in response.headers


async def test_json_with_charset_is_accepted(anon: httpx.AsyncClient) -> None:
    """Content-Type parameters do not matter, only the media type."""
    response = await anon.post(
        "/api/auth/login",
        json={"username": "admin", "password": ADMIN_PASSWORD},
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("origin", "status"),
    [("http://evil.example", 403), ("null", 403), ("http://{host}", 200), ("https://{host}", 200)],
)
async def test_origin_must_match_the_host(
    server: RunningServer, anon: httpx.AsyncClient, origin: str, status: int
) -> None:
    """A present Origin naming another site is refused; this site's own origin is fine."""
    host = server.url.removeprefix("http://")
    response = await anon.post(
        "/api/auth/login",
        json={"username": "admin", "password": ADMIN_PASSWORD},
        headers={"Origin": origin.format(host=host)},
    )
    assert response.status_code == status, response.text


async def test_unknown_api_path_is_json_404(anon: httpx.AsyncClient) -> None:
    """Unknown endpoints answer with the JSON error shape, naming what was asked for."""
    response = await anon.get("/api/no/such/thing")
    assert response.status_code == 404
    assert response.json() == {"error": "no such endpoint: GET /api/no/such/thing"}


async def test_wrong_method_is_json_405_with_allow(anon: httpx.AsyncClient) -> None:
    """A known path with the wrong method says which methods it takes."""
    response = await anon.delete("/api/health")
    assert response.status_code == 405
    assert "not allowed" in response.json()["error"]
    assert "GET" in response.headers["allow"]


async def test_malformed_json_is_400(anon: httpx.AsyncClient) -> None:
    """A body that does not parse gets a 400 that says so."""
    response = await anon.post("/api/auth/login", content=b"{not json")
    assert response.status_code == 400
    assert response.json() == {"error": "the request body is not valid JSON"}
    array = await anon.post("/api/auth/login", json=["admin"])
    assert array.status_code == 400
    assert "expected a JSON object" in array.json()["error"]


async def test_a_body_that_is_not_utf8_is_400(anon: httpx.AsyncClient) -> None:
    response = await anon.post(
        "/api/auth/login", content=b"\xef\x06G\xa3", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"error": "the request body is not valid JSON"}


async def test_a_user_id_past_sqlite_integers_is_404(admin: httpx.AsyncClient) -> None:
    huge = "/api/users/" + str(2**90)
    assert (await admin.put(huge, json={})).status_code == 404
    deleted = await admin.delete(huge, headers={"Content-Type": "application/json"})
    assert deleted.status_code == 404


async def read_response(stream: trio.SocketStream) -> bytes:
    """One whole HTTP/1.1 response with a Content-Length."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += await stream.receive_some()
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += await stream.receive_some()
    return head


@pytest.mark.parametrize("path", ["/api/users", "/api/plugins/nope/enable", "/api/nope"])
async def test_keep_alive_survives_an_answer_sent_before_the_body(
    server: RunningServer, path: str
) -> None:
    """Headers first, body a moment later (what clients do with larger bodies), answered
    early (401, 404) without reading the body: the next request on the same connection
    is answered too. (Hypercorn alone leaves such a connection hanging.)"""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    body = b'{"username": "x"}'
    async with stream:
        for _ in range(3):
            await stream.send_all(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
            )
            await trio.sleep(0.05)
            await stream.send_all(body)
            with trio.fail_after(5):
                head = await read_response(stream)
            assert head.split(b" ")[1] in {b"401", b"404"}


async def test_oversized_body_is_413_before_it_is_sent(server: RunningServer) -> None:
    """A declared body over 16 MiB is refused from its headers alone, without reading it."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(
            b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {16 * 1024 * 1024 + 1}\r\n\r\n".encode()
        )
        received = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
                chunk = await stream.receive_some()
                if not chunk:
                    break
                received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body) == {"error": "the request body is too large"}


async def test_internal_error_hides_details_and_keeps_serving(
    server: RunningServer, admin: httpx.AsyncClient
) -> None:
    """A failing database call is a 500 with a request id, no traceback; the server lives on."""
    with sqlite3.connect(server.settings.database_path) as conn:
        conn.execute("ALTER TABLE users RENAME TO users_gone")
    response = await admin.get("/api/users")
    assert response.status_code == 500
    body = response.json()
    request_id = response.headers["x-request-id"]
    assert body["request_id"] == request_id
    assert request_id in body["error"]
    assert "Traceback" not in response.text
    assert "users" not in body["error"]
    assert (await admin.get("/api/health")).status_code == 200


async def test_every_response_has_request_id_and_safety_headers(anon: httpx.AsyncClient) -> None:
    """Responses carry a request id, nosniff, no framing, a referrer policy and no-store."""
    first = await anon.get("/api/health")
    second = await anon.get("/api/health")
    assert len(first.headers["x-request-id"]) == 32
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert first.headers["x-content-type-options"] == "nosniff"
    assert first.headers["x-frame-options"] == "DENY"
    assert first.headers["referrer-policy"] == "same-origin"
    assert first.headers["cache-control"] == "no-store"
    assert "server" not in first.headers
    assert first.json() == {"status": "ok", "version": first.json()["version"]}


async def test_incoming_request_id_is_ignored_without_a_trusted_proxy(
    anon: httpx.AsyncClient,
) -> None:
    """A client cannot choose the request id the logs use unless a proxy is trusted."""
    response = await anon.get("/api/health", headers={"X-Request-Id": "chosen-by-client"})
    assert response.headers["x-request-id"] != "chosen-by-client"


async def test_trusted_proxy_headers(start_server: StartServer, tmp_path: Path) -> None:
    """With TRUST_PROXY, the proxy's X-Forwarded-For, X-Forwarded-Host and X-Request-Id count."""
    running = await start_server(make_settings(tmp_path, trust_proxy=True))
    proxy_headers = {
        "X-Forwarded-For": "203.0.113.9, 198.51.100.7",
        "X-Forwarded-Host": "panel.example",
        "Origin": "https://panel.example",
        "X-Request-Id": "proxy-id-1",
    }
    async with client(running.url) as http:
        http.headers.update(proxy_headers)
        response = await login(http, "admin", ADMIN_PASSWORD)
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == "proxy-id-1"
        history = (await http.get("/api/auth/history")).json()
    assert history["entries"][0]["address"] == "198.51.100.7"


async def test_forwarded_for_is_ignored_without_a_trusted_proxy(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    """Without TRUST_PROXY a forged X-Forwarded-For cannot dodge the address lock."""
    await login(
        anon,
        "nobody",
        "wrong password",
    )
    anon.headers["X-Forwarded-For"] = "203.0.113.50"
    await login(anon, "nobody", "wrong password")
    addresses = {e["address"] for e in (await admin.get("/api/auth/history")).json()["entries"]}
    assert addresses == {"127.0.0.1"}
