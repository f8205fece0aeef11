"""What every benchmark shares: the machine record, a real ``toru serve``, plugins, wrk, output.

Benchmarks measure and print; they never assert on timing (STYLE 17). Each
prints one or more Markdown tables and, last, one JSON line starting with
``{"benchmark":`` that holds the machine, the parameters and every number.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

import toru

REPO = Path(__file__).resolve().parents[2]
BENCH_PLUGINS = REPO / "tests" / "bench" / "plugins"
SDK_SOURCE = BENCH_PLUGINS / "bench_sdk"
TINY_SOURCE = BENCH_PLUGINS / "tiny.py"
LEGACY_FIXTURE = REPO / "tests" / "fixtures" / "legacy_python.binary"
SDK_ID, SDK_ROUTE = "bench-sdk", "bench-sdk"
LEGACY_ID, LEGACY_ROUTE = "legacy-python", "legacy-python"
ADMIN_PASSWORD = "benchmark password"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
JSON_HEADERS = {"Content-Type": "application/json"}


# --- the machine ---------------------------------------------------------------------------


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _wrk_version() -> str:
    try:
        result = subprocess.run([WRK, "-v"], capture_output=True, text=True, check=False)
    except OSError:
        return "not installed"
    first = (result.stdout or result.stderr).strip().splitlines()
    return first[0].split(" [")[0] if first else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def python_speed_us() -> float:
    """Microseconds for ``sum(range(1000))``, best of 5: how fast this CPU runs Python.

    A yardstick to compare machines by (a 2023 desktop core: about 7 µs).
    """
    runs = timeit.repeat("sum(range(1000))", number=2000, repeat=5)
    return round(min(runs) / 2000 * 1e6, 1)


def machine() -> dict[str, Any]:
    """Where the numbers come from: hardware, versions, and how busy the machine was."""
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_mb": _mem_total_mb(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "toru": toru.__version__,
        "trio": _version("trio"),
        "hypercorn": _version("hypercorn"),
        "quart": _version("quart"),
        "quart_trio": _version("quart-trio"),
        "httpx": _version("httpx"),
        "wrk": _wrk_version(),
        "python_sum_range_1000_us": python_speed_us(),
        "loadavg_at_start": loadavg(),
    }


# --- statistics and output -----------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The *p*-th percentile (0-100), linear between the two nearest ranks; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p90, min and max of durations given in seconds, in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "median_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "min_ms": round(min(ms), 2) if ms else math.nan,
        "max_ms": round(max(ms), 2) if ms else math.nan,
    }


def fmt(value: object, digits: int = 1) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:,.{digits}f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown table, ready to paste into docs/benchmarks.md."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        print("| " + " | ".join(fmt(cell) for cell in row) + " |")
    print(flush=True)


def print_machine(info: dict[str, Any]) -> None:
    print(
        f"machine: {info['cores']} cores, {info['cpu_model']}, {info['memory_mb']} MB, "
        f"Linux {info['kernel']}; Python {info['python']}, toru {info['toru']}, "
        f"trio {info['trio']}, hypercorn {info['hypercorn']}, {info['wrk']}; "
        f"sum(range(1000)) {info['python_sum_range_1000_us']} µs; "
        f"load average {' '.join(str(x) for x in info['loadavg_at_start'])}",
        flush=True,
    )


def emit_json(name: str, info: dict[str, Any], params: dict[str, Any], results: Any) -> None:
    """The one JSON line of a benchmark (also appended to $TORU_BENCH_OUT when set)."""
    record = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": info,
        "loadavg_at_end": loadavg(),
        "params": params,
        "results": results,
    }
    line = json.dumps(record, separators=(",", ":"))
    print(line, flush=True)
    if out := os.environ.get("TORU_BENCH_OUT"):
        with open(out, "a", encoding="utf-8") as file:
            file.write(line + "\n")


def note(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def parser(description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description)


# --- plugins -------------------------------------------------------------------------------


def build_sdk_plugin(out_dir: Path, source: Path = SDK_SOURCE) -> Path:
    """``toru plugin build`` of an SDK plugin directory, as an author would run it."""
    command = [sys.executable, "-m", "toru", "plugin", "build", str(source), "-o", str(out_dir)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"cannot build {source}: {result.stderr.strip()}")
    line = result.stdout.split()
    return Path(line[1]) if len(line) > 1 else out_dir / f"{source.name}.binary"


def install_tiny(plugins_dir: Path, plugin_id: str) -> Path:
    """tests/bench/plugins/tiny.py as ``plugin_id.binary``, run by this interpreter.

    The shebang names ``sys.executable`` rather than ``/usr/bin/env python3``: on a
    machine where ``python3`` is a pyenv shim that alone costs ~150 ms per start.
    """
    body = TINY_SOURCE.read_text().split("\n", 1)[1]
    path = plugins_dir / f"{plugin_id}.binary"
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


def install_legacy(plugins_dir: Path) -> Path:
    target = plugins_dir / LEGACY_FIXTURE.name
    shutil.copy2(LEGACY_FIXTURE, target)
    return target


def enable(plugins_dir: Path, plugin_ids: Sequence[str]) -> None:
    """Write the enable state before the server starts: these plugins start with it."""
    metadata = plugins_dir / ".metadata"
    metadata.mkdir(parents=True, exist_ok=True)
    (metadata / "config.json").write_text(json.dumps({"plugins": dict.fromkeys(plugin_ids, True)}))


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A fresh directory for one server (data, logs, plugins), removed afterwards.

    Short, under /tmp: plugin sockets live below it and Unix socket paths are short.
    """
    with tempfile.TemporaryDirectory(prefix=f"tb-{prefix}-", dir="/tmp") as path:
        root = Path(path)
        (root / "plugins").mkdir()
        yield root


# --- a real server -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_mb(pid: int) -> float:
    """VmRSS of *pid* in MB (MiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def cpu_seconds(pid: int) -> float:
    """User + system CPU time *pid* has used so far, from /proc (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """``toru serve`` (or *command*) in a child process, with its own data, logs and plugins."""

    def __init__(
        self, root: Path, *, command: Sequence[str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = list(command or [sys.executable, "-m", "toru", "serve"])
        self.env = {
            **os.environ,
            "ADMIN_PASSWORD": ADMIN_PASSWORD,
            "TORU_DATA_DIR": str(root / "data"),
            "TORU_LOG_DIR": str(root / "logs"),
            "TORU_PLUGINS_DIR": str(root / "plugins"),
            "STEERING_HOST": "127.0.0.1",
            "STEERING_PORT": str(self.port),
            **(env or {}),
        }
        self.process: trio.Process | None = None
        self.spawned_at = 0.0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def spawn(self) -> None:
        with (self.root / "stderr.txt").open("ab") as stderr:
            self.spawned_at = time.monotonic()
            self.process = await trio.lowlevel.open_process(
                self.command, env=self.env, stdout=subprocess.DEVNULL, stderr=stderr
            )

    async def wait_healthy(self, within: float = 60, poll: float = 0.01) -> float:
        """Seconds from the spawn to the first 200 on /api/health."""
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:
            with trio.fail_after(within):
                while True:
                    if self.process is not None and self.process.poll() is not None:
                        stderr = (self.root / "stderr.txt").read_text()[-2000:]
                        raise SystemExit(f"toru serve exited {self.process.returncode}: {stderr}")
                    try:
                        if (await http.get("/api/health")).status_code == 200:
                            return time.monotonic() - self.spawned_at
                    except httpx.TransportError:
                        pass
                    await trio.sleep(poll)  # another process: nothing to wait on but a poll

    async def stop(self) -> None:
        """SIGTERM, wait (the ladder of every plugin), SIGKILL if it takes over 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        with trio.move_on_after(20, shield=True):
            await self.process.wait()
            return
        self.process.kill()
        with trio.move_on_after(5, shield=True):
            await self.process.wait()


@asynccontextmanager
async def running_server(
    root: Path, *, command: Sequence[str] | None = None, env: dict[str, str] | None = None
) -> AsyncIterator[Server]:
    server = Server(root, command=command, env=env)
    try:
        await server.spawn()
        await server.wait_healthy()
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def admin_session(url: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """An httpx client logged in as the environment administrator, and its session cookie."""
    async with httpx.AsyncClient(base_url=url, headers=JSON_HEADERS, timeout=30) as http:
        reply = await http.post(
            "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        if reply.status_code != 200:
            raise SystemExit(f"login failed: {reply.status_code} {reply.text}")
        yield http, str(http.cookies["session_id"])


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], *, within: float, what: str, poll: float = 0.05
) -> float:
    """Seconds until *predicate()* holds (polled: the state is in another process)."""
    started = time.monotonic()
    with trio.move_on_after(within):
        while not await predicate():  # noqa: ASYNC110 - another process's state: poll it
            await trio.sleep(poll)
        return time.monotonic() - started
    raise SystemExit(f"waited {within} s for {what}; it did not happen")


async def plugin_states(http: httpx.AsyncClient) -> dict[str, str]:
    reply = await http.get("/api/plugins")
    reply.raise_for_status()
    return {p["id"]: p["state"] for p in reply.json()["plugins"]}


async def wait_running(
    http: httpx.AsyncClient, plugin_ids: Sequence[str], *, within: float = 60
) -> float:
    async def all_running() -> bool:
        states = await plugin_states(http)
        return all(states.get(i) == "running" for i in plugin_ids)

    return await wait_until(all_running, within=within, what=f"{len(plugin_ids)} plugins running")


# --- wrk -----------------------------------------------------------------------------------

#: wrk's own end-of-run summary as one JSON line (latencies in microseconds).
WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nWRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"mean_us":%.1f,"max_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency.mean, latency.max, latency:percentile(50),
    latency:percentile(90), latency:percentile(99)))
end
"""


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def lua_rotating_paths(paths: Sequence[str]) -> str:
    """A wrk ``request`` function cycling through *paths* (GET)."""
    items = ", ".join(lua_string(p) for p in paths)
    return (
        f"local paths = {{{items}}}\nlocal i = 0\n"
        "request = function()\n  i = i % #paths + 1\n  return wrk.format('GET', paths[i])\nend\n"
    )


async def run_wrk(
    url: str,
    path: str,
    *,
    connections: int,
    duration: float,
    cookie: str | None = None,
    lua: str = "",
    timeout: float = 10,
) -> dict[str, Any]:
    """One wrk run (one thread, *connections* connections); its summary with req/s added."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua + WRK_DONE)
    command = [
        WRK, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
        f"--timeout={timeout:g}s", "--latency", "-s", script.name,
    ]  # fmt: skip
    if cookie:
        command += ["-H", f"Cookie: session_id={cookie}"]
    command.append(url + path)
    try:
        result = await trio.run_process(command, capture_stdout=True, capture_stderr=True)
    finally:
        os.unlink(script.name)
    output = result.stdout.decode()
    for line in output.splitlines():
        if line.startswith("WRK_JSON "):
            data: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            break
    else:
        raise SystemExit(f"wrk printed no summary:\n{output}\n{result.stderr.decode()}")
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    data["errors"] = sum(
        data[k]
        for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return data
