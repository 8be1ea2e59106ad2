"""How the engine groups alerts into incidents: the shared machinery, and grouping by labels.

Label grouping: one incident per route and `group_by` values (`_incident_for`), re-opened when its
group fires again within `reopen_window`. A route's `group_window` says how long an incident takes
new alerts (`_accepts`): fixed (from its first alert, and again from its first critical one: the
outage gathers its symptoms), sliding, or until resolved; an alert is judged by when it began
firing, not by when its hold ended. Grouping by the service topology builds on this
(`bridge.topology`).

A mixin of `bridge.engine.Engine`: it reads and changes the engine's state, nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.incidents import Incident, incident_id
from bridge.model import Alert, AlertStatus, IncidentStatus, Severity
from bridge.routing import Route

if TYPE_CHECKING:
    from bridge.catalog import Catalog

__all__ = ["GroupingMixin", "incident_services"]

from bridge.timers import GROUP_WAIT as _GROUP_WAIT


class GroupingMixin:
    series: dict[str, Any]
    incidents: dict[str, Incident]
    catalog: Catalog
    stats: Any
    now: float
    _open_groups: dict[str, str]
    _last_resolved: dict[str, str]
    _topology: dict[tuple[str, str], set[str]]
    _routes: dict[str, Route]
    _serial: int
    config: Any  # EngineConfig

    if TYPE_CHECKING:  # provided by Engine (stubs only for the type checker)
        def _schedule(self, due: float, kind: int, ref: str) -> None: ...
    def _live(self, incident_id_: str) -> Incident | None:
        """The incident, or the one it was merged into."""
        incident = self.incidents.get(incident_id_)
        while incident is not None and incident.merged_into is not None:
            incident = self.incidents.get(incident.merged_into)
        return incident

    def _index(self, incident: Incident, alert: Alert, route: Route) -> None:
        incident.last_joined_at = max(incident.last_joined_at, self.now)
        series = self.series.get(alert.identity)
        fired = series.fired_at if series is not None else self.now
        if incident.first_alert_at is None or fired < incident.first_alert_at:
            incident.first_alert_at = fired
        if route.topology and alert.service:
            slot = (route.name, alert.service)
            self._topology.setdefault(slot, set()).add(incident.id)
            incident.indexed.add(slot)

    def _attach(self, incident: Incident, alert: Alert, route: Route, now: float) -> None:
        incident.alerts[alert.identity] = alert
        if alert.severity is Severity.CRITICAL and incident.critical_at is None:
            series = self.series.get(alert.identity)
            incident.critical_at = min(now, series.fired_at) if series is not None else now
        self._index(incident, alert, route)

    def _accepts(self, incident: Incident, route: Route, now: float) -> bool:
        """Does the incident's grouping window still take new alerts (`group_window`)? `now` is when
        the alert began firing (an alert held back is judged by its start, not by its hold's end)."""
        if route.group_window == "fixed":
            # from the first alert, and again from the first critical one: the outage a slow burn's
            # warnings led to gathers its own symptoms
            started = incident.first_alert_at if incident.first_alert_at is not None else incident.created_at
            if incident.critical_at is not None:
                started = max(started, incident.critical_at)
            return now - started <= route.group_window_for
        if route.group_window == "sliding":
            return now - incident.last_joined_at <= route.group_window_for
        return True  # until_resolved

    def _incident_for(self, route: Route, key: str, labels: dict[str, str], now: float) -> Incident:
        open_id = self._open_groups.get(key)
        if open_id is not None:
            current = self.incidents[open_id]
            if self._accepts(current, route, now):
                return current
            current.record(now, "window closed", f"route:{route.name}",
                           f"{route.group_window} window of {route.group_window_for:g}s passed: new alerts of "
                           "this group open a new incident")
            del self._open_groups[key]  # it stays open for its own alerts; the group moves on
        last_id = self._last_resolved.get(key)
        if last_id is not None:
            last = self.incidents[last_id]
            if last.resolved_at is not None and now - last.resolved_at <= route.reopen_window:
                last.status = IncidentStatus.TRIGGERED
                last.resolved_at = None
                last.acknowledged_by = None
                last.record(now, "reopened", f"route:{route.name}",
                            f"fired again within reopen_window {route.reopen_window:g}s")
                self.stats.reopened += 1
                del self._last_resolved[key]
                self._open_groups[key] = last.id
                last.flush_due = None
                last.reopening = True  # pages again, as an open, once this batch is applied
                self._relink(last)
                return last
        self._serial += 1
        incident = Incident(
            id=incident_id(key, now, self._serial, self.config.partition),
            key=key,
            route=route.name,
            group_labels=labels,
            sinks=route.sinks,
            pool=route.pool,
            created_at=now,
            updated_at=now,
        )
        incident.record(now, "grouped", f"route:{route.name}",
                        f"new group {key}; waiting group_wait {route.group_wait:g}s before paging",
                        group_by=list(labels))
        self.incidents[incident.id] = incident
        self._open_groups[key] = incident.id
        self._schedule(now + route.group_wait, _GROUP_WAIT, incident.id)
        return incident

    def _unindex(self, incident: Incident) -> None:
        for slot in incident.indexed:
            ids = self._topology.get(slot)
            if ids is not None:
                ids.discard(incident.id)
                if not ids:
                    del self._topology[slot]
        incident.indexed.clear()

    def _relink(self, incident: Incident) -> None:
        """Follow an incident's known alerts again after a re-open, from their latest state.

        A manual resolve unlinks the still-firing alerts from the incident; without this, a re-opened
        incident would hold them as firing forever and never resolve.
        """
        for identity in incident.alerts:
            series = self.series.get(identity)
            if series is None:
                continue
            incident.alerts[identity] = series.alert
            if series.alert.status is AlertStatus.FIRING and incident.id not in series.incidents:
                series.incidents.append(incident.id)



def incident_services(incident: Incident) -> set[str]:
    """The services an incident's alerts are about, held (not yet confirmed) ones included."""
    found = {a.service for a in incident.alerts.values() if a.service}
    found.update(a.service for a in incident.pending.values() if a.service)
    return found
