"""SQLite-specific tests of bridge/store/sqlite.py; the shared Store contract is in test_contract.py."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bridge.errors import StoreUnavailable
from bridge.store import JournalEntry, SQLiteStore
from tests.store.conftest import T0, alert, delivery

T = TypeVar("T")


def with_store(tmp_path: Path, body: Callable[[SQLiteStore], Awaitable[T]], **kwargs: Any) -> T:
    """Run `body(store)` on a fresh event loop with a store in `tmp_path`, closing it after."""

    async def main() -> T:
        store = SQLiteStore(tmp_path, **kwargs)
        try:
            return await body(store)
        finally:
            await store.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize(("max_batch", "expected"), [
    (1000, [[1], list(range(2, 51))]),
    (20, [[1], list(range(2, 22)), list(range(22, 42)), list(range(42, 51))]),
], ids=["all-queued-in-one-batch", "batches-capped-at-max_batch"])
def test_group_commit_writes_everything_queued_in_one_transaction(
        tmp_path: Path, max_batch: int, expected: list[list[int]]) -> None:
    """While one commit runs, the appends that queue up are committed together, max_batch at a time."""
    batches: list[list[int]] = []
    entered, release = threading.Event(), threading.Event()

    async def body(store: SQLiteStore) -> None:
        commit = store._commit
        commits = 0

        def gated_commit(conn: sqlite3.Connection) -> None:
            nonlocal commits
            commits += 1
            if commits == 1:  # hold the first batch in its commit while the others queue up
                entered.set()
                release.wait(5)
            commit(conn)

        store._commit = gated_commit  # type: ignore[method-assign]  # fault-injection seam
        first = asyncio.create_task(store.append("alerts", "am", {"i": 0}, T0))
        await asyncio.to_thread(entered.wait, 5)
        rest = [asyncio.create_task(store.append("alerts", "am", {"i": i}, T0)) for i in range(1, 50)]
        await asyncio.sleep(0)  # let every task queue its append (a yield, not a wait)
        release.set()
        await asyncio.gather(first, *rest)
        assert commits == len(expected)

    with_store(tmp_path, body, max_batch=max_batch,
               on_commit=lambda entries: batches.append([e.seq for e in entries]))
    assert batches == expected


def test_commit_failure_fails_every_awaiter_and_leaves_nothing_visible(tmp_path: Path) -> None:
    """A failed commit gives StoreUnavailable to every write of the batch and rolls all of it back."""
    committed: list[JournalEntry] = []

    async def body(store: SQLiteStore) -> None:
        commit = store._commit
        failing = True

        def flaky_commit(conn: sqlite3.Connection) -> None:
            if failing:
                raise sqlite3.OperationalError("disk I/O error")
            commit(conn)

        store._commit = flaky_commit  # type: ignore[method-assign]  # fault-injection seam
        writes: list[Awaitable[object]] = [store.append("alerts", "am", {"i": i}, T0) for i in range(5)]
        writes.append(store.enqueue([delivery("k1")], T0))
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        assert "disk I/O error" in str(results[0])
        assert store.last_seq() == 0
        assert list(store.entries()) == []
        assert await store.counts() == {"pending": 0, "delivered": 0, "dead": 0}
        assert committed == []

        failing = False
        assert (await store.append("alerts", "am", {"i": 9}, T0)).seq == 1
        assert await store.enqueue([delivery("k1")], T0) == 1

    with_store(tmp_path, body, on_commit=committed.extend)


def test_durability_pragmas_are_set(tmp_path: Path) -> None:
    """The database file is in the data dir, in WAL mode, and the writer commits with synchronous=FULL."""

    async def body(store: SQLiteStore) -> None:
        assert store._wconn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._wconn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL

    with_store(tmp_path, body)
    assert (tmp_path / "alertbridge.db").exists()


# ----------------------------------------------------------------------------------------- benchmark

@pytest.mark.slow
def test_group_commit_throughput(tmp_path: Path) -> None:
    """Benchmark: 200 concurrent tasks append 20,000 alert entries; prints entries/s and batch size."""
    batches: list[int] = []
    payload = {"alerts": [alert(1).to_dict()]}

    async def one(store: SQLiteStore, n: int) -> None:
        for _ in range(n):
            await store.append("alerts", "am", payload, T0)

    async def body(store: SQLiteStore) -> float:
        started = time.perf_counter()
        await asyncio.gather(*(one(store, 100) for _ in range(200)))
        return time.perf_counter() - started

    elapsed = with_store(tmp_path, body, on_commit=lambda entries: batches.append(len(entries)))
    assert sum(batches) == 20_000
    print(f"\ngroup commit: 20000 entries in {elapsed:.2f}s = {20_000 / elapsed:,.0f} entries/s, "
          f"{len(batches)} commits, mean batch {20_000 / len(batches):.1f}, max batch {max(batches)}")
