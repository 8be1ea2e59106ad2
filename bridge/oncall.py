"""On-call schedules: who is on call when, from rotation layers, restrictions and overrides.

A schedule is configured as `ScheduleSettings` and compiled once with `Schedule.from_settings`;
`on_call(at)`, `next_change(at)` and `shifts(start, end)` answer from it. The module is pure: it
never reads the clock or does I/O. Times are epoch seconds (floats) given by the caller, and the
same settings and instant always give the same answer.

Example::

    name: platform
    time_zone: Europe/Berlin
    layers:
      - name: around-the-clock
        members: [alice, bob, carol]
        rotation: weekly
        handoff_day: monday
        handoff: "09:00"
        start: 2026-03-02
      - name: business-hours
        members: [dave, erin]
        rotation: daily
        start: 2026-03-02
        restrict:
          - {days: [monday, tuesday, wednesday, thursday, friday], start: "09:00", end: "17:00"}
    overrides:
      - {member: frank, start: 2026-03-28T18:00, end: 2026-03-30T09:00, replaces: alice}

**Layers.** Each layer is a rotation: `members` take turns in list order (a name may appear more
than once). The first shift begins on `start` at `handoff` local time, with `members[0]`; before
that the layer has nobody. Shift lengths:

- `daily`: one calendar day, handing off at `handoff` local time;
- `weekly`: seven calendar days, handing off on `handoff_day` at `handoff`. When `start` is not a
  `handoff_day`, the first shift is shorter: it ends at the first handoff after `start`;
- `custom` with a `length` of whole days (`2d`, `1w`): that many calendar days, handing off at
  `handoff` local time;
- `custom` with any other `length` (`12h`, `36h`): elapsed time from the first handoff, so its
  handoffs move by an hour of local time across a DST change.

Calendar-day rotations hand off at the same wall-clock time on both sides of a DST change, so the
shift across the change is 23 or 25 hours long (Europe/Berlin: a daily shift from 09:00 CET on
2026-03-28 to 09:00 CEST on 2026-03-29 lasts 23 hours). Local times follow RFC 5545, as maintenance
windows do. A time that a DST change skips takes the offset from before the gap (02:30 on the
spring-forward day is 03:30 CEST). A time that happens twice means its first occurrence.

**Restrictions.** A layer with `restrict` is on call only inside its windows. The rotation keeps
turning underneath: a restriction hides time and does not delay a handoff. A window opens on each
of its `days` at `start` local time and closes at `end` (`24:00` is the midnight that ends the
day). When `end` is not after `start`, the window closes on the next day (`friday 18:00-09:00` runs
from Friday evening to Saturday morning).

**Precedence** (as in PagerDuty). At each instant, the last layer in the list that has someone on
call decides. Where that layer has nobody (outside its restrictions, or before its start), the
layer below shows through. An override beats every layer. Without `replaces`, it replaces whoever
is on call, even when nobody is. With `replaces: bob`, it applies only while the layers put bob on
call: a swap or cover of bob's shifts. When overrides overlap, the later one in the list wins;
`schedule_problems` reports the overlap. Override times are ISO 8601; a time without an offset is
local time in the schedule's zone.

Every interval is half-open, [start, end): at a handoff instant the new member is on call.

- `on_call(at)` returns the member on call as a one-item tuple, or `()` when nobody is.
- `next_change(at)` returns the next instant after `at` when the answer may change: a handoff to a
  different member, the edge of a restriction window, or the start or end of an override. It is
  None when the answer never changes again. A timer set for that instant may find nothing
  changed; that is harmless.
- `shifts(start, end)` returns the flattened schedule, clipped to [start, end). Consecutive shifts
  of the same member from the same layer (or from overrides) are merged, and times when nobody is
  on call are left out.
- `schedule_problems` checks the settings against the known members and looks for gaps in the
  schedule.
- `describe` renders the current state for a CLI.
"""

from __future__ import annotations

import functools
import re
from bisect import bisect_right
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from bridge.plugins import Duration

__all__ = [
    "OVERRIDE",
    "WEEKDAYS",
    "Clock",
    "ClockOrMidnight",
    "LayerSettings",
    "OverrideSettings",
    "RestrictionSettings",
    "Schedule",
    "ScheduleSettings",
    "Shift",
    "Weekday",
    "describe",
    "minutes_of",
    "schedule_problems",
    "zone_info",
]

#: The `layer` of a shift that an override makes; no layer may take this name.
OVERRIDE = "override"

_DAY = 86400.0
_MAX_GAPS = 5  # schedule_problems lists this many gaps, then counts the rest

Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[Weekday, ...] = get_args(Weekday)  # in date.weekday() order


# ------------------------------------------------------------------------------------------ settings

_HH_MM = re.compile(r"[0-2][0-9]:[0-5][0-9]")


def _check_clock(value: str, last: str) -> str:
    if not _HH_MM.fullmatch(value) or value > last:  # zero-padded HH:MM compares as text
        raise ValueError(f"{value!r} is not a time of day HH:MM from 00:00 to {last}")
    return value


def _clock(value: str) -> str:
    return _check_clock(value, "23:59")


def _clock_or_midnight(value: str) -> str:
    return _check_clock(value, "24:00")


Clock = Annotated[str, AfterValidator(_clock)]
ClockOrMidnight = Annotated[str, AfterValidator(_clock_or_midnight)]
Member = Annotated[str, Field(min_length=1)]


def minutes_of(clock: str) -> int:
    """`HH:MM` (validated) -> minutes after midnight."""
    return int(clock[:2]) * 60 + int(clock[3:])


def zone_info(name: str) -> ZoneInfo:
    """The time zone of an IANA name; ValueError naming it when it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name like Europe/Berlin)") from None


def _epoch(moment: datetime, zone: ZoneInfo) -> float:
    """An override time -> epoch seconds; a naive time is local time in `zone`."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).timestamp()


def _invalid(model: str, problems: list[tuple[tuple[str | int, ...], str, Any]]) -> ValidationError:
    """Cross-field problems as one ValidationError, each at the location of the field it names."""
    return ValidationError.from_exception_data(model, [
        InitErrorDetails(type=PydanticCustomError("value_error", "{reason}", {"reason": reason}),
                         loc=loc, input=value)
        for loc, reason, value in problems
    ])


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RestrictionSettings(_Model):
    """A weekly window, in local time, in which a layer is on call (e.g. business hours)."""

    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1,
                                description="Days the window opens on (monday..sunday; default: every day).")
    start: Clock = Field(description="Local time the window opens (HH:MM).")
    end: ClockOrMidnight = Field(description="Local time the window closes (HH:MM; 24:00 is midnight). When it "
                                             "is not after start, the window closes the next day.")

    @model_validator(mode="after")
    def _not_empty(self) -> RestrictionSettings:
        if self.end == self.start:
            raise _invalid("RestrictionSettings", [(("end",), "must differ from start", self.end)])
        return self


class LayerSettings(_Model):
    """One rotation: the members take turns and hand off at a local wall-clock time."""

    name: str = Field(min_length=1, description="Name of the layer, unique in the schedule; the source of "
                                                "its shifts.")
    members: list[Member] = Field(min_length=1, description="Who takes turns, in rotation order; the first "
                                                            "takes the first shift.")
    rotation: Literal["daily", "weekly", "custom"] = Field(
        description="Shift length: daily (one calendar day), weekly (seven, from handoff_day) or custom (length).")
    length: Duration | None = Field(None, ge=60, description="custom only: the shift length (2d, 12h). Whole days "
                                                             "hand off at the handoff time; other lengths are "
                                                             "elapsed time from the first handoff.")
    handoff: Clock = Field("09:00", description="Local wall-clock time at which shifts change hands (HH:MM).")
    handoff_day: Weekday = Field("monday", description="weekly only: the day on which shifts change hands.")
    start: date = Field(description="First day of the rotation: the first shift begins then at the handoff time, "
                                    "with the first member; before it the layer has nobody.")
    restrict: list[RestrictionSettings] = Field(
        default_factory=list, description="Windows in which this layer is on call (e.g. business hours); outside "
                                          "all of them it has nobody and the layer below shows through. Empty: "
                                          "always.")

    @model_validator(mode="after")
    def _rotation_fields(self) -> LayerSettings:
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        if self.rotation == "custom" and self.length is None:
            problems.append((("length",), "required for a custom rotation", None))
        if self.rotation != "custom" and self.length is not None:
            problems.append((("length",), f"only for a custom rotation (a {self.rotation} shift's length is fixed)",
                             self.length))
        if self.rotation != "weekly" and "handoff_day" in self.model_fields_set:
            problems.append((("handoff_day",), "only for a weekly rotation", self.handoff_day))
        if problems:
            raise _invalid("LayerSettings", problems)
        return self


class OverrideSettings(_Model):
    """A one-off change: `member` is on call from `start` to `end`, above every layer."""

    member: Member = Field(description="Who is on call instead.")
    start: datetime = Field(description="Start, ISO 8601 (2026-03-28T18:00). Without an offset, it is local time "
                                        "in the schedule's zone.")
    end: datetime = Field(description="End (exclusive), in the same format as start; must be after start.")
    replaces: Member | None = Field(None, description="Cover only the times this member would be on call (a swap); "
                                                      "unset: replace whoever is on call.")


class ScheduleSettings(_Model):
    """An on-call schedule: rotation layers in a time zone, and overrides above them."""

    name: str = Field(min_length=1, description="Name of the schedule.")
    time_zone: str = Field(description="IANA time zone (Europe/Berlin) of handoffs, restrictions and override "
                                       "times given without an offset.")
    layers: list[LayerSettings] = Field(min_length=1, description="Rotation layers, bottom first; wherever a later "
                                                                  "layer has someone on call, it wins.")
    overrides: list[OverrideSettings] = Field(default_factory=list,
                                              description="One-off changes above every layer; the later one "
                                                          "wins where they overlap.")
    allow_gaps: bool = Field(False, description="Times with nobody on call are intended (e.g. a business-hours "
                                                "schedule): check-config does not report them as gaps.")

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone_info(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ScheduleSettings:
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        seen: set[str] = set()
        for i, layer in enumerate(self.layers):
            if layer.name == OVERRIDE:
                problems.append((("layers", i, "name"), f"{OVERRIDE!r} is reserved for overrides", layer.name))
            elif layer.name in seen:
                problems.append((("layers", i, "name"), f"duplicate layer name {layer.name!r}", layer.name))
            seen.add(layer.name)
        zone = zone_info(self.time_zone)
        for i, override in enumerate(self.overrides):
            if _epoch(override.end, zone) <= _epoch(override.start, zone):
                problems.append((("overrides", i, "end"), "must be after start", override.end.isoformat()))
        if problems:
            raise _invalid("ScheduleSettings", problems)
        return self


# ------------------------------------------------------------------------------------------- runtime

@dataclass(frozen=True, slots=True)
class Shift:
    """`member` is on call over [start, end) (epoch seconds), from `layer` (a layer's name, or OVERRIDE)."""

    start: float
    end: float
    member: str
    layer: str


@functools.lru_cache(maxsize=4096)  # the same handoffs and window edges are asked for again and again
def _wall(day: date, minutes: int, zone: ZoneInfo) -> float:
    """The instant `minutes` after the start of `day` in `zone`, counted on the wall clock (RFC 5545)."""
    return (datetime.combine(day, time(), zone) + timedelta(minutes=minutes)).timestamp()


@dataclass(frozen=True, slots=True)
class _Window:
    weekdays: frozenset[int]
    opens: int  # minutes after midnight
    closes: int  # minutes after the same midnight; over 1440 when the window closes the next day


@dataclass(frozen=True, slots=True)
class _Override:
    start: float
    end: float
    member: str
    replaces: str | None


class _Layer:
    """A layer compiled for lookups: its handoff instants and its restriction windows."""

    def __init__(self, settings: LayerSettings, zone: ZoneInfo) -> None:
        self.name = settings.name
        self._zone = zone
        self._members = tuple(settings.members)
        self._start = settings.start
        self._handoff = minutes_of(settings.handoff)
        self.first = _wall(settings.start, self._handoff, zone)
        self._elapsed: float | None = None  # the shift length, when it is elapsed time
        self._step_days = self._first_days = 1  # otherwise: the shift length in calendar days, and the first's
        match settings.rotation, settings.length:
            case "weekly", _:
                self._step_days = 7
                self._first_days = (WEEKDAYS.index(settings.handoff_day) - settings.start.weekday() - 1) % 7 + 1
            case "custom", float(length) if length % _DAY:
                self._elapsed = length
            case "custom", float(length):
                self._step_days = self._first_days = int(length // _DAY)
        self._windows = tuple(
            _Window(frozenset(WEEKDAYS.index(day) for day in window.days), minutes_of(window.start),
                    minutes_of(window.end) + (1440 if minutes_of(window.end) <= minutes_of(window.start) else 0))
            for window in settings.restrict
        )
        count = len(self._members)
        # for each position in the rotation: how many turns until a different member takes over (None: never)
        self._turns_to_change = tuple(
            next((ahead for ahead in range(1, count) if self._members[(i + ahead) % count] != member), None)
            for i, member in enumerate(self._members)
        )

    def _handoff_at(self, turn: int) -> float:
        """The instant shift number `turn` (0: the first) begins."""
        if self._elapsed is not None:
            return self.first + turn * self._elapsed
        days = 0 if turn == 0 else self._first_days + (turn - 1) * self._step_days
        return _wall(self._start + timedelta(days=days), self._handoff, self._zone)

    def _turn(self, at: float) -> int | None:
        """The number of the shift that contains `at`; None before the first."""
        if at < self.first:
            return None
        if self._elapsed is not None:
            turn = int((at - self.first) // self._elapsed)
        else:
            days = (at - self.first) / _DAY - self._first_days
            turn = 0 if days < 0 else 1 + int(days // self._step_days)
        # the estimate may be off (DST changes, float rounding): step to the exact turn
        while turn > 0 and self._handoff_at(turn) > at:
            turn -= 1
        while self._handoff_at(turn + 1) <= at:
            turn += 1
        return turn

    def _edges(self, at: float, days: range) -> Iterator[tuple[float, float]]:
        """Windows, as (open, close), opening on the local days `days` away from the day of `at`."""
        today = datetime.fromtimestamp(at, self._zone).date()
        for offset in days:
            day = today + timedelta(days=offset)
            for window in self._windows:
                if day.weekday() in window.weekdays:
                    yield _wall(day, window.opens, self._zone), _wall(day, window.closes, self._zone)

    def member_at(self, at: float) -> str | None:
        turn = self._turn(at)
        if turn is None:
            return None
        if self._windows and not any(opens <= at < closes for opens, closes in self._edges(at, range(-1, 1))):
            return None
        return self._members[turn % len(self._members)]

    def next_change(self, at: float) -> float | None:
        turn = self._turn(at)
        if turn is None:
            return self.first
        ahead = self._turns_to_change[turn % len(self._members)]
        candidates = [] if ahead is None else [self._handoff_at(turn + ahead)]
        if self._windows:  # every window opens again within a week
            candidates.append(min(edge for window in self._edges(at, range(-1, 8)) for edge in window if edge > at))
        return min(candidates, default=None)


class Schedule:
    """A compiled schedule: who is on call at an instant, when that changes, and the flattened shifts."""

    def __init__(self, name: str, zone: ZoneInfo, layers: tuple[_Layer, ...],
                 overrides: tuple[_Override, ...]) -> None:
        self.name = name
        self.zone = zone
        self._layers = layers
        self._overrides = overrides
        self._override_edges = sorted({edge for o in overrides for edge in (o.start, o.end)})

    @classmethod
    def from_settings(cls, settings: ScheduleSettings) -> Schedule:
        zone = zone_info(settings.time_zone)
        return cls(
            settings.name,
            zone,
            tuple(_Layer(layer, zone) for layer in settings.layers),
            tuple(_Override(_epoch(o.start, zone), _epoch(o.end, zone), o.member, o.replaces)
                  for o in settings.overrides),
        )

    def _who(self, at: float) -> tuple[str, str] | None:
        """(member, layer name or OVERRIDE) on call at `at`; None when nobody is."""
        rotation = next(((member, layer.name) for layer in reversed(self._layers)
                         if (member := layer.member_at(at)) is not None), None)
        rotating = None if rotation is None else rotation[0]
        for override in reversed(self._overrides):
            if override.start <= at < override.end and (override.replaces is None or override.replaces == rotating):
                return override.member, OVERRIDE
        return rotation

    def on_call(self, at: float) -> tuple[str, ...]:
        """The member on call at `at` as a one-item tuple, or () when nobody is."""
        found = self._who(at)
        return () if found is None else (found[0],)

    def next_change(self, at: float) -> float | None:
        """The next instant after `at` when `on_call` may change; None when it never changes again."""
        candidates = [change for layer in self._layers if (change := layer.next_change(at)) is not None]
        following = bisect_right(self._override_edges, at)
        if following < len(self._override_edges):
            candidates.append(self._override_edges[following])
        return min(candidates, default=None)

    def shifts(self, start: float, end: float) -> list[Shift]:
        """The flattened schedule within [start, end), in order; times when nobody is on call are left out."""
        result: list[Shift] = []
        at = start
        while at < end:
            change = self.next_change(at)
            until = end if change is None else min(change, end)
            found = self._who(at)
            if found is not None:
                if result and result[-1].end == at and (result[-1].member, result[-1].layer) == found:
                    result[-1] = replace(result[-1], end=until)
                else:
                    result.append(Shift(at, until, *found))
            at = until
        return result

    def local(self, at: float) -> str:
        """`at` as local time with the zone's abbreviation (`2026-03-29 09:00 CEST`)."""
        moment = datetime.fromtimestamp(at, self.zone)
        return moment.strftime("%Y-%m-%d %H:%M:%S %Z" if moment.second else "%Y-%m-%d %H:%M %Z")


# ------------------------------------------------------------------------------------- checks, views

def schedule_problems(settings: ScheduleSettings, known_members: Collection[str], at: float,
                      horizon: float = 28 * 86400) -> list[str]:
    """Every problem with a valid schedule, as `path: reason`.

    Reports members (in layers, overrides and `replaces`) that are not in `known_members`, an
    override that replaces someone in no layer (it never applies), overrides that overlap where
    both could apply (naming both), and the gaps within [at, at + horizon) when nobody is on call.
    """
    known = set(known_members)
    schedule = Schedule.from_settings(settings)
    problems = [f"layers[{i}].members[{j}]: unknown member {member!r}"
                for i, layer in enumerate(settings.layers)
                for j, member in enumerate(layer.members) if member not in known]
    rotating = {member for layer in settings.layers for member in layer.members}
    for i, override in enumerate(settings.overrides):
        if override.member not in known:
            problems.append(f"overrides[{i}].member: unknown member {override.member!r}")
        if override.replaces is not None and override.replaces not in known:
            problems.append(f"overrides[{i}].replaces: unknown member {override.replaces!r}")
        elif override.replaces is not None and override.replaces not in rotating:
            problems.append(f"overrides[{i}].replaces: {override.replaces!r} is in no layer, so the override "
                            "never applies")
    problems.extend(_overlaps(settings.overrides, schedule))
    problems.extend(_gaps(schedule, at, at + horizon))
    return problems


def _overlaps(overrides: list[OverrideSettings], schedule: Schedule) -> Iterator[str]:
    spans = [(_epoch(o.start, schedule.zone), _epoch(o.end, schedule.zone)) for o in overrides]
    for later, override in enumerate(overrides):
        for earlier in range(later):
            start, end = max(spans[earlier][0], spans[later][0]), min(spans[earlier][1], spans[later][1])
            replaced = {overrides[earlier].replaces, override.replaces}
            if start < end and (None in replaced or len(replaced) == 1):  # both may apply at once
                yield (f"overrides[{later}]: overlaps overrides[{earlier}] from {schedule.local(start)} to "
                       f"{schedule.local(end)}; overrides[{later}] ({override.member}) wins there")


def _gaps(schedule: Schedule, start: float, end: float) -> list[str]:
    gaps: list[tuple[float, float]] = []
    covered = start
    for shift in schedule.shifts(start, end):
        if shift.start > covered:
            gaps.append((covered, shift.start))
        covered = shift.end
    if covered < end:
        gaps.append((covered, end))
    lines = [f"gap: nobody on call from {schedule.local(gap_start)} to "
             f"{'at least ' if gap_end == end else ''}{schedule.local(gap_end)}"
             for gap_start, gap_end in gaps[:_MAX_GAPS]]
    if len(gaps) > _MAX_GAPS:
        lines.append(f"gap: and {len(gaps) - _MAX_GAPS} more")
    return lines


def describe(schedule: Schedule, at: float, window: float = 92 * 86400) -> list[str]:
    """Lines for a CLI: who is on call at `at`, from which layer, since and until when, and the next 3 shifts.

    Shifts are looked up within `window` before and after `at`; a time beyond it reads "before" or
    "after" that bound.
    """
    low, high = at - window, at + window
    shifts = schedule.shifts(low, high)
    current = next((shift for shift in shifts if shift.start <= at < shift.end), None)
    upcoming = [shift for shift in shifts if shift.start > at][:3]

    def since(instant: float) -> str:
        return f"since before {schedule.local(low)}" if instant <= low else f"since {schedule.local(instant)}"

    def until(instant: float) -> str:
        return f"until after {schedule.local(high)}" if instant >= high else f"until {schedule.local(instant)}"

    def source(shift: Shift) -> str:
        return OVERRIDE if shift.layer == OVERRIDE else f"layer {shift.layer}"

    lines = [f"schedule {schedule.name} at {schedule.local(at)}"]
    if current is not None:
        lines.append(f"on call: {current.member} ({source(current)}) {since(current.start)} {until(current.end)}")
    else:
        before = max((shift.end for shift in shifts if shift.end <= at), default=low)
        lines.append(f"on call: nobody {since(before)} {until(upcoming[0].start if upcoming else high)}")
    lines.extend(f"next: {shift.member} ({source(shift)}) from {schedule.local(shift.start)} "
                 f"{until(shift.end)}" for shift in upcoming)
    return lines
