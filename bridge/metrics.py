"""Every metric alertbridge exposes, in one place: `alertbridge_<noun>_<unit>_total`.

Counters the engine keeps (drops by stage and reason, incidents opened, transients) are read at
scrape time by a collector, so the engine stays free of I/O and the hot path pays nothing for them.
Each app has its own registry, so tests can run several apps in one process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics
from prometheus_client import Counter as PCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from bridge.engine import Engine
from bridge.model import IncidentStatus
from bridge.stats import EngineStats

__all__ = ["Metrics"]

disable_created_metrics()  # the *_created series only add noise to every scrape

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = PCounter("alertbridge_ingest_requests", "Webhook requests by source and outcome.",
                                 ["source", "outcome"], registry=r)
        self.rejected = PCounter("alertbridge_ingest_rejected", "Rejected webhook requests by source and reason.",
                                 ["source", "reason"], registry=r)
        self.alerts = PCounter("alertbridge_ingest_alerts", "Alerts accepted (journaled) by source.",
                               ["source"], registry=r)
        self.truncated = PCounter("alertbridge_ingest_truncated_alerts",
                                  "Alerts the sender left out of a notification (Alertmanager truncatedAlerts).",
                                  ["source"], registry=r)
        self.ingest_latency = Histogram("alertbridge_ingest_latency_seconds",
                                        "Time from request received to durable and applied.",
                                        ["source"], buckets=_LATENCY_BUCKETS, registry=r)
        self.deliveries = PCounter("alertbridge_deliveries", "Delivery attempts by sink and outcome.",
                                   ["sink", "outcome"], registry=r)
        self.delivery_latency = Histogram("alertbridge_delivery_latency_seconds", "Duration of delivery attempts.",
                                          ["sink"], buckets=_LATENCY_BUCKETS, registry=r)
        self.link_uses = PCounter("alertbridge_link_uses", "Signed acknowledge/resolve links used, by action.",
                                  ["action"], registry=r)
        self.link_refusals = PCounter("alertbridge_link_refusals", "Signed links refused (403), by reason.",
                                      ["reason"], registry=r)
        self.actions = PCounter("alertbridge_actions", "Actions the engine emitted, by kind.", ["kind"], registry=r)
        self.journal_batch = Histogram("alertbridge_journal_batch_entries", "Entries per journal group commit.",
                                       buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), registry=r)

    def record_delivery(self, sink: str, outcome: str, seconds: float) -> None:
        self.deliveries.labels(sink, outcome).inc()
        self.delivery_latency.labels(sink).observe(seconds)

    def watch_workers(self, attempts: Callable[[], dict[tuple[str, str], int]]) -> None:
        """Distributed mode: expose the delivery attempts RQ workers counted in Redis, read at scrape."""
        self.registry.register(_WorkerCollector(attempts))

    def watch(self, engines: Callable[[], list[Engine]], queue_depth: Callable[[], dict[str, int]],
              unused_after: float = 3600.0) -> None:
        """Expose the engines' own counters (summed over partitions) and the outbox depth, read at
        scrape time."""
        self.registry.register(_EngineCollector(engines, queue_depth, unused_after))


class _EngineCollector(Collector):
    def __init__(self, engines: Callable[[], list[Engine]], queue_depth: Callable[[], dict[str, int]],
                 unused_after: float) -> None:
        self.engines = engines
        self.queue_depth = queue_depth
        self.unused_after = unused_after

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        engines = self.engines()
        stats = EngineStats.combined([engine.stats for engine in engines])
        dropped = CounterMetricFamily("alertbridge_alerts_dropped", "Alerts dropped, by stage and reason.",
                                      labels=["stage", "reason"])
        for (stage, reason), n in sorted(stats.dropped.items()):
            dropped.add_metric([stage, reason], n)
        dropped.add_metric(["group_wait", "transient"], stats.transient)
        yield dropped
        received = CounterMetricFamily("alertbridge_alerts_processed", "Alerts the engine processed, by source.",
                                       labels=["source"])
        for source, n in sorted(stats.received.items()):
            received.add_metric([source], n)
        yield received
        opened = CounterMetricFamily("alertbridge_incidents_opened", "Incidents opened (paged), by priority.",
                                     labels=["priority"])
        for priority, n in sorted(stats.opened.items()):
            opened.add_metric([priority], n)
        yield opened
        yield CounterMetricFamily("alertbridge_incidents_resolved", "Incidents resolved.", value=stats.resolved)
        yield CounterMetricFamily("alertbridge_incidents_reopened", "Incidents re-opened.", value=stats.reopened)
        avoided = CounterMetricFamily("alertbridge_pages_avoided", "Pages never sent: the alert was held back "
                                      "(hold-down, flapping) and resolved first.", labels=["reason"])
        for reason, n in sorted(stats.pages_avoided.items()):
            avoided.add_metric([reason], n)
        yield avoided
        yield CounterMetricFamily("alertbridge_incidents_merged", "Incidents merged into another (topology).",
                                  value=stats.merged)
        silences = engines[0].muter("silences")  # every partition applies every silence entry
        if silences is not None:
            now = engines[0].now
            states = GaugeMetricFamily("alertbridge_silences", "Silences by state.", labels=["state"])
            counts: Counter[str] = Counter(s.state(now).value for s in silences.list(now))
            for state in ("pending", "active", "expired"):
                states.add_metric([state], counts[state])
            yield states
            yield GaugeMetricFamily("alertbridge_silences_unused", "Active silences that matched nothing for "
                                    "silences.report_unused_after.", value=len(silences.unused(now, self.unused_after)))
        yield CounterMetricFamily("alertbridge_alerts_implied_resolved",
                                  "Alerts resolved because their sender resolved the whole group.",
                                  value=stats.implied_resolves)
        current: Counter[tuple[str, str]] = Counter()
        for engine in engines:
            for incident in engine.incidents.values():
                if incident.opened and incident.status is not IncidentStatus.RESOLVED:
                    current[(incident.status.value, incident.priority)] += 1
        gauge = GaugeMetricFamily("alertbridge_incidents", "Open incidents by status and priority.",
                                  labels=["status", "priority"])
        for (status, priority), n in sorted(current.items()):
            gauge.add_metric([status, priority], n)
        yield gauge
        yield GaugeMetricFamily("alertbridge_alert_series", "Alert series the engine holds.",
                                value=sum(len(engine.series) for engine in engines))
        yield from _pool_metrics(stats)
        depth = GaugeMetricFamily("alertbridge_outbox_deliveries", "Outbox deliveries by state (queue depth).",
                                  labels=["state"])
        for state, n in sorted(self.queue_depth().items()):
            depth.add_metric([state], n)
        yield depth


def _pool_metrics(stats: Any) -> Iterable[Metric]:
    """Resolver pools, by pool and priority: response times, SLA, escalations, pages, repeats."""
    keys = sorted(set(stats.acknowledged) | set(stats.closed) | set(stats.opened_by_pool))
    tta = SummaryMetricFamily("alertbridge_time_to_acknowledge_seconds",
                              "Time from page to acknowledge, by pool and priority.", labels=["pool", "priority"])
    ttr = SummaryMetricFamily("alertbridge_time_to_resolve_seconds",
                              "Time from page to resolve (MTTR = sum / count), by pool and priority.",
                              labels=["pool", "priority"])
    opened = CounterMetricFamily("alertbridge_pool_incidents", "Incidents paged, by pool and priority.",
                                 labels=["pool", "priority"])
    repeats = CounterMetricFamily("alertbridge_pool_repeat_incidents", "Incidents whose key had resolved within "
                                  "the 7 days before they opened, by pool and priority.", labels=["pool", "priority"])
    for key in keys:
        tta.add_metric(list(key), stats.acknowledged[key], stats.acknowledge_seconds[key])
        ttr.add_metric(list(key), stats.closed[key], stats.resolve_seconds[key])
        opened.add_metric(list(key), stats.opened_by_pool[key])
        repeats.add_metric(list(key), stats.repeats[key])
    yield from (tta, ttr, opened, repeats)
    escalations = CounterMetricFamily("alertbridge_escalations", "Escalations (a tier timed out or had nobody), "
                                      "by pool and priority.", labels=["pool", "priority"])
    for key, n in sorted(stats.escalations.items()):
        escalations.add_metric(list(key), n)
    yield escalations
    warnings = CounterMetricFamily("alertbridge_sla_warnings", "SLA targets about to be breached.",
                                   labels=["pool", "priority", "target"])
    breaches = CounterMetricFamily("alertbridge_sla_breaches", "SLA targets breached.",
                                   labels=["pool", "priority", "target"])
    for key, n in sorted(stats.sla_warnings.items()):
        warnings.add_metric(list(key), n)
    for key, n in sorted(stats.sla_breaches.items()):
        breaches.add_metric(list(key), n)
    yield from (warnings, breaches)
    compliance = GaugeMetricFamily("alertbridge_sla_compliance_ratio", "Share of closed incidents that met the "
                                   "target.", labels=["pool", "priority", "target"])
    for key, total in sorted(stats.sla_total.items()):
        compliance.add_metric(list(key), stats.sla_met[key] / total if total else 1.0)
    yield compliance
    pages = CounterMetricFamily("alertbridge_pages", "Pages sent to each person (open and escalation); "
                                "per day: increase over 1d.", labels=["member"])
    for member, n in sorted(stats.pages.items()):
        pages.add_metric([member], n)
    yield pages


class _WorkerCollector(Collector):
    def __init__(self, attempts: Callable[[], dict[tuple[str, str], int]]) -> None:
        self.attempts = attempts

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily("alertbridge_worker_deliveries", "Delivery attempts made by RQ workers "
                                     "(distributed mode), by sink and outcome.", labels=["sink", "outcome"])
        try:
            counts = self.attempts()
        except Exception:  # Redis down: the scrape still answers, without this family's samples
            counts = {}
        for (sink, outcome), n in sorted(counts.items()):
            family.add_metric([sink, outcome], n)
        yield family
