"""Tests of bridge/lease.py against a real redis-server: one owner per partition, fenced writes.

The module's server is shared under a unique key prefix per test; tests that stop or freeze Redis
start their own (`own_server`). `held` is tested on a fake monotonic clock; real waits are used only
where Redis's own PX expiry must pass (ttl of 0.3-0.5 s), and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import pytest
import redis
import redis.asyncio
from structlog.testing import capture_logs

from bridge.errors import BridgeError
from bridge.lease import DEFAULT_PARTITION, FENCE_GUARD, Fenced, PartitionLease, fenced_script, partition_of
from tests.redistools import RedisServer, running_redis

T = TypeVar("T")
#: The longest any test body may run (a hang fails the test instead of blocking the suite).
BODY_TIMEOUT = 30.0
#: Slack on measured real durations, for a loaded CI machine.
SLACK = 0.25

#: A write as the owner makes them: set KEYS[1] to ARGV[1]; returns what the script sees of its inputs.
SET_SCRIPT = """#!lua
--[[ KEYS[1] the key to set   ARGV[1] its value   ARGV[2..] ignored
Returns {#KEYS, #ARGV, KEYS[1], ARGV[#ARGV]}: what the script sees once the guard has run. ]]
redis.call('SET', KEYS[1], ARGV[1])
return {#KEYS, #ARGV, KEYS[1], ARGV[#ARGV]}
"""


class FakeClock:
    """A monotonic clock that moves only when the test sets `now`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Events:
    """Records a run() loop's callbacks as ("acquired", token) / ("lost", None), with when and an event."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None]] = []
        self.at: list[float] = []
        self.changed = asyncio.Event()

    async def on_acquired(self, token: int) -> None:
        self._note("acquired", token)

    async def on_lost(self) -> None:
        self._note("lost", None)

    def _note(self, what: str, token: int | None) -> None:
        self.seen.append((what, token))
        self.at.append(time.monotonic())
        self.changed.set()

    async def wait_for(self, count: int, within: float) -> None:
        """Wait (bounded) until `count` callbacks have run."""
        async def enough() -> None:
            while len(self.seen) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(enough(), within)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for this module's tests that neither stop nor freeze it."""
    with running_redis(tmp_path_factory.mktemp("lease-redis")) as server:
        yield server


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop, freeze and restart."""
    with running_redis(tmp_path / "redis-data") as server:
        yield server


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return f"test-{uuid.uuid4().hex[:12]}"


def run(body: Callable[[], Awaitable[T]]) -> T:
    """Run an async test body on a fresh event loop, bounded by BODY_TIMEOUT."""
    async def bounded() -> T:
        return await asyncio.wait_for(body(), BODY_TIMEOUT)

    return asyncio.run(bounded())


@asynccontextmanager
async def connected(server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis(host="127.0.0.1", port=server.port, socket_timeout=2, socket_connect_timeout=1)
    try:
        yield client
    finally:
        await client.aclose()


async def eventually(attempt: Callable[[], Awaitable[T | None]], within: float, every: float = 0.02) -> T:
    """Retry `attempt` until it returns something other than None; fails after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await attempt()
        if result is not None:
            return result
        assert time.monotonic() < deadline, f"nothing within {within}s"
        await asyncio.sleep(every)


async def no_release() -> bool:
    """A release that tells Redis nothing, as a SIGKILLed process does not."""
    return False


# ------------------------------------------------------------------------------ acquire and release

def test_only_one_holder_acquires_and_tokens_increase_across_holders(redis_server: RedisServer, prefix: str) -> None:
    """Of two holders only one gets the lease; release hands it over, each time under a higher token."""
    async def body() -> None:
        async with connected(redis_server) as client:
            a = PartitionLease(client, "p1", "a", prefix=prefix)
            b = PartitionLease(client, "p1", "b", prefix=prefix)
            first = await a.acquire()
            assert first is not None
            tokens = [first]
            assert await b.acquire() is None
            assert (a.held, a.token, b.held, b.token) == (True, tokens[0], False, None)
            assert await b.current() == ("a", tokens[0])
            holder, other = a, b
            for _ in range(4):
                assert await holder.release()
                assert not holder.held
                token = await other.acquire()
                assert token is not None
                assert await holder.acquire() is None
                tokens.append(token)
                holder, other = other, holder
            assert tokens == sorted(set(tokens)), tokens  # strictly increasing, never reused

    run(body)


def test_a_partition_lease_does_not_hold_another_partition(redis_server: RedisServer, prefix: str) -> None:
    """Leases of different partitions are independent; a partition name cannot form a hash tag."""
    async def body() -> None:
        async with connected(redis_server) as client:
            one = PartitionLease(client, "tenant-a", "a", prefix=prefix)
            two = PartitionLease(client, "tenant-b", "b", prefix=prefix)
            odd = PartitionLease(client, "{x}%", "c", prefix=prefix)
            assert await one.acquire() is not None
            assert await two.acquire() is not None
            assert await odd.acquire() is not None
            assert odd.lease_key == f"{prefix}:lease:%7Bx%7D%25"

    run(body)


def test_renew_keeps_the_lease_and_after_expiry_the_next_holder_gets_a_higher_token(
        redis_server: RedisServer, prefix: str) -> None:
    """Renewing keeps the lease past its ttl; unrenewed, it passes to the next holder and the old renew fails."""
    ttl = 0.3

    async def body() -> None:
        async with connected(redis_server) as client:
            a = PartitionLease(client, "p1", "a", prefix=prefix, ttl=ttl)
            b = PartitionLease(client, "p1", "b", prefix=prefix, ttl=ttl)
            first = await a.acquire()
            assert first is not None
            for _ in range(6):  # 0.6 s: twice the ttl
                await asyncio.sleep(ttl / 3)
                assert await a.renew()
                assert await b.acquire() is None
            last_renew = time.monotonic()
            second = await eventually(b.acquire, within=ttl + 2)
            assert time.monotonic() - last_renew >= ttl - a.margin  # not before the lease expired in Redis
            assert second > first
            assert not await a.renew()
            assert (a.held, a.token) == (False, None)
            assert (b.held, b.token) == (True, second)

    run(body)


def test_an_acquire_retried_by_the_same_holder_gets_a_new_token(redis_server: RedisServer, prefix: str) -> None:
    """A holder acquiring its own live lease again (a lost reply) gets it at once, under a new token."""
    async def body() -> None:
        async with connected(redis_server) as client:
            a = PartitionLease(client, "p1", "a", prefix=prefix)
            first = await a.acquire()
            again = await a.acquire()
            assert first is not None and again is not None and again > first
            assert await a.current() == ("a", again)

    run(body)


# -------------------------------------------------------------------------------- the local deadline

def test_held_turns_false_at_the_local_deadline_while_redis_is_frozen(own_server: RedisServer, prefix: str) -> None:
    """`held` ends at acquire time + ttl - margin without asking Redis, and no write is even sent after it."""
    clock = FakeClock(1000.0)

    async def body() -> None:
        async with connected(own_server) as client:
            lease = PartitionLease(client, "p1", "a", prefix=prefix, ttl=5.0, margin=0.5, clock=clock)
            token = await lease.acquire()
            assert token is not None
            own_server.pause()
            try:
                clock.now = 1004.49
                assert (lease.held, lease.token) == (True, token)
                clock.now = 1004.5
                assert (lease.held, lease.token) == (False, None)
                with pytest.raises(Fenced):  # refused locally: a frozen Redis would never answer
                    await asyncio.wait_for(lease.fenced_call(SET_SCRIPT, [f"{prefix}:x"], ["v"]), 0.5)
            finally:
                own_server.resume()

    run(body)


def test_the_local_deadline_counts_from_before_the_request_was_sent(own_server: RedisServer, prefix: str) -> None:
    """A slow reply shortens the lease locally: the deadline starts when the acquire was sent, not answered."""
    clock = FakeClock(1000.0)

    async def body() -> None:
        async with connected(own_server) as client:
            lease = PartitionLease(client, "p1", "a", prefix=prefix, ttl=5.0, margin=0.5, clock=clock)
            await client.ping()  # connected before the freeze
            own_server.pause()
            try:
                pending = asyncio.ensure_future(lease.acquire())
                await asyncio.sleep(0.1)
                clock.now = 1003.0  # 3 s pass while Redis does not answer
            finally:
                own_server.resume()
            assert await pending is not None
            assert lease.held
            clock.now = 1004.5  # sent at 1000 + 5 - 0.5, not answered at 1003 + 4.5
            assert not lease.held

    run(body)


# ------------------------------------------------------------------------------------------ fencing

def test_a_stale_owners_write_is_refused_by_redis_after_a_takeover(redis_server: RedisServer, prefix: str) -> None:
    """An old owner that still believes it holds the lease is fenced by Redis; the new owner's write lands."""
    frozen = FakeClock(1000.0)  # the old owner's process is stopped: its clock does not reach the deadline

    async def body() -> None:
        async with connected(redis_server) as client:
            old = PartitionLease(client, "p1", "old", prefix=prefix, ttl=0.3, clock=frozen)
            new = PartitionLease(client, "p1", "new", prefix=prefix, ttl=0.3)
            key = f"{prefix}:state"
            assert await old.acquire() is not None
            assert await old.fenced_call(SET_SCRIPT, [key], ["old-1"]) == [1, 1, key.encode(), b"old-1"]
            taken = await eventually(new.acquire, within=2.0)  # Redis expired the old lease
            assert old.held  # it does not know
            with pytest.raises(Fenced) as refused:
                await old.fenced_call(SET_SCRIPT, [key], ["old-2"])
            assert isinstance(refused.value, BridgeError)
            assert refused.value.token is not None and refused.value.token < taken
            assert await new.fenced_call(SET_SCRIPT, [key], ["new-1"]) == [1, 1, key.encode(), b"new-1"]
            assert await client.get(key) == b"new-1"

    run(body)


def test_a_released_token_is_burned(redis_server: RedisServer, prefix: str) -> None:
    """After release, a late write carrying the released token is refused by Redis, and the lease is free."""
    async def body() -> None:
        async with connected(redis_server) as client:
            lease = PartitionLease(client, "p1", "a", prefix=prefix)
            token = await lease.acquire()
            assert token is not None
            guarded = fenced_script(SET_SCRIPT)
            key = f"{prefix}:state"
            await client.eval(guarded, 2, lease.fence_key, key, token, "before")
            assert await lease.release()
            with pytest.raises(redis.ResponseError, match=r"^FENCED"):
                await client.eval(guarded, 2, lease.fence_key, key, token, "after")
            assert await client.get(key) == b"before"
            assert await lease.current() is None
            assert await PartitionLease(client, "p1", "b", prefix=prefix).acquire() is not None

    run(body)


def test_a_guarded_script_sees_its_own_keys_and_args_and_keeps_its_shebang(
        redis_server: RedisServer, prefix: str) -> None:
    """The guard goes after a `#!lua` line and hides the fence key and token from the script's KEYS/ARGV."""
    assert fenced_script(SET_SCRIPT).startswith("#!lua\n" + FENCE_GUARD)
    assert fenced_script("return 1") == FENCE_GUARD + "return 1"

    async def body() -> None:
        async with connected(redis_server) as client:
            lease = PartitionLease(client, "p1", "a", prefix=prefix)
            await lease.acquire()
            args = [f"v{i}" for i in range(500)]
            seen = await lease.fenced_call(SET_SCRIPT, [f"{prefix}:k"], args)
            assert seen == [1, 500, f"{prefix}:k".encode(), b"v499"]

    run(body)


# -------------------------------------------------------------------------------------------- run()

def test_a_standby_takes_over_within_ttl_after_the_owner_dies(
        redis_server: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A standby takes over within about ttl of the owner's death, not while the owner still renews."""
    ttl = 0.5
    every = ttl / 3

    async def body() -> None:
        async with connected(redis_server) as client:
            owner = PartitionLease(client, "p1", "owner", prefix=prefix, ttl=ttl)
            standby = PartitionLease(client, "p1", "standby", prefix=prefix, ttl=ttl)
            monkeypatch.setattr(owner, "release", no_release)
            mine, theirs = Events(), Events()
            owner_task = asyncio.create_task(owner.run(mine.on_acquired, mine.on_lost))
            await mine.wait_for(1, within=2)
            standby_task = asyncio.create_task(standby.run(theirs.on_acquired, theirs.on_lost))
            await asyncio.sleep(2 * ttl)  # the owner renews; the standby keeps trying
            assert theirs.seen == []
            died = time.monotonic()
            owner_task.cancel()  # as if SIGKILLed: no renew, no release
            await asyncio.gather(owner_task, return_exceptions=True)
            await theirs.wait_for(1, within=ttl + 2)
            took = theirs.at[0] - died
            assert ttl - every - ttl / 10 - SLACK / 5 <= took <= ttl + SLACK, took
            (_, old), (_, new) = mine.seen[0], theirs.seen[0]
            assert old is not None and new is not None and new > old

            standby_task.cancel()  # a graceful stop: on_lost, then the lease is released
            await asyncio.gather(standby_task, return_exceptions=True)
            assert theirs.seen[1:] == [("lost", None)]
            assert await standby.current() is None

    run(body)


def test_an_owner_whose_lease_was_taken_over_is_told_and_stands_by(redis_server: RedisServer, prefix: str) -> None:
    """When a renew finds the lease taken over, on_lost runs at once and the old owner waits as a standby."""
    ttl = 0.5

    async def body() -> None:
        async with connected(redis_server) as client:
            a = PartitionLease(client, "p1", "a", prefix=prefix, ttl=ttl)
            b = PartitionLease(client, "p1", "b", prefix=prefix, ttl=ttl)
            a_events, b_events = Events(), Events()
            a_task = asyncio.create_task(a.run(a_events.on_acquired, a_events.on_lost))
            await a_events.wait_for(1, within=2)
            await client.delete(a.lease_key)  # as if a's lease had expired unseen (a network partition)
            b_task = asyncio.create_task(b.run(b_events.on_acquired, b_events.on_lost))
            await b_events.wait_for(1, within=2)
            await a_events.wait_for(2, within=ttl / 3 + SLACK)  # a's next renew
            assert a_events.seen[1] == ("lost", None)
            assert not a.held
            await asyncio.sleep(2 * ttl)  # b renews: a stays a standby
            assert len(a_events.seen) == 2 and len(b_events.seen) == 1
            (_, a_token), (_, b_token) = a_events.seen[0], b_events.seen[0]
            assert a_token is not None and b_token is not None and b_token > a_token
            for task in (a_task, b_task):
                task.cancel()
            await asyncio.gather(a_task, b_task, return_exceptions=True)

    run(body)


def test_the_loop_outlives_a_redis_outage_and_logs_it_once(own_server: RedisServer, prefix: str) -> None:
    """Redis down: on_lost at the local deadline and one log line; Redis back: the lease is taken again."""
    ttl = 0.5

    async def body() -> None:
        async with connected(own_server) as client:
            with capture_logs() as logs:
                lease = PartitionLease(client, "p1", "a", prefix=prefix, ttl=ttl)
                events = Events()
                task = asyncio.create_task(lease.run(events.on_acquired, events.on_lost))
                await events.wait_for(1, within=2)
                own_server.stop()
                stopped = time.monotonic()
                await events.wait_for(2, within=ttl + SLACK)
                assert events.seen[1] == ("lost", None)
                assert events.at[1] - stopped <= ttl - lease.margin + SLACK
                await asyncio.sleep(2 * ttl)  # several failed tries
                own_server.start()
                await events.wait_for(3, within=ttl + 3)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        (_, before), (_, after) = events.seen[0], events.seen[2]
        assert before is not None and after is not None and after > before
        assert events.seen[:3] == [("acquired", before), ("lost", None), ("acquired", after)]
        names = [entry["event"] for entry in logs]
        assert names.count("partition lease redis unavailable") == 1
        assert names.count("partition lease redis available again") == 1
        assert names.count("partition lease lost") == 1

    run(body)


def test_a_frozen_redis_ends_ownership_at_the_local_deadline(own_server: RedisServer, prefix: str) -> None:
    """Redis frozen (SIGSTOP): on_lost runs at the deadline though no reply comes; once thawed, it is owned again."""
    ttl = 0.5

    async def body() -> None:
        async with connected(own_server) as client:
            lease = PartitionLease(client, "p1", "a", prefix=prefix, ttl=ttl)
            events = Events()
            task = asyncio.create_task(lease.run(events.on_acquired, events.on_lost))
            await events.wait_for(1, within=2)
            own_server.pause()
            try:
                frozen = time.monotonic()
                await events.wait_for(2, within=ttl + SLACK)
                assert events.at[1] - frozen <= ttl - lease.margin + SLACK
                assert not lease.held
            finally:
                own_server.resume()
            await events.wait_for(3, within=ttl + 3)
            assert lease.held
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(body)


def test_the_lease_is_kept_while_a_long_on_acquired_rebuilds(redis_server: RedisServer, prefix: str) -> None:
    """An on_acquired longer than the ttl (a rebuild) does not lose the lease: it is renewed meanwhile."""
    ttl = 0.3

    async def body() -> None:
        async with connected(redis_server) as client:
            lease = PartitionLease(client, "p1", "a", prefix=prefix, ttl=ttl)
            other = PartitionLease(client, "p1", "b", prefix=prefix, ttl=ttl)
            started, rebuilt = asyncio.Event(), asyncio.Event()

            async def rebuild(token: int) -> None:
                started.set()
                await asyncio.sleep(3 * ttl)
                rebuilt.set()

            lost = asyncio.Event()

            async def on_lost() -> None:
                lost.set()

            task = asyncio.create_task(lease.run(rebuild, on_lost))
            await asyncio.wait_for(started.wait(), 2)
            while not rebuilt.is_set():
                assert await other.acquire() is None
                await asyncio.sleep(ttl / 6)
            assert lease.held and not lost.is_set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert lost.is_set()

    run(body)


def test_a_failing_on_acquired_gives_the_lease_up_and_the_loop_tries_again(
        redis_server: RedisServer, prefix: str) -> None:
    """on_acquired raising: on_lost runs, the lease is released, and the loop takes it again later."""
    async def body() -> None:
        async with connected(redis_server) as client:
            events = Events()
            failures = [RuntimeError("rebuild failed")]

            async def on_acquired(token: int) -> None:
                await events.on_acquired(token)
                if failures:
                    raise failures.pop()

            with capture_logs() as logs:
                lease = PartitionLease(client, "p1", "a", prefix=prefix, ttl=0.3)
                task = asyncio.create_task(lease.run(on_acquired, events.on_lost))
                await events.wait_for(3, within=3)
                assert lease.held
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            assert [what for what, _ in events.seen] == ["acquired", "lost", "acquired", "lost"]
            assert "partition owner start failed" in [entry["event"] for entry in logs]

    run(body)


# --------------------------------------------------------------------------------------- partitions

@pytest.mark.parametrize(("labels", "label", "expected"), [
    ({"cluster": "eu-1"}, None, DEFAULT_PARTITION),
    ({"cluster": "eu-1", "tenant": "acme"}, "cluster", "eu-1"),
    ({"tenant": "acme"}, "cluster", DEFAULT_PARTITION),
    ({"cluster": ""}, "cluster", DEFAULT_PARTITION),
], ids=["no-label-configured", "label-value", "label-missing", "label-empty"])
def test_partition_of(labels: dict[str, str], label: str | None, expected: str) -> None:
    """An alert's partition is its value of the configured label, else "default"."""
    assert partition_of(labels, label) == expected


def test_bad_timings_are_refused(redis_server: RedisServer) -> None:
    """A margin not below the ttl, or a renew interval leaving no time to renew, is a ValueError."""
    client = redis.asyncio.Redis(host="127.0.0.1", port=redis_server.port)  # never asked: checked before
    with pytest.raises(ValueError, match="margin"):
        PartitionLease(client, "p1", "a", ttl=1.0, margin=1.0)
    lease = PartitionLease(client, "p1", "a", ttl=1.0)

    async def body() -> None:
        with pytest.raises(ValueError, match="renew_every"):
            await lease.run(Events().on_acquired, Events().on_lost, renew_every=0.95)

    run(body)
