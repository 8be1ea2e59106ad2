"""The owner side of distributed delivery: due outbox deliveries become RQ jobs (`bridge.dispatch.rq_jobs`).

The partition owner runs `RQDispatcher` in place of `EmbeddedDispatcher` (same `start`, `stop`,
`wake`, `run_once`). A pass reads `store.due()` (the oldest pending delivery of each (sink,
incident) whose `next_at` has come) and enqueues one `rq_jobs.deliver` job per delivery.

Job ids and duplicates
    A delivery's job id is `job_id(delivery_id, store_prefix)`, enqueued with RQ's `unique=True`
    (an atomic check-and-create): enqueueing the same delivery twice, from one pass or two owners,
    makes one job. When a pass finds a delivery still pending whose job has ended without recording
    an outcome (a worker killed mid-job, the store unreachable from the worker, an operator's retry
    of a dead letter), or was lost with its worker (`stale_after`), it deletes that job and
    enqueues a fresh one. A job found alive is not looked at again for `recheck_after` seconds
    unless the delivery changed, so a backlog of queued jobs costs no round trips per pass.

Order
    Only lane heads are ever due, and a head stays the head while it is pending, so a (sink,
    incident) has at most one job at a time. Each job that records a final outcome publishes the
    delivery id on `recorded_channel(store_prefix)`; the dispatcher listens and runs a pass at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from datetime import UTC
from enum import StrEnum
from typing import Any, Final

import redis
import redis.asyncio
import structlog
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

from bridge.dispatch.backoff import RetryPolicy
from bridge.dispatch.rq_jobs import DEFAULT_QUEUE, DEFAULT_STORE_PREFIX, JOB_TIMEOUT, deliver, job_id, recorded_channel
from bridge.store.base import Delivery, DeliveryState, Outbox

__all__ = ["RECHECK_AFTER", "STALE_AFTER", "RQDispatcher"]

_log = structlog.get_logger("alertbridge.dispatch")

#: Seconds a delivery whose job was found alive is not checked again (unless the delivery changed).
RECHECK_AFTER: Final = 30.0
#: Seconds after which a job still marked started (or queued, but no longer on the queue) is
#: presumed lost with its worker (SIGKILL, OOM): longer than any delivery attempt can take. Its
#: delivery gets a fresh job; should the old run still finish, the ledger makes one of the two a
#: no-op (and both carry the same idempotency key).
STALE_AFTER: Final = 60.0
#: RQ job states after which the job will not run again by itself.
_ENDED: Final = frozenset({JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED})



class _Offer(StrEnum):
    """What a pass found for one due delivery."""

    ENQUEUED = "enqueued"  # no job had its id: one was created
    ALIVE = "alive"  # its job is queued, scheduled or running
    ENDED = "ended"  # its job ended without recording an outcome (or the snapshot was stale)


class RQDispatcher:
    """Turns due outbox deliveries into RQ jobs on `queue` at `redis_url`; workers deliver them.

    `policy` is sent with every job, so the owner's config decides retries (workers fall back to
    their own `dispatch:` settings for a job without one). `config_path` and `store_url` are sent
    with every job when set (else workers use `ALERTBRIDGE_CONFIG`, and `ALERTBRIDGE_REDIS`, their
    config's `redis.url` or their own Redis); `store_prefix` defaults to the store's `prefix`.
    `batch_limit` bounds the new jobs per pass, `poll_interval` the sleep between passes when
    nothing wakes the loop, `recheck_after` how long a job found alive is trusted, `job_timeout`
    RQ's limit on one job.
    The enqueueing itself runs in a thread (RQ's client is synchronous): it never blocks the loop.
    """

    def __init__(
        self,
        store: Outbox,
        redis_url: str,
        *,
        queue: str = DEFAULT_QUEUE,
        policy: RetryPolicy,
        config_path: str | None = None,
        store_url: str | None = None,
        store_prefix: str | None = None,
        clock: Callable[[], float] = time.time,
        log: Any = None,
        batch_limit: int = 256,
        poll_interval: float = 1.0,
        recheck_after: float = RECHECK_AFTER,
        job_timeout: int = JOB_TIMEOUT,
        stale_after: float = STALE_AFTER,
    ) -> None:
        if batch_limit < 1:
            raise ValueError("batch_limit must be at least 1")
        self._store = store
        self._redis_url = redis_url
        self._policy = policy
        self._clock = clock
        self._log = log if log is not None else _log
        self._batch_limit = batch_limit
        self._poll_interval = poll_interval
        self._recheck_after = recheck_after
        self._stale_after = stale_after
        self._job_timeout = job_timeout
        self.store_prefix: str = store_prefix or getattr(store, "prefix", None) or DEFAULT_STORE_PREFIX
        self._job_args: tuple[Any, ...] = (config_path,)
        self._job_kwargs: dict[str, Any] = {"store_prefix": self.store_prefix,
                                            "policy": dataclasses.asdict(policy)}
        if store_url is not None:
            self._job_kwargs["store_url"] = store_url
        self._connection = redis.Redis.from_url(redis_url, socket_timeout=5.0, socket_connect_timeout=2.0)
        self.queue = Queue(queue, connection=self._connection)
        # delivery id -> (its updated_at, when its job was last enqueued or found alive)
        self._seen: dict[int, tuple[float, float]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._stopping = False

    # ------------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the background loop and the listener for recorded outcomes (idempotent)."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self._loop(), name="alertbridge-rq-dispatcher")
            self._listener = asyncio.create_task(self._listen(), name="alertbridge-rq-recorded")

    def wake(self) -> None:
        """Look for due deliveries now instead of at the next poll."""
        self._wake.set()

    async def stop(self, timeout: float | None = None) -> None:
        """Stop the loop. Nothing is in flight here: enqueued jobs stay with RQ and its workers.

        `timeout` is accepted for parity with `EmbeddedDispatcher.stop` and unused.
        """
        self._stopping = True
        self._wake.set()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._task is not None:
            await self._task
            self._task = None
        await asyncio.to_thread(self._connection.close)

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self.run_once()
            except Exception as exc:  # a store or queue outage must not end the loop
                self._log.error("dispatch pass failed", error=f"{type(exc).__name__}: {exc}")
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)

    async def _listen(self) -> None:
        """Wake the loop whenever a job announces a recorded outcome (its lane may have a new head)."""
        client = redis.asyncio.Redis.from_url(self._redis_url, socket_connect_timeout=2.0)
        failing = False
        try:
            while True:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                try:
                    await pubsub.subscribe(recorded_channel(self.store_prefix))
                    self._wake.set()  # outcomes recorded while we were not subscribed
                    failing = False
                    async for _ in pubsub.listen():
                        self._wake.set()
                except (RedisError, OSError) as exc:
                    if not failing:  # logged once per outage; the poll still finds everything
                        self._log.warning("outcome listener failed", error=f"{type(exc).__name__}: {exc}")
                        failing = True
                    await asyncio.sleep(self._poll_interval)
                finally:
                    with contextlib.suppress(RedisError, OSError):
                        await pubsub.aclose()
        finally:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    # ------------------------------------------------------------------------------------------ pass

    async def run_once(self) -> int:
        """One pass: enqueue a job for every due delivery that has none. Returns how many were enqueued."""
        now = self._clock()
        self._seen = {i: seen for i, seen in self._seen.items() if now - seen[1] < self._recheck_after}
        due = await self._store.due(now, self._batch_limit + len(self._seen))
        offered = [d for d in due if d.id not in self._seen or self._seen[d.id][0] != d.updated_at]
        offered = offered[: self._batch_limit]
        if not offered:
            return 0
        offers = await asyncio.to_thread(self._offer_all, offered)
        enqueued = 0
        for delivery, offer in zip(offered, offers, strict=True):
            if offer is _Offer.ENDED:
                # Re-read: the job may have recorded its outcome after due() took its snapshot.
                current = await self._store.get_delivery(delivery.id)
                if current is None or current.state is not DeliveryState.PENDING:
                    continue
                status = await asyncio.to_thread(self._replace, current)
                self._log.info("delivery enqueued again", delivery=delivery.id, sink=delivery.sink,
                               previous_job=status)
                offer, delivery = _Offer.ENQUEUED, current
            self._seen[delivery.id] = (delivery.updated_at, now)
            enqueued += offer is _Offer.ENQUEUED
        return enqueued

    def _offer_all(self, deliveries: Sequence[Delivery]) -> list[_Offer]:
        return [self._offer(delivery) for delivery in deliveries]

    def _offer(self, delivery: Delivery) -> _Offer:
        """Enqueue the delivery's job unless it has one; runs in a thread."""
        for _ in range(2):  # twice: the job we ran into may expire between the two calls
            try:
                self._enqueue(delivery)
                return _Offer.ENQUEUED
            except DuplicateJobError:
                pass
            try:
                job = Job.fetch(job_id(delivery.id, self.store_prefix), connection=self._connection)
                status = job.get_status()
            except NoSuchJobError:
                continue
            if self._lost(job, status):
                return _Offer.ENDED
            return _Offer.ENDED if status in _ENDED else _Offer.ALIVE
        return _Offer.ALIVE

    def _lost(self, job: Job, status: JobStatus | None) -> bool:
        """A job its worker took with it: started, or taken off the queue but never started (the
        worker was killed between the two), longer ago than any attempt can take."""
        now = self._clock()
        if status is JobStatus.STARTED and job.started_at is not None:
            return now - job.started_at.replace(tzinfo=UTC).timestamp() > self._stale_after
        if status is JobStatus.QUEUED and job.enqueued_at is not None:
            old = now - job.enqueued_at.replace(tzinfo=UTC).timestamp() > self._stale_after
            return old and self.queue.get_job_position(job.id) is None
        return False

    def _replace(self, delivery: Delivery) -> str:
        """Delete the delivery's ended job and enqueue a fresh one; returns the old job's status."""
        status = "gone"
        with contextlib.suppress(NoSuchJobError):
            job = Job.fetch(job_id(delivery.id, self.store_prefix), connection=self._connection)
            found = job.get_status(refresh=False)
            status = str(getattr(found, "value", found))
            job.delete()
        with contextlib.suppress(DuplicateJobError):  # another owner got there first: one job still
            self._enqueue(delivery)
        return status

    def _enqueue(self, delivery: Delivery) -> None:
        self.queue.enqueue_call(
            deliver,
            args=(delivery.id, *self._job_args),
            kwargs=self._job_kwargs,
            job_id=job_id(delivery.id, self.store_prefix),
            unique=True,
            timeout=self._job_timeout,
            description=f"alertbridge delivery {delivery.id}: {delivery.kind} of incident "
                        f"{delivery.incident_id} to {delivery.sink}",
        )


