"""Tests of bridge/dispatch/backoff.py: the retry schedule as a table."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.dispatch.backoff import MAX_RETRY_AFTER, RetryPolicy, next_delay

DEFAULT = RetryPolicy()
NO_JITTER = RetryPolicy(jitter=0.0)
TRIPLING = RetryPolicy(initial=0.5, multiplier=3.0, max_delay=10.0, jitter=0.0)

CASES = [
    # id, policy, attempts, retry_after, rand, expected
    ("first-retry-waits-initial", DEFAULT, 1, None, 0.0, 1.0),
    ("doubles-each-attempt", DEFAULT, 2, None, 0.0, 2.0),
    ("fourth-retry", DEFAULT, 4, None, 0.0, 8.0),
    ("ninth-retry-below-cap", DEFAULT, 9, None, 0.0, 256.0),
    ("capped-at-max-delay", DEFAULT, 10, None, 0.0, 300.0),
    ("huge-attempts-do-not-overflow", DEFAULT, 5000, None, 0.0, 300.0),
    ("zero-attempts-count-as-one", DEFAULT, 0, None, 0.0, 1.0),
    ("jitter-shortens-proportionally", DEFAULT, 1, None, 0.5, 0.9),
    ("jitter-at-most-jitter-fraction", DEFAULT, 3, None, 1.0, 3.2),
    ("jitter-below-the-cap", DEFAULT, 20, None, 0.5, 270.0),
    ("no-jitter-ignores-rand", NO_JITTER, 3, None, 0.9, 4.0),
    ("custom-policy", TRIPLING, 3, None, 0.0, 4.5),
    ("custom-policy-capped", TRIPLING, 5, None, 0.0, 10.0),
    ("retry-after-longer-than-backoff-wins", DEFAULT, 1, 30.0, 0.0, 30.0),
    ("retry-after-shorter-than-backoff-loses", DEFAULT, 4, 2.0, 0.0, 8.0),
    ("retry-after-beyond-max-delay-is-honoured", DEFAULT, 1, 1200.0, 0.0, 1200.0),
    ("retry-after-capped-at-one-hour", DEFAULT, 1, 7200.0, 0.0, MAX_RETRY_AFTER),
    ("infinite-retry-after-capped", DEFAULT, 1, math.inf, 0.0, MAX_RETRY_AFTER),
    ("retry-after-is-a-floor-under-jitter", DEFAULT, 5, 16.0, 1.0, 16.0),
    ("zero-retry-after-ignored", DEFAULT, 2, 0.0, 0.0, 2.0),
    ("negative-retry-after-ignored", DEFAULT, 2, -5.0, 0.0, 2.0),
    ("nan-retry-after-ignored", DEFAULT, 2, math.nan, 0.0, 2.0),
]


@pytest.mark.parametrize(("policy", "attempts", "retry_after", "rand", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_next_delay(policy: RetryPolicy, attempts: int, retry_after: float | None, rand: float,
                    expected: float) -> None:
    """next_delay follows the capped exponential schedule, jitter and Retry-After floor of the table."""
    assert next_delay(policy, attempts, retry_after, lambda: rand) == pytest.approx(expected)


@given(attempts=st.integers(min_value=1, max_value=10_000), r=st.floats(min_value=0.0, max_value=1.0))
def test_next_delay_stays_within_jitter_band_and_cap(attempts: int, r: float) -> None:
    """Without Retry-After the delay is within [(1 - jitter) * base, base] and never above max_delay."""
    delay = next_delay(DEFAULT, attempts, None, lambda: r)
    base = min(DEFAULT.initial * DEFAULT.multiplier ** min(attempts - 1, 64), DEFAULT.max_delay)
    assert base * (1 - DEFAULT.jitter) - 1e-9 <= delay <= base <= DEFAULT.max_delay


@pytest.mark.parametrize("kwargs", [
    {"initial": 0.0}, {"multiplier": 0.5}, {"max_delay": 0.5}, {"max_attempts": 0}, {"jitter": 1.5},
    {"jitter": -0.1},
], ids=["zero-initial", "shrinking-multiplier", "cap-below-initial", "no-attempts", "jitter-above-one",
        "negative-jitter"])
def test_retry_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    """A RetryPolicy that cannot produce a sane schedule is refused at construction."""
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]  # the table mixes int and float fields
