"""Distributed mode: many `alertbridge serve --redis URL` processes, one truth in Redis.

Every process is an ingest replica and a follower; one of them, the lease holder, is also the
partition's owner:

    any replica:  request -> parse -> journal (Redis stream, durable) -> 2xx
    every process: follow the journal in seq order -> the same deterministic engine -> reads (API)
    the owner:     what its engine emits -> outbox (idempotency keys) -> RQ jobs -> `rq worker`s

Why every process runs the engine: the engine is a deterministic function of (config, ordered
journal), so every follower holds exactly the state a single process replaying the journal would,
and the API answers from any replica. Only the owner writes deliveries, and only while it holds
the partition lease (`bridge.lease`): a paused or cut-off old owner stops before its lease's local
deadline, and everything it could still write is idempotent (outbox rows are keyed by (incident,
sink, revision), which the deterministic engine gives the same values in every process).

Takeover: a standby that gets the lease replays the whole journal into a scratch engine and
enqueues everything it emits (the keys make what the old owner already enqueued a no-op), so
nothing the old owner had not enqueued yet is lost, then it delivers. Takeover time is about the
lease's ttl (`redis.lease_ttl`).

Time: the journal's times never go back (the Redis store clamps them), and engine timers
(group_wait, escalation, SLA, ...) fire only on journal entries: when one of its timers is due,
the owner appends a `tick` entry at the current time. So every process, and a replay of the
journal, fires the same timers at the same instants, and a timer is never fired twice by two
owners: it fires once, in the journal order.

Partitions: one partition ("default") is implemented; partitioning by a label is not yet.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from bridge.dispatch.backoff import RetryPolicy
from bridge.errors import StoreUnavailable
from bridge.ingest import ENTRY_TICK, Applier
from bridge.lease import PartitionLease, new_holder_id
from bridge.log import get_logger
from bridge.model import Action
from bridge.plugins import Parsed, Source
from bridge.runtime import Runtime
from bridge.store.base import new_deliveries
from bridge.store.redis import RedisStore
from bridge.wiring import build_engine

__all__ = ["PARTITION", "DistributedRuntime"]

log = get_logger("alertbridge.distributed")

PARTITION = "default"
#: Longest an API call waits for its own journal entry to reach this process's engine.
APPLY_WAIT = 10.0


class DistributedRuntime(Runtime):
    """A Runtime whose store is Redis: journal, follow, and (while it holds the lease) deliver."""

    def __init__(self, settings: Any, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.holder = new_holder_id()
        self.applied_seq = 0
        self.owner = False
        self.token: int | None = None
        self.takeovers = 0
        self._resync = False  # an enqueue failed: enqueue everything again (idempotent) when Redis is back
        self._applied = asyncio.Condition()
        self._tasks: list[asyncio.Task[Any]] = []
        self._lease: PartitionLease | None = None
        self._redis: Any = None
        self.applier = Applier(self.engine, self.sources, self._owner_actions)

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        from redis.asyncio import Redis

        r = self.settings.redis
        self.store = RedisStore(r.url, prefix=r.prefix)  # type: ignore[assignment]  # same Store contract
        self._redis = Redis.from_url(r.url, socket_timeout=max(1.0, r.lease_ttl / 3))
        self._lease = PartitionLease(self._redis, PARTITION, self.holder, ttl=r.lease_ttl, prefix=r.prefix)
        await self._catch_up()
        self._tasks = [asyncio.create_task(self._follow(), name="alertbridge-follow"),
                       asyncio.create_task(self._lease.run(self._acquired, self._lost), name="alertbridge-lease"),
                       asyncio.create_task(self._tick_loop(), name="alertbridge-ticker")]
        self.ready = True
        log.info("replica started", holder=self.holder, applied_seq=self.applied_seq,
                 incidents=len(self.engine.views()))

    async def stop(self) -> None:
        self.ready = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._stop_delivering()
        if self.store is not None:
            await self.store.aclose()
        if self._redis is not None:
            await self._redis.aclose()
        for sink in self.sinks.values():
            await sink.close()

    # ------------------------------------------------------------------------------ following

    async def _catch_up(self) -> None:
        """Apply the journal so far (startup): retried until Redis answers."""
        while True:
            try:
                entries = await asyncio.to_thread(lambda: list(self._store().entries(self.applied_seq)))
            except StoreUnavailable as err:
                log.warning("waiting for redis", error=str(err))
                await asyncio.sleep(1.0)
                continue
            self._apply(entries)
            return

    async def _follow(self) -> None:
        """Apply every entry any process appends, in seq order, as soon as it is there."""
        down = False
        while True:
            try:
                entries = await self._store().tail(self.applied_seq, block=1.0)
            except StoreUnavailable as err:
                if not down:
                    log.error("journal unreachable", error=str(err))
                    down, self.ready = True, False
                await asyncio.sleep(0.5)
                continue
            if down:
                log.info("journal reachable again", applied_seq=self.applied_seq)
                down, self.ready = False, True
            if entries:
                self._apply(entries)
                async with self._applied:
                    self._applied.notify_all()

    def _apply(self, entries: list[Any]) -> None:
        for entry in entries:
            if entry.seq <= self.applied_seq:
                continue
            self.applier.apply_batch([entry])
            self.applied_seq = entry.seq
            self._last_at = max(self._last_at, entry.at)

    def _store(self) -> RedisStore:
        assert isinstance(self.store, RedisStore)
        return self.store

    async def _wait_applied(self, seq: int) -> None:
        async with self._applied:
            await asyncio.wait_for(self._applied.wait_for(lambda: self.applied_seq >= seq), APPLY_WAIT)

    async def _journal(self, kind: str, source: str, data: dict[str, Any], at: float) -> None:
        entry = await self._store().append(kind, source, data, at)
        await self._wait_applied(entry.seq)

    async def ingest(self, source: Source, body: bytes, headers: Any) -> Parsed:
        """Parse and journal one webhook body: the 2xx means durable in Redis (the owner applies it)."""
        now = self.now()
        parsed = source.parse(body, headers, now)
        await self._store().append("webhook", source.name, {"body": body.decode("utf-8", errors="replace")}, now)
        self.metrics.alerts.labels(source.name).inc(len(parsed.alerts))
        if parsed.truncated:
            self.metrics.truncated.labels(source.name).inc(parsed.truncated)
        return parsed

    # ------------------------------------------------------------------------------ owning

    def _owner_actions(self, actions: list[Action]) -> None:
        """What the followed engine emits: enqueued by the owner, dropped by the others."""
        if self.owner and self._lease is not None and self._lease.held:
            self._enqueue_actions(actions)

    async def _acquired(self, token: int) -> None:
        """Took the lease: re-enqueue everything the journal implies (idempotent), then deliver."""
        self.takeovers += 1
        count, actions = await self._enqueue_all(token)
        log.info("partition owned", partition=PARTITION, token=token, rebuilt_entries=count, actions=actions)
        await self._start_delivering()

    async def _enqueue_all(self, token: int) -> tuple[int, int]:
        """Replay the journal into a scratch engine and enqueue all it emits (keys make repeats no-ops):
        after a takeover, and after an enqueue that Redis trouble may have lost."""
        scratch = build_engine(self.settings)
        collected: list[Action] = []
        rebuild = Applier(scratch, self.sources, collected.extend)
        count = 0
        for entry in await asyncio.to_thread(lambda: list(self._store().entries())):
            if entry.seq > self.applied_seq:
                break
            collected.extend(rebuild.apply(entry.kind, entry.source, entry.data, entry.at))
            count += 1
        # no await from here on: the follower cannot apply an entry between the rebuild and `owner`.
        # What it applied while the journal was being read is read again now (sync, a short tail).
        for entry in self._store().entries(count):
            if entry.seq > self.applied_seq:
                break
            collected.extend(rebuild.apply(entry.kind, entry.source, entry.data, entry.at))
            count += 1
        self.token, self.owner, self._resync = token, True, False
        if collected:
            self._enqueue_actions(collected, count_metrics=False)
        return count, len(collected)

    async def _lost(self) -> None:
        self.owner, self.token = False, None
        log.warning("partition lost", partition=PARTITION)
        await self._stop_delivering()

    async def _start_delivering(self) -> None:
        from bridge.dispatch.rq_jobs import RQDispatcher

        d = self.settings.dispatch
        policy = RetryPolicy(initial=d.initial_backoff, max_delay=d.max_backoff, max_attempts=d.max_attempts,
                             jitter=d.jitter)
        # a job still "started" longer than any attempt can take lost its worker (SIGKILL): re-enqueue it
        longest = max((sink.timeout for sink in self.settings.sinks), default=10.0)
        dispatcher = RQDispatcher(self._store(), self.settings.redis.url, queue=self.settings.redis.queue,
                                  policy=policy, store_prefix=self.settings.redis.prefix,
                                  store_url=self.settings.redis.url, recheck_after=5.0, stale_after=longest + 15.0)
        await dispatcher.start()
        self.dispatcher = dispatcher  # type: ignore[assignment]  # the same start/stop/wake surface

    async def _stop_delivering(self) -> None:
        if self.dispatcher is not None:
            with contextlib.suppress(Exception):
                await self.dispatcher.stop()
            self.dispatcher = None

    def _enqueue_actions(self, actions: list[Action], *, count_metrics: bool = True) -> None:
        rows = [row for action in actions for row in new_deliveries(action)]
        for action in actions:
            if count_metrics:
                self.metrics.actions.labels(action.kind.value).inc()
            log.info("incident " + action.kind.value, incident=action.incident.id,
                     revision=action.incident.revision, reason=action.reason, sinks=list(action.sinks))
        if rows and self.store is not None and self._lease is not None and self.token is not None:
            # fenced in Redis: should this process have lost the lease meanwhile, nothing is written
            done = self._store().enqueue_nowait(rows, self.now(), fence=(self._lease.fence_key, self.token))
            dispatcher = self.dispatcher
            done.add_done_callback(lambda future: self._enqueued(future, dispatcher))

    def _enqueued(self, future: asyncio.Future[int], dispatcher: Any) -> None:
        error = None if future.cancelled() else future.exception()
        if error is not None:  # fenced off (a new owner re-enqueues it all), or Redis trouble
            log.warning("deliveries not enqueued", error=str(error), token=self.token)
            self._resync = True  # the owner enqueues everything again once Redis answers
        elif dispatcher is not None:
            dispatcher.wake()

    # ------------------------------------------------------------------------------ time

    async def tick(self) -> None:
        """The owner journals a tick when one of the engine's timers is due: timers fire in journal order."""
        if self.store is None:
            return
        with contextlib.suppress(StoreUnavailable):
            self.queue_depth = await self.store.counts()
        if self._resync and self.owner and self.token is not None and self._lease is not None and self._lease.held:
            with contextlib.suppress(StoreUnavailable):
                count, actions = await self._enqueue_all(self.token)
                log.info("deliveries enqueued again", rebuilt_entries=count, actions=actions)
        due = self.engine.next_timer()
        now = self.now()
        if self.owner and self._lease is not None and self._lease.held and due is not None and due <= now:
            with contextlib.suppress(StoreUnavailable):
                await self._store().append(ENTRY_TICK, "clock", {}, now)
