"""Tests of bridge/report.py: the on-call report over incidents an engine made on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.engine import Engine
from bridge.report import PersonRow, PoolRow, Report, build_report, render_table
from tests.bridge.conftest import alert, play, resolved
from tests.bridge.test_escalation import DAY, MONDAY_10, engine, members

T = MONDAY_10
#: L1 the assignee for 5m, then L2 carol for 10m; no repeat.
POLICY = {"name": "db-policy", "tiers": [{"assignee": True, "timeout": "5m"}, {"members": ["carol"], "timeout": "10m"}]}
#: warnings page at P4 (low impact, medium urgency); critical alerts on the tier-1 service `payments` at P1
SLA = {"targets": {"P4": {"acknowledge": "10m", "resolve": "1h"}, "P1": {"acknowledge": "5m", "resolve": "1h"}}}


def week() -> Engine:
    """Three P4 incidents of pool db over an hour, with acknowledgements, an escalation and a repeat.

    - A opens at +30 (alice), is acknowledged at +90 and resolved at +630;
    - B opens at +40 (bob), escalates to carol at +340, is acknowledged at +400 and resolved at
      +4000, after its 1h resolve target (+3640);
    - A fires again at +2000 (a repeat: its key resolved 23 minutes before), opens at +2030 (alice)
      and is resolved at +2100 without an acknowledgement.
    """
    e = engine([{"name": "db", "members": members("alice", "bob"), "escalation": "db-policy"},
                {"name": "ops", "members": members("carol")}], policies=[POLICY], sla=SLA)
    first_a = alert("A", severity="warning", starts_at=T)
    b = alert("B", severity="warning", starts_at=T + 10)
    second_a = alert("A", severity="warning", starts_at=T + 2000)
    play(e, [(T, first_a), (T + 10, b)], T + 90)
    by_title = {incident.alerts[next(iter(incident.alerts))].labels["alertname"]: incident.id
                for incident in e.incidents.values()}
    e.acknowledge(by_title["A"], "alice", T + 90)
    e.acknowledge(by_title["B"], "carol", T + 400)
    play(e, [(T + 630, resolved(first_a)), (T + 2000, second_a), (T + 2100, resolved(second_a)),
             (T + 4000, resolved(b))], T + DAY)
    return e


def test_response_times_sla_escalations_and_repeats() -> None:
    """One row per pool and priority: counts, mean and median time to acknowledge and to resolve, SLA
    compliance per target, escalations and the repeat rate."""
    report = build_report(week().incidents.values(), T, T + DAY)
    assert report.pools == (PoolRow(
        pool="db", priority="P4", incidents=3, acknowledged=2, resolved=3,
        mtta_seconds=210.0, median_tta_seconds=210.0,  # A 60s, B 360s
        mttr_seconds=(600 + 3960 + 70) / 3, median_ttr_seconds=600.0,
        sla_acknowledge=1.0,  # the second A was resolved before its acknowledge deadline: met
        sla_resolve=2 / 3,  # B breached its 1h resolve target
        escalations=1, repeat_rate=1 / 3,
    ),)


def test_pages_per_person_per_day() -> None:
    """Each page (open and escalation) counts for the person paged, most paged first, per day of the period."""
    report = build_report(week().incidents.values(), T, T + 2 * DAY)
    assert report.people == (PersonRow("alice", 2, 1.0), PersonRow("bob", 1, 0.5), PersonRow("carol", 1, 0.5))


@pytest.mark.parametrize(("since", "until", "incidents", "pages"), [
    (T, T + DAY, 3, {"alice": 2, "bob": 1, "carol": 1}),
    (T + 1000, T + DAY, 1, {"alice": 1}),  # only the repeat opened (and paged) after +1000
    (T, T + 35, 1, {"alice": 1}),  # A opened at +30; B at +40 is after the period
    (T + 340, T + 1000, 0, {"carol": 1}),  # no incident opened, but carol was paged by B's escalation
    (T + DAY, T + 2 * DAY, 0, {}),
], ids=["whole-day", "after-first-hour", "first-seconds", "escalation-only", "next-day"])
def test_period_filtering(since: float, until: float, incidents: int, pages: dict[str, int]) -> None:
    """Incidents count in the period they opened in; pages count in the period they were sent in."""
    report = build_report(week().incidents.values(), since, until)
    assert sum(row.incidents for row in report.pools) == incidents
    assert {person.member: person.pages for person in report.people} == pages


def test_unanswered_incident_past_its_deadline_is_a_breach() -> None:
    """An incident neither acknowledged nor resolved by its deadline counts against compliance; one whose
    deadline is still ahead does not count yet."""
    e = engine([{"name": "db", "members": members("alice")}], sla=SLA)
    play(e, [(T, alert("A", severity="warning", starts_at=T))], T + 700)  # ack deadline +630 passed
    (row,) = build_report(e.incidents.values(), T, T + 700).pools
    assert (row.sla_acknowledge, row.sla_resolve, row.acknowledged, row.resolved) == (0.0, None, 0, 0)
    assert (row.mtta_seconds, row.mttr_seconds) == (None, None)


def test_rows_per_priority_are_sorted() -> None:
    """Incidents of different priorities get separate rows, sorted by pool then priority."""
    e = engine([{"name": "db", "members": members("alice")}], sla=SLA, tiers={"payments": 1})
    play(e, [(T, alert("A", severity="warning", starts_at=T)),
             (T + 1, alert("B", severity="critical", service="payments", starts_at=T + 1))], T + 100)
    report = build_report(e.incidents.values(), T, T + 100)
    assert [(row.pool, row.priority, row.incidents) for row in report.pools] == [("db", "P1", 1), ("db", "P4", 1)]


def test_render_table_has_a_header_and_a_row_per_pool_and_priority() -> None:
    """The table starts with the period, then a header line and one row per pool and priority, then people."""
    text = render_table(build_report(week().incidents.values(), T, T + DAY))
    lines = text.splitlines()
    assert lines[0] == "alertbridge report 2026-11-23T10:00:00.000Z .. 2026-11-24T10:00:00.000Z"
    assert lines[2].split() == ["pool", "priority", "incidents", "acked", "resolved", "MTTA", "median", "TTA",
                                "MTTR", "median", "TTR", "SLA", "ack", "SLA", "resolve", "escalations", "repeat",
                                "rate"]
    assert lines[4].split() == ["db", "P4", "3", "2", "3", "3.5m", "3.5m", "25.7m", "10.0m", "100%", "67%", "1",
                                "33%"]
    assert lines[6].split() == ["member", "pages", "pages/day"]
    assert lines[8].split() == ["alice", "2", "2.00"]


def test_render_table_of_an_empty_period() -> None:
    """A period without incidents says so instead of printing an empty table."""
    text = render_table(Report(T, T + DAY, (), ()))
    assert text.splitlines()[2] == "no incidents paged in this period"


def test_to_dict_is_json_ready() -> None:
    """to_dict gives RFC 3339 bounds and one object per row with the dataclass field names."""
    data: dict[str, Any] = build_report(week().incidents.values(), T, T + DAY).to_dict()
    assert (data["since"], data["until"]) == ("2026-11-23T10:00:00.000Z", "2026-11-24T10:00:00.000Z")
    assert data["pools"][0]["mtta_seconds"] == 210.0 and data["pools"][0]["repeat_rate"] == pytest.approx(1 / 3)
    assert data["people"][0] == {"member": "alice", "pages": 2, "pages_per_day": 2.0}
