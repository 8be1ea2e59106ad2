"""Factories for engine tests: alerts, routes and engines on a fake clock, and a stream player.

Engine tests are tables of `(time, alert)` in and `(time, action kind, incident title)` out. The
helpers are plain functions (tables are built at collection time) and are also offered as fixtures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from itertools import groupby
from typing import Any

import pytest

from bridge.engine import Engine, EngineConfig
from bridge.model import Action, Alert, AlertStatus, Severity, canonical_fingerprint
from bridge.plugins import Stage
from bridge.priority import ITIL_MATRIX, PriorityPolicy
from bridge.routing import Route, compile_matchers
from correlators.dedup import DedupStage

__all__ = [
    "alert",
    "bare_resolve",
    "make_engine",
    "play",
    "policy",
    "resolved",
    "route",
    "summary",
]

Event = tuple[float, Alert]
Row = tuple[float, str, str]


def alert(
    name: str = "CPU",
    status: str = "firing",
    *,
    instance: str = "web1",
    severity: str = "critical",
    summary: str | None = None,
    source: str = "am",
    service: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    starts_at: float = 0.0,
    ends_at: float | None = None,
    key: str | None = None,
    description: str = "",
) -> Alert:
    """An alert of series `alertname=name, instance=instance`; its episode key follows `starts_at`."""
    all_labels = {"alertname": name, "instance": instance, **(labels or {})}
    fingerprint = canonical_fingerprint(all_labels)
    return Alert(
        source=source,
        fingerprint=fingerprint,
        key=key if key is not None else f"{fingerprint}@{starts_at:g}",
        status=AlertStatus(status),
        severity=Severity(severity),
        summary=name if summary is None else summary,
        starts_at=starts_at,
        ends_at=ends_at,
        description=description,
        labels=all_labels,
        annotations=dict(annotations or {}),
        service=service,
    )


def resolved(firing: Alert, **changes: Any) -> Alert:
    """The resolve of the same episode, as Alertmanager sends it (same content, status resolved)."""
    return replace(firing, status=AlertStatus.RESOLVED, **changes)


def bare_resolve(firing: Alert) -> Alert:
    """A resolve that names only the series (PagerDuty style): no summary, labels or episode key."""
    return Alert(
        source=firing.source,
        fingerprint=firing.fingerprint,
        key="",
        status=AlertStatus.RESOLVED,
        severity=Severity.NONE,
        summary="",
        starts_at=0.0,
    )


def route(
    name: str = "default",
    *matchers: str,
    group_by: Sequence[str] = ("alertname",),
    group_wait: float = 30.0,
    group_interval: float = 300.0,
    reopen_window: float = 300.0,
    sinks: Sequence[str] = ("pager",),
    sources: Iterable[str] = (),
    pool: str | None = None,
    continue_: bool = False,
) -> Route:
    """A compiled route, as `bridge.wiring.engine_config` builds it (`...` in group_by = all labels)."""
    return Route(
        name=name,
        matchers=compile_matchers(matchers),
        sources=frozenset(sources),
        group_by=tuple(g for g in group_by if g != "..."),
        group_by_all="..." in group_by,
        group_wait=group_wait,
        group_interval=group_interval,
        reopen_window=reopen_window,
        sinks=tuple(sinks),
        pool=pool,
        continue_=continue_,
    )


def policy(service_tiers: Mapping[str, int] | None = None, default_impact: str = "low") -> PriorityPolicy:
    """The default priority policy of the settings (ITIL 3x3), over a service catalog."""
    return PriorityPolicy(
        urgency_by_severity={
            Severity.CRITICAL: "high",
            Severity.WARNING: "medium",
            Severity.INFO: "low",
            Severity.NONE: "low",
        },
        impact_by_tier={1: "high", 2: "medium", 3: "low", 4: "low", 5: "low"},
        default_impact=default_impact,
        matrix=ITIL_MATRIX,
        service_tiers=dict(service_tiers or {}),
    )


def make_engine(
    *routes: Route,
    stages: Sequence[Stage] | None = None,
    services: Mapping[str, int] | None = None,
) -> Engine:
    """An engine over `routes` (default: one route grouping by alertname) with the dedup stage."""
    return Engine(
        EngineConfig(
            routes=routes or (route(),),
            priority=policy(services),
            stages=(DedupStage(),) if stages is None else stages,
        )
    )


def play(engine: Engine, events: Iterable[Event], until: float, step: float | None = None) -> list[Action]:
    """Submit events (alerts at the same time in one batch), then advance to `until`.

    With `step`, `advance` is also called every `step` seconds in between, as live mode's tick does.
    """
    actions: list[Action] = []
    batches = [(at, [a for _, a in group]) for at, group in groupby(events, key=lambda e: e[0])]
    clock = batches[0][0] if batches else 0.0
    for at, batch in [*batches, (until, [])]:
        if step is not None:
            while clock + step < at:
                clock += step
                actions.extend(engine.advance(clock))
        actions.extend(engine.submit(batch, at) if batch else engine.advance(at))
        clock = at
    return actions


def summary(actions: Iterable[Action]) -> list[Row]:
    """Actions as `(time, kind, incident title)` rows, the shape engine test tables expect."""
    return [(a.at, a.kind.value, a.incident.title) for a in actions]


@pytest.fixture
def make_alert() -> Callable[..., Alert]:
    return alert


@pytest.fixture
def engine_factory() -> Callable[..., Engine]:
    return make_engine
