"""Assemble the running parts from validated settings: engine config, sources, sinks.

The whole pipeline is put together here, in a few lines, so it can be read in one screen.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bridge.catalog import Catalog, CatalogSettings, ServiceEntry
from bridge.engine import Engine, EngineConfig
from bridge.plugins import SINKS, SOURCES, Sink, Source
from bridge.pools import PoolDirectory
from bridge.priority import PriorityPolicy
from bridge.routing import Precursor, Route, compile_matchers
from bridge.settings import load_catalog
from bridge.suppression import inhibit_rule, maintenance_window, window_from_catalog
from correlators.dedup import DedupStage
from correlators.inhibit import Inhibitor
from correlators.maintenance import MaintenanceCalendar
from correlators.silences import SilenceStore

__all__ = ["build_engine", "build_sinks", "build_sources", "engine_config"]


def compile_route(r: Any) -> Route:
    """A route's settings as the engine's compiled Route (same field names; lists compiled)."""
    same = {f.name for f in dataclasses.fields(Route)} & set(type(r).model_fields)
    values = {name: getattr(r, name) for name in same}
    values.update(
        matchers=compile_matchers(r.matchers),
        sources=frozenset(r.sources),
        group_by=tuple(g for g in r.group_by if g != "..."),
        group_by_all="..." in r.group_by,
        sinks=tuple(r.sinks),
        topology=r.grouping == "topology",
        precursors=tuple(Precursor(p.name, compile_matchers(p.matchers), p.min_firing_for, p.urgency)
                         for p in r.precursors),
    )
    return Route(**values)


def engine_config(settings: Any) -> EngineConfig:
    routes = tuple(compile_route(r) for r in settings.routes)
    catalog_file = load_catalog(settings.catalog) if settings.catalog is not None else None
    catalog = build_catalog(settings, catalog_file)
    p = settings.priority
    policy = PriorityPolicy(
        urgency_by_severity=dict(p.urgency),
        impact_by_tier=dict(p.impact_by_tier),
        default_impact=p.default_impact,
        matrix={k: dict(v) for k, v in p.matrix.items()},
        service_tiers={s.name: s.criticality for s in catalog.services.values()},
        blast_radius=dict(p.blast_radius),
        business_hours_downgrade=p.business_hours_downgrade,
        business_hours_only=frozenset(s.name for s in catalog.services.values() if s.business_hours),
        in_business_hours=catalog.business_hours.contains if catalog.business_hours else None,
    )
    latency = {s.name: s.resolve_latency for s in settings.sources}
    pools = PoolDirectory.build(settings.pools, settings.schedules, settings.escalation_policies,
                                settings.assignment, settings.sla)
    return EngineConfig(routes=routes, priority=policy, stages=(DedupStage(),), catalog=catalog,
                        resolve_latency=latency, muters=build_muters(settings, catalog_file), pools=pools)


def build_muters(settings: Any, catalog_file: CatalogSettings | None) -> tuple[Any, ...]:
    """Maintenance (config and catalog windows), silences (start empty: the journal fills them) and
    inhibition, in the order the engine asks them."""
    windows = [maintenance_window(item, f"config-{i + 1}") for i, item in enumerate(settings.maintenance)]
    if catalog_file is not None:
        windows += [window_from_catalog(item, i) for i, item in enumerate(catalog_file.maintenance)]
    rules = [inhibit_rule(item) for item in settings.inhibit_rules]
    return (MaintenanceCalendar(windows), SilenceStore(), Inhibitor(rules))


def build_catalog(settings: Any, file_settings: CatalogSettings | None) -> Catalog:
    """The catalog file (if any) plus the config's inline `services:`."""
    inline = [ServiceEntry(name=s.name, owner=s.owner, criticality=s.criticality, business_hours=s.business_hours,
                           depends_on=list(s.depends_on), hosts=list(s.hosts)) for s in settings.services]
    return Catalog.build(file_settings, inline)


def build_engine(settings: Any, partition: str = "") -> Engine:
    config = engine_config(settings)
    return Engine(dataclasses.replace(config, partition=partition) if partition else config)


def build_sources(settings: Any) -> dict[str, Source]:
    return {s.name: SOURCES[s.type](s) for s in settings.sources}


def build_sinks(settings: Any) -> dict[str, Sink]:
    return {s.name: SINKS[s.type](s) for s in settings.sinks}
