"""Incident priority as impact x urgency (ITIL): a pure policy over the incident's alerts.

Urgency comes from the most severe alert the incident has had (`severity -> urgency` map); with
`business_hours_downgrade`, it is lowered one step when every impacted service is business-hours
only and the incident's first alert came outside business hours. Impact comes from the service
catalog: each impacted service's criticality tier maps to an impact (a service not in the catalog
gets `default_impact`), and the blast radius (how many services are impacted) can raise it. The
matrix turns (impact, urgency) into a priority. The result carries the reason: which service,
which alert, how many services, and which matrix cell produced it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from bridge.model import Alert, Severity

__all__ = ["ITIL_MATRIX", "LEVELS", "PriorityPolicy", "PriorityResult"]

LEVELS = ("high", "medium", "low")
_RANK = {level: i for i, level in enumerate(LEVELS)}

#: ITIL's 3x3 matrix: (impact, urgency) -> priority.
ITIL_MATRIX: dict[str, dict[str, str]] = {
    "high": {"high": "P1", "medium": "P2", "low": "P3"},
    "medium": {"high": "P2", "medium": "P3", "low": "P4"},
    "low": {"high": "P3", "medium": "P4", "low": "P5"},
}


@dataclass(frozen=True, slots=True)
class PriorityResult:
    priority: str
    impact: str
    urgency: str
    reason: str


def _lower(level: str) -> str:
    return LEVELS[min(_RANK[level] + 1, len(LEVELS) - 1)]


@dataclass(frozen=True, slots=True)
class PriorityPolicy:
    urgency_by_severity: Mapping[Severity, str]
    impact_by_tier: Mapping[int, str]
    default_impact: str
    matrix: Mapping[str, Mapping[str, str]]
    service_tiers: Mapping[str, int]
    #: impact level -> number of impacted services that reaches it (e.g. {"high": 6, "medium": 3})
    blast_radius: Mapping[str, int] = field(default_factory=dict)
    business_hours_downgrade: bool = False
    business_hours_only: frozenset[str] = frozenset()
    in_business_hours: Callable[[float], bool] | None = None

    def evaluate(self, alerts: Iterable[Alert], first_alert_at: float | None = None,
                 urgency_of: Mapping[str, tuple[str, str]] | None = None) -> PriorityResult:
        """Priority over every alert the incident has had (firing or resolved).

        `urgency_of` overrides the urgency of some alerts (by identity), with the reason: early-warning
        rules page sustained warnings at low urgency.
        """
        urgency, urgency_why = "low", "no alert"
        seen_any = False
        impact, impact_why = None, ""
        services: set[str] = set()
        for alert in alerts:
            override = urgency_of.get(alert.identity) if urgency_of else None
            if override is not None:
                level, why = override[0], f"{override[1]} on {_name(alert)}"
            else:
                level = self.urgency_by_severity.get(alert.severity, "low")
                why = f"severity {alert.severity.value} on {_name(alert)}"
            if not seen_any or _RANK[level] < _RANK[urgency]:
                urgency, urgency_why = level, why
            seen_any = True
            service = alert.service
            if service is not None:
                services.add(service)
            if service is not None and service in self.service_tiers:
                tier = self.service_tiers[service]
                level = self.impact_by_tier.get(tier, self.default_impact)
                why = f"service {service} is tier {tier}"
            else:
                level = self.default_impact
                why = f"service {service} not in catalog" if service else "no service"
            if impact is None or _RANK[level] < _RANK[impact]:
                impact, impact_why = level, why
        if impact is None:
            impact, impact_why = self.default_impact, "no alert"
        for level in LEVELS:
            threshold = self.blast_radius.get(level)
            if threshold and len(services) >= threshold and _RANK[level] < _RANK[impact]:
                impact, impact_why = level, f"{len(services)} services impacted (>= {threshold})"
                break
        if (self.business_hours_downgrade and seen_any and services and first_alert_at is not None
                and self.in_business_hours is not None and services <= self.business_hours_only
                and not self.in_business_hours(first_alert_at)):
            lowered = _lower(urgency)
            if lowered != urgency:
                urgency_why += "; lowered: business-hours-only services, outside business hours"
                urgency = lowered
        priority = self.matrix[impact][urgency]
        reason = f"impact {impact} ({impact_why}) x urgency {urgency} ({urgency_why}) -> {priority}"
        return PriorityResult(priority, impact, urgency, reason)


def _name(alert: Alert) -> str:
    return alert.labels.get("alertname") or alert.summary or alert.fingerprint
