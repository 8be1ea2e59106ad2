"""The correlation engine: a deterministic function of (config, ordered alerts, clock).

No I/O, no wall clock, no sleeping. Time enters as `now` on every call; timers (group wait, group
interval, alert expiry, reopen window) fire from `advance(now)`, each at its own due time, so the
result does not depend on how often `advance` is called. Live mode, replay and tests drive the same
code.

Flow for each alert of `submit(alerts, now)`:

    merge with what we know of the series -> stages (dedup, ...) -> transition -> route -> group

An alert that fires for the first time (or again after resolving) is routed; for each route it
takes, it joins the open incident of its group or starts one, which waits `group_wait` before it
opens and pages (alerts that resolve within it never page: counted as transient). Changes to an
open incident are coalesced and notified at most once per `group_interval`; acknowledge and resolve
are notified at once. An incident resolves when all its alerts have resolved; a re-fire within
`reopen_window` of that reopens it, a later one opens a new incident.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from bridge.catalog import Catalog
from bridge.incidents import Incident, incident_id
from bridge.model import Action, ActionKind, Alert, AlertStatus, IncidentStatus, IncidentView
from bridge.plugins import Stage, StageContext, VerdictKind
from bridge.priority import PriorityPolicy
from bridge.routing import Route, select_routes

if TYPE_CHECKING:
    from correlators.mute import Muter

__all__ = ["Engine", "EngineConfig", "EngineStats", "incident_services"]

_GROUP_WAIT = 0
_FLUSH = 1
_EXPIRE = 2
_HOLD = 3


@dataclass(frozen=True, slots=True)
class EngineConfig:
    routes: Sequence[Route]
    priority: PriorityPolicy
    stages: Sequence[Stage]
    catalog: Catalog = field(default_factory=Catalog.empty)
    muters: Sequence[Muter] = ()  # silences, maintenance, inhibition: consulted before an alert routes
    #: source name -> how late it may report a resolve (see SourceConfig.resolve_latency)
    resolve_latency: Mapping[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class _Series:
    alert: Alert
    incidents: list[str] = field(default_factory=list)
    expiry_scheduled: float | None = None
    fired_at: float = 0.0  # when the current firing episode was first seen
    hold_until: float | None = None  # held back (hold-down, flapping, muted) until then
    pending: bool = False  # grouped into its incidents but not yet confirmed (held back)
    last_incidents: list[str] = field(default_factory=list)  # incidents of its previous episode
    held_reason: str = ""


@dataclass(slots=True)
class EngineStats:
    """Counters the metrics layer reads at scrape time (the engine never touches metrics itself)."""

    received: Counter[str] = field(default_factory=Counter)  # by source
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)  # (stage, reason)
    transient: int = 0
    unrouted: int = 0
    opened: Counter[str] = field(default_factory=Counter)  # by priority
    resolved: int = 0
    reopened: int = 0
    implied_resolves: int = 0  # alerts resolved because the sender resolved their whole group
    merged: int = 0  # incidents merged into another one (topology)
    #: pages that were never sent because the alert was held back and resolved first, by reason
    pages_avoided: Counter[str] = field(default_factory=Counter)


class Engine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.series: dict[str, _Series] = {}
        self.incidents: dict[str, Incident] = {}
        self._open_groups: dict[str, str] = {}  # group key -> id of its unresolved incident
        self._last_resolved: dict[str, str] = {}  # group key -> id of its last resolved incident
        self._timers: list[tuple[float, int, int, str]] = []  # (due, seq, kind, ref)
        self._timer_seq = 0
        self._serial = 0
        self._routes = {route.name: route for route in config.routes}
        self._sender_groups: dict[str, set[str]] = {}  # source + sender group key -> alert identities
        self._topology: dict[tuple[str, str], set[str]] = {}
        self._episodes: dict[str, list[float]] = {}  # condition -> recent firing-episode starts
        self.catalog = config.catalog
        self.now = 0.0
        self.stats = EngineStats()
        #: when a list, every drop is also recorded here (the runtime logs them at debug and clears it)
        self.decisions: list[dict[str, str]] | None = None

    # ------------------------------------------------------------------------------------ inputs

    def submit(self, alerts: Iterable[Alert], now: float, *, sender_group: str | None = None,
               group_resolved: bool = False) -> list[Action]:
        """Apply alerts received at `now` (after firing every timer due by then).

        `sender_group` names the sender's own group of this notification; with `group_resolved`, every
        alert seen in that group before and not resolved now is resolved too (see `Parsed`).
        """
        actions = self.advance(now)
        touched: dict[str, Incident] = {}
        alerts = list(alerts)
        for alert in alerts:
            self.stats.received[alert.source] += 1
            self._ingest(alert, now, actions, touched)
        if sender_group is not None and alerts:
            self._track_sender_group(alerts, sender_group, group_resolved, now, actions, touched)
        for incident in touched.values():
            self._after_change(incident, now, actions)
        return actions

    def advance(self, now: float) -> list[Action]:
        """Fire every timer due at or before `now`, in due-time order, each at its own time."""
        actions: list[Action] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            due, _, kind, ref = heapq.heappop(timers)
            self.now = max(self.now, due)
            if kind == _EXPIRE:
                self._expire(ref, due, actions)
            elif kind == _GROUP_WAIT:
                incident = self.incidents.get(ref)
                if incident is not None and not incident.opened and incident.status is not IncidentStatus.RESOLVED:
                    self._open(incident, due, actions)
            elif kind == _FLUSH:
                incident = self.incidents.get(ref)
                if incident is not None and incident.flush_due == due:
                    incident.flush_due = None
                    self._notify_update(incident, due, actions)
            elif kind == _HOLD:
                self._release(ref, due, actions)
        self.now = max(self.now, now)
        return actions

    def acknowledge(self, incident_id_: str, by: str, now: float) -> list[Action]:
        actions = self.advance(now)
        incident = self.incidents.get(incident_id_)
        if incident is None or not incident.opened or incident.status is not IncidentStatus.TRIGGERED:
            return actions
        incident.status = IncidentStatus.ACKNOWLEDGED
        incident.acknowledged_by = by
        incident.record(now, "acknowledged", by, "acknowledged by a person")
        self._emit(incident, ActionKind.ACKNOWLEDGE, now, f"acknowledged by {by}", actions)
        return actions

    def acknowledge_alerts(self, identities: Iterable[str], by: str, now: float) -> list[Action]:
        """Acknowledge the incidents holding these alert series (PagerDuty `acknowledge` events)."""
        actions = self.advance(now)
        for identity in identities:
            series = self.series.get(identity)
            for inc_id in series.incidents if series else ():
                actions.extend(self.acknowledge(inc_id, by, now))
        return actions

    def resolve(self, incident_id_: str, by: str, now: float) -> list[Action]:
        """Resolve an incident by hand. Its alerts stay known; only a new firing re-opens it."""
        actions = self.advance(now)
        incident = self.incidents.get(incident_id_)
        if incident is None or not incident.opened or incident.status is IncidentStatus.RESOLVED:
            return actions
        for identity in incident.alerts:
            series = self.series.get(identity)
            if series is not None and incident.id in series.incidents:
                series.incidents.remove(incident.id)
        incident.record(now, "resolved", by, "resolved by hand")
        self._close(incident, now, f"resolved by {by}", actions)
        return actions

    # ------------------------------------------------------------------------ silences, maintenance

    def muter(self, type_name: str) -> Any:
        """The configured muter of this type (`silences`, `maintenance`, `inhibit`), or None."""
        return next((m for m in self.config.muters if m.type_name == type_name), None)

    def set_silence(self, data: Mapping[str, Any], now: float) -> tuple[list[Action], Any]:
        """Create or update a silence (its journaled form); returns the silence as stored."""
        from correlators.silences import Silence

        actions = self.advance(now)
        return actions, self.muter("silences").add(Silence.from_dict(data), now)

    def expire_silence(self, silence_id: str, now: float) -> list[Action]:
        actions = self.advance(now)
        store = self.muter("silences")
        if silence_id in store:
            store.expire(silence_id, now)
        return actions

    def set_window(self, data: Mapping[str, Any], now: float) -> list[Action]:
        from correlators.maintenance import MaintenanceWindow

        actions = self.advance(now)
        self.muter("maintenance").add(MaintenanceWindow.from_dict(data))
        return actions

    def delete_window(self, window_id: str, now: float) -> list[Action]:
        actions = self.advance(now)
        calendar = self.muter("maintenance")
        if window_id in calendar:
            calendar.remove(window_id)
        return actions

    # ----------------------------------------------------------------------------------- queries

    def views(self) -> list[IncidentView]:
        return [i.view() for i in self.incidents.values() if i.opened]

    def get(self, incident_id_: str) -> Incident | None:
        incident = self.incidents.get(incident_id_)
        return incident if incident is not None and incident.opened else None

    # ---------------------------------------------------------------------------------- internals

    def _ingest(self, alert: Alert, now: float, actions: list[Action], touched: dict[str, Incident]) -> None:
        if self.catalog.services:
            alert = self._enrich(alert)
        identity = alert.identity
        series = self.series.get(identity)
        prev = series.alert if series is not None else None
        if alert.status is AlertStatus.RESOLVED:
            if prev is None:
                self._drop("engine", "resolve_unknown", alert)
                return
            if prev.status is AlertStatus.FIRING and (not alert.summary or alert.key == prev.key):
                # a bare resolve (PagerDuty) or the resolve of the same episode: keep what we knew
                alert = replace(prev, status=AlertStatus.RESOLVED, ends_at=alert.ends_at or now)
            elif prev.status is AlertStatus.FIRING and alert.starts_at > prev.starts_at:
                # the resolve of a later episode than the one we saw fire: the sender (Alertmanager
                # between two group_interval ticks) hid a resolve and a re-fire. Count that episode.
                self._episodes.setdefault(condition_key(alert), []).append(now)
        ctx = StageContext(now, prev)
        for stage in self.config.stages:
            verdict = stage.process(alert, ctx)
            if verdict.kind is VerdictKind.DROP:
                self._drop(stage.type_name, verdict.reason, alert)
                if series is not None and alert.status is AlertStatus.FIRING:
                    series.alert = alert  # a repeat still refreshes the expiry
                    self._schedule_expiry(series)
                return
            if verdict.alert is not None:
                alert = verdict.alert
        if series is None:
            series = self.series[identity] = _Series(alert)
        else:
            series.alert = alert
        for muter in self.config.muters:
            muter.observe(alert, now)
        if alert.status is AlertStatus.FIRING:
            self._schedule_expiry(series)
            if prev is None or prev.status is AlertStatus.RESOLVED:
                series.fired_at = now
                starts = self._episodes.setdefault(condition_key(alert), [])
                starts.append(now)
                if len(starts) > 32:
                    del starts[:-32]
                self._route(series, now, touched)
                return
        elif series.hold_until is not None:
            # resolved while held back: the page it would have sent is avoided
            self.stats.pages_avoided[series.held_reason or "hold_down"] += 1
            self.stats.transient += 1
            series.hold_until = None
        for inc_id in series.incidents:
            incident = self._live(inc_id)
            if incident is None:
                continue
            if series.pending:
                if alert.status is AlertStatus.FIRING:
                    incident.pending[identity] = alert
                else:
                    incident.pending.pop(identity, None)
            else:
                incident.alerts[identity] = alert
            touched[incident.id] = incident
        if alert.status is AlertStatus.RESOLVED:
            if series.pending:
                series.pending = False
                series.incidents.clear()
                return
            if series.incidents:
                series.last_incidents = list(series.incidents)
            series.incidents.clear()

    def _track_sender_group(self, alerts: list[Alert], group: str, resolved: bool, now: float,
                            actions: list[Action], touched: dict[str, Incident]) -> None:
        key = f"{alerts[0].source}\x00{group}"
        members = self._sender_groups.setdefault(key, set())
        members.update(a.identity for a in alerts)
        if not resolved:
            return
        for identity in sorted(members):
            series = self.series.get(identity)
            if series is None or series.alert.status is not AlertStatus.FIRING:
                continue
            self.stats.implied_resolves += 1
            for inc_id in series.incidents:
                incident = self.incidents.get(inc_id)
                if incident is not None:
                    incident.record(now, "alert resolved", "engine",
                                    "its sender group was resolved (the sender left this alert out)",
                                    alert=series.alert.key, sender_group=group)
            resolved_alert = replace(series.alert, status=AlertStatus.RESOLVED, ends_at=now)
            self._ingest(resolved_alert, now, actions, touched)
        del self._sender_groups[key]

    def _drop(self, stage: str, reason: str, alert: Alert) -> None:
        self.stats.dropped[(stage, reason)] += 1
        if self.decisions is not None:
            self.decisions.append({"decision": "drop", "stage": stage, "reason": reason, "alert": alert.key})

    def _enrich(self, alert: Alert) -> Alert:
        """Resolve the alert to its catalog service and host."""
        found = self.catalog.resolve(alert.service, alert.resource, alert.labels)
        if found.service == alert.service and (found.host is None or found.host == alert.resource):
            return alert
        return replace(alert, service=found.service, resource=found.host or alert.resource)

    def _route(self, series: _Series, now: float, touched: dict[str, Incident]) -> None:
        """Route a firing episode: mute, hold back (hold-down, flapping), or join its incidents."""
        alert = series.alert
        routes = select_routes(self.config.routes, alert)
        if not routes:
            self.stats.unrouted += 1
            self._drop("routing", "no_route", alert)
            return
        if not routes[0].page:
            self._drop("routing", f"route:{routes[0].name}:no_page", alert)
            return
        for muter in self.config.muters:
            mute = muter.mutes(alert, now)
            if mute is not None:
                self._drop(mute.stage, mute.reason, alert)
                until = mute.detail.get("until") if isinstance(mute.detail, Mapping) else None
                if isinstance(until, int | float) and until > now:
                    self._hold(series, float(until), f"{mute.stage}:{mute.rule}")
                return
        due, reason = self._hold_due(series, routes[0], now)
        pending = due > now
        if pending and not routes[0].group_held:
            self._hold(series, due, reason)  # routed again when the hold ends
            return
        series.hold_until = None
        series.incidents = []
        for route in routes:
            if route.topology and alert.service and alert.service in self.catalog.services:
                incident = self._topology_incident(route, alert, now, touched)
                how = f"service {alert.service} is connected to this incident's services"
            else:
                labels = route.group_labels(alert)
                incident = self._incident_for(route, route.group_key(labels), labels, now)
                how = f"group {incident.key}"
            if pending:
                incident.pending[alert.identity] = alert
                self._index(incident, alert, route)
            else:
                if alert.identity not in incident.alerts:
                    incident.record(now, "alert added", f"route:{route.name}",
                                    f"matched route {route.name}; {how}", alert=alert.key, service=alert.service)
                self._attach(incident, alert, route, now)
            if incident.id not in series.incidents:  # a re-opened incident may have relinked it
                series.incidents.append(incident.id)
            touched[incident.id] = incident
        if pending:
            series.pending = True
            self._hold(series, due, reason)

    def _hold_due(self, series: _Series, route: Route, now: float) -> tuple[float, str]:
        """When a firing episode may page: once known to have fired `min_firing_for`; later if it flaps.

        A source that reports resolves late (`resolve_latency`) cannot say an alert is still firing
        until that long after it fired, so the hold is at least that long for its alerts.
        """
        hold = route.min_firing_for
        if hold:
            hold = max(hold, self.config.resolve_latency.get(series.alert.source, 0.0))
        due, reason = series.fired_at + hold, "hold_down"
        if route.flap_episodes:
            window_start = now - route.flap_window
            recent = sum(1 for t in self._episodes.get(condition_key(series.alert), ()) if t >= window_start)
            if recent >= route.flap_episodes:
                flap_due = series.fired_at + route.flap_clear_after
                if flap_due > due:
                    due, reason = flap_due, "flapping"
        return due, reason

    def _hold(self, series: _Series, until: float, reason: str) -> None:
        if series.hold_until is None or until != series.hold_until:
            series.hold_until = until
            series.held_reason = reason
            self._schedule(until, _HOLD, series.alert.identity)

    def _release(self, identity: str, due: float, actions: list[Action]) -> None:
        """A hold ended: confirm a pending alert in its incidents, or route a muted one again."""
        series = self.series.get(identity)
        if series is None or series.hold_until != due:
            return
        series.hold_until = None
        if series.alert.status is not AlertStatus.FIRING:
            return
        touched: dict[str, Incident] = {}
        if series.pending:
            self._confirm(series, due, touched)
        elif not series.incidents:
            self._route(series, due, touched)
        for incident in touched.values():
            self._after_change(incident, due, actions)

    def _confirm(self, series: _Series, now: float, touched: dict[str, Incident]) -> None:
        alert = series.alert
        series.pending = False
        incidents = [i for i in (self._live(inc_id) for inc_id in series.incidents) if i is not None]
        for muter in self.config.muters:  # muting is evaluated again: a source may have appeared since
            mute = muter.mutes(alert, now)
            if mute is not None:
                self._drop(mute.stage, mute.reason, alert)
                for incident in incidents:
                    incident.pending.pop(alert.identity, None)
                    touched[incident.id] = incident
                series.incidents = []
                return
        series.incidents = []
        held = now - series.fired_at
        for incident in incidents:
            incident.pending.pop(alert.identity, None)
            route = self._routes[incident.route]
            incident.record(now, "alert added", f"route:{route.name}",
                            f"matched route {route.name}; fired {held:g}s ({series.held_reason or 'hold_down'})",
                            alert=alert.key, service=alert.service)
            self._attach(incident, alert, route, now)
            if incident.id not in series.incidents:
                series.incidents.append(incident.id)
            touched[incident.id] = incident

    def _live(self, incident_id_: str) -> Incident | None:
        """The incident, or the one it was merged into."""
        incident = self.incidents.get(incident_id_)
        while incident is not None and incident.merged_into is not None:
            incident = self.incidents.get(incident.merged_into)
        return incident

    def _index(self, incident: Incident, alert: Alert, route: Route) -> None:
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
        self._index(incident, alert, route)

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
        found: dict[str, Incident] = {}
        for neighbour in self.catalog.neighbours(service):
            for inc_id in self._topology.get((route.name, neighbour), ()):
                incident = self.incidents[inc_id]
                if incident.status is IncidentStatus.RESOLVED or inc_id in found:
                    continue
                started = incident.first_alert_at if incident.first_alert_at is not None else incident.created_at
                if now - started > route.topology_window:
                    continue  # a new alert long after the incident began is a new problem
                if self._service_active(incident, neighbour, now, route.topology_window):
                    found[inc_id] = incident
        if not found:
            labels = {"service": service}
            return self._incident_for(route, route.group_key(labels), labels, now)
        ordered = sorted(found.values(), key=lambda i: (not i.opened, i.opened_at or i.created_at, i.id))
        target = ordered[0]
        for other in ordered[1:]:
            self._merge(other, target, alert, now)
            touched[other.id] = other
        return target

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

    def _incident_for(self, route: Route, key: str, labels: dict[str, str], now: float) -> Incident:
        open_id = self._open_groups.get(key)
        if open_id is not None:
            return self.incidents[open_id]
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
            id=incident_id(key, now, self._serial),
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

    def _reroute(self, incident: Incident, now: float) -> None:
        """Assign the pool: the route's, else the owner of the incident's probable root cause."""
        route = self._routes[incident.route]
        if route.pool is not None:
            return
        services = {a.service for a in incident.alerts.values() if a.service}  # confirmed alerts only
        root = self.catalog.root_cause(services)
        pool = self.catalog.owner(root)
        if root != incident.root_cause:
            incident.root_cause = root
            if root is not None:
                incident.record(now, "root cause", "topology",
                                f"probable root cause {root}: the deepest failing dependency of "
                                f"{', '.join(sorted(services))}", root_cause=root)
        if pool is not None and pool != incident.pool:
            previous = incident.pool
            incident.pool = pool
            incident.record(now, "routed", "topology", f"to {pool}, owner of {root}", pool=pool, previous=previous)

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

    def _after_change(self, incident: Incident, now: float, actions: list[Action]) -> None:
        """Settle an incident after a batch of alert changes: resolve, open now, or coalesce."""
        incident.updated_at = now
        if incident.merged_into is not None:
            if incident.status is not IncidentStatus.RESOLVED:
                if incident.opened:
                    self._close(incident, now, f"merged into {incident.merged_into}", actions)
                else:
                    incident.status = IncidentStatus.RESOLVED
                    incident.resolved_at = now
                    if incident.revision == 0:
                        del self.incidents[incident.id]
            return
        if incident.firing_count() == 0:
            if not incident.opened and incident.pending:
                return  # nothing confirmed yet: wait for the held alerts
            if not incident.opened:
                self.stats.transient += 1
                incident.status = IncidentStatus.RESOLVED
                incident.resolved_at = now
                incident.record(now, "dropped", "engine", "all alerts resolved within group_wait: transient")
                self._unindex(incident)
                if self._open_groups.get(incident.key) == incident.id:
                    del self._open_groups[incident.key]
                if incident.revision == 0:
                    del self.incidents[incident.id]
                return
            if incident.reopening:
                # re-fired and resolved again within one batch: sinks never saw it re-open
                incident.reopening = False
                incident.status = IncidentStatus.RESOLVED
                incident.resolved_at = now
                incident.record(now, "dropped", "engine", "re-fired and resolved within one batch: transient")
                self.stats.transient += 1
                if self._open_groups.get(incident.key) == incident.id:
                    del self._open_groups[incident.key]
                self._last_resolved[incident.key] = incident.id
                return
            if incident.status is not IncidentStatus.RESOLVED:
                incident.record(now, "resolved", "engine", "all alerts resolved")
                self._close(incident, now, "all alerts resolved", actions)
            return
        if not incident.opened:
            if self._routes[incident.route].group_wait == 0:
                self._open(incident, now, actions)
            return
        if incident.reopening:
            incident.reopening = False
            self._open(incident, now, actions)
            return
        self._reprioritise(incident, now)
        incident.dirty = True
        route = self._routes[incident.route]
        due = incident.last_notified + route.group_interval
        if due <= now:
            self._notify_update(incident, now, actions)
        elif incident.flush_due is None:
            incident.flush_due = due
            self._schedule(due, _FLUSH, incident.id)

    def _open(self, incident: Incident, now: float, actions: list[Action]) -> None:
        if incident.firing_count() == 0:
            return
        reopened = incident.opened
        incident.opened = True
        if not reopened:
            incident.opened_at = now
        incident.updated_at = now
        self._reprioritise(incident, now)
        self.stats.opened[incident.priority] += 1
        reason = "re-opened" if reopened else "group_wait elapsed"
        incident.record(now, "paged", "engine", f"{reason}; paging {', '.join(incident.sinks) or 'no sink'}",
                        priority=incident.priority)
        self._emit(incident, ActionKind.OPEN, now, reason, actions)

    def _notify_update(self, incident: Incident, now: float, actions: list[Action]) -> None:
        if not incident.dirty or not incident.opened or incident.status is IncidentStatus.RESOLVED:
            return
        self._emit(incident, ActionKind.UPDATE, now, f"{incident.firing_count()} alert(s) firing", actions)

    def _close(self, incident: Incident, now: float, reason: str, actions: list[Action]) -> None:
        self._unindex(incident)
        incident.status = IncidentStatus.RESOLVED
        incident.resolved_at = now
        incident.flush_due = None
        self.stats.resolved += 1
        if self._open_groups.get(incident.key) == incident.id:
            del self._open_groups[incident.key]
        if incident.merged_into is None:
            self._last_resolved[incident.key] = incident.id
        self._emit(incident, ActionKind.RESOLVE, now, reason, actions)

    def _emit(self, incident: Incident, kind: ActionKind, now: float, reason: str, actions: list[Action]) -> None:
        incident.revision += 1
        incident.updated_at = now
        incident.last_notified = now
        incident.dirty = False
        actions.append(Action(kind, now, incident.view(), incident.sinks, reason))

    def _reprioritise(self, incident: Incident, now: float) -> None:
        self._reroute(incident, now)
        result = self.config.priority.evaluate(incident.alerts.values(), incident.first_alert_at)
        if result.priority != incident.priority or not incident.priority_reason:
            previous = incident.priority if incident.priority_reason else None
            incident.priority = result.priority
            incident.priority_reason = result.reason
            incident.record(now, "priority", "priority", result.reason,
                            priority=result.priority, previous=previous,
                            impact=result.impact, urgency=result.urgency)

    # ------------------------------------------------------------------------------------- timers

    def _schedule(self, due: float, kind: int, ref: str) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (due, self._timer_seq, kind, ref))

    def _schedule_expiry(self, series: _Series) -> None:
        ends_at = series.alert.ends_at
        if ends_at is None or series.alert.status is not AlertStatus.FIRING:
            return
        due = max(ends_at, self.now)  # an ends_at already past expires now, never back in time
        if series.expiry_scheduled is None or due < series.expiry_scheduled:
            series.expiry_scheduled = due
            self._schedule(due, _EXPIRE, series.alert.identity)

    def _expire(self, identity: str, due: float, actions: list[Action]) -> None:
        series = self.series.get(identity)
        if series is None or series.expiry_scheduled != due:
            return
        series.expiry_scheduled = None
        alert = series.alert
        if alert.status is not AlertStatus.FIRING or alert.ends_at is None:
            return
        if alert.ends_at > due:  # refreshed since: look again then
            self._schedule_expiry(series)
            return
        resolved = replace(alert, status=AlertStatus.RESOLVED, ends_at=alert.ends_at)
        touched: dict[str, Incident] = {}
        self._ingest(resolved, due, actions, touched)
        for incident in touched.values():
            self._after_change(incident, due, actions)


def condition_key(alert: Alert) -> str:
    """The condition an alert reports, whatever the sender's own ids for it (flap detection).

    Some tools give every re-trigger a new id (a new dedup key, a new fingerprint): the condition is
    what stays the same, the alert's name (or class) on its service and resource.
    """
    labels = alert.labels
    name = labels.get("alertname") or labels.get("class") or alert.summary
    return f"{alert.source}|{name}|{alert.service or ''}|{alert.resource or ''}"


def incident_services(incident: Incident) -> set[str]:
    """The services an incident's alerts are about, held (not yet confirmed) ones included."""
    found = {a.service for a in incident.alerts.values() if a.service}
    found.update(a.service for a in incident.pending.values() if a.service)
    return found
