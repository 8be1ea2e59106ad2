"""The configuration of resolver pools (`pools`, `assignment`, `escalation_policies`, `sla`) and
its cross-checks for check-config; what it means is described in `bridge.pools`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.oncall import WEEKDAYS, Clock, ClockOrMidnight, Weekday, zone_info
from bridge.plugins import Duration
from bridge.routing import matcher_problems

__all__ = [
    "AssignmentRuleSettings",
    "AssignmentSettings",
    "EscalationPolicySettings",
    "MemberSettings",
    "PoolSettings",
    "SlaSettings",
    "SlaTarget",
    "TierSettings",
    "WorkingHours",
    "pool_problems",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _weekdays() -> list[Weekday]:
    return list(WEEKDAYS[:5])


class WorkingHours(_Model):
    days: list[Weekday] = Field(default_factory=_weekdays, description="Weekdays these hours apply to.")
    start: Clock = Field("09:00", description="Start, HH:MM local time.")
    end: ClockOrMidnight = Field("17:00", description="End, HH:MM local time (24:00: midnight).")


class MemberSettings(_Model):
    name: str = Field(description="Unique member name (schedules and escalation tiers refer to it).",
                      pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}$")
    contacts: dict[Literal["email", "slack", "teams", "phone"], str] = Field(
        default_factory=dict, description="Handle per channel: email address, Slack user id, Teams user "
                                          "principal name, phone number (E.164).")
    notify: list[str] = Field(default_factory=list, description="Sinks that reach this member personally.")
    skills: list[str] = Field(default_factory=list, description="Skills/tags; an assignment rule with `skills` "
                                                                "assigns only members who have them all.")
    time_zone: str = Field("UTC", description="IANA time zone of the working hours.")
    working_hours: list[WorkingHours] = Field(
        default_factory=list, description="When the member may be assigned, if the pool has no schedule "
                                          "(empty: any time).")
    quota: int = Field(5, ge=1, description="Most open incidents assigned to this member at once.")

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone_info(value)
        return value


class PoolSettings(_Model):
    name: str = Field(description="Unique pool name (routes, rules and the catalog's owners refer to it).",
                      pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    members: list[MemberSettings] = Field(description="Members, in round-robin order.", min_length=1)
    schedule: str | None = Field(None, description="On-call schedule deciding who is on call (by name).")
    escalation: str | None = Field(None, description="Escalation policy (by name); none: no escalation.")
    notify: list[str] = Field(default_factory=list, description="Sinks of the pool's channel: every lifecycle "
                                                                "notification of its incidents goes there.")


class TierSettings(_Model):
    name: str | None = Field(None, description="Tier name shown in notifications (default L1, L2, ...).")
    assignee: bool = Field(False, description="Page the incident's assignee.")
    schedules: list[str] = Field(default_factory=list, description="Page whoever is on call in these schedules.")
    members: list[str] = Field(default_factory=list, description="Page these members (by name).")
    hand_off: str | None = Field(None, description="Hand the incident to this pool: it is re-assigned there "
                                                   "and escalates on that pool's policy.")
    timeout: Duration = Field(300.0, gt=0, description="Escalate to the next tier when not acknowledged "
                                                       "within this time.")
    timeouts: dict[str, Duration] = Field(default_factory=dict,
                                          description="Timeout by priority, e.g. {P1: 2m} (P1 faster).")

    @model_validator(mode="after")
    def _someone(self) -> TierSettings:
        if not (self.assignee or self.schedules or self.members or self.hand_off):
            raise ValueError("a tier must page someone: set assignee, schedules, members or hand_off")
        return self

    @field_validator("timeouts")
    @classmethod
    def _priorities(cls, value: dict[str, float]) -> dict[str, float]:
        _check_priorities(value, "keys must be")
        if any(v <= 0 for v in value.values()):
            raise ValueError("timeouts must be positive")
        return value


class EscalationPolicySettings(_Model):
    name: str = Field(description="Unique policy name.", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    tiers: list[TierSettings] = Field(description="Tiers in order: L1, L2, ...", min_length=1)
    repeat: int = Field(0, ge=0, le=100, description="Times the whole policy starts again from the first "
                                                     "tier after the last one timed out.")


class AssignmentRuleSettings(_Model):
    matchers: list[str] = Field(default_factory=list, description="Alertmanager matchers (labels and @source, "
                                                                  "@service, @severity, @resource); some firing "
                                                                  "alert of the incident must match them all.")
    priorities: list[str] = Field(default_factory=list, description="Only incidents of these priorities.")
    pool: str | None = Field(None, description="Pool the incidents go to.")
    skills: list[str] = Field(default_factory=list, description="Assign only members with all these skills "
                                                                "(e.g. [postgres]).")
    owner: bool = Field(False, description="Defer to the service catalog: the owner of the probable root "
                                           "cause (or of the incident's only service).")
    continue_: bool = Field(False, alias="continue", description="Keep evaluating later rules; the pools they "
                                                                 "name are kept informed.")

    @model_validator(mode="after")
    def _target(self) -> AssignmentRuleSettings:
        if (self.pool is None) == (not self.owner):
            raise ValueError("set exactly one of pool and owner")
        return self

    @field_validator("priorities")
    @classmethod
    def _priorities(cls, value: list[str]) -> list[str]:
        _check_priorities(value, "must be")
        return value


class AssignmentSettings(_Model):
    rules: list[AssignmentRuleSettings] = Field(default_factory=list, description="Ordered; first match wins "
                                                                                  "unless continue.")
    triage_pool: str | None = Field(None, description="Pool for incidents no rule matches or whose owner is "
                                                      "ambiguous (instead of a guess).")


class SlaTarget(_Model):
    acknowledge: Duration | None = Field(None, gt=0, description="Time to acknowledge, from the page.")
    resolve: Duration | None = Field(None, gt=0, description="Time to resolve, from the page.")


class SlaSettings(_Model):
    targets: dict[str, SlaTarget] = Field(default_factory=dict, description="Priority -> targets, e.g. "
                                                                            "{P1: {acknowledge: 5m, resolve: 1h}}.")
    warn_at: float = Field(0.8, gt=0, lt=1, description="Share of a target after which a warning is sent.")

    @field_validator("targets")
    @classmethod
    def _priorities(cls, value: dict[str, SlaTarget]) -> dict[str, SlaTarget]:
        _check_priorities(value, "keys must be")
        return value


def _check_priorities(values: Iterable[str], what: str) -> None:
    bad = [p for p in values if not (len(p) == 2 and p[0] == "P" and p[1] in "123456789")]
    if bad:
        raise ValueError(f"{what} priorities P1..P9, got {', '.join(map(repr, bad))}")


# ---------------------------------------------------------------------------------- check-config

def pool_problems(settings: Any, at: float) -> list[str]:
    """Cross-reference problems of the pool sections, each as `path: reason` (for check-config).

    Duplicate names are found with every other section's, in `bridge.settings`."""
    from bridge.oncall import schedule_problems

    problems: list[str] = []
    sinks = {s.name for s in settings.sinks}
    pools = {p.name: i for i, p in enumerate(settings.pools)}
    schedules = {s.name: i for i, s in enumerate(settings.schedules)}
    policies = {p.name: i for i, p in enumerate(settings.escalation_policies)}
    members: set[str] = set()
    for i, pool in enumerate(settings.pools):
        seen_members: set[str] = set()
        for j, member in enumerate(pool.members):
            if member.name in seen_members:
                problems.append(f"pools[{i}].members[{j}].name: duplicate member {member.name!r}")
            seen_members.add(member.name)
            members.add(member.name)
            problems.extend(f"pools[{i}].members[{j}].notify[{k}]: unknown sink {s!r}"
                            for k, s in enumerate(member.notify) if s not in sinks)
        problems.extend(f"pools[{i}].notify[{k}]: unknown sink {s!r}" for k, s in enumerate(pool.notify)
                        if s not in sinks)
        if pool.schedule is not None and pool.schedule not in schedules:
            problems.append(f"pools[{i}].schedule: unknown schedule {pool.schedule!r}")
        if pool.escalation is not None and pool.escalation not in policies:
            problems.append(f"pools[{i}].escalation: unknown escalation policy {pool.escalation!r}")
    for i, schedule in enumerate(settings.schedules):
        found = schedule_problems(schedule, members, at)
        if schedule.allow_gaps:
            found = [p for p in found if not p.startswith("gap:")]
        problems.extend(f"schedules[{i}]: {p}" if p.startswith("gap:") else f"schedules[{i}].{p}" for p in found)
    for i, policy in enumerate(settings.escalation_policies):
        for j, tier in enumerate(policy.tiers):
            where = f"escalation_policies[{i}].tiers[{j}]"
            problems.extend(f"{where}.schedules[{k}]: unknown schedule {s!r}" for k, s in enumerate(tier.schedules)
                            if s not in schedules)
            problems.extend(f"{where}.members[{k}]: unknown member {m!r}" for k, m in enumerate(tier.members)
                            if m not in members)
            if tier.hand_off is not None and tier.hand_off not in pools:
                problems.append(f"{where}.hand_off: unknown pool {tier.hand_off!r}")
    problems.extend(_hand_off_loops(settings))
    assignment = settings.assignment
    for i, rule in enumerate(assignment.rules):
        if rule.pool is not None and rule.pool not in pools:
            problems.append(f"assignment.rules[{i}].pool: unknown pool {rule.pool!r}")
        problems.extend(matcher_problems(f"assignment.rules[{i}].matchers", rule.matchers))
    if assignment.triage_pool is not None and assignment.triage_pool not in pools:
        problems.append(f"assignment.triage_pool: unknown pool {assignment.triage_pool!r}")
    if assignment.rules and assignment.triage_pool is None:
        problems.append("assignment.triage_pool: required with assignment rules (where unmatched or ambiguous "
                        "incidents go)")
    for i, route in enumerate(settings.routes):
        if settings.pools and route.pool is not None and route.pool not in pools:
            problems.append(f"routes[{i}].pool: unknown pool {route.pool!r}")
    return problems


def _hand_off_loops(settings: Any) -> list[str]:
    """Escalation loops: pool A's policy hands off to pool B whose policy hands back to A."""
    policy_of = {p.name: p.escalation for p in settings.pools}
    tiers_of = {p.name: p for p in settings.escalation_policies}

    def hand_offs(pool: str) -> list[str]:
        policy = tiers_of.get(policy_of.get(pool) or "")
        return [t.hand_off for t in policy.tiers if t.hand_off] if policy else []

    problems: list[str] = []
    reported: set[frozenset[str]] = set()
    for start in policy_of:
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        while stack:
            pool, path = stack.pop()
            for nxt in hand_offs(pool):
                if nxt == start:
                    cycle = frozenset(path)
                    if cycle not in reported:
                        reported.add(cycle)
                        i = next(i for i, p in enumerate(settings.escalation_policies)
                                 if p.name == policy_of[start])
                        problems.append(f"escalation_policies[{i}]: escalation loop: "
                                        f"{' -> '.join([*path, start])} (hand_off)")
                elif nxt not in path and nxt in policy_of:
                    stack.append((nxt, [*path, nxt]))
    return problems
