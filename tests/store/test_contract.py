"""The Store contract (bridge/store/base.py), run against every backend: SQLite and Redis.

Each test gets `backend` (see conftest.py): `backend.run(body)` runs `body(store)` with a freshly
opened store, and a second `backend.run` opens the same data again, as a restart would. The
action JSON form, which no backend touches, is tested once at the end.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from dataclasses import replace

import pytest

from bridge.errors import StoreUnavailable
from bridge.model import Action, ActionKind, Alert, IncidentStatus, IncidentView, Recipient
from bridge.store import (
    DeliveryState,
    JournalEntry,
    Store,
    action_from_dict,
    action_to_dict,
    new_deliveries,
)
from tests.store.conftest import T0, Backend, action, alert, delivery

# ------------------------------------------------------------------------------------------- journal


def test_store_satisfies_the_store_protocol(backend: Backend) -> None:
    """The backend is a Store (journal + outbox) by the Protocol's runtime check."""

    async def body(store: Store) -> None:
        assert isinstance(store, Store)

    backend.run(body)


def test_concurrent_appends_get_monotonic_seqs_from_one(backend: Backend) -> None:
    """Concurrent appends get seqs 1..n, each entry reads back under its own seq."""

    async def body(store: Store) -> None:
        results = await asyncio.gather(*(store.append("alerts", f"s{i}", {"i": i}, T0 + i)
                                         for i in range(50)))
        assert sorted(e.seq for e in results) == list(range(1, 51))
        by_seq = {e.seq: e for e in results}
        read = list(store.entries())
        assert [e.seq for e in read] == list(range(1, 51))
        assert read == [by_seq[e.seq] for e in read]
        assert store.last_seq() == 50

    backend.run(body)


def test_on_commit_sees_batches_in_seq_order_before_awaiters_resume(backend: Backend) -> None:
    """on_commit gets every committed batch in seq order, and an append returns only after it ran."""
    batches: list[list[int]] = []
    applied: set[int] = set()

    def on_commit(entries: list[JournalEntry]) -> None:
        assert threading.current_thread() is threading.main_thread()
        batches.append([e.seq for e in entries])
        applied.update(e.seq for e in entries)

    async def one(store: Store, i: int) -> None:
        for j in range(5):
            entry = await store.append("alerts", "am", {"i": i, "j": j}, T0)
            assert entry.seq in applied

    async def body(store: Store) -> None:
        await asyncio.gather(*(one(store, i) for i in range(40)))

    backend.run(body, on_commit=on_commit)
    assert [seq for batch in batches for seq in batch] == list(range(1, 201))


def test_journal_survives_close_and_reopen(backend: Backend) -> None:
    """Entries committed before close are read back, identical, by a store opened afterwards."""

    async def write(store: Store) -> list[JournalEntry]:
        return [await store.append("alerts", "am", {"alerts": [alert(i).to_dict()]}, T0 + i / 3)
                for i in range(3)] + [await store.append("acknowledge", "api", {"incident": "x"}, T0 + 9)]

    written = backend.run(write)

    async def reopen(store: Store) -> JournalEntry:
        assert list(store.entries()) == written
        assert Alert.from_dict(list(store.entries())[1].data["alerts"][0]) == alert(1)
        assert store.last_seq() == 4
        return await store.append("resolve", "api", {}, T0 + 10)

    assert backend.run(reopen).seq == 5


@pytest.mark.parametrize(("after_seq", "expected_first", "expected_count"), [
    (0, 1, 2500), (999, 1000, 1501), (1000, 1001, 1500), (2499, 2500, 1), (2500, None, 0),
], ids=["all", "across-a-page-edge", "at-a-page-edge", "last-only", "nothing-after-the-end"])
def test_entries_streams_the_tail_in_seq_order(backend: Backend, after_seq: int, expected_first: int | None,
                                               expected_count: int) -> None:
    """entries(after_seq) yields exactly the entries after it, in order, across read pages."""

    async def body(store: Store) -> None:
        await asyncio.gather(*(store.append("alerts", "am", {"i": i}, T0) for i in range(2500)))
        seqs = [e.seq for e in store.entries(after_seq)]
        assert len(seqs) == expected_count
        assert seqs == list(range(after_seq + 1, 2501))
        assert (seqs[0] if seqs else None) == expected_first

    backend.run(body)


def test_append_rejects_data_that_is_not_json_before_writing(backend: Backend) -> None:
    """An append whose data cannot be serialised raises TypeError and journals nothing."""

    async def body(store: Store) -> None:
        with pytest.raises(TypeError):
            await store.append("alerts", "am", {"x": object()}, T0)
        assert store.last_seq() == 0
        assert (await store.append("alerts", "am", {}, T0)).seq == 1

    backend.run(body)


def test_entry_data_and_time_are_what_a_replay_reads(backend: Backend) -> None:
    """on_commit receives the entry as the journal stores it (tuples become lists, times exact)."""
    seen: list[JournalEntry] = []

    async def body(store: Store) -> None:
        entry = await store.append("alerts", "am", {"pair": (1, 2), "text": "ünïcode"}, T0 + 1 / 3)
        assert entry.data == {"pair": [1, 2], "text": "ünïcode"}
        assert entry.at == T0 + 1 / 3
        assert list(store.entries()) == seen == [entry]

    backend.run(body, on_commit=seen.extend)


def test_on_commit_error_reaches_the_appenders_but_the_entry_stays(backend: Backend) -> None:
    """If on_commit raises, the batch's appends raise it, and the entries remain journaled."""

    def on_commit(entries: list[JournalEntry]) -> None:
        raise RuntimeError("engine bug")

    async def body(store: Store) -> None:
        with pytest.raises(RuntimeError, match="engine bug"):
            await store.append("alerts", "am", {}, T0)
        assert store.last_seq() == 1

    backend.run(body, on_commit=on_commit)


def test_closed_store_refuses_writes_and_reads(backend: Backend) -> None:
    """After aclose, writes and reads raise StoreUnavailable instead of hanging."""

    async def main() -> None:
        store = backend.open()
        await store.append("alerts", "am", {}, T0)
        await store.aclose()
        await store.aclose()  # idempotent
        calls: list[Awaitable[object]] = [store.append("alerts", "am", {}, T0), store.enqueue([delivery("a")], T0),
                                          store.mark_delivered(1, T0), store.due(T0, 10), store.counts()]
        for call in calls:
            with pytest.raises(StoreUnavailable):
                await call
        with pytest.raises(StoreUnavailable):
            store.enqueue_nowait([delivery("a")], T0)
        with pytest.raises(StoreUnavailable):
            store.last_seq()

    asyncio.run(main())


# -------------------------------------------------------------------------------------------- outbox

def test_enqueue_ignores_known_idempotency_keys(backend: Backend) -> None:
    """Enqueueing a known key again is a no-op, within one call and across calls."""

    async def body(store: Store) -> None:
        assert await store.enqueue([delivery("a"), delivery("b"), delivery("a")], T0) == 2
        assert await store.enqueue([delivery("a"), delivery("c")], T0 + 5) == 1
        assert await store.enqueue([], T0 + 6) == 0
        assert await store.pending_count() == 3
        first = await store.get_delivery(1)
        assert first is not None
        assert (first.idempotency_key, first.created_at, first.attempts) == ("a", T0, 0)

    backend.run(body)


def test_enqueue_is_idempotent_across_a_restart(backend: Backend) -> None:
    """Re-enqueueing the same actions in a store opened afterwards adds nothing."""
    rows = new_deliveries(action(sinks=("pager", "chat")))
    assert backend.run(lambda s: s.enqueue(rows, T0)) == 2
    assert backend.run(lambda s: s.enqueue(rows, T0 + 60)) == 0


def test_enqueue_nowait_from_the_commit_hook_lands_in_order(backend: Backend) -> None:
    """Sync code on the loop (the commit hook) can enqueue without awaiting; it is applied in order."""
    futures: list[asyncio.Future[int]] = []
    holder: dict[str, Store] = {}

    def on_commit(entries: list[JournalEntry]) -> None:
        for e in entries:
            rows = [delivery(f"k{e.seq}", incident=f"i{e.seq}")]
            futures.append(holder["store"].enqueue_nowait(rows, e.at))

    async def body(store: Store) -> None:
        holder["store"] = store
        await asyncio.gather(*(store.append("alerts", "am", {}, T0 + i) for i in range(3)))
        assert await asyncio.gather(*futures) == [1, 1, 1]
        pending = await store.due(T0 + 10, 10)
        assert [d.idempotency_key for d in pending] == ["k1", "k2", "k3"]

    backend.run(body, on_commit=on_commit)


def test_the_action_survives_the_outbox(backend: Backend) -> None:
    """An action enqueued with new_deliveries comes back from due() and get_delivery() unchanged."""
    original = action(ActionKind.OPEN, sinks=("pager", "chat"))

    async def body(store: Store) -> None:
        await store.enqueue(new_deliveries(original), T0)
        due = await store.due(T0, 10)
        assert [(d.sink, d.incident_id, d.revision, d.kind) for d in due] == [
            ("pager", "inc1", 1, "open"), ("chat", "inc1", 1, "open")]
        assert all(action_from_dict(d.action) == original for d in due)
        again = await store.get_delivery(due[1].id)
        assert again is not None
        assert action_from_dict(again.action) == original
        assert again.action == action_to_dict(original)

    backend.run(body)


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
        backend: Backend, head: str, expected: list[str]) -> None:
    """A later delivery of an incident to a sink waits until the earlier one is delivered or dead."""

    async def body(store: Store) -> None:
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

    backend.run(body)


def test_sink_and_incident_pairs_are_told_apart_exactly(backend: Backend) -> None:
    """(sink "a:b", incident "c") and (sink "a", incident "b:c") are different pairs, never one lane."""

    async def body(store: Store) -> None:
        await store.enqueue([delivery("x", "a:b", "c"), delivery("y", "a", "b:c"), delivery("z", "a%3Ab", "c")],
                            T0)
        assert [d.idempotency_key for d in await store.due(T0, 10)] == ["x", "y", "z"]

    backend.run(body)


def test_due_respects_next_at_limit_and_oldest_first(backend: Backend) -> None:
    """due() returns only deliveries whose time has come, oldest id first, at most `limit`."""

    async def body(store: Store) -> None:
        await store.enqueue([delivery("a", incident="i1")], T0 + 5)
        await store.enqueue([delivery("b", incident="i2"), delivery("c", incident="i3")], T0)
        assert [d.idempotency_key for d in await store.due(T0, 10)] == ["b", "c"]
        assert [d.idempotency_key for d in await store.due(T0 + 5, 10)] == ["a", "b", "c"]
        assert [d.idempotency_key for d in await store.due(T0 + 5, 2)] == ["a", "b"]
        assert await store.due(T0 + 5, 0) == []

    backend.run(body)


def test_due_orders_by_id_not_by_next_at(backend: Backend) -> None:
    """Among due deliveries the oldest id comes first, even when a newer one has an earlier next_at."""

    async def body(store: Store) -> None:
        await store.enqueue([delivery(k, incident=k) for k in ("a", "b", "c")], T0)
        await store.mark_retry(1, T0 + 3, "503", T0)
        await store.mark_retry(2, T0 + 2, "503", T0)
        assert [d.idempotency_key for d in await store.due(T0 + 3, 10)] == ["a", "b", "c"]
        assert [d.idempotency_key for d in await store.due(T0 + 3, 1)] == ["a"]

    backend.run(body)


def test_next_due_at_considers_only_heads(backend: Backend) -> None:
    """next_due_at is the earliest next_at of a delivery that due() could return."""

    async def body(store: Store) -> None:
        assert await store.next_due_at() is None
        await store.enqueue([delivery("a"), delivery("b", revision=2)], T0)
        await store.mark_retry(1, T0 + 30, "503", T0)
        assert await store.next_due_at() == T0 + 30  # b is due at T0 but waits behind a
        await store.enqueue([delivery("c", incident="inc2")], T0 + 20)
        assert await store.next_due_at() == T0 + 20
        await store.mark_delivered(1, T0 + 30)
        assert await store.next_due_at() == T0  # b heads its lane now
        await store.mark_delivered(2, T0 + 30)
        await store.mark_dead(3, "x", T0 + 30)
        assert await store.next_due_at() is None

    backend.run(body)


def test_marks_record_the_delivery_history(backend: Backend) -> None:
    """mark_retry counts attempts and reschedules; mark_delivered ends it; later marks are refused."""

    async def body(store: Store) -> None:
        await store.enqueue([delivery("a")], T0)
        assert await store.mark_retry(1, T0 + 2, "503 unavailable", T0 + 1)
        assert await store.mark_retry(1, T0 + 1 / 3, "timeout", T0 + 2)
        d = await store.get_delivery(1)
        assert d is not None
        assert (d.state, d.attempts, d.next_at, d.last_error, d.updated_at) == (
            DeliveryState.PENDING, 2, T0 + 1 / 3, "timeout", T0 + 2)
        assert await store.mark_delivered(1, T0 + 6)
        assert not await store.mark_delivered(1, T0 + 7)
        assert not await store.mark_retry(1, T0 + 9, "x", T0 + 7)
        assert not await store.mark_dead(1, "x", T0 + 7)
        assert not await store.retry_dead(1, T0 + 7)
        d = await store.get_delivery(1)
        assert d is not None
        assert (d.state, d.attempts, d.updated_at) == ("delivered", 2, T0 + 6)

    backend.run(body)


@pytest.mark.parametrize("mark", ["delivered", "retry", "dead", "retry_dead"])
def test_marks_of_an_unknown_delivery_return_false(backend: Backend, mark: str) -> None:
    """Every transition of a delivery id that does not exist returns False and changes nothing."""

    async def body(store: Store) -> None:
        await store.enqueue([delivery("a")], T0)
        calls = {"delivered": lambda: store.mark_delivered(99, T0), "dead": lambda: store.mark_dead(99, "x", T0),
                 "retry": lambda: store.mark_retry(99, T0 + 5, "x", T0),
                 "retry_dead": lambda: store.retry_dead(99, T0)}
        assert await calls[mark]() is False
        assert await store.get_delivery(99) is None
        assert await store.counts() == {"pending": 1, "delivered": 0, "dead": 0}

    backend.run(body)


def test_dead_letters_can_be_listed_and_retried(backend: Backend) -> None:
    """A dead delivery is listed newest first, and retry_dead makes it pending and due again."""

    async def body(store: Store) -> None:
        await store.enqueue([delivery("a", incident="i1"), delivery("b", incident="i2"),
                             delivery("c", incident="i3")], T0)
        assert await store.mark_dead(1, "gave up", T0 + 1)
        assert await store.mark_dead(3, "unknown sink", T0 + 1, attempted=False)
        dead = await store.dead_letters(10)
        assert [(d.idempotency_key, d.attempts, d.last_error) for d in dead] == [
            ("c", 0, "unknown sink"), ("a", 1, "gave up")]
        assert [d.idempotency_key for d in await store.dead_letters(1, offset=1)] == ["a"]
        assert await store.dead_letters(10, offset=2) == []

        assert await store.retry_dead(1, T0 + 100)
        assert not await store.retry_dead(1, T0 + 100)  # no longer dead
        assert not await store.retry_dead(2, T0 + 100)  # never dead
        again = await store.get_delivery(1)
        assert again is not None
        assert (again.state, again.attempts, again.next_at, again.last_error) == (
            "pending", 0, T0 + 100, "gave up")
        assert [d.idempotency_key for d in await store.due(T0 + 100, 10)] == ["a", "b"]
        assert [d.idempotency_key for d in await store.dead_letters()] == ["c"]

    backend.run(body)


def test_a_retried_dead_letter_heads_its_lane_again(backend: Backend) -> None:
    """retry_dead of an older delivery puts it before the newer pending one of its (sink, incident)."""

    async def body(store: Store) -> None:
        await store.enqueue([delivery("open")], T0)
        await store.mark_dead(1, "400", T0 + 1)
        await store.enqueue([delivery("update", revision=2)], T0 + 2)
        await store.mark_retry(2, T0 + 50, "503", T0 + 3)
        assert await store.due(T0 + 10, 10) == []
        assert await store.retry_dead(1, T0 + 10)
        assert [d.idempotency_key for d in await store.due(T0 + 10, 10)] == ["open"]
        assert await store.next_due_at() == T0 + 10
        assert await store.mark_delivered(1, T0 + 11)
        assert await store.next_due_at() == T0 + 50  # the update heads the lane again, as scheduled

    backend.run(body)


def test_counts_report_every_state(backend: Backend) -> None:
    """counts() has a key per state, zeros included; pending_count agrees with it."""

    async def body(store: Store) -> None:
        assert await store.counts() == {"pending": 0, "delivered": 0, "dead": 0}
        assert await store.pending_count() == 0
        await store.enqueue([delivery(k, incident=k) for k in "abcd"], T0)
        await store.mark_delivered(1, T0)
        await store.mark_dead(2, "x", T0)
        assert await store.counts() == {"pending": 2, "delivered": 1, "dead": 1}
        assert await store.pending_count() == 2
        await store.retry_dead(2, T0)
        assert await store.counts() == {"pending": 3, "delivered": 1, "dead": 0}
        assert await store.get_delivery(99) is None

    backend.run(body)


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

