"""The path a plugin receives: the raw remainder after the route segment, however encoded."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support import eventually, install_plugins, make_settings
from toru.config import Settings

LEGACY_PYTHON = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_python.binary"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The legacy Python fixture (route ``/legacy-python``), enabled, changed to echo every
    path it is sent (its root included), not only ``/echo...``."""
    settings = make_settings(tmp_path)
    source = LEGACY_PYTHON.read_text()
    echoing = source.replace('if bare.startswith("/echo"):', "if True:  # every path echoed")
    assert echoing != source, "the fixture's echo rule moved: update this test"
    binary = tmp_path / LEGACY_PYTHON.name
    binary.write_text(echoing)
    binary.chmod(0o755)
    install_plugins(settings.plugins_dir, binary, enabled=["legacy-python"])
    return settings


@pytest.fixture
async def http(admin: httpx.AsyncClient) -> httpx.AsyncClient:
    """The admin's client, once the plugin runs."""

    async def running() -> bool:
        return bool((await admin.get("/api/plugins/legacy-python")).json()["state"] == "running")

    await eventually(running, within=10, what="legacy-python running")
    return admin


async def received(http: httpx.AsyncClient, path: str) -> str:
    response = await http.get(f"/api/plugins/route/{path}")
    assert response.status_code == 200, response.text
    return str(response.json()["path"])


@pytest.mark.parametrize(
    "segment", ["legacy-python", "legacy%2Dpython", "legacy%2dpython", "%6cegacy%2Dpytho%6E"]
)
async def test_an_encoded_route_segment_does_not_shift_the_path(
    http: httpx.AsyncClient, segment: str
) -> None:
    """Whatever encoding the route segment uses, the plugin gets the rest exactly as sent."""
    assert await received(http, f"{segment}/echo/a%20b?x=1") == "/echo/a%20b?x=1"
    assert await received(http, f"{segment}/echo/a%2Fb%2d") == "/echo/a%2Fb%2d"


async def test_root_trailing_and_double_slashes(http: httpx.AsyncClient) -> None:
    """The root is ``/``, with or without a slash; trailing and doubled slashes in the rest
    pass as sent, also right after the route; nothing is redirected to a merged path."""
    assert await received(http, "legacy-python") == "/"
    assert await received(http, "legacy%2Dpython") == "/"
    assert await received(http, "legacy-python/") == "/"
    assert await received(http, "legacy%2Dpython/?x=1") == "/?x=1"
    assert await received(http, "legacy-python?x=1&y=%20") == "/?x=1&y=%20"
    assert await received(http, "legacy%2Dpython/echo/") == "/echo/"
    assert await received(http, "legacy%2Dpython/echo//a%2F/") == "/echo//a%2F/"
    assert await received(http, "legacy%2Dpython//echo/a%2Fb?x=1") == "//echo/a%2Fb?x=1"
    assert await received(http, "legacy-python//") == "//"
    before = await http.get("/api/plugins/route//legacy-python/echo")
    assert before.status_code == 404, before.text  # no redirect to a merged path either


@pytest.mark.parametrize(
    "path", ["legacy%2Fpython/x", "legacy%2fpython", "legacy-python%2Fecho", "legacy-python%2F"]
)
async def test_an_encoded_slash_in_the_route_segment_is_404(
    http: httpx.AsyncClient, path: str
) -> None:
    """No plugin route holds a slash: a segment with ``%2F`` matches none, even when the
    part before it names an enabled plugin's route."""
    response = await http.get(f"/api/plugins/route/{path}")
    assert response.status_code == 404, response.text
    assert "single segment" in response.json()["error"]


async def test_a_route_segment_is_decoded_once(http: httpx.AsyncClient) -> None:
    """``legacy%252Dpython`` is the route ``legacy%2Dpython``, which no plugin serves."""
    response = await http.get("/api/plugins/route/legacy%252Dpython/echo")
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "no enabled plugin serves the route '/legacy%2Dpython'"
