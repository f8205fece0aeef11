"""Fixtures: a real Toru (Hypercorn on 127.0.0.1:0, SQLite in tmp_path) and HTTP clients."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from tests.support import ADMIN_PASSWORD, client, fast_hasher, login, make_settings
from toru.auth.passwords import PasswordHasher
from toru.config import Settings
from toru.server import serve

REPO = Path(__file__).resolve().parents[1]


@attrs.frozen
class RunningServer:
    url: str
    settings: Settings
    stopping: trio.Event


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def hasher() -> PasswordHasher:
    return fast_hasher()


StartServer = Callable[[Settings], Awaitable[RunningServer]]


@pytest.fixture
async def start_server(nursery: trio.Nursery, hasher: PasswordHasher) -> AsyncIterator[StartServer]:
    """Start Toru in the test's nursery with the given settings; stopped after the test."""
    started: list[RunningServer] = []

    async def start(settings: Settings) -> RunningServer:
        stopping = trio.Event()
        urls = await nursery.start(
            partial(serve, settings, handle_signals=False, stopping=stopping, hasher=hasher)
        )
        started.append(RunningServer(urls[0], settings, stopping))
        return started[-1]

    yield start
    for running in started:
        running.stopping.set()


@pytest.fixture
async def server(start_server: StartServer, settings: Settings) -> RunningServer:
    return await start_server(settings)


@pytest.fixture
async def anon(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with client(server.url) as http:
        yield http


@pytest.fixture
async def admin(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with client(server.url) as http:
        response = await login(http, "admin", ADMIN_PASSWORD)
        assert response.status_code == 200, response.text
        yield http


CLIENT_PASSWORD = "client password 1"


@pytest.fixture
async def client_user(
    server: RunningServer, admin: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    created = await admin.post(
        "/api/users", json={"username": "carol", "password": CLIENT_PASSWORD, "role": "client"}
    )
    assert created.status_code == 201, created.text
    async with client(server.url) as http:
        response = await login(http, "carol", CLIENT_PASSWORD)
        assert response.status_code == 200, response.text
        yield http


@pytest.fixture(scope="session")
def built_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/hello-plugin-python packaged once per test run (``toru plugin build``)."""
    return build_plugin(tmp_path_factory, REPO / "examples" / "hello-plugin-python")


@pytest.fixture(scope="session")
def built_faulty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/fixtures/faulty_sdk (routes that hang, reply garbage, log) packaged once."""
    return build_plugin(tmp_path_factory, REPO / "tests" / "fixtures" / "faulty_sdk")


def build_plugin(tmp_path_factory: pytest.TempPathFactory, source: Path) -> Path:
    out = tmp_path_factory.mktemp("built")
    command = [sys.executable, "-m", "toru", "plugin", "build", str(source), "-o", str(out)]
    subprocess.run(command, check=True, capture_output=True)
    return out
