"""Serving the web UI (no browser): index.html for client routes, cached assets, the CSP, safety.

The server is real (Hypercorn on 127.0.0.1:0); the build it serves is a small stand-in
written into ``tmp_path``, so these tests do not need Node.js or ``make web``.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio
from quart import Response

from tests.conftest import RunningServer, StartServer
from tests.support import fast_hasher
from toru import webui
from toru.app import create_app
from toru.auth.service import AuthService
from toru.config import Settings
from toru.db import Database

INDEX = b'<!doctype html><html><head><script type="module" src="/assets/app-3f9a.js"></script></head><body><div id="app"></div></body></html>\n'  # noqa: E501
SCRIPT = b"console.log('toru');\n"
SECRET = "TOP-SECRET-MARKER"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


@pytest.fixture
def web_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in build in tmp_path/site/web_dist, with secrets around it to try to reach."""
    dist = tmp_path / "site" / "web_dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_bytes(INDEX)
    (dist / "assets" / "app-3f9a.js").write_bytes(SCRIPT)
    (dist / "favicon.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    for place in (tmp_path, tmp_path / "site"):
        (place / "pyproject.toml").write_text(SECRET)
    (dist / "assets" / "escape.js").symlink_to(tmp_path / "pyproject.toml")
    monkeypatch.setattr(webui, "WEB_DIST", dist)
    return dist


@pytest.fixture
async def server(start_server: StartServer, settings: Settings, web_dist: Path) -> RunningServer:
    """Toru serving the stand-in build (the module's WEB_DIST is patched before it starts)."""
    return await start_server(settings)


async def raw_get(url: str, target: str) -> tuple[int, bytes]:
    """GET *target* exactly as written (no client-side clean-up of ``..`` or ``%2e``)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        await stream.send_all(request.encode())
        received = bytearray()
        with trio.fail_after(10):
            while b"\r\n\r\n" not in received:
                received += await stream.receive_some()
            head, _, body = bytes(received).partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            while len(body) < length:
                body += await stream.receive_some()
    return int(lines[0].split()[1]), body


@pytest.mark.parametrize(
    "path", ["/", "/plugins", "/plugins/hello", "/plugin/x", "/no/such/page", "/static/x.js"]
)
async def test_client_routes_get_index_html_revalidated(anon: httpx.AsyncClient, path: str) -> None:
    """Every non-API page is index.html with no-cache, so a new build is picked up at once."""
    response = await anon.get(path)
    assert response.status_code == 200
    assert response.content == INDEX
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["etag"]


async def test_index_html_revalidates_with_304(anon: httpx.AsyncClient) -> None:
    """A browser holding the current index.html is answered 304 without the body."""
    etag = (await anon.get("/plugins")).headers["etag"]
    response = await anon.get("/plugins", headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""


async def test_head_gets_the_headers_only(anon: httpx.AsyncClient) -> None:
    """HEAD on a UI page answers like GET, without a body."""
    response = await anon.head("/plugin/x")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"
    assert response.content == b""


async def test_assets_are_immutable(anon: httpx.AsyncClient) -> None:
    """Hashed assets are cached for a year, immutable, with a JavaScript content type."""
    response = await anon.get("/assets/app-3f9a.js")
    assert response.status_code == 200
    assert response.content == SCRIPT
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["content-type"].startswith("text/javascript")


async def test_missing_asset_is_404_not_index(anon: httpx.AsyncClient) -> None:
    """A missing asset is a 404, not index.html (which would be run as a script)."""
    response = await anon.get("/assets/gone-1234.js")
    assert response.status_code == 404
    assert response.content != INDEX


async def test_top_level_files_are_served(anon: httpx.AsyncClient) -> None:
    """Other top-level files of the build (the favicon) are served as themselves."""
    response = await anon.get("/favicon.svg")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/nope"), ("GET", "/api"), ("POST", "/api/nope"), ("GET", "/api/assets/x.js")],
)
async def test_unknown_api_paths_stay_json_404(
    anon: httpx.AsyncClient, method: str, path: str
) -> None:
    """The UI's catch-all never answers under /api: unknown paths there are the API's JSON 404."""
    response = await anon.request(method, path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == f"no such endpoint: {method} {path}"


@pytest.mark.parametrize(
    "target",
    [
        "/assets/../../pyproject.toml",
        "/assets/../../../pyproject.toml",
        "/assets/..%2f..%2fpyproject.toml",
        "/assets/..%2F..%2F..%2Fpyproject.toml",
        "/assets/%2e%2e/%2e%2e/pyproject.toml",
        "/assets/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/assets/..%5c..%5cpyproject.toml",
        "/assets/%2fetc%2fpasswd",
        "/assets//etc/passwd",
        "/assets/escape.js",
        "/..%2fpyproject.toml",
        "/%2e%2e/%2e%2e/pyproject.toml",
        "/..",
        "/%2e%2e",
        "/assets/%00.js",
        "/%00",
        "/assets/" + "a" * 5000 + ".js",
    ],
)
async def test_paths_never_escape_the_build(server: RunningServer, target: str) -> None:
    """Dot segments, encoded separators, absolute paths and symlinks never reach outside files."""
    status, body = await raw_get(server.url, target)
    assert SECRET.encode() not in body
    assert b"root:" not in body
    assert status in (200, 400, 404, 414)
    if status == 200:
        assert body == INDEX  # a client route, not a file


@pytest.mark.parametrize("path", ["/", "/assets/app-3f9a.js", "/api/health", "/api/nope"])
async def test_every_response_has_the_csp(anon: httpx.AsyncClient, path: str) -> None:
    """The strict Content-Security-Policy and Referrer-Policy are on pages, assets and the API."""
    response = await anon.get(path)
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["referrer-policy"] == "same-origin"


@pytest.mark.parametrize("path", ["/", "/plugins", "/assets/app-3f9a.js"])
async def test_missing_build_says_run_make_web(
    start_server: StartServer,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    """Without a build the UI answers 503 in words (run `make web`); the API still works."""
    monkeypatch.setattr(webui, "WEB_DIST", tmp_path / "not-built")
    running = await start_server(settings)
    async with httpx.AsyncClient(base_url=running.url) as http:
        response = await http.get(path)
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("text/plain")
        assert "make web" in response.text
        assert (await http.get("/api/health")).status_code == 200


async def test_a_response_cannot_loosen_the_csp(settings: Settings) -> None:
    """A handler's own policy (a plugin route's reply) is sent beside Toru's, never instead of it.

    Browsers enforce every policy they are sent, so a second one can only tighten the first.
    """
    async with Database.open(settings.database_path) as db:
        app = create_app(await AuthService.create(db, settings, hasher=fast_hasher()))

        @app.get("/loose")
        async def loose() -> Response:
            response = Response("<p>plugin page</p>", mimetype="text/html")
            response.headers["Content-Security-Policy"] = "script-src *"
            return response

        response = await app.test_client().get("/loose")
    assert response.headers.getlist("Content-Security-Policy") == ["script-src *", CSP]
