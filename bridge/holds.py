"""When a firing alert may page: hold-down (`min_firing_for`, lengthened by a source's
`resolve_latency`), flap detection per condition, and muting (silences, maintenance, inhibition)
asked again when the hold ends.

A mixin of `bridge.engine.Engine`: it reads and changes the engine's state, nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.incidents import Incident
from bridge.model import Action, Alert, AlertStatus, Severity
from bridge.routing import Route, select_routes

if TYPE_CHECKING:
    from bridge.engine import EngineConfig, _Series

__all__ = ["HoldsMixin", "check_name", "condition_key"]

from bridge.timers import HOLD as _HOLD


class HoldsMixin:
    config: EngineConfig
    series: dict[str, Any]
    _episodes: dict[str, list[float]]
    _urgency: dict[str, tuple[str, str]]
    _firing: dict[str, dict[str, str]]
    _held: dict[str, set[str]]
    catalog: Any
    _routes: dict[str, Route]

    if TYPE_CHECKING:  # provided by Engine (stubs only for the type checker)
        def _schedule(self, due: float, kind: int, ref: str) -> None: ...

    if TYPE_CHECKING:  # provided by Engine and GroupingMixin
        def _drop(self, stage: str, reason: str, alert: Alert) -> None: ...
        def _attach(self, incident: Incident, alert: Alert, route: Route, now: float) -> None: ...
        def _route(self, series: _Series, now: float, touched: dict[str, Incident]) -> None: ...
        def _after_change(self, incident: Incident, now: float, actions: list[Action]) -> None: ...
        def _live(self, incident_id_: str) -> Incident | None: ...

    def flap_state(self, alert: Alert, now: float) -> dict[str, Any]:
        """The flap counter of the alert's condition, as the first route it takes counts it."""
        routes = select_routes(self.config.routes, alert)
        window = routes[0].flap_window if routes else 1800.0
        threshold = routes[0].flap_episodes if routes else 0
        episodes = sum(1 for t in self._episodes.get(condition_key(alert), ()) if t >= now - window)
        return {"episodes": episodes, "window": window, "flapping": bool(threshold) and episodes >= threshold}

    def _hold_due(self, series: _Series, route: Route, now: float) -> tuple[float, str]:
        """When a firing episode may page: once known to have fired `min_firing_for`; later if it flaps.

        A source that reports resolves late (`resolve_latency`) cannot say an alert is still firing
        until that long after it fired, so the hold is at least that long for its alerts.
        """
        precursor = route.precursor(series.alert)
        hold = precursor.min_firing_for if precursor is not None else route.min_firing_for
        if precursor is not None:
            self._urgency[series.alert.identity] = (precursor.urgency, f"early warning {precursor.name}")
        else:
            self._urgency.pop(series.alert.identity, None)
        if hold:
            hold = max(hold, self.config.resolve_latency.get(series.alert.source, 0.0))
        due, reason = series.fired_at + hold, "hold_down"
        if route.flap_episodes:
            window_start = now - route.flap_window
            recent = sum(1 for t in self._episodes.get(condition_key(series.alert), ()) if t >= window_start)
            if recent >= route.flap_episodes:
                flap_due = series.fired_at + route.flap_clear_after
                if flap_due > due:
                    return flap_due, "flapping"
        if route.corroborate_after and precursor is None:
            early = series.fired_at + route.corroborate_after
            if early < due and self._corroborated(series.alert):
                due, reason = early, "corroborated"
        return due, reason

    def _corroborated(self, alert: Alert) -> bool:
        """Does another tool report a problem on the alert's service?"""
        if not alert.service:
            return False
        return any(source != alert.source for source in self._firing.get(alert.service, {}).values())

    def _track_firing(self, alert: Alert, now: float) -> None:
        """Keep the index of firing alerts by service; a new one may corroborate held ones elsewhere."""
        if not alert.service:
            return
        if alert.status is AlertStatus.FIRING:
            self._firing.setdefault(alert.service, {})[alert.identity] = alert.source
            self._corroborate_held(alert, now)
        else:
            found = self._firing.get(alert.service)
            if found is not None:
                found.pop(alert.identity, None)
                if not found:
                    del self._firing[alert.service]

    def _corroborate_held(self, alert: Alert, now: float) -> None:
        """Shorten the hold of alerts from other tools on the same service (`corroborate_after`)."""
        assert alert.service is not None
        for neighbour in (alert.service,):
            for identity, source in list(self._firing.get(neighbour, {}).items()):
                if source == alert.source:
                    continue
                other = self.series.get(identity)
                if other is None or other.hold_until is None or other.held_reason != "hold_down":
                    continue
                routes = [r for r in self.config.routes if r.corroborate_after and r.matches(other.alert)][:1]
                if not routes:
                    continue
                early = max(other.fired_at + routes[0].corroborate_after, now)
                if early < other.hold_until:
                    self._hold(other, early, "corroborated")

    def _count_episode(self, alert: Alert, now: float) -> None:
        """A firing episode of the alert's condition began (flap detection keeps the last 32)."""
        starts = self._episodes.setdefault(condition_key(alert), [])
        starts.append(now)
        if len(starts) > 32:
            del starts[:-32]

    def _hold(self, series: _Series, until: float, reason: str) -> None:
        if series.hold_until is None or until != series.hold_until:
            series.hold_until = until
            series.held_reason = reason
            self._schedule(until, _HOLD, series.alert.identity)
            if series.alert.service:
                self._held.setdefault(series.alert.service, set()).add(series.alert.identity)

    def _held_criticals(self, service: str, since: float) -> list[Alert]:
        """The critical alerts on `service` that fired since `since` and are held back by a hold-down
        (not muted); stale index entries are dropped on the way."""
        identities = self._held.get(service)
        if not identities:
            return []
        found = []
        for identity in sorted(identities):
            series = self.series.get(identity)
            if (series is None or series.hold_until is None or series.alert.status is not AlertStatus.FIRING
                    or series.alert.service != service):
                identities.discard(identity)
                continue
            if (series.alert.severity is Severity.CRITICAL and series.fired_at >= since
                    and series.held_reason in ("hold_down", "corroborated")):
                found.append(series.alert)
        if not identities:
            del self._held[service]
        return found

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


def condition_key(alert: Alert) -> str:
    """The condition an alert reports, whatever the sender's own ids for it (flap detection).

    Some tools give every re-trigger a new id (a new dedup key, a new fingerprint): the condition is
    what stays the same, the alert's name (or class) on its service and resource.
    """
    return f"{alert.source}|{check_name(alert)}|{alert.service or ''}|{alert.resource or ''}"


def check_name(alert: Alert) -> str:
    """The name of the check that raised the alert: its alert name, else class, else summary."""
    return alert.labels.get("alertname") or alert.labels.get("class") or alert.summary
