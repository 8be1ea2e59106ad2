"""Label matchers (Alertmanager syntax) and routes: which route an alert takes, and its group key.

A matcher is `name=value`, `name!=value`, `name=~regex` or `name!~regex` (the value may be quoted);
regexes are anchored, as in Alertmanager. Besides labels, matchers may test the pseudo-labels
`@source`, `@service`, `@severity` and `@resource`, so a route can match on what the source
normalized without caring how each vendor spells it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bridge.model import Alert

__all__ = ["Matcher", "Precursor", "Route", "alert_label", "matcher_problems", "parse_matcher"]

_MATCHER_RE = re.compile(r'^\s*(@?[A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$')


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None = None

    def matches(self, alert: Alert) -> bool:
        actual = alert_label(alert, self.name)
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.regex is not None
        found = self.regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher; raises ValueError with a readable reason."""
    found = _MATCHER_RE.match(text)
    if not found:
        raise ValueError(f"{text!r} is not a matcher (expected name=value, !=, =~ or !~)")
    name, op, value = found.groups()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(value)
        except re.error as err:
            raise ValueError(f"{text!r}: invalid regex: {err}") from None
    return Matcher(name, op, value, regex)


def matcher_problems(path: str, texts: Iterable[str]) -> list[str]:
    """`path[j]: reason` for each text of `texts` that is not a matcher (for check-config)."""
    problems = []
    for j, text in enumerate(texts):
        try:
            parse_matcher(text)
        except ValueError as err:
            problems.append(f"{path}[{j}]: {err}")
    return problems


def alert_label(alert: Alert, name: str) -> str:
    """A label's value, or a pseudo-label (`@source`, `@service`, `@severity`, `@resource`)."""
    if name.startswith("@"):
        if name == "@source":
            return alert.source
        if name == "@service":
            return alert.service or ""
        if name == "@severity":
            return alert.severity.value
        if name == "@resource":
            return alert.resource or ""
        return ""
    return alert.labels.get(name, "")


@dataclass(frozen=True, slots=True)
class Precursor:
    """Early warning: alerts matching it page once sustained `min_firing_for`, at `urgency`."""

    name: str
    matchers: tuple[Matcher, ...]
    min_firing_for: float
    urgency: str

    def matches(self, alert: Alert) -> bool:
        return all(m.matches(alert) for m in self.matchers)


@dataclass(frozen=True, slots=True)
class Route:
    """A compiled route: matchers, grouping and timing, and where its incidents go."""

    name: str
    matchers: tuple[Matcher, ...]
    sources: frozenset[str]
    group_by: tuple[str, ...]
    group_by_all: bool
    group_wait: float
    group_interval: float
    reopen_window: float
    sinks: tuple[str, ...]
    pool: str | None
    continue_: bool
    page: bool = True
    topology: bool = False  # group by service topology (catalog depends_on) instead of labels
    topology_window: float = 600.0
    min_firing_for: float = 0.0  # hold-down: an alert must fire this long before it may page
    flap_episodes: int = 0  # flapping: this many firing episodes of one condition within flap_window ...
    flap_window: float = 1800.0
    flap_clear_after: float = 900.0
    group_held: bool = False  # held alerts already shape grouping (pending), see Incident.pending
    group_window: str = "until_resolved"  # fixed (from the first alert) | sliding (inactivity) | until_resolved
    group_window_for: float = 600.0
    precursors: tuple[Precursor, ...] = ()
    resolve_hysteresis: float = 0.0  # wait this long after the last alert resolves before resolving
    corroborate_after: float = 0.0  # a held alert another tool confirms (same service) pages this soon

    def precursor(self, alert: Alert) -> Precursor | None:
        return next((p for p in self.precursors if p.matches(alert)), None)

    def matches(self, alert: Alert) -> bool:
        if self.sources and alert.source not in self.sources:
            return False
        return all(m.matches(alert) for m in self.matchers)

    def group_labels(self, alert: Alert) -> dict[str, str]:
        if self.group_by_all:
            return dict(sorted(alert.labels.items()))
        return {name: alert_label(alert, name) for name in self.group_by}

    def group_key(self, labels: Mapping[str, str]) -> str:
        # values quoted and escaped (JSON string syntax), so a value holding `",` cannot forge a key
        inner = ",".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in labels.items())
        return f"{self.name}:{{{inner}}}"


def select_routes(routes: Sequence[Route], alert: Alert) -> list[Route]:
    """The routes an alert takes: the first match, and further ones while a match says `continue`."""
    chosen: list[Route] = []
    for route in routes:
        if route.matches(alert):
            chosen.append(route)
            if not route.continue_:
                break
    return chosen


def compile_matchers(texts: Iterable[str]) -> tuple[Matcher, ...]:
    return tuple(parse_matcher(t) for t in texts)
