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
from typing import TYPE_CHECKING

from bridge.catalog import Catalog
from bridge.escalation import EscalationMixin
from bridge.grouping import incident_services
from bridge.holds import HoldsMixin
from bridge.incidents import Incident
from bridge.model import Action, ActionKind, Alert, AlertStatus, IncidentStatus, IncidentView, Recipient
from bridge.muting import MutingMixin
from bridge.plugins import Stage, StageContext, VerdictKind
from bridge.pools import PoolDirectory
from bridge.priority import PriorityPolicy
from bridge.routing import Route, select_routes
from bridge.stats import EngineStats
from bridge.timers import ESCALATE as _ESCALATE
from bridge.timers import EXPIRE as _EXPIRE
from bridge.timers import FLUSH as _FLUSH
from bridge.timers import GROUP_WAIT as _GROUP_WAIT
from bridge.timers import HOLD as _HOLD
from bridge.timers import SETTLE as _SETTLE
from bridge.timers import SLA as _SLA
from bridge.topology import TopologyMixin

if TYPE_CHECKING:
    from correlators.mute import Muter

__all__ = ["Engine", "EngineConfig", "EngineStats", "incident_services"]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    routes: Sequence[Route]
    priority: PriorityPolicy
    stages: Sequence[Stage]
    catalog: Catalog = field(default_factory=Catalog.empty)
    muters: Sequence[Muter] = ()  # silences, maintenance, inhibition: consulted before an alert routes
    #: source name -> how late it may report a resolve (see SourceConfig.resolve_latency)
    resolve_latency: Mapping[str, float] = field(default_factory=dict)
    #: resolver pools, schedules, escalation policies, assignment rules and SLA targets
    pools: PoolDirectory = field(default_factory=PoolDirectory)
    #: the partition this engine holds (distributed mode); "" for the default one
    partition: str = ""


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


class Engine(TopologyMixin, HoldsMixin, MutingMixin, EscalationMixin):
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
        self._urgency: dict[str, tuple[str, str]] = {}  # alert identity -> (urgency, why): early warnings
        self._firing: dict[str, dict[str, str]] = {}  # service -> firing alert identity -> source
        self._held: dict[str, set[str]] = {}  # service -> identities of alerts held there (may be stale)
        self._corroboration = any(route.corroborate_after for route in config.routes)
        self.catalog = config.catalog
        self.pools = config.pools
        self._load: Counter[str] = Counter()
        self._last_assigned: dict[str, str] = {}
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
            elif kind == _SETTLE:
                incident = self.incidents.get(ref)
                if (incident is not None and incident.resolve_due == due and incident.firing_count() == 0
                        and incident.status is not IncidentStatus.RESOLVED):
                    incident.resolve_due = None
                    incident.record(due, "resolved", "engine", "all alerts stayed resolved for resolve_hysteresis")
                    self._close(incident, due, "all alerts resolved", actions)
            elif kind == _HOLD:
                self._release(ref, due, actions)
            elif kind == _ESCALATE:
                self._escalation_due(ref, due, actions)
            elif kind == _SLA:
                self._sla_due(ref, due, actions)
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
        self._pool_acknowledged(incident, now)
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

    # ----------------------------------------------------------------------------------- queries

    def next_timer(self) -> float | None:
        """When the earliest pending timer is due (it may turn out stale and do nothing); None: none."""
        return self._timers[0][0] if self._timers else None

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
                self._count_episode(alert, now)
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
        if self._corroboration and (prev is None or prev.status is not alert.status):
            self._track_firing(alert, now)
        if alert.status is AlertStatus.FIRING:
            self._schedule_expiry(series)
            refired = (prev is not None and prev.status is AlertStatus.FIRING
                       and alert.starts_at > prev.starts_at and series.hold_until is not None and not series.pending)
            if prev is None or prev.status is AlertStatus.RESOLVED or refired:
                # `refired`: a held alert that fires with a later start than the episode we saw (the
                # sender, between two group_interval ticks, hid its resolve): a new episode, which
                # counts for flap detection and is held from its own start
                series.fired_at = now
                self._count_episode(alert, now)
                self._route(series, now, touched)
                return
        elif series.hold_until is not None:
            # resolved while held back: the page it would have sent is avoided
            self.stats.pages_avoided[series.held_reason or "hold_down"] += 1
            self.stats.transient += 1
            series.hold_until = None
            if not series.pending and series.held_reason in ("hold_down", "corroborated", "flapping"):
                self._join_resolved(series, now, touched)  # not a muted one (silence, maintenance, ...)
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
            joined = self._join_paged(series, routes[0], now, touched)
            if joined is not None:
                series.hold_until = None
                series.incidents = [joined.id]
                return
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
                hysteresis = self._routes[incident.route].resolve_hysteresis
                if hysteresis > 0:
                    if incident.resolve_due is None:
                        incident.resolve_due = now + hysteresis
                        incident.record(now, "resolving", "engine",
                                        f"all alerts resolved; resolving in {hysteresis:g}s unless one fires again")
                        self._schedule(incident.resolve_due, _SETTLE, incident.id)
                    return
                incident.record(now, "resolved", "engine", "all alerts resolved")
                self._close(incident, now, "all alerts resolved", actions)
            return
        if incident.resolve_due is not None:
            incident.resolve_due = None
            incident.record(now, "resolve cancelled", "engine", "an alert fired again within resolve_hysteresis")
        if not incident.opened:
            if self._routes[incident.route].group_wait == 0:
                self._open(incident, now, actions)
            return
        if incident.reopening:
            incident.reopening = False
            self._open(incident, now, actions)
            return
        previous = self._reprioritise(incident, now)
        self._pool_reviewed(incident, now, actions)
        incident.dirty = True
        route = self._routes[incident.route]
        due = incident.last_notified + route.group_interval
        if previous is not None and incident.priority < previous and incident.status is not IncidentStatus.RESOLVED:
            # a raised priority is news at once (P1 is more urgent, escalates faster), not coalesced;
            # a lowered one waits for the next group_interval like any other change
            self._notify_update(incident, now, actions,
                                f"priority raised {previous} -> {incident.priority}: {incident.priority_reason}")
        elif due <= now:
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
        people = self._pool_open(incident, now, reopened)
        incident.record(now, "paged", "engine", f"{reason}; paging {', '.join(incident.sinks) or 'no sink'}",
                        priority=incident.priority)
        if incident.assignee is not None:
            reason = f"{reason}; assigned to {incident.assignee}"
        self._emit(incident, ActionKind.OPEN, now, reason, actions, people=people)
        self._pool_opened(incident, now, actions)

    def _notify_update(self, incident: Incident, now: float, actions: list[Action], reason: str = "") -> None:
        if not incident.dirty or not incident.opened or incident.status is IncidentStatus.RESOLVED:
            return
        mute = self._all_muted(incident, now)
        if mute is not None:  # e.g. an inhibiting alert started firing after the page: no more updates
            if not incident.muted:
                incident.muted = True
                incident.record(now, "updates muted", mute.stage, f"every firing alert is muted by {mute.rule}",
                                mute_reason=mute.reason)
            return
        incident.muted = False
        self._emit(incident, ActionKind.UPDATE, now, reason or f"{incident.firing_count()} alert(s) firing", actions)

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
        self._pool_closed(incident, now)
        self._emit(incident, ActionKind.RESOLVE, now, reason, actions)

    def _emit(self, incident: Incident, kind: ActionKind, now: float, reason: str, actions: list[Action],
              people: list[str] | None = None) -> None:
        """Notify sinks of `kind`. With resolver pools, the action also goes to the channels of the
        incident's pools and of the `people` addressed (default: its assignee)."""
        incident.revision += 1
        incident.updated_at = now
        incident.last_notified = now
        if kind is not ActionKind.ASSIGN and kind is not ActionKind.ESCALATE and kind is not ActionKind.SLA_WARNING \
                and kind is not ActionKind.SLA_BREACH:
            incident.dirty = False
        sinks, recipients = incident.sinks, tuple[Recipient, ...]()
        if self.pools.enabled:
            if people is None:
                people = [incident.assignee] if incident.assignee is not None else []
            extra = self.pools.sinks_for((incident.pool, *incident.informed), people)
            sinks = tuple(dict.fromkeys((*incident.sinks, *extra)))
            recipients = self.pools.recipients(people)
        actions.append(Action(kind, now, incident.view(), sinks, reason, recipients))

    def _reprioritise(self, incident: Incident, now: float) -> str | None:
        """Re-route and re-evaluate the priority; returns the previous priority when it changed."""
        self._reroute(incident, now)
        result = self.config.priority.evaluate(incident.alerts.values(), incident.first_alert_at, self._urgency)
        if result.priority != incident.priority or not incident.priority_reason:
            previous = incident.priority if incident.priority_reason else None
            incident.priority = result.priority
            incident.priority_reason = result.reason
            incident.record(now, "priority", "priority", result.reason,
                            priority=result.priority, previous=previous,
                            impact=result.impact, urgency=result.urgency)
            return previous
        return None

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
