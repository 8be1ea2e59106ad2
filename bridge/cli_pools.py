"""The `alertbridge oncall` and `report` commands, and the time arguments the CLI reads.

`settings_of` is the CLI's way to the effective settings (config file, catalog, environment).
Exit codes as for every command: 0 success, 2 invalid input.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from bridge.plugins import format_duration

__all__ = ["instant", "oncall", "report"]


def instant(text: str, flag: str) -> float:
    """RFC 3339 (without an offset: UTC) or epoch seconds -> epoch seconds; ValueError naming `flag`."""
    from bridge.model import parse_time

    try:
        at: float | None = float(text)
    except ValueError:
        try:
            at = parse_time(text)
        except ValueError:
            at = None
    if at is None or not math.isfinite(at):
        raise ValueError(f"{flag}: {text!r} is not a time (RFC 3339, e.g. 2026-03-29T09:00:00+02:00, "
                         "or epoch seconds)")
    return at


def _since(text: str, until: float) -> float:
    """`--since`: a duration with a unit (7d, 24h, 1h30m) back from `until`, else a time as `instant` reads."""
    from bridge.plugins import parse_duration

    try:
        float(text)  # a bare number is epoch seconds, not a duration in seconds
    except ValueError:
        try:
            return until - parse_duration(text)
        except ValueError:
            pass
    try:
        return instant(text, "--since")
    except ValueError:
        raise ValueError(f"--since: {text!r} is neither a duration (7d, 24h, 1h30m) nor a time (RFC 3339 or "
                         "epoch seconds)") from None


def _days(days: Sequence[str]) -> str:
    """Weekday names as `mon-fri`, `sat,sun` or `mon,wed`."""
    from bridge.oncall import WEEKDAYS

    picked = sorted(WEEKDAYS.index(day) for day in dict.fromkeys(days))
    if len(picked) > 2 and picked == list(range(picked[0], picked[-1] + 1)):
        return f"{WEEKDAYS[picked[0]][:3]}-{WEEKDAYS[picked[-1]][:3]}"
    return ",".join(WEEKDAYS[i][:3] for i in picked)


def oncall(args: argparse.Namespace, settings_of: Callable[[argparse.Namespace], Any]) -> int:
    """`alertbridge oncall [NOW] POOL [--at TIME]`: who is on call, and who a page reaches."""
    words = args.words
    if len(words) > 2 or (len(words) == 2 and words[0].upper() != "NOW"):
        print("oncall: expected [NOW] POOL (a time goes in --at)", file=sys.stderr)
        return 2
    if len(words) == 2 and args.at is not None:
        print("oncall: give NOW or --at, not both", file=sys.stderr)
        return 2
    try:
        at = time.time() if args.at is None else instant(args.at, "--at")
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    from bridge.pools import PoolDirectory

    settings = settings_of(args)
    directory = PoolDirectory.build(settings.pools, settings.schedules, settings.escalation_policies,
                                    settings.assignment, settings.sla)
    pool = directory.pools.get(words[-1])
    if pool is None:
        print(f"oncall: unknown pool {words[-1]!r}; pools: {', '.join(directory.pools) or 'none configured'}",
              file=sys.stderr)
        return 2
    member_settings = {m.name: m for p in settings.pools if p.name == pool.name for m in p.members}
    print("\n".join(_oncall_lines(directory, pool, member_settings, at)))
    return 0


def _oncall_lines(directory: Any, pool: Any, member_settings: dict[str, Any], at: float) -> list[str]:
    """What `alertbridge oncall` prints about `pool` at `at`."""
    from datetime import datetime

    from bridge.model import format_time
    from bridge.oncall import describe

    lines = [f"pool {pool.name} at {format_time(at)}"]
    on_call, how = directory.on_call(pool, at)
    if pool.schedule is not None:
        lines += describe(directory.schedules[pool.schedule], at)
    else:
        lines.append(how)
        for member in pool.members:
            hours = member_settings[member.name].working_hours
            local = datetime.fromtimestamp(at, member.zone).strftime("%a %H:%M %Z")
            if not hours:
                lines.append(f"  {member.name}: on call (no working hours declared)")
                continue
            spans = ", ".join(f"{_days(h.days)} {h.start}-{h.end}" for h in hours)
            state = "working" if member.working(at) else "not working"
            lines.append(f"  {member.name}: {state} ({spans} {member.zone.key}; local time {local})")
        lines.append(f"on call: {', '.join(m.name for m in on_call) or 'nobody'}")
    lines.append("quota: open incidents per member are not known offline; the bridge skips a member at quota "
                 "when it assigns")
    lines += _tier_one_lines(directory, pool, [m.name for m in on_call], at)
    return lines


def _tier_one_lines(directory: Any, pool: Any, on_call: list[str], at: float) -> list[str]:
    """The pool's escalation policy and whom its first tier would page at `at`."""
    policy = directory.policy_of(pool.name)
    if policy is None:
        return ["escalation: none (only the assignee is paged)"]
    tiers = len(policy.tiers)
    lines = [f"escalation: policy {policy.name}, {tiers} tier{'s' if tiers > 1 else ''}, repeat {policy.repeat}"]
    tier = policy.tiers[0]
    targets: list[str] = []
    missing: list[str] = []
    if tier.assignee:
        if on_call:
            targets.append(f"the assignee ({' or '.join(on_call)}, unless at quota)")
        else:
            missing.append("no assignee: nobody in the pool is on call")
    for name in tier.schedules:
        found = directory.schedules[name].on_call(at)
        if found:
            targets.append(f"{found[0]} (on call in schedule {name})")
        else:
            missing.append(f"nobody on call in schedule {name}")
    targets += tier.members
    if tier.hand_off is not None:
        lines.append(f"tier {tier.name} now: hands the incident off to pool {tier.hand_off}")
        return lines
    if not targets:
        onward = "the incident escalates at once to the next tier with someone to page" if tiers > 1 \
            else "nobody is paged"
        lines.append(f"tier {tier.name} now: pages nobody ({'; '.join(missing)}), so {onward}")
        return lines
    by_priority = ", ".join(f"{p}: {format_duration(t)}" for p, t in sorted(tier.timeouts.items()))
    by_priority = f" ({by_priority})" if by_priority else ""
    following = (f"tier {policy.tiers[1].name}" if tiers > 1 else f"tier {tier.name} again" if policy.repeat
                 else None)
    after = (f"; unacknowledged, escalates to {following} after {format_duration(tier.timeout)}{by_priority}"
             if following else "")
    lines.append(f"tier {tier.name} now: pages {', '.join(targets)}{after}")
    return lines


def report(args: argparse.Namespace, settings_of: Callable[[argparse.Namespace], Any]) -> int:
    """`alertbridge report --since 7d`: the pool and people metrics, replayed read-only from the journal."""
    try:
        until = time.time() if args.until is None else instant(args.until, "--until")
        since = _since(args.since, until)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    if since >= until:
        print("report: --since must be before --until", file=sys.stderr)
        return 2
    from bridge.ingest import Applier
    from bridge.log import configure_logging
    from bridge.report import build_report, render_table
    from bridge.store.sqlite import JournalMissing, read_journal
    from bridge.wiring import build_engine, build_sources

    settings = settings_of(args)
    configure_logging(settings.logging.level, settings.logging.format)  # logs to stderr: stdout is the report
    try:
        conn, entries = read_journal(settings.server.data_dir)
    except JournalMissing as err:
        print(err, file=sys.stderr)
        return 2
    engine = build_engine(settings)
    applier = Applier(engine, build_sources(settings), lambda actions: None)  # nothing is delivered
    count = 0
    try:
        # as a restart rebuilds (Runtime._rebuild), but only up to `until`: journal times never go back
        for entry in entries:
            if entry.at > until:
                break
            applier.apply(entry.kind, entry.source, entry.data, entry.at)
            count += 1
    finally:
        conn.close()
    engine.advance(until)
    report = build_report(engine.incidents.values(), since, until)
    if args.format == "json":
        print(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(render_table(report))
    print(f"rebuilt from {count} journal entries in {settings.server.data_dir}", file=sys.stderr)
    return 0
