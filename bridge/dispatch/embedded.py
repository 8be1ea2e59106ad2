"""The in-process dispatcher of embedded mode: delivers the outbox to the sinks, with retries.

One pass (`run_once`, also the body of the background loop) fetches the due deliveries, delivers
them concurrently (at most `concurrency` at a time; different (sink, incident) pairs in parallel)
and records each outcome in the outbox:

- delivered -> `mark_delivered`;
- retry     -> `mark_retry` at `now + next_delay(...)` (Retry-After honoured as a lower bound), or
               `mark_dead` once `policy.max_attempts` attempts have failed;
- failed    -> `mark_dead` at once (the receiver rejected it: a 4xx is not retried).

A sink that raises (despite the contract), hangs past `attempt_timeout` or returns something that
is not an `Outcome` counts as a retry with the error's text; the loop survives it. A delivery for a
sink name that is no longer configured goes dead with reason "unknown sink".

Ordering: the outbox hands out only the oldest pending delivery of each (sink, incident), and a
delivery stays pending while it is in flight, so an incident's resolve never reaches a sink before
its open succeeded or went dead.

Exactly-once-ish: a delivery is marked delivered only after its sink returned delivered, and every
attempt carries the same idempotency key (`sink.deliver(action, key)`; HTTP sinks send it as a
header). A crash between the receiver's 2xx and `mark_delivered` resends that delivery once after
the restart; the key is what lets the receiver recognise and drop the duplicate.

Metrics: `metrics_hook(sink, outcome, seconds)` is called once per attempt, with `outcome` one of
"delivered", "retry", "failed" (a raising or hanging sink reports "retry") and the attempt's
duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import structlog

from bridge.dispatch.attempt import attempt
from bridge.dispatch.backoff import RetryPolicy, next_delay
from bridge.errors import StoreUnavailable
from bridge.model import Action
from bridge.plugins import Outcome, OutcomeKind, Sink
from bridge.store.base import Delivery, Outbox, action_from_dict

__all__ = ["EmbeddedDispatcher", "MetricsHook"]

MetricsHook = Callable[[str, str, float], None]

UNKNOWN_SINK = "unknown sink"


class EmbeddedDispatcher:
    """Delivers due outbox entries to `sinks`; call `wake()` after enqueueing to skip the poll wait.

    `clock` is the wall clock in epoch seconds (injected: tests drive it). `concurrency` bounds the
    deliveries running at once, `batch_limit` the deliveries taken in flight at once, and
    `poll_interval` the longest sleep between passes. `attempt_timeout` bounds one attempt: a
    backstop above the sinks' own timeouts (at most 300 s), for a sink that hangs. `stop()` lets
    in-flight deliveries finish for up to `stop_timeout` seconds, then cancels them (they stay
    pending and are retried on start).
    The dispatcher does not close the sinks; their owner does.
    """

    def __init__(
        self,
        store: Outbox,
        sinks: Mapping[str, Sink],
        clock: Callable[[], float],
        policy: RetryPolicy | None = None,
        metrics_hook: MetricsHook | None = None,
        log: Any = None,
        *,
        concurrency: int = 32,
        batch_limit: int = 256,
        poll_interval: float = 1.0,
        stop_timeout: float = 10.0,
        attempt_timeout: float = 330.0,
        rand: Callable[[], float] = random.random,
        timer: Callable[[], float] = time.perf_counter,
        actions: MutableMapping[str, Action] | None = None,
        decorate: Callable[[Action], Action] | None = None,
    ) -> None:
        if concurrency < 1 or batch_limit < 1:
            raise ValueError("concurrency and batch_limit must be at least 1")
        self._store = store
        self._sinks = sinks
        # the live Action objects of recent enqueues, by idempotency key, so a delivery made by this
        # process does not decode what it just encoded (a restart falls back to the stored JSON)
        self._actions = actions
        # adds what is rendered at delivery, not stored (the signed links); deterministic per action
        self._decorate = decorate
        self._clock = clock
        self._policy = policy or RetryPolicy()
        self._metrics_hook = metrics_hook
        self._log = log if log is not None else structlog.get_logger("alertbridge.dispatch")
        self._semaphore = asyncio.Semaphore(concurrency)
        self._batch_limit = batch_limit
        self._poll_interval = poll_interval
        self._stop_timeout = stop_timeout
        self._attempt_timeout = attempt_timeout
        self._rand = rand
        self._timer = timer
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._fetching: list[set[int]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def in_flight(self) -> int:
        """Deliveries taken from the outbox and not yet recorded."""
        return len(self._in_flight)

    # ------------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the background loop (idempotent)."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self._loop(), name="alertbridge-dispatcher")

    def wake(self) -> None:
        """Look for due deliveries now instead of at the next poll."""
        self._wake.set()

    async def stop(self, timeout: float | None = None) -> None:
        """Stop the loop; in-flight deliveries get `timeout` (default `stop_timeout`) s to finish."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        pending = list(self._in_flight.values())
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=self._stop_timeout if timeout is None else timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if late:
            self._log.warning("deliveries cancelled at stop", count=len(late))

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self._launch_due()
                wait = await self._idle_wait()
            except Exception as exc:  # a store outage must not end the loop
                self._log.error("dispatch pass failed", error=str(exc))
                wait = self._poll_interval
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _idle_wait(self) -> float:
        # Due-but-busy deliveries (in flight, or over batch_limit) wake us when one is recorded.
        earliest = await self._store.next_due_at()
        delay = None if earliest is None else earliest - self._clock()
        if delay is None or delay <= 0:
            return self._poll_interval
        return min(delay, self._poll_interval)

    # ------------------------------------------------------------------------------------------ pass

    async def run_once(self) -> int:
        """One pass: fetch due deliveries, deliver them, record the outcomes. Returns how many.

        Deliveries already in flight (from the background loop) are skipped, never sent twice.
        """
        tasks = await self._launch_due()
        if tasks:
            await asyncio.gather(*tasks)
        return len(tasks)

    async def _launch_due(self) -> list[asyncio.Task[None]]:
        room = self._batch_limit - len(self._in_flight)
        if room <= 0:
            return []
        # A delivery recorded while due() ran may come back in its (older) snapshot: skip those.
        settled: set[int] = set()
        self._fetching.append(settled)
        try:
            due = await self._store.due(self._clock(), room + len(self._in_flight))
        finally:
            self._fetching.remove(settled)
        tasks = []
        for delivery in due:
            if delivery.id in self._in_flight or delivery.id in settled:
                continue
            task = asyncio.create_task(self._deliver(delivery))
            self._in_flight[delivery.id] = task
            tasks.append(task)
            if len(tasks) >= room:
                break
        return tasks

    async def _deliver(self, delivery: Delivery) -> None:
        recorded = False
        try:
            async with self._semaphore:
                await self._attempt(delivery)
            recorded = True
        except StoreUnavailable as exc:
            # Not recorded: it stays pending and is attempted again (same idempotency key) at the
            # next poll, not at once, so a failing store does not turn into a resend loop.
            self._log.error("delivery not recorded", delivery=delivery.id, sink=delivery.sink,
                            error=str(exc))
        except Exception:  # a bug here must not go unseen, nor end the loop
            self._log.exception("delivery failed unexpectedly", delivery=delivery.id, sink=delivery.sink)
        finally:
            for settled in self._fetching:
                settled.add(delivery.id)
            self._in_flight.pop(delivery.id, None)
        if recorded:
            self._wake.set()  # its incident's next delivery may be due now

    async def _attempt(self, delivery: Delivery) -> None:
        log = self._log.bind(delivery=delivery.id, sink=delivery.sink, incident=delivery.incident_id,
                             kind=delivery.kind, revision=delivery.revision)
        sink = self._sinks.get(delivery.sink)
        if sink is None:
            await self._store.mark_dead(delivery.id, UNKNOWN_SINK, self._clock(), attempted=False)
            log.warning("delivery dead", reason=UNKNOWN_SINK)
            return
        try:
            cached = self._actions.pop(delivery.idempotency_key, None) if self._actions is not None else None
            action = cached if cached is not None else action_from_dict(delivery.action)
            if self._decorate is not None:
                action = self._decorate(action)
        except (KeyError, TypeError, ValueError) as exc:
            reason = f"undecodable action: {exc!r}"
            await self._store.mark_dead(delivery.id, reason, self._clock(), attempted=False)
            log.error("delivery dead", reason=reason)
            return

        started = self._timer()
        outcome = await attempt(sink, action, delivery.idempotency_key, self._attempt_timeout, log)
        self._observe(delivery.sink, outcome.kind.value, self._timer() - started)
        await self._record(delivery, outcome, log)

    async def _record(self, delivery: Delivery, outcome: Outcome, log: Any) -> None:
        now = self._clock()
        if outcome.kind is OutcomeKind.DELIVERED:
            await self._store.mark_delivered(delivery.id, now)
            log.info("delivery delivered", attempts=delivery.attempts + 1)
            return
        reason = _describe(outcome)
        if outcome.kind is OutcomeKind.FAILED:
            await self._store.mark_dead(delivery.id, reason, now)
            log.warning("delivery dead", reason=reason, attempts=delivery.attempts + 1)
            return
        attempts = delivery.attempts + 1
        if attempts >= self._policy.max_attempts:
            reason = f"gave up after {attempts} attempts: {reason}"
            await self._store.mark_dead(delivery.id, reason, now)
            log.warning("delivery dead", reason=reason, attempts=attempts)
            return
        delay = next_delay(self._policy, attempts, outcome.retry_after, self._rand)
        await self._store.mark_retry(delivery.id, now + delay, reason, now)
        log.info("delivery retry scheduled", reason=reason, attempts=attempts, delay=round(delay, 3))

    def _observe(self, sink: str, outcome: str, seconds: float) -> None:
        if self._metrics_hook is None:
            return
        try:
            self._metrics_hook(sink, outcome, seconds)
        except Exception:
            self._log.exception("metrics hook failed")


def _describe(outcome: Outcome) -> str:
    reason = outcome.reason or outcome.kind.value
    return f"{reason} (status {outcome.status})" if outcome.status is not None else reason
