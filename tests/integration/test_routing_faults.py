"""Plugin routes under faults, measured on a real server: a plugin that never answers (504
after 30 s while others answer at once), one killed mid-request (502), an unusable reply
(502), 200 requests in flight to one plugin, the body limit, and the plugin's log file
and live log stream."""

from __future__ import annotations

import json
import os
import signal
import statistics
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from tests.support import (
    ADMIN_PASSWORD,
    EventStream,
    ServerProcess,
    client,
    eventually,
    install_plugins,
    login,
    server_process,
)

Running = tuple[ServerProcess, httpx.AsyncClient]


@pytest.fixture
async def running(
    tmp_path: Path, built_example: Path, built_faulty: Path
) -> AsyncIterator[Running]:
    """A server with the Python example and the faulty SDK plugin enabled, admin logged in."""
    install_plugins(
        tmp_path / "plugins",
        built_example,
        built_faulty,
        enabled=["hello-plugin-python", "faulty-sdk"],
    )
    env = {"TORU_MAX_REQUEST_BODY_MB": "1"}
    async with server_process(tmp_path, env=env) as server, client(await server.start()) as http:
        http.timeout = httpx.Timeout(60)
        await login(http, "admin", ADMIN_PASSWORD)
        for plugin_id in ("hello-plugin-python", "faulty-sdk"):
            await eventually(
                lambda plugin_id=plugin_id: running_state(http, plugin_id),
                within=15,
                what=f"{plugin_id} running",
            )
        yield server, http


async def running_state(http: httpx.AsyncClient, plugin_id: str) -> bool:
    return bool((await http.get(f"/api/plugins/{plugin_id}")).json()["state"] == "running")


async def noted(server: ServerProcess, plugin_id: str, message: str) -> None:
    """Wait for Toru's note *message* in the plugin's log file (its writer task writes it a
    moment after the request was answered)."""
    await eventually(
        lambda: any(r.get("message") == message for r in plugin_log(server, plugin_id)),
        within=5,
        what=f"{message!r} in {plugin_id}'s log",
    )


def plugin_log(server: ServerProcess, plugin_id: str) -> list[dict[str, object]]:
    path = server.root / "logs" / "plugins" / f"{plugin_id}.log"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
async def test_a_plugin_that_never_answers_is_504_after_30_s_and_slows_nobody(
    running: Running,
) -> None:
    """While one request hangs in the faulty plugin for 30 s, the other plugin, other
    requests to the same plugin and the core API keep answering in milliseconds."""
    server, http = running
    latencies: dict[str, list[float]] = {"other plugin": [], "same plugin": [], "core": []}
    probes = {
        "other plugin": "/api/plugins/route/hello-python/counter",
        "same plugin": "/api/plugins/route/faulty/square?n=3",
        "core": "/api/health",
    }
    outcome: dict[str, object] = {}

    async def hang() -> None:
        started = trio.current_time()
        reply = await http.get("/api/plugins/route/faulty/sleep")
        outcome.update(reply=reply, elapsed=trio.current_time() - started)
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hang)
        await trio.sleep(0.2)  # the request is in flight
        while True:
            for name, url in probes.items():
                started = trio.current_time()
                assert (await http.get(url)).status_code == 200
                latencies[name].append(trio.current_time() - started)
            await trio.sleep(0.1)

    reply = outcome["reply"]
    assert isinstance(reply, httpx.Response)
    assert reply.status_code == 504
    assert reply.json()["plugin"] == "faulty-sdk"
    assert "did not answer within 30 s" in reply.json()["error"]
    elapsed = outcome["elapsed"]
    assert isinstance(elapsed, float)
    assert 29.5 <= elapsed <= 33
    for name, samples in latencies.items():
        # Behaviour, not a benchmark: nothing waited for the hung request (30 s). The bound
        # leaves room for a machine busy with other tests (seen: a 5 s stall under load).
        assert len(samples) > 20, name
        assert max(samples) < 10, (name, max(samples))
        print(
            f"{name}: {len(samples)} requests, median {statistics.median(samples) * 1000:.1f} ms,"
            f" max {max(samples) * 1000:.1f} ms"
        )
    print(f"504 after {elapsed:.2f} s")
    await noted(server, "faulty-sdk", "plugin request timed out")


async def test_a_plugin_killed_mid_request_is_502_and_recovers(running: Running) -> None:
    """SIGKILL while a request is in flight: that request gets 502 at once, naming the plugin."""
    server, http = running
    pid = (await http.get("/api/plugins/faulty-sdk")).json()["pid"]
    outcome: dict[str, object] = {}

    async def pending() -> None:
        reply = await http.get("/api/plugins/route/faulty/sleep")
        outcome.update(reply=reply, at=trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pending)
        await trio.sleep(0.3)
        killed_at = trio.current_time()
        os.kill(pid, signal.SIGKILL)
    reply = outcome["reply"]
    assert isinstance(reply, httpx.Response)
    assert reply.status_code == 502
    assert reply.json()["plugin"] == "faulty-sdk"
    assert "failed to answer" in reply.json()["error"]
    at = outcome["at"]
    assert isinstance(at, float)
    assert at - killed_at < 5  # not the 30 s timeout

    async def restarted() -> bool:
        status = (await http.get("/api/plugins/faulty-sdk")).json()
        return bool(status["state"] == "running" and status["pid"] != pid)

    await eventually(restarted, within=10, what="a restart")
    assert (await http.get("/api/plugins/route/faulty/")).status_code == 200
    await noted(server, "faulty-sdk", "plugin request failed")


async def test_an_unusable_reply_is_502_and_the_plugin_keeps_serving(running: Running) -> None:
    """A reply with status 999 is refused (502, with the reason); the next request works."""
    _, http = running
    reply = await http.get("/api/plugins/route/faulty/garbage")
    assert reply.status_code == 502
    assert "status 999" in reply.json()["error"]
    assert reply.json()["plugin"] == "faulty-sdk"
    assert (await http.get("/api/plugins/route/faulty/")).status_code == 200


async def test_200_requests_in_flight_to_one_plugin_all_answered_correctly(
    running: Running,
) -> None:
    """Each of 200 concurrent requests gets its own answer (no mix-ups between ids)."""
    _, http = running
    answers: dict[int, object] = {}

    async def ask(n: int) -> None:
        reply = await http.get("/api/plugins/route/faulty/square", params={"n": n})
        answers[n] = reply.json() if reply.status_code == 200 else reply.status_code

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for n in range(200):
            nursery.start_soon(ask, n)
    print(f"200 concurrent requests in {trio.current_time() - started:.2f} s")
    assert answers == {n: {"n": n, "square": n * n} for n in range(200)}


async def test_request_body_limit_is_a_setting(running: Running) -> None:
    """TORU_MAX_REQUEST_BODY_MB=1: just under passes, just over is 413 naming the limit."""
    _, http = running
    headers = {"Content-Type": "application/octet-stream", "X-Toru-Request": "1"}
    under = await http.post(
        "/api/plugins/route/hello-python/counter/increment",
        content=b"x" * (1024 * 1024 - 10),
        headers=headers,
    )
    assert under.status_code == 200
    over = await http.post(
        "/api/plugins/route/hello-python/counter/increment",
        content=b"x" * (1024 * 1024 + 1),
        headers=headers,
    )
    assert over.status_code == 413
    assert "1 MiB" in over.json()["error"]
    assert "TORU_MAX_REQUEST_BODY_MB" in over.json()["error"]


async def test_the_example_log_file_holds_only_json_with_its_start_up_lines(
    running: Running,
) -> None:
    """LOG_DIR/plugins/hello-plugin-python.log: JSON lines only, the plugin's own start-up
    lines among them; the API gives them newest first and filters by level."""
    server, http = running
    records = plugin_log(server, "hello-plugin-python")
    own = [r for r in records if r.get("source") != "toru"]
    assert own, "the plugin's own start-up lines"
    assert all(r["stream"] in {"stdout", "stderr"} and r["pid"] for r in own)
    assert any(r.get("event") == "ready" for r in records)
    page = (await http.get("/api/plugins/hello-plugin-python/logs?page_size=1000")).json()
    assert page["logs"] == records[::-1]
    info = (await http.get("/api/plugins/hello-plugin-python/logs?level=INFO")).json()["logs"]
    assert info
    assert all(r["level"] in {"info", "warn", "warning", "error"} for r in info)


async def test_plain_lines_are_wrapped_and_followed_live(running: Running) -> None:
    """Lines the plugin prints become records in its file and reach a live follower at once;
    ``?level=error`` on the stream passes only the stderr line."""
    server, http = running
    cookie = http.cookies["session_id"]
    with trio.fail_after(15):
        everything = await EventStream.open(
            server.url, cookie, "/api/plugins/faulty-sdk/logs/stream"
        )
        errors = await EventStream.open(
            server.url, cookie, "/api/plugins/faulty-sdk/logs/stream?level=error"
        )
        async with everything.stream, errors.stream:
            assert "content-type: text/event-stream" in everything.headers
            assert (await http.get("/api/plugins/route/faulty/log?n=3")).json() == {"written": 4}
            seen = [await everything.next_event() for _ in range(4)]
            assert [event for event, _ in seen] == ["log"] * 4
            messages = [(r["message"], r["level"], r["stream"]) for _, r in seen]
            # stdout and stderr are two pipes: each keeps its order, not the two together.
            assert [m for m in messages if m[2] == "stdout"] == [
                ("plain line 0", "info", "stdout"),
                ("plain line 1", "info", "stdout"),
                ("plain line 2", "info", "stdout"),
            ]
            assert [m for m in messages if m[2] == "stderr"] == [
                ("something went wrong", "error", "stderr")
            ]
            event, record = await errors.next_event()
            assert (event, record["message"]) == ("log", "something went wrong")
    followed = [m for m, _, _ in messages]

    def last_in_file() -> list[object]:
        in_file = [r for r in plugin_log(server, "faulty-sdk") if r.get("source") != "toru"]
        return [r["message"] for r in in_file[-4:]]

    # Followers get a record at once; the file a moment later, from the writer task.
    await eventually(lambda: last_in_file() == followed, within=5, what="the records on disk")
    assert last_in_file() == followed  # same order


async def test_logs_stream_is_admin_only_and_checks_its_arguments(running: Running) -> None:
    server, http = running
    assert (await http.get("/api/plugins/nope/logs/stream")).status_code == 404
    assert (await http.get("/api/plugins/faulty-sdk/logs/stream?level=loud")).status_code == 400
    async with client(server.url) as anonymous:
        assert (await anonymous.get("/api/plugins/faulty-sdk/logs/stream")).status_code == 401
