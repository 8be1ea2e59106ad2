"""Tests of bridge/dispatch/embedded.py: scripted fake sinks, a fake clock, a real SQLite outbox."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from structlog.testing import capture_logs

from bridge.dispatch import EmbeddedDispatcher, RetryPolicy
from bridge.errors import StoreUnavailable
from bridge.model import Action, ActionKind, IncidentStatus, IncidentView
from bridge.plugins import Outcome, Sink, SinkConfig
from bridge.store import Delivery, NewDelivery, SQLiteStore, new_deliveries

T0 = 1_700_000_000.0
NO_JITTER = RetryPolicy(initial=1.0, multiplier=2.0, max_delay=300.0, max_attempts=8, jitter=0.0)

# A script step: an Outcome to return, an exception to raise, or a coroutine function to await.
Step = Outcome | BaseException | Callable[[], Awaitable[Any]]


class FakeSink:
    """A sink that plays a script of steps, then delivers; it records every call."""

    type_name: ClassVar[str] = "fake"
    config_model: ClassVar[type[SinkConfig]] = SinkConfig

    def __init__(self, name: str, script: Sequence[Step] = ()) -> None:
        self.name = name
        self.script = list(script)
        self.calls: list[tuple[str, str, str]] = []  # (kind, incident id, idempotency key)

    async def deliver(self, action: Action, idempotency_key: str) -> Outcome:
        self.calls.append((action.kind.value, action.incident.id, idempotency_key))
        step = self.script.pop(0) if self.script else Outcome.delivered(200)
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return await step()  # type: ignore[no-any-return]  # a scripted coroutine
        return step

    async def close(self) -> None:
        pass

    @property
    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.calls]


class FakeClock:
    """The wall clock, moved by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Bench:
    store: SQLiteStore
    clock: FakeClock
    sinks: dict[str, FakeSink]
    dispatcher: EmbeddedDispatcher
    observed: list[tuple[str, str, float]] = field(default_factory=list)

    async def enqueue(self, *actions: Action) -> int:
        rows = [row for a in actions for row in new_deliveries(a)]
        return await self.store.enqueue(rows, self.clock())

    async def delivery(self, delivery_id: int = 1) -> Delivery:
        found = await self.store.get_delivery(delivery_id)
        assert found is not None
        return found


def run_bench(tmp_path: Path, body: Callable[[Bench], Awaitable[None]], *sinks: FakeSink,
              policy: RetryPolicy = NO_JITTER, **kwargs: Any) -> None:
    """Run `body` with a store in tmp_path, the sinks, a fake clock and a dispatcher over them."""

    async def main() -> None:
        store = SQLiteStore(tmp_path)
        clock = FakeClock()
        observed: list[tuple[str, str, float]] = []
        kwargs.setdefault("timer", itertools.count(0.0, 0.5).__next__)  # every attempt "takes" 0.5 s
        dispatcher = EmbeddedDispatcher(
            kwargs.pop("outbox", store), {s.name: s for s in sinks}, clock, policy,
            metrics_hook=lambda sink, outcome, seconds: observed.append((sink, outcome, seconds)),
            **kwargs)
        try:
            await body(Bench(store, clock, {s.name: s for s in sinks}, dispatcher, observed))
        finally:
            await dispatcher.stop(timeout=0)
            await store.aclose()

    asyncio.run(main())


def action(kind: ActionKind = ActionKind.OPEN, incident: str = "inc1", revision: int = 1,
           sinks: tuple[str, ...] = ("pager",)) -> Action:
    view = IncidentView(
        id=incident, key=f"key-{incident}", route="db", status=IncidentStatus.TRIGGERED, priority="P1",
        priority_reason="critical", pool=None, title="Disk full", revision=revision, opened_at=T0,
        updated_at=T0, resolved_at=None, acknowledged_by=None, alerts=(), group_labels={},
    )
    return Action(kind=kind, at=T0, incident=view, sinks=sinks)


async def wait_for(event: asyncio.Event) -> None:
    """Wait for an event the test itself causes; the bound only turns a bug into a failure."""
    await asyncio.wait_for(event.wait(), 5)


# ------------------------------------------------------------------------------------------ outcomes

def test_delivered_action_is_marked_delivered_and_not_sent_again(tmp_path: Path) -> None:
    """A delivered outcome marks the delivery delivered, with the idempotency key passed to the sink."""
    sink = FakeSink("pager")

    async def body(b: Bench) -> None:
        await b.enqueue(action())
        assert await b.dispatcher.run_once() == 1
        assert sink.calls == [("open", "inc1", "inc1:pager:1")]
        d = await b.delivery()
        assert (d.state, d.attempts, d.updated_at) == ("delivered", 0, T0)
        assert b.observed == [("pager", "delivered", 0.5)]
        b.clock.now += 3600
        assert await b.dispatcher.run_once() == 0
        assert len(sink.calls) == 1

    run_bench(tmp_path, body, sink)


def test_retries_follow_the_policy_schedule_then_succeed(tmp_path: Path) -> None:
    """Each retry is due exactly at now + next_delay(policy, attempts, rand), and not a moment before."""
    sink = FakeSink("pager", [Outcome.retry("503", status=503)] * 3)
    policy = RetryPolicy(initial=1.0, multiplier=2.0, jitter=0.5)

    async def body(b: Bench) -> None:
        await b.enqueue(action())
        for attempts, delay in enumerate([0.75, 1.5, 3.0], start=1):  # base * (1 - 0.5 * 0.5)
            now = b.clock.now
            assert await b.dispatcher.run_once() == 1
            d = await b.delivery()
            assert (d.state, d.attempts, d.next_at, d.last_error) == (
                "pending", attempts, now + delay, "503 (status 503)")
            b.clock.now = d.next_at - 0.001
            assert await b.dispatcher.run_once() == 0
            b.clock.now = d.next_at
        assert await b.dispatcher.run_once() == 1
        assert (await b.delivery()).state == "delivered"
        assert [o for _, o, _ in b.observed] == ["retry", "retry", "retry", "delivered"]

    run_bench(tmp_path, body, sink, policy=policy, rand=lambda: 0.5)


@pytest.mark.parametrize(("retry_after", "expected_delay"), [
    (None, 1.0), (30.0, 30.0), (0.2, 1.0), (7200.0, 3600.0),
], ids=["no-header-uses-backoff", "longer-header-wins", "shorter-header-loses", "header-capped-at-1h"])
def test_retry_after_is_honoured_as_a_lower_bound(tmp_path: Path, retry_after: float | None,
                                                  expected_delay: float) -> None:
    """A receiver's Retry-After postpones the next attempt at least that long (capped at an hour)."""
    sink = FakeSink("pager", [Outcome.retry("429", retry_after=retry_after, status=429)])

    async def body(b: Bench) -> None:
        await b.enqueue(action())
        await b.dispatcher.run_once()
        assert (await b.delivery()).next_at == T0 + expected_delay

    run_bench(tmp_path, body, sink)


def test_failed_outcome_goes_dead_without_retry(tmp_path: Path) -> None:
    """A failed outcome (a 4xx) makes the delivery dead at once, and it is never attempted again."""
    sink = FakeSink("pager", [Outcome.failed("invalid routing key", status=400)])

    async def body(b: Bench) -> None:
        await b.enqueue(action())
        await b.dispatcher.run_once()
        d = await b.delivery()
        assert (d.state, d.attempts, d.last_error) == ("dead", 1, "invalid routing key (status 400)")
        b.clock.now += 10_000
        assert await b.dispatcher.run_once() == 0
        assert b.observed == [("pager", "failed", 0.5)]
        assert [x.id for x in await b.store.dead_letters()] == [1]

    run_bench(tmp_path, body, sink)


def test_delivery_goes_dead_after_max_attempts(tmp_path: Path) -> None:
    """After policy.max_attempts failed attempts the delivery is dead, with the last reason kept."""
    sink = FakeSink("pager", [Outcome.retry("503")] * 10)

    async def body(b: Bench) -> None:
        await b.enqueue(action())
        for _ in range(3):
            assert await b.dispatcher.run_once() == 1
            b.clock.now += 1000
        d = await b.delivery()
        assert (d.state, d.attempts, d.last_error) == ("dead", 3, "gave up after 3 attempts: 503")
        assert await b.dispatcher.run_once() == 0
        assert len(sink.calls) == 3

    run_bench(tmp_path, body, sink, policy=RetryPolicy(max_attempts=3, jitter=0.0))


async def _never() -> Outcome:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def _not_an_outcome() -> Any:
    return None


MISBEHAVING = [
    ("raises", RuntimeError("boom"), "RuntimeError: boom"),
    ("raises-its-own-timeout", TimeoutError("connect timed out"), "TimeoutError: connect timed out"),
    ("returns-no-outcome", _not_an_outcome, "sink returned NoneType, not an Outcome"),
    ("hangs-past-attempt-timeout", _never, "no outcome after 0s"),
]


@pytest.mark.parametrize(("step", "expected_error"), [c[1:] for c in MISBEHAVING],
                         ids=[c[0] for c in MISBEHAVING])
def test_misbehaving_sink_counts_as_retry_and_the_dispatcher_survives(
        tmp_path: Path, step: Step, expected_error: str) -> None:
    """A sink that raises, hangs or returns garbage is retried later; other deliveries go on."""
    bad, good = FakeSink("pager", [step]), FakeSink("chat")

    async def body(b: Bench) -> None:
        await b.enqueue(action(sinks=("pager", "chat")))
        with capture_logs() as logs:
            assert await b.dispatcher.run_once() == 2
        d = await b.delivery(1)
        assert (d.state, d.attempts, d.last_error) == ("pending", 1, expected_error)
        assert (await b.delivery(2)).state == "delivered"
        assert ("pager", "retry") in [(sink, outcome) for sink, outcome, _ in b.observed]
        broke = [e for e in logs if e["event"] == "sink broke its contract"]
        assert [(e["sink"], e["error"]) for e in broke] == [("pager", expected_error)]
        b.clock.now = d.next_at
        assert await b.dispatcher.run_once() == 1
        assert (await b.delivery(1)).state == "delivered"

    run_bench(tmp_path, body, bad, good, attempt_timeout=0.0)


@pytest.mark.parametrize(("row", "reason"), [
    (NewDelivery("inc1:gone:1", "gone", "inc1", 1, "open", {}), "unknown sink"),
    (NewDelivery("inc1:pager:1", "pager", "inc1", 1, "open", {"kind": "open"}), "undecodable action"),
], ids=["sink-no-longer-configured", "action-cannot-be-decoded"])
def test_undeliverable_rows_go_dead_without_an_attempt(tmp_path: Path, row: NewDelivery, reason: str) -> None:
    """A delivery to an unknown sink, or with a broken action, is dead at once and counts no attempt."""
    sink = FakeSink("pager")

    async def body(b: Bench) -> None:
        await b.store.enqueue([row], T0)
        await b.dispatcher.run_once()
        d = await b.delivery()
        assert (d.state, d.attempts) == ("dead", 0)
        assert d.last_error.startswith(reason)
        assert sink.calls == [] and b.observed == []

    run_bench(tmp_path, body, sink)


def test_metrics_hook_failure_does_not_affect_delivery(tmp_path: Path) -> None:
    """A metrics hook that raises is logged; the delivery is still recorded."""
    sink = FakeSink("pager")

    def broken_hook(sink: str, outcome: str, seconds: float) -> None:
        raise ValueError("label cardinality")

    async def main() -> None:
        store = SQLiteStore(tmp_path)
        dispatcher = EmbeddedDispatcher(store, {"pager": sink}, FakeClock(), NO_JITTER, broken_hook)
        await store.enqueue(new_deliveries(action()), T0)
        with capture_logs() as logs:
            await dispatcher.run_once()
        assert (await store.counts())["delivered"] == 1
        assert any(e["event"] == "metrics hook failed" for e in logs)
        await store.aclose()

    asyncio.run(main())


def test_unrecorded_outcome_leaves_the_delivery_pending(tmp_path: Path) -> None:
    """If the store cannot record an outcome, the delivery stays pending and the pass does not fail."""
    sink = FakeSink("pager")

    class FailingMarks:
        def __init__(self, inner: SQLiteStore) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        async def mark_delivered(self, delivery_id: int, now: float) -> bool:
            raise StoreUnavailable("disk full")

    async def main() -> None:
        store = SQLiteStore(tmp_path)
        dispatcher = EmbeddedDispatcher(FailingMarks(store), {"pager": sink}, FakeClock(),  # type: ignore[arg-type]
                                        NO_JITTER)
        await store.enqueue(new_deliveries(action()), T0)
        with capture_logs() as logs:
            assert await dispatcher.run_once() == 1
        assert await store.counts() == {"pending": 1, "delivered": 0, "dead": 0}
        assert any(e["event"] == "delivery not recorded" for e in logs)
        assert dispatcher.in_flight == 0
        await store.aclose()

    asyncio.run(main())


# ------------------------------------------------------------------------------------------ ordering

@pytest.mark.parametrize(("open_script", "expected_kinds", "open_state"), [
    ([Outcome.retry("503"), Outcome.retry("503")], ["open", "open", "open", "resolve"], "delivered"),
    ([Outcome.failed("bad request", status=400)], ["open", "resolve"], "dead"),
], ids=["resolve-waits-until-open-delivered", "resolve-goes-once-open-is-dead"])
def test_resolve_is_never_delivered_before_open_settled(
        tmp_path: Path, open_script: list[Step], expected_kinds: list[str], open_state: str) -> None:
    """An incident's later action reaches a sink only after the earlier one was delivered or went dead."""
    sink = FakeSink("pager", open_script)

    async def body(b: Bench) -> None:
        await b.enqueue(action(ActionKind.OPEN, revision=1), action(ActionKind.RESOLVE, revision=2))
        while await b.dispatcher.run_once():
            b.clock.now += 1000
        assert sink.kinds == expected_kinds
        assert (await b.delivery(1)).state == open_state
        assert (await b.delivery(2)).state == "delivered"

    run_bench(tmp_path, body, sink)


def test_different_incidents_are_delivered_concurrently(tmp_path: Path) -> None:
    """Deliveries of different incidents are in flight together (each waits until both arrived)."""
    arrived = 0
    both = asyncio.Event()

    async def rendezvous() -> Outcome:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both.set()
        await wait_for(both)
        return Outcome.delivered()

    sink = FakeSink("pager", [rendezvous, rendezvous])

    async def body(b: Bench) -> None:
        await b.enqueue(action(incident="inc1"), action(incident="inc2"))
        assert await b.dispatcher.run_once() == 2
        assert (await b.store.counts())["delivered"] == 2

    run_bench(tmp_path, body, sink)


def test_restart_does_not_resend_delivered_actions(tmp_path: Path) -> None:
    """A new dispatcher over the reopened file, with the same actions rebuilt, sends nothing again."""
    first, second = FakeSink("pager"), FakeSink("pager")
    actions = (action(ActionKind.OPEN, revision=1), action(ActionKind.RESOLVE, revision=2))

    async def before(b: Bench) -> None:
        assert await b.enqueue(*actions) == 2
        while await b.dispatcher.run_once():
            pass

    async def after(b: Bench) -> None:
        assert await b.enqueue(*actions) == 0  # the rebuild re-enqueues the same keys: no-op
        assert await b.dispatcher.run_once() == 0

    run_bench(tmp_path, before, first)
    run_bench(tmp_path, after, second)
    assert first.kinds == ["open", "resolve"]
    assert second.calls == []


# -------------------------------------------------------------------------------- background loop

def test_background_loop_delivers_on_wake_and_follows_up_without_polling(tmp_path: Path) -> None:
    """After wake() the loop delivers, and a recorded delivery wakes it for the incident's next one."""
    done = asyncio.Event()

    async def last() -> Outcome:
        done.set()
        return Outcome.delivered()

    sink = FakeSink("pager", [Outcome.delivered(), last])

    async def body(b: Bench) -> None:
        await b.dispatcher.start()
        await b.enqueue(action(ActionKind.OPEN, revision=1), action(ActionKind.RESOLVE, revision=2))
        b.dispatcher.wake()
        await wait_for(done)
        await b.dispatcher.stop()
        assert sink.kinds == ["open", "resolve"]
        assert (await b.store.counts())["delivered"] == 2

    run_bench(tmp_path, body, sink, poll_interval=3600.0)


def _blocking_sink() -> tuple[FakeSink, asyncio.Event, asyncio.Event]:
    entered, release = asyncio.Event(), asyncio.Event()

    async def blocked() -> Outcome:
        entered.set()
        await release.wait()
        return Outcome.delivered()

    return FakeSink("pager", [blocked]), entered, release


def test_stop_lets_in_flight_deliveries_finish(tmp_path: Path) -> None:
    """stop() waits for an in-flight delivery to finish and records it."""
    sink, entered, release = _blocking_sink()

    async def body(b: Bench) -> None:
        await b.dispatcher.start()
        await b.enqueue(action())
        b.dispatcher.wake()
        await wait_for(entered)
        stopping = asyncio.create_task(b.dispatcher.stop(timeout=5))
        await asyncio.sleep(0)  # let stop() begin waiting (a yield, not a wait)
        assert not stopping.done()
        release.set()
        await stopping
        assert (await b.delivery()).state == "delivered"

    run_bench(tmp_path, body, sink, poll_interval=3600.0)


def test_stop_timeout_cancels_and_leaves_the_delivery_pending(tmp_path: Path) -> None:
    """A delivery still in flight when the stop timeout ends is cancelled and stays pending."""
    sink, entered, _ = _blocking_sink()

    async def body(b: Bench) -> None:
        await b.dispatcher.start()
        await b.enqueue(action())
        b.dispatcher.wake()
        await wait_for(entered)
        await b.dispatcher.stop(timeout=0)
        assert b.dispatcher.in_flight == 0
        d = await b.delivery()
        assert (d.state, d.attempts) == ("pending", 0)

    run_bench(tmp_path, body, sink, poll_interval=3600.0)


def test_run_once_skips_deliveries_already_in_flight(tmp_path: Path) -> None:
    """A pass never starts a delivery that the background loop already has in flight."""
    sink, entered, release = _blocking_sink()

    async def body(b: Bench) -> None:
        await b.dispatcher.start()
        await b.enqueue(action())
        b.dispatcher.wake()
        await wait_for(entered)
        assert await b.dispatcher.run_once() == 0
        release.set()
        await b.dispatcher.stop()
        assert len(sink.calls) == 1
        assert (await b.delivery()).state == "delivered"

    run_bench(tmp_path, body, sink, poll_interval=3600.0)


def test_dispatcher_accepts_sinks_satisfying_the_protocol() -> None:
    """The fake sink used here satisfies the Sink protocol the dispatcher is typed against."""
    assert isinstance(FakeSink("pager"), Sink)
