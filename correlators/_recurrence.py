"""When maintenance windows recur: RFC 5545 RRULEs (python-dateutil's `rrule`) in a time zone, and
5-field cron expressions converted to RRULEs (`cron_to_rrule`).

Occurrences are wall-clock times in the window's zone, as RFC 5545 §3.3.5 defines local times: a
time that a DST change skips is taken with the offset before the gap, and a time that happens twice
means the first. A duration is elapsed time. See `correlators.maintenance` for the windows that use
these schedules.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule as RRule
from dateutil.rrule import rrulestr

__all__ = ["EPOCH_ANCHOR", "Occurrence", "OneOff", "Recurrence", "build_rule", "cron_to_rrule", "parse_rrule"]

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
EPOCH_ANCHOR = datetime(1970, 1, 1)
_UNTIL_RE = re.compile(r"^(\d{8})(?:T(\d{6})(Z?))?$")


class OneOff:
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


class Recurrence:
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


def parse_rrule(text: str, tz: ZoneInfo) -> tuple[str, dict[str, str], float | None]:
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


def build_rule(text: str, parts: Mapping[str, str], anchor: datetime, field_name: str) -> _Rule:
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
