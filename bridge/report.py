"""The on-call report: how pools responded over a period, from the engine's incidents.

`build_report(incidents, since, until)` takes the incidents paged in [since, until] and computes,
per pool and priority: incidents, time to acknowledge and to resolve (mean and median, over those
acknowledged / resolved), SLA compliance per target (met / incidents with that target that are
closed or breached), escalations, and the repeat rate (share that opened within 7 days of the same
incident key resolving). Per person: pages (open and escalation) and pages per day.

`alertbridge report --since 7d` rebuilds the engine from a data directory's journal (exactly as a
restart does) and prints this as tables; `GET /api/v1/report?since=7d` serves the same as JSON.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from bridge.incidents import Incident
from bridge.model import IncidentStatus

__all__ = ["PersonRow", "PoolRow", "Report", "build_report", "render_table"]


@dataclass(frozen=True, slots=True)
class PoolRow:
    pool: str
    priority: str
    incidents: int
    acknowledged: int
    resolved: int
    mtta_seconds: float | None
    median_tta_seconds: float | None
    mttr_seconds: float | None
    median_ttr_seconds: float | None
    sla_acknowledge: float | None  # compliance ratio, None when no incident had that target
    sla_resolve: float | None
    escalations: int
    repeat_rate: float


@dataclass(frozen=True, slots=True)
class PersonRow:
    member: str
    pages: int
    pages_per_day: float


@dataclass(frozen=True, slots=True)
class Report:
    since: float
    until: float
    pools: tuple[PoolRow, ...]
    people: tuple[PersonRow, ...]

    def to_dict(self) -> dict[str, Any]:
        from bridge.model import format_time

        return {"since": format_time(self.since), "until": format_time(self.until),
                "pools": [asdict(r) for r in self.pools], "people": [asdict(r) for r in self.people]}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _compliance(incidents: list[Incident], target: str, until: float) -> float | None:
    """Met / decided, where decided = breached, or closed (or acknowledged, for acknowledge) in time."""
    decided = met = 0
    for incident in incidents:
        deadline = incident.sla.get(f"{target}_by")
        if deadline is None:
            continue
        if target in incident.sla_breached:
            decided += 1
            continue
        done = incident.acknowledged_at if target == "acknowledge" else None
        if done is None and incident.status is IncidentStatus.RESOLVED:
            done = incident.resolved_at
        if done is not None and done <= deadline:
            decided += 1
            met += 1
        elif deadline <= until:
            decided += 1  # past the deadline without an answer: a breach the timer has not fired yet
    return met / decided if decided else None


def build_report(incidents: Iterable[Incident], since: float, until: float) -> Report:
    groups: dict[tuple[str, str], list[Incident]] = defaultdict(list)
    pages: Counter[str] = Counter()
    for incident in incidents:
        for member, at in incident.pages:
            if since <= at <= until:
                pages[member] += 1
        if not incident.opened or incident.merged_into is not None or not since <= incident.opened_at <= until:
            continue
        groups[(incident.pool or "(none)", incident.priority)].append(incident)
    rows = []
    for (pool, priority), found in sorted(groups.items()):
        tta = [i.acknowledged_at - i.opened_at for i in found if i.acknowledged_at is not None]
        ttr = [i.resolved_at - i.opened_at for i in found
               if i.status is IncidentStatus.RESOLVED and i.resolved_at is not None]
        rows.append(PoolRow(
            pool=pool, priority=priority, incidents=len(found), acknowledged=len(tta), resolved=len(ttr),
            mtta_seconds=_mean(tta), median_tta_seconds=_median(tta),
            mttr_seconds=_mean(ttr), median_ttr_seconds=_median(ttr),
            sla_acknowledge=_compliance(found, "acknowledge", until),
            sla_resolve=_compliance(found, "resolve", until),
            escalations=sum(i.escalations for i in found),
            repeat_rate=sum(1 for i in found if i.repeat_of is not None) / len(found),
        ))
    days = max((until - since) / 86400.0, 1e-9)
    ranked = sorted(pages.items(), key=lambda kv: (-kv[1], kv[0]))
    people = tuple(PersonRow(member, n, round(n / days, 2)) for member, n in ranked)
    return Report(since, until, tuple(rows), people)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    return out


def render_table(report: Report) -> str:
    """The report as plain-text tables (what `alertbridge report` prints)."""
    from bridge.model import format_time

    lines = [f"alertbridge report {format_time(report.since)} .. {format_time(report.until)}", ""]
    if not report.pools:
        lines.append("no incidents paged in this period")
    else:
        header = ["pool", "priority", "incidents", "acked", "resolved", "MTTA", "median TTA", "MTTR",
                  "median TTR", "SLA ack", "SLA resolve", "escalations", "repeat rate"]
        body = [[r.pool, r.priority, str(r.incidents), str(r.acknowledged), str(r.resolved),
                 _duration(r.mtta_seconds), _duration(r.median_tta_seconds), _duration(r.mttr_seconds),
                 _duration(r.median_ttr_seconds), _ratio(r.sla_acknowledge), _ratio(r.sla_resolve),
                 str(r.escalations), _ratio(r.repeat_rate)] for r in report.pools]
        lines += _table(header, body)
    if report.people:
        lines += ["", *_table(["member", "pages", "pages/day"],
                               [[p.member, str(p.pages), f"{p.pages_per_day:.2f}"] for p in report.people])]
    return "\n".join(lines)
