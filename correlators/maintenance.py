"""Maintenance windows: mute the alerts of services, hosts or label sets during planned work.

A window has a scope and a schedule. Scope: an alert is in scope when its `service` is listed in
`services`, or one of its hosts is listed in `hosts` (the alert's `resource`, or the host part of
its `host`, `instance`, `node`, `nodename` or `hostname` label: port, brackets and URL parts
stripped, compared without case), or all of `matchers` match it. Any of the three may be given; at
least one is required.

Schedule: either one-off, `[start, end)` in epoch seconds, or recurring: an RFC 5545 `rrule`
(`FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0`) or a 5-field `cron` expression (converted to RRULEs by
`cron_to_rrule`), each occurrence lasting `duration` seconds, evaluated in `timezone` (IANA, default
UTC) from `dtstart` (optional; the rule's anchor, which supplies any time part the rule leaves out)
to `until` (optional; the last possible occurrence start).

Occurrences are wall-clock times in the window's zone, as RFC 5545 §3.3.5 defines local times: a
time that a DST change skips is taken with the offset before the gap (02:00 on the spring-forward
day in Europe/Berlin starts at 03:00 CEST, the instant the gap begins), and a time that happens twice
means the first. `duration` is elapsed time: a 2 h window at 02:00 on the fall-back day ends at 03:00
standard time. Recurrence expansion (`correlators/_recurrence.py`) is python-dateutil's `rrule`; time
zones are `zoneinfo`.

`mutes` is called for every firing alert, so the calendar indexes windows by service and host, and
each window caches its current occurrence (or the gap to its next one) until that ends: a call is a
few dict lookups and float comparisons.

Reasons (closed set): `in_maintenance`.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.model import Alert, format_time, host_of
from bridge.routing import Matcher
from correlators._recurrence import (
    EPOCH_ANCHOR,
    Occurrence,
    OneOff,
    Recurrence,
    build_rule,
    cron_to_rrule,
    parse_rrule,
)
from correlators.mute import (
    Mute,
    check_not_all_empty,
    check_text,
    check_time,
    matcher_to_dict,
    matchers_from_data,
    reject_unknown,
)

__all__ = [
    "MaintenanceCalendar",
    "MaintenanceReason",
    "MaintenanceWindow",
    "alert_hosts",
    "cron_to_rrule",
    "host_of",
]


class MaintenanceReason(StrEnum):
    IN_MAINTENANCE = "in_maintenance"


# -------------------------------------------------------------------------------------- scope

#: labels that name the machine an alert's target runs on (Kubernetes `node`, node_exporter
#: `nodename`, Datadog `hostname`): planned work on that machine takes the target down too
HOST_LABELS = ("host", "instance", "node", "nodename", "hostname")


def alert_hosts(alert: Alert) -> tuple[str, ...]:
    """The hosts an alert is about: its resource and its HOST_LABELS (host part: port, brackets and
    URL parts stripped)."""
    found: list[str] = []
    for value in (alert.resource, *(alert.labels.get(name) for name in HOST_LABELS)):
        if value:
            host = host_of(value)
            if host and host not in found:
                found.append(host)
    return tuple(found)


# ------------------------------------------------------------------------------------- windows

_WINDOW_FIELDS = ("id", "matchers", "services", "hosts", "start", "end", "rrule", "cron", "duration", "timezone",
                  "dtstart", "until", "comment", "created_by")


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """A scope (services, hosts, matchers) muted during a one-off or recurring time window.

    Construction validates everything (and compiles the schedule); errors are ValueError naming the
    field (`duration: ...`).
    """

    id: str
    matchers: tuple[Matcher, ...] = ()
    services: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    start: float | None = None
    end: float | None = None
    rrule: str | None = None
    cron: str | None = None
    duration: float | None = None
    timezone: str = "UTC"
    dtstart: float | None = None
    until: float | None = None
    comment: str = ""
    created_by: str = ""
    _schedule: OneOff | Recurrence = field(init=False, repr=False, compare=False)
    _service_set: frozenset[str] = field(init=False, repr=False, compare=False)
    _host_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_text(self.id, "id")
        set_ = object.__setattr__
        if isinstance(self.matchers, str) or not all(isinstance(m, Matcher) for m in self.matchers):
            raise ValueError("matchers: must be a sequence of Matcher")
        set_(self, "matchers", tuple(self.matchers))
        check_not_all_empty(self.matchers)
        set_(self, "services", _names(self.services, "services", host=False))
        set_(self, "hosts", _names(self.hosts, "hosts", host=True))
        if not (self.matchers or self.services or self.hosts):
            raise ValueError("scope: at least one of matchers, services or hosts is required")
        set_(self, "_service_set", frozenset(self.services))
        set_(self, "_host_set", frozenset(self.hosts))
        check_text(self.comment, "comment", required=False)
        check_text(self.created_by, "created_by", required=False)
        _zone(self.timezone)
        set_(self, "_schedule", self._compile())

    def _compile(self) -> OneOff | Recurrence:
        set_ = object.__setattr__
        recurring = self.rrule is not None or self.cron is not None
        if not recurring:
            for name in ("duration", "dtstart", "until"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: only for a recurring window (rrule or cron)")
            if self.start is None or self.end is None:
                missing = "start" if self.start is None else "end"
                raise ValueError(f"{missing}: required (a window is start and end, or rrule/cron and duration)")
            start, end = check_time(self.start, "start"), check_time(self.end, "end")
            if end <= start:
                raise ValueError("end: must be after start")
            set_(self, "start", start)
            set_(self, "end", end)
            return OneOff(start, end)
        for name in ("start", "end"):
            if getattr(self, name) is not None:
                raise ValueError(f"{name}: not allowed with rrule/cron (use dtstart and until)")
        if self.rrule is not None and self.cron is not None:
            raise ValueError("rrule: give either rrule or cron, not both")
        if self.duration is None:
            raise ValueError("duration: required for a recurring window")
        duration = check_time(self.duration, "duration")
        if duration <= 0:
            raise ValueError("duration: must be positive")
        set_(self, "duration", duration)
        tz = _zone(self.timezone)
        dtstart = None if self.dtstart is None else check_time(self.dtstart, "dtstart")
        until = None if self.until is None else check_time(self.until, "until")
        if dtstart is not None and until is not None and until < dtstart:
            raise ValueError("until: must not be before dtstart")
        set_(self, "dtstart", dtstart)
        set_(self, "until", until)
        anchor = EPOCH_ANCHOR if dtstart is None else datetime.fromtimestamp(dtstart, tz).replace(tzinfo=None)
        if self.cron is not None:
            texts = cron_to_rrule(self.cron)
            rules = [build_rule(t, parse_rrule(t, tz)[1], anchor, "cron") for t in texts]
        else:
            text, parts, rule_until = parse_rrule(self.rrule, tz)  # type: ignore[arg-type]
            if parts.get("FREQ", "").upper() == "WEEKLY" and "BYDAY" not in parts and dtstart is None:
                raise ValueError("rrule: a WEEKLY rule needs BYDAY when dtstart is not given")
            if rule_until is not None:
                until = rule_until if until is None else min(until, rule_until)
            rules = [build_rule(text, parts, anchor, "rrule")]
        return Recurrence(rules, tz, duration, until)

    @property
    def recurring(self) -> bool:
        return isinstance(self._schedule, Recurrence)

    def active(self, now: float) -> Occurrence | None:
        """The occurrence `(start, end)` covering `now`, or None (the latest one if they overlap)."""
        return self._schedule.active(now)

    def next_occurrence(self, now: float) -> Occurrence | None:
        """The first occurrence starting after `now`, or None if there is none."""
        return self._schedule.next(now)

    def scope_match(self, alert: Alert) -> str | None:
        """How the alert is in this window's scope (`service payments`, `host db-1`, `matchers ...`)."""
        if alert.service is not None and alert.service in self._service_set:
            return f"service {alert.service}"
        if self._host_set:
            for host in alert_hosts(alert):
                if host in self._host_set:
                    return f"host {host}"
        if self.matchers and all(m.matches(alert) for m in self.matchers):
            return self._matchers_text()
        return None

    def _matchers_text(self) -> str:
        return "matchers " + ", ".join(str(m) for m in self.matchers)

    def describe(self) -> str:
        """The schedule in words, for the incident timeline."""
        if self.rrule is not None or self.cron is not None:
            kind, rule = ("rrule", self.rrule) if self.rrule is not None else ("cron", self.cron)
            return f"{kind} {rule} for {self.duration:g}s ({self.timezone})"
        assert self.start is not None and self.end is not None
        return f"from {format_time(self.start)} to {format_time(self.end)}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (journal, API); `from_dict` is its inverse."""
        return {
            "id": self.id,
            "matchers": [matcher_to_dict(m) for m in self.matchers],
            "services": list(self.services),
            "hosts": list(self.hosts),
            "start": self.start,
            "end": self.end,
            "rrule": self.rrule,
            "cron": self.cron,
            "duration": self.duration,
            "timezone": self.timezone,
            "dtstart": self.dtstart,
            "until": self.until,
            "comment": self.comment,
            "created_by": self.created_by,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MaintenanceWindow:
        """Read `to_dict`'s form; matchers may be `name=value` texts; unknown fields are refused."""
        if not isinstance(data, Mapping):
            raise ValueError("window: must be an object")
        reject_unknown(data, _WINDOW_FIELDS)
        if "id" not in data:
            raise ValueError("id: required")
        values = {k: v for k, v in data.items() if v is not None}
        values["matchers"] = matchers_from_data(data.get("matchers"))
        return cls(**values)


def _names(values: object, field_name: str, *, host: bool) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence | frozenset | set):
        raise ValueError(f"{field_name}: must be a list of names")
    found: list[str] = []
    for i, value in enumerate(values):
        name = check_text(value, f"{field_name}[{i}]").strip()
        if host:  # listed the way alerts carry them: `db-1:9100` means host db-1
            name = host_of(name)
            if not name:
                raise ValueError(f"{field_name}[{i}]: {value!r} has no host name")
        if name not in found:
            found.append(name)
    return tuple(found)


def _zone(name: object) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ValueError("timezone: must be an IANA time zone name (Europe/Berlin)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone: unknown time zone {name!r}") from None


# ------------------------------------------------------------------------------------ calendar

class MaintenanceCalendar:
    """Holds maintenance windows and mutes the alerts in scope of an active one (a Muter)."""

    type_name: ClassVar[str] = "maintenance"
    reasons: ClassVar[type[StrEnum]] = MaintenanceReason

    def __init__(self, windows: Iterable[MaintenanceWindow] = ()) -> None:
        self._windows: dict[str, MaintenanceWindow] = {}
        self._by_service: dict[str, builtins.list[MaintenanceWindow]] = {}
        self._by_host: dict[str, builtins.list[MaintenanceWindow]] = {}
        self._by_matchers: builtins.list[MaintenanceWindow] = []
        self.version = 0  # bumped on every change, so a caller can tell its cached answers are stale
        for window in windows:
            self._windows[window.id] = window
        self._reindex()

    def add(self, window: MaintenanceWindow) -> MaintenanceWindow | None:
        """Add a window, replacing the one with the same id (returned, else None)."""
        previous = self._windows.get(window.id)
        self._windows[window.id] = window
        self._reindex()
        return previous

    def remove(self, window_id: str) -> MaintenanceWindow:
        """Remove a window (returned). Raises KeyError for an unknown id."""
        window = self._windows.pop(window_id)
        self._reindex()
        return window

    def get(self, window_id: str) -> MaintenanceWindow | None:
        return self._windows.get(window_id)

    def list(self) -> builtins.list[MaintenanceWindow]:
        """All windows, by id."""
        return [self._windows[k] for k in sorted(self._windows)]

    def __len__(self) -> int:
        return len(self._windows)

    def __contains__(self, window_id: object) -> bool:
        return window_id in self._windows

    def active(self, now: float) -> builtins.list[tuple[MaintenanceWindow, Occurrence]]:
        """The windows active at `now`, with their current occurrence, by id."""
        found = []
        for window in self.list():
            occurrence = window.active(now)
            if occurrence is not None:
                found.append((window, occurrence))
        return found

    def observe(self, alert: Alert, now: float) -> None:
        """Windows do not depend on other alerts."""

    def mutes(self, alert: Alert, now: float) -> Mute | None:
        """The first (by id) active window whose scope holds `alert`, or None."""
        best: tuple[MaintenanceWindow, Occurrence, str] | None = None
        if alert.service is not None:
            best = _first_active(self._by_service.get(alert.service, ()), now, best, f"service {alert.service}")
        if self._by_host:
            for host in alert_hosts(alert):
                best = _first_active(self._by_host.get(host, ()), now, best, f"host {host}")
        for window in self._by_matchers:
            if best is not None and window.id >= best[0].id:
                break
            occurrence = window.active(now)
            if occurrence is not None and all(m.matches(alert) for m in window.matchers):
                best = (window, occurrence, window._matchers_text())
                break
        if best is None:
            return None
        window, (start, end), how = best
        return Mute(
            stage=self.type_name,
            reason=MaintenanceReason.IN_MAINTENANCE.value,
            rule=window.id,
            detail={
                "window": window.describe(),
                "comment": window.comment,
                "occurrence_start": start,
                "occurrence_end": end,
                "matched": how,
                "until": end,
            },
        )

    def _reindex(self) -> None:
        self.version += 1
        self._by_service, self._by_host, self._by_matchers = {}, {}, []
        for window in self.list():
            for service in window.services:
                self._by_service.setdefault(service, []).append(window)
            for host in window.hosts:
                self._by_host.setdefault(host, []).append(window)
            if window.matchers:
                self._by_matchers.append(window)


def _first_active(windows: Iterable[MaintenanceWindow], now: float,
                  best: tuple[MaintenanceWindow, Occurrence, str] | None,
                  how: str) -> tuple[MaintenanceWindow, Occurrence, str] | None:
    """The better of `best` and the first active window of `windows` (sorted by id)."""
    for window in windows:
        if best is not None and window.id >= best[0].id:
            return best
        occurrence = window.active(now)
        if occurrence is not None:
            return window, occurrence, how
    return best
