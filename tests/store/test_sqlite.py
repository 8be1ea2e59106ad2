"""Tests of bridge/store/sqlite.py (and the action JSON form of bridge/store/base.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bridge.errors import StoreUnavailable
from bridge.model import (
    Action,
    ActionKind,
    Alert,
    AlertStatus,
    IncidentStatus,
    IncidentView,
    Link,
    Recipient,
    Severity,
)
from bridge.store import (
    DeliveryState,
    JournalEntry,
    NewDelivery,
    SQLiteStore,
    Store,
    action_from_dict,
    action_to_dict,
    new_deliveries,
)

T = TypeVar("T")
T0 = 1_700_000_000.0


def with_store(tmp_path: Path, body: Callable[[SQLiteStore], Awaitable[T]], **kwargs: Any) -> T:
    """Run `body(store)` on a fresh event loop with a store in `tmp_path`, closing it after."""

    async def main() -> T:
        store = SQLiteStore(tmp_path, **kwargs)
        try:
            return await body(store)
        finally:
            await store.aclose()

    return asyncio.run(main())


def alert(n: int = 1, status: AlertStatus = AlertStatus.FIRING) -> Alert:
    return Alert(
        source="am", fingerprint=f"fp{n}", key=f"fp{n}:1", status=status, severity=Severity.CRITICAL,
        summary=f"disk full {n}", starts_at=T0 + 0.25, labels={"host": f"h{n}"},
        annotations={"runbook": "r"}, links=(Link("https://x/1", "graph"),), raw_ref="raw/1",
    )


def action(kind: ActionKind = ActionKind.OPEN, incident: str = "inc1", revision: int = 1,
           sinks: tuple[str, ...] = ("pager",)) -> Action:
    view = IncidentView(
        id=incident, key=f"key-{incident}", route="db", status=IncidentStatus.TRIGGERED, priority="P1",
        priority_reason="critical", pool="dba", title="Disk full", revision=revision,
        opened_at=T0 + 0.123, updated_at=T0 + 1.5, resolved_at=None, acknowledged_by=None,
        alerts=(alert(1), alert(2, AlertStatus.RESOLVED)), group_labels={"cluster": "c1"},
    )
    return Action(kind=kind, at=T0 + 1.234567, incident=view, sinks=sinks, reason="opened by grouping")


def delivery(key: str, sink: str = "pager", incident: str = "inc1", revision: int = 1,
             kind: str = "open") -> NewDelivery:
    return NewDelivery(key, sink, incident, revision, kind, {"kind": kind, "n": key})


# ------------------------------------------------------------------------------------------- journal

def test_concurrent_appends_get_monotonic_seqs_from_one(tmp_path: Path) -> None:
    """Concurrent appends get seqs 1..n, each entry reads back under its own seq."""

    async def body(store: SQLiteStore) -> None:
        results = await asyncio.gather(*(store.append("alerts", f"s{i}", {"i": i}, T0 + i)
                                         for i in range(50)))
        assert sorted(e.seq for e in results) == list(range(1, 51))
        by_seq = {e.seq: e for e in results}
        read = list(store.entries())
        assert [e.seq for e in read] == list(range(1, 51))
        assert read == [by_seq[e.seq] for e in read]
        assert store.last_seq() == 50

    with_store(tmp_path, body)


def test_on_commit_sees_batches_in_seq_order_before_awaiters_resume(tmp_path: Path) -> None:
    """on_commit gets every committed batch in seq order, and an append returns only after it ran."""
    batches: list[list[int]] = []
    applied: set[int] = set()

    def on_commit(entries: list[JournalEntry]) -> None:
        assert threading.current_thread() is threading.main_thread()
        batches.append([e.seq for e in entries])
        applied.update(e.seq for e in entries)

    async def one(store: SQLiteStore, i: int) -> None:
        for j in range(5):
            entry = await store.append("alerts", "am", {"i": i, "j": j}, T0)
            assert entry.seq in applied

    async def body(store: SQLiteStore) -> None:
        await asyncio.gather(*(one(store, i) for i in range(40)))

    with_store(tmp_path, body, on_commit=on_commit)
    assert [seq for batch in batches for seq in batch] == list(range(1, 201))


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


def test_journal_survives_close_and_reopen(tmp_path: Path) -> None:
    """Entries committed before close are read back, identical, after reopening the file."""

    async def write(store: SQLiteStore) -> list[JournalEntry]:
        return [await store.append("alerts", "am", {"alerts": [alert(i).to_dict()]}, T0 + i / 3)
                for i in range(3)] + [await store.append("acknowledge", "api", {"incident": "x"}, T0 + 9)]

    written = with_store(tmp_path, write)

    async def reopen(store: SQLiteStore) -> JournalEntry:
        assert list(store.entries()) == written
        assert Alert.from_dict(list(store.entries())[1].data["alerts"][0]) == alert(1)
        assert store.last_seq() == 4
        return await store.append("resolve", "api", {}, T0 + 10)

    assert with_store(tmp_path, reopen).seq == 5
    assert (tmp_path / "alertbridge.db").exists()


@pytest.mark.parametrize(("after_seq", "expected_first", "expected_count"), [
    (0, 1, 2500), (999, 1000, 1501), (1000, 1001, 1500), (2499, 2500, 1), (2500, None, 0),
], ids=["all", "across-a-page-edge", "at-a-page-edge", "last-only", "nothing-after-the-end"])
def test_entries_streams_the_tail_in_seq_order(tmp_path: Path, after_seq: int, expected_first: int | None,
                                               expected_count: int) -> None:
    """entries(after_seq) yields exactly the entries after it, in order, across read pages."""

    async def body(store: SQLiteStore) -> None:
        await asyncio.gather(*(store.append("alerts", "am", {"i": i}, T0) for i in range(2500)))
        seqs = [e.seq for e in store.entries(after_seq)]
        assert len(seqs) == expected_count
        assert seqs == list(range(after_seq + 1, 2501))
        assert (seqs[0] if seqs else None) == expected_first

    with_store(tmp_path, body)


def test_append_rejects_data_that_is_not_json_before_writing(tmp_path: Path) -> None:
    """An append whose data cannot be serialised raises TypeError and journals nothing."""

    async def body(store: SQLiteStore) -> None:
        with pytest.raises(TypeError):
            await store.append("alerts", "am", {"x": object()}, T0)
        assert store.last_seq() == 0

    with_store(tmp_path, body)


def test_entry_data_is_what_a_replay_reads(tmp_path: Path) -> None:
    """on_commit receives the data as the journal stores it (tuples become lists), like a replay."""
    seen: list[JournalEntry] = []

    async def body(store: SQLiteStore) -> None:
        entry = await store.append("alerts", "am", {"pair": (1, 2)}, T0)
        assert entry.data == {"pair": [1, 2]}
        assert list(store.entries()) == seen == [entry]

    with_store(tmp_path, body, on_commit=seen.extend)


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


def test_on_commit_error_reaches_the_appenders_but_the_entry_stays(tmp_path: Path) -> None:
    """If on_commit raises, the batch's appends raise it, and the entries remain journaled."""

    def on_commit(entries: list[JournalEntry]) -> None:
        raise RuntimeError("engine bug")

    async def body(store: SQLiteStore) -> None:
        with pytest.raises(RuntimeError, match="engine bug"):
            await store.append("alerts", "am", {}, T0)
        assert store.last_seq() == 1

    with_store(tmp_path, body, on_commit=on_commit)


def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    """After aclose, a write raises StoreUnavailable instead of hanging."""

    async def main() -> None:
        store = SQLiteStore(tmp_path)
        await store.aclose()
        with pytest.raises(StoreUnavailable):
            await store.append("alerts", "am", {}, T0)
        with pytest.raises(StoreUnavailable):
            await store.due(T0, 10)

    asyncio.run(main())


def test_sqlite_store_satisfies_the_store_contract(tmp_path: Path) -> None:
    """SQLiteStore is a Store (journal + outbox) by the Protocol's runtime check."""

    async def body(store: SQLiteStore) -> None:
        assert isinstance(store, Store)

    with_store(tmp_path, body)


def test_durability_pragmas_are_set(tmp_path: Path) -> None:
    """The database is in WAL mode, and the writer commits with synchronous=FULL."""

    async def body(store: SQLiteStore) -> None:
        assert store._wconn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._wconn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL

    with_store(tmp_path, body)


# -------------------------------------------------------------------------------------------- outbox

def test_enqueue_ignores_known_idempotency_keys(tmp_path: Path) -> None:
    """Enqueueing a known key again is a no-op, within one call and across calls."""

    async def body(store: SQLiteStore) -> None:
        assert await store.enqueue([delivery("a"), delivery("b"), delivery("a")], T0) == 2
        assert await store.enqueue([delivery("a"), delivery("c")], T0 + 5) == 1
        assert await store.pending_count() == 3
        first = await store.get_delivery(1)
        assert first is not None
        assert (first.idempotency_key, first.created_at, first.attempts) == ("a", T0, 0)

    with_store(tmp_path, body)


def test_enqueue_is_idempotent_across_a_restart(tmp_path: Path) -> None:
    """Re-enqueueing the same actions after reopening the file adds nothing."""
    rows = new_deliveries(action(sinks=("pager", "chat")))
    assert with_store(tmp_path, lambda s: s.enqueue(rows, T0)) == 2
    assert with_store(tmp_path, lambda s: s.enqueue(rows, T0 + 60)) == 0


def test_enqueue_nowait_from_the_commit_hook_lands_in_order(tmp_path: Path) -> None:
    """Sync code on the loop (the commit hook) can enqueue without awaiting; it is applied in order."""
    futures: list[asyncio.Future[int]] = []
    holder: dict[str, SQLiteStore] = {}

    def on_commit(entries: list[JournalEntry]) -> None:
        for e in entries:
            rows = [delivery(f"k{e.seq}", incident=f"i{e.seq}")]
            futures.append(holder["store"].enqueue_nowait(rows, e.at))

    async def body(store: SQLiteStore) -> None:
        holder["store"] = store
        await asyncio.gather(*(store.append("alerts", "am", {}, T0 + i) for i in range(3)))
        assert await asyncio.gather(*futures) == [1, 1, 1]
        pending = await store.due(T0 + 10, 10)
        assert [d.idempotency_key for d in pending] == ["k1", "k2", "k3"]

    with_store(tmp_path, body, on_commit=on_commit)


HEAD_CASES = [
    # what happens to the head (a: pager/inc1 open) -> keys due at T0 + 10
    ("untouched", ["a", "c", "d"]),
    ("delivered", ["b", "c", "d"]),
    ("dead", ["b", "c", "d"]),
    ("retry-later", ["c", "d"]),
    ("retry-due", ["a", "c", "d"]),
]


@pytest.mark.parametrize(("head", "expected"), HEAD_CASES, ids=[c[0] for c in HEAD_CASES])
def test_due_hands_out_only_the_oldest_pending_per_sink_and_incident(
        tmp_path: Path, head: str, expected: list[str]) -> None:
    """A later delivery of an incident to a sink waits until the earlier one is delivered or dead."""

    async def body(store: SQLiteStore) -> None:
        await store.enqueue([
            delivery("a", "pager", "inc1", 1, "open"),
            delivery("b", "pager", "inc1", 2, "resolve"),
            delivery("c", "chat", "inc1", 1, "open"),
            delivery("d", "pager", "inc2", 1, "open"),
        ], T0)
        if head == "delivered":
            await store.mark_delivered(1, T0 + 1)
        elif head == "dead":
            await store.mark_dead(1, "400 bad request", T0 + 1)
        elif head == "retry-later":
            await store.mark_retry(1, T0 + 60, "503", T0 + 1)
        elif head == "retry-due":
            await store.mark_retry(1, T0 + 5, "503", T0 + 1)
        assert [d.idempotency_key for d in await store.due(T0 + 10, 10)] == expected

    with_store(tmp_path, body)


def test_due_respects_next_at_limit_and_oldest_first(tmp_path: Path) -> None:
    """due() returns only deliveries whose time has come, oldest id first, at most `limit`."""

    async def body(store: SQLiteStore) -> None:
        await store.enqueue([delivery("a", incident="i1")], T0 + 5)
        await store.enqueue([delivery("b", incident="i2"), delivery("c", incident="i3")], T0)
        assert [d.idempotency_key for d in await store.due(T0, 10)] == ["b", "c"]
        assert [d.idempotency_key for d in await store.due(T0 + 5, 10)] == ["a", "b", "c"]
        assert [d.idempotency_key for d in await store.due(T0 + 5, 2)] == ["a", "b"]

    with_store(tmp_path, body)


def test_next_due_at_considers_only_heads(tmp_path: Path) -> None:
    """next_due_at is the earliest next_at of a delivery that due() could return."""

    async def body(store: SQLiteStore) -> None:
        assert await store.next_due_at() is None
        await store.enqueue([delivery("a"), delivery("b", revision=2)], T0)
        await store.mark_retry(1, T0 + 30, "503", T0)
        assert await store.next_due_at() == T0 + 30  # b is due at T0 but waits behind a
        await store.enqueue([delivery("c", incident="inc2")], T0 + 20)
        assert await store.next_due_at() == T0 + 20

    with_store(tmp_path, body)


def test_marks_record_the_delivery_history(tmp_path: Path) -> None:
    """mark_retry counts attempts and reschedules; mark_delivered ends it; later marks are refused."""

    async def body(store: SQLiteStore) -> None:
        await store.enqueue([delivery("a")], T0)
        assert await store.mark_retry(1, T0 + 2, "503 unavailable", T0 + 1)
        assert await store.mark_retry(1, T0 + 6, "timeout", T0 + 2)
        d = await store.get_delivery(1)
        assert d is not None
        assert (d.state, d.attempts, d.next_at, d.last_error, d.updated_at) == (
            DeliveryState.PENDING, 2, T0 + 6, "timeout", T0 + 2)
        assert await store.mark_delivered(1, T0 + 6)
        assert not await store.mark_delivered(1, T0 + 7)
        assert not await store.mark_retry(1, T0 + 9, "x", T0 + 7)
        assert not await store.mark_dead(1, "x", T0 + 7)
        d = await store.get_delivery(1)
        assert d is not None
        assert (d.state, d.attempts, d.updated_at) == ("delivered", 2, T0 + 6)

    with_store(tmp_path, body)


def test_dead_letters_can_be_listed_and_retried(tmp_path: Path) -> None:
    """A dead delivery is listed newest first, and retry_dead makes it pending and due again."""

    async def body(store: SQLiteStore) -> None:
        await store.enqueue([delivery("a", incident="i1"), delivery("b", incident="i2"),
                             delivery("c", incident="i3")], T0)
        assert await store.mark_dead(1, "gave up", T0 + 1)
        assert await store.mark_dead(3, "unknown sink", T0 + 1, attempted=False)
        dead = await store.dead_letters(10)
        assert [(d.idempotency_key, d.attempts, d.last_error) for d in dead] == [
            ("c", 0, "unknown sink"), ("a", 1, "gave up")]
        assert [d.idempotency_key for d in await store.dead_letters(1, offset=1)] == ["a"]

        assert await store.retry_dead(1, T0 + 100)
        assert not await store.retry_dead(1, T0 + 100)  # no longer dead
        assert not await store.retry_dead(2, T0 + 100)  # never dead
        again = await store.get_delivery(1)
        assert again is not None
        assert (again.state, again.attempts, again.next_at, again.last_error) == (
            "pending", 0, T0 + 100, "gave up")
        assert [d.idempotency_key for d in await store.due(T0 + 100, 10)] == ["a", "b"]

    with_store(tmp_path, body)


def test_counts_report_every_state(tmp_path: Path) -> None:
    """counts() has a key per state, zeros included; pending_count agrees with it."""

    async def body(store: SQLiteStore) -> None:
        assert await store.counts() == {"pending": 0, "delivered": 0, "dead": 0}
        await store.enqueue([delivery(k, incident=k) for k in "abcd"], T0)
        await store.mark_delivered(1, T0)
        await store.mark_dead(2, "x", T0)
        assert await store.counts() == {"pending": 2, "delivered": 1, "dead": 1}
        assert await store.pending_count() == 2
        assert await store.get_delivery(99) is None

    with_store(tmp_path, body)


# ----------------------------------------------------------------------------------- action JSON form

def test_action_round_trips_through_its_json_form() -> None:
    """action_from_dict inverts action_to_dict (times with millisecond precision)."""
    original = action(ActionKind.RESOLVE)
    form = action_to_dict(original)
    assert set(form) == {"kind", "at", "reason", "sinks", "incident", "recipients"}
    assert action_from_dict(form) == original


def test_action_round_trips_with_recipients_and_pool_state() -> None:
    """Recipients, assignee, escalation level, SLA targets and root cause survive the round trip."""
    base = action(ActionKind.ESCALATE)
    incident = replace(base.incident, assignee="alice", escalation_level=2, root_cause="db",
                       sla={"acknowledge_by": 1709543823.0, "resolve_by": 1709547123.5})
    original = replace(base, incident=incident,
                       recipients=(Recipient("bob", {"email": "bob@example.org", "slack": "U0B"}),))
    assert action_from_dict(action_to_dict(original)) == original


def test_action_round_trips_with_a_resolved_time() -> None:
    """A resolved incident's resolved_at survives the round trip."""
    base = action()
    view = IncidentView(**{f: getattr(base.incident, f) for f in base.incident.__dataclass_fields__} |
                        {"status": IncidentStatus.RESOLVED, "resolved_at": T0 + 7.5,
                         "acknowledged_by": "ana"})
    resolved = Action(ActionKind.RESOLVE, T0 + 8, view, ("pager",))
    assert action_from_dict(action_to_dict(resolved)) == resolved


def test_new_deliveries_key_each_sink_by_the_action_idempotency_key() -> None:
    """new_deliveries makes one row per sink, keyed (incident, sink, revision)."""
    a = action(ActionKind.UPDATE, incident="inc7", revision=3, sinks=("pager", "chat"))
    rows = new_deliveries(a)
    assert [(r.idempotency_key, r.sink, r.incident_id, r.revision, r.kind) for r in rows] == [
        ("inc7:pager:3", "pager", "inc7", 3, "update"), ("inc7:chat:3", "chat", "inc7", 3, "update")]
    assert action_from_dict(rows[0].action) == a


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
