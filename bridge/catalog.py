"""The service catalog: services, their owners, tiers, dependencies and hosts; and alert -> entity.

The catalog is data, not rules: it lives in its own YAML file (`catalog: FILE` in the config,
`--catalog FILE` on the command line) and `alertbridge catalog import` makes one from a JSON
service catalog. Every alert is resolved to a catalog service, directly (the source's service
field: a label, tag or component) or through its host (`hosts[].services`): a host-level alert
is about the host's platform service, the one the host's other services depend on.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.model import host_of

__all__ = ["BusinessHours", "Catalog", "CatalogSettings", "Resolution", "Service"]

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BusinessHoursSettings(_Model):
    timezone: str = Field("UTC", description="IANA time zone of the business hours.")
    days: list[str] = Field(default_factory=lambda: list(_DAYS[:5]), description="Working days (Mon..Sun).")
    start: str = Field("09:00", pattern=r"^\d\d:\d\d$", description="Start of the working day (HH:MM).")
    end: str = Field("18:00", pattern=r"^\d\d:\d\d$", description="End of the working day (HH:MM).")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except Exception:
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        bad = [d for d in value if d not in _DAYS]
        if bad:
            raise ValueError(f"unknown day(s) {bad}; use {', '.join(_DAYS)}")
        return value


class ServiceEntry(_Model):
    name: str = Field(description="Service name, as alerts name it (service label, tag or component).")
    owner: str | None = Field(None, description="Resolver pool that owns the service.")
    criticality: int = Field(3, ge=1, le=9, description="Criticality tier: 1 is the most critical.")
    business_hours: bool = Field(False, description="Only needed during business hours.")
    depends_on: list[str] = Field(default_factory=list, description="Services this one calls or runs on.")
    hosts: list[str] = Field(default_factory=list, description="Hosts (instances) the service runs on.")
    layer: str | None = Field(None, description="Free-form layer (edge, api, backend, datastore, infra).")
    zone: str | None = Field(None, description="Free-form zone or region.")


class HostEntry(_Model):
    name: str = Field(description="Host name as alerts carry it (instance without port, nodename, hostname).")
    services: list[str] = Field(default_factory=list, description="Services running on the host.")
    zone: str | None = Field(None, description="Free-form zone.")


class CatalogSettings(_Model):
    """The catalog file's schema."""

    business_hours: BusinessHoursSettings = Field(default_factory=BusinessHoursSettings,
                                                  description="When business-hours-only services matter.")
    services: list[ServiceEntry] = Field(default_factory=list, description="The services.")
    hosts: list[HostEntry] = Field(default_factory=list, description="Hosts and the services on them.")
    maintenance: list[dict[str, Any]] = Field(default_factory=list,
                                              description="Declared maintenance windows (see `maintenance`).")


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    owner: str | None
    criticality: int
    business_hours: bool
    depends_on: tuple[str, ...]
    hosts: tuple[str, ...]
    layer: str | None = None
    zone: str | None = None


@dataclass(frozen=True, slots=True)
class Resolution:
    """What an alert is about: a catalog service (or None) and a host (or None), and how we know."""

    service: str | None
    host: str | None
    how: str


@dataclass(frozen=True, slots=True)
class BusinessHours:
    zone: ZoneInfo
    days: frozenset[int]
    start: time
    end: time

    def contains(self, ts: float) -> bool:
        local = datetime.fromtimestamp(ts, UTC).astimezone(self.zone)
        return local.weekday() in self.days and self.start <= local.time() < self.end


@dataclass(eq=False)
class Catalog:
    services: dict[str, Service] = field(default_factory=dict)
    host_services: dict[str, tuple[str, ...]] = field(default_factory=dict)
    business_hours: BusinessHours | None = None

    @classmethod
    def empty(cls) -> Catalog:
        return cls()

    @classmethod
    def build(cls, settings: CatalogSettings | None, extra: Sequence[ServiceEntry] = ()) -> Catalog:
        entries: list[ServiceEntry] = list(settings.services) if settings else []
        entries += list(extra)
        services = {
            e.name: Service(e.name, e.owner, e.criticality, e.business_hours, tuple(e.depends_on), tuple(e.hosts),
                            e.layer, e.zone)
            for e in entries
        }
        hosts: dict[str, list[str]] = {}
        for svc in services.values():
            for host in map(host_of, svc.hosts):
                hosts.setdefault(host, [])
                if svc.name not in hosts[host]:
                    hosts[host].append(svc.name)
        for host_entry in settings.hosts if settings else ():
            listed = hosts.setdefault(host_of(host_entry.name), [])
            for name in host_entry.services:
                if name not in listed:
                    listed.append(name)
        bh = None
        if settings is not None:
            b = settings.business_hours
            bh = BusinessHours(ZoneInfo(b.timezone), frozenset(_DAYS.index(d) for d in b.days),
                               time.fromisoformat(b.start), time.fromisoformat(b.end))
        return cls(services, {h: tuple(s) for h, s in hosts.items()}, bh)

    # ------------------------------------------------------------------------------------ lookups

    def resolve(self, service: str | None, resource: str | None, labels: Mapping[str, str]) -> Resolution:
        """The catalog service and host an alert is about."""
        host = host_of(resource) if resource else None
        if service and service in self.services:
            return Resolution(service, host, "service field")
        if host and host in self.host_services:
            return Resolution(self.platform_service(host), host, f"host {host}")
        for value in labels.values():
            candidate = host_of(value) if value else None
            if candidate and candidate in self.host_services and candidate != host:
                return Resolution(self.platform_service(candidate), candidate, f"host {candidate} (label)")
        return Resolution(service if service else None, host, "not in catalog")

    def platform_service(self, host: str) -> str:
        """The service a host-level alert is about: the one the host's other services depend on."""
        return self._platform(host)

    @functools.cached_property
    def _platform_cache(self) -> dict[str, str]:
        cache: dict[str, str] = {}
        for host, names in self.host_services.items():
            best = names[0]
            best_depth = -1
            for name in names:
                dependents_here = sum(1 for other in names if other != name and self.depends(other, name))
                if dependents_here > best_depth:
                    best, best_depth = name, dependents_here
            cache[host] = best
        return cache

    def _platform(self, host: str) -> str:
        return self._platform_cache[host]

    def depends(self, upper: str, lower: str) -> bool:
        """Does `upper` depend on `lower`, directly or transitively?"""
        return lower in self.dependencies_closure(upper)

    def dependencies_closure(self, name: str) -> frozenset[str]:
        return self._closure(name)

    @functools.cache  # noqa: B019 - the catalog is immutable once built
    def _closure(self, name: str) -> frozenset[str]:
        seen: set[str] = set()
        stack = list(self.services[name].depends_on) if name in self.services else []
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            svc = self.services.get(current)
            if svc is not None:
                stack.extend(svc.depends_on)
        return frozenset(seen)

    def dependents(self, name: str) -> int:
        """How many services depend on `name` directly."""
        return self._dependents.get(name, 0)

    @functools.cached_property
    def _dependents(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for svc in self.services.values():
            for dep in set(svc.depends_on):
                counts[dep] = counts.get(dep, 0) + 1
        return counts

    def neighbours(self, name: str) -> tuple[str, ...]:
        """The service itself, what it depends on and what depends on it (direct links only)."""
        return self._neighbours.get(name, (name,))

    @functools.cached_property
    def _neighbours(self) -> dict[str, tuple[str, ...]]:
        links: dict[str, list[str]] = {name: [name] for name in self.services}
        for svc in self.services.values():
            for dep in svc.depends_on:
                if dep in links and dep not in links[svc.name]:
                    links[svc.name].append(dep)
                if dep in links and svc.name not in links[dep]:
                    links[dep].append(svc.name)
        return {name: tuple(items) for name, items in links.items()}

    def owner(self, name: str | None) -> str | None:
        svc = self.services.get(name) if name else None
        return svc.owner if svc else None

    def root_cause(self, names: Iterable[str]) -> str | None:
        """The deepest failing dependency: the failing service the most others here depend on."""
        known = [n for n in names if n in self.services]
        if not known:
            return None
        return max(sorted(known), key=lambda n: (sum(1 for o in known if o != n and self.depends(o, n)),
                                                 len(self.dependencies_closure(n)) * -1))
