"""The web UI: the single-page app built by ``make web`` into ``toru/web_dist``, served as is.

Every ``GET``/``HEAD`` outside ``/api`` is the UI's:

* ``/assets/<file>``: Vite's content-hashed files, cached for a year as
  ``immutable`` (a new build gives them new names);
* ``/<file>`` for another top-level file of the build (``favicon.svg``...);
* anything else is ``index.html`` with ``no-cache``, so the browser always
  revalidates it and picks up a new build, and the app routes on the client
  (``/plugins``, ``/plugin/notes``, and its own 404 page).

Unknown ``/api/...`` paths never reach this blueprint: its catch-all rule does
not match them, so they stay the API's JSON ``404``. Files are looked up with
:func:`werkzeug.security.safe_join` and must resolve inside the build folder,
so no request escapes it. When the UI is not built, the answer is a ``503``
that says to run ``make web``; the API works without the UI.
"""

from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path

import attrs
import trio
from quart import Blueprint, Response, request
from quart.blueprints import BlueprintSetupState
from werkzeug.routing import PathConverter
from werkzeug.security import safe_join

#: Where ``make web`` (``npm run build`` in ``web/``) writes the app; shipped in the wheel.
WEB_DIST = Path(__file__).resolve().parent / "web_dist"

#: Sent with every response (``toru.app``). Everything comes from Toru itself: the
#: app's scripts and styles, and plugin bundles (``/api/plugins/{id}/bundle.js``),
#: which are same-origin scripts. No inline script or style, no ``eval``, no
#: plugins, no framing, no ``<base>``, forms post only to Toru. ``data:`` images
#: are allowed for small inline icons.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

NOT_BUILT = (
    "The Toru web UI is not built.\n\n"
    "Run `make web` in the Toru source directory (it needs Node.js and npm; `make run`\n"
    "does it for you), then reload this page. The API under /api/ works without it.\n"
)

# Types the stdlib table may lack or get wrong on some systems.
_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".webmanifest": "application/manifest+json",
    ".map": "application/json",
    ".ico": "image/x-icon",
}


class UiPathConverter(PathConverter):
    """A ``path`` that is not ``api`` nor under ``api/``: those stay the API's (JSON 404)."""

    regex = r"(?!api(?:/|$))[^/].*?"


@attrs.frozen
class StaticFile:
    data: bytes
    etag: str
    mimetype: str


def find_file(root: Path, relative: str) -> Path | None:
    """The file *relative* names inside *root*, or ``None``; never a path outside *root*.

    ``safe_join`` refuses ``..``, absolute paths and backslashes; resolving the
    result also refuses a symlink that points out of *root*. Names the file system
    cannot take (a NUL byte, too long) are simply not there.
    """
    joined = safe_join(str(root), relative)
    if joined is None:
        return None
    try:
        path = Path(joined).resolve()
        inside = path.is_relative_to(root.resolve()) and path.is_file()
    except (OSError, ValueError):  # a NUL byte, a name too long: no such file either
        return None
    return path if inside else None


def load_file(root: Path, relative: str) -> StaticFile | None:
    """Read a file of the build (blocking: run it in a thread)."""
    path = find_file(root, relative)
    if path is None:
        return None
    data = path.read_bytes()
    mimetype = _TYPES.get(path.suffix.lower()) or (
        mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    )
    return StaticFile(data, hashlib.sha256(data).hexdigest()[:32], mimetype)


async def file_response(file: StaticFile, cache_control: str) -> Response:
    """*file* with an ETag, answered ``304`` when the browser already has it."""
    response = Response(file.data, mimetype=file.mimetype)
    response.set_etag(file.etag)
    response.headers["Cache-Control"] = cache_control
    await response.make_conditional(request)
    return response


def plain(status: int, text: str) -> Response:
    response = Response(text, status=status, mimetype="text/plain")
    response.headers["Cache-Control"] = "no-store"
    return response


def webui_blueprint(root: Path | None = None) -> Blueprint:
    """Serve the built app in *root*, by default :data:`WEB_DIST` (read when called)."""
    root = WEB_DIST if root is None else root
    bp = Blueprint("webui", __name__)

    @bp.record_once
    def add_converter(state: BlueprintSetupState) -> None:
        # Before the rules below are added: a rule compiles its converters when added.
        state.app.url_map.converters["ui_path"] = UiPathConverter

    async def load(relative: str) -> StaticFile | None:
        return await trio.to_thread.run_sync(load_file, root, relative)

    async def index() -> Response:
        file = await load("index.html")
        if file is None:
            return plain(503, NOT_BUILT)
        return await file_response(file, REVALIDATE)

    @bp.get("/assets/<path:name>")
    async def asset(name: str) -> Response:
        file = await load(f"assets/{name}")
        if file is None:
            if not await trio.Path(root / "index.html").is_file():
                return plain(503, NOT_BUILT)
            return plain(404, "no such file in /assets/ (an old page? reload it)\n")
        return await file_response(file, IMMUTABLE)

    @bp.get("/", defaults={"path": ""})
    @bp.get("/<ui_path:path>")
    async def app_page(path: str) -> Response:
        if path and "/" not in path and path != "index.html":
            file = await load(path)  # favicon.svg, robots.txt: the build's top-level files
            if file is not None:
                return await file_response(file, REVALIDATE)
        return await index()

    return bp
