"""Assignment, escalation and SLA timers: what happens to an incident once it has paged.

When an incident opens it is given to a pool (`PoolDirectory.decide`) and to a member of it (round
robin over on-call members under quota). Its pool's escalation policy then pages tier 1; a tier not
acknowledged within its timeout (per priority) escalates to the next, and the whole policy repeats
`repeat` times. A tier that finds nobody to page is skipped at once, and the timeline says why.
Acknowledge or resolve stops escalation. SLA targets (per priority) schedule a warning at `warn_at`
of each target and a breach at the target, unless the incident was acknowledged / resolved first.

Every timer lives on the engine's heap, so replays and tests are exact; each timer carries the
generation it was set for, and a later change (acknowledge, re-prioritise, re-open) simply moves
the generation on, leaving stale timers to fire into nothing.

A mixin of `bridge.engine.Engine`: it reads and changes the engine's state, nothing else.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from bridge.incidents import Incident
from bridge.model import Action, ActionKind, AlertStatus, IncidentStatus
from bridge.oncall import OverrideSettings
from bridge.plugins import format_duration
from bridge.pools import Policy, PoolDirectory
from bridge.timers import ESCALATE as _ESCALATE
from bridge.timers import SLA as _SLA

if TYPE_CHECKING:
    from bridge.engine import EngineConfig
    from bridge.routing import Route
    from bridge.stats import EngineStats

__all__ = ["REPEAT_WINDOW", "EscalationMixin"]

#: An incident whose key resolved less than this long before it opens again is a repeat incident.
REPEAT_WINDOW = 7 * 86400.0
_TARGET_WORDS = {"acknowledge": "time-to-acknowledge", "resolve": "time-to-resolve"}


class EscalationMixin:
    config: EngineConfig
    incidents: dict[str, Incident]
    stats: EngineStats
    _routes: dict[str, Route]
    _last_resolved: dict[str, str]
    pools: PoolDirectory
    _load: Counter[str]  # member -> open incidents assigned to them
    _last_assigned: dict[str, str]  # pool -> member assigned last (round robin)

    if TYPE_CHECKING:  # provided by Engine (stubs only for the type checker)
        def advance(self, now: float) -> list[Action]: ...
        def _schedule(self, due: float, kind: int, ref: str) -> None: ...
        def _emit(self, incident: Incident, kind: ActionKind, now: float, reason: str, actions: list[Action],
                  people: list[str] | None = None) -> None: ...

    # ------------------------------------------------------------------------------ schedule overrides

    def set_override(self, data: dict[str, Any], now: float) -> list[Action]:
        """Apply a journaled run-time override (cover a shift, swap): from then on, who is on call,
        and so assignment and escalation, follow it. `data`: schedule, id, member, start, end,
        replaces, created_by, comment (validated at the API before it was journaled)."""
        actions = self.advance(now)
        override = OverrideSettings.model_validate({k: data[k] for k in ("member", "start", "end", "replaces")
                                                    if data.get(k) is not None})
        meta = {k: str(data.get(k) or "") for k in ("created_by", "comment")}
        self.pools.set_override(data["schedule"], data["id"], override, meta)
        return actions

    def delete_override(self, override_id: str, now: float) -> list[Action]:
        actions = self.advance(now)
        if override_id in self.pools.added_overrides:
            self.pools.delete_override(override_id)
        return actions

    # ------------------------------------------------------------------------------ pool and person

    def _decide_pool(self, incident: Incident, now: float) -> None:
        firing = [a for a in incident.alerts.values() if a.status is AlertStatus.FIRING]
        services = {a.service for a in incident.alerts.values() if a.service}
        route_pool = self._routes[incident.route].pool
        decision = self.pools.decide(firing, incident.priority, route_pool, incident.root_cause, services,
                                     self.config.catalog.owner)
        incident.informed = decision.informed
        incident.skills = decision.skills
        if decision.pool != incident.pool or not incident.pool_reason:
            previous = incident.pool
            incident.pool = decision.pool
            incident.pool_reason = decision.reason
            incident.record(now, "routed", decision.by, decision.reason, pool=decision.pool,
                            previous=previous, informed=list(decision.informed))

    def _assign(self, incident: Incident, now: float, *, keep: bool) -> bool:
        """Give the incident to a member of its pool; True when the assignee changed."""
        pool = self.pools.pools.get(incident.pool) if incident.pool is not None else None
        current = incident.assignee
        if pool is None:
            candidate_member, reason = None, f"pool {incident.pool} has no members configured" \
                if incident.pool else "no pool"
        else:
            candidate = self.pools.choose(pool, now, self._load, self._last_assigned.get(pool.name),
                                          keep=current if keep and current in {m.name for m in pool.members}
                                          else None, skills=incident.skills)
            candidate_member, reason = candidate.member, candidate.reason
        if candidate_member == current and current is not None:
            return False
        self._unload(incident)
        incident.assignee = candidate_member
        if candidate_member is not None:
            self._load[candidate_member] += 1
            incident.loaded = True
            if pool is not None:
                self._last_assigned[pool.name] = candidate_member
            incident.record(now, "assigned", f"pool:{incident.pool}", reason, assignee=candidate_member)
        else:
            incident.record(now, "unassigned", f"pool:{incident.pool}", reason)
        incident.assign_reason = reason
        return candidate_member != current

    def _unload(self, incident: Incident) -> None:
        if incident.loaded and incident.assignee is not None:
            self._load[incident.assignee] -= 1
            if self._load[incident.assignee] <= 0:
                del self._load[incident.assignee]
        incident.loaded = False

    # ------------------------------------------------------------------------------ lifecycle hooks

    def _pool_open(self, incident: Incident, now: float, reopened: bool) -> list[str]:
        """Before the page: pool, assignee and tier 1. Returns the people the page goes to."""
        if not self.pools.enabled:
            return []
        if not reopened:
            self._mark_repeat(incident, now)
        incident.acknowledged_at = None
        self._decide_pool(incident, now)
        if not reopened:
            key = (incident.pool or "", incident.priority)
            self.stats.opened_by_pool[key] += 1
            if incident.repeat_of is not None:
                self.stats.repeats[key] += 1
        self._assign(incident, now, keep=reopened)
        incident.escalation_gen += 1
        incident.escalation_level = 0
        incident.escalation_cycle = 0
        policy = self.pools.policy_of(incident.pool)
        people: list[str] = []
        if policy is not None:
            tier = policy.tiers[0]
            people = self.pools.tier_targets(tier, incident.assignee, now)
            if people and tier.hand_off is None:
                self._enter_tier(incident, policy, 0, 0, now)
        if not people and incident.assignee is not None:
            people = [incident.assignee]
        self._count_pages(incident, people, now)
        self._start_sla(incident, now)
        return people

    def _mark_repeat(self, incident: Incident, now: float) -> None:
        previous_id = self._last_resolved.get(incident.key)
        previous = self.incidents.get(previous_id) if previous_id else None
        if (previous is not None and previous.id != incident.id and previous.resolved_at is not None
                and now - previous.resolved_at <= REPEAT_WINDOW):
            incident.repeat_of = previous.id
            incident.record(now, "repeat", "engine", f"the same incident key resolved "
                            f"{format_duration(now - previous.resolved_at)} ago ({previous.id})", previous=previous.id)

    def _pool_opened(self, incident: Incident, now: float, actions: list[Action]) -> None:
        """After the page: SLA timers, and escalate at once when tier 1 had nobody to page."""
        if not self.pools.enabled:
            return
        policy = self.pools.policy_of(incident.pool)
        if policy is not None and incident.escalation_level == 0:
            self._pass_first_tier(incident, policy, now, actions)

    def _pool_acknowledged(self, incident: Incident, now: float) -> None:
        if not self.pools.enabled:
            return
        incident.acknowledged_at = now
        self._stop_escalation(incident, now, "acknowledged")
        key = (incident.pool or "", incident.priority)
        self.stats.acknowledged[key] += 1
        self.stats.acknowledge_seconds[key] += now - incident.opened_at

    def _pool_closed(self, incident: Incident, now: float) -> None:
        if not self.pools.enabled:
            return
        self._stop_escalation(incident, now, "resolved")
        incident.sla_gen += 1
        self._unload(incident)
        key = (incident.pool or "", incident.priority)
        self.stats.closed[key] += 1
        self.stats.resolve_seconds[key] += now - incident.opened_at
        for target in ("acknowledge", "resolve"):
            if f"{target}_by" in incident.sla:
                self.stats.sla_total[(*key, target)] += 1
                if target not in incident.sla_breached:
                    self.stats.sla_met[(*key, target)] += 1

    def _pool_reviewed(self, incident: Incident, now: float, actions: list[Action]) -> None:
        """After an open incident changed: a new pool (root cause moved), a new priority (SLA targets)."""
        if not self.pools.enabled or not incident.opened or incident.status is IncidentStatus.RESOLVED:
            return
        if incident.sla_priority != incident.priority:
            self._start_sla(incident, now)
        previous_pool = incident.pool
        self._decide_pool(incident, now)
        if incident.pool != previous_pool:
            self._assign(incident, now, keep=False)
            self._emit(incident, ActionKind.ASSIGN, now,
                       f"moved to pool {incident.pool}: {incident.pool_reason}; {incident.assign_reason}", actions)
            if incident.status is IncidentStatus.TRIGGERED:
                self._first_tier(incident, now, actions)

    # ------------------------------------------------------------------------------ escalation

    def _enter_tier(self, incident: Incident, policy: Policy, index: int, cycle: int, now: float) -> None:
        tier = policy.tiers[index]
        incident.escalation_level = index + 1
        incident.escalation_cycle = cycle
        incident.escalation_gen += 1
        incident.escalation_policy = policy.name
        due = now + tier.timeout_for(incident.priority)
        self._schedule(due, _ESCALATE, f"{incident.id}|{incident.escalation_gen}")

    def _first_tier(self, incident: Incident, now: float, actions: list[Action], *, announce: str | None = None,
                    hops: int = 0) -> None:
        """Start the incident's pool policy at tier 1. With `announce`, paging tier 1 is its own
        `escalate` notification (a hand-off); without, the caller's notification addressed them."""
        policy = self.pools.policy_of(incident.pool)
        incident.escalation_gen += 1
        incident.escalation_level = 0
        if policy is None:
            return
        tier = policy.tiers[0]
        people = self.pools.tier_targets(tier, incident.assignee, now)
        if not people or tier.hand_off is not None:
            self._pass_first_tier(incident, policy, now, actions, hops)
            return
        self._enter_tier(incident, policy, 0, 0, now)
        if announce is not None:
            self._count_pages(incident, people, now)
            self._emit(incident, ActionKind.ESCALATE, now, f"{announce}: paging tier {tier.name}, {', '.join(people)}",
                       actions, people=people)

    def _pass_first_tier(self, incident: Incident, policy: Policy, now: float, actions: list[Action],
                         hops: int = 0) -> None:
        """Tier 1 has nobody to page, or hands off: move on at once, saying why."""
        tier = policy.tiers[0]
        why = (f"tier {tier.name} hands off to pool {tier.hand_off}" if tier.hand_off
               else f"nobody to page at tier {tier.name} ({incident.assign_reason or 'no target on call'})")
        self._escalate(incident, policy, 0, 0, now, actions, why, skip_current=tier.hand_off is None, hops=hops)

    def _escalate(self, incident: Incident, policy: Policy, index: int, cycle: int, now: float,
                  actions: list[Action], why: str, *, skip_current: bool = True, hops: int = 0) -> None:
        """Move past tier `index` (or hand off at it) and page the next tier that has someone."""
        skipped: list[str] = []
        steps = 0
        limit = len(policy.tiers) * (policy.repeat + 1) + 1
        if skip_current:
            index += 1
        while True:
            if index >= len(policy.tiers):
                if cycle >= policy.repeat:
                    incident.escalation_gen += 1
                    detail = f"; skipped {'; '.join(skipped)}" if skipped else ""
                    incident.record(now, "escalation exhausted", f"escalation:{policy.name}",
                                    f"{why}; every tier was paged {policy.repeat + 1} time(s){detail}")
                    return
                cycle, index = cycle + 1, 0
            steps += 1
            if steps > limit:  # nobody anywhere in the policy: stop instead of spinning
                incident.escalation_gen += 1
                incident.record(now, "escalation exhausted", f"escalation:{policy.name}",
                                f"{why}; nobody to page in any tier ({'; '.join(skipped)})")
                return
            tier = policy.tiers[index]
            if tier.hand_off is not None:
                self._hand_off(incident, tier.hand_off, now, actions, why, hops)
                return
            people = self.pools.tier_targets(tier, incident.assignee, now)
            if people:
                break
            skipped.append(f"{tier.name}: nobody on call")
            index += 1
        self._enter_tier(incident, policy, index, cycle, now)
        self.stats.escalations[(incident.pool or "", incident.priority)] += 1
        incident.escalations += 1
        again = f" (round {cycle + 1})" if cycle else ""
        detail = f"; skipped {'; '.join(skipped)}" if skipped else ""
        reason = f"{why}: escalated to tier {tier.name}{again}, paging {', '.join(people)}{detail}"
        incident.record(now, "escalated", f"escalation:{policy.name}", reason, tier=tier.name,
                        level=index + 1, paged=people)
        self._count_pages(incident, people, now)
        self._emit(incident, ActionKind.ESCALATE, now, reason, actions, people=people)

    def _hand_off(self, incident: Incident, pool_name: str, now: float, actions: list[Action], why: str,
                  hops: int) -> None:
        if hops > len(self.pools.pools):  # check-config rejects loops; never spin if one slipped through
            incident.record(now, "escalation exhausted", "escalation", f"{why}; hand-off loop stopped at {pool_name}")
            return
        previous = incident.pool
        incident.pool = pool_name
        incident.pool_reason = f"handed off by the escalation policy of pool {previous}"
        incident.record(now, "routed", "escalation", f"{why}: handed off from pool {previous} to {pool_name}",
                        pool=pool_name, previous=previous)
        self._assign(incident, now, keep=False)
        self.stats.escalations[(previous or "", incident.priority)] += 1
        incident.escalations += 1
        self._emit(incident, ActionKind.ASSIGN, now,
                   f"{why}: handed off to pool {pool_name}; {incident.assign_reason}", actions)
        self._first_tier(incident, now, actions, announce=f"handed off to pool {pool_name}", hops=hops + 1)

    def _escalation_due(self, ref: str, due: float, actions: list[Action]) -> None:
        incident_id_, _, gen = ref.rpartition("|")
        incident = self.incidents.get(incident_id_)
        if (incident is None or str(incident.escalation_gen) != gen or not incident.opened
                or incident.status is not IncidentStatus.TRIGGERED):
            return
        policy = self.pools.policies.get(incident.escalation_policy or "")
        if policy is None or incident.escalation_level == 0:
            return
        index = incident.escalation_level - 1
        tier = policy.tiers[index]
        why = f"not acknowledged within {format_duration(tier.timeout_for(incident.priority))} at tier {tier.name}"
        self._escalate(incident, policy, index, incident.escalation_cycle, due, actions, why)

    def _stop_escalation(self, incident: Incident, now: float, why: str) -> None:
        if incident.escalation_level:
            incident.record(now, "escalation stopped", "escalation",
                            f"{why} at tier {incident.escalation_level}")
        incident.escalation_gen += 1

    def _count_pages(self, incident: Incident, people: list[str], now: float) -> None:
        for person in people:
            self.stats.pages[person] += 1
            incident.pages.append((person, now))

    # ------------------------------------------------------------------------------ SLA

    def _start_sla(self, incident: Incident, now: float) -> None:
        incident.sla_gen += 1
        incident.sla_priority = incident.priority
        incident.sla = {}
        targets = self.pools.sla.get(incident.priority)
        if targets is None:
            return
        base = incident.opened_at
        for target, length in zip(("acknowledge", "resolve"), targets, strict=True):
            if length is None:
                continue
            if target == "acknowledge" and incident.status is not IncidentStatus.TRIGGERED:
                continue
            deadline = base + length
            incident.sla[f"{target}_by"] = deadline
            for phase, at in (("warning", base + length * self.pools.warn_at), ("breach", deadline)):
                if (target, phase) not in incident.sla_sent:
                    self._schedule(max(at, now), _SLA, f"{incident.id}|{incident.sla_gen}|{target}|{phase}")

    def _sla_due(self, ref: str, due: float, actions: list[Action]) -> None:
        incident_id_, gen, target, phase = ref.rsplit("|", 3)
        incident = self.incidents.get(incident_id_)
        if incident is None or str(incident.sla_gen) != gen or not incident.opened:
            return
        if incident.status is IncidentStatus.RESOLVED:
            return
        if target == "acknowledge" and incident.status is not IncidentStatus.TRIGGERED:
            return
        if (target, phase) in incident.sla_sent:
            return
        incident.sla_sent.add((target, phase))
        targets = self.pools.sla.get(incident.priority) or (None, None)
        length = targets[0] if target == "acknowledge" else targets[1]
        words = f"the {format_duration(length or 0)} {_TARGET_WORDS[target]} target for {incident.priority}"
        key = (incident.pool or "", incident.priority, target)
        if phase == "warning":
            reason = f"{round(self.pools.warn_at * 100)}% of {words} has passed"
            self.stats.sla_warnings[key] += 1
            incident.record(due, "sla warning", "sla", reason, target=target)
            self._emit(incident, ActionKind.SLA_WARNING, due, reason, actions)
        else:
            reason = f"{words} was breached"
            self.stats.sla_breaches[key] += 1
            incident.sla_breached.add(target)
            incident.record(due, "sla breached", "sla", reason, target=target)
            self._emit(incident, ActionKind.SLA_BREACH, due, reason, actions)
