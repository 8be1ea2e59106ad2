"""sinks/_http.py: the status → Outcome table, over real HTTP round trips and as a pure function."""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from importlib import metadata
from typing import Any

import pytest

from bridge.plugins import Outcome, OutcomeKind
from sinks._http import LazySession, outcome_for, post_json, retry_after_seconds
from tests.sinks.conftest import FakeReceiver, Reply, deliver, make_action, make_sink

HTTP_SINKS = pytest.mark.parametrize("sink_type", ["webhook", "slack"])

DELIVERED, RETRY, FAILED = OutcomeKind.DELIVERED, OutcomeKind.RETRY, OutcomeKind.FAILED

STATUS_TABLE = [
    (200, DELIVERED),
    (201, DELIVERED),
    (202, DELIVERED),
    (204, DELIVERED),
    (400, FAILED),
    (401, FAILED),
    (403, FAILED),
    (404, FAILED),
    (410, FAILED),
    (422, FAILED),
    (408, RETRY),
    (429, RETRY),
    (500, RETRY),
    (502, RETRY),
    (503, RETRY),
    (504, RETRY),
]


@HTTP_SINKS
@pytest.mark.parametrize(("status", "kind"), STATUS_TABLE, ids=[f"{s}-{k.value}" for s, k in STATUS_TABLE])
def test_status_maps_to_outcome(receiver: FakeReceiver, sink_type: str, status: int,
                                kind: OutcomeKind) -> None:
    """Each receiver status becomes the documented Outcome, carrying the status."""
    body = "ok" if status < 300 else "invalid_payload"
    receiver.script(Reply(status, body))
    outcome = deliver(make_sink(sink_type, receiver.url), make_action())
    assert outcome.kind is kind
    assert outcome.status == status
    assert len(receiver.requests) == 1
    if kind is not DELIVERED:
        assert str(status) in outcome.reason
        assert "invalid_payload" in outcome.reason


@HTTP_SINKS
def test_retry_after_seconds_is_honoured(receiver: FakeReceiver, sink_type: str) -> None:
    """A 429 with `Retry-After: 7` is a retry after 7 seconds."""
    receiver.script(Reply(429, "rate_limited", {"Retry-After": "7"}))
    outcome = deliver(make_sink(sink_type, receiver.url), make_action())
    assert outcome == Outcome.retry(outcome.reason, 7.0, 429)


@HTTP_SINKS
def test_retry_after_http_date_is_seconds_from_now(receiver: FakeReceiver, sink_type: str) -> None:
    """A 503 with an HTTP-date `Retry-After` 30 s ahead is a retry after about 30 seconds."""
    receiver.script(Reply(503, "", {"Retry-After": formatdate(time.time() + 30, usegmt=True)}))
    outcome = deliver(make_sink(sink_type, receiver.url), make_action())
    assert outcome.kind is RETRY and outcome.status == 503
    assert outcome.retry_after is not None and 27.0 <= outcome.retry_after <= 31.0


@HTTP_SINKS
def test_timeout_is_retry(receiver: FakeReceiver, sink_type: str) -> None:
    """A receiver slower than the configured 0.2 s timeout gives a retry with reason "timeout"."""
    receiver.script(Reply(200, "ok", delay=5.0))
    started = time.monotonic()
    outcome = deliver(make_sink(sink_type, receiver.url, timeout=0.2), make_action())
    assert outcome == Outcome.retry("timeout")
    assert time.monotonic() - started < 3.0


@HTTP_SINKS
def test_refused_connection_is_retry(closed_url: str, sink_type: str) -> None:
    """A refused connection is a retry named after the error class, without the (secret) URL."""
    outcome = deliver(make_sink(sink_type, closed_url), make_action())
    assert outcome.kind is RETRY
    assert outcome.reason == "ClientConnectorError"
    assert "secret-token" not in outcome.reason


@HTTP_SINKS
def test_dropped_connection_is_retry(receiver: FakeReceiver, sink_type: str) -> None:
    """A connection closed before a final answer is a retry."""
    receiver.script(Reply(100))
    outcome = deliver(make_sink(sink_type, receiver.url), make_action())
    assert outcome.kind is RETRY
    assert outcome.reason == "ServerDisconnectedError"


@HTTP_SINKS
def test_redirect_is_not_followed(receiver: FakeReceiver, sink_type: str) -> None:
    """A 3xx fails naming the Location, and the POST is not repeated elsewhere."""
    receiver.script(Reply(307, "", {"Location": receiver.base_url + "/elsewhere"}))
    outcome = deliver(make_sink(sink_type, receiver.url), make_action())
    assert outcome.kind is FAILED and outcome.status == 307
    assert "/elsewhere" in outcome.reason
    assert [r.path for r in receiver.requests] == [receiver.requests[0].path]


def test_error_body_excerpt_is_short(receiver: FakeReceiver) -> None:
    """A 4xx reason quotes at most ~200 characters of the body, whitespace collapsed."""
    receiver.script(Reply(400, "bad   field\n" + "x" * 5000))
    outcome = deliver(make_sink("webhook", receiver.url), make_action())
    assert outcome.kind is FAILED
    assert outcome.reason.startswith("HTTP 400 Bad Request: bad field x")
    assert len(outcome.reason) <= 240
    assert outcome.reason.endswith("…")


def test_user_agent_names_the_version(receiver: FakeReceiver) -> None:
    """Requests carry `User-Agent: alertbridge/<installed version>`."""
    deliver(make_sink("webhook", receiver.url), make_action())
    assert receiver.requests[0].headers["User-Agent"] == f"alertbridge/{metadata.version('alertbridge')}"


class _ExplodingSession:
    """A stand-in session whose `post` fails in a way no sink expects."""

    def post(self, url: str, **kwargs: Any) -> Any:
        raise RuntimeError(f"boom while posting to {url}")


def test_unexpected_error_is_failed_and_hides_url() -> None:
    """An unexpected exception is a failed Outcome with its text, the URL replaced by `<url>`."""
    url = "https://hooks.slack.com/services/T/B/secret"
    outcome = asyncio.run(post_json(_ExplodingSession(), url, b"{}", {}, 1.0))  # type: ignore[arg-type]  # a stub session on purpose
    assert outcome == Outcome.failed("unexpected error: boom while posting to <url>")


NOW = 1_700_000_000.0

OUTCOME_TABLE = [
    ("200", 200, {}, DELIVERED, None),
    ("299", 299, {}, DELIVERED, None),
    ("101-not-final", 101, {}, FAILED, None),
    ("302-redirect", 302, {"Location": "https://x.example"}, FAILED, None),
    ("404", 404, {}, FAILED, None),
    ("429-no-header", 429, {}, RETRY, None),
    ("429-delta", 429, {"Retry-After": "120"}, RETRY, 120.0),
    ("429-lowercase-header", 429, {"retry-after": "3"}, RETRY, 3.0),
    ("503-http-date", 503, {"Retry-After": formatdate(NOW + 90, usegmt=True)}, RETRY, 90.0),
    ("503-date-in-past", 503, {"Retry-After": formatdate(NOW - 90, usegmt=True)}, RETRY, 0.0),
    ("503-garbage", 503, {"Retry-After": "soon"}, RETRY, None),
    ("503-negative", 503, {"Retry-After": "-5"}, RETRY, None),
    ("408", 408, {}, RETRY, None),
    ("599", 599, {}, RETRY, None),
    ("600-nonstandard", 600, {}, FAILED, None),
    ("404-retry-after-ignored", 404, {"Retry-After": "5"}, FAILED, None),
]


@pytest.mark.parametrize(
    ("status", "headers", "kind", "retry_after"),
    [row[1:] for row in OUTCOME_TABLE],
    ids=[row[0] for row in OUTCOME_TABLE],
)
def test_outcome_for_table(status: int, headers: dict[str, str], kind: OutcomeKind,
                           retry_after: float | None) -> None:
    """outcome_for maps status and Retry-After to the documented Outcome, the clock injected."""
    outcome = outcome_for(status, headers, now=lambda: NOW)
    assert (outcome.kind, outcome.retry_after, outcome.status) == (kind, retry_after, status)


def test_retry_after_reads_clock_only_for_dates() -> None:
    """Delta-seconds never read the clock; an HTTP-date does, exactly once."""
    calls: list[int] = []

    def clock() -> float:
        calls.append(1)
        return NOW

    assert retry_after_seconds("7", clock) == 7.0
    assert calls == []
    assert retry_after_seconds("Tue, 14 Nov 2023 22:15:20 GMT", clock) == 120.0  # NOW is 22:13:20 GMT
    assert calls == [1]


def test_lazy_session_is_made_in_the_running_loop_and_reused() -> None:
    """The session is created on first use inside the loop, reused, and remade after close."""
    holder = LazySession()

    async def go() -> None:
        first = holder.get()
        assert holder.get() is first
        await holder.close()
        assert first.closed
        second = holder.get()
        assert second is not first
        await holder.close()
        await holder.close()  # closing twice is harmless

    asyncio.run(go())
