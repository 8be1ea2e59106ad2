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
standard time. Recurrence expansion is python-dateutil's `rrule`; time zones are `zoneinfo`.

`mutes` is called for every firing alert, so the calendar indexes windows by service and host, and
each window caches its current occurrence (or the gap to its next one) until that ends: a call is a
few dict lookups and float comparisons.

Reasons (closed set): `in_maintenance`.
"""

from __future__ import annotations

import builtins
import calendar
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule as RRule
from dateutil.rrule import rrulestr

from bridge.model import Alert, format_time, host_of
from bridge.routing import Matcher
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


Occurrence = tuple[float, float]

# ------------------------------------------------------------------------------------------- cron

_CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {name: i for i, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
_DAYS = {name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
_RRULE_DAYS = ("SU", "MO", "TU", "WE", "TH", "FR", "SA")  # cron day-of-week 0..6
_MONTH_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # longest length of each month


@dataclass(frozen=True, slots=True)
class _CronField:
    label: str
    low: int
    high: int
    names: Mapping[str, int]


_CRON_FIELDS = (
    _CronField("minute", 0, 59, {}),
    _CronField("hour", 0, 23, {}),
    _CronField("day-of-month", 1, 31, {}),
    _CronField("month", 1, 12, _MONTHS),
    _CronField("day-of-week", 0, 7, _DAYS),
)


def cron_to_rrule(expr: str) -> tuple[str, ...]:
    """Convert a 5-field cron expression to equivalent RFC 5545 RRULEs (without DTSTART).

    Fields: minute hour day-of-month month day-of-week, each `*`, a value, a range `a-b`, a list
    `a,b`, with an optional step `/n` (`*/15`, `9-17/2`, `5/10` = from 5 to the maximum); month and
    day names (`JAN`, `MON`), day-of-week 0 or 7 = Sunday; the macros `@hourly`, `@daily`,
    `@weekly`, `@monthly`, `@yearly`. As in Vixie cron, when both day-of-month and day-of-week are
    restricted (neither starts with `*`) a day matches if *either* does: that is two RRULEs, whose
    union is the schedule. Otherwise the result is one RRULE. Raises ValueError (`cron: ...`).
    """
    if not isinstance(expr, str):
        raise ValueError("cron: must be a string")
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() not in _CRON_MACROS:
            raise ValueError(f"cron: unknown macro {text!r} (known: {', '.join(sorted(_CRON_MACROS))})")
        text = _CRON_MACROS[text.lower()]
    fields = text.split()
    if len(fields) != 5:
        raise ValueError("cron: expected 5 fields (minute hour day-of-month month day-of-week)")
    minutes, hours, days, months, weekdays = (
        _cron_values(item, spec) for item, spec in zip(fields, _CRON_FIELDS, strict=True))
    weekdays = {0 if d == 7 else d for d in weekdays}
    all_days, all_weekdays = days == set(range(1, 32)), weekdays == set(range(7))

    if minutes == set(range(60)):
        head = ["FREQ=MINUTELY"]
    elif hours == set(range(24)):
        head = ["FREQ=HOURLY"]
    else:
        head = ["FREQ=DAILY"]
    if months != set(range(1, 13)):
        head.append("BYMONTH=" + _join(months))
    tail = []
    if hours != set(range(24)):
        tail.append("BYHOUR=" + _join(hours))
    if minutes != set(range(60)):
        tail.append("BYMINUTE=" + _join(minutes))
    tail.append("BYSECOND=0")
    by_monthday = "BYMONTHDAY=" + _join(days)
    by_day = "BYDAY=" + ",".join(_RRULE_DAYS[d] for d in sorted(weekdays))
    feasible = any(d <= _MONTH_DAYS[m] for m in months for d in days)

    if fields[2].startswith("*") or fields[4].startswith("*"):
        # Vixie cron: a `*` day field means "day-of-month AND day-of-week" (the star one is usually all)
        day_parts = ([] if all_days else [by_monthday]) + ([] if all_weekdays else [by_day])
        if not feasible:
            raise ValueError("cron: the day-of-month never occurs in the given months")
        rules = [head + day_parts + tail]
    elif all_days or all_weekdays:
        rules = [head + tail]  # either day field matches every day
    else:
        rules = [[*head, by_day, *tail]]
        if feasible:  # a day-of-month that never occurs adds nothing (and would never end expanding)
            rules.insert(0, [*head, by_monthday, *tail])
    return tuple(";".join(parts) for parts in rules)


def _join(values: Iterable[int]) -> str:
    return ",".join(str(v) for v in sorted(values))


def _cron_values(text: str, spec: _CronField) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ValueError(f"cron: {spec.label} {text!r}: empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"cron: {spec.label} {item!r}: the step must be a positive number")
            step = int(step_text)
        if base == "*":
            low, high = spec.low, spec.high
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _cron_value(first, spec, item), _cron_value(last, spec, item)
            if low > high:
                raise ValueError(f"cron: {spec.label} {item!r}: the range is backwards")
        else:
            low = _cron_value(base, spec, item)
            high = spec.high if slash else low
        values.update(range(low, high + 1, step))
    return values


def _cron_value(text: str, spec: _CronField, item: str) -> int:
    name = text.upper()
    if name in spec.names:
        return spec.names[name]
    if not text.isdigit():
        raise ValueError(f"cron: {spec.label} {item!r}: {text!r} is not a number"
                         + (f" or a name ({', '.join(spec.names)})" if spec.names else ""))
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise ValueError(f"cron: {spec.label} {item!r}: {value} is outside {spec.low}-{spec.high}")
    return value


# ------------------------------------------------------------------------------------ schedules

_DAY = timedelta(days=1)
_MARGIN = timedelta(hours=3)
_PERIODS = {"WEEKLY": timedelta(weeks=1), "DAILY": _DAY, "HOURLY": timedelta(hours=1),
            "MINUTELY": timedelta(minutes=1), "SECONDLY": timedelta(seconds=1)}
_EPOCH_ANCHOR = datetime(1970, 1, 1)
_UNTIL_RE = re.compile(r"^(\d{8})(?:T(\d{6})(Z?))?$")


class _OneOff:
    __slots__ = ("end", "start")

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end

    def active(self, now: float) -> Occurrence | None:
        return (self.start, self.end) if self.start <= now < self.end else None

    def next(self, now: float) -> Occurrence | None:
        return (self.start, self.end) if self.start > now else None


class _Rule:
    """One RRULE expanded in naive local time, re-anchored forward by whole periods when it is safe.

    dateutil expands a rule from its DTSTART on every query; shifting the anchor by whole periods
    (only for FREQ=WEEKLY/DAILY/HOURLY/MINUTELY/SECONDLY without COUNT) yields exactly the same
    occurrences after the new anchor, so a query costs about one period however old the rule is.
    """

    __slots__ = ("anchor", "built", "period", "shift", "text")

    def __init__(self, text: str, anchor: datetime, period: timedelta | None) -> None:
        self.text, self.anchor, self.period = text, anchor, period
        self.shift = 0
        self.built: RRule = rrulestr(text, dtstart=anchor)

    def at(self, target: datetime) -> RRule:
        if self.period is None or target <= self.anchor:
            return self.built
        shift = (target - self.anchor) // self.period
        if shift != self.shift:
            self.shift = shift
            self.built = rrulestr(self.text, dtstart=self.anchor + shift * self.period)
        return self.built


class _Recurrence:
    """Occurrences of one or more RRULEs in a zone, with the current answer cached until it changes."""

    __slots__ = ("cache", "duration", "rules", "tz", "until")

    def __init__(self, rules: list[_Rule], tz: ZoneInfo, duration: float, until: float | None) -> None:
        self.rules, self.tz, self.duration, self.until = rules, tz, duration, until
        # (valid_from, valid_to, occurrence covering now or None, next start after now or None)
        self.cache: tuple[float, float, Occurrence | None, float | None] | None = None

    def active(self, now: float) -> Occurrence | None:
        return self._lookup(now)[2]

    def next(self, now: float) -> Occurrence | None:
        start = self._lookup(now)[3]
        return None if start is None else (start, start + self.duration)

    def _lookup(self, now: float) -> tuple[float, float, Occurrence | None, float | None]:
        cache = self.cache
        if cache is None or not cache[0] <= now < cache[1]:
            cache = self.cache = self._compute(now)
        return cache

    def _compute(self, now: float) -> tuple[float, float, Occurrence | None, float | None]:
        duration = self.duration
        # Local wall time runs with real time except where the UTC offset jumps. A margin of the
        # largest DST shift (2 h) plus an hour, widened by any offset change seen around the span,
        # holds every occurrence that starts in [now - duration, now] or is the next one after.
        margin = _MARGIN + self._offset_spread(now - duration - 86400.0, now + 86400.0)
        low = self._local(now - duration) - margin
        high = self._local(now) + margin
        starts = set()
        for rule in self.rules:
            for naive in rule.at(low).between(low, high, inc=True):
                start = self._epoch(naive)
                if self.until is None or start <= self.until:
                    starts.add(start)
        later = min((s for s in starts if s > now), default=None)
        # a start found near the end of the span might not be the first (a DST gap moves a start
        # beyond `high` by up to 2 h): look past `high` unless the one found is clearly earlier
        if later is not None and later < now + 3600.0:
            upcoming: float | None = later
        else:
            beyond = self._first_after(high, low)
            upcoming = min((s for s in (later, beyond) if s is not None), default=None)
        valid_to = math.inf if upcoming is None else upcoming
        covering = [s for s in starts if s <= now < s + duration]
        if covering:
            start = max(covering)  # no later start <= now exists, so this holds from `start` on
            return start, min(start + duration, valid_to), (start, start + duration), upcoming
        ended = [s + duration for s in starts if s + duration <= now]
        return (max(ended) if ended else now), valid_to, None, upcoming

    def _first_after(self, after: datetime, base: datetime) -> float | None:
        found = []
        for rule in self.rules:
            naive = rule.at(base).after(after)
            if naive is not None:
                start = self._epoch(naive)
                if self.until is None or start <= self.until:
                    found.append(start)
        return min(found) if found else None

    def _offset_spread(self, first: float, last: float) -> timedelta:
        offsets = [datetime.fromtimestamp(t, self.tz).utcoffset() or timedelta(0)
                   for t in (first, (first + last) / 2, last)]
        return max(offsets) - min(offsets)

    def _epoch(self, naive: datetime) -> float:
        return naive.replace(tzinfo=self.tz).timestamp()  # fold=0: RFC 5545's reading of gaps and folds

    def _local(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, self.tz).replace(tzinfo=None)


def _parse_rrule(text: str, tz: ZoneInfo) -> tuple[str, dict[str, str], float | None]:
    """Split an RRULE into the text handed to dateutil, its parts, and its UNTIL as epoch seconds.

    UNTIL is taken out (dateutil refuses a UTC UNTIL with the naive local DTSTART we expand from) and
    applied as a bound on occurrence starts: `...Z` is UTC, a bare date-time is local, a date means
    through the end of that local day.
    """
    if not isinstance(text, str):
        raise ValueError("rrule: must be a string")
    body = text.strip()
    if body.upper().startswith("RRULE:"):
        body = body[6:]
    if not body or "\n" in body or ":" in body:
        raise ValueError("rrule: must be one RRULE value (FREQ=...;...); give dtstart as its own field")
    parts: dict[str, str] = {}
    for part in body.split(";"):
        name, eq, value = part.partition("=")
        name = name.strip().upper()
        if not eq or not name:
            raise ValueError(f"rrule: {part!r} is not NAME=VALUE")
        if name in parts:
            raise ValueError(f"rrule: {name} given twice")
        parts[name] = value.strip().upper()
    if "DTSTART" in parts:
        raise ValueError("rrule: give dtstart as its own field")
    until = None
    if "UNTIL" in parts:
        found = _UNTIL_RE.match(parts.pop("UNTIL"))
        if not found:
            raise ValueError("rrule: UNTIL must be YYYYMMDD, YYYYMMDDTHHMMSS or YYYYMMDDTHHMMSSZ")
        date, clock, utc = found.groups()
        try:
            moment = datetime.strptime(date + (clock or "000000"), "%Y%m%d%H%M%S")
        except ValueError as err:
            raise ValueError(f"rrule: UNTIL: {err}") from None
        if clock is None:
            until = (moment + _DAY).replace(tzinfo=tz).timestamp() - 0.001
        elif utc:
            until = calendar.timegm(moment.timetuple())
        else:
            until = moment.replace(tzinfo=tz).timestamp()
    return ";".join(f"{k}={v}" for k, v in parts.items()), parts, until


def _build_rule(text: str, parts: Mapping[str, str], anchor: datetime, field_name: str) -> _Rule:
    period = None
    freq = parts.get("FREQ", "").upper()
    if freq in _PERIODS and "COUNT" not in parts:
        interval = parts.get("INTERVAL", "1")
        if interval.isdigit() and int(interval) > 0:
            period = _PERIODS[freq] * int(interval)
    try:
        return _Rule(text, anchor, period)
    except (ValueError, TypeError) as err:  # dateutil: TypeError when FREQ is missing
        message = "FREQ is required" if isinstance(err, TypeError) else str(err)
        raise ValueError(f"{field_name}: {message}") from None


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
    _schedule: _OneOff | _Recurrence = field(init=False, repr=False, compare=False)
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

    def _compile(self) -> _OneOff | _Recurrence:
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
            return _OneOff(start, end)
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
        anchor = _EPOCH_ANCHOR if dtstart is None else datetime.fromtimestamp(dtstart, tz).replace(tzinfo=None)
        if self.cron is not None:
            texts = cron_to_rrule(self.cron)
            rules = [_build_rule(t, _parse_rrule(t, tz)[1], anchor, "cron") for t in texts]
        else:
            text, parts, rule_until = _parse_rrule(self.rrule, tz)  # type: ignore[arg-type]
            if parts.get("FREQ", "").upper() == "WEEKLY" and "BYDAY" not in parts and dtstart is None:
                raise ValueError("rrule: a WEEKLY rule needs BYDAY when dtstart is not given")
            if rule_until is not None:
                until = rule_until if until is None else min(until, rule_until)
            rules = [_build_rule(text, parts, anchor, "rrule")]
        return _Recurrence(rules, tz, duration, until)

    @property
    def recurring(self) -> bool:
        return isinstance(self._schedule, _Recurrence)

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
