"""Distributed mode's delivery: every outbox row becomes one RQ job, run by `rq worker` processes.

The partition owner runs `RQDispatcher` in place of `EmbeddedDispatcher` (same `start`, `stop`,
`wake`, `run_once`). A pass reads `store.due()` (the oldest pending delivery of each (sink,
incident) whose `next_at` has come) and enqueues one job per delivery on the RQ queue
`alertbridge-deliveries`; `rq worker` processes run `deliver(delivery_id, config_path)`, which
attempts the delivery once and records the outcome in the same outbox:

- delivered -> `mark_delivered`, at once (see "Sent once" below); the job finishes;
- retry     -> `mark_retry` at `now + delay` (`next_delay` of the policy, Retry-After honoured as a
               lower bound, rounded up to whole seconds: RQ schedules in seconds), and the job
               RETURNS `rq.Retry(max=policy.max_attempts - 1, interval=delay)`: RQ puts it in its
               ScheduledJobRegistry and the scheduler of a worker started `--with-scheduler` queues
               it again at that time. The delay is computed per attempt, so a receiver's
               Retry-After can set it, which an interval list fixed at enqueue time could not;
- failed    -> (a 4xx), and a retry once `policy.max_attempts` attempts have failed: `mark_dead`,
               then the job raises `DeliveryDead`, so RQ files it in its FailedJobRegistry. The
               dead letter is in the store, so `GET /api/v1/dead-letters` shows it and
               `POST .../retry` revives it exactly as in embedded mode (the revived delivery is
               due again; the next pass replaces its failed job by a fresh one).

A sink that raises, hangs past `ATTEMPT_TIMEOUT` or returns something that is not an `Outcome`
counts as a retry, a delivery whose sink is not configured (in the WORKER's config) goes dead with
"unknown sink", and one whose action does not decode goes dead, all as in embedded mode.

Job ids and duplicates
    A delivery's job id is `job_id(delivery_id, store_prefix)` ("alertbridge-delivery-42"), and
    jobs are enqueued with RQ's `unique=True` (an atomic check-and-create), so enqueueing the same
    delivery twice, from one pass or two owners, makes one job. The id stays taken while RQ keeps
    the job (queued, scheduled, running; then its result, `result_ttl`, or its failure). When a
    pass finds a delivery still pending whose job has ENDED (finished or failed without recording
    an outcome: a worker killed mid-job, the store unreachable from the worker, a config error on
    the worker, or an operator's retry of a dead letter), it deletes that job and enqueues a fresh
    one. A job found alive is not looked at again for `recheck_after` seconds unless the delivery
    changed, so a backlog of queued jobs costs no round trips per pass.

Order
    Only lane heads are ever due (`store.due()`), and a head stays the head while it is pending,
    also between retries. So a (sink, incident) has at most one job at a time, and its next action
    is enqueued only after the head was recorded delivered or dead. Each job that records a final
    outcome publishes the delivery id on `recorded_channel(store_prefix)`; the dispatcher listens
    and runs a pass at once, so the lane's next action does not wait for the poll.

Sent once (at-least-once delivery, exactly-once effect)
    A job may run twice: its worker dies mid-job (RQ fails the job; the next pass enqueues the
    still-pending delivery again), an operator requeues it, or two runs overlap when RQ gives up on
    a worker that was only slow. Two things make that harmless:
    1. The ledger: a job first reads its delivery and does nothing unless it is still `pending`;
       delivered or dead means done. Every mark is conditional on `pending` too. So once an
       outcome is recorded, no run sends again.
    2. The idempotency key: every attempt of a delivery sends the same key
       (`sink.deliver(action, delivery.idempotency_key)`; HTTP sinks send it as a header). The one
       window the ledger cannot close is a worker that dies after the receiver accepted the page
       and before `mark_delivered` landed: the next run sends again, with the same key, and the
       receiver drops the duplicate (PagerDuty's dedup_key, the webhook's Idempotency-Key). The
       window is kept to one Redis round trip: `mark_delivered` is the first thing done after the
       sink answers; logging and everything else come after.

Worker processes
    Each worker process keeps, per (config, store): the settings (loaded once), the sinks (built
    once, their aiohttp sessions reused), the RedisStore and one event loop that all of them live
    on; every job runs on that loop (a session cannot cross loops). RQ's default `Worker` forks a
    work horse per job, whose process ends with the job: there the state is built for the job and
    closed when it ends (sessions closed, the store's writer registration withdrawn), so every job
    pays the start-up (imports, config validation, connections: about 1.5 s). A non-forking
    `rq.worker.SimpleWorker` (`-w rq.worker.SimpleWorker`) pays it once, keeps the state across
    jobs (a job then takes milliseconds plus the receiver's answer) and closes it at exit.

    The config: the job argument `config_path` when the owner passes one, else the worker's
    environment variable `ALERTBRIDGE_CONFIG`; it is loaded once per process (restart workers
    after a config change). The store: the job's `store_url` when the owner passes one, else
    `ALERTBRIDGE_REDIS`, else the config's `redis.url`, else the Redis the worker itself uses (the
    usual case: the outbox and the queue share one Redis); its key prefix comes with the job. Job
    arguments are readable by anyone who can read the queue: a URL with a password belongs in the
    worker's environment or config.

        ALERTBRIDGE_CONFIG=/etc/alertbridge/alertbridge.yaml \\
            rq worker --with-scheduler --url redis://redis:6379/0 alertbridge-deliveries

    `--with-scheduler` is required on at least one worker: without a scheduler, retried jobs stay
    in the ScheduledJobRegistry forever (their deliveries stay pending and are never re-enqueued,
    since their jobs are alive).

Metrics: each attempt is counted in the store (`RedisStore.count_attempt`), which every replica's
`/metrics` shows as `alertbridge_worker_deliveries_total{sink,outcome}`; each outcome is also
logged ("delivery delivered", "delivery retry scheduled", "delivery dead") with the sink, and a
sent attempt with its duration in seconds.

The owner side, which turns due deliveries into these jobs, is `bridge.dispatch.rq_dispatcher`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import math
import os
import re
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypeVar
from urllib.parse import quote

import redis
import redis.asyncio
import structlog
from redis.exceptions import RedisError
from rq import Retry
from rq.job import Job, get_current_job
from rq.timeouts import BaseTimeoutException
from rq.worker import Worker

from bridge.dispatch.attempt import attempt
from bridge.dispatch.backoff import RetryPolicy, next_delay
from bridge.dispatch.embedded import UNKNOWN_SINK
from bridge.errors import StoreUnavailable
from bridge.links import link_signer, with_links
from bridge.model import Action
from bridge.plugins import Outcome, OutcomeKind, Sink
from bridge.store.base import Delivery, DeliveryState, action_from_dict

__all__ = [
    "ATTEMPT_TIMEOUT",
    "CONFIG_ENV",
    "DEFAULT_QUEUE",
    "DEFAULT_STORE_PREFIX",
    "JOB_TIMEOUT",
    "REDIS_URL_ENV",
    "DeliveryDead",
    "JobOutcome",
    "close_worker_state",
    "deliver",
    "job_id",
    "recorded_channel",
]

T = TypeVar("T")

#: The RQ queue deliveries are enqueued on (the README's worker command names it).
DEFAULT_QUEUE: Final = "alertbridge-deliveries"
#: The RedisStore key prefix when neither the store nor the job names one.
DEFAULT_STORE_PREFIX: Final = "alertbridge"
#: The environment variable a worker reads the config path from when the job carries none.
CONFIG_ENV: Final = "ALERTBRIDGE_CONFIG"
#: The environment variable a worker reads the store's Redis URL from when the job carries none
#: (the same variable as `alertbridge serve --redis`).
REDIS_URL_ENV: Final = "ALERTBRIDGE_REDIS"
#: Seconds one attempt may take before it counts as a retry: a backstop above the sinks' own
#: timeouts (at most 300 s), as in embedded mode.
ATTEMPT_TIMEOUT: Final = 330.0
#: RQ's limit on one job, in seconds: above ATTEMPT_TIMEOUT plus the store round trips, so that RQ
#: only ever interrupts a job stuck outside the sink.
JOB_TIMEOUT: Final = 390

_log = structlog.get_logger("alertbridge.dispatch")

_JOB_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

#: Whether a worker configures structlog from the config's `logging:` section (tests turn it off:
#: structlog's configuration is process-wide).
_configure_logging = True


# -------------------------------------------------------------------------------------------- names

def job_id(delivery_id: int, store_prefix: str = DEFAULT_STORE_PREFIX) -> str:
    """The RQ job id of a delivery: `<store prefix>-delivery-<id>`.

    RQ allows only `[A-Za-z0-9_-]` in ids: a prefix with other characters (a Redis Cluster hash tag
    such as `{alertbridge}`) has them replaced and a hash of the original appended, so two
    different prefixes never share job ids.
    """
    safe = _JOB_ID_UNSAFE.sub("_", store_prefix)
    if safe != store_prefix:
        safe += "_" + hashlib.sha1(store_prefix.encode()).hexdigest()[:8]
    return f"{safe}-delivery-{int(delivery_id)}"


def recorded_channel(store_prefix: str = DEFAULT_STORE_PREFIX) -> str:
    """The pub/sub channel on the queue's Redis where jobs announce a recorded final outcome."""
    return f"{store_prefix}:dispatch:recorded"


# -------------------------------------------------------------------------------------- the job

class JobOutcome(StrEnum):
    """What one run of `deliver` did."""

    DELIVERED = "delivered"  # the sink accepted it; recorded delivered
    RETRY = "retry"  # recorded a failed attempt; RQ runs the job again after the delay
    DEAD = "dead"  # recorded dead (rejected, gave up, unknown sink, undecodable)
    SKIPPED = "skipped"  # not pending any more (the ledger): nothing sent


class DeliveryDead(Exception):
    """Raised by `deliver` after it recorded the delivery dead, so that RQ files the job as failed.

    Not an error of the job: the outcome is recorded in the store, where the dead-letter API reads
    it. Raising is the one way RQ offers to end a job in its FailedJobRegistry.
    """

    def __init__(self, delivery_id: int, reason: str) -> None:
        super().__init__(delivery_id, reason)
        self.delivery_id = delivery_id
        self.reason = reason

    def __str__(self) -> str:
        return f"delivery {self.delivery_id} is dead: {self.reason}"


@dataclass(frozen=True, slots=True)
class _Attempt:
    outcome: JobOutcome
    detail: str = ""
    delay: int = 0  # RETRY: whole seconds until the next attempt


def deliver(delivery_id: int, config_path: str | None = None, *, store_prefix: str = DEFAULT_STORE_PREFIX,
            store_url: str | None = None, policy: Mapping[str, Any] | None = None) -> Any:
    """The RQ job: attempt one outbox delivery and record its outcome (see the module docstring).

    Returns a summary dict when the delivery was delivered or already recorded, an `rq.Retry` when
    it is to be tried again; raises `DeliveryDead` once it is recorded dead. Any other exception
    means nothing was recorded: the delivery stays pending and the owner enqueues it again.
    """
    job = get_current_job()
    path = _config_path(config_path)
    settings = _settings_for(path)
    state = _state_for(path, settings, _store_url(store_url, settings, job), store_prefix)
    retry_policy = RetryPolicy(**policy) if policy is not None else state.policy
    retried = (job.number_of_retries or 0) if job is not None else 0
    try:
        attempt = state.run(_attempt(state, int(delivery_id), retry_policy, retried))
    except BaseException as exc:
        if not isinstance(exc, Exception) or isinstance(exc, BaseTimeoutException):
            _discard(state)  # interrupted mid-loop (RQ's job timeout, shutdown): the loop is unusable
        raise
    finally:
        if state.open and job is not None and state.ends_with(job):
            close_worker_state(state)

    if attempt.outcome in (JobOutcome.DELIVERED, JobOutcome.DEAD) and job is not None:
        _announce(job.connection, store_prefix, int(delivery_id))
    if attempt.outcome is JobOutcome.RETRY:
        return Retry(max=max(1, retry_policy.max_attempts - 1), interval=attempt.delay)
    if attempt.outcome is JobOutcome.DEAD:
        raise DeliveryDead(int(delivery_id), attempt.detail)
    return {"delivery": int(delivery_id), "outcome": attempt.outcome.value, "detail": attempt.detail}


async def _attempt(state: _WorkerState, delivery_id: int, policy: RetryPolicy, retried: int) -> _Attempt:
    store = state.store
    delivery = await store.get_delivery(delivery_id)
    if delivery is None:
        raise LookupError(f"delivery {delivery_id} is not in the store (prefix {state.store_prefix!r})")
    log = _log.bind(delivery=delivery.id, sink=delivery.sink, incident=delivery.incident_id,
                    kind=delivery.kind, revision=delivery.revision)
    if delivery.state is not DeliveryState.PENDING:  # the ledger: recorded once, never sent again
        log.info("delivery already recorded", state=delivery.state.value)
        return _Attempt(JobOutcome.SKIPPED, delivery.state.value)

    sink = state.sinks.get(delivery.sink)
    if sink is None:
        return await _dead(store, delivery, UNKNOWN_SINK, log, attempted=False)
    try:
        action = state.decorate(action_from_dict(delivery.action))
    except (KeyError, TypeError, ValueError) as exc:
        return await _dead(store, delivery, f"undecodable action: {exc!r}", log, attempted=False)

    started = time.perf_counter()
    outcome = await attempt(sink, action, delivery.idempotency_key, ATTEMPT_TIMEOUT, log)
    result = await _record(store, delivery, outcome, policy, retried, started, log)  # the ledger first
    with contextlib.suppress(StoreUnavailable):  # then the metric: never worth failing a delivery for
        await store.count_attempt(delivery.sink, outcome.kind.value)
    return result


async def _record(store: Any, delivery: Delivery, outcome: Outcome, policy: RetryPolicy, retried: int,
                  started: float, log: Any) -> _Attempt:
    """Record an attempt's outcome in the ledger: delivered, a retry (RQ runs the job again), or dead."""
    if outcome.kind is OutcomeKind.DELIVERED:
        recorded = await store.mark_delivered(delivery.id, time.time())  # first: the resend window
        log.info("delivery delivered", attempts=delivery.attempts + 1,
                 seconds=round(time.perf_counter() - started, 3), recorded=recorded)
        return _Attempt(JobOutcome.DELIVERED if recorded else JobOutcome.SKIPPED, "")

    reason = _describe(outcome)
    if outcome.kind is OutcomeKind.FAILED:
        return await _dead(store, delivery, reason, log)
    attempts = delivery.attempts + 1
    if attempts >= policy.max_attempts or retried >= policy.max_attempts - 1:
        return await _dead(store, delivery, f"gave up after {attempts} attempts: {reason}", log)
    delay = max(1, math.ceil(next_delay(policy, attempts, outcome.retry_after)))
    now = time.time()
    if not await store.mark_retry(delivery.id, now + delay, reason, now):
        return _Attempt(JobOutcome.SKIPPED, "recorded by another run")
    log.info("delivery retry scheduled", reason=reason, attempts=attempts, delay=delay,
             seconds=round(time.perf_counter() - started, 3))
    return _Attempt(JobOutcome.RETRY, reason, delay)


async def _dead(store: Any, delivery: Delivery, reason: str, log: Any, *, attempted: bool = True) -> _Attempt:
    if not await store.mark_dead(delivery.id, reason, time.time(), attempted=attempted):
        return _Attempt(JobOutcome.SKIPPED, "recorded by another run")
    log.warning("delivery dead", reason=reason, attempts=delivery.attempts + int(attempted))
    return _Attempt(JobOutcome.DEAD, reason)


def _describe(outcome: Outcome) -> str:
    # the same text as embedded mode's, so dead letters read the same in both modes
    reason = outcome.reason or outcome.kind.value
    return f"{reason} (status {outcome.status})" if outcome.status is not None else reason


def _announce(connection: Any, store_prefix: str, delivery_id: int) -> None:
    """Tell the owner an outcome was recorded (best effort: its poll finds it anyway)."""
    try:
        connection.publish(recorded_channel(store_prefix), delivery_id)
    except (RedisError, OSError) as exc:
        _log.warning("outcome not announced", delivery=delivery_id, error=f"{type(exc).__name__}: {exc}")


# ------------------------------------------------------------------------------ per-process state

class _WorkerState:
    """What one worker process keeps across jobs for one (config, store): settings, sinks, store, loop."""

    def __init__(self, config_path: str, settings: Any, store_url: str, store_prefix: str) -> None:
        # Imported here: only worker processes need the plugins and the Redis store.
        from bridge.store.redis import RedisStore
        from bridge.wiring import build_sinks

        self.key = (config_path, store_url, store_prefix)
        self.pid = os.getpid()
        self.store_prefix = store_prefix
        self.settings = settings
        if _configure_logging:
            from bridge.log import configure_logging
            configure_logging(self.settings.logging.level, self.settings.logging.format)
        d = self.settings.dispatch
        self.policy = RetryPolicy(initial=d.initial_backoff, max_delay=d.max_backoff,
                                  max_attempts=d.max_attempts, jitter=d.jitter)
        self.links = link_signer(self.settings)
        self.runner = asyncio.Runner()
        self.sinks: dict[str, Sink] = build_sinks(self.settings)
        self.store = RedisStore(store_url, prefix=store_prefix)
        self.open = True
        self._one_job: bool | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def decorate(self, action: Action) -> Action:
        """The action with its signed links, as the bridge renders them (deterministic)."""
        return with_links(self.links, action)

    def ends_with(self, job: Job) -> bool:
        """Whether this process ends with the job: a work horse, forked or spawned for one job."""
        if self._one_job is None:
            self._one_job = _in_work_horse(job)
        return self._one_job

    async def aclose(self) -> None:
        for sink in self.sinks.values():
            try:
                await sink.close()
            except Exception:
                _log.exception("sink close failed", sink=sink.name)
        await self.store.aclose()


_settings: dict[str, Any] = {}  # config path -> validated settings (plain data: fine to inherit)
_states: dict[tuple[str, str, str], _WorkerState] = {}
_inherited: list[_WorkerState] = []  # a forked child's copies of its parent's state: never touched


def _settings_for(config_path: str) -> Any:
    found = _settings.get(config_path)
    if found is None:
        from bridge.settings import load_settings  # only worker processes need the config loader

        found = _settings[config_path] = load_settings(config_path)
    return found


def _state_for(config_path: str, settings: Any, store_url: str, store_prefix: str) -> _WorkerState:
    key = (config_path, store_url, store_prefix)
    state = _states.get(key)
    if state is not None and state.pid != os.getpid():
        # Inherited through fork(): its sockets and loop are the parent's. Keep a reference so that
        # no finaliser closes them from here, and build this process's own.
        _inherited.append(_states.pop(key))
        state = None
    if state is None:
        if not _states:
            atexit.register(_close_all)  # unregistered again below, so registered once at a time
        state = _states[key] = _WorkerState(config_path, settings, store_url, store_prefix)
    return state


def close_worker_state(state: _WorkerState | None = None) -> None:
    """Close this process's worker state (one, or all): sinks' sessions, store, event loop.

    Runs at exit; tests call it to end a worker process's state without ending the process.
    """
    for found in [state] if state is not None else list(_states.values()):
        if not found.open or found.pid != os.getpid():
            continue
        found.open = False
        _states.pop(found.key, None)
        try:
            found.run(found.aclose())
        except Exception:
            _log.exception("worker state close failed")
        finally:
            found.runner.close()
    if not _states:
        atexit.unregister(_close_all)


def _close_all() -> None:
    close_worker_state()


def _discard(state: _WorkerState) -> None:
    """Drop a state whose loop was interrupted: cancel what ran on it, close what can be closed."""
    state.open = False
    _states.pop(state.key, None)
    with contextlib.suppress(BaseException):  # best effort on a loop in an unknown state
        state.runner.close()


def _in_work_horse(job: Job) -> bool:
    # RQ records every worker's pid in its registration; a work horse has another pid.
    if not job.worker_name:
        return True
    try:
        pid = job.connection.hget(Worker.redis_worker_namespace_prefix + job.worker_name, "pid")
    except (RedisError, OSError):
        return True  # unknown: closing after the job is always safe, only slower
    return pid is None or int(pid) != os.getpid()


def _config_path(explicit: str | None) -> str:
    path = explicit or os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"no alertbridge config: set {CONFIG_ENV} on the worker (or RQDispatcher config_path)")
    return path


def _store_url(explicit: str | None, settings: Any, job: Job | None) -> str:
    redis_settings = getattr(settings, "redis", None)
    url = explicit or os.environ.get(REDIS_URL_ENV) or getattr(redis_settings, "url", None)
    if url:
        return str(url)
    if job is None:
        raise RuntimeError(f"no store url: set {REDIS_URL_ENV} or redis.url (or run the job in an RQ worker)")
    return _connection_url(job.connection)


def _connection_url(connection: Any) -> str:
    """The URL of the Redis a redis-py client talks to (the worker's own, from `rq worker --url`)."""
    pool = connection.connection_pool
    kwargs = pool.connection_kwargs
    user, password = kwargs.get("username"), kwargs.get("password")
    auth = ""
    if user or password:
        auth = quote(user or "", safe="") + (":" + quote(password, safe="") if password else "") + "@"
    db = kwargs.get("db") or 0
    if kwargs.get("path"):
        return f"unix://{auth}{kwargs['path']}?db={db}"
    scheme = "rediss" if issubclass(pool.connection_class, redis.SSLConnection) else "redis"
    return f"{scheme}://{auth}{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"
