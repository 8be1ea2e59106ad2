"""Resolver pools: who an incident goes to, who is paged, and how long they have.

Configured in four top-level sections (all optional; with no `pools`, nothing here applies; the
models and their check-config cross-checks are in `bridge.pool_settings`):

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
from typing import Any
from zoneinfo import ZoneInfo

from bridge.model import Alert, Recipient
from bridge.oncall import (
    WEEKDAYS,
    OverrideSettings,
    Schedule,
    ScheduleSettings,
    minutes_of,
)
from bridge.pool_settings import (
    AssignmentSettings,
    EscalationPolicySettings,
    MemberSettings,
    PoolSettings,
    SlaSettings,
)
from bridge.routing import Matcher, parse_matcher

__all__ = ["Candidate", "Member", "Policy", "Pool", "PoolDecision", "PoolDirectory", "Tier"]



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
