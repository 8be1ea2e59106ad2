"""Assemble the running parts from validated settings: engine config, sources, sinks.

The whole pipeline is put together here, in a few lines, so it can be read in one screen.
"""

from __future__ import annotations

from typing import Any

from bridge.engine import Engine, EngineConfig
from bridge.plugins import SINKS, SOURCES, Sink, Source
from bridge.priority import PriorityPolicy
from bridge.routing import Route, compile_matchers
from correlators.dedup import DedupStage

__all__ = ["build_engine", "build_sinks", "build_sources", "engine_config"]


def engine_config(settings: Any) -> EngineConfig:
    routes = tuple(
        Route(
            name=r.name,
            matchers=compile_matchers(r.matchers),
            sources=frozenset(r.sources),
            group_by=tuple(g for g in r.group_by if g != "..."),
            group_by_all="..." in r.group_by,
            group_wait=r.group_wait,
            group_interval=r.group_interval,
            reopen_window=r.reopen_window,
            sinks=tuple(r.sinks),
            pool=r.pool,
            continue_=r.continue_,
        )
        for r in settings.routes
    )
    p = settings.priority
    policy = PriorityPolicy(
        urgency_by_severity=dict(p.urgency),
        impact_by_tier=dict(p.impact_by_tier),
        default_impact=p.default_impact,
        matrix={k: dict(v) for k, v in p.matrix.items()},
        service_tiers={s.name: s.criticality for s in settings.services},
    )
    return EngineConfig(routes=routes, priority=policy, stages=(DedupStage(),))


def build_engine(settings: Any) -> Engine:
    return Engine(engine_config(settings))


def build_sources(settings: Any) -> dict[str, Source]:
    return {s.name: SOURCES[s.type](s) for s in settings.sources}


def build_sinks(settings: Any) -> dict[str, Sink]:
    return {s.name: SINKS[s.type](s) for s in settings.sinks}
