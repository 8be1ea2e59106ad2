"""The engine's counters, read by the metrics layer at scrape time (the engine never touches
metrics itself), and their sum over several engines (distributed mode: one per partition)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["EngineStats"]


@dataclass(slots=True)
class EngineStats:
    """Counters the metrics layer reads at scrape time (the engine never touches metrics itself)."""

    received: Counter[str] = field(default_factory=Counter)  # by source
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)  # (stage, reason)
    transient: int = 0
    unrouted: int = 0
    opened: Counter[str] = field(default_factory=Counter)  # by priority
    resolved: int = 0
    reopened: int = 0
    implied_resolves: int = 0  # alerts resolved because the sender resolved their whole group
    merged: int = 0  # incidents merged into another one (topology)
    #: pages that were never sent because the alert was held back and resolved first, by reason
    pages_avoided: Counter[str] = field(default_factory=Counter)
    # resolver pools: keyed by (pool, priority[, target])
    escalations: Counter[tuple[str, str]] = field(default_factory=Counter)
    pages: Counter[str] = field(default_factory=Counter)  # by member
    sla_warnings: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    sla_breaches: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    sla_met: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    sla_total: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    opened_by_pool: Counter[tuple[str, str]] = field(default_factory=Counter)
    repeats: Counter[tuple[str, str]] = field(default_factory=Counter)  # opened within 7 days of the same key
    acknowledged: Counter[tuple[str, str]] = field(default_factory=Counter)
    acknowledge_seconds: defaultdict[tuple[str, str], float] = field(
        default_factory=lambda: defaultdict(float))  # sum, for the mean
    closed: Counter[tuple[str, str]] = field(default_factory=Counter)
    resolve_seconds: defaultdict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))

    @classmethod
    def combined(cls, parts: Sequence[EngineStats]) -> EngineStats:
        """The sum of several engines' counters (distributed mode: one engine per partition)."""
        if len(parts) == 1:
            return parts[0]
        total = cls()
        for part in parts:
            for name in cls.__dataclass_fields__:
                mine, theirs = getattr(total, name), getattr(part, name)
                if isinstance(mine, int):
                    setattr(total, name, mine + theirs)
                else:
                    for key, value in theirs.items():
                        mine[key] += value
        return total
