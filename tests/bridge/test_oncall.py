"""On-call schedules: rotations, layers, restrictions, overrides, DST, flattened shifts and checks."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bridge.oncall import OVERRIDE, Schedule, ScheduleSettings, Shift, describe, schedule_problems

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
HOUR = 3600.0
DAY = 86400.0
WEEKDAYS_9_TO_5 = {"days": ["monday", "tuesday", "wednesday", "thursday", "friday"], "start": "09:00", "end": "17:00"}
KNOWN = ["alice", "bob", "carol", "dave", "erin", "frank"]


def local(text: str, zone: str = BERLIN) -> float:
    """Epoch seconds of `2026-03-29 09:00` local time in `zone`; an explicit offset (`+02:00`) wins."""
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(zone))).timestamp()


def layer(name: str, members: str, rotation: str = "daily", start: str = "2026-03-02", **fields: Any) -> dict[str, Any]:
    """A layer's settings; `members` is space-separated, in rotation order."""
    return {"name": name, "members": members.split(), "rotation": rotation, "start": start, **fields}


def override(member: str, start: str, end: str, replaces: str | None = None) -> dict[str, Any]:
    return {"member": member, "start": start, "end": end, "replaces": replaces}


def schedule_settings(layers: list[dict[str, Any]], overrides: list[dict[str, Any]] | None = None,
                      zone: str = BERLIN) -> ScheduleSettings:
    return ScheduleSettings(name="ops", time_zone=zone, layers=layers, overrides=overrides or [])


def build(layers: list[dict[str, Any]], overrides: list[dict[str, Any]] | None = None,
          zone: str = BERLIN) -> Schedule:
    return Schedule.from_settings(schedule_settings(layers, overrides, zone))


# ----------------------------------------------------------------------------------------- rotations

DAILY = layer("daily", "alice bob carol")
WEEKLY = layer("weekly", "alice bob carol", "weekly")

ROTATIONS = [
    ("daily-before-start-nobody", DAILY, "2026-03-02 08:59", ()),
    ("daily-first-shift-is-first-member", DAILY, "2026-03-02 09:00", ("alice",)),
    ("daily-minute-before-handoff", DAILY, "2026-03-03 08:59", ("alice",)),
    ("daily-handoff-instant-is-next-member", DAILY, "2026-03-03 09:00", ("bob",)),
    ("daily-wraps-around", DAILY, "2026-03-05 12:00", ("alice",)),
    ("daily-handoff-time", layer("d", "alice bob", handoff="17:30"), "2026-03-03 17:30", ("bob",)),
    ("weekly-lasts-the-week", WEEKLY, "2026-03-09 08:59", ("alice",)),
    ("weekly-handoff-instant", WEEKLY, "2026-03-09 09:00", ("bob",)),
    ("weekly-wraps-around", WEEKLY, "2026-03-23 09:00", ("alice",)),
    ("weekly-friday-handoff", layer("w", "alice bob", "weekly", start="2026-03-06", handoff_day="friday",
                                    handoff="17:00"), "2026-03-13 17:00", ("bob",)),
    ("weekly-midweek-start-first-shift-begins", layer("w", "alice bob", "weekly", start="2026-03-04"),
     "2026-03-04 09:00", ("alice",)),
    ("weekly-midweek-start-short-first-shift", layer("w", "alice bob", "weekly", start="2026-03-04"),
     "2026-03-09 09:00", ("bob",)),
    ("weekly-midweek-start-then-whole-weeks", layer("w", "alice bob", "weekly", start="2026-03-04"),
     "2026-03-16 08:59", ("bob",)),
    ("custom-2d-minute-before-handoff", layer("c", "alice bob", "custom", length="2d"), "2026-03-04 08:59",
     ("alice",)),
    ("custom-2d-handoff-instant", layer("c", "alice bob", "custom", length="2d"), "2026-03-04 09:00", ("bob",)),
    ("custom-12h-evening-handoff", layer("c", "alice bob", "custom", length="12h"), "2026-03-02 21:00", ("bob",)),
    ("custom-12h-morning-handoff", layer("c", "alice bob", "custom", length="12h"), "2026-03-03 09:00",
     ("alice",)),
    ("custom-36h-elapsed", layer("c", "alice bob", "custom", length="36h"), "2026-03-03 21:00", ("bob",)),
    ("custom-36h-next-turn", layer("c", "alice bob", "custom", length="36h"), "2026-03-05 09:00", ("alice",)),
]


@pytest.mark.parametrize(("settings_", "at", "expected"), [row[1:] for row in ROTATIONS],
                         ids=[row[0] for row in ROTATIONS])
def test_rotation(settings_: dict[str, Any], at: str, expected: tuple[str, ...]) -> None:
    """A single layer's rotation puts the expected member on call, the new one from the handoff instant."""
    assert build([settings_]).on_call(local(at)) == expected


# --------------------------------------------------------------------------------------------- DST

DST = [
    ("berlin-spring-handoff-stays-09:00-local", BERLIN, layer("d", "alice bob", start="2026-03-27"),
     "2026-03-29T09:00+02:00", ("alice",)),
    ("berlin-spring-before-09:00-local", BERLIN, layer("d", "alice bob", start="2026-03-27"),
     "2026-03-29T08:59+02:00", ("bob",)),
    ("berlin-fall-handoff-stays-09:00-local", BERLIN, layer("d", "alice bob", start="2026-10-23"),
     "2026-10-25T09:00+01:00", ("alice",)),
    ("berlin-fall-before-09:00-local", BERLIN, layer("d", "alice bob", start="2026-10-23"),
     "2026-10-25T08:30+01:00", ("bob",)),
    ("new-york-spring-handoff-stays-09:00-local", NEW_YORK, layer("d", "alice bob", start="2026-03-06"),
     "2026-03-08T09:00-04:00", ("alice",)),
    ("new-york-spring-before-09:00-local", NEW_YORK, layer("d", "alice bob", start="2026-03-06"),
     "2026-03-08T08:59-04:00", ("bob",)),
    ("new-york-fall-handoff-stays-09:00-local", NEW_YORK, layer("d", "alice bob", start="2026-10-30"),
     "2026-11-01T09:00-05:00", ("alice",)),
    ("new-york-fall-before-09:00-local", NEW_YORK, layer("d", "alice bob", start="2026-10-30"),
     "2026-11-01T08:30-05:00", ("bob",)),
    ("weekly-across-spring-change", BERLIN, layer("w", "alice bob", "weekly", start="2026-03-23"),
     "2026-03-30T09:00+02:00", ("bob",)),
    ("custom-2d-across-spring-change", BERLIN, layer("c", "alice bob", "custom", length="2d", start="2026-03-28"),
     "2026-03-30T09:00+02:00", ("bob",)),
    ("skipped-handoff-time-before-gap-end", BERLIN, layer("d", "alice bob", start="2026-03-28", handoff="02:30"),
     "2026-03-29T03:29+02:00", ("alice",)),
    ("skipped-handoff-time-is-after-the-gap", BERLIN, layer("d", "alice bob", start="2026-03-28", handoff="02:30"),
     "2026-03-29T03:30+02:00", ("bob",)),
    ("repeated-handoff-time-before-first", BERLIN, layer("d", "alice bob", start="2026-10-24", handoff="02:30"),
     "2026-10-25T02:29+02:00", ("alice",)),
    ("repeated-handoff-time-is-the-first", BERLIN, layer("d", "alice bob", start="2026-10-24", handoff="02:30"),
     "2026-10-25T02:30+02:00", ("bob",)),
    ("12h-elapsed-spring-no-handoff-at-09:00", BERLIN, layer("c", "alice bob", "custom", length="12h",
                                                             start="2026-03-28"), "2026-03-29T09:30+02:00", ("bob",)),
    ("12h-elapsed-spring-handoff-moves-to-10:00", BERLIN, layer("c", "alice bob", "custom", length="12h",
                                                                start="2026-03-28"), "2026-03-29T10:00+02:00",
     ("alice",)),
    ("12h-elapsed-fall-handoff-moves-to-08:00", BERLIN, layer("c", "alice bob", "custom", length="12h",
                                                              start="2026-10-24"), "2026-10-25T08:00+01:00",
     ("alice",)),
    ("12h-elapsed-fall-before-08:00", BERLIN, layer("c", "alice bob", "custom", length="12h", start="2026-10-24"),
     "2026-10-25T07:59+01:00", ("bob",)),
]


@pytest.mark.parametrize(("zone", "settings_", "at", "expected"), [row[1:] for row in DST],
                         ids=[row[0] for row in DST])
def test_rotation_across_dst(zone: str, settings_: dict[str, Any], at: str, expected: tuple[str, ...]) -> None:
    """Calendar rotations hand off at the same local time across DST; elapsed-time rotations do not."""
    assert build([settings_], zone=zone).on_call(local(at)) == expected


DST_SHIFTS = [
    ("berlin-spring-23h", BERLIN, "2026-03-28", 23),
    ("berlin-fall-25h", BERLIN, "2026-10-24", 25),
    ("new-york-spring-23h", NEW_YORK, "2026-03-07", 23),
    ("new-york-fall-25h", NEW_YORK, "2026-10-31", 25),
    ("berlin-ordinary-day-24h", BERLIN, "2026-03-27", 24),
]


@pytest.mark.parametrize(("zone", "day", "hours"), [row[1:] for row in DST_SHIFTS], ids=[row[0] for row in DST_SHIFTS])
def test_shift_across_dst_change_is_23_or_25_hours(zone: str, day: str, hours: int) -> None:
    """The daily shift that spans a DST change runs from 09:00 to 09:00 local and so lasts 23 or 25 hours."""
    schedule = build([layer("d", "alice bob", start=day)], zone=zone)
    first = schedule.shifts(local(f"{day} 09:00", zone), local(f"{day} 09:00", zone) + 2 * DAY)[0]
    assert first.end - first.start == hours * HOUR
    assert datetime.fromtimestamp(first.end, ZoneInfo(zone)).strftime("%H:%M") == "09:00"


# ------------------------------------------------------------------------------ layers, restrictions

BASE = layer("base", "carol")
BUSINESS = layer("business", "dave erin", restrict=[WEEKDAYS_9_TO_5])

PRECEDENCE = [
    ("later-layer-wins", [layer("low", "alice"), layer("high", "bob")], "2026-03-03 12:00", ("bob",)),
    ("earlier-layer-shows-before-later-starts", [layer("low", "alice"), layer("high", "bob", start="2026-03-10")],
     "2026-03-09 12:00", ("alice",)),
    ("later-layer-wins-from-its-start", [layer("low", "alice"), layer("high", "bob", start="2026-03-10")],
     "2026-03-10 09:00", ("bob",)),
    ("business-hours-layer-wins-inside", [BASE, BUSINESS], "2026-03-02 10:00", ("dave",)),
    ("business-hours-from-window-open", [BASE, BUSINESS], "2026-03-03 09:00", ("erin",)),
    ("base-shows-at-window-close", [BASE, BUSINESS], "2026-03-02 17:00", ("carol",)),
    ("base-shows-on-weekend", [BASE, BUSINESS], "2026-03-07 12:00", ("carol",)),
    ("base-shows-before-window", [BASE, BUSINESS], "2026-03-04 08:59", ("carol",)),
    ("restricted-layer-alone-has-gaps", [BUSINESS], "2026-03-02 18:00", ()),
    ("restriction-masks-rotation-that-keeps-turning",
     [layer("business", "alice bob carol", restrict=[WEEKDAYS_9_TO_5])], "2026-03-09 10:00", ("bob",)),
    ("overnight-window-next-morning", [BASE, layer("nights", "bob", restrict=[
        {"days": ["friday"], "start": "18:00", "end": "09:00"}])], "2026-03-07 08:59", ("bob",)),
    ("overnight-window-closes-next-day", [BASE, layer("nights", "bob", restrict=[
        {"days": ["friday"], "start": "18:00", "end": "09:00"}])], "2026-03-07 09:00", ("carol",)),
    ("window-to-24:00-includes-last-minute", [BASE, layer("sunday", "bob", restrict=[
        {"days": ["sunday"], "start": "00:00", "end": "24:00"}])], "2026-03-08 23:59", ("bob",)),
    ("window-to-24:00-ends-at-midnight", [BASE, layer("sunday", "bob", restrict=[
        {"days": ["sunday"], "start": "00:00", "end": "24:00"}])], "2026-03-09 00:00", ("carol",)),
]


@pytest.mark.parametrize(("layers", "at", "expected"), [row[1:] for row in PRECEDENCE],
                         ids=[row[0] for row in PRECEDENCE])
def test_layer_precedence(layers: list[dict[str, Any]], at: str, expected: tuple[str, ...]) -> None:
    """A later layer wins wherever it has someone on call; elsewhere the layer below shows through."""
    assert build(layers).on_call(local(at)) == expected


# ----------------------------------------------------------------------------------------- overrides

TWO_DAY = [layer("duo", "alice bob")]  # alice on even days from 2026-03-02, bob on odd days

OVERRIDES = [
    ("replaces-whoever-is-on-call", TWO_DAY, [override("frank", "2026-03-02T12:00", "2026-03-02T13:00")],
     "2026-03-02 12:00", ("frank",)),
    ("end-is-exclusive", TWO_DAY, [override("frank", "2026-03-02T12:00", "2026-03-02T13:00")],
     "2026-03-02 13:00", ("alice",)),
    ("covers-time-nobody-is-on-call", [BUSINESS], [override("frank", "2026-03-07T10:00", "2026-03-07T20:00")],
     "2026-03-07 12:00", ("frank",)),
    ("beats-a-later-layer", [BASE, BUSINESS], [override("frank", "2026-03-02T10:00", "2026-03-02T11:00")],
     "2026-03-02 10:30", ("frank",)),
    ("replaces-member-applies-on-their-shift", TWO_DAY,
     [override("frank", "2026-03-02T00:00", "2026-03-05T00:00", replaces="bob")], "2026-03-03 12:00", ("frank",)),
    ("replaces-member-not-on-others-shift", TWO_DAY,
     [override("frank", "2026-03-02T00:00", "2026-03-05T00:00", replaces="bob")], "2026-03-04 12:00", ("alice",)),
    ("replaces-member-only-in-their-window", [BASE, BUSINESS],
     [override("frank", "2026-03-02T00:00", "2026-03-03T00:00", replaces="dave")], "2026-03-02 18:00", ("carol",)),
    ("later-overlapping-override-wins", TWO_DAY, [override("frank", "2026-03-02T10:00", "2026-03-02T14:00"),
                                                  override("erin", "2026-03-02T12:00", "2026-03-02T16:00")],
     "2026-03-02 13:00", ("erin",)),
    ("earlier-override-where-later-does-not-apply", TWO_DAY,
     [override("frank", "2026-03-02T10:00", "2026-03-02T14:00"),
      override("erin", "2026-03-02T12:00", "2026-03-02T16:00", replaces="bob")], "2026-03-02 13:00", ("frank",)),
    ("time-with-offset-is-absolute", TWO_DAY, [override("frank", "2026-03-02T11:00+00:00", "2026-03-02T12:00Z")],
     "2026-03-02 12:30", ("frank",)),
]


@pytest.mark.parametrize(("layers", "overrides", "at", "expected"), [row[1:] for row in OVERRIDES],
                         ids=[row[0] for row in OVERRIDES])
def test_override(layers: list[dict[str, Any]], overrides: list[dict[str, Any]], at: str,
                  expected: tuple[str, ...]) -> None:
    """An override beats every layer; with `replaces` only where that member would be on call."""
    assert build(layers, overrides).on_call(local(at)) == expected


# --------------------------------------------------------------------------------------- next_change

NEXT_CHANGE = [
    ("daily-berlin-spring-23h-later", [layer("d", "alice bob", start="2026-03-27")], [],
     "2026-03-28T09:00+01:00", "2026-03-29T09:00+02:00"),
    ("daily-berlin-fall-25h-later", [layer("d", "alice bob", start="2026-10-23")], [],
     "2026-10-24T12:00+02:00", "2026-10-25T09:00+01:00"),
    ("12h-elapsed-across-spring", [layer("c", "alice bob", "custom", length="12h", start="2026-03-28")], [],
     "2026-03-28T21:00+01:00", "2026-03-29T10:00+02:00"),
    ("before-start-is-first-handoff", [DAILY], [], "2026-03-01 12:00", "2026-03-02 09:00"),
    ("handoff-to-same-member-skipped", [layer("d", "alice alice bob")], [], "2026-03-02 10:00", "2026-03-04 09:00"),
    ("restriction-window-closes", [BASE, BUSINESS], [], "2026-03-27 16:00", "2026-03-27 17:00"),
    ("restriction-window-opens-after-dst", [BASE, layer("business", "dave", restrict=[WEEKDAYS_9_TO_5])], [],
     "2026-03-28 12:00", "2026-03-30T09:00+02:00"),
    ("override-starts", [BASE], [override("frank", "2026-03-10T12:00", "2026-03-10T13:00")],
     "2026-03-10 10:00", "2026-03-10 12:00"),
    ("override-ends", [BASE], [override("frank", "2026-03-10T12:00", "2026-03-10T13:00")],
     "2026-03-10 12:00", "2026-03-10 13:00"),
]


@pytest.mark.parametrize(("layers", "overrides", "at", "expected"), [row[1:] for row in NEXT_CHANGE],
                         ids=[row[0] for row in NEXT_CHANGE])
def test_next_change(layers: list[dict[str, Any]], overrides: list[dict[str, Any]], at: str, expected: str) -> None:
    """next_change is the exact next handoff, window edge or override edge after the instant, across DST too."""
    assert build(layers, overrides).next_change(local(at)) == local(expected)


def test_next_change_none_when_nothing_ever_changes() -> None:
    """A single member around the clock, with no override to come, never changes."""
    schedule = build([BASE], [override("frank", "2026-03-10T12:00", "2026-03-10T13:00")])
    assert schedule.next_change(local("2026-03-10 13:00")) is None


# -------------------------------------------------------------------------------------------- shifts

def shift(start: str, end: str, member: str, source: str) -> Shift:
    return Shift(local(start), local(end), member, source)


SHIFTS = [
    ("consecutive-turns-of-one-member-merged", [layer("d", "alice alice bob")], [],
     "2026-03-02 09:00", "2026-03-05 09:00",
     [shift("2026-03-02 09:00", "2026-03-04 09:00", "alice", "d"),
      shift("2026-03-04 09:00", "2026-03-05 09:00", "bob", "d")]),
    ("clipped-to-the-range", [DAILY], [], "2026-03-02 12:00", "2026-03-02 18:00",
     [shift("2026-03-02 12:00", "2026-03-02 18:00", "alice", "daily")]),
    ("business-hours-over-base", [BASE, BUSINESS], [], "2026-03-06 00:00", "2026-03-09 12:00",
     [shift("2026-03-06 00:00", "2026-03-06 09:00", "carol", "base"),
      shift("2026-03-06 09:00", "2026-03-06 17:00", "dave", "business"),
      shift("2026-03-06 17:00", "2026-03-09 09:00", "carol", "base"),
      shift("2026-03-09 09:00", "2026-03-09 12:00", "erin", "business")]),
    ("override-splits-a-shift", [BASE], [override("frank", "2026-03-02T12:00", "2026-03-02T13:00")],
     "2026-03-02 09:00", "2026-03-02 18:00",
     [shift("2026-03-02 09:00", "2026-03-02 12:00", "carol", "base"),
      shift("2026-03-02 12:00", "2026-03-02 13:00", "frank", OVERRIDE),
      shift("2026-03-02 13:00", "2026-03-02 18:00", "carol", "base")]),
    ("nobody-left-out", [BUSINESS], [], "2026-03-06 12:00", "2026-03-09 12:00",
     [shift("2026-03-06 12:00", "2026-03-06 17:00", "dave", "business"),
      shift("2026-03-09 09:00", "2026-03-09 12:00", "erin", "business")]),
]


@pytest.mark.parametrize(("layers", "overrides", "start", "end", "expected"), [row[1:] for row in SHIFTS],
                         ids=[row[0] for row in SHIFTS])
def test_shifts(layers: list[dict[str, Any]], overrides: list[dict[str, Any]], start: str, end: str,
                expected: list[Shift]) -> None:
    """shifts() is the flattened schedule in the range, with consecutive equal shifts merged."""
    assert build(layers, overrides).shifts(local(start), local(end)) == expected


# ---------------------------------------------------------------------------------- schedule_problems

def test_complete_schedule_has_no_problems() -> None:
    """A 24x7 base with a business-hours layer and a known override has no problem."""
    settings_ = schedule_settings([BASE, BUSINESS], [override("frank", "2026-03-28T18:00", "2026-03-30T09:00")])
    assert schedule_problems(settings_, KNOWN, local("2026-03-27 12:00")) == []


def test_unknown_members_are_reported() -> None:
    """Members of layers, overrides and `replaces` that are not known are reported at their paths."""
    settings_ = schedule_settings(
        [layer("base", "alice bob zed")],
        [override("yann", "2026-03-02T10:00", "2026-03-02T11:00"),
         override("alice", "2026-03-03T10:00", "2026-03-03T11:00", replaces="xavier")],
    )
    assert schedule_problems(settings_, KNOWN, local("2026-03-02 12:00")) == [
        "layers[0].members[2]: unknown member 'zed'",
        "overrides[0].member: unknown member 'yann'",
        "overrides[1].replaces: unknown member 'xavier'",
    ]


def test_replacing_someone_in_no_layer_is_reported() -> None:
    """An override that replaces a known member who is in no layer never applies, and is reported."""
    settings_ = schedule_settings([BASE], [override("alice", "2026-03-03T10:00", "2026-03-03T11:00", replaces="bob")])
    assert schedule_problems(settings_, KNOWN, local("2026-03-02 12:00")) == [
        "overrides[0].replaces: 'bob' is in no layer, so the override never applies",
    ]


def test_overlapping_overrides_are_reported() -> None:
    """Overrides that overlap are reported naming both, with the overlap in local time."""
    settings_ = schedule_settings([BASE], [override("alice", "2026-03-28T18:00", "2026-03-29T12:00"),
                                           override("bob", "2026-03-29T09:00", "2026-03-30T09:00")])
    assert schedule_problems(settings_, KNOWN, local("2026-03-27 12:00")) == [
        "overrides[1]: overlaps overrides[0] from 2026-03-29 09:00 CEST to 2026-03-29 12:00 CEST; "
        "overrides[1] (bob) wins there",
    ]


def test_overrides_replacing_different_members_do_not_conflict() -> None:
    """Overlapping overrides that replace different members never both apply, so they are not reported."""
    settings_ = schedule_settings(TWO_DAY, [override("frank", "2026-03-02T00:00", "2026-03-05T00:00", replaces="alice"),
                                            override("erin", "2026-03-02T00:00", "2026-03-05T00:00", replaces="bob")])
    assert schedule_problems(settings_, KNOWN, local("2026-03-02 12:00")) == []


def test_gaps_are_reported_in_local_time() -> None:
    """Times within the horizon when nobody is on call are reported with local times across DST."""
    settings_ = schedule_settings([BUSINESS])
    assert schedule_problems(settings_, KNOWN, local("2026-03-27 12:00"), horizon=3.5 * DAY) == [
        "gap: nobody on call from 2026-03-27 17:00 CET to 2026-03-30 09:00 CEST",
        "gap: nobody on call from 2026-03-30 17:00 CEST to at least 2026-03-31 01:00 CEST",
    ]


def test_many_gaps_are_counted() -> None:
    """At most five gaps are listed; the rest are counted."""
    problems = schedule_problems(schedule_settings([BUSINESS]), KNOWN, local("2026-03-27 12:00"))
    assert len(problems) == 6
    assert problems[-1] == "gap: and 15 more"  # four weeks of weeknights and weekends: 20 gaps


# -------------------------------------------------------------------------------------------- describe

def test_describe_current_and_next_shifts() -> None:
    """describe names who is on call, from which layer, since and until when, then the next three shifts."""
    schedule = build([layer("base", "alice bob carol", "weekly"), BUSINESS],
                     [override("frank", "2026-03-30T12:00", "2026-03-30T13:00")])
    assert describe(schedule, local("2026-03-27 18:00")) == [
        "schedule ops at 2026-03-27 18:00 CET",
        "on call: alice (layer base) since 2026-03-27 17:00 CET until 2026-03-30 09:00 CEST",
        "next: dave (layer business) from 2026-03-30 09:00 CEST until 2026-03-30 12:00 CEST",
        "next: frank (override) from 2026-03-30 12:00 CEST until 2026-03-30 13:00 CEST",
        "next: dave (layer business) from 2026-03-30 13:00 CEST until 2026-03-30 17:00 CEST",
    ]


def test_describe_nobody_on_call() -> None:
    """describe reports a gap with when it began and when the next shift starts."""
    schedule = build([layer("business", "dave", restrict=[WEEKDAYS_9_TO_5])])
    assert describe(schedule, local("2026-03-28 12:00"))[:3] == [
        "schedule ops at 2026-03-28 12:00 CET",
        "on call: nobody since 2026-03-27 17:00 CET until 2026-03-30 09:00 CEST",
        "next: dave (layer business) from 2026-03-30 09:00 CEST until 2026-03-30 17:00 CEST",
    ]


# ------------------------------------------------------------------------------------------ validation

def with_layer(**fields: Any) -> dict[str, Any]:
    return {"name": "ops", "time_zone": BERLIN, "layers": [layer("l", "alice", **fields)]}


INVALID = [
    ("custom-needs-length", with_layer(rotation="custom"), ("layers", 0, "length"), "required for a custom rotation"),
    ("length-only-for-custom", with_layer(length="2d"), ("layers", 0, "length"), "only for a custom rotation"),
    ("length-at-least-a-minute", with_layer(rotation="custom", length="30s"), ("layers", 0, "length"), "60"),
    ("handoff-day-only-for-weekly", with_layer(handoff_day="friday"), ("layers", 0, "handoff_day"),
     "only for a weekly rotation"),
    ("bad-time-zone", {**with_layer(), "time_zone": "Mars/Olympus"}, ("time_zone",), "'Mars/Olympus'"),
    ("handoff-not-hh-mm", with_layer(handoff="9:00"), ("layers", 0, "handoff"), "'9:00' is not a time of day HH:MM"),
    ("handoff-not-24:00", with_layer(handoff="24:00"), ("layers", 0, "handoff"), "from 00:00 to 23:59"),
    ("handoff-bad-minutes", with_layer(handoff="12:60"), ("layers", 0, "handoff"), "HH:MM"),
    ("restriction-end-past-24:00", with_layer(restrict=[{"start": "09:00", "end": "24:30"}]),
     ("layers", 0, "restrict", 0, "end"), "from 00:00 to 24:00"),
    ("restriction-empty", with_layer(restrict=[{"start": "09:00", "end": "09:00"}]),
     ("layers", 0, "restrict", 0, "end"), "must differ from start"),
    ("restriction-unknown-day", with_layer(restrict=[{"days": ["funday"], "start": "09:00", "end": "17:00"}]),
     ("layers", 0, "restrict", 0, "days", 0), "monday"),
    ("no-members", {**with_layer(), "layers": [layer("l", "")]}, ("layers", 0, "members"), "at least 1"),
    ("no-layers", {**with_layer(), "layers": []}, ("layers",), "at least 1"),
    ("unknown-field", {**with_layer(), "colour": "red"}, ("colour",), "Extra inputs are not permitted"),
    ("duplicate-layer-name", {**with_layer(), "layers": [layer("l", "alice"), layer("l", "bob")]},
     ("layers", 1, "name"), "duplicate layer name 'l'"),
    ("layer-name-override-reserved", {**with_layer(), "layers": [layer("override", "alice")]},
     ("layers", 0, "name"), "reserved"),
    ("override-end-before-start",
     {**with_layer(), "overrides": [override("bob", "2026-03-02T12:00", "2026-03-02T11:00")]},
     ("overrides", 0, "end"), "must be after start"),
    ("override-end-equals-start-in-local-time",
     {**with_layer(), "overrides": [override("bob", "2026-03-02T12:00", "2026-03-02T11:00Z")]},
     ("overrides", 0, "end"), "must be after start"),
]


@pytest.mark.parametrize(("data", "loc", "message"), [row[1:] for row in INVALID], ids=[row[0] for row in INVALID])
def test_invalid_settings_name_the_field(data: dict[str, Any], loc: tuple[str | int, ...], message: str) -> None:
    """Invalid settings raise a validation error located at the offending field, saying what is wrong."""
    with pytest.raises(ValidationError) as caught:
        ScheduleSettings.model_validate(data)
    errors = {tuple(error["loc"]): error["msg"] for error in caught.value.errors()}
    assert loc in errors and message in errors[loc], errors


def test_all_layer_problems_reported_at_once() -> None:
    """Every problem of a layer is reported in one error, not only the first."""
    with pytest.raises(ValidationError) as caught:
        ScheduleSettings.model_validate(with_layer(length="2d", handoff_day="friday"))
    assert {tuple(error["loc"]) for error in caught.value.errors()} == {("layers", 0, "length"),
                                                                        ("layers", 0, "handoff_day")}


# -------------------------------------------------------------------------------------------- property

ZONES = [BERLIN, NEW_YORK, "Australia/Lord_Howe", "UTC"]
FIRST_DAY = date(2026, 2, 20)
SPAN_DAYS = 280  # covers both 2026 DST changes in the northern and southern hemispheres
MEMBERS = st.lists(st.sampled_from(["alice", "bob", "carol"]), min_size=1, max_size=4)
CLOCK = st.integers(0, 1439).map(lambda minutes: f"{minutes // 60:02d}:{minutes % 60:02d}")
DAYS = st.dates(FIRST_DAY, FIRST_DAY + timedelta(days=SPAN_DAYS))
WINDOW = st.fixed_dictionaries({
    "days": st.lists(st.sampled_from(["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]),
                     min_size=1, max_size=7, unique=True),
    "start": CLOCK,
    "end": st.one_of(CLOCK, st.just("24:00")),
}).filter(lambda window: window["start"] != window["end"])


@st.composite
def random_layer(draw: st.DrawFn, index: int) -> dict[str, Any]:
    rotation = draw(st.sampled_from(["daily", "weekly", "custom"]))
    fields: dict[str, Any] = {"handoff": draw(CLOCK), "restrict": draw(st.lists(WINDOW, max_size=2))}
    if rotation == "weekly":
        fields["handoff_day"] = draw(st.sampled_from(["monday", "wednesday", "sunday"]))
    if rotation == "custom":
        fields["length"] = draw(st.sampled_from(["2d", "1w", "12h", "36h", "90m", "8h"]))
    return {"name": f"layer{index}", "members": draw(MEMBERS), "rotation": rotation,
            "start": draw(DAYS).isoformat(), **fields}


@st.composite
def random_override(draw: st.DrawFn) -> dict[str, Any]:
    start = datetime.combine(draw(DAYS), datetime.min.time()) + timedelta(minutes=draw(st.integers(0, 1439)))
    end = start + timedelta(minutes=draw(st.integers(60, 3 * 1440)))
    return override(draw(st.sampled_from(["dave", "erin"])), start.isoformat(), end.isoformat(),
                    draw(st.sampled_from([None, "alice", "bob"])))


@st.composite
def random_schedule(draw: st.DrawFn) -> ScheduleSettings:
    layers = [draw(random_layer(i)) for i in range(draw(st.integers(1, 3)))]
    return schedule_settings(layers, draw(st.lists(random_override(), max_size=3)), draw(st.sampled_from(ZONES)))


@settings(max_examples=200, deadline=None)
@given(settings_=random_schedule(), offset=st.floats(0, SPAN_DAYS * DAY))
def test_on_call_matches_the_shift_containing_the_instant(settings_: ScheduleSettings, offset: float) -> None:
    """For any schedule and instant, on_call is the member of the flattened shift that contains it."""
    schedule = Schedule.from_settings(settings_)
    at = datetime.combine(FIRST_DAY, datetime.min.time(), ZoneInfo("UTC")).timestamp() + offset
    shifts = schedule.shifts(at - 3 * DAY, at + 3 * DAY)
    assert schedule.on_call(at) == tuple(s.member for s in shifts if s.start <= at < s.end)
    assert all(s.start < s.end for s in shifts)
    assert all(a.end <= b.start and (a.end < b.start or (a.member, a.layer) != (b.member, b.layer))
               for a, b in pairwise(shifts))
