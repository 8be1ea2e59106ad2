"""Tests of bridge/dispatch/rq_jobs.py and rq_dispatcher.py: a real redis-server, real RQ workers, a fake HTTP receiver.

The bridge's side (the owner's RedisStore and the RQDispatcher) lives on an event loop in a thread
(`OwnerLoop`), because RQ's workers need the test's main thread: `SimpleWorker.work(burst=True)`
runs every queued job in-process and returns, so no test waits for a worker. RQ's retries are
released by RQ's own scheduler, run once with its clock moved an hour ahead: no test sleeps.
"""

from __future__ import annotations

import asyncio
import queue as queue_module
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import rq.scheduler
from rq import Queue, SimpleWorker, Worker
from rq.job import Job, JobStatus
from rq.scheduler import RQScheduler

from bridge.dispatch import RetryPolicy, rq_jobs
from bridge.dispatch.rq_dispatcher import RQDispatcher
from bridge.dispatch.rq_jobs import CONFIG_ENV, job_id
from bridge.errors import StoreUnavailable
from bridge.model import Action, ActionKind
from bridge.store import Delivery, DeliveryState, NewDelivery, new_deliveries
from bridge.store.redis import RedisStore
from tests.redistools import RedisServer, running_redis
from tests.sinks.conftest import FakeReceiver, Reply
from tests.store.conftest import action

T = TypeVar("T")
POLICY = RetryPolicy(initial=1.0, multiplier=2.0, max_delay=60.0, max_attempts=3, jitter=0.0)


# ------------------------------------------------------------------------------------------ fixtures

class OwnerLoop:
    """An event loop in a thread, where the partition owner's store and dispatcher live."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="owner-loop", daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class Bench:
    server: RedisServer
    receiver: FakeReceiver
    config: Path
    prefix: str
    owner: OwnerLoop
    connection: redis.Redis
    queue: Queue
    store: RedisStore
    dispatcher: RQDispatcher

    def new_dispatcher(self, **overrides: Any) -> RQDispatcher:
        """A dispatcher of this bench's store and queue (recheck_after=0: RQ alone decides duplicates)."""
        options: dict[str, Any] = {"queue": self.queue.name, "policy": POLICY, "config_path": str(self.config),
                                   "recheck_after": 0.0, **overrides}
        return RQDispatcher(self.store, self.server.url, **options)

    def enqueue(self, *actions: Action) -> int:
        return self.enqueue_rows([row for a in actions for row in new_deliveries(a)])

    def enqueue_rows(self, rows: list[NewDelivery]) -> int:
        return self.owner.call(self.store.enqueue(rows, time.time()))

    def dispatch(self, dispatcher: RQDispatcher | None = None) -> int:
        """One pass of the (default) dispatcher; returns how many jobs it enqueued."""
        return self.owner.call((dispatcher or self.dispatcher).run_once())

    def work(self) -> bool:
        """Run every queued job in this process (a non-forking worker in burst mode)."""
        return SimpleWorker([self.queue], connection=self.connection).work(burst=True)

    def delivery(self, delivery_id: int = 1) -> Delivery:
        found = self.owner.call(self.store.get_delivery(delivery_id))
        assert found is not None
        return found

    def job(self, delivery_id: int = 1) -> Job:
        return Job.fetch(job_id(delivery_id, self.prefix), connection=self.connection)

    def release_scheduled(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Run RQ's scheduler once with its clock an hour ahead: every retry scheduled so far is queued."""
        scheduler = RQScheduler([self.queue], connection=self.connection)
        scheduler.acquire_locks()
        with monkeypatch.context() as patch:
            patch.setattr(rq.scheduler, "current_timestamp", lambda: int(time.time()) + 3600)
            scheduler.enqueue_scheduled_jobs()
        scheduler.release_locks()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for this module; each test gets its own queue and store prefix on it."""
    with running_redis(tmp_path_factory.mktemp("rq-redis")) as server:
        yield server


def write_config(path: Path, receiver: FakeReceiver) -> Path:
    path.write_text(f"""
server:
  data_dir: {path.parent / "data"}
logging:
  level: warning
dispatch:
  initial_backoff: 1s
  max_attempts: 3
  jitter: 0
sinks:
  - name: pager
    type: webhook
    url: {receiver.url}
routes:
  - name: default
    sinks: [pager]
""")
    return path


@pytest.fixture
def bench(redis_server: RedisServer, receiver: FakeReceiver, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Bench]:
    """The owner's store and dispatcher on a fresh prefix and queue; workers' state closed after."""
    monkeypatch.setattr(rq_jobs, "_configure_logging", False)  # structlog's config is process-wide
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv(rq_jobs.REDIS_URL_ENV, raising=False)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    owner = OwnerLoop()
    connection = redis.Redis.from_url(redis_server.url)
    store = RedisStore(redis_server.url, prefix=prefix, timeout=2.0, connect_timeout=1.0)
    config = write_config(tmp_path / "alertbridge.yaml", receiver)
    queue = Queue(f"deliveries-{prefix}", connection=connection)
    dispatcher = RQDispatcher(store, redis_server.url, queue=queue.name, policy=POLICY,
                              config_path=str(config), recheck_after=0.0)
    bench = Bench(redis_server, receiver, config, prefix, owner, connection, queue, store, dispatcher)
    try:
        yield bench
    finally:
        rq_jobs.close_worker_state()
        owner.call(dispatcher.stop())
        owner.call(store.aclose())
        owner.close()
        connection.close()


def sent(receiver: FakeReceiver) -> list[tuple[str, str]]:
    """(action, Idempotency-Key) of every request the receiver got, in order."""
    return [(r.json()["action"], r.headers["Idempotency-Key"]) for r in receiver.requests]


# --------------------------------------------------------------------------------------------- tests

def test_job_id_is_derived_from_the_delivery_id_and_store_prefix() -> None:
    """A job id names the store prefix and the delivery id, and is always a valid RQ id."""
    assert job_id(42) == "alertbridge-delivery-42"
    assert job_id(7, "prod") == "prod-delivery-7"
    tagged, escaped = job_id(7, "{alertbridge}"), job_id(7, "_alertbridge_")
    assert tagged.startswith("_alertbridge__") and tagged.endswith("-delivery-7")
    assert tagged != escaped


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6380/2",
    "rediss://alert%40bridge:p%40ss%3Aword@redis.example.org:6379/0",
    "unix:///run/redis/redis.sock?db=3",
], ids=["tcp", "tls-with-credentials", "unix-socket"])
def test_a_worker_without_a_store_url_uses_its_own_redis(url: str) -> None:
    """The store URL rebuilt from the worker's own connection names the same server, db and credentials."""
    original = redis.Redis.from_url(url)
    rebuilt = redis.Redis.from_url(rq_jobs._connection_url(original))  # private: the fallback under test
    fields = ("host", "port", "path", "db", "username", "password")
    assert {f: rebuilt.connection_pool.connection_kwargs.get(f) for f in fields} \
        == {f: original.connection_pool.connection_kwargs.get(f) for f in fields}
    assert rebuilt.connection_pool.connection_class is original.connection_pool.connection_class


def test_one_delivery_becomes_one_job_and_is_delivered_once(bench: Bench) -> None:
    """A due delivery is enqueued as one job, which sends it once and records it delivered."""
    bench.enqueue(action(ActionKind.OPEN, sinks=("pager",)))

    assert bench.dispatch() == 1
    assert bench.queue.job_ids == [job_id(1, bench.prefix)]
    assert bench.work()

    assert sent(bench.receiver) == [("open", "inc1:pager:1")]
    assert bench.delivery().state is DeliveryState.DELIVERED
    job = bench.job()
    assert job.get_status() is JobStatus.FINISHED
    assert job.return_value() == {"delivery": 1, "outcome": "delivered", "detail": ""}
    assert bench.dispatch() == 0  # delivered: never due again
    assert bench.store.attempts() == {("pager", "delivered"): 1}  # what the bridge's /metrics shows


def test_the_same_job_run_twice_sends_once(bench: Bench) -> None:
    """A job that runs again after its outcome was recorded reads the ledger and sends nothing."""
    bench.enqueue(action(ActionKind.OPEN, sinks=("pager",)))
    bench.dispatch()
    bench.work()

    bench.queue.enqueue_job(bench.job())  # the same job, run a second time (a requeue, a lost ack)
    assert bench.work()

    assert len(bench.receiver.requests) == 1
    assert bench.job().return_value() == {"delivery": 1, "outcome": "skipped", "detail": "delivered"}


def test_enqueueing_the_same_delivery_twice_yields_one_job(bench: Bench) -> None:
    """Two passes, and two owners racing, make one job per delivery: RQ refuses the duplicate id."""
    bench.enqueue(action(ActionKind.OPEN, sinks=("pager",)))
    other_owner = bench.new_dispatcher()

    assert bench.dispatch() == 1
    assert bench.dispatch() == 0
    assert bench.dispatch(other_owner) == 0
    assert bench.queue.count == 1

    bench.work()
    assert len(bench.receiver.requests) == 1


def test_a_retry_is_scheduled_by_rq_and_delivered_by_its_scheduler(bench: Bench,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A 503 records a failed attempt and RQ schedules the job; once released it delivers with the same key."""
    bench.receiver.script(Reply(503, "busy"), Reply(200))
    bench.enqueue(action(ActionKind.OPEN, sinks=("pager",)))
    bench.dispatch()

    bench.work()
    pending = bench.delivery()
    assert (pending.state, pending.attempts) == (DeliveryState.PENDING, 1)
    assert "503" in pending.last_error
    assert bench.job().get_status() is JobStatus.SCHEDULED
    assert bench.queue.scheduled_job_registry.get_job_ids() == [job_id(1, bench.prefix)]
    assert bench.dispatch() == 0  # its job is alive (scheduled): not enqueued again
    assert not bench.work()  # not due yet: nothing runs before the scheduler releases it

    bench.release_scheduled(monkeypatch)
    assert bench.work()

    assert sent(bench.receiver) == [("open", "inc1:pager:1")] * 2
    assert bench.delivery().state is DeliveryState.DELIVERED
    assert bench.job().get_status() is JobStatus.FINISHED


@pytest.mark.parametrize(("reply", "delay"), [
    (Reply(503), 1),
    (Reply(503, headers={"Retry-After": "7"}), 7),
    (Reply(429, headers={"Retry-After": "2.5"}), 3),
    (Reply(503, headers={"Retry-After": "0"}), 1),
], ids=["backoff-schedule", "retry-after-larger", "retry-after-rounded-up", "backoff-larger"])
def test_retry_delay_follows_the_policy_and_honours_retry_after(bench: Bench, reply: Reply, delay: int) -> None:
    """RQ's retry interval and the outbox's next_at are the policy's delay, or Retry-After when larger."""
    bench.receiver.script(reply)
    bench.enqueue(action(ActionKind.OPEN, sinks=("pager",)))
    bench.dispatch()
    before = time.time()
    bench.work()

    pending = bench.delivery()
    assert pending.next_at - pending.updated_at == pytest.approx(delay)
    scheduled = bench.queue.scheduled_job_registry.get_scheduled_time(bench.job()).timestamp()
    assert before + delay - 1 <= scheduled <= time.time() + delay  # RQ schedules in whole seconds


def test_a_rejected_delivery_goes_dead_and_its_job_fails(bench: Bench) -> None:
    """A 400 is recorded dead at once (a dead letter, as in embedded mode) and the job is a failed RQ job."""
    bench.receiver.script(Reply(400, "invalid routing key"))
    bench.enqueue(action(ActionKind.OPEN, sinks=("pager",)))
    bench.dispatch()
    bench.work()

    dead = bench.owner.call(bench.store.dead_letters())
    assert [(d.id, d.state, d.attempts) for d in dead] == [(1, DeliveryState.DEAD, 1)]
    assert "400" in dead[0].last_error and "invalid routing key" in dead[0].last_error
    assert bench.queue.failed_job_registry.get_job_ids() == [job_id(1, bench.prefix)]
    assert "DeliveryDead" in (bench.job().latest_result().exc_string or "")  # type: ignore[union-attr]
    assert bench.queue.scheduled_job_registry.count == 0
    assert bench.dispatch() == 0
    assert len(bench.receiver.requests) == 1


def test_a_delivery_goes_dead_when_its_retries_are_exhausted(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    """After policy.max_attempts failed attempts the delivery is dead and the job ends failed."""
    bench.receiver.default = Reply(503, "still down")
    bench.enqueue(action(ActionKind.OPEN, sinks=("pager",)))
    bench.dispatch()
    for _ in range(POLICY.max_attempts):
        bench.work()
        bench.release_scheduled(monkeypatch)

    dead = bench.delivery()
    assert (dead.state, dead.attempts) == (DeliveryState.DEAD, POLICY.max_attempts)
    assert dead.last_error.startswith(f"gave up after {POLICY.max_attempts} attempts")
    assert bench.job().get_status() is JobStatus.FAILED
    assert len(bench.receiver.requests) == POLICY.max_attempts


def test_an_incidents_next_action_is_enqueued_only_after_the_first_is_recorded(
        bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    """The resolve of an incident gets no job while its open is pending, even between retries."""
    bench.receiver.script(Reply(503))
    bench.enqueue(action(ActionKind.OPEN, sinks=("pager",)),
                  action(ActionKind.RESOLVE, revision=2, sinks=("pager",)))

    assert bench.dispatch() == 1
    bench.work()  # the open fails once and is scheduled for a retry
    assert bench.dispatch() == 0
    assert bench.queue.count == 0

    bench.release_scheduled(monkeypatch)
    bench.work()  # the open is delivered
    assert bench.dispatch() == 1  # now the resolve heads its lane
    bench.work()

    assert [kind for kind, _ in sent(bench.receiver)] == ["open", "open", "resolve"]
    assert bench.delivery(2).state is DeliveryState.DELIVERED


def test_a_job_that_ended_without_recording_is_replaced_and_resends_with_the_same_key(
        bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker lost between the receiver's 2xx and mark_delivered resends once, under the same key."""
    real_mark = RedisStore.mark_delivered
    lost: list[int] = []

    async def lose_first_mark(self: RedisStore, delivery_id: int, now: float) -> bool:
        if not lost:
            lost.append(delivery_id)
            raise StoreUnavailable("connection lost before the mark")
        return await real_mark(self, delivery_id, now)

    monkeypatch.setattr(RedisStore, "mark_delivered", lose_first_mark)
    bench.enqueue(action(ActionKind.OPEN, sinks=("pager",)))
    bench.dispatch()
    bench.work()
    assert bench.job().get_status() is JobStatus.FAILED
    assert bench.delivery().state is DeliveryState.PENDING

    assert bench.dispatch() == 1  # pending, its job ended: a fresh job replaces it
    bench.work()

    assert sent(bench.receiver) == [("open", "inc1:pager:1")] * 2
    assert bench.delivery().state is DeliveryState.DELIVERED
    assert bench.queue.failed_job_registry.count == 0


def test_a_dead_letter_retried_through_the_store_is_delivered_by_a_fresh_job(bench: Bench) -> None:
    """retry_dead (POST /api/v1/dead-letters/{id}/retry) makes the delivery due, and its failed job is replaced."""
    bench.receiver.script(Reply(400))
    bench.enqueue(action(ActionKind.OPEN, sinks=("pager",)))
    bench.dispatch()
    bench.work()
    assert bench.owner.call(bench.store.retry_dead(1, time.time()))

    assert bench.dispatch() == 1
    bench.work()

    assert bench.delivery().state is DeliveryState.DELIVERED
    assert bench.queue.failed_job_registry.count == 0
    assert len(bench.receiver.requests) == 2


def test_a_delivery_to_a_sink_the_worker_does_not_know_goes_dead_without_an_attempt(bench: Bench) -> None:
    """A delivery whose sink is not in the worker's config is dead at once, with no request sent."""
    bench.enqueue(action(ActionKind.OPEN, sinks=("retired",)))
    bench.dispatch()
    bench.work()

    dead = bench.delivery()
    assert (dead.state, dead.attempts, dead.last_error) == (DeliveryState.DEAD, 0, "unknown sink")
    assert bench.receiver.requests == []


def test_a_job_found_alive_is_trusted_until_recheck_after_unless_its_delivery_changed(bench: Bench) -> None:
    """Within recheck_after a pass does not look at a known job again, but a changed delivery is looked at."""
    dispatcher = bench.new_dispatcher(recheck_after=3600.0)
    bench.enqueue(action(ActionKind.OPEN, sinks=("pager",)))
    assert bench.dispatch(dispatcher) == 1
    bench.job().delete()  # lost behind the dispatcher's back

    assert bench.dispatch(dispatcher) == 0  # trusted: no round trip, not noticed yet
    bench.owner.call(bench.store.mark_retry(1, time.time(), "changed", time.time()))
    assert bench.dispatch(dispatcher) == 1  # the delivery changed: checked, and enqueued again
    bench.owner.call(dispatcher.stop())


def test_the_worker_reads_the_config_path_from_its_environment(bench: Bench,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs without a config path use the worker's ALERTBRIDGE_CONFIG; without either, nothing is recorded."""
    dispatcher = bench.new_dispatcher(config_path=None)
    bench.enqueue(action(ActionKind.OPEN, sinks=("pager",)))
    bench.dispatch(dispatcher)
    bench.work()
    assert bench.job().get_status() is JobStatus.FAILED
    assert CONFIG_ENV in (bench.job().latest_result().exc_string or "")  # type: ignore[union-attr]
    assert bench.delivery().state is DeliveryState.PENDING

    monkeypatch.setenv(CONFIG_ENV, str(bench.config))
    assert bench.dispatch(dispatcher) == 1
    bench.work()
    assert bench.delivery().state is DeliveryState.DELIVERED
    bench.owner.call(dispatcher.stop())


def test_one_worker_process_builds_its_state_once_and_closes_it_at_exit(bench: Bench) -> None:
    """A non-forking worker reuses settings, sinks and their HTTP session across jobs; closing ends them."""
    bench.enqueue(action(ActionKind.OPEN, incident="a", sinks=("pager",)))
    bench.dispatch()
    bench.work()
    [state] = rq_jobs._states.values()  # private: the per-process state is what is under test
    session = state.sinks["pager"]._session._session  # type: ignore[attr-defined]  # the webhook's LazySession

    bench.enqueue(action(ActionKind.OPEN, incident="b", sinks=("pager",)))
    bench.dispatch()
    bench.work()
    assert list(rq_jobs._states.values()) == [state]
    assert state.sinks["pager"]._session._session is session  # type: ignore[attr-defined]
    assert len(bench.receiver.requests) == 2

    rq_jobs.close_worker_state()
    assert session.closed and rq_jobs._states == {}


def test_a_forking_worker_delivers_and_closes_its_state_with_the_job(bench: Bench) -> None:
    """RQ's default Worker (one process per job) delivers, and its store's writer registration is withdrawn."""
    bench.enqueue(action(ActionKind.OPEN, sinks=("pager",)))
    bench.dispatch()
    writers = bench.store.key(RedisStore.WRITERS)
    before = bench.connection.hlen(writers)

    assert Worker([bench.queue], connection=bench.connection).work(burst=True)

    assert bench.delivery().state is DeliveryState.DELIVERED
    assert len(bench.receiver.requests) == 1
    assert bench.connection.hlen(writers) == before
    assert rq_jobs._states == {}  # the parent ran no job: it built nothing


def test_a_recorded_outcome_wakes_the_running_dispatcher_for_the_lanes_next_action(bench: Bench) -> None:
    """Once a worker records the open, the running dispatcher enqueues the resolve without waiting for a poll."""
    dispatcher = bench.new_dispatcher(poll_interval=3600.0)
    passes: queue_module.Queue[int] = queue_module.Queue()
    run_once = dispatcher.run_once

    async def counted_pass() -> int:
        enqueued = await run_once()
        passes.put(enqueued)
        return enqueued

    dispatcher.run_once = counted_pass  # type: ignore[method-assign]  # observe the loop's passes

    def wait_for_enqueue() -> None:
        deadline = time.monotonic() + 10
        while passes.get(timeout=max(0.0, deadline - time.monotonic())) == 0:
            pass

    bench.enqueue(action(ActionKind.OPEN, sinks=("pager",)),
                  action(ActionKind.RESOLVE, revision=2, sinks=("pager",)))
    bench.owner.call(dispatcher.start())
    try:
        wait_for_enqueue()
        assert bench.queue.count == 1
        bench.work()  # the open is recorded delivered and announced
        wait_for_enqueue()  # the poll is an hour: only the announcement can have woken it
        bench.work()
    finally:
        bench.owner.call(dispatcher.stop())

    assert [kind for kind, _ in sent(bench.receiver)] == ["open", "resolve"]
