"""KV calls made while the database is busy share one trip to it and one transaction."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest
import trio
import trio.testing

from toru.db import Database
from toru.plugins.kv import Batcher, KvStore

T = TypeVar("T")


class CountingDatabase(Database):
    """A real database that counts the calls made to its worker thread."""

    calls = 0

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        CountingDatabase.calls += 1
        return await super().run(fn)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with CountingDatabase.open(tmp_path / "toru.db") as opened:
        await opened.run(lambda conn: conn.execute("CREATE TABLE t (x INTEGER)"))
        CountingDatabase.calls = 0
        yield opened


async def rows(db: Database) -> list[int]:
    return await db.run(lambda conn: [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")])


async def test_concurrent_sets_share_trips_to_the_database(db: Database) -> None:
    """Fifty concurrent sets are all stored, in far fewer database calls than fifty."""
    store = KvStore(db)
    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(store.set, "p", f"k{i}", f"v{i}")
    batched = CountingDatabase.calls
    assert batched < 10
    assert [await store.get("p", f"k{i}") for i in range(50)] == [f"v{i}" for i in range(50)]


async def test_a_failing_call_is_undone_alone(db: Database) -> None:
    """In one batch, the call that raises gets its error and none of its writes stay;
    the others are committed."""
    batcher = Batcher(db)
    gate = threading.Event()
    results: dict[int, object] = {}

    def insert(x: int, *, fail: bool = False, wait: bool = False) -> Callable[..., int]:
        def fn(conn: sqlite3.Connection) -> int:
            if wait:
                gate.wait(5)
            conn.execute("INSERT INTO t VALUES (?)", (x,))
            if fail:
                raise ValueError(f"call {x} failed")
            return x

        return fn

    async def call(x: int, **kwargs: bool) -> None:
        try:
            results[x] = await batcher.run(insert(x, **kwargs), write=True)
        except ValueError as exc:
            results[x] = str(exc)

    async with trio.open_nursery() as nursery:
        # Call 0 holds the database thread while 1, 2 and 3 queue up behind it.
        nursery.start_soon(partial(call, 0, wait=True))
        await trio.testing.wait_all_tasks_blocked()
        for x, fail in ((1, False), (2, True), (3, False)):
            nursery.start_soon(partial(call, x, fail=fail))
        await trio.testing.wait_all_tasks_blocked()
        gate.set()
    assert results == {0: 0, 1: 1, 2: "call 2 failed", 3: 3}
    assert await rows(db) == [0, 1, 3]
    assert CountingDatabase.calls == 2 + 1  # two batches, then rows()


async def test_a_call_cancelled_while_queued_never_runs(db: Database) -> None:
    """Cancelled before its batch began, a call is dropped: nothing of it reaches the disk."""
    batcher = Batcher(db)
    gate = threading.Event()

    def slow(conn: sqlite3.Connection) -> None:
        gate.wait(5)
        conn.execute("INSERT INTO t VALUES (1)")

    def dropped(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (2)")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(batcher.run, slow, write=True))
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(0.1) as scope:
            await batcher.run(dropped, write=True)
        assert scope.cancelled_caught
        gate.set()
    assert await rows(db) == [1]
