"""Resolver pools: who an incident goes to, who is paged, and how long they have.

Configured in four top-level sections (all optional; with no `pools`, nothing here applies):

- `pools`: the teams that resolve incidents. A member has contact handles per channel (`email`,
  `slack`, `teams`, `phone`), the sinks that reach them (`notify`), skills, a time zone with working
  hours, and a `quota`: the most open incidents assigned to them at once. A pool may name an on-call
  `schedule` (see `bridge.oncall`), an `escalation` policy and the sinks of its channel (`notify`).
- `assignment`: ordered rules from incidents to pools, and the `triage_pool` for the rest.
- `escalation_policies`: tiers (L1 -> L2 -> L3) with a timeout each, repeated `repeat` times.
- `sla`: per priority, targets for time to acknowledge and time to resolve.

Who may be assigned: the members on call (in the pool's schedule when it has one, else within
their own working hours when they declare any, else always) whose open assigned incidents are below
their quota. Among those, assignment is round robin in the pool's member order, starting after the
member assigned last.

Which pool: the first assignment rule whose conditions hold (any firing alert of the incident
matches all its matchers; its priority is listed, when `priorities` is given). A rule names a
`pool`, or `owner: true` to defer to the service catalog: the owner of the incident's probable root
cause, or of its only service. A rule with `continue: true` lets later rules match as well: the
pools they name are kept informed (their channels get the notifications), while the incident is
assigned and escalated in the first. With no rules, the route's `pool`, else the root cause's owner
decides, as before pools existed. Whenever that is not a configured pool, or is ambiguous (no rule
matched, the catalog does not know the service, the root cause is unknown), the incident goes to
the `triage_pool`, and its timeline says why.

Everything here is pure and driven by the engine's clock, so replays and tests are exact.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.model import Alert, Recipient
from bridge.oncall import (
    WEEKDAYS,
    Clock,
    ClockOrMidnight,
    OverrideSettings,
    Schedule,
    ScheduleSettings,
    Weekday,
    minutes_of,
    zone_info,
)
from bridge.plugins import Duration
from bridge.routing import Matcher, matcher_problems, parse_matcher

__all__ = [
    "AssignmentRuleSettings",
    "AssignmentSettings",
    "Candidate",
    "EscalationPolicySettings",
    "MemberSettings",
    "PoolDecision",
    "PoolDirectory",
    "PoolSettings",
    "SlaSettings",
    "SlaTarget",
    "TierSettings",
    "WorkingHours",
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


# ---------------------------------------------------------------------------------- compiled form

@dataclass(frozen=True, slots=True)
class Member:
    name: str
    handles: Mapping[str, str]
    notify: tuple[str, ...]
    quota: int
    zone: ZoneInfo
    hours: tuple[tuple[frozenset[int], int, int], ...]  # (weekdays, start minute, end minute)
    skills: frozenset[str] = frozenset()

    def working(self, at: float) -> bool:
        if not self.hours:
            return True
        local = dt.datetime.fromtimestamp(at, self.zone)
        minute = local.hour * 60 + local.minute
        return any(local.weekday() in days and start <= minute < end for days, start, end in self.hours)

    def recipient(self) -> Recipient:
        return Recipient(self.name, dict(self.handles))


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    assignee: bool
    schedules: tuple[str, ...]
    members: tuple[str, ...]
    hand_off: str | None
    timeout: float
    timeouts: Mapping[str, float]

    def timeout_for(self, priority: str) -> float:
        return self.timeouts.get(priority, self.timeout)


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    tiers: tuple[Tier, ...]
    repeat: int


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    members: tuple[Member, ...]
    schedule: str | None
    policy: str | None
    notify: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    index: int
    matchers: tuple[Matcher, ...]
    priorities: frozenset[str]
    pool: str | None
    owner: bool
    continue_: bool
    skills: frozenset[str] = frozenset()

    def matches(self, alerts: Iterable[Alert], priority: str) -> bool:
        if self.priorities and priority not in self.priorities:
            return False
        return any(all(m.matches(a) for m in self.matchers) for a in alerts)


@dataclass(frozen=True, slots=True)
class PoolDecision:
    """Which pool an incident goes to, the pools kept informed, and why."""

    pool: str | None
    informed: tuple[str, ...]
    reason: str
    by: str  # "assignment.rules[2]", "route", "catalog", "triage"
    skills: frozenset[str] = frozenset()  # members assigned must have them all


@dataclass(frozen=True, slots=True)
class Candidate:
    """The outcome of choosing an assignee: who (None: nobody) and why, in words."""

    member: str | None
    reason: str


@dataclass(slots=True)
class PoolDirectory:
    """Pools, schedules, policies, assignment rules and SLA targets, compiled for the engine."""

    pools: dict[str, Pool] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    schedule_settings: dict[str, ScheduleSettings] = field(default_factory=dict)
    #: overrides added at run time (API, journaled): id -> (schedule, override, who and why)
    added_overrides: dict[str, tuple[str, OverrideSettings, dict[str, str]]] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    triage_pool: str | None = None
    sla: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    warn_at: float = 0.8
    members: dict[str, Member] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.pools)

    @classmethod
    def build(cls, pools: Sequence[PoolSettings], schedules: Sequence[ScheduleSettings],
              policies: Sequence[EscalationPolicySettings], assignment: AssignmentSettings,
              sla: SlaSettings) -> PoolDirectory:
        directory = cls()
        for pool in pools:
            members = tuple(_member(m) for m in pool.members)
            directory.pools[pool.name] = Pool(pool.name, members, pool.schedule, pool.escalation,
                                              tuple(pool.notify))
            for member in members:
                directory.members.setdefault(member.name, member)
        directory.schedule_settings = {s.name: s for s in schedules}
        directory.schedules = {s.name: Schedule.from_settings(s) for s in schedules}
        for policy in policies:
            tiers = tuple(Tier(t.name or f"L{i + 1}", t.assignee, tuple(t.schedules), tuple(t.members),
                               t.hand_off, t.timeout, dict(t.timeouts)) for i, t in enumerate(policy.tiers))
            directory.policies[policy.name] = Policy(policy.name, tiers, policy.repeat)
        directory.rules = tuple(
            Rule(i, tuple(parse_matcher(m) for m in r.matchers), frozenset(r.priorities), r.pool, r.owner,
                 r.continue_, frozenset(r.skills)) for i, r in enumerate(assignment.rules))
        directory.triage_pool = assignment.triage_pool
        directory.sla = {p: (t.acknowledge, t.resolve) for p, t in sla.targets.items()}
        directory.warn_at = sla.warn_at
        return directory

    # ----------------------------------------------------------------------------- run-time overrides

    def set_override(self, schedule: str, override_id: str, override: OverrideSettings,
                     meta: dict[str, str]) -> None:
        """Add (or replace) an override of `schedule`: above the configured ones, later ones winning."""
        self.added_overrides[override_id] = (schedule, override, meta)
        self._rebuild_schedule(schedule)

    def delete_override(self, override_id: str) -> None:
        schedule, _, _ = self.added_overrides.pop(override_id)
        self._rebuild_schedule(schedule)

    def _rebuild_schedule(self, schedule: str) -> None:
        base = self.schedule_settings[schedule]
        added = [o for s, o, _ in self.added_overrides.values() if s == schedule]
        self.schedules[schedule] = Schedule.from_settings(base.model_copy(update={"overrides": [*base.overrides,
                                                                                                 *added]}))

    # ----------------------------------------------------------------------------- which pool

    def decide(self, alerts: Sequence[Alert], priority: str, route_pool: str | None, root_cause: str | None,
               services: set[str], owner_of: Any) -> PoolDecision:
        """The pool of an incident with these firing `alerts` (see the module docstring)."""
        if not self.rules:
            if route_pool is not None:
                return self._known(route_pool, (), "the route's pool", "route")
            if root_cause is not None and owner_of(root_cause):
                return self._known(owner_of(root_cause), (), f"owner of the probable root cause {root_cause}",
                                   "catalog")
            return self._triage(self._why_no_owner(root_cause, services, owner_of))
        chosen: PoolDecision | None = None
        informed: list[str] = []
        for rule in self.rules:
            if not rule.matches(alerts, priority):
                continue
            by = f"assignment.rules[{rule.index}]"
            if rule.owner:
                owner = self._owner(root_cause, services, owner_of)
                if owner is None:
                    decision = self._triage(f"{by} defers to the catalog: "
                                            f"{self._why_no_owner(root_cause, services, owner_of)}")
                else:
                    decision = self._known(owner[0], (), f"{by}: {owner[1]}", by)
            else:
                assert rule.pool is not None
                decision = self._known(rule.pool, (), f"{by} matched", by)
            if chosen is None:
                chosen = PoolDecision(decision.pool, (), decision.reason, decision.by, rule.skills)
            elif decision.pool is not None and decision.pool != chosen.pool and decision.pool not in informed:
                informed.append(decision.pool)
            if not rule.continue_:
                break
        if chosen is None:
            return self._triage("no assignment rule matched")
        return PoolDecision(chosen.pool, tuple(informed), chosen.reason, chosen.by, chosen.skills)

    def _known(self, pool: str, informed: tuple[str, ...], reason: str, by: str) -> PoolDecision:
        if pool in self.pools:
            return PoolDecision(pool, informed, reason, by)
        return self._triage(f"{reason} names {pool!r}, which is not a configured pool")

    def _triage(self, why: str) -> PoolDecision:
        if self.triage_pool is None:
            return PoolDecision(None, (), f"{why}; no triage_pool configured: unassigned", "triage")
        return PoolDecision(self.triage_pool, (), f"to triage: {why}", "triage")

    @staticmethod
    def _owner(root_cause: str | None, services: set[str], owner_of: Any) -> tuple[str, str] | None:
        if root_cause is not None and owner_of(root_cause):
            return owner_of(root_cause), f"owner of the probable root cause {root_cause}"
        if len(services) == 1:
            (only,) = services
            if owner_of(only):
                return owner_of(only), f"owner of its service {only}"
        return None

    @staticmethod
    def _why_no_owner(root_cause: str | None, services: set[str], owner_of: Any) -> str:
        if not services:
            return "the catalog cannot resolve the service of its alerts"
        if root_cause is not None:
            return f"the probable root cause {root_cause} has no owner in the catalog"
        unknown = sorted(s for s in services if not owner_of(s))
        if len(services) == 1 and unknown:
            return f"service {unknown[0]} has no owner in the catalog"
        return f"the root cause is unknown among services {', '.join(sorted(services))}"

    # ----------------------------------------------------------------------------- who

    def on_call(self, pool: Pool, at: float) -> tuple[list[Member], str]:
        """The pool's members on call at `at`, and in words how that was decided."""
        if pool.schedule is not None:
            names = set(self.schedules[pool.schedule].on_call(at))
            return [m for m in pool.members if m.name in names], f"schedule {pool.schedule}"
        members = [m for m in pool.members if m.working(at)]
        if all(not m.hours for m in pool.members):
            return members, "no schedule: every member"
        return members, "no schedule: members within their working hours"

    def choose(self, pool: Pool, at: float, load: Mapping[str, int], last: str | None,
               keep: str | None = None, skills: frozenset[str] = frozenset()) -> Candidate:
        """Round robin over on-call members with `skills` under quota, starting after `last`.

        `keep` (a current assignee) stays assigned when still eligible.
        """
        on_call, how = self.on_call(pool, at)
        if not on_call:
            return Candidate(None, f"nobody in pool {pool.name} is on call ({how})")
        if skills:
            skilled = [m for m in on_call if skills <= m.skills]
            if not skilled:
                return Candidate(None, f"nobody on call in pool {pool.name} has the skills "
                                       f"{', '.join(sorted(skills))} (on call: {', '.join(m.name for m in on_call)})")
            on_call = skilled
            how += f", with skills {', '.join(sorted(skills))}"
        under = [m for m in on_call if load.get(m.name, 0) < m.quota or m.name == keep]
        if not under:
            full = ", ".join(f"{m.name} {load.get(m.name, 0)}/{m.quota}" for m in on_call)
            return Candidate(None, f"every on-call member of pool {pool.name} is at quota ({full})")
        if keep is not None and any(m.name == keep for m in under):
            return Candidate(keep, f"{keep} stays assigned (on call per {how})")
        order = [m.name for m in pool.members]
        start = order.index(last) + 1 if last in order else 0
        rotation = order[start:] + order[:start]
        eligible = {m.name for m in under}
        pick = next(name for name in rotation if name in eligible)
        skipped = [f"{m.name} (quota {load.get(m.name, 0)}/{m.quota})" for m in on_call if m.name not in eligible]
        member = self.members[pick]
        reason = (f"round robin in pool {pool.name}: {pick} ({load.get(pick, 0)}/{member.quota} open), "
                  f"on call per {how}")
        if skipped:
            reason += f"; skipped {', '.join(skipped)}"
        return Candidate(pick, reason)

    def tier_targets(self, tier: Tier, assignee: str | None, at: float) -> list[str]:
        """Who a tier pages at `at` (member names, in order, without repeats)."""
        names: list[str] = []
        if tier.assignee and assignee is not None:
            names.append(assignee)
        for schedule in tier.schedules:
            names.extend(self.schedules[schedule].on_call(at))
        names.extend(tier.members)
        return list(dict.fromkeys(names))

    def policy_of(self, pool: str | None) -> Policy | None:
        found = self.pools.get(pool) if pool is not None else None
        return self.policies.get(found.policy) if found is not None and found.policy else None

    def sinks_for(self, pools: Iterable[str | None], people: Iterable[str]) -> tuple[str, ...]:
        """The channels of these pools and the personal sinks of these people."""
        names: list[str] = []
        for pool in pools:
            found = self.pools.get(pool) if pool is not None else None
            if found is not None:
                names.extend(found.notify)
        for person in people:
            member = self.members.get(person)
            if member is not None:
                names.extend(member.notify)
        return tuple(dict.fromkeys(names))

    def recipients(self, people: Iterable[str]) -> tuple[Recipient, ...]:
        return tuple(self.members[p].recipient() for p in people if p in self.members)


def _member(settings: MemberSettings) -> Member:
    hours = tuple((frozenset(WEEKDAYS.index(d) for d in h.days), minutes_of(h.start), minutes_of(h.end))
                  for h in settings.working_hours)
    handles = {str(channel): handle for channel, handle in settings.contacts.items()}
    return Member(settings.name, handles, tuple(settings.notify), settings.quota, ZoneInfo(settings.time_zone), hours,
                  frozenset(settings.skills))


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
