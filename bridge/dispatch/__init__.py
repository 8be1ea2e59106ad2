"""Delivery of the outbox to the sinks: the retry policy and the embedded (in-process) dispatcher.

Distributed mode's RQ jobs (a later issue) reuse `backoff` and the same outbox contract.
"""

from bridge.dispatch.backoff import MAX_RETRY_AFTER, RetryPolicy, next_delay
from bridge.dispatch.embedded import EmbeddedDispatcher, MetricsHook

__all__ = ["MAX_RETRY_AFTER", "EmbeddedDispatcher", "MetricsHook", "RetryPolicy", "next_delay"]
