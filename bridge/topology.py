"""Grouping by the service topology: alerts on connected services make one incident, routed to the
owner of its probable root cause.

An alert joins the open incident of its route whose services are connected to its own through the
catalog's `depends_on`; an alert that connects several incidents merges them; the incident is
routed to the owner of its deepest failing dependency (`_reroute`). Refinements:
- a link needs evidence (`_strong_link`): a critical alert on one side (two warnings on connected
  services may each be noise), or a warning above the root cause of an incident that has gone
  critical (an outage's symptoms); a shared dependency many services run on links them only once
  it fails critically (a node warning does not gather every concurrent problem above it);
- a service still firing in an incident keeps it open to that service's later alerts after the
  grouping window (a slow burn's outage joins the warning incident it grew from);
- a cause does not come after its symptoms (`_could_follow`: a failure below an incident that
  began earlier is a new incident);
- an alert still held back joins at once a paged incident where its service already fires
  (`_join_paged`; after the incident's window only a critical or another episode of a check
  firing there), and one that clears within its hold there is recorded in it (`_join_resolved`);
  with several candidates it goes to the one its check fires in, else the one rooted at its
  service (`_home`);
- the first page counts a failing dependency whose critical alert is still held back by a
  late-reporting tool (`_held_causes`).

A mixin of `bridge.engine.Engine`: it reads and changes the engine's state, nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.grouping import GroupingMixin, incident_services
from bridge.holds import check_name
from bridge.incidents import Incident
from bridge.model import Alert, AlertStatus, IncidentStatus, Severity
from bridge.routing import Route, select_routes

__all__ = ["CAUSE_SLACK", "HUB_DEPENDENTS", "TopologyMixin"]


class TopologyMixin(GroupingMixin):
    _held: dict[str, set[str]]

    if TYPE_CHECKING:  # provided by HoldsMixin (stubs only for the type checker)
        def _held_criticals(self, service: str, since: float) -> list[Alert]: ...

    def _topology_incident(self, route: Route, alert: Alert, now: float, touched: dict[str, Incident]) -> Incident:
        """The open incident of this route connected to the alert's service, or a new one.

        When the alert connects several open incidents (a shared dependency failing under two
        groups of symptoms), they become one: the oldest absorbs the others, which resolve with the
        reason "merged".
        """
        service = alert.service
        assert service is not None
        series = self.series[alert.identity]
        for inc_id in series.last_incidents:  # a series firing again rejoins its open incident
            incident = self._live(inc_id)
            if incident is not None and incident.route == route.name and incident.status is not IncidentStatus.RESOLVED:
                return incident
        found = self._connected(route, alert, series.fired_at, now)
        if not found:
            labels = {"service": service}
            return self._incident_for(route, route.group_key(labels), labels, now)
        ordered = sorted(found.values(), key=lambda i: (not i.opened, i.opened_at or i.created_at, i.id))
        target = ordered[0]
        for other in ordered[1:]:
            self._merge(other, target, alert, now)
            touched[other.id] = other
        return target

    def _connected(self, route: Route, alert: Alert, fired_at: float, now: float) -> dict[str, Incident]:
        """The open incidents of this route that `alert` (on a catalog service) may join, by id."""
        service = alert.service
        assert service is not None
        found: dict[str, Incident] = {}
        for neighbour in self.catalog.neighbours(service):
            for inc_id in self._topology.get((route.name, neighbour), ()):
                incident = self.incidents[inc_id]
                if incident.status is IncidentStatus.RESOLVED or inc_id in found:
                    continue
                if not self._accepts(incident, route, min(fired_at, now)) and not (
                        neighbour == service and self._still_fires(incident, alert)):
                    # its grouping window has closed: a new alert now is a new problem, unless its own
                    # service still fires there at the same or a lower severity (a slow burn: the
                    # outage its warning led to joins it, and raises its priority)
                    continue
                if self._service_active(incident, neighbour, now, route.topology_window) and (
                        neighbour == service or self._strong_link(incident, neighbour, alert)) and (
                        self._could_follow(incident, alert, fired_at)):
                    found[inc_id] = incident
        return found

    def _join_paged(self, series: Any, route: Route, now: float, touched: dict[str, Incident]) -> Incident | None:
        """The paged, open incident a held alert joins at once, if its service already fires there.

        The hold keeps a lone alert from paging; an alert on a service that is already part of a
        paged incident pages nobody anew, it adds to what the responders see (an OOM kill during the
        memory leak they are working on), so it joins without waiting.
        """
        alert = series.alert
        if not route.topology or not alert.service or alert.service not in self.catalog.services:
            return None
        paged = [i for i in self._connected(route, alert, series.fired_at, now).values()
                 if i.opened and _firing_on(i, alert.service) and (
                     alert.severity is Severity.CRITICAL or self._accepts(i, route, series.fired_at)
                     or _same_check_fires(i, alert))]
        if not paged:
            return None
        return self._join_home(paged, alert, route, now, touched,
                               f"matched route {route.name}; {alert.service} is part of this paged incident's "
                               "failure, so it joins without waiting for its hold")

    def _join_resolved(self, series: Any, now: float, touched: dict[str, Incident]) -> None:
        """A held alert resolved before its hold ended: it pages nobody, but if its service is part of
        a paged, open incident, it was part of that failure (a symptom that cleared within minutes),
        so the incident records it."""
        alert = series.alert
        if not alert.service or alert.service not in self.catalog.services:
            return
        route = next((r for r in select_routes(self.config.routes, alert) if r.topology), None)
        if route is None or not route.page:
            return
        found = [i for i in self._connected(route, alert, series.fired_at, now).values()
                 if i.opened and any(a.service == alert.service for a in i.alerts.values())]
        if found:
            self._join_home(found, alert, route, now, touched,
                            f"resolved before its hold ended, on {alert.service}, which is part of this paged "
                            "incident's failure")

    def _join_home(self, candidates: list[Incident], alert: Alert, route: Route, now: float,
                   touched: dict[str, Incident], why: str) -> Incident:
        """Attach `alert` to the best of `candidates` (`_home`), with `why` in its timeline."""
        incident = _home(candidates, alert)
        incident.record(now, "alert added", f"route:{route.name}", why, alert=alert.key, service=alert.service)
        self._attach(incident, alert, route, now)
        touched[incident.id] = incident
        return incident

    def _merge(self, source: Incident, target: Incident, via: Alert, now: float) -> None:
        """Move every alert of `source` into `target`; `source` resolves as merged."""
        self._unindex(source)
        route = self._routes[target.route]
        for identity, alert in source.alerts.items():
            target.alerts[identity] = alert
            series = self.series.get(identity)
            if series is not None:
                series.incidents = [target.id if i == source.id else i for i in series.incidents]
                if series.incidents.count(target.id) > 1:
                    series.incidents = list(dict.fromkeys(series.incidents))
            if alert.service and route.topology:
                self._index(target, alert, route)
        if source.first_alert_at is not None and (target.first_alert_at is None
                                                  or source.first_alert_at < target.first_alert_at):
            target.first_alert_at = source.first_alert_at
        for identity, alert in source.pending.items():
            target.pending[identity] = alert
            series = self.series.get(identity)
            if series is not None:
                series.incidents = list(dict.fromkeys(target.id if i == source.id else i for i in series.incidents))
            if alert.service and route.topology:
                self._index(target, alert, route)
        source.pending = {}
        reason = f"connected through {via.service} ({via.key})"
        target.record(now, "merged", "topology", f"absorbed {source.id}: {reason}", merged=source.id)
        source.record(now, "merged", "topology", f"merged into {target.id}: {reason}", into=target.id)
        source.merged_into = target.id
        source.alerts = {}
        if self._open_groups.get(source.key) == source.id:
            del self._open_groups[source.key]
        self.stats.merged += 1

    def _strong_link(self, incident: Incident, neighbour: str, alert: Alert) -> bool:
        """Is the incident's failure on `neighbour` (a connected service) evidence enough to pull
        `alert` in? Two warnings on connected services are not (each may be noise); a critical on
        either side is, except through a shared dependency (HUB_DEPENDENTS or more services run on
        it), which links its dependents only once it fails critically itself (a noisy node would
        otherwise gather every concurrent problem above it). A warning above the root cause of an
        incident that has gone critical is a symptom of that outage and links too."""
        critical_there = any(a.severity is Severity.CRITICAL for a in _firing_on(incident, neighbour))
        if self.catalog.dependents(neighbour) >= HUB_DEPENDENTS:
            return critical_there
        if critical_there or alert.severity is Severity.CRITICAL:
            return True
        # an outage's symptoms spread upwards as warnings: a warning on a service above the failing
        # root cause of an incident that has gone critical is one of them
        if incident.root_cause is not None and incident.critical_at is not None and alert.service:
            return self.catalog.depends(alert.service, incident.root_cause)
        return False

    def _could_follow(self, incident: Incident, alert: Alert, fired_at: float) -> bool:
        """Can `alert` belong to the incident, causally? A failure does not cause what began before
        it: an incident that was already failing (CAUSE_SLACK earlier) takes the alert only if the
        alert's service is among its services or depends on one of them (a symptom of it), not
        when the alert is on something its services depend on (a new, separate cause: a node
        failing under a service with a memory leak does not explain the leak)."""
        started = incident.first_alert_at
        if started is None or fired_at - started <= CAUSE_SLACK:
            return True
        service = alert.service
        assert service is not None
        services = incident_services(incident)
        return service in services or any(self.catalog.depends(service, other) for other in services)

    @staticmethod
    def _still_fires(incident: Incident, alert: Alert) -> bool:
        """Does the incident hold a firing alert on `alert`'s service, at its severity or a lower one?"""
        rank = _SEVERITY_RANK.get(alert.severity, 0)
        return any(_SEVERITY_RANK.get(a.severity, 0) <= rank for a in _firing_on(incident, alert.service))

    @staticmethod
    def _service_active(incident: Incident, service: str, now: float, window: float) -> bool:
        for a in incident.pending.values():
            if a.service == service:
                return True
        for a in incident.alerts.values():
            if a.service == service:
                if a.status is AlertStatus.FIRING:
                    return True
                if a.ends_at is not None and now - a.ends_at <= window:
                    return True
        return False

    def _reroute(self, incident: Incident, now: float) -> None:
        """Assign the pool: the route's, else the owner of the incident's probable root cause."""
        route = self._routes[incident.route]
        if route.pool is not None:
            return
        services = {a.service for a in incident.alerts.values() if a.service}  # confirmed alerts only
        # held causes steer the first page only: after it, a cause that is real is soon confirmed,
        # and a held alert that turns out transient must not move a paged incident to another team
        first_page = not incident.opened or incident.opened_at == now
        held = self._held_causes(incident, services, now) if first_page else {}
        root = self.catalog.root_cause(services | set(held))
        pool = self.catalog.owner(root)
        if root != incident.root_cause:
            incident.root_cause = root
            if root is not None:
                why = (f"; {root} is not confirmed yet: its critical alert {held[root]} is still held back"
                       if root in held else "")
                incident.record(now, "root cause", "topology",
                                f"probable root cause {root}: the deepest failing dependency of "
                                f"{', '.join(sorted(services | set(held)))}{why}", root_cause=root)
        if pool is not None and pool != incident.pool:
            previous = incident.pool
            incident.pool = pool
            incident.record(now, "routed", "topology", f"to {pool}, owner of {root}", pool=pool, previous=previous)

    def _held_causes(self, incident: Incident, services: set[str], now: float) -> dict[str, str]:
        """Dependencies of the incident's services with a critical alert still held back (hold-down)
        that fired with the incident (CAUSE_SLACK): service -> alert key.

        A tool that reports late (resolve_latency) keeps its alerts held longer than a prompt one;
        without these, the first page of a cascade would go to the owner of whichever symptom a
        prompt tool confirmed first, not to the owner of the failing dependency under it.
        """
        since = (incident.first_alert_at if incident.first_alert_at is not None else now) - CAUSE_SLACK
        below: set[str] = set()
        for service in services:
            below.update(self.catalog.dependencies_closure(service))
        found: dict[str, str] = {}
        for service in sorted(below - services):
            # a machine that runs service instances (a Kubernetes node) fails only those: its alert
            # explains the incident only if one of them is failing here
            held = [a for a in self._held_criticals(service, since)
                    if not (on_host := set(self.catalog.host_services.get(a.resource or "", ())) - {service})
                    or on_host & services]
            if not held:
                continue
            if self.catalog.dependents(service) >= HUB_DEPENDENTS:
                # a shared dependency explains one failing service no better than that service does:
                # it takes at least two failing services above it (confirmed here, or held critical)
                above = {s for s in services if self.catalog.depends(s, service)}
                above.update(s for s in list(self._held) if s not in above and self.catalog.depends(s, service)
                             and self._held_criticals(s, since))
                if len(above) < 2:
                    continue
            found[service] = held[0].key
        return found


_SEVERITY_RANK = {Severity.NONE: 0, Severity.INFO: 1, Severity.WARNING: 2, Severity.CRITICAL: 3}
#: Services that must depend on a service before it counts as a shared dependency (see _weak_hub).
HUB_DEPENDENTS = 4
#: How much earlier than an alert an incident may have begun and still be caused by that alert's
#: failure (detection and delivery delays differ between the cause and its symptoms)
CAUSE_SLACK = 120.0


def _home(incidents: list[Incident], alert: Alert) -> Incident:
    """Of several paged incidents an alert could join, the one its own check fires in, else the one
    rooted at its service, else one its service fires in (the leak an OOM kill belongs to, not a
    concurrent outage around it), else the oldest."""
    return min(incidents, key=lambda i: (not _same_check_fires(i, alert), i.root_cause != alert.service,
                                         not _firing_on(i, alert.service), i.opened_at, i.id))


def _firing_on(incident: Incident, service: str | None) -> list[Alert]:
    """The incident's firing alerts on `service`."""
    return [a for a in incident.alerts.values() if a.service == service and a.status is AlertStatus.FIRING]


def _same_check_fires(incident: Incident, alert: Alert) -> bool:
    """Does the incident hold a firing alert of the same check on `alert`'s service?"""
    name = check_name(alert)
    return any(check_name(a) == name for a in _firing_on(incident, alert.service))
