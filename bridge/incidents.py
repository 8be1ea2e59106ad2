"""The engine's mutable incident record, and the immutable views it hands out.

Only the engine mutates an `Incident`; everyone else reads `IncidentView` snapshots, so a view
taken at revision N stays what was delivered at revision N.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from bridge.model import Alert, AlertStatus, IncidentStatus, IncidentView, TimelineEntry

__all__ = ["TIMELINE_LIMIT", "Incident", "incident_id"]

#: Timeline entries kept per incident; later ones are counted in `timeline_dropped`.
TIMELINE_LIMIT = 500


def incident_id(key: str, opened_at: float, serial: int, partition: str = "") -> str:
    """A deterministic, installation-independent id: the same input stream gives the same ids.

    `partition` (distributed mode; empty for the default one) keeps two partitions' engines, fed the
    same alerts at the same instant, from minting the same id."""
    seed = f"{key}|{opened_at:.3f}|{serial}" + (f"|{partition}" if partition else "")
    digest = hashlib.blake2b(seed.encode(), digest_size=6).hexdigest()
    return f"inc-{digest}"


@dataclass(slots=True)
class Incident:
    id: str
    key: str
    route: str
    group_labels: dict[str, str]
    sinks: tuple[str, ...]
    pool: str | None
    created_at: float
    status: IncidentStatus = IncidentStatus.TRIGGERED
    opened: bool = False  # False while in group_wait: not paged, not visible
    opened_at: float = 0.0
    updated_at: float = 0.0
    resolved_at: float | None = None
    acknowledged_by: str | None = None
    priority: str = "P5"
    priority_reason: str = ""
    revision: int = 0
    first_alert_at: float | None = None  # first firing time of its earliest alert
    last_joined_at: float = 0.0  # when an alert last joined (sliding grouping window)
    critical_at: float | None = None  # when its first critical alert joined: a fixed window restarts there
    root_cause: str | None = None  # probable root-cause service (topology grouping)
    merged_into: str | None = None  # absorbed by this incident (topology grouping)
    resolve_due: float | None = None  # resolving once resolve_hysteresis has passed
    muted: bool = False  # its updates are muted (every firing alert is silenced, inhibited or in maintenance)
    reopening: bool = False  # re-fired within reopen_window: pages again as an open
    dirty: bool = False  # changed since the last notification
    last_notified: float = 0.0
    flush_due: float | None = None
    alerts: dict[str, Alert] = field(default_factory=dict)  # identity -> latest alert
    #: alerts grouped here while held back (hold-down): they shape grouping and root cause, but are
    #: not part of the incident (nor listed to sinks) until confirmed; one that resolves first is dropped
    pending: dict[str, Alert] = field(default_factory=dict)
    indexed: set[tuple[str, str]] = field(default_factory=set)  # (route, service) slots of the topology index
    timeline: list[TimelineEntry] = field(default_factory=list)
    timeline_dropped: int = 0
    # resolver pools (bridge/escalation.py)
    pool_reason: str = ""  # why it went to its pool
    informed: tuple[str, ...] = ()  # other pools kept informed (assignment rules with `continue`)
    skills: frozenset[str] = frozenset()  # its assignee must have these (the assignment rule's `skills`)
    assignee: str | None = None
    assign_reason: str = ""
    loaded: bool = False  # counted in its assignee's open incidents (quota)
    acknowledged_at: float | None = None
    escalation_policy: str | None = None
    escalation_level: int = 0  # 1-based tier now paged; 0: not escalating
    escalation_cycle: int = 0  # how many times the policy started again (repeat)
    escalation_gen: int = 0  # moves on whenever pending escalation timers become stale
    escalations: int = 0
    pages: list[tuple[str, float]] = field(default_factory=list)  # (member, when) for each page sent
    sla: dict[str, float] = field(default_factory=dict)  # "acknowledge_by"/"resolve_by" -> deadline
    sla_gen: int = 0
    sla_priority: str | None = None  # the priority the SLA deadlines were set for
    sla_sent: set[tuple[str, str]] = field(default_factory=set)  # (target, phase) notified
    sla_breached: set[str] = field(default_factory=set)
    repeat_of: str | None = None  # the same key resolved within 7 days before this one opened

    def record(self, at: float, event: str, by: str, reason: str, **detail: Any) -> None:
        if len(self.timeline) >= TIMELINE_LIMIT:
            self.timeline_dropped += 1
            return
        self.timeline.append(TimelineEntry(at, event, by, reason, detail))

    def firing_count(self) -> int:
        return sum(1 for a in self.alerts.values() if a.status is AlertStatus.FIRING)

    def title(self) -> str:
        firing = self.firing_count()
        state = "RESOLVED" if firing == 0 else f"FIRING:{firing}"
        labels = " ".join(f"{k}={v}" for k, v in self.group_labels.items() if v)
        first = next(iter(self.alerts.values()), None)
        summary = first.summary if first is not None else ""
        parts = [f"[{state}]"]
        if labels:
            parts.append(labels)
        if summary:
            parts.append(f"- {summary}")
        return " ".join(parts)

    def view(self) -> IncidentView:
        return IncidentView(
            id=self.id,
            key=self.key,
            route=self.route,
            status=self.status,
            priority=self.priority,
            priority_reason=self.priority_reason,
            pool=self.pool,
            title=self.title(),
            revision=self.revision,
            opened_at=self.opened_at or self.created_at,
            updated_at=self.updated_at,
            resolved_at=self.resolved_at,
            acknowledged_by=self.acknowledged_by,
            alerts=tuple(self.alerts.values()),
            group_labels=dict(self.group_labels),
            root_cause=self.root_cause,
            assignee=self.assignee,
            escalation_level=self.escalation_level,
            sla=dict(self.sla),
        )

    def timeline_dicts(self) -> list[dict[str, Any]]:
        entries = [entry.to_dict() for entry in self.timeline]
        if self.timeline_dropped:
            entries.append({"event": "truncated", "by": "engine",
                            "reason": f"{self.timeline_dropped} later entries not kept", "detail": {}})
        return entries
