"""Redis-specific tests of bridge/store/redis.py: several writers, outages, crashes, durability.

The shared Store contract runs against Redis in test_contract.py. Tests here that stop, kill or
freeze the server start their own (`own_server`); the others use the session server under a
unique key prefix. `assert_consistent` checks the invariants the key layout promises, on the raw
keys: a gap-free journal of complete entries, and every delivery with exactly its index entries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bridge.errors import StoreUnavailable
from bridge.store import JournalEntry, Store
from bridge.store.redis import RedisStore
from tests.redistools import RedisServer, running_redis
from tests.store.conftest import T0, alert, delivery, redis_backend

#: The longest a call may take to report an unreachable (stopped) server.
FAIL_FAST = 1.0


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop, kill, freeze and restart."""
    with running_redis(tmp_path / "redis-data") as server:
        yield server


def open_store(server: RedisServer, **kwargs: Any) -> RedisStore:
    kwargs.setdefault("prefix", "ab")
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("connect_timeout", 1.0)
    return RedisStore(server.url, **kwargs)


def assert_consistent(server: RedisServer, prefix: str) -> None:
    """The raw keys under `prefix` satisfy every invariant of the key layout (nothing half-written)."""
    with server.client() as r:
        _assert_consistent(r, prefix)


def _assert_consistent(r: Any, prefix: str) -> None:  # Any: redis-py types replies as bytes | str | None
    k = {name: getattr(RedisStore, name).format(prefix=prefix, id="{id}", sink="*", incident="*")
         for name in ("JOURNAL", "IDEMPOTENCY_KEYS", "DELIVERY", "LANE", "HEADS", "DEAD", "COUNTS", "DELIVERY_IDS")}
    stream = r.xrange(k["JOURNAL"])
    assert [int(sid.split(b"-")[1]) for sid, _ in stream] == list(range(1, len(stream) + 1))
    assert all(set(fields) == {b"at", b"kind", b"source", b"data", b"writer"} for _, fields in stream)

    ids = {int(v) for v in r.hvals(k["IDEMPOTENCY_KEYS"])}
    assert ids == set(range(1, int(r.get(k["DELIVERY_IDS"]) or 0) + 1))
    lanes: dict[bytes, set[int]] = {}
    dead: set[int] = set()
    counts = {"pending": 0, "delivered": 0, "dead": 0}
    for id_ in ids:
        d = r.hgetall(k["DELIVERY"].format(id=id_))
        assert len(d) == 13, d  # the 12 Delivery fields besides the id, and the lane
        counts[d[b"state"].decode()] += 1
        if d[b"state"] == b"pending":
            lanes.setdefault(d[b"lane"], set()).add(id_)
        elif d[b"state"] == b"dead":
            dead.add(id_)
    assert set(r.scan_iter(match=k["LANE"])) == set(lanes)  # no lane without a pending delivery
    for lane, members in lanes.items():
        assert {int(m) for m in r.zrange(lane, 0, -1)} == members
    heads = {int(m): score for m, score in r.zrange(k["HEADS"], 0, -1, withscores=True)}
    assert set(heads) == {min(members) for members in lanes.values()}
    assert all(score == float(r.hget(k["DELIVERY"].format(id=head), "next_at")) for head, score in heads.items())
    assert {int(m) for m in r.zrange(k["DEAD"], 0, -1)} == dead
    stored = {f.decode(): int(n) for f, n in r.hgetall(k["COUNTS"]).items()}
    assert {state: stored.get(state, 0) for state in counts} == counts


# ------------------------------------------------------------------------------------ several writers

def test_two_stores_appending_concurrently_share_one_gap_free_seq_order(redis_server: RedisServer) -> None:
    """Two processes' stores appending at once get one gap-free seq order; each hook sees its own."""
    backend = redis_backend(redis_server)
    seen: dict[str, list[int]] = {"one": [], "two": []}

    async def main() -> None:
        one = backend.open(on_commit=lambda es: seen["one"].extend(e.seq for e in es))
        two = backend.open(on_commit=lambda es: seen["two"].extend(e.seq for e in es))
        try:
            async def writer(store: Store, name: str, task: int) -> list[int]:
                return [(await store.append("alerts", name, {"task": task, "n": n}, T0)).seq for n in range(10)]

            results = await asyncio.gather(*(writer(one if i % 2 else two, "one" if i % 2 else "two", i)
                                              for i in range(20)))
            journal = list(one.entries())
            assert [e.seq for e in journal] == list(range(1, 201))
            assert sorted(seq for seqs in results for seq in seqs) == list(range(1, 201))
            for name in ("one", "two"):
                assert seen[name] == sorted(seen[name])
                assert seen[name] == [e.seq for e in journal if e.source == name]
            assert two.last_seq() == 200
        finally:
            await one.aclose()
            await two.aclose()

    asyncio.run(main())


def test_journal_times_never_go_back_whatever_the_writers_clocks(redis_server: RedisServer) -> None:
    """An entry stamped earlier than the last one (another process's clock) is journaled at the last time."""
    backend = redis_backend(redis_server)

    async def main() -> None:
        one, two = backend.open(), backend.open()
        try:
            first = await one.append("alerts", "one", {}, T0 + 10)
            late = await two.append("alerts", "two", {}, T0 + 5)  # a clock 5 s behind
            later = await two.append("alerts", "two", {}, T0 + 12)
            assert (first.at, late.at, later.at) == (T0 + 10, T0 + 10, T0 + 12)
            assert [e.at for e in one.entries()] == [T0 + 10, T0 + 10, T0 + 12]  # what a replay applies
        finally:
            await one.aclose()
            await two.aclose()

    asyncio.run(main())


def test_a_delivery_enqueued_by_one_store_is_handed_out_and_marked_by_another(redis_server: RedisServer) -> None:
    """The outbox is shared: what one process enqueues, another sees due, marks, and both see marked."""
    backend = redis_backend(redis_server)

    async def main() -> None:
        one, two = backend.open(), backend.open()
        try:
            assert await one.enqueue([delivery("a"), delivery("b", revision=2)], T0) == 2
            assert await two.enqueue([delivery("a")], T0) == 0
            assert [d.idempotency_key for d in await two.due(T0, 10)] == ["a"]
            assert await two.mark_delivered(1, T0 + 1)
            assert not await one.mark_delivered(1, T0 + 2)
            assert [d.idempotency_key for d in await one.due(T0, 10)] == ["b"]
        finally:
            await one.aclose()
            await two.aclose()

    asyncio.run(main())


# -------------------------------------------------------------------------------------------- outages

def test_a_stopped_server_fails_calls_fast_and_the_same_store_recovers(own_server: RedisServer) -> None:
    """With Redis down every call raises StoreUnavailable at once; when it returns the store works again."""
    committed: list[list[int]] = []

    async def main() -> None:
        store = open_store(own_server, on_commit=lambda es: committed.append([e.seq for e in es]))
        try:
            await store.append("alerts", "am", {"n": 1}, T0)
            await store.enqueue([delivery("a")], T0)
            own_server.stop()

            for call in (lambda: store.append("alerts", "am", {"n": 2}, T0),
                         lambda: store.enqueue([delivery("b", incident="i2")], T0),
                         lambda: store.mark_delivered(1, T0), lambda: store.due(T0, 10),
                         lambda: store.counts(), lambda: store.next_due_at(), lambda: store.ping()):
                started = time.monotonic()
                with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1"):
                    await call()
                assert time.monotonic() - started < FAIL_FAST
            for sync_call in (store.last_seq, lambda: list(store.entries())):
                with pytest.raises(StoreUnavailable):
                    sync_call()

            own_server.start()
            assert (await store.append("alerts", "am", {"n": 3}, T0)).seq == 2
            assert await store.enqueue([delivery("b", incident="i2")], T0) == 1
            assert [d.idempotency_key for d in await store.due(T0, 10)] == ["a", "b"]
            assert [e.data["n"] for e in store.entries()] == [1, 3]
            await store.ping()
        finally:
            await store.aclose()

    asyncio.run(main())
    assert committed == [[1], [2]]
    assert_consistent(own_server, "ab")


def test_a_crash_in_the_middle_of_a_flood_leaves_nothing_half_written(own_server: RedisServer) -> None:
    """SIGKILL under concurrent writes: every acknowledged write survives and no key is half-written."""
    acked: dict[int, dict[str, Any]] = {}
    enqueued: set[str] = set()
    committed: list[int] = []

    async def main() -> None:
        enough = asyncio.Event()

        def on_commit(entries: list[JournalEntry]) -> None:
            committed.extend(e.seq for e in entries)
            if len(committed) >= 300:
                enough.set()

        store = open_store(own_server, on_commit=on_commit)

        async def worker(w: int) -> None:
            for n in range(10_000):
                try:
                    entry = await store.append("alerts", "am", {"w": w, "n": n}, T0 + n)
                    acked[entry.seq] = entry.data
                    key = f"k{entry.seq}"
                    await store.enqueue([delivery(key, incident=f"i{entry.seq % 7}", revision=entry.seq)], T0)
                    enqueued.add(key)
                    due = await store.due(T0, 3)
                    for d in due[:1]:
                        await store.mark_retry(d.id, T0 + 1 / 3, "503", T0)
                    for d in due[1:2]:
                        await store.mark_delivered(d.id, T0)
                    for d in due[2:]:
                        await store.mark_dead(d.id, "400", T0)
                except StoreUnavailable:
                    return

        try:
            workers = [asyncio.create_task(worker(w)) for w in range(40)]
            await asyncio.wait_for(enough.wait(), 20)
            own_server.kill()
            await asyncio.wait_for(asyncio.gather(*workers), 10)

            own_server.start()
            journal = {e.seq: e.data for e in store.entries()}
            assert set(acked) <= set(journal) and all(journal[seq] == data for seq, data in acked.items())
            assert set(committed) <= set(journal)
            assert_consistent(own_server, "ab")
            with own_server.client() as raw:
                ids = {k.decode() for k in raw.hkeys(store.key(RedisStore.IDEMPOTENCY_KEYS))}
            assert enqueued <= ids
            assert (await store.append("alerts", "am", {}, T0)).seq == len(journal) + 1  # it carries on
        finally:
            await store.aclose()

    asyncio.run(main())
    assert committed == sorted(committed)


def test_an_acknowledged_entry_survives_sigkill_of_redis(own_server: RedisServer) -> None:
    """AOF durability: an append that returned is there after redis-server is killed and restarted."""

    async def write() -> JournalEntry:
        store = open_store(own_server)
        try:
            return await store.append("alerts", "am", {"alerts": [alert(1).to_dict()]}, T0)
        finally:
            await store.aclose()

    entry = asyncio.run(write())
    own_server.kill()
    own_server.start()

    async def read() -> list[JournalEntry]:
        store = open_store(own_server)
        try:
            return list(store.entries())
        finally:
            await store.aclose()

    assert asyncio.run(read()) == [entry]


def test_a_frozen_server_times_out_and_on_commit_still_matches_the_journal(own_server: RedisServer) -> None:
    """A write to a frozen Redis fails after `timeout`; whether it landed or not, on_commit and the journal agree."""
    committed: list[int] = []

    async def main() -> None:
        store = open_store(own_server, timeout=0.3, on_commit=lambda es: committed.extend(e.seq for e in es))
        try:
            await store.append("alerts", "am", {"n": 1}, T0)
            own_server.pause()
            started = time.monotonic()
            try:
                with pytest.raises(StoreUnavailable, match="Timeout"):
                    await store.append("alerts", "am", {"n": 2}, T0)
            finally:
                own_server.resume()
            assert time.monotonic() - started < 2.0
            last = await store.append("alerts", "am", {"n": 3}, T0)
            journal = [e.seq for e in store.entries()]
        finally:
            await store.aclose()
        assert last.seq == journal[-1]
        assert committed == journal  # the frozen write is in both or in neither

    asyncio.run(main())


# ---------------------------------------------------------------------------------- batches in doubt

def test_a_batch_whose_reply_was_lost_reaches_on_commit_before_the_next(redis_server: RedisServer) -> None:
    """An append that ran but whose reply was lost raises, and on_commit gets it first thing after."""
    batches: list[list[int]] = []

    async def main() -> None:
        store = redis_backend(redis_server).open(on_commit=lambda es: batches.append([e.seq for e in es]))
        execute = store._execute

        async def lost_reply(pipe: Any) -> list[Any]:
            await execute(pipe)
            raise redis.ConnectionError("connection lost before the reply")

        try:
            store._execute = lost_reply  # type: ignore[method-assign]  # fault-injection seam
            with pytest.raises(StoreUnavailable, match="connection lost"):
                await store.append("alerts", "am", {"n": 1}, T0)
            assert batches == []
            store._execute = execute  # type: ignore[method-assign]
            assert (await store.append("alerts", "am", {"n": 2}, T0)).seq == 2
            assert [e.data["n"] for e in store.entries()] == [1, 2]
        finally:
            await store.aclose()

    asyncio.run(main())
    assert batches == [[1], [2]]


def test_a_stale_batch_arriving_after_the_fence_appends_nothing(redis_server: RedisServer) -> None:
    """A transaction Redis runs only after the store gave up on it (and fenced it off) writes no entry."""
    captured: list[Any] = []
    committed: list[int] = []

    async def main() -> None:
        store = redis_backend(redis_server).open(on_commit=lambda es: committed.extend(e.seq for e in es))
        execute = store._execute

        async def delayed(pipe: Any) -> list[Any]:
            captured.append(pipe)  # sent later, by the test, as a late packet would be
            raise redis.TimeoutError("Timeout reading from socket")

        try:
            await store.enqueue([delivery("a")], T0)  # connect first, so the stale batch has a token
            store._execute = delayed  # type: ignore[method-assign]  # fault-injection seam
            with pytest.raises(StoreUnavailable, match="Timeout"):
                await store.append("alerts", "am", {"late": True}, T0)
            store._execute = execute  # type: ignore[method-assign]
            assert (await store.append("alerts", "am", {"late": False}, T0)).seq == 1

            results = await captured[0].execute(raise_on_error=False)
            assert isinstance(results[0], redis.ResponseError) and "FENCED" in str(results[0])
            assert [e.data for e in store.entries()] == [{"late": False}]
        finally:
            await store.aclose()

    asyncio.run(main())
    assert committed == [1]


def test_a_flushed_script_cache_costs_no_failed_write(redis_server: RedisServer) -> None:
    """After SCRIPT FLUSH the store reloads its scripts and the writes of that batch still succeed."""

    raw = redis_server.client()

    async def main() -> None:
        store = redis_backend(redis_server).open()
        try:
            await store.append("alerts", "am", {}, T0)
            raw.script_flush()
            batch = await asyncio.gather(store.append("alerts", "am", {}, T0), store.enqueue([delivery("a")], T0),
                                         store.mark_delivered(99, T0))
            assert (batch[0].seq, batch[1], batch[2]) == (2, 1, False)
            raw.script_flush()
            assert [d.idempotency_key for d in await store.due(T0, 10)] == ["a"]
        finally:
            await store.aclose()

    asyncio.run(main())
    raw.close()


# ---------------------------------------------------------------------------------------- persistence

def test_a_redis_without_aof_is_refused_unless_allowed(tmp_path: Path) -> None:
    """Appends to a Redis with appendonly no raise StoreUnavailable, unless require_aof=False."""

    async def main(server: RedisServer) -> None:
        strict, lax = open_store(server), open_store(server, require_aof=False)
        try:
            with pytest.raises(StoreUnavailable, match="appendonly no"):
                await strict.append("alerts", "am", {}, T0)
            assert (await lax.append("alerts", "am", {}, T0)).seq == 1
        finally:
            await strict.aclose()
            await lax.aclose()

    with running_redis(tmp_path, "--appendonly", "no") as server:
        asyncio.run(main(server))


def test_an_unconfirmed_fsync_fails_the_append_but_on_commit_sees_the_committed_entry(
        redis_server: RedisServer) -> None:
    """If WAITAOF does not confirm a batch, its appends raise StoreUnavailable; the entry is journaled and applied."""
    committed: list[int] = []

    async def main() -> None:
        store = redis_backend(redis_server).open(on_commit=lambda es: committed.extend(e.seq for e in es))
        try:
            await store.append("alerts", "am", {}, T0)
            # This Redis (7.0) has no WAITAOF: forcing its use makes the confirmation fail.
            store._waitaof = True
            with pytest.raises(StoreUnavailable, match="not confirmed durable"):
                await store.append("alerts", "am", {"n": 2}, T0)
            assert committed == [1, 2]
            assert (await store.append("alerts", "am", {}, T0)).seq == 3  # reconnected, WAITAOF off again
            assert [e.seq for e in store.entries()] == committed == [1, 2, 3]
        finally:
            await store.aclose()

    asyncio.run(main())


def test_keys_stay_under_the_prefix_and_a_closed_store_withdraws_its_fence(redis_server: RedisServer) -> None:
    """Every key the store writes starts with `prefix:`, and aclose removes its writer entry."""
    prefix = "ns-test-keys"
    raw: Any = redis_server.client()

    async def main() -> None:
        store = RedisStore(redis_server.url, prefix=prefix)
        await store.append("alerts", "am", {}, T0)
        await store.enqueue([delivery("a", sink="x:y")], T0)
        await store.mark_dead(1, "x", T0)
        assert raw.hexists(store.key(RedisStore.WRITERS), store._writer_id)
        await store.aclose()

    asyncio.run(main())
    keys = {k.decode() for k in raw.scan_iter(match=f"{prefix}*")}
    assert keys and all(k.startswith(f"{prefix}:") for k in keys)
    assert raw.hlen(f"{prefix}:writers") == 0
    raw.close()


# ----------------------------------------------------------------------------------------- benchmark

@pytest.mark.slow
def test_batched_append_throughput(redis_server: RedisServer) -> None:
    """Benchmark: 200 concurrent tasks append 20,000 alert entries to Redis; prints entries/s."""
    batches: list[int] = []
    payload = {"alerts": [alert(1).to_dict()]}

    async def main() -> float:
        store = redis_backend(redis_server).open(on_commit=lambda es: batches.append(len(es)))

        async def one(n: int) -> None:
            for _ in range(n):
                await store.append("alerts", "am", payload, T0)

        try:
            started = time.perf_counter()
            await asyncio.gather(*(one(100) for _ in range(200)))
            return time.perf_counter() - started
        finally:
            await store.aclose()

    elapsed = asyncio.run(main())
    assert sum(batches) == 20_000
    print(f"\nredis batches: 20000 entries in {elapsed:.2f}s = {20_000 / elapsed:,.0f} entries/s, "
          f"{len(batches)} transactions, mean batch {20_000 / len(batches):.1f}, max batch {max(batches)}")


def test_a_fenced_enqueue_from_an_old_owner_writes_nothing(redis_server: RedisServer) -> None:
    """With the partition's fence at token 5, an enqueue carrying token 4 is refused by Redis; 5 is written."""
    backend = redis_backend(redis_server)

    async def main() -> None:
        store = backend.open()
        fence = f"{store.prefix}:fence:default"
        try:
            with redis_server.client() as r:
                r.set(fence, 5)
            with pytest.raises(StoreUnavailable, match="FENCED"):
                await store.enqueue_nowait([delivery("old")], T0, fence=(fence, 4))
            assert await store.counts() == {"pending": 0, "delivered": 0, "dead": 0}
            assert await store.enqueue_nowait([delivery("new")], T0, fence=(fence, 5)) == 1
            assert [d.idempotency_key for d in await store.due(T0, 10)] == ["new"]
        finally:
            await store.aclose()

    asyncio.run(main())
