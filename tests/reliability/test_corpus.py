"""The bad-plugin corpus (``tests/reliability/corpus/``) against a real ``toru serve``.

Two servers: one with every binary that must be rejected at discovery, one with every
runtime fault enabled at once. Each time a good plugin (the legacy fixture, and the built
SDK example for runtime faults) is probed throughout and must keep answering, the server
must stay healthy, and in the end no process and no socket file of a bad plugin is left.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from tests.reliability import cases
from tests.reliability.helpers import (
    CORPUS,
    REPO,
    Toru,
    cmdline_mentions,
    install,
    install_fixture,
    rss_kib,
    running_toru,
    short_tmpdir,
    write_config,
    zombies_of,
)
from tests.support import alive, eventually

GOOD_ROUTES = {
    "legacy-python": "/api/plugins/route/legacy-python/",
    "hello-plugin-python": "/api/plugins/route/hello-python/",
}
LOG_LIMIT = 10 * 1024 * 1024 * 6  # 10 MiB per file, the live one and 5 kept


@attrs.define
class Prober:
    """Asks the core and the good plugins for an answer, again and again, and keeps every
    answer that was not a 200."""

    http: httpx.AsyncClient
    routes: dict[str, str]
    answers: int = 0
    bad: list[tuple[str, int | str]] = attrs.field(factory=list)

    async def run(self) -> None:
        while True:
            for url in ("/api/health", *self.routes.values()):
                try:
                    status: int | str = (await self.http.get(url)).status_code
                except httpx.HTTPError as exc:
                    status = repr(exc)
                self.answers += 1
                if status != 200:
                    self.bad.append((url, status))
            await trio.sleep(0.2)

    def check(self) -> None:
        assert self.answers > 10, "the prober never got going"
        assert self.bad == [], f"the core or a good plugin failed: {self.bad[:20]}"


@pytest.mark.slow
async def test_every_bad_binary_is_rejected_with_its_reason(tmp_path: Path) -> None:
    """Sixteen kinds of unusable binary, discovered at once: each listed in ``rejected``
    with its exact reason, none run longer than its metadata timeout, none left running;
    the good plugin beside them starts and answers, and the server stays healthy."""
    plugins = tmp_path / "plugins"
    install(plugins, *(case.file for case in cases.REJECTED), cases.METADATA_LEAVES_CHILD.file)
    assert (plugins / "not_executable.binary").stat().st_mode & 0o111 == 0
    assert not (plugins / "not_a_program.binary").read_bytes().startswith((b"#!", b"\x7fELF"))
    install_fixture(plugins)
    write_config(plugins, {"legacy-python": True})
    with short_tmpdir() as tmpdir:
        async with running_toru(tmp_path, tmpdir=tmpdir) as toru:
            listing = (await toru.http.get("/api/plugins")).json()
            rejected = {item["file"]: item["reason"] for item in listing["rejected"]}
            assert rejected == {case.file: case.expect for case in cases.REJECTED}
            by_id = {status["id"]: status for status in listing["plugins"]}
            assert set(by_id) == {"legacy-python", "leaves-child"}
            assert by_id["legacy-python"]["state"] == "running"
            assert (await toru.http.get("/api/health")).status_code == 200
            route = await toru.http.get(GOOD_ROUTES["legacy-python"])
            assert route.status_code == 200, route.text

            # The child that --metadata left holding its stdout was killed with the group.
            child = int((plugins / "metadata_leaves_child.pid").read_text())
            await eventually(lambda: not alive(child), within=5, what="the child killed")
            assert cmdline_mentions("metadata_hangs") == []

            # A rescan decides the same, without waiting for the hanging one again: its
            # outcome is reused while the file is unchanged.
            started = trio.current_time()
            again = (await toru.http.post("/api/plugins/rescan")).json()
            assert {i["file"]: i["reason"] for i in again["rejected"]} == rejected
            print(f"rescan of {len(rejected) + 2} files: {trio.current_time() - started:.2f} s")
            assert zombies_of(toru.pid) == []
            toru.server.send(signal.SIGTERM)
            assert await toru.server.wait(30) == 0
        assert cmdline_mentions(str(plugins)) == []
        assert list(tmpdir.iterdir()) == []


def test_the_docs_list_every_corpus_file_with_its_expectation() -> None:
    """docs/reliability.md has one table row per corpus file, as in ``cases.py``, and every
    ``*.binary`` in the corpus has a case (and so a check)."""
    text = (REPO / "docs" / "reliability.md").read_text()
    missing = [
        case.file
        for case in cases.ALL
        if f"| `{case.file}` | {case.kind} | {case.expect} |" not in text
    ]
    assert missing == []
    assert {p.name for p in CORPUS.glob("*.binary")} == {case.file for case in cases.ALL}
    assert len(cases.ALL) >= 25


# -- runtime faults ------------------------------------------------------------------------


Check = Callable[[Toru, str, dict[str, Any]], Awaitable[str]]
CHECKS: dict[str, Check] = {}


def check(file: str) -> Callable[[Check], Check]:
    """Register the check of one runtime corpus file; it returns what it observed."""

    def register(fn: Check) -> Check:
        CHECKS[file] = fn
        return fn

    return register


def plugin_id_of(file: str) -> str:
    return file.removesuffix(".binary").replace("_", "-")


async def enable(toru: Toru, plugin_id: str) -> httpx.Response:
    response = await toru.http.post(f"/api/plugins/{plugin_id}/enable")
    assert response.status_code in (200, 409), response.text
    return response


async def last_error_becomes(toru: Toru, plugin_id: str, pattern: str, within: float) -> str:
    """Wait until the status's last_error matches *pattern* (a regular expression)."""
    seen: list[str | None] = []

    async def matches() -> bool:
        error = (await toru.status(plugin_id))["last_error"]
        seen.append(error)
        return error is not None and re.fullmatch(pattern, error) is not None

    try:
        await eventually(matches, within=within, what=f"{plugin_id}: last_error {pattern!r}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen {seen[-1:]}") from None
    return str(seen[-1])


PINGS_MISSED = re.escape("unhealthy: missed 3 pings in a row")


async def restarted(toru: Toru, plugin_id: str, first: int) -> bool:
    status = await toru.status(plugin_id)
    return bool(status["state"] == "running" and status["pid"] not in (None, first))


async def events_named(toru: Toru, plugin_id: str, name: str) -> list[dict[str, Any]]:
    return [e["details"] for e in await toru.events(plugin_id) if e["event"] == name]


async def disable(toru: Toru, plugin_id: str) -> dict[str, Any]:
    response = await toru.http.post(f"/api/plugins/{plugin_id}/disable")
    assert response.status_code == 200, response.text
    status: dict[str, Any] = response.json()
    assert (status["state"], status["pid"], status["health"]) == ("stopped", None, "disabled")
    return status


async def get(toru: Toru, plugin_id: str, path: str = "/", **kwargs: Any) -> httpx.Response:
    return await toru.http.get(f"/api/plugins/route/{plugin_id}{path}", **kwargs)


def server_warnings(toru: Toru, plugin_id: str, event: str) -> list[dict[str, Any]]:
    return [
        r for r in toru.server_log() if r.get("plugin_id") == plugin_id and r.get("event") == event
    ]


NOT_READY = r"not ready: nothing listened on \S+/{id}\.sock within 5 s"


@check("never_listens.binary")
async def never_listens(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    response = await enable(toru, plugin_id)
    assert response.status_code == 409
    error = response.json()["plugin"]["last_error"]
    assert re.fullmatch(NOT_READY.format(id=plugin_id), error), error
    stopped = await events_named(toru, plugin_id, "stopped")
    assert stopped[0]["how"] == "SIGTERM", stopped
    stopping = await events_named(toru, plugin_id, "stopping")
    assert stopping[0]["reason"] == error
    return error


@check("binds_never_listens.binary")
async def binds_never_listens(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    return await never_listens(toru, plugin_id, ctx)


@check("exits_at_once.binary")
async def exits_at_once(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    response = await enable(toru, plugin_id)
    assert response.status_code == 409
    status = response.json()["plugin"]
    assert status["last_error"] == "exited 3 before it was ready"
    assert status["state"] == "backoff"
    crashed = await events_named(toru, plugin_id, "crashed")
    assert crashed[0]["exit"] == "exited 3"
    assert "cannot open database" in crashed[0]["stderr_tail"]
    return str(status["last_error"])


@check("crashes_after_init.binary")
async def crashes_after_init(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    response = await enable(toru, plugin_id)
    assert response.status_code == 200, response.text
    first = response.json()["pid"]
    error = await last_error_becomes(toru, plugin_id, "killed by SIGSEGV while running", 20)
    crashed = await events_named(toru, plugin_id, "crashed")
    assert crashed[0]["exit"] == "killed by SIGSEGV"
    assert crashed[0]["pid"] == first

    async def restarted() -> bool:
        return len(await toru.pids(plugin_id)) >= 2

    await eventually(restarted, within=20, what="a restart after the crash")
    return error


async def connection_lost(toru: Toru, plugin_id: str, reason: str) -> str:
    await enable(toru, plugin_id)  # 200, or 409 when the loss came before the answer
    pattern = re.escape(f"connection lost: plugin '{plugin_id}': {reason}")
    error = await last_error_becomes(toru, plugin_id, pattern, 30)
    stopped = await events_named(toru, plugin_id, "stopped")
    assert stopped[0]["how"] == "SIGTERM", stopped  # the shutdown message could not be sent
    return error


@check("closes_socket.binary")
async def closes_socket(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    return await connection_lost(toru, plugin_id, "the plugin closed the connection")


@check("garbage_frames.binary")
async def garbage_frames(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    reason = "protocol error: frame is not JSON: Expecting value at line 1 column 1"
    return await connection_lost(toru, plugin_id, reason)


@check("huge_frame.binary")
async def huge_frame(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    reason = "protocol error: frame of 4294967295 bytes exceeds the 16 MiB limit"
    return await connection_lost(toru, plugin_id, reason)


async def enabled_and_running(toru: Toru, plugin_id: str) -> int:
    response = await enable(toru, plugin_id)
    assert response.status_code == 200, response.text
    pid: int = response.json()["pid"]
    return pid


async def still_the_same_process(toru: Toru, plugin_id: str, pid: int) -> None:
    status = await toru.status(plugin_id)
    assert (status["state"], status["pid"], status["restart_count"]) == ("running", pid, 0)


@check("unknown_request_id.binary")
async def unknown_request_id(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    pid = await enabled_and_running(toru, plugin_id)
    for _ in range(3):
        response = await get(toru, plugin_id)
        assert response.status_code == 200, response.text
        assert response.json() == {"real": True}
    ignored = server_warnings(toru, plugin_id, "ignored a message from the plugin")
    reasons = {r["reason"] for r in ignored}
    assert reasons == {"reply for unknown request_id 'no-such-request'"}, reasons
    assert len(ignored) == 3
    await still_the_same_process(toru, plugin_id, pid)
    return f"200; toru.log: {reasons.pop()}"


@check("late_reply.binary")
async def late_reply(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    pid = await enabled_and_running(toru, plugin_id)
    meanwhile: list[int] = []
    started = trio.current_time()
    async with trio.open_nursery() as nursery:

        async def others() -> None:
            while True:
                meanwhile.append((await get(toru, plugin_id)).status_code)
                await trio.sleep(0.5)

        nursery.start_soon(others)
        response = await get(toru, plugin_id, "/late")
        nursery.cancel_scope.cancel()
    took = trio.current_time() - started
    assert response.status_code == 504, response.text
    assert response.json()["error"] == f"plugin '{plugin_id}' did not answer within 30 s"
    assert took >= 29.5
    assert meanwhile
    assert set(meanwhile) == {200}, meanwhile

    def late_reply_logged() -> bool:
        return bool(server_warnings(toru, plugin_id, "ignored a message from the plugin"))

    await eventually(late_reply_logged, within=20, what="the late reply logged")
    await still_the_same_process(toru, plugin_id, pid)
    (logged,) = server_warnings(toru, plugin_id, "ignored a message from the plugin")
    return f"504 after {took:.1f} s; toru.log: {logged['reason']}"


@check("never_replies.binary")
async def never_replies(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    pid = await enabled_and_running(toru, plugin_id)
    response = await get(toru, plugin_id)
    assert response.status_code == 504, response.text
    assert response.json()["error"] == f"plugin '{plugin_id}' did not answer within 30 s"
    await still_the_same_process(toru, plugin_id, pid)
    return f"504 {response.json()['error']}"


@check("holds_socket.binary")
async def holds_socket(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    first = await enabled_and_running(toru, plugin_id)
    # In flight when the ping rule ends the run (at most 20 s), well before its own 30 s.
    response = await get(toru, plugin_id)
    assert response.status_code == 502, response.text
    error = await last_error_becomes(toru, plugin_id, PINGS_MISSED, 30)
    stopping = await events_named(toru, plugin_id, "stopping")
    assert (stopping[0]["reason"], stopping[0]["rule"]) == (error, "pings")
    misses = [e["missed_pings"] for e in await events_named(toru, plugin_id, "unhealthy")]
    assert misses[:3] == [1, 2, 3], misses
    await eventually(
        lambda: restarted(toru, plugin_id, first), within=30, what="a new run after the rule"
    )
    ctx["expected_how"] = "SIGTERM"
    return f"502 for the request in flight; {error} (rule pings); restarted"


@check("stalls_mid_request.binary")
async def stalls_mid_request(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    first = await enabled_and_running(toru, plugin_id)
    response = await toru.http.post(
        f"/api/plugins/route/{plugin_id}/upload",
        content=b"x" * (4 * 1024 * 1024),
        headers={"Content-Type": "application/octet-stream", "X-Toru-Request": "1"},
    )
    # The ping rule ends the run before the request's 30 s: its half-written frame goes
    # with the connection.
    assert response.status_code == 502, response.text
    error = await last_error_becomes(toru, plugin_id, PINGS_MISSED, 30)

    async def answers_again() -> bool:
        return (await get(toru, plugin_id)).status_code == 200

    await eventually(answers_again, within=30, what="the next run answering")
    assert (await toru.status(plugin_id))["pid"] != first
    return f"502; {error}; the next run answers 200"


@check("kv_flood.binary")
async def kv_flood(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    rss_before = rss_kib(toru.pid)
    await enabled_and_running(toru, plugin_id)
    sent = toru.plugins / "kv_flood.sent"
    await eventually(sent.exists, within=10, what="the flood started")

    def progress() -> int:
        return int(sent.read_text())

    # Stalled: the count no longer moves, far below the 300 000 the plugin wants to send.
    samples = [progress()]
    while len(samples) < 3 or samples[-1] != samples[-3]:
        await trio.sleep(1)
        samples.append(progress())
        assert len(samples) < 30, f"the flood never stalled: {samples}"
    assert samples[-1] < 20_000, samples
    grown = rss_kib(toru.pid) - rss_before
    assert grown < 200 * 1024, f"the server grew by {grown} KiB"
    ctx["expected_how"] = "SIGTERM"
    return f"sends stalled at {samples[-1]} of 300 000; server RSS {grown / 1024:+.0f} MiB"


@check("stray_flood.binary")
async def stray_flood(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    pid = await enabled_and_running(toru, plugin_id)
    done = toru.plugins / "stray_flood.done"
    await eventually(done.exists, within=120, what="200 000 stray replies sent", poll=0.5)

    async def answers() -> bool:  # the reader has worked through the flood
        return (await get(toru, plugin_id)).status_code == 200

    await eventually(answers, within=120, what="an answer after the flood", poll=0.5)
    logged = server_warnings(toru, plugin_id, "ignored a message from the plugin")
    counts = [r["ignored_so_far"] for r in logged]
    assert counts == [*range(1, 11), *range(10_000, 200_001, 10_000)], counts
    await still_the_same_process(toru, plugin_id, pid)
    return f"200 000 ignored, {len(logged)} lines in toru.log; answers 200 afterwards"


@check("stdout_flood.binary")
async def stdout_flood(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    pid = await enabled_and_running(toru, plugin_id)
    done = toru.plugins / "stdout_flood.done"
    await eventually(done.exists, within=120, what="the 100 MB flood written", poll=0.5)
    log = toru.logs / "plugins" / f"{plugin_id}.log"

    def flood_recorded() -> bool:
        return any("flood done" in line for line in log.read_text().splitlines()[-20:])

    await eventually(flood_recorded, within=30, what="the flood's last line in the log")
    files = sorted(log.parent.glob(f"{plugin_id}.log*"))
    total = sum(f.stat().st_size for f in files)
    assert len(files) <= 6, files
    assert total <= LOG_LIMIT, total
    dropped = [
        json.loads(line) for line in log.read_text().splitlines() if '"rate limit: dropped' in line
    ]
    assert dropped, "the short lines should have hit the rate limit"
    response = await get(toru, plugin_id)
    assert response.status_code == 200, response.text
    await still_the_same_process(toru, plugin_id, pid)
    ctx["log_bytes"] = total
    return (
        f"{len(files)} log files, {total / 2**20:.1f} MiB in all; "
        f"{dropped[-1]['message']}; still answering"
    )


@check("long_lines.binary")
async def long_lines(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    pid = await enabled_and_running(toru, plugin_id)
    await eventually((toru.plugins / "long_lines.done").exists, within=30, what="lines written")
    log = toru.logs / "plugins" / f"{plugin_id}.log"

    def records() -> list[dict[str, Any]]:
        return [
            json.loads(line)
            for line in log.read_text().splitlines()
            if '"message":"LL' in line.replace(" ", "") or '"message":"EE' in line.replace(" ", "")
        ]

    await eventually(lambda: len(records()) == 11, within=30, what="11 long-line records")
    cut = 64 * 1024
    for record in records():
        assert record["message"].endswith(" [line truncated]"), record["message"][-40:]
        assert len(record["message"]) == cut + len(" [line truncated]")
    assert sorted(r["stream"] for r in records()) == ["stderr"] + ["stdout"] * 10
    assert (await get(toru, plugin_id)).status_code == 200
    await still_the_same_process(toru, plugin_id, pid)
    return "11 records of 64 KiB + ' [line truncated]'; still answering"


@check("ignores_shutdown.binary")
async def ignores_shutdown(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    await enabled_and_running(toru, plugin_id)
    ctx["expected_how"] = "SIGTERM"
    return "stops at the SIGTERM rung"


@check("ignores_sigterm.binary")
async def ignores_sigterm(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    await enabled_and_running(toru, plugin_id)
    ctx["expected_how"] = "SIGKILL"
    return "stops at the SIGKILL rung"


@check("forks_grandchildren.binary")
async def forks_grandchildren(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    await enabled_and_running(toru, plugin_id)
    pids_file = toru.plugins / "forks_grandchildren.pids"
    await eventually(pids_file.exists, within=10, what="the grandchildren's pids")
    grandchildren = [int(pid) for pid in pids_file.read_text().split()]
    assert len(grandchildren) == 3
    assert all(alive(pid) for pid in grandchildren)
    ctx["expected_how"] = "shutdown message"
    ctx["also_gone"] = grandchildren
    return "3 grandchildren"


async def bad_replies(toru: Toru, plugin_id: str, reason: str) -> str:
    pid = await enabled_and_running(toru, plugin_id)
    for _ in range(3):
        response = await get(toru, plugin_id)
        assert response.status_code == 502, response.text
        assert response.json()["plugin"] == plugin_id
        assert reason in response.json()["error"], response.json()
    await still_the_same_process(toru, plugin_id, pid)
    return f"502 {response.json()['error']}"


@check("legacy_garbage_reply.binary")
async def legacy_garbage_reply(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    return await bad_replies(toru, plugin_id, "protocol error: frame is not JSON: Expecting value")


@check("bad_reply_shape.binary")
async def bad_reply_shape(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    reason = "http reply has neither payload.status nor a JSON-string payload.payload.body"
    return await bad_replies(toru, plugin_id, reason)


@check("stops_answering_pings.binary")
async def stops_answering_pings(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    await enabled_and_running(toru, plugin_id)
    # First pong at 5 s, then three misses of 5 s sleep + 5 s timeout each: about 35 s.
    error = await last_error_becomes(toru, plugin_id, "unhealthy: missed 3 pings in a row", 90)
    unhealthy = await events_named(toru, plugin_id, "unhealthy")
    assert [e["missed_pings"] for e in unhealthy[:3]] == [1, 2, 3]
    stopping = await events_named(toru, plugin_id, "stopping")
    assert stopping[0]["reason"] == error
    return error


@check("crash_loop.binary")
async def crash_loop(toru: Toru, plugin_id: str, ctx: dict[str, Any]) -> str:
    await enabled_and_running(toru, plugin_id)
    error = await last_error_becomes(toru, plugin_id, "exited 70 while running", 20)

    async def crashed_twice() -> bool:
        return len(await events_named(toru, plugin_id, "crashed")) >= 2

    await eventually(crashed_twice, within=30, what="a second crash after the restart")
    return error


async def clean_up_after(toru: Toru, file: str, ctx: dict[str, Any]) -> None:
    """Disable: the plugin's processes (every one Toru started) and socket are gone."""
    plugin_id = plugin_id_of(file)
    await disable(toru, plugin_id)
    socket = toru.socket_dir() / f"{plugin_id}.sock"
    assert not socket.exists(), socket
    for pid in await toru.pids(plugin_id):
        assert not alive(pid), f"{plugin_id}: pid {pid} still runs"
    for pid in ctx.get("also_gone", []):
        await eventually(lambda pid=pid: not alive(pid), within=2, what=f"{pid} gone")
    assert cmdline_mentions(str(toru.plugins / file)) == []
    if how := ctx.get("expected_how"):
        stopped = await events_named(toru, plugin_id, "stopped")
        exits = {"SIGTERM": "killed by SIGTERM", "SIGKILL": "killed by SIGKILL"}
        assert stopped[-1]["how"] == how, stopped[-1]
        assert stopped[-1]["exit"] == exits.get(how, "exited 0"), stopped[-1]
        ctx["stopped"] = stopped[-1]


@pytest.mark.slow
async def test_runtime_faults_leave_the_server_and_other_plugins_unharmed(
    tmp_path: Path, built_example: Path
) -> None:
    """Twenty runtime faults enabled at once on one server: each shows its precise reason
    (status, events, route answer, log), the server stays healthy, two good plugins answer
    every probe, and after disabling each fault no process, socket or zombie is left."""
    assert set(CHECKS) == {case.file for case in cases.RUNTIME}
    plugins = tmp_path / "plugins"
    shutil.copytree(built_example, plugins)
    install(plugins, *CHECKS)
    install_fixture(plugins)
    write_config(plugins, {"legacy-python": True, "hello-plugin-python": True})
    observed: dict[str, str] = {}
    failures: dict[str, str] = {}
    contexts: dict[str, dict[str, Any]] = {file: {} for file in CHECKS}
    with short_tmpdir() as tmpdir:
        async with running_toru(tmp_path, tmpdir=tmpdir) as toru:
            listing = (await toru.http.get("/api/plugins")).json()
            assert listing["rejected"] == []
            prober = Prober(toru.http, GOOD_ROUTES)

            async def run_case(file: str) -> None:
                try:
                    with trio.fail_after(180):
                        observed[file] = await CHECKS[file](
                            toru, plugin_id_of(file), contexts[file]
                        )
                        await clean_up_after(toru, file, contexts[file])
                except (AssertionError, trio.TooSlowError, httpx.HTTPError) as exc:
                    failures[file] = f"{type(exc).__name__}: {exc}"

            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(prober.run)
                async with trio.open_nursery() as cases_nursery:
                    for file in CHECKS:
                        cases_nursery.start_soon(run_case, file)
                nursery.cancel_scope.cancel()
            print(f"\n{len(CHECKS)} runtime faults in {trio.current_time() - started:.1f} s")
            for file in CHECKS:
                print(f"  {file}: {observed.get(file) or failures.get(file)}")
            assert failures == {}
            prober.check()
            print(f"  prober: {prober.answers} answers, all 200")
            assert zombies_of(toru.pid) == []
            socket_dir = toru.socket_dir()
            assert {p.name for p in socket_dir.glob("*.sock")} == {
                "legacy-python.sock",
                "hello-plugin-python.sock",
            }
            toru.server.send(signal.SIGTERM)
            assert await toru.server.wait(30) == 0
        assert not socket_dir.exists()
        assert cmdline_mentions(str(plugins)) == []
    assert {case.file for case in cases.RUNTIME} <= {p.name for p in CORPUS.iterdir()}
