"""The metrics layer: engine counters summed over partitions, read at scrape time."""

from __future__ import annotations

from prometheus_client import generate_latest

from bridge.engine import Engine, EngineConfig
from bridge.metrics import Metrics
from bridge.stats import EngineStats
from correlators.dedup import DedupStage
from tests.bridge.conftest import alert, policy, route


def test_combined_stats_add_every_counter() -> None:
    one, two = EngineStats(), EngineStats()
    one.received["am"] += 2
    two.received["am"] += 3
    two.received["dd"] += 1
    one.resolved, two.resolved = 1, 4
    one.acknowledge_seconds[("db", "P1")] += 10.0
    two.acknowledge_seconds[("db", "P1")] += 5.5
    total = EngineStats.combined([one, two])
    assert total.received == {"am": 5, "dd": 1} and total.resolved == 5
    assert total.acknowledge_seconds[("db", "P1")] == 15.5
    assert one.received == {"am": 2}  # the parts are left alone
    assert EngineStats.combined([one]) is one


def test_metrics_count_the_incidents_of_every_engine() -> None:
    """In distributed mode each partition has its own engine: /metrics shows their sum."""
    engines = [Engine(EngineConfig(routes=(route(group_wait=0),), priority=policy(), stages=(DedupStage(),)))
               for _ in range(2)]
    engines[0].submit([alert("A", instance="a")], 0)
    engines[1].submit([alert("B", instance="b")], 0)
    engines[1].submit([alert("C", instance="c")], 0)
    metrics = Metrics()
    metrics.watch(lambda: engines, dict)
    text = generate_latest(metrics.registry).decode()
    opened = [line for line in text.splitlines() if line.startswith("alertbridge_incidents_opened_total{")]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in opened) == 3
    assert "alertbridge_alert_series 3.0" in text
