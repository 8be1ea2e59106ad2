"""Incident priority as impact x urgency (ITIL): a pure policy over the incident's alerts.

Urgency comes from the most severe firing alert (`severity -> urgency` map). Impact comes from the
service catalog: each alert's service has a criticality tier (1 most critical), mapped to an impact;
the highest impact over the incident's services wins, and a service not in the catalog gets
`default_impact`. The matrix turns (impact, urgency) into P1..P5. The result carries the reason:
which service, which alert and which matrix cell produced it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bridge.model import Alert, AlertStatus, Severity

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


@dataclass(frozen=True, slots=True)
class PriorityPolicy:
    urgency_by_severity: Mapping[Severity, str]
    impact_by_tier: Mapping[int, str]
    default_impact: str
    matrix: Mapping[str, Mapping[str, str]]
    service_tiers: Mapping[str, int]

    def evaluate(self, alerts: Iterable[Alert]) -> PriorityResult:
        urgency, urgency_why = "low", "no firing alert"
        impact, impact_why = None, ""
        for alert in alerts:
            if alert.status is not AlertStatus.FIRING:
                continue
            level = self.urgency_by_severity.get(alert.severity, "low")
            if urgency_why == "no firing alert" or _RANK[level] < _RANK[urgency]:
                urgency = level
                urgency_why = f"severity {alert.severity.value} on {_name(alert)}"
            service = alert.service
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
            impact, impact_why = self.default_impact, "no firing alert"
        priority = self.matrix[impact][urgency]
        reason = f"impact {impact} ({impact_why}) x urgency {urgency} ({urgency_why}) -> {priority}"
        return PriorityResult(priority, impact, urgency, reason)


def _name(alert: Alert) -> str:
    return alert.labels.get("alertname") or alert.summary or alert.fingerprint
