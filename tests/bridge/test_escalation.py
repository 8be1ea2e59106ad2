"""Tests of bridge/escalation.py and bridge/pools.py: assignment, escalation and SLA timers, as tables
of (time, alert) in and (time, action, people) out on the engine's fake clock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from bridge.catalog import Catalog, ServiceEntry
from bridge.engine import Engine, EngineConfig
from bridge.model import Action
from bridge.oncall import ScheduleSettings
from bridge.pool_settings import AssignmentSettings, EscalationPolicySettings, PoolSettings, SlaSettings
from bridge.pools import PoolDirectory
from bridge.routing import Route
from correlators.dedup import DedupStage
from tests.bridge.conftest import alert, play, policy, resolved, route

DAY = 86400.0
#: Monday 2026-11-23 10:00 UTC: inside office hours.
MONDAY_10 = 1795428000.0


def members(*names: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"name": n, "contacts": {"email": f"{n}@example.org", "slack": f"U{n.upper()}"},
             "notify": [f"{n}-mail"], **extra} for n in names]


def engine(pools: list[dict[str, Any]], *, policies: Iterable[dict[str, Any]] = (),
           schedules: Iterable[dict[str, Any]] = (), assignment: Mapping[str, Any] | None = None,
           sla: Mapping[str, Any] | None = None, routes: Iterable[Route] = (), services: Iterable[ServiceEntry] = (),
           tiers: Mapping[str, int] | None = None) -> Engine:
    """An engine over one route (group by alertname, group_wait 30s) and the given pool sections."""
    directory = PoolDirectory.build(
        [PoolSettings.model_validate(p) for p in pools],
        [ScheduleSettings.model_validate(s) for s in schedules],
        [EscalationPolicySettings.model_validate(p) for p in policies],
        AssignmentSettings.model_validate(assignment or {}),
        SlaSettings.model_validate(sla or {}),
    )
    catalog = Catalog.build(None, list(services))
    return Engine(EngineConfig(routes=tuple(routes) or (route(pool="db"),), priority=policy(tiers),
                               stages=(DedupStage(),), catalog=catalog, pools=directory))


def rows(actions: Iterable[Action]) -> list[tuple[float, str, str]]:
    """(time, action kind, the people addressed) for each action."""
    return [(a.at - T, a.kind.value, ",".join(r.name for r in a.recipients)) for a in actions]


T = MONDAY_10
TWO_TIERS = {"name": "db-policy", "repeat": 1, "tiers": [
    {"assignee": True, "timeout": "5m", "timeouts": {"P1": "1m"}},
    {"members": ["carol"], "timeout": "10m"},
]}


def fire(name: str, at: float, **kw: Any) -> tuple[float, Any]:
    return (T + at, alert(name, starts_at=T + at, **kw))


def test_open_assigns_round_robin_within_the_pool() -> None:
    """Each new incident goes to the next member of the pool in order, and the page addresses them."""
    e = engine([{"name": "db", "members": members("alice", "bob")}])
    actions = play(e, [fire("A", 0), fire("B", 1), fire("C", 2)], T + 100)
    assert rows(actions) == [(30, "open", "alice"), (31, "open", "bob"), (32, "open", "alice")]
    assert "round robin in pool db: alice (0/5 open)" in actions[0].reason + e.incidents[
        actions[0].incident.id].assign_reason
    assert actions[0].incident.assignee == "alice"


def test_page_reaches_pool_and_member_channels_with_handles() -> None:
    """A page goes to the route's sinks, the pool's channel and the assignee's own sinks, with handles."""
    e = engine([{"name": "db", "members": members("alice"), "notify": ["db-channel"]}])
    (page,) = play(e, [fire("A", 0)], T + 100)
    assert page.sinks == ("pager", "db-channel", "alice-mail")
    assert page.recipients[0].handles == {"email": "alice@example.org", "slack": "UALICE"}


def test_quota_skips_full_members_and_nobody_under_quota_escalates_at_once() -> None:
    """Members at quota are skipped; when every one is, tier 1 has nobody and tier 2 is paged at once."""
    e = engine([{"name": "db", "members": members("alice", "bob", quota=1), "escalation": "db-policy"},
                {"name": "ops", "members": members("carol")}], policies=[TWO_TIERS])
    actions = play(e, [fire("A", 0, severity="warning"), fire("B", 1, severity="warning"),
                       fire("C", 2, severity="warning")], T + 40)
    assert rows(actions) == [(30, "open", "alice"), (31, "open", "bob"), (32, "open", ""),
                             (32, "escalate", "carol")]
    reason = actions[-1].reason
    assert "nobody to page at tier L1" in reason and "at quota (alice 1/1, bob 1/1)" in reason
    assert "escalated to tier L2, paging carol" in reason


def test_resolve_frees_quota() -> None:
    """A resolved incident no longer counts against its assignee's quota."""
    e = engine([{"name": "db", "members": members("alice", quota=1)}])
    first = alert("A", starts_at=T)
    actions = play(e, [(T, first), (T + 60, resolved(first)), fire("B", 100)], T + 200)
    assert rows(actions) == [(30, "open", "alice"), (60, "resolve", "alice"), (130, "open", "alice")]


ESCALATION_TABLE = [
    # not acknowledged: L1 (5m for P3) -> L2 (10m) -> L1 again (repeat 1) -> L2 -> exhausted
    ("nobody-acknowledges", "warning", None, [
        (30, "open", "alice"), (330, "escalate", "carol"), (930, "escalate", "alice"),
        (1230, "escalate", "carol")]),
    # P1 (critical on a tier-1 service): L1 times out after 1m instead of 5m
    ("p1-is-faster", "critical", None, [
        (30, "open", "alice"), (90, "escalate", "carol"), (690, "escalate", "alice"),
        (750, "escalate", "carol")]),
    # acknowledged at 200: escalation stops
    ("acknowledge-stops", "warning", 200.0, [(30, "open", "alice"), (200, "acknowledge", "alice")]),
    # acknowledged after the first escalation: nothing more
    ("late-acknowledge-stops", "warning", 400.0, [
        (30, "open", "alice"), (330, "escalate", "carol"), (400, "acknowledge", "alice")]),
]


@pytest.mark.parametrize(("severity", "ack_at", "expected"), [r[1:] for r in ESCALATION_TABLE],
                         ids=[r[0] for r in ESCALATION_TABLE])
def test_escalation_table(severity: str, ack_at: float | None, expected: list[tuple[float, str, str]]) -> None:
    """Tiers escalate on their (per-priority) timeouts, repeat, and stop on acknowledge."""
    e = engine([{"name": "db", "members": members("alice"), "escalation": "db-policy"},
                {"name": "ops", "members": members("carol")}], policies=[TWO_TIERS], tiers={"payments": 1})
    events = [fire("A", 0, severity=severity, service="payments")]
    actions = play(e, events, T + (ack_at if ack_at is not None else 5000))
    if ack_at is not None:
        (incident,) = e.incidents.values()
        actions += e.acknowledge(incident.id, "alice", T + ack_at)
        actions += e.advance(T + 5000)
    assert rows(actions) == expected
    (incident,) = e.incidents.values()
    events_seen = [entry.event for entry in incident.timeline]
    if ack_at is None:
        assert events_seen[-1] == "escalation exhausted"
    else:
        assert "escalation stopped" in events_seen


def test_escalation_is_independent_of_how_often_the_clock_ticks() -> None:
    """The same stream gives the same escalations whether advance runs every second or rarely."""
    def run(step: float | None) -> list[tuple[float, str, str]]:
        e = engine([{"name": "db", "members": members("alice"), "escalation": "db-policy"},
                    {"name": "ops", "members": members("carol")}], policies=[TWO_TIERS])
        return rows(play(e, [fire("A", 0, severity="warning")], T + 3000, step=step))

    assert run(None) == run(1.0) == run(333.0)


def test_resolve_stops_escalation() -> None:
    """A resolved incident is not escalated any more."""
    e = engine([{"name": "db", "members": members("alice"), "escalation": "db-policy"},
                {"name": "ops", "members": members("carol")}], policies=[TWO_TIERS])
    first = alert("A", severity="warning", starts_at=T)
    actions = play(e, [(T, first), (T + 100, resolved(first))], T + 3000)
    assert rows(actions) == [(30, "open", "alice"), (100, "resolve", "alice")]


def test_member_outside_working_hours_is_not_assigned() -> None:
    """Without a schedule, only members within their working hours are on call."""
    night = {"time_zone": "Asia/Tokyo", "working_hours": [{"days": ["monday"], "start": "09:00", "end": "17:00"}]}
    day = {"time_zone": "Europe/Berlin", "working_hours": [{"days": ["monday"], "start": "09:00", "end": "17:00"}]}
    e = engine([{"name": "db", "members": [*members("kenji", **night), *members("greta", **day)]}])
    # Monday 10:00 UTC is 19:00 in Tokyo (off) and 11:00 in Berlin (on)
    actions = play(e, [fire("A", 0), fire("B", 1)], T + 100)
    assert rows(actions) == [(30, "open", "greta"), (31, "open", "greta")]


def test_nobody_on_call_anywhere_is_said_in_the_timeline() -> None:
    """A page that finds nobody at all still opens, and the timeline says escalation found nobody."""
    off = {"working_hours": [{"days": ["sunday"], "start": "00:00", "end": "01:00"}]}
    e = engine([{"name": "db", "members": members("alice", **off), "escalation": "solo"}],
               policies=[{"name": "solo", "tiers": [{"assignee": True}]}])
    actions = play(e, [fire("A", 0)], T + 1000)
    assert rows(actions) == [(30, "open", "")]
    (incident,) = e.incidents.values()
    reasons = [entry.reason for entry in incident.timeline if entry.event in ("unassigned", "escalation exhausted")]
    assert "nobody in pool db is on call (no schedule: members within their working hours)" in reasons[0]
    assert "nobody to page in any tier" in reasons[-1] or "every tier was paged" in reasons[-1]


def test_schedule_decides_who_is_on_call() -> None:
    """With a schedule, its on-call member is assigned, whatever the member order."""
    schedule = {"name": "db-primary", "time_zone": "UTC",
                "layers": [{"name": "weekly", "rotation": "weekly", "members": ["bob", "alice"],
                            "start": "2026-11-16", "handoff": "09:00", "handoff_day": "monday"}]}
    e = engine([{"name": "db", "members": members("alice", "bob"), "schedule": "db-primary"}],
               schedules=[schedule])
    # the second week of the rotation started Monday 2026-11-23 09:00: alice
    actions = play(e, [fire("A", 0), fire("B", 1)], T + 100)
    assert rows(actions) == [(30, "open", "alice"), (31, "open", "alice")]


def test_hand_off_moves_the_incident_to_another_pool() -> None:
    """A tier that hands off re-assigns the incident in the other pool and pages its first tier."""
    e = engine([{"name": "db", "members": members("alice"), "escalation": "db-policy"},
                {"name": "dba", "members": members("dave"), "escalation": "dba-policy"}],
               policies=[{"name": "db-policy", "tiers": [{"assignee": True, "timeout": "5m"}, {"hand_off": "dba"}]},
                         {"name": "dba-policy", "tiers": [{"assignee": True, "timeout": "5m"}]}])
    actions = play(e, [fire("A", 0, severity="warning")], T + 400)
    assert rows(actions) == [(30, "open", "alice"), (330, "assign", "dave"), (330, "escalate", "dave")]
    assert actions[1].incident.pool == "dba"
    assert "not acknowledged within 5m at tier L1: handed off to pool dba" in actions[1].reason


SLA = {"warn_at": 0.8, "targets": {"P4": {"acknowledge": "10m", "resolve": "1h"}}}


def test_sla_warning_then_breach_when_not_acknowledged() -> None:
    """80% of the acknowledge target warns, the target breaches; both are in the timeline and stats."""
    e = engine([{"name": "db", "members": members("alice")}], sla=SLA)
    actions = play(e, [fire("A", 0, severity="warning")], T + 30 + 700)
    assert rows(actions) == [(30, "open", "alice"), (510, "sla_warning", "alice"), (630, "sla_breach", "alice")]
    assert actions[1].reason == "80% of the 10m time-to-acknowledge target for P4 has passed"
    assert actions[2].reason == "the 10m time-to-acknowledge target for P4 was breached"
    assert actions[0].incident.sla == {"acknowledge_by": T + 630, "resolve_by": T + 3630}
    assert e.stats.sla_breaches[("db", "P4", "acknowledge")] == 1


def test_acknowledge_in_time_cancels_the_acknowledge_sla_but_not_resolve() -> None:
    """Acknowledged before the warning: no acknowledge notices; the resolve target still runs."""
    e = engine([{"name": "db", "members": members("alice")}], sla=SLA)
    actions = play(e, [fire("A", 0, severity="warning")], T + 100)
    (incident,) = e.incidents.values()
    actions += e.acknowledge(incident.id, "alice", T + 100)
    actions += e.advance(T + 4000)
    assert rows(actions) == [(30, "open", "alice"), (100, "acknowledge", "alice"),
                             (30 + 2880, "sla_warning", "alice"), (3630, "sla_breach", "alice")]
    assert (e.stats.acknowledged[("db", "P4")], e.stats.acknowledge_seconds[("db", "P4")]) == (1, 70.0)


def test_resolved_in_time_meets_the_sla() -> None:
    """An incident resolved within its targets counts as met and sends no SLA notice."""
    e = engine([{"name": "db", "members": members("alice")}], sla=SLA)
    first = alert("A", severity="warning", starts_at=T)
    actions = play(e, [(T, first), (T + 200, resolved(first))], T + 5000)
    assert rows(actions) == [(30, "open", "alice"), (200, "resolve", "alice")]
    assert e.stats.sla_met[("db", "P4", "acknowledge")] == 1  # resolving in time answers the page too
    assert e.stats.sla_met[("db", "P4", "resolve")] == 1


RULES = {"triage_pool": "triage", "rules": [
    {"matchers": ["team=storage"], "pool": "db"},
    {"matchers": ["@severity=critical"], "owner": True},
]}


def rule_engine() -> Engine:
    services = [ServiceEntry(name="api", owner="web", depends_on=["db"]), ServiceEntry(name="db", owner="db"),
                ServiceEntry(name="orphan")]
    return engine([{"name": "db", "members": members("alice")}, {"name": "web", "members": members("wendy")},
                   {"name": "triage", "members": members("tom")}], assignment=RULES, services=services,
                  routes=[route(group_by=("alertname",))])


@pytest.mark.parametrize(("labels", "service", "severity", "pool", "why"), [
    ({"team": "storage"}, None, "warning", "db", "assignment.rules[0] matched"),
    ({}, "api", "critical", "web", "owner of the probable root cause api"),
    ({}, "orphan", "critical", "triage", "orphan has no owner in the catalog"),
    ({}, None, "critical", "triage", "the catalog cannot resolve the service"),
    ({}, "api", "warning", "triage", "no assignment rule matched"),
], ids=["label-rule", "catalog-owner", "owner-unknown", "no-service", "no-rule"])
def test_assignment_rules(labels: dict[str, str], service: str | None, severity: str, pool: str, why: str) -> None:
    """Rules route by labels or defer to the catalog; unmatched or ambiguous incidents go to triage."""
    e = rule_engine()
    (page,) = play(e, [fire("A", 0, labels=labels, service=service, severity=severity)], T + 100)
    assert page.incident.pool == pool
    (incident,) = e.incidents.values()
    assert why in incident.pool_reason


def test_repeat_incident_is_marked() -> None:
    """The same incident key opening again within 7 days (after the reopen window) is a repeat."""
    e = engine([{"name": "db", "members": members("alice")}])
    first = alert("A", starts_at=T)
    again = alert("A", starts_at=T + DAY)
    play(e, [(T, first), (T + 60, resolved(first)), (T + DAY, again)], T + DAY + 100)
    incidents = sorted(e.incidents.values(), key=lambda i: i.opened_at)
    assert incidents[1].repeat_of == incidents[0].id


def test_no_pools_changes_nothing() -> None:
    """Without pools, actions go to the route's sinks only, with no recipients."""
    e = engine([])
    (page,) = play(e, [fire("A", 0)], T + 100)
    assert page.sinks == ("pager",) and page.recipients == () and page.incident.assignee is None


def test_raised_priority_is_notified_at_once_and_resets_sla_targets() -> None:
    """A critical alert joining a P4 incident raises it to P3 at once (no group_interval wait), with new SLA."""
    e = engine([{"name": "db", "members": members("alice")}],
               sla={"targets": {"P4": {"acknowledge": "1h"}, "P3": {"acknowledge": "10m"}}},
               routes=[route(group_by=("team",), pool="db")])
    actions = play(e, [fire("A", 0, severity="warning", labels={"team": "x"}),
                       fire("B", 60, severity="critical", labels={"team": "x"})], T + 100)
    assert rows(actions) == [(30, "open", "alice"), (60, "update", "alice")]
    assert actions[1].reason.startswith("priority raised P4 -> P3")
    assert actions[1].incident.sla == {"acknowledge_by": T + 30 + 600}


def test_schedule_handoff_across_a_dst_change_assigns_the_right_member() -> None:
    """A 09:00 Europe/Berlin daily handoff stays at 09:00 local on the day clocks go back (08:00 UTC)."""
    schedule = {"name": "eu", "time_zone": "Europe/Berlin",
                "layers": [{"name": "daily", "rotation": "daily", "members": ["anna", "ben"],
                            "start": "2026-10-24", "handoff": "09:00"}]}
    e = engine([{"name": "db", "members": members("anna", "ben"), "schedule": "eu"}], schedules=[schedule])
    sunday_0830_utc = 1792917000.0  # 2026-10-25 08:30 UTC = 09:30 CET, after the handoff to ben
    sunday_0730_utc = sunday_0830_utc - 3600  # 08:30 CET: still anna's shift from Saturday 09:00 CEST
    first = alert("A", starts_at=sunday_0730_utc)
    second = alert("B", starts_at=sunday_0830_utc)
    actions = play(e, [(sunday_0730_utc, first), (sunday_0830_utc, second)], sunday_0830_utc + 100)
    assert [(a.incident.assignee) for a in actions] == ["anna", "ben"]


def test_a_rule_with_skills_assigns_only_members_who_have_them() -> None:
    """A rule asking for postgres skips members without it; when nobody on call has it, nobody is assigned."""
    skilled = [{"name": "alice", "skills": ["mysql"]}, {"name": "bob", "skills": ["postgres", "mysql"]}]
    rules = {"triage_pool": "db", "rules": [{"matchers": ['engine="postgres"'], "pool": "db",
                                             "skills": ["postgres"]},
                                            {"matchers": ['engine="oracle"'], "pool": "db", "skills": ["oracle"]}]}
    e = engine([{"name": "db", "members": skilled}], assignment=rules, routes=[route(group_by=("alertname",))])
    actions = play(e, [fire("A", 0, labels={"engine": "postgres"}), fire("B", 1, labels={"engine": "postgres"}),
                       fire("C", 2, labels={"engine": "oracle"})], T + 100)
    assert [a.incident.assignee for a in actions] == ["bob", "bob", None]
    oracle = e.incidents[actions[2].incident.id]
    assert "nobody on call in pool db has the skills oracle (on call: alice, bob)" in oracle.assign_reason
