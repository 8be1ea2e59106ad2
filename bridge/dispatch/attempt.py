"""One delivery attempt, the same for every dispatcher (embedded, RQ jobs).

A sink's contract is to return an `Outcome` and never raise; `attempt` holds it to that: a sink that
raises, hangs past `timeout` or returns something else gets a retry outcome (logged once), never
an exception, so a broken sink cannot stop delivery of anything else.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.model import Action
from bridge.plugins import Outcome, Sink

__all__ = ["attempt"]


async def attempt(sink: Sink, action: Action, key: str, timeout: float, log: Any) -> Outcome:
    """`sink.deliver(action, key)`, with a broken contract (raise, hang, wrong type) turned into a retry."""
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            outcome = await sink.deliver(action, key)
        if isinstance(outcome, Outcome):
            return outcome
        outcome = Outcome.retry(f"sink returned {type(outcome).__name__}, not an Outcome")
    except Exception as exc:  # the contract says never raise; survive it as a retry
        if isinstance(exc, TimeoutError) and deadline.expired():
            outcome = Outcome.retry(f"no outcome after {timeout:g}s")
        else:
            outcome = Outcome.retry(f"{type(exc).__name__}: {exc}")
    log.warning("sink broke its contract", error=outcome.reason)
    return outcome
