"""The normalized data model every layer speaks: Alert in, Incident inside, Action out.

Times are float seconds since the Unix epoch (UTC) everywhere; formatting to RFC 3339 happens at
the edges (API, sinks, logs). The types are plain slotted dataclasses: cheap to build on the ingest
hot path, immutable where they cross a boundary (Alert, Action, TimelineEntry).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "Action",
    "ActionKind",
    "Alert",
    "AlertStatus",
    "IncidentStatus",
    "IncidentView",
    "Link",
    "Recipient",
    "Severity",
    "TimelineEntry",
    "canonical_fingerprint",
    "format_time",
    "host_of",
    "parse_time",
]


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Severity(StrEnum):
    """Normalized severity; sources map their vendor's scale onto this one."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"
    NONE = "none"

    @classmethod
    def coerce(cls, value: object, default: Severity | None = None) -> Severity:
        """Map common vendor spellings onto the scale (unknown -> `default`, else WARNING)."""
        text = str(value).strip().lower() if value is not None else ""
        found = _SEVERITY_ALIASES.get(text)
        if found is not None:
            return found
        return default if default is not None else cls.WARNING


_SEVERITY_ALIASES: dict[str, Severity] = {
    "critical": Severity.CRITICAL,
    "crit": Severity.CRITICAL,
    "fatal": Severity.CRITICAL,
    "error": Severity.CRITICAL,
    "err": Severity.CRITICAL,
    "high": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "p1": Severity.CRITICAL,
    "p2": Severity.CRITICAL,
    "disaster": Severity.CRITICAL,
    "warning": Severity.WARNING,
    "warn": Severity.WARNING,
    "medium": Severity.WARNING,
    "average": Severity.WARNING,
    "p3": Severity.WARNING,
    "info": Severity.INFO,
    "information": Severity.INFO,
    "informational": Severity.INFO,
    "low": Severity.INFO,
    "notice": Severity.INFO,
    "p4": Severity.INFO,
    "p5": Severity.INFO,
    "none": Severity.NONE,
    "ok": Severity.NONE,
}


@dataclass(frozen=True, slots=True)
class Link:
    href: str
    text: str = ""


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as a source reported it, normalized.

    `fingerprint` is the identity of the alert *series* within its source (Alertmanager's
    fingerprint when the payload carries one, else a canonical hash of the identifying labels).
    `key` is the identity of one firing *episode* of that series (the storm data set's alert key):
    stable across re-sends and the resolve of that episode, new when the series fires again.
    """

    source: str
    fingerprint: str
    key: str
    status: AlertStatus
    severity: Severity
    summary: str
    starts_at: float
    ends_at: float | None = None
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service: str | None = None
    resource: str | None = None
    links: tuple[Link, ...] = ()
    raw_ref: str | None = None

    @property
    def identity(self) -> str:
        """Dedup identity across all sources: the series fingerprint, qualified by source."""
        return f"{self.source}/{self.fingerprint}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (journal, API, sinks); `from_dict` is its inverse."""
        return {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "key": self.key,
            "status": self.status.value,
            "severity": self.severity.value,
            "summary": self.summary,
            "description": self.description,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "service": self.service,
            "resource": self.resource,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "links": [{"href": link.href, "text": link.text} for link in self.links],
            "raw_ref": self.raw_ref,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        return cls(
            source=data["source"],
            fingerprint=data["fingerprint"],
            key=data["key"],
            status=AlertStatus(data["status"]),
            severity=Severity(data["severity"]),
            summary=data.get("summary", ""),
            description=data.get("description", ""),
            labels=dict(data.get("labels") or {}),
            annotations=dict(data.get("annotations") or {}),
            service=data.get("service"),
            resource=data.get("resource"),
            starts_at=float(data["starts_at"]),
            ends_at=None if data.get("ends_at") is None else float(data["ends_at"]),
            links=tuple(Link(link["href"], link.get("text", "")) for link in data.get("links") or ()),
            raw_ref=data.get("raw_ref"),
        )


def canonical_fingerprint(labels: Mapping[str, str], names: Iterable[str] | None = None) -> str:
    """Canonical hash of identifying labels, Alertmanager style.

    Sorted label names, each encoded as `name 0xff value 0xff`, hashed (BLAKE2b, 64 bits, hex).
    `names` restricts the identity to those labels (missing ones count as empty); None means all.
    """
    keys = sorted(labels) if names is None else sorted(set(names))
    h = hashlib.blake2b(digest_size=8)
    for name in keys:
        h.update(name.encode())
        h.update(b"\xff")
        h.update(str(labels.get(name, "")).encode())
        h.update(b"\xff")
    return h.hexdigest()


class IncidentStatus(StrEnum):
    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One decision in an incident's life: who (stage/rule/user) did what, and why."""

    at: float
    event: str
    by: str
    reason: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": format_time(self.at),
            "event": self.event,
            "by": self.by,
            "reason": self.reason,
            "detail": dict(self.detail),
        }


class ActionKind(StrEnum):
    """What a sink must do. `open` is the page; `update` a change (alerts, priority, status).

    The lifecycle notifications of resolver pools: `assign` (the incident was given to a responder),
    `escalate` (nobody acknowledged in time: the next tier is paged), `sla_warning` (a time-to-
    acknowledge or time-to-resolve target is about to be breached) and `sla_breach` (it was).
    """

    OPEN = "open"
    UPDATE = "update"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    ASSIGN = "assign"
    ESCALATE = "escalate"
    SLA_WARNING = "sla_warning"
    SLA_BREACH = "sla_breach"


@dataclass(frozen=True, slots=True)
class Recipient:
    """A person an action is addressed to, with their handle per channel.

    `handles` maps a channel kind to the person's address on it: `email` (an address), `slack` (a
    Slack user id such as `U024BE7LH`), `teams` (a Teams user principal name), `phone` (E.164). A
    sink uses the handle of its own channel kind and ignores the rest.
    """

    name: str
    handles: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "handles": dict(self.handles)}


@dataclass(frozen=True, slots=True)
class IncidentView:
    """An immutable snapshot of an incident at one revision: what sinks and the API read."""

    id: str
    key: str
    route: str
    status: IncidentStatus
    priority: str
    priority_reason: str
    pool: str | None
    title: str
    revision: int
    opened_at: float
    updated_at: float
    resolved_at: float | None
    acknowledged_by: str | None
    alerts: tuple[Alert, ...]
    group_labels: Mapping[str, str]
    root_cause: str | None = None  # probable root-cause service (topology grouping)
    assignee: str | None = None  # the pool member it is assigned to
    escalation_level: int = 0  # 1-based tier of the pool's escalation policy now paged; 0: none
    #: SLA targets as epoch seconds: "acknowledge_by", "resolve_by" (absent when no target applies)
    sla: Mapping[str, float] = field(default_factory=dict)

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status is AlertStatus.FIRING)

    @property
    def name(self) -> str:
        """The title without its leading state (`[FIRING:2] `, `[RESOLVED] `): what the incident is
        about, for messages that state the action's own headline in front of it."""
        if self.title.startswith("[") and "] " in self.title:
            return self.title.split("] ", 1)[1]
        return self.title

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "route": self.route,
            "status": self.status.value,
            "priority": self.priority,
            "priority_reason": self.priority_reason,
            "pool": self.pool,
            "title": self.title,
            "revision": self.revision,
            "opened_at": format_time(self.opened_at),
            "updated_at": format_time(self.updated_at),
            "resolved_at": None if self.resolved_at is None else format_time(self.resolved_at),
            "acknowledged_by": self.acknowledged_by,
            "group_labels": dict(self.group_labels),
            "root_cause": self.root_cause,
            "assignee": self.assignee,
            "escalation_level": self.escalation_level,
            "sla": {name: format_time(at) for name, at in self.sla.items()},
            "alerts_firing": len(self.firing),
            "alerts": [a.to_dict() for a in self.alerts],
        }


@dataclass(frozen=True, slots=True)
class Action:
    """One thing to deliver: `kind` of `incident` (at its revision) to each of `sinks`.

    The idempotency key of a delivery is `(incident.id, sink, incident.revision)`: delivering the
    same action twice (a restart, a redelivered job) is recognised and skipped.
    """

    kind: ActionKind
    at: float
    incident: IncidentView
    sinks: tuple[str, ...]
    reason: str = ""
    #: the people this action is addressed to (assignee, escalation tier), each with channel handles
    recipients: tuple[Recipient, ...] = ()
    #: signed links a receiver may follow without logging in: "acknowledge", "resolve" (added at delivery)
    links: Mapping[str, str] = field(default_factory=dict)

    def idempotency_key(self, sink: str) -> str:
        return f"{self.incident.id}:{sink}:{self.incident.revision}"


def format_time(ts: float) -> str:
    """RFC 3339 UTC with millisecond precision (`2024-03-04T09:12:03.123Z`)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_GO_ZERO_PREFIX = "0001-01-01"


def parse_time(value: str) -> float | None:
    """Parse RFC 3339 (nanoseconds tolerated, `Z` or offset) to epoch seconds.

    Returns None for Go's zero time (`0001-01-01T00:00:00Z`), which Alertmanager sends as "unset".
    Raises ValueError on anything else that is not a timestamp. Cached: senders repeat the same
    `startsAt` in every re-send.
    """
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 string")
    return _parse_time(value)


@functools.lru_cache(maxsize=65536)
def _parse_time(value: str) -> float | None:
    """Parse RFC 3339 (nanoseconds tolerated, `Z` or offset) to epoch seconds.

    Returns None for Go's zero time (`0001-01-01T00:00:00Z`), which Alertmanager sends as "unset".
    Raises ValueError on anything else that is not a timestamp.
    """
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 string")
    text = value.strip()
    if text.startswith(_GO_ZERO_PREFIX):
        return None
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python's fromisoformat takes at most microseconds: trim longer fractions (Go sends nanoseconds).
    dot = text.find(".")
    if dot != -1:
        end = dot + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        frac = text[dot + 1 : end][:6]
        text = text[: dot + 1] + (frac or "0") + text[end:]
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def host_of(value: str) -> str:
    """The host part of an `instance`-like value, lower case: `db-1:9100`, `[::1]:9100`, `https://db-1/x` -> host."""
    text = value.strip()
    if "://" in text:
        text = urlsplit(text).hostname or ""
    elif text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    return text.lower()
