"""Maintenance windows: scope, one-off and recurring schedules across DST, cron conversion, the calendar."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr

from bridge.model import Alert
from bridge.routing import compile_matchers
from correlators.maintenance import (
    MaintenanceCalendar,
    MaintenanceWindow,
    alert_hosts,
    cron_to_rrule,
    host_of,
)
from correlators.mute import Mute, Muter
from tests.bridge.conftest import alert


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    """Epoch seconds of a UTC date-time."""
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def window(**kw: Any) -> MaintenanceWindow:
    """A window with scope `services=("payments",)` and one-off span [100, 200) unless given."""
    if not ({"services", "hosts", "matchers"} & kw.keys()):
        kw["services"] = ("payments",)
    if not ({"rrule", "cron", "start"} & kw.keys()):
        kw.update(start=100.0, end=200.0)
    return MaintenanceWindow(id=kw.pop("id", "w1"), **kw)


# ------------------------------------------------------------------------------- validation

INVALID = [
    ("no-scope", dict(services=()), "scope: at least one of matchers, services or hosts is required"),
    ("matchers-match-everything", dict(services=(), matchers=compile_matchers(['env=~".*"'])),
     "matchers: at least one matcher must not match the empty string"),
    ("services-not-a-list", dict(services="payments"), "services: must be a list"),
    ("blank-host", dict(hosts=("db-1", " ")), r"hosts\[1\]: must not be empty"),
    ("no-time", dict(start=None, end=None), "start: required"),
    ("no-end", dict(end=None), "end: required"),
    ("end-before-start", dict(end=50.0), "end: must be after start"),
    ("duration-without-rule", dict(duration=60.0), "duration: only for a recurring window"),
    ("rrule-and-cron", dict(start=None, end=None, rrule="FREQ=DAILY", cron="0 2 * * *", duration=60.0),
     "rrule: give either rrule or cron"),
    ("start-with-rrule", dict(rrule="FREQ=DAILY", duration=60.0), "start: not allowed with rrule/cron"),
    ("recurring-without-duration", dict(start=None, end=None, cron="0 2 * * *"), "duration: required"),
    ("negative-duration", dict(start=None, end=None, cron="0 2 * * *", duration=-5.0), "duration: must be positive"),
    ("unknown-zone", dict(start=None, end=None, cron="0 2 * * *", duration=60.0, timezone="Mars/Olympus"),
     "timezone: unknown time zone"),
    ("until-before-dtstart", dict(start=None, end=None, cron="0 2 * * *", duration=60.0, dtstart=500.0, until=100.0),
     "until: must not be before dtstart"),
    ("bad-rrule-part", dict(start=None, end=None, rrule="FREQ=DAILY;BYHOUR=25", duration=60.0), "rrule: hour must be"),
    ("rrule-without-freq", dict(start=None, end=None, rrule="BYHOUR=2", duration=60.0), "rrule: FREQ is required"),
    ("rrule-not-name-value", dict(start=None, end=None, rrule="FREQ=DAILY;BYHOUR", duration=60.0),
     "rrule: 'BYHOUR' is not NAME=VALUE"),
    ("rrule-with-dtstart", dict(start=None, end=None, rrule="DTSTART:20260101T000000\nRRULE:FREQ=DAILY",
                                duration=60.0), "rrule: .*dtstart"),
    ("weekly-rrule-needs-a-day", dict(start=None, end=None, rrule="FREQ=WEEKLY;BYHOUR=2", duration=60.0),
     "rrule: a WEEKLY rule needs BYDAY"),
    ("bad-until-in-rrule", dict(start=None, end=None, rrule="FREQ=DAILY;UNTIL=tomorrow", duration=60.0),
     "rrule: UNTIL must be"),
    ("bad-cron", dict(start=None, end=None, cron="0 2 * *", duration=60.0), "cron: expected 5 fields"),
    ("unknown-zone-one-off", dict(timezone="Nowhere/Town"), "timezone: unknown time zone"),
    ("host-without-name", dict(hosts=(":9100",)), r"hosts\[0\]: ':9100' has no host name"),
]


@pytest.mark.parametrize(("changes", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_window_names_the_field(changes: dict[str, Any], message: str) -> None:
    """An invalid window raises ValueError whose message starts with the field's name."""
    with pytest.raises(ValueError, match="^" + message):
        replace(window(), **changes)


# ----------------------------------------------------------------------------------- cron

CRON = [
    ("weekly-sunday-2am", "0 2 * * SUN", ("FREQ=DAILY;BYDAY=SU;BYHOUR=2;BYMINUTE=0;BYSECOND=0",)),
    ("daily", "30 1 * * *", ("FREQ=DAILY;BYHOUR=1;BYMINUTE=30;BYSECOND=0",)),
    ("every-minute", "* * * * *", ("FREQ=MINUTELY;BYSECOND=0",)),
    ("every-15-minutes", "*/15 * * * *", ("FREQ=HOURLY;BYMINUTE=0,15,30,45;BYSECOND=0",)),
    ("step-from-value", "5/20 * * * *", ("FREQ=HOURLY;BYMINUTE=5,25,45;BYSECOND=0",)),
    ("every-minute-of-hour-3", "* 3 * * *", ("FREQ=MINUTELY;BYHOUR=3;BYSECOND=0",)),
    ("range-step-and-day-range", "0 9-17/4 * * MON-FRI",
     ("FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9,13,17;BYMINUTE=0;BYSECOND=0",)),
    ("lists-and-month-names", "15,45 4 * jan,Jul 7",
     ("FREQ=DAILY;BYMONTH=1,7;BYDAY=SU;BYHOUR=4;BYMINUTE=15,45;BYSECOND=0",)),
    ("sunday-as-0-and-7", "0 0 * * 0,7", ("FREQ=DAILY;BYDAY=SU;BYHOUR=0;BYMINUTE=0;BYSECOND=0",)),
    ("day-range-into-7", "0 0 * * 5-7", ("FREQ=DAILY;BYDAY=SU,FR,SA;BYHOUR=0;BYMINUTE=0;BYSECOND=0",)),
    ("first-of-month", "0 3 1 * *", ("FREQ=DAILY;BYMONTHDAY=1;BYHOUR=3;BYMINUTE=0;BYSECOND=0",)),
    ("day-of-month-or-weekday", "0 0 1,15 * FRI",
     ("FREQ=DAILY;BYMONTHDAY=1,15;BYHOUR=0;BYMINUTE=0;BYSECOND=0",
      "FREQ=DAILY;BYDAY=FR;BYHOUR=0;BYMINUTE=0;BYSECOND=0")),
    ("star-step-day-is-and", "0 0 */10 * MON",
     ("FREQ=DAILY;BYMONTHDAY=1,11,21,31;BYDAY=MO;BYHOUR=0;BYMINUTE=0;BYSECOND=0",)),
    ("full-day-range-or-weekday-is-every-day", "0 0 1-31 * MON", ("FREQ=DAILY;BYHOUR=0;BYMINUTE=0;BYSECOND=0",)),
    ("impossible-day-or-weekday-keeps-weekday", "0 0 30 2 MON",
     ("FREQ=DAILY;BYMONTH=2;BYDAY=MO;BYHOUR=0;BYMINUTE=0;BYSECOND=0",)),
    ("leap-day", "0 0 29 2 *", ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=29;BYHOUR=0;BYMINUTE=0;BYSECOND=0",)),
    ("macro-weekly", "@weekly", ("FREQ=DAILY;BYDAY=SU;BYHOUR=0;BYMINUTE=0;BYSECOND=0",)),
    ("macro-hourly", "@hourly", ("FREQ=HOURLY;BYMINUTE=0;BYSECOND=0",)),
    ("macro-yearly", "@yearly", ("FREQ=DAILY;BYMONTH=1;BYMONTHDAY=1;BYHOUR=0;BYMINUTE=0;BYSECOND=0",)),
]


@pytest.mark.parametrize(("expr", "rules"), [c[1:] for c in CRON], ids=[c[0] for c in CRON])
def test_cron_to_rrule(expr: str, rules: tuple[str, ...]) -> None:
    """A cron expression becomes the RRULEs (one, or two for day-of-month OR day-of-week) dateutil expands."""
    assert cron_to_rrule(expr) == rules
    for rule in rules:
        rrulestr(rule, dtstart=datetime(2026, 1, 1))


CRON_INVALID = [
    ("four-fields", "0 2 * *", "cron: expected 5 fields"),
    ("minute-out-of-range", "60 * * * *", "cron: minute '60': 60 is outside 0-59"),
    ("zero-step", "*/0 * * * *", "cron: minute '\\*/0': the step must be a positive number"),
    ("backwards-range", "0 5-1 * * *", "cron: hour '5-1': the range is backwards"),
    ("name-in-minutes", "MON * * * *", "cron: minute 'MON': 'MON' is not a number"),
    ("unknown-day-name", "0 0 * * FUN", "cron: day-of-week 'FUN': 'FUN' is not a number or a name"),
    ("quartz-last-day", "0 0 L * *", "cron: day-of-month 'L'"),
    ("empty-list-item", "0 0,,1 * * *", "cron: hour '0,,1': empty list item"),
    ("never-occurs", "0 0 31 2 *", "cron: the day-of-month never occurs"),
    ("unknown-macro", "@reboot", "cron: unknown macro"),
]


@pytest.mark.parametrize(("expr", "message"), [c[1:] for c in CRON_INVALID], ids=[c[0] for c in CRON_INVALID])
def test_cron_errors(expr: str, message: str) -> None:
    """An invalid cron expression raises ValueError saying which field is wrong."""
    with pytest.raises(ValueError, match="^" + message):
        cron_to_rrule(expr)


# -------------------------------------------------------------------------------- one-off

ONE_OFF = [
    ("before", 99.0, None, (100.0, 200.0)),
    ("at-start", 100.0, (100.0, 200.0), None),
    ("inside", 150.0, (100.0, 200.0), None),
    ("at-end", 200.0, None, None),
]


@pytest.mark.parametrize(("now", "active", "upcoming"), [c[1:] for c in ONE_OFF], ids=[c[0] for c in ONE_OFF])
def test_one_off_window(now: float, active: tuple[float, float] | None, upcoming: tuple[float, float] | None) -> None:
    """A one-off window is active in [start, end) and is the next occurrence before it starts."""
    subject = window()
    assert subject.active(now) == active
    assert subject.next_occurrence(now) == upcoming
    assert not subject.recurring


# -------------------------------------------------------------------------------------- DST

BERLIN = dict(rrule="FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0", duration=7200.0, timezone="Europe/Berlin")
BERLIN_CASES = [
    # (id, now, occurrence covering now)
    ("winter-sunday-before", utc(2026, 3, 22, 0, 59, 59), None),
    ("winter-sunday-02-cet", utc(2026, 3, 22, 1), (utc(2026, 3, 22, 1), utc(2026, 3, 22, 3))),
    ("spring-forward-02-skipped-starts-at-the-gap", utc(2026, 3, 29, 0, 59, 59), None),
    ("spring-forward-starts-03-cest", utc(2026, 3, 29, 1), (utc(2026, 3, 29, 1), utc(2026, 3, 29, 3))),
    ("spring-forward-lasts-2h-elapsed", utc(2026, 3, 29, 2, 59, 59), (utc(2026, 3, 29, 1), utc(2026, 3, 29, 3))),
    ("spring-forward-ends", utc(2026, 3, 29, 3), None),
    ("summer-sunday-02-cest", utc(2026, 4, 5, 0), (utc(2026, 4, 5, 0), utc(2026, 4, 5, 2))),
    ("summer-sunday-not-at-cet-time", utc(2026, 4, 5, 2, 30), None),
    ("fall-back-first-02-cest", utc(2026, 10, 25, 0), (utc(2026, 10, 25, 0), utc(2026, 10, 25, 2))),
    ("fall-back-second-0230-cet-still-inside", utc(2026, 10, 25, 1, 30), (utc(2026, 10, 25, 0), utc(2026, 10, 25, 2))),
    ("fall-back-ends-after-2h-elapsed", utc(2026, 10, 25, 2), None),
    ("winter-again-02-cet", utc(2026, 11, 1, 1, 30), (utc(2026, 11, 1, 1), utc(2026, 11, 1, 3))),
    ("weekday-is-never", utc(2026, 10, 28, 1), None),
]


@pytest.mark.parametrize(("now", "occurrence"), [c[1:] for c in BERLIN_CASES], ids=[c[0] for c in BERLIN_CASES])
def test_weekly_window_in_berlin_across_dst(now: float, occurrence: tuple[float, float] | None) -> None:
    """Sunday 02:00 Europe/Berlin for 2 h is wall-clock time: a skipped 02:00 starts at the gap, a repeated one once."""
    assert window(**BERLIN).active(now) == occurrence


NEW_YORK_CASES = [
    # (id, cron, day in March/November 2026 (local), expected occurrence start in UTC)
    ("0130-before-spring-forward", "30 1 * * *", (2026, 3, 7), utc(2026, 3, 7, 6, 30)),
    ("0130-on-spring-forward-day-est", "30 1 * * *", (2026, 3, 8), utc(2026, 3, 8, 6, 30)),
    ("0130-after-spring-forward-edt", "30 1 * * *", (2026, 3, 9), utc(2026, 3, 9, 5, 30)),
    ("0230-skipped-starts-0330-edt", "30 2 * * *", (2026, 3, 8), utc(2026, 3, 8, 7, 30)),
    ("0130-before-fall-back-edt", "30 1 * * *", (2026, 10, 31), utc(2026, 10, 31, 5, 30)),
    ("0130-repeated-first-one-edt", "30 1 * * *", (2026, 11, 1), utc(2026, 11, 1, 5, 30)),
    ("0130-after-fall-back-est", "30 1 * * *", (2026, 11, 2), utc(2026, 11, 2, 6, 30)),
]


@pytest.mark.parametrize(("cron", "day", "start"), [c[1:] for c in NEW_YORK_CASES], ids=[c[0] for c in NEW_YORK_CASES])
def test_daily_cron_in_new_york_across_dst(cron: str, day: tuple[int, int, int], start: float) -> None:
    """A daily cron window in America/New_York starts at its local time each day, across both DST changes."""
    subject = window(cron=cron, duration=1800.0, timezone="America/New_York")
    midnight = datetime(*day, tzinfo=ZoneInfo("America/New_York")).timestamp()
    assert subject.next_occurrence(midnight) == (start, start + 1800.0)
    assert subject.active(start) == (start, start + 1800.0)
    assert subject.active(start - 1) is None
    assert subject.active(start + 1800.0) is None
    repeated = start + 3600.0  # the second 01:30 on the fall-back day (EST) does not start another occurrence
    assert subject.active(repeated) is None


# ---------------------------------------------------------------------------- recurrence

RECURRING = [
    # (id, window fields, now, covering occurrence, next occurrence start)
    ("until-in-rrule-utc", dict(rrule="FREQ=DAILY;BYHOUR=3;BYMINUTE=0;UNTIL=20260105T030000Z", duration=600.0),
     utc(2026, 1, 6, 3, 5), None, None),
    ("until-in-rrule-last-day-included", dict(rrule="FREQ=DAILY;BYHOUR=3;UNTIL=20260105", duration=600.0),
     utc(2026, 1, 5, 3, 5), (utc(2026, 1, 5, 3), utc(2026, 1, 5, 3, 10)), None),
    ("until-field", dict(cron="0 3 * * *", duration=600.0, until=utc(2026, 1, 5, 3)),
     utc(2026, 1, 4, 12), None, utc(2026, 1, 5, 3)),
    ("count-limits-from-dtstart", dict(rrule="FREQ=DAILY;COUNT=3", duration=600.0, dtstart=utc(2026, 1, 1, 8)),
     utc(2026, 1, 3, 8, 1), (utc(2026, 1, 3, 8), utc(2026, 1, 3, 8, 10)), None),
    ("dtstart-supplies-the-time", dict(rrule="FREQ=WEEKLY", duration=600.0, dtstart=utc(2026, 1, 1, 8, 15)),
     utc(2030, 6, 7, 8, 16), None, utc(2030, 6, 13, 8, 15)),
    ("before-dtstart-nothing", dict(cron="0 3 * * *", duration=600.0, dtstart=utc(2026, 1, 10)),
     utc(2026, 1, 5, 3, 1), None, utc(2026, 1, 10, 3)),
    ("interval-two-weeks-far-from-dtstart",
     dict(rrule="FREQ=WEEKLY;INTERVAL=2;BYDAY=MO;BYHOUR=6", duration=3600.0, dtstart=utc(2020, 1, 6)),
     utc(2031, 3, 10, 6, 30), None, utc(2031, 3, 17, 6)),
    ("monthly-first-saturday", dict(rrule="FREQ=MONTHLY;BYDAY=1SA;BYHOUR=22", duration=4 * 3600.0),
     utc(2026, 8, 2, 1), (utc(2026, 8, 1, 22), utc(2026, 8, 2, 2)), utc(2026, 9, 5, 22)),
    ("overlapping-occurrences-latest-wins", dict(cron="0 * * * *", duration=7200.0),
     utc(2026, 1, 1, 5, 30), (utc(2026, 1, 1, 5), utc(2026, 1, 1, 7)), utc(2026, 1, 1, 6)),
    ("every-minute", dict(cron="* * * * *", duration=30.0), utc(2026, 1, 1, 5, 30, 31), None, utc(2026, 1, 1, 5, 31)),
]


@pytest.mark.parametrize(("fields", "now", "covering", "upcoming"), [c[1:] for c in RECURRING],
                         ids=[c[0] for c in RECURRING])
def test_recurring_window(fields: dict[str, Any], now: float, covering: tuple[float, float] | None,
                          upcoming: float | None) -> None:
    """Recurring windows honour UNTIL, COUNT, dtstart, until and INTERVAL, far from their start too."""
    subject = window(**fields)
    assert subject.recurring
    assert subject.active(now) == covering
    found = subject.next_occurrence(now)
    assert (None if found is None else found[0]) == upcoming


RULES = [
    ("weekly-interval-3", "FREQ=WEEKLY;INTERVAL=3;BYDAY=TU,SA;BYHOUR=1,13"),
    ("daily-setpos", "FREQ=DAILY;BYHOUR=1,5,9;BYMINUTE=0;BYSETPOS=-1"),
    ("hourly-interval-5", "FREQ=HOURLY;INTERVAL=5;BYMINUTE=10"),
    ("minutely-interval-7", "FREQ=MINUTELY;INTERVAL=7;BYHOUR=2;BYSECOND=0"),
]


@pytest.mark.parametrize("rule", [c[1] for c in RULES], ids=[c[0] for c in RULES])
def test_recurrence_matches_plain_expansion_in_any_query_order(rule: str) -> None:
    """Re-anchoring and caching give exactly dateutil's occurrences, even when asked out of order."""
    dtstart = utc(2024, 2, 29, 1, 2, 3)
    tz = ZoneInfo("Europe/Berlin")
    anchor = datetime.fromtimestamp(dtstart, tz).replace(tzinfo=None)
    expected = [d.replace(tzinfo=tz).timestamp() for d in
                rrulestr(rule, dtstart=anchor).between(datetime(2026, 3, 27), datetime(2026, 4, 3))]
    subject = window(rrule=rule, duration=60.0, timezone="Europe/Berlin", dtstart=dtstart)
    probes = sorted({t + d for t in expected for d in (-1.0, 0.0, 59.0, 60.0)}, key=lambda t: (t * 7919) % 1000)
    for t in probes:
        inside = [s for s in expected if s <= t < s + 60.0]
        assert subject.active(t) == ((max(inside), max(inside) + 60.0) if inside else None), t
        later = [s for s in expected if s > t]
        if later and later[0] < expected[-1]:
            assert subject.next_occurrence(t) == (later[0], later[0] + 60.0), t


# ---------------------------------------------------------------------------------- scope

def _with(subject: Alert, **changes: Any) -> Alert:
    return replace(subject, **changes)


BASE = alert("DiskFull", instance="db-1.example.com:9100", service="payments", labels={"env": "prod"})
SCOPE = [
    # (id, window scope, alert, matched)
    ("service", dict(services=("payments",)), BASE, "service payments"),
    ("other-service", dict(services=("search",)), BASE, None),
    ("no-service-on-alert", dict(services=("payments",)), _with(BASE, service=None), None),
    ("host-from-resource", dict(hosts=("DB-1",)), _with(BASE, resource="db-1"), "host db-1"),
    ("host-from-instance-port-stripped", dict(hosts=("db-1.example.com",)), BASE, "host db-1.example.com"),
    ("host-label", dict(hosts=("db-2",)), _with(BASE, labels={**BASE.labels, "host": "db-2"}), "host db-2"),
    ("host-ipv6-instance", dict(hosts=("::1",)), _with(BASE, labels={"instance": "[::1]:9100"}), "host ::1"),
    ("host-url-instance", dict(hosts=("shop.example.com",)),
     _with(BASE, labels={"instance": "https://shop.example.com/health"}), "host shop.example.com"),
    ("host-not-listed", dict(hosts=("db-2",)), BASE, None),
    ("host-listed-with-port", dict(hosts=("DB-1.example.com:9100",)), BASE, "host db-1.example.com"),
    ("matchers-all-match", dict(matchers=compile_matchers(['env="prod"', 'alertname=~"Disk.*"'])), BASE,
     'matchers env="prod", alertname=~"Disk.*"'),
    ("matchers-one-fails", dict(matchers=compile_matchers(['env="prod"', 'alertname="CPU"'])), BASE, None),
    ("matchers-pseudo-label", dict(matchers=compile_matchers(['@severity="critical"'])), BASE,
     'matchers @severity="critical"'),
    ("any-scope-kind-suffices", dict(services=("search",), hosts=("db-1.example.com",)), BASE,
     "host db-1.example.com"),
    ("service-named-first", dict(services=("payments",), hosts=("db-1.example.com",)), BASE, "service payments"),
]


@pytest.mark.parametrize(("scope", "subject", "matched"), [c[1:] for c in SCOPE], ids=[c[0] for c in SCOPE])
def test_scope(scope: dict[str, Any], subject: Alert, matched: str | None) -> None:
    """An alert is in scope by service, by host (resource, host label, instance host part) or by all matchers."""
    subject_window = MaintenanceWindow(id="w", start=0.0, end=1000.0, **scope)
    assert subject_window.scope_match(subject) == matched
    mute = MaintenanceCalendar([subject_window]).mutes(subject, 500.0)
    assert (None if mute is None else mute.detail["matched"]) == matched


HOSTS = [
    ("name-and-port", "db-1:9100", "db-1"),
    ("plain", "DB-1", "db-1"),
    ("ipv6-bracketed", "[2001:db8::1]:9100", "2001:db8::1"),
    ("ipv6-bare", "2001:db8::1", "2001:db8::1"),
    ("url", "http://web-3:8080/metrics", "web-3"),
]


@pytest.mark.parametrize(("value", "host"), [c[1:] for c in HOSTS], ids=[c[0] for c in HOSTS])
def test_host_of(value: str, host: str) -> None:
    """The host part of an instance-like value drops port, brackets and URL parts, in lower case."""
    assert host_of(value) == host


def test_alert_hosts_lists_each_source_once() -> None:
    """An alert's hosts are its resource, host label and instance host, without duplicates."""
    subject = _with(BASE, resource="db-1.example.com", labels={"host": "db-1.example.com", "instance": "x:1"})
    assert alert_hosts(subject) == ("db-1.example.com", "x")


def test_a_pod_on_a_node_in_maintenance_is_in_scope() -> None:
    """A pod's alert names its pod IP as instance and the machine it runs on as `node` (Kubernetes),
    `nodename` (node_exporter) or `hostname` (Datadog): work on that machine takes the pod down too."""
    pod = _with(BASE, labels={"instance": "10.42.240.66:8080", "node": "k8s-node-c-01"})
    assert alert_hosts(pod) == ("10.42.240.66", "k8s-node-c-01")
    assert window(hosts=("k8s-node-c-01",), start=0, end=100).scope_match(pod) == "host k8s-node-c-01"
    assert alert_hosts(_with(BASE, labels={"nodename": "web-2", "hostname": "web-3"})) == ("web-2", "web-3")


# ------------------------------------------------------------------------------- calendar

def test_calendar_mute_detail() -> None:
    """The Mute names the window, its schedule, the occurrence and how the alert was in scope."""
    calendar = MaintenanceCalendar([window(id="db-upgrade", hosts=("db-1.example.com",), cron="0 2 * * *",
                                           duration=3600.0, comment="postgres 17")])
    now = utc(2026, 5, 1, 2, 30)
    assert calendar.mutes(BASE, now) == Mute(
        stage="maintenance",
        reason="in_maintenance",
        rule="db-upgrade",
        detail={
            "window": "cron 0 2 * * * for 3600s (UTC)",
            "comment": "postgres 17",
            "occurrence_start": utc(2026, 5, 1, 2),
            "occurrence_end": utc(2026, 5, 1, 3),
            "matched": "host db-1.example.com",
            "until": utc(2026, 5, 1, 3),
        },
    )
    assert calendar.mutes(BASE, utc(2026, 5, 1, 3)) is None


CALENDAR = [
    # (id, now, muting window)
    ("none-active", 50.0, None),
    ("only-b-active", 150.0, "b-service"),
    ("a-and-b-active-lowest-id", 350.0, "a-matchers"),
    ("c-host-active", 650.0, "c-host"),
]


@pytest.mark.parametrize(("now", "rule"), [c[1:] for c in CALENDAR], ids=[c[0] for c in CALENDAR])
def test_calendar_picks_first_active_window_by_id(now: float, rule: str | None) -> None:
    """Of the active windows holding the alert, the one with the lowest id mutes it."""
    calendar = MaintenanceCalendar([
        MaintenanceWindow(id="c-host", hosts=("db-1.example.com",), start=500.0, end=700.0),
        MaintenanceWindow(id="b-service", services=("payments",), start=100.0, end=400.0),
        MaintenanceWindow(id="a-matchers", matchers=compile_matchers(['env="prod"']), start=300.0, end=600.0),
        MaintenanceWindow(id="0-other", services=("search",), start=0.0, end=1000.0),
    ])
    mute = calendar.mutes(BASE, now)
    assert (None if mute is None else mute.rule) == rule
    assert [w.id for w, _ in calendar.active(now)] == sorted(
        w.id for w in calendar.list() if w.active(now) is not None)


def test_calendar_add_replace_remove() -> None:
    """Adding a window with a known id replaces it; removing takes it out of muting."""
    calendar = MaintenanceCalendar()
    version = calendar.version
    assert calendar.add(window()) is None
    assert calendar.version > version
    assert calendar.mutes(BASE, 150.0) is not None
    previous = calendar.add(window(start=300.0, end=400.0))
    assert previous is not None and previous.start == 100.0
    assert calendar.mutes(BASE, 150.0) is None and calendar.mutes(BASE, 350.0) is not None
    assert calendar.remove("w1").id == "w1"
    assert calendar.mutes(BASE, 350.0) is None and len(calendar) == 0 and "w1" not in calendar
    with pytest.raises(KeyError):
        calendar.remove("w1")


def test_window_dict_round_trip() -> None:
    """`to_dict` then `from_dict` gives the same window; texts are accepted for matchers; unknown fields refused."""
    original = window(matchers=compile_matchers(['env=~"prod|stage"']), hosts=("db-1",), rrule=BERLIN["rrule"],
                      duration=7200.0, timezone="Europe/Berlin", dtstart=utc(2026, 1, 1), comment="c",
                      created_by="ops")
    copy = MaintenanceWindow.from_dict(json.loads(json.dumps(original.to_dict())))
    assert copy == original
    assert copy.active(utc(2026, 3, 29, 1)) == original.active(utc(2026, 3, 29, 1)) is not None
    from_texts = MaintenanceWindow.from_dict({"id": "t", "matchers": ['env="prod"'], "start": 1, "end": 2})
    assert str(from_texts.matchers[0]) == 'env="prod"'
    with pytest.raises(ValueError, match=r"^scheduled: unknown field"):
        MaintenanceWindow.from_dict({**original.to_dict(), "scheduled": True})
    with pytest.raises(ValueError, match=r"^matchers\[0\]: "):
        MaintenanceWindow.from_dict({"id": "t", "matchers": ["env"], "start": 1, "end": 2})


def test_calendar_is_a_muter() -> None:
    """The calendar satisfies the Muter protocol as `maintenance`, with its closed reason set."""
    calendar = MaintenanceCalendar()
    assert isinstance(calendar, Muter)
    assert calendar.type_name == "maintenance"
    assert {r.value for r in MaintenanceCalendar.reasons} == {"in_maintenance"}
    calendar.observe(BASE, 0.0)
    assert calendar.mutes(BASE, 0.0) is None
