"""What every human-facing sink says about an action: one pure, channel-neutral `Notification`.

`notification(action)` decides the content once: the headline per action kind, the incident's
title and summary, priority and why, the action's reason, the facts (status, priority, pool,
route, alerts firing, duration, root cause, assignee, escalation level, SLA deadlines), the
alerts (firing first, most severe first, capped at `MAX_ALERTS` with the count of the rest), the
runbook, dashboard and source links (deduplicated), the signed acknowledge/resolve links and the
recipients. Slack, e-mail and Teams only lay it out in their own markup, so every channel says
the same thing.

Everything here is plain, unescaped text: each channel escapes for its own markup. Links are
kept only when they are http(s) URLs, so no channel can be handed a `javascript:` link.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from bridge.model import (
    Action,
    ActionKind,
    Alert,
    AlertStatus,
    IncidentStatus,
    Link,
    Recipient,
    Severity,
    format_time,
)

__all__ = [
    "KIND_EMOJI",
    "LINK_ANNOTATIONS",
    "MAX_ALERTS",
    "MAX_LINKS",
    "SEVERITY_EMOJI",
    "AlertLine",
    "Deadline",
    "Fact",
    "LinkKind",
    "NamedLink",
    "Notification",
    "alert_links",
    "duration_text",
    "headline",
    "notification",
    "ordered",
    "plural",
]

#: Alerts listed in one notification; the rest are counted ("…and N more alerts").
MAX_ALERTS = 10
#: Runbook, dashboard and source links listed per incident, each.
MAX_LINKS = 5

KIND_EMOJI: Mapping[ActionKind, str] = {
    ActionKind.OPEN: "🔴",
    ActionKind.UPDATE: "🟠",
    ActionKind.ACKNOWLEDGE: "👀",
    ActionKind.RESOLVE: "✅",
    ActionKind.ASSIGN: "👤",
    ActionKind.ESCALATE: "⏫",
    ActionKind.SLA_WARNING: "⏳",
    ActionKind.SLA_BREACH: "⌛",
}
SEVERITY_EMOJI: Mapping[Severity, str] = {
    Severity.CRITICAL: "🔴",
    Severity.WARNING: "🟠",
    Severity.INFO: "🔵",
    Severity.NONE: "⚪",
}
_SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2, Severity.NONE: 3}


class LinkKind(StrEnum):
    RUNBOOK = "runbook"
    DASHBOARD = "dashboard"
    SOURCE = "source"


#: Annotations holding a link, in the order they are read, with the kind of link they hold.
LINK_ANNOTATIONS: tuple[tuple[str, LinkKind], ...] = (
    ("runbook_url", LinkKind.RUNBOOK),
    ("runbook", LinkKind.RUNBOOK),
    ("dashboard_url", LinkKind.DASHBOARD),
    ("dashboard", LinkKind.DASHBOARD),
    ("dashboardURL", LinkKind.DASHBOARD),
    ("panelURL", LinkKind.DASHBOARD),
    ("grafana_url", LinkKind.DASHBOARD),
)
#: Words in an `Alert.links` text that make it a runbook or dashboard link (else a source link).
_KIND_WORDS: tuple[tuple[LinkKind, tuple[str, ...]], ...] = (
    (LinkKind.RUNBOOK, ("runbook", "playbook")),
    (LinkKind.DASHBOARD, ("dashboard", "panel", "grafana")),
)
#: SLA targets in the order they are shown, with their fact names; other targets follow.
_SLA_NAMES = (("acknowledge_by", "Acknowledge by"), ("resolve_by", "Resolve by"))


@dataclass(frozen=True, slots=True)
class NamedLink:
    """An http(s) link with a label and what it points at."""

    href: str
    label: str
    kind: LinkKind


@dataclass(frozen=True, slots=True)
class AlertLine:
    """One listed alert: severity, summary (or key), where, and its links (runbooks, dashboards, sources)."""

    status: AlertStatus
    severity: Severity
    summary: str
    service: str | None
    resource: str | None
    links: tuple[NamedLink, ...]

    @property
    def firing(self) -> bool:
        return self.status is AlertStatus.FIRING


@dataclass(frozen=True, slots=True)
class Deadline:
    """An SLA target: its name ("Acknowledge by"), when (epoch seconds), and seconds left at the action."""

    name: str
    at: float
    left: float

    @property
    def note(self) -> str:
        """`in 15m` or `overdue by 2m`, relative to the action's time (never the wall clock)."""
        if self.left >= 0:
            return f"in {duration_text(self.left)}"
        return f"overdue by {duration_text(-self.left)}"


@dataclass(frozen=True, slots=True)
class Fact:
    """One name/value line. `at` is set when the value is a point in time a channel may localise."""

    name: str
    value: str
    at: float | None = None
    note: str = ""

    @property
    def text(self) -> str:
        """The value as plain text, with its note in parentheses."""
        return f"{self.value} ({self.note})" if self.note else self.value


@dataclass(frozen=True, slots=True)
class Notification:
    """The channel-neutral content of one action (plain text; channels escape it)."""

    kind: ActionKind
    emoji: str  # of the action kind
    headline: str  # "[FIRING]", "[ASSIGNED to alice]", "[SLA BREACHED]", ...
    title: str
    summary: str  # "2 alerts firing"
    priority: str
    priority_reason: str
    reason: str  # why the engine emitted this action, may be empty
    incident_id: str
    revision: int
    at: float
    status: IncidentStatus
    acknowledged_by: str | None
    pool: str | None
    route: str
    root_cause: str | None
    assignee: str | None
    escalation_level: int  # 0: not escalated
    deadlines: tuple[Deadline, ...]  # SLA targets still pending (none once resolved)
    duration: float | None  # seconds from open to resolve, once resolved
    alerts_firing: int
    alerts_total: int
    alerts: tuple[AlertLine, ...]  # at most MAX_ALERTS (or the cap given)
    more_alerts: int  # alerts not listed
    runbooks: tuple[NamedLink, ...]
    dashboards: tuple[NamedLink, ...]
    sources: tuple[NamedLink, ...]
    acknowledge_url: str | None  # only while triggered
    resolve_url: str | None  # only while not resolved
    recipients: tuple[Recipient, ...]

    @property
    def subject(self) -> str:
        """`P1 [FIRING] InstanceDown (payments)`: priority, headline and title."""
        return f"{self.priority} {self.headline} {self.title}"

    @property
    def heading(self) -> str:
        """`🔴 P1 · [FIRING] InstanceDown (payments)`: the chat channels' title line."""
        return f"{self.emoji} {self.priority} · {self.headline} {self.title}"

    @property
    def status_text(self) -> str:
        """`triggered`, `acknowledged by alice` or `resolved`."""
        if self.status is IncidentStatus.ACKNOWLEDGED and self.acknowledged_by:
            return f"{self.status.value} by {self.acknowledged_by}"
        return self.status.value

    @property
    def priority_text(self) -> str:
        """`P1 (severity critical on tier-1 service payments)`: the priority and why."""
        return f"{self.priority} ({self.priority_reason})" if self.priority_reason else self.priority

    @property
    def facts(self) -> tuple[Fact, ...]:
        """The facts every channel shows, in order; optional ones only when they apply."""
        facts = [
            Fact("Status", self.status_text),
            Fact("Priority", self.priority_text),
            Fact("Pool", self.pool or "none"),
            Fact("Route", self.route),
            Fact("Alerts firing", f"{self.alerts_firing} of {self.alerts_total}"),
        ]
        if self.duration is not None:
            facts.append(Fact("Duration", duration_text(self.duration)))
        if self.root_cause:
            facts.append(Fact("Root cause", self.root_cause))
        if self.assignee:
            facts.append(Fact("Assignee", self.assignee))
        if self.escalation_level > 0:
            facts.append(Fact("Escalation", f"tier {self.escalation_level}"))
        facts += [Fact(d.name, format_time(d.at), d.at, d.note) for d in self.deadlines]
        return tuple(facts)

    def handles(self, channel: str) -> tuple[tuple[str, str], ...]:
        """`(name, handle)` of each recipient with a handle on `channel` ("slack", "teams", ...), deduplicated."""
        seen: set[str] = set()
        found: list[tuple[str, str]] = []
        for recipient in self.recipients:
            handle = (recipient.handles.get(channel) or "").strip()
            if handle and handle not in seen:
                seen.add(handle)
                found.append((recipient.name or handle, handle))
        return tuple(found)


# ------------------------------------------------------------------------------------------- helpers

def plural(n: int, word: str) -> str:
    """`1 alert`, `2 alerts`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def duration_text(seconds: float) -> str:
    """`42m`, `3h 5m`, `2d 4h` (whole minutes, never negative)."""
    minutes = int(max(0.0, seconds) // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def _web(href: str | None) -> str | None:
    """`href` stripped when it is an http(s) URL with a host, else None."""
    if not href:
        return None
    text = href.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    if any(ch in text for ch in "\r\n\t"):
        return None
    return text


def _kind_of(link: Link) -> LinkKind:
    text = link.text.lower()
    for kind, words in _KIND_WORDS:
        if any(word in text for word in words):
            return kind
    return LinkKind.SOURCE


def headline(action: Action) -> str:
    """What happened, in brackets: `[FIRING]`, `[ESCALATED to tier 2]`, ... (one per action kind).

    `[FIRING]`, `[UPDATE: 3 alerts firing]`, `[ACKNOWLEDGED by alice]`, `[ASSIGNED to alice]`,
    `[ESCALATED to tier 2]`, `[SLA WARNING]`, `[SLA BREACHED]`, `[RESOLVED]`.
    """
    incident = action.incident
    kind = action.kind
    if kind is ActionKind.OPEN:
        return "[FIRING]"
    if kind is ActionKind.UPDATE:
        return f"[UPDATE: {plural(len(incident.firing), 'alert')} firing]"
    if kind is ActionKind.ACKNOWLEDGE:
        who = incident.acknowledged_by
        return f"[ACKNOWLEDGED by {who}]" if who else "[ACKNOWLEDGED]"
    if kind is ActionKind.ASSIGN:
        return f"[ASSIGNED to {incident.assignee}]" if incident.assignee else "[ASSIGNED]"
    if kind is ActionKind.ESCALATE:
        level = incident.escalation_level
        return f"[ESCALATED to tier {level}]" if level > 0 else "[ESCALATED]"
    if kind is ActionKind.SLA_WARNING:
        return "[SLA WARNING]"
    if kind is ActionKind.SLA_BREACH:
        return "[SLA BREACHED]"
    return "[RESOLVED]"


def alert_links(alert: Alert) -> tuple[NamedLink, ...]:
    """The alert's http(s) links, deduplicated by URL: its `links`, then link annotations.

    An `Alert.links` entry keeps its text as label ("link" when empty) and is a runbook or
    dashboard link when its text says so; an annotation is labelled by its kind. When the same URL
    comes twice, the first label is kept and a runbook/dashboard kind wins over "source".
    """
    found: dict[str, NamedLink] = {}
    candidates: list[tuple[str, str, LinkKind]] = [
        (link.href, link.text or "link", _kind_of(link)) for link in alert.links
    ]
    for key, kind in LINK_ANNOTATIONS:
        value = alert.annotations.get(key)
        if value:
            candidates.append((value, kind.value, kind))
    for raw, label, kind in candidates:
        href = _web(raw)
        if href is None:
            continue
        known = found.get(href)
        if known is None:
            found[href] = NamedLink(href, label, kind)
        elif known.kind is LinkKind.SOURCE and kind is not LinkKind.SOURCE:
            found[href] = NamedLink(href, known.label, kind)
    return tuple(found.values())


def ordered(alerts: Iterable[Alert]) -> list[Alert]:
    """Firing before resolved, most severe first, oldest first."""
    return sorted(
        alerts,
        key=lambda a: (a.status is not AlertStatus.FIRING, _SEVERITY_RANK[a.severity], a.starts_at),
    )


def _incident_links(per_alert: Iterable[tuple[NamedLink, ...]], kind: LinkKind) -> tuple[NamedLink, ...]:
    """The incident's links of `kind` across its alerts: deduplicated, at most MAX_LINKS, labels numbered."""
    seen: set[str] = set()
    hrefs: list[tuple[str, str]] = []
    for links in per_alert:
        for link in links:
            if link.kind is kind and link.href not in seen and len(hrefs) < MAX_LINKS:
                seen.add(link.href)
                label = link.label[:1].upper() + link.label[1:] if kind is LinkKind.SOURCE else kind.value.capitalize()
                hrefs.append((link.href, label))
    counts: dict[str, int] = {}
    for _, label in hrefs:
        counts[label] = counts.get(label, 0) + 1
    numbered: list[NamedLink] = []
    used: dict[str, int] = {}
    for href, label in hrefs:
        if counts[label] > 1:
            used[label] = used.get(label, 0) + 1
            label = f"{label} {used[label]}"
        numbered.append(NamedLink(href, label, kind))
    return tuple(numbered)


def _deadlines(action: Action) -> tuple[Deadline, ...]:
    """Pending SLA targets: none once resolved; acknowledge-by only while triggered."""
    incident = action.incident
    if incident.status is IncidentStatus.RESOLVED:
        return ()
    names = dict(_SLA_NAMES)
    keys = [key for key, _ in _SLA_NAMES if key in incident.sla]
    keys += sorted(key for key in incident.sla if key not in names)
    deadlines = []
    for key in keys:
        if key == "acknowledge_by" and incident.status is not IncidentStatus.TRIGGERED:
            continue
        at = float(incident.sla[key])
        name = names.get(key) or key.replace("_", " ").capitalize()
        deadlines.append(Deadline(name, at, at - action.at))
    return tuple(deadlines)


def notification(action: Action, *, max_alerts: int = MAX_ALERTS) -> Notification:
    """The content of `action` for people (pure; the same action gives the same notification)."""
    incident = action.incident
    sorted_alerts = ordered(incident.alerts)
    links_per_alert = [alert_links(alert) for alert in sorted_alerts]
    shown = [
        AlertLine(
            status=alert.status,
            severity=alert.severity,
            summary=alert.summary or alert.key,
            service=alert.service,
            resource=alert.resource,
            links=links,
        )
        for alert, links in zip(sorted_alerts[: max(0, max_alerts)], links_per_alert, strict=False)
    ]
    open_ = incident.status is not IncidentStatus.RESOLVED
    triggered = incident.status is IncidentStatus.TRIGGERED
    firing = len(incident.firing)
    return Notification(
        kind=action.kind,
        emoji=KIND_EMOJI[action.kind],
        headline=headline(action),
        title=incident.name,
        summary=f"{plural(firing, 'alert')} firing",
        priority=incident.priority,
        priority_reason=incident.priority_reason,
        reason=action.reason,
        incident_id=incident.id,
        revision=incident.revision,
        at=action.at,
        status=incident.status,
        acknowledged_by=incident.acknowledged_by,
        pool=incident.pool,
        route=incident.route,
        root_cause=incident.root_cause,
        assignee=incident.assignee,
        escalation_level=incident.escalation_level,
        deadlines=_deadlines(action),
        duration=None if incident.resolved_at is None else incident.resolved_at - incident.opened_at,
        alerts_firing=firing,
        alerts_total=len(incident.alerts),
        alerts=tuple(shown),
        more_alerts=len(incident.alerts) - len(shown),
        runbooks=_incident_links(links_per_alert, LinkKind.RUNBOOK),
        dashboards=_incident_links(links_per_alert, LinkKind.DASHBOARD),
        sources=_incident_links(links_per_alert, LinkKind.SOURCE),
        acknowledge_url=_web(action.links.get("acknowledge")) if triggered else None,
        resolve_url=_web(action.links.get("resolve")) if open_ else None,
        recipients=action.recipients,
    )
