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

Partitions: with `redis.partition_label` (say `cluster`) and `redis.partitions` (the values that
get a partition of their own, say [eu, us]), each partition is a cell of its own: its own journal
(`prefix:<partition>:journal`; the default partition keeps `prefix:journal`), its own engine in
every process, and its own lease, so different processes can own different partitions. An alert
goes to the partition its label names, else to `default`; a webhook carrying alerts of several
partitions is journaled in each, and each engine keeps only its own alerts. Silences, maintenance
windows and schedule overrides are journaled in every partition; an acknowledge or resolve in the
partition of its incident. All partitions share one outbox (deliveries are keyed by incident, and
every owner's writes are fenced by its own partition's token).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from bridge.dispatch.backoff import RetryPolicy
from bridge.engine import Engine
from bridge.errors import StoreUnavailable
from bridge.ingest import ENTRY_ACK, ENTRY_RESOLVE, ENTRY_TICK, ENTRY_WEBHOOK, Applier
from bridge.lease import PartitionLease, new_holder_id
from bridge.log import get_logger
from bridge.model import Action, Alert
from bridge.plugins import Parsed, Source
from bridge.runtime import Runtime
from bridge.store.base import new_deliveries
from bridge.store.redis import RedisStore
from bridge.wiring import build_engine

__all__ = ["DEFAULT", "DistributedRuntime"]

log = get_logger("alertbridge.distributed")

#: The partition of alerts whose label names no listed partition (of every alert without partition_label).
DEFAULT = "default"
#: Longest an API call waits for its own journal entry to reach this process's engines.
APPLY_WAIT = 10.0


@dataclass(eq=False)
class Cell:
    """One partition in this process: its journal, its engine (following that journal), its lease."""

    name: str
    journal: RedisStore
    engine: Engine
    lease: PartitionLease
    applier: Applier = field(init=False)  # set once the cell exists: its owner-only enqueue needs it
    applied_seq: int = 0
    owner: bool = False
    token: int | None = None
    resync: bool = False  # an enqueue failed: enqueue everything again (idempotent) when Redis is back
    applied: asyncio.Condition = field(default_factory=asyncio.Condition)


class DistributedRuntime(Runtime):
    """A Runtime whose store is Redis: journal, follow, and (for the partitions whose lease it holds) deliver."""

    def __init__(self, settings: Any, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.holder = new_holder_id()
        self.takeovers = 0
        self.cells: dict[str, Cell] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._redis: Any = None
        r = settings.redis
        self._label: str | None = r.partition_label
        self._names = [DEFAULT, *(p for p in r.partitions if p != DEFAULT)]

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        from redis.asyncio import Redis

        r = self.settings.redis
        self._redis = Redis.from_url(r.url, socket_timeout=max(1.0, r.lease_ttl / 3))
        for name in self._names:
            engine = self.engine if name == DEFAULT else build_engine(self.settings, name)
            journal = RedisStore(r.url, prefix=r.prefix if name == DEFAULT else f"{r.prefix}:{name}")
            cell = Cell(name, journal, engine,
                        PartitionLease(self._redis, name, self.holder, ttl=r.lease_ttl, prefix=r.prefix))
            cell.applier = Applier(engine, self.sources, self._owner_actions(cell), keep=self._keep(name))
            self.cells[name] = cell
        self.store = self.cells[DEFAULT].journal  # type: ignore[assignment]  # the outbox all partitions share
        self.metrics.watch_workers(self.cells[DEFAULT].journal.attempts)
        for cell in self.cells.values():
            await self._catch_up(cell)
        for cell in self.cells.values():
            self._tasks += [asyncio.create_task(self._follow(cell), name=f"alertbridge-follow-{cell.name}"),
                            asyncio.create_task(cell.lease.run(self._acquirer(cell), self._loser(cell)),
                                                name=f"alertbridge-lease-{cell.name}")]
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="alertbridge-ticker"))
        self.ready = True
        log.info("replica started", holder=self.holder, partitions=list(self.cells),
                 incidents=sum(len(c.engine.views()) for c in self.cells.values()))

    async def stop(self) -> None:
        self.ready = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._stop_delivering()
        for cell in self.cells.values():
            await cell.journal.aclose()
        if self._redis is not None:
            await self._redis.aclose()
        for sink in self.sinks.values():
            await sink.close()

    # ------------------------------------------------------------------------------ partitions

    def _partition(self, alert: Alert) -> str:
        value = alert.labels.get(self._label, "") if self._label else ""
        return value if value in self.cells else DEFAULT

    def _keep(self, name: str) -> Any:
        if self._label is None:
            return None
        return lambda alert: self._partition(alert) == name

    def engines(self) -> list[Engine]:
        return [cell.engine for cell in self.cells.values()] or [self.engine]

    # ------------------------------------------------------------------------------ following

    async def _catch_up(self, cell: Cell) -> None:
        """Apply the journal so far (startup): retried until Redis answers."""
        while True:
            try:
                entries = await asyncio.to_thread(lambda: list(cell.journal.entries(cell.applied_seq)))
            except StoreUnavailable as err:
                log.warning("waiting for redis", error=str(err))
                await asyncio.sleep(1.0)
                continue
            self._apply(cell, entries)
            return

    async def _follow(self, cell: Cell) -> None:
        """Apply every entry any process appends, in seq order, as soon as it is there."""
        down = False
        while True:
            try:
                entries = await cell.journal.tail(cell.applied_seq, block=1.0)
            except StoreUnavailable as err:
                if not down:
                    log.error("journal unreachable", partition=cell.name, error=str(err))
                    down, self.ready = True, False
                await asyncio.sleep(0.5)
                continue
            if down:
                log.info("journal reachable again", partition=cell.name, applied_seq=cell.applied_seq)
                down, self.ready = False, True
            if entries:
                self._apply(cell, entries)
                async with cell.applied:
                    cell.applied.notify_all()

    def _apply(self, cell: Cell, entries: list[Any]) -> None:
        for entry in entries:
            if entry.seq <= cell.applied_seq:
                continue
            cell.applier.apply_batch([entry])
            cell.applied_seq = entry.seq
            self._last_at = max(self._last_at, entry.at)

    async def _append(self, cell: Cell, kind: str, source: str, data: dict[str, Any], at: float, *,
                      wait: bool) -> None:
        entry = await cell.journal.append(kind, source, data, at)
        if wait:
            async with cell.applied:
                await asyncio.wait_for(cell.applied.wait_for(lambda: cell.applied_seq >= entry.seq), APPLY_WAIT)

    async def _journal(self, kind: str, source: str, data: dict[str, Any], at: float) -> None:
        """An API input: an acknowledge or resolve in its incident's partition; the rest in every one."""
        if kind in (ENTRY_ACK, ENTRY_RESOLVE):
            cells = [next((c for c in self.cells.values() if c.engine.get(data["incident"]) is not None),
                          self.cells[DEFAULT])]
        else:
            cells = list(self.cells.values())
        for cell in cells:
            await self._append(cell, kind, source, data, at, wait=True)

    async def ingest(self, source: Source, body: bytes, headers: Any) -> Parsed:
        """Parse and journal one webhook body in its alerts' partitions: the 2xx means durable in Redis."""
        now = self.now()
        parsed = source.parse(body, headers, now)
        names = sorted({self._partition(a) for a in parsed.alerts}) or [DEFAULT]
        data = {"body": body.decode("utf-8", errors="replace")}
        for name in names:
            await self._append(self.cells[name], ENTRY_WEBHOOK, source.name, data, now, wait=False)
        self._accepted(source, parsed)
        return parsed

    # ------------------------------------------------------------------------------ owning

    def _owner_actions(self, cell: Cell) -> Any:
        def enqueue(actions: list[Action]) -> None:
            """What the partition's engine emits: enqueued by its owner, dropped by the others."""
            if cell.owner and cell.lease.held:
                self._enqueue_for(cell, actions)
        return enqueue

    def _acquirer(self, cell: Cell) -> Any:
        async def acquired(token: int) -> None:
            """Took the lease: re-enqueue everything the journal implies (idempotent), then deliver."""
            self.takeovers += 1
            count, actions = await self._enqueue_all(cell, token)
            log.info("partition owned", partition=cell.name, token=token, rebuilt_entries=count, actions=actions)
            await self._start_delivering()
        return acquired

    def _loser(self, cell: Cell) -> Any:
        async def lost() -> None:
            cell.owner, cell.token = False, None
            log.warning("partition lost", partition=cell.name)
            if not any(c.owner for c in self.cells.values()):
                await self._stop_delivering()
        return lost

    async def _enqueue_all(self, cell: Cell, token: int) -> tuple[int, int]:
        """Replay the partition's journal into a scratch engine and enqueue all it emits (keys make
        repeats no-ops): after a takeover, and after an enqueue that Redis trouble may have lost."""
        scratch = build_engine(self.settings, "" if cell.name == DEFAULT else cell.name)
        collected: list[Action] = []
        rebuild = Applier(scratch, self.sources, collected.extend, keep=self._keep(cell.name))
        count = 0
        for entry in await asyncio.to_thread(lambda: list(cell.journal.entries())):
            if entry.seq > cell.applied_seq:
                break
            collected.extend(rebuild.apply(entry.kind, entry.source, entry.data, entry.at))
            count += 1
        # no await from here on: the follower cannot apply an entry between the rebuild and `owner`.
        # What it applied while the journal was being read is read again now (sync, a short tail).
        for entry in cell.journal.entries(count):
            if entry.seq > cell.applied_seq:
                break
            collected.extend(rebuild.apply(entry.kind, entry.source, entry.data, entry.at))
            count += 1
        cell.token, cell.owner, cell.resync = token, True, False
        if collected:
            self._enqueue_for(cell, collected, count_metrics=False)
        return count, len(collected)

    async def _start_delivering(self) -> None:
        if self.dispatcher is not None:
            return
        from bridge.dispatch.rq_dispatcher import RQDispatcher

        d = self.settings.dispatch
        policy = RetryPolicy(initial=d.initial_backoff, max_delay=d.max_backoff, max_attempts=d.max_attempts,
                             jitter=d.jitter)
        # a job still "started" longer than any attempt can take lost its worker (SIGKILL): re-enqueue it
        longest = max((sink.timeout for sink in self.settings.sinks), default=10.0)
        outbox = self.cells[DEFAULT].journal
        dispatcher = RQDispatcher(outbox, self.settings.redis.url, queue=self.settings.redis.queue,
                                  policy=policy, store_prefix=self.settings.redis.prefix,
                                  store_url=self.settings.redis.url, recheck_after=5.0, stale_after=longest + 15.0)
        self.dispatcher = dispatcher  # type: ignore[assignment]  # the same start/stop/wake surface
        await dispatcher.start()

    async def _stop_delivering(self) -> None:
        if self.dispatcher is not None:
            dispatcher, self.dispatcher = self.dispatcher, None
            with contextlib.suppress(Exception):
                await dispatcher.stop()

    def _enqueue_for(self, cell: Cell, actions: list[Action], *, count_metrics: bool = True) -> None:
        rows = [row for action in actions for row in new_deliveries(action)]
        for action in actions:
            if count_metrics:
                self.metrics.actions.labels(action.kind.value).inc()
            log.info("incident " + action.kind.value, incident=action.incident.id, partition=cell.name,
                     revision=action.incident.revision, reason=action.reason, sinks=list(action.sinks))
        if rows and cell.token is not None:
            # fenced in Redis by this partition's token: should this process have lost the lease
            # meanwhile, nothing is written
            outbox = self.cells[DEFAULT].journal
            done = outbox.enqueue_nowait(rows, self.now(), fence=(cell.lease.fence_key, cell.token))
            done.add_done_callback(lambda future: self._enqueued(cell, future))

    def _enqueued(self, cell: Cell, future: asyncio.Future[int]) -> None:
        error = None if future.cancelled() else future.exception()
        if error is not None:  # fenced off (a new owner re-enqueues it all), or Redis trouble
            log.warning("deliveries not enqueued", partition=cell.name, error=str(error), token=cell.token)
            cell.resync = True  # the owner enqueues everything again once Redis answers
        elif self.dispatcher is not None:
            self.dispatcher.wake()

    # ------------------------------------------------------------------------------ time

    async def tick(self) -> None:
        """Each owner journals a tick when one of its engine's timers is due: timers fire in journal order."""
        if not self.cells:
            return
        with contextlib.suppress(StoreUnavailable):
            self.queue_depth = await self.cells[DEFAULT].journal.counts()
        now = self.now()
        for cell in self.cells.values():
            if not (cell.owner and cell.token is not None and cell.lease.held):
                continue
            if cell.resync:
                with contextlib.suppress(StoreUnavailable):
                    count, actions = await self._enqueue_all(cell, cell.token)
                    log.info("deliveries enqueued again", partition=cell.name, rebuilt_entries=count,
                             actions=actions)
            due = cell.engine.next_timer()
            if due is not None and due <= now:
                with contextlib.suppress(StoreUnavailable):
                    await cell.journal.append(ENTRY_TICK, "clock", {}, now)
