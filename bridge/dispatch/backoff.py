"""When to try a failed delivery again: capped exponential backoff with proportional jitter.

`next_delay` is pure (the random source is injected), so the schedule is a table in the tests.

Jitter is *proportional*, not AWS-style "full" jitter: the delay is drawn from
`[base * (1 - jitter), base]`. Full jitter draws from `[0, base]`, which with the handful of
deliveries a sink usually has in flight means near-immediate retries against a receiver that just
failed; proportional jitter keeps the exponential shape and still spreads retries that failed
together. Jitter only shortens, so `max_delay` is a true maximum of the computed backoff.

A receiver's `Retry-After` is a lower bound: we never retry sooner than it asked, even beyond
`max_delay`, but we cap what we honour at `MAX_RETRY_AFTER` (one hour) so a bogus header cannot
park a delivery for days.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_RETRY_AFTER", "RetryPolicy", "next_delay"]

#: The longest `Retry-After` honoured, in seconds.
MAX_RETRY_AFTER: Final = 3600.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed delivery is retried.

    The n-th retry waits `initial * multiplier ** (n - 1)` seconds, capped at `max_delay`, minus up
    to `jitter` of it. A delivery is dead after `max_attempts` attempts in total.
    """

    initial: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 300.0
    max_attempts: int = 8
    jitter: float = 0.2

    def __post_init__(self) -> None:
        problems = []
        if not self.initial > 0:
            problems.append("initial must be > 0")
        if not self.multiplier >= 1:
            problems.append("multiplier must be >= 1")
        if not self.max_delay >= self.initial:
            problems.append("max_delay must be >= initial")
        if self.max_attempts < 1:
            problems.append("max_attempts must be >= 1")
        if not 0 <= self.jitter <= 1:
            problems.append("jitter must be within [0, 1]")
        if problems:
            raise ValueError("; ".join(problems))


def next_delay(policy: RetryPolicy, attempts: int, retry_after: float | None = None,
               rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before the next attempt, after `attempts` (>= 1) failed attempts.

    `rand` returns a float in [0, 1); `retry_after` is the receiver's Retry-After in seconds.
    """
    exponent = max(attempts, 1) - 1
    try:
        base = policy.initial * policy.multiplier ** exponent
    except OverflowError:
        base = math.inf
    base = min(base, policy.max_delay)
    delay = base * (1.0 - policy.jitter * rand())
    if retry_after is not None and retry_after > 0:  # also drops NaN
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay
