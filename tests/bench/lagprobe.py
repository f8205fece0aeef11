"""``toru serve`` with an event-loop lag probe in the same Trio loop, for the benchmarks.

    TORU_BENCH_LAG_FILE=lag.jsonl python -m tests.bench.lagprobe

Runs the real ``toru serve`` command (same settings, same code path) with one
extra task beside ``toru.server.serve``: it sleeps 10 ms in a loop and records
by how much each sleep overshot, i.e. how long the loop was busy elsewhere
when the timer was due. It also times every garbage collection (``gc.callbacks``),
a usual suspect for the longest pauses. Twice a second it appends one JSON line,
``{"lag": [[t, ms], ...], "gc": [[t, generation, ms], ...]}`` with ``t`` in
CLOCK_MONOTONIC seconds, so a benchmark can pick the samples of a time window.
Not a server option: only benchmarks use it.
"""

from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path
from typing import Any

import trio

import toru.server
from toru import cli

INTERVAL = 0.01
FLUSH_EVERY = 0.5


class GcTimer:
    """Records the duration of every garbage collection, through ``gc.callbacks``."""

    def __init__(self) -> None:
        self.started = 0.0
        self.collections: list[tuple[float, int, float]] = []

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        now = time.monotonic()
        if phase == "start":
            self.started = now
        else:
            self.collections.append(
                (round(now, 4), info["generation"], round((now - self.started) * 1000, 3))
            )


async def probe(path: Path) -> None:
    """Measure the overshoot of ``trio.sleep(INTERVAL)`` until cancelled."""
    timer = GcTimer()
    gc.callbacks.append(timer)
    with path.open("a", encoding="utf-8") as out:
        pending: list[tuple[float, float]] = []
        flushed = time.monotonic()
        while True:
            before = trio.current_time()
            await trio.sleep(INTERVAL)
            lag = trio.current_time() - before - INTERVAL
            now = time.monotonic()
            pending.append((round(now, 4), round(lag * 1000, 3)))
            if now - flushed >= FLUSH_EVERY:
                # A few hundred bytes twice a second: negligible next to what it measures.
                out.write(json.dumps({"lag": pending, "gc": timer.collections}) + "\n")
                out.flush()
                pending, flushed, timer.collections = [], now, []


def with_probe(serve: Any, path: Path) -> Any:
    async def serve_with_probe(*args: Any, **kwargs: Any) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe, path, name="bench:lagprobe")
            await serve(*args, **kwargs)
            nursery.cancel_scope.cancel()

    return serve_with_probe


def read_lag(path: Path, start: float, end: float) -> tuple[list[float], list[tuple[int, float]]]:
    """Lag samples (ms), and (generation, ms) of each garbage collection, between *start*
    and *end* (CLOCK_MONOTONIC seconds)."""
    lags: list[float] = []
    collections: list[tuple[int, float]] = []
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            lags += [lag for when, lag in record["lag"] if start <= when <= end]
            collections += [(g, ms) for when, g, ms in record["gc"] if start <= when <= end]
    return lags, collections


def main() -> int:
    toru.server.serve = with_probe(toru.server.serve, Path(os.environ["TORU_BENCH_LAG_FILE"]))
    return cli.main(["serve"])


if __name__ == "__main__":
    raise SystemExit(main())
