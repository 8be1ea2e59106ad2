"""Tests of bridge/dispatch/attempt.py: a sink that breaks its contract gets a retry, never an exception."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

from bridge.dispatch.attempt import attempt
from bridge.log import get_logger
from bridge.plugins import Outcome, OutcomeKind
from tests.sinks.conftest import make_action


class _Sink:
    def __init__(self, behaviour: Any) -> None:
        self.behaviour = behaviour

    async def deliver(self, action: Any, key: str) -> Any:
        return await self.behaviour()


async def _raise() -> Any:
    raise RuntimeError("boom")


async def _wrong() -> Any:
    return "ok"


async def _hang() -> Any:
    await asyncio.Event().wait()


async def _fine() -> Any:
    return Outcome.delivered(200)


@pytest.mark.parametrize(("behaviour", "kind", "reason"), [
    (_fine, OutcomeKind.DELIVERED, ""),
    (_raise, OutcomeKind.RETRY, "RuntimeError: boom"),
    (_wrong, OutcomeKind.RETRY, "sink returned str, not an Outcome"),
    (_hang, OutcomeKind.RETRY, "no outcome after 0.01s"),
], ids=["delivered", "raises", "wrong-type", "hangs"])
def test_a_broken_contract_is_a_retry(behaviour: Any, kind: OutcomeKind, reason: str) -> None:
    """Raising, returning the wrong type or hanging past the timeout is a retry with the reason, logged once."""
    with capture_logs() as logs:
        outcome = asyncio.run(attempt(_Sink(behaviour), make_action(), "k", 0.01, get_logger("test")))  # type: ignore[arg-type]
    assert (outcome.kind, outcome.reason) == (kind, reason)
    assert len([e for e in logs if e["event"] == "sink broke its contract"]) == (kind is OutcomeKind.RETRY)
