"""Tests of bridge/pools.py and bridge/pool_settings.py: check-config's pool problems (as `path: reason`),
which pool an incident goes to (`PoolDirectory.decide`) and which member gets it (`PoolDirectory.choose`)."""

from __future__ import annotations

import copy
import re
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

import bridge.settings
from bridge.cli import main
from bridge.errors import ConfigError
from bridge.oncall import ScheduleSettings
from bridge.pool_settings import AssignmentSettings, PoolSettings, SlaSettings
from bridge.pools import PoolDecision, PoolDirectory
from bridge.settings import validate_settings
from tests.bridge.conftest import alert

#: Monday 2026-11-23 10:00 UTC (11:00 in Berlin): "now" for check-config's gap search.
NOW = 1795428000.0

BASE: dict[str, Any] = {
    "sources": [{"name": "am", "type": "alertmanager"}],
    "sinks": [{"name": "out", "type": "log"}],
    "routes": [{"name": "default", "sinks": ["out"], "pool": "db"}],
    "pools": [
        {"name": "db", "schedule": "db-primary", "escalation": "db-policy", "notify": ["out"],
         "members": [{"name": "alice", "notify": ["out"]}, {"name": "bob"}]},
        {"name": "web", "escalation": "web-policy", "members": [{"name": "wendy"}]},
    ],
    "schedules": [{"name": "db-primary", "time_zone": "Europe/Berlin", "layers": [
        {"name": "weekly", "members": ["alice", "bob"], "rotation": "weekly", "start": "2026-01-05"}]}],
    "escalation_policies": [
        {"name": "db-policy", "tiers": [{"assignee": True, "timeouts": {"P1": "1m"}},
                                        {"schedules": ["db-primary"]}, {"members": ["wendy"]}]},
        {"name": "web-policy", "tiers": [{"assignee": True}]},
    ],
    "assignment": {"triage_pool": "web", "rules": [{"matchers": ["team=db"], "pool": "db"}]},
    "sla": {"targets": {"P1": {"acknowledge": "5m", "resolve": "1h"}}},
}


@pytest.fixture
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """check-config looks for schedule gaps from `time.time()`: pin it to NOW."""
    monkeypatch.setattr(bridge.settings, "time", types.SimpleNamespace(time=lambda: NOW))


def edited(**changes: Any) -> dict[str, Any]:
    """BASE with values set at paths, e.g. `edited(**{"pools[0].members[0].quota": 0})`."""
    config = copy.deepcopy(BASE)
    for path, value in changes.items():
        steps: list[str | int] = [int(i) if i else k for k, i in re.findall(r"(\w+)|\[(\d+)\]", path)]
        target: Any = config
        for step in steps[:-1]:
            target = target[step]
        last = steps[-1]
        if isinstance(target, list) and last == len(target):
            target.append(value)
        else:
            target[last] = value
    return config


def problems(config: Mapping[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_settings(config, env={})
    return list(caught.value.problems)


def test_base_config_is_valid(fixed_now: None) -> None:
    """The table's starting point validates, so each case below shows exactly the problem it adds."""
    settings = validate_settings(BASE, env={})
    assert [pool.name for pool in settings.pools] == ["db", "web"]


LATER_START = {"name": "weekly", "members": ["alice", "bob"], "rotation": "weekly", "start": "2026-12-01"}
OVERLAPPING = [{"member": "alice", "start": "2026-12-01T00:00", "end": "2026-12-03T00:00"},
               {"member": "bob", "start": "2026-12-02T00:00", "end": "2026-12-04T00:00"}]
LOOP = [{"name": "db-policy", "tiers": [{"assignee": True}, {"hand_off": "web"}]},
        {"name": "web-policy", "tiers": [{"assignee": True}, {"hand_off": "db"}]}]

PROBLEMS = [
    ("schedule-gap", edited(**{"schedules[0].layers[0]": LATER_START}),
     ["schedules[0]: gap: nobody on call from 2026-11-23 11:00 CET to 2026-12-01 09:00 CET"]),
    ("overlapping-overrides", edited(**{"schedules[0].overrides": OVERLAPPING}),
     ["schedules[0].overrides[1]: overlaps overrides[0] from 2026-12-02 00:00 CET to 2026-12-03 00:00 CET; "
      "overrides[1] (bob) wins there"]),
    ("unknown-member-in-layer", edited(**{"schedules[0].layers[0].members[2]": "zed"}),
     ["schedules[0].layers[0].members[2]: unknown member 'zed'"]),
    ("unknown-member-in-override", edited(**{"schedules[0].overrides": [
        {"member": "zed", "start": "2026-12-01T00:00", "end": "2026-12-02T00:00"}]}),
     ["schedules[0].overrides[0].member: unknown member 'zed'"]),
    ("unknown-member-replaced", edited(**{"schedules[0].overrides": [
        {"member": "bob", "start": "2026-12-01T00:00", "end": "2026-12-02T00:00", "replaces": "zed"}]}),
     ["schedules[0].overrides[0].replaces: unknown member 'zed'"]),
    ("unknown-member-in-tier", edited(**{"escalation_policies[0].tiers[2].members": ["zed"]}),
     ["escalation_policies[0].tiers[2].members[0]: unknown member 'zed'"]),
    ("unknown-schedule-of-pool", edited(**{"pools[1].schedule": "nope"}),
     ["pools[1].schedule: unknown schedule 'nope'"]),
    ("unknown-schedule-in-tier", edited(**{"escalation_policies[0].tiers[1].schedules": ["nope"]}),
     ["escalation_policies[0].tiers[1].schedules[0]: unknown schedule 'nope'"]),
    ("unknown-policy", edited(**{"pools[1].escalation": "nope"}),
     ["pools[1].escalation: unknown escalation policy 'nope'"]),
    ("unknown-pool-in-rule", edited(**{"assignment.rules[0].pool": "nope"}),
     ["assignment.rules[0].pool: unknown pool 'nope'"]),
    ("unknown-triage-pool", edited(**{"assignment.triage_pool": "nope"}),
     ["assignment.triage_pool: unknown pool 'nope'"]),
    ("unknown-pool-of-route", edited(**{"routes[0].pool": "nope"}), ["routes[0].pool: unknown pool 'nope'"]),
    ("unknown-hand-off-pool", edited(**{"escalation_policies[1].tiers[0]": {"hand_off": "nope"}}),
     ["escalation_policies[1].tiers[0].hand_off: unknown pool 'nope'"]),
    ("unknown-sink-of-pool", edited(**{"pools[0].notify": ["nope"]}), ["pools[0].notify[0]: unknown sink 'nope'"]),
    ("unknown-sink-of-member", edited(**{"pools[0].members[0].notify": ["out", "nope"]}),
     ["pools[0].members[0].notify[1]: unknown sink 'nope'"]),
    ("duplicate-pool-name", edited(**{"pools[2]": {"name": "db", "members": [{"name": "dora"}]}}),
     ["pools[2].name: duplicate name 'db' (also pools[0])"]),
    ("duplicate-member-in-pool", edited(**{"pools[0].members[2]": {"name": "alice"}}),
     ["pools[0].members[2].name: duplicate member 'alice'"]),
    ("policy-without-tiers", edited(**{"escalation_policies[1].tiers": []}),
     ["escalation_policies[1].tiers: List should have at least 1 item after validation, not 0"]),
    ("tier-pages-nobody", edited(**{"escalation_policies[0].tiers[1]": {"timeout": "5m"}}),
     ["escalation_policies[0].tiers[1]: a tier must page someone: set assignee, schedules, members or hand_off"]),
    ("hand-off-loop", edited(escalation_policies=LOOP),
     ["escalation_policies[0]: escalation loop: db -> web -> db (hand_off)"]),
    ("quota-zero", edited(**{"pools[0].members[0].quota": 0}),
     ["pools[0].members[0].quota: Input should be greater than or equal to 1"]),
    ("rules-without-triage-pool", edited(**{"assignment.triage_pool": None}),
     ["assignment.triage_pool: required with assignment rules (where unmatched or ambiguous incidents go)"]),
    ("bad-sla-priority", edited(**{"sla.targets.urgent": {"acknowledge": "5m"}}),
     ["sla.targets: keys must be priorities P1..P9, got 'urgent'"]),
    ("bad-timeout-priority", edited(**{"escalation_policies[0].tiers[0].timeouts": {"p1": "1m", "P0": "1m"}}),
     ["escalation_policies[0].tiers[0].timeouts: keys must be priorities P1..P9, got 'p1', 'P0'"]),
    ("bad-rule-priority", edited(**{"assignment.rules[0].priorities": ["P1", "high"]}),
     ["assignment.rules[0].priorities: must be priorities P1..P9, got 'high'"]),
    ("bad-schedule-time-zone", edited(**{"schedules[0].time_zone": "Mars/Olympus"}),
     ["schedules[0].time_zone: unknown time zone 'Mars/Olympus' (use an IANA name like Europe/Berlin)"]),
    ("bad-member-time-zone", edited(**{"pools[1].members[0].time_zone": "CEST+2"}),
     ["pools[1].members[0].time_zone: unknown time zone 'CEST+2' (use an IANA name like Europe/Berlin)"]),
]


@pytest.mark.parametrize(("config", "expected"), [case[1:] for case in PROBLEMS], ids=[case[0] for case in PROBLEMS])
def test_pool_problems(fixed_now: None, config: dict[str, Any], expected: list[str]) -> None:
    """check-config reports each problem of the pool sections once, at the path of the field at fault."""
    assert problems(config) == expected


def test_schedule_gaps_are_listed_five_at_a_time(fixed_now: None) -> None:
    """A schedule with nightly gaps lists the first five (in the schedule's local time) and counts the rest."""
    weekdays = {"name": "office", "members": ["alice", "bob"], "rotation": "daily", "start": "2026-01-05",
                "restrict": [{"days": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                              "start": "09:00", "end": "17:00"}]}
    found = problems(edited(**{"schedules[0].layers[0]": weekdays}))
    assert found[:2] == ["schedules[0]: gap: nobody on call from 2026-11-23 17:00 CET to 2026-11-24 09:00 CET",
                         "schedules[0]: gap: nobody on call from 2026-11-24 17:00 CET to 2026-11-25 09:00 CET"]
    assert found[4] == "schedules[0]: gap: nobody on call from 2026-11-27 17:00 CET to 2026-11-30 09:00 CET"
    assert found[5] == "schedules[0]: gap: and 15 more"
    assert len(found) == 6


def test_allow_gaps_silences_only_the_gaps(fixed_now: None) -> None:
    """A schedule with `allow_gaps: true` (business hours) is not reported for its gaps, but still for the rest."""
    weekdays = {"name": "office", "members": ["alice", "zed"], "rotation": "daily", "start": "2026-01-05",
                "restrict": [{"days": ["monday"], "start": "09:00", "end": "17:00"}]}
    config = edited(**{"schedules[0].layers[0]": weekdays, "schedules[0].allow_gaps": True})
    assert problems(config) == ["schedules[0].layers[0].members[1]: unknown member 'zed'"]


def test_check_config_prints_every_pool_problem(fixed_now: None, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`alertbridge check-config` on a file with several pool problems exits 2 and prints each of them."""
    config = edited(**{
        "schedules[0].layers[0].members[2]": "zed",
        "pools[1].escalation": "nope",
        "escalation_policies[0].tiers[2].members": ["ghost"],
        "assignment.rules[0].pool": "elsewhere",
        "schedules[0].overrides": OVERLAPPING,
    })
    path = tmp_path / "pools.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["check-config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    printed = captured.err.splitlines()
    assert printed[0] == "invalid configuration:"
    assert sorted(printed[1:]) == sorted(f"  {line}" for line in [
        "pools[1].escalation: unknown escalation policy 'nope'",
        "schedules[0].layers[0].members[2]: unknown member 'zed'",
        "schedules[0].overrides[1]: overlaps overrides[0] from 2026-12-02 00:00 CET to 2026-12-03 00:00 CET; "
        "overrides[1] (bob) wins there",
        "escalation_policies[0].tiers[2].members[0]: unknown member 'ghost'",
        "assignment.rules[0].pool: unknown pool 'elsewhere'",
    ])


# ------------------------------------------------------------------------------------- which pool

def member_list(*names: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"name": name, **extra} for name in names]


def directory(rules: Sequence[Mapping[str, Any]] = (), triage: str | None = "triage",
              pools: Sequence[Mapping[str, Any]] | None = None,
              schedules: Sequence[Mapping[str, Any]] = ()) -> PoolDirectory:
    """A directory of the pools db (alice, bob, carol), web (wendy) and triage (tom), and these rules."""
    pools = pools if pools is not None else [{"name": "db", "members": member_list("alice", "bob", "carol")},
                                             {"name": "web", "members": member_list("wendy")},
                                             {"name": "triage", "members": member_list("tom")}]
    return PoolDirectory.build([PoolSettings.model_validate(p) for p in pools],
                               [ScheduleSettings.model_validate(s) for s in schedules],
                               [],
                               AssignmentSettings.model_validate({"rules": list(rules), "triage_pool": triage}),
                               SlaSettings())


OWNERS = {"api": "web", "postgres": "db", "legacy": "finance"}
OWNER_RULE = {"owner": True}


def owner_of(service: str) -> str | None:
    return OWNERS.get(service)


DECISIONS: list[tuple[str, list[dict[str, Any]], dict[str, Any], PoolDecision]] = [
    ("label-rule", [{"matchers": ["team=storage"], "pool": "db"}, OWNER_RULE],
     {"labels": {"team": "storage"}},
     PoolDecision("db", (), "assignment.rules[0] matched", "assignment.rules[0]")),
    ("first-match-wins", [{"matchers": ["team=storage"], "pool": "db"}, {"matchers": ["team=~.+"], "pool": "web"}],
     {"labels": {"team": "storage"}},
     PoolDecision("db", (), "assignment.rules[0] matched", "assignment.rules[0]")),
    ("continue-keeps-later-pools-informed",
     [{"matchers": ["team=storage"], "pool": "db", "continue": True},
      {"matchers": ["team=storage"], "pool": "db", "continue": True},
      {"matchers": ["@severity=critical"], "pool": "web", "continue": True},
      {"matchers": ["team=other"], "pool": "triage"}],
     {"labels": {"team": "storage"}},
     PoolDecision("db", ("web",), "assignment.rules[0] matched", "assignment.rules[0]")),
    ("rule-without-continue-stops", [{"matchers": ["team=storage"], "pool": "db"},
                                     {"matchers": ["team=storage"], "pool": "web"}],
     {"labels": {"team": "storage"}},
     PoolDecision("db", (), "assignment.rules[0] matched", "assignment.rules[0]")),
    ("priorities-filter", [{"priorities": ["P1"], "pool": "web"}, OWNER_RULE],
     {"service": "postgres", "root_cause": "postgres", "priority": "P3"},
     PoolDecision("db", (), "assignment.rules[1]: owner of the probable root cause postgres",
                  "assignment.rules[1]")),
    ("owner-of-root-cause", [OWNER_RULE], {"service": "api", "root_cause": "postgres"},
     PoolDecision("db", (), "assignment.rules[0]: owner of the probable root cause postgres",
                  "assignment.rules[0]")),
    ("owner-of-only-service", [OWNER_RULE], {"service": "api"},
     PoolDecision("web", (), "assignment.rules[0]: owner of its service api", "assignment.rules[0]")),
    ("owner-not-a-pool", [OWNER_RULE], {"service": "legacy"},
     PoolDecision("triage", (), "to triage: assignment.rules[0]: owner of its service legacy names 'finance', "
                                "which is not a configured pool", "triage")),
    ("triage-no-rule-matched", [{"matchers": ["team=storage"], "pool": "db"}], {},
     PoolDecision("triage", (), "to triage: no assignment rule matched", "triage")),
    ("triage-service-unknown", [OWNER_RULE], {},
     PoolDecision("triage", (), "to triage: assignment.rules[0] defers to the catalog: the catalog cannot resolve "
                                "the service of its alerts", "triage")),
    ("triage-service-without-owner", [OWNER_RULE], {"service": "orphan"},
     PoolDecision("triage", (), "to triage: assignment.rules[0] defers to the catalog: service orphan has no "
                                "owner in the catalog", "triage")),
    ("triage-root-cause-without-owner", [OWNER_RULE],
     {"service": "api", "root_cause": "orphan", "services": {"api", "orphan"}},
     PoolDecision("triage", (), "to triage: assignment.rules[0] defers to the catalog: the probable root cause "
                                "orphan has no owner in the catalog", "triage")),
    ("triage-root-cause-unknown", [OWNER_RULE], {"service": "api", "services": {"api", "postgres"}},
     PoolDecision("triage", (), "to triage: assignment.rules[0] defers to the catalog: the root cause is unknown "
                                "among services api, postgres", "triage")),
    ("no-rules-route-pool", [], {"route_pool": "web", "root_cause": "postgres"},
     PoolDecision("web", (), "the route's pool", "route")),
    ("no-rules-root-cause-owner", [], {"root_cause": "postgres"},
     PoolDecision("db", (), "owner of the probable root cause postgres", "catalog")),
]


@pytest.mark.parametrize(("rules", "incident", "expected"), [case[1:] for case in DECISIONS],
                         ids=[case[0] for case in DECISIONS])
def test_decide(rules: list[dict[str, Any]], incident: dict[str, Any], expected: PoolDecision) -> None:
    """The first matching rule picks the pool, continue rules add informed pools, owner rules ask the catalog,
    and anything unmatched or ambiguous goes to triage with the reason."""
    service = incident.get("service")
    alerts = [alert("A", service=service, labels=incident.get("labels"))]
    services = incident.get("services", {service} if service else set())
    decision = directory(rules).decide(alerts, incident.get("priority", "P1"), incident.get("route_pool"),
                                       incident.get("root_cause"), services, owner_of)
    assert decision == expected


def test_decide_without_triage_pool_leaves_the_incident_unassigned() -> None:
    """With no triage_pool, an unplaced incident gets no pool and the reason says so."""
    decision = directory([{"matchers": ["team=storage"], "pool": "db"}], triage=None).decide(
        [alert("A")], "P2", None, None, set(), owner_of)
    assert decision == PoolDecision(None, (), "no assignment rule matched; no triage_pool configured: unassigned",
                                    "triage")


# ------------------------------------------------------------------------------------- which member

#: Monday 2026-11-23 10:00 UTC.
MONDAY_10 = NOW

CHOICES: list[tuple[str, Mapping[str, int], str | None, str | None, str | None, str]] = [
    ("first-member-to-start", {}, None, None, "alice",
     "round robin in pool db: alice (0/1 open), on call per no schedule: every member"),
    ("after-the-last-assigned", {}, "alice", None, "bob",
     "round robin in pool db: bob (0/1 open), on call per no schedule: every member"),
    ("wraps-around", {}, "carol", None, "alice",
     "round robin in pool db: alice (0/1 open), on call per no schedule: every member"),
    ("last-no-longer-a-member", {}, "zed", None, "alice",
     "round robin in pool db: alice (0/1 open), on call per no schedule: every member"),
    ("skips-members-at-quota", {"bob": 1}, "alice", None, "carol",
     "round robin in pool db: carol (0/1 open), on call per no schedule: every member; skipped bob (quota 1/1)"),
    ("everyone-at-quota", {"alice": 1, "bob": 1, "carol": 2}, "alice", None, None,
     "every on-call member of pool db is at quota (alice 1/1, bob 1/1, carol 2/1)"),
    ("keep-stays-even-at-quota", {"bob": 1}, "carol", "bob", "bob",
     "bob stays assigned (on call per no schedule: every member)"),
]


@pytest.mark.parametrize(("load", "last", "keep", "member", "reason"), [case[1:] for case in CHOICES],
                         ids=[case[0] for case in CHOICES])
def test_choose(load: Mapping[str, int], last: str | None, keep: str | None, member: str | None,
                reason: str) -> None:
    """Assignment is round robin in member order after the last assignee, skipping members at quota; a kept
    assignee stays."""
    pools = [{"name": "db", "members": member_list("alice", "bob", "carol", quota=1)}]
    found = directory(pools=pools)
    candidate = found.choose(found.pools["db"], MONDAY_10, load, last, keep=keep)
    assert (candidate.member, candidate.reason) == (member, reason)


BERLIN_MORNING = {"time_zone": "Europe/Berlin",
                  "working_hours": [{"days": ["monday"], "start": "09:00", "end": "12:00"}]}
TOKYO_DAY = {"time_zone": "Asia/Tokyo", "working_hours": [{"days": ["monday"], "start": "09:00", "end": "17:00"}]}


@pytest.mark.parametrize(("at", "member", "reason"), [
    (MONDAY_10, "alice", "round robin in pool db: alice (0/5 open), on call per no schedule: members within "
                         "their working hours"),
    (MONDAY_10 + 2 * 3600, None, "nobody in pool db is on call (no schedule: members within their working hours)"),
], ids=["one-member-working", "nobody-working"])
def test_choose_within_working_hours(at: float, member: str | None, reason: str) -> None:
    """Without a schedule, members who declare working hours are chosen only within them, in their own zone."""
    pools = [{"name": "db", "members": [*member_list("alice", **BERLIN_MORNING), *member_list("bob", **TOKYO_DAY)]}]
    found = directory(pools=pools)
    candidate = found.choose(found.pools["db"], at, {}, "alice")
    assert (candidate.member, candidate.reason) == (member, reason)


def test_choose_follows_the_schedule_and_keep_needs_the_member_on_call() -> None:
    """With a schedule only its on-call member is eligible; a kept assignee who is off call is replaced."""
    schedule = {"name": "db-primary", "time_zone": "UTC",
                "layers": [{"name": "weekly", "rotation": "weekly", "members": ["carol", "bob"],
                            "start": "2026-11-23", "handoff": "09:00"}]}
    pools = [{"name": "db", "schedule": "db-primary", "members": member_list("alice", "bob", "carol")}]
    found = directory(pools=pools, schedules=[schedule])
    candidate = found.choose(found.pools["db"], MONDAY_10, {}, None, keep="alice")
    assert (candidate.member, candidate.reason) == ("carol", "round robin in pool db: carol (0/5 open), on call "
                                                             "per schedule db-primary")


def test_choose_nobody_on_call_in_the_schedule() -> None:
    """Before a schedule's first shift nobody is eligible, and the reason names the schedule."""
    schedule = {"name": "db-primary", "time_zone": "UTC",
                "layers": [{"name": "weekly", "rotation": "weekly", "members": ["bob"], "start": "2026-12-07"}]}
    pools = [{"name": "db", "schedule": "db-primary", "members": member_list("alice", "bob")}]
    found = directory(pools=pools, schedules=[schedule])
    candidate = found.choose(found.pools["db"], MONDAY_10, {}, None)
    assert (candidate.member, candidate.reason) == (None, "nobody in pool db is on call (schedule db-primary)")
