"""The muter contract: silences, maintenance windows and inhibition answer "is this alert muted now?".

A muter is consulted by the engine before a firing alert pages (Alertmanager's `Muter.Mutes`, with the
clock passed in). It is pure and deterministic: no I/O, no wall clock; time enters as `now`.

- `observe(alert, now)` is called for every alert state change the engine applies (firing or
  resolved), in order, so a muter that depends on other alerts (inhibition) can index them. An
  alert series that expires must be reported here as resolved too.
- `mutes(alert, now)` says whether `alert` would be muted at `now`, and by which rule. It may be asked
  again later (the engine re-asks at notification time), and the answer may change: a silence
  expires, a maintenance window ends, an inhibiting source resolves.

A `Mute` carries what the incident timeline shows: the stage, a reason from the muter's closed
`reasons` enum (a metric label), the id or name of the rule that muted, and a JSON-ready `detail`.
When `detail` holds `until` (epoch seconds), the mute is known to last at least until then (a
silence's end, a maintenance occurrence's end); without it the mute may lift at any time
(inhibition).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

from bridge.model import Alert
from bridge.routing import Matcher, parse_matcher

__all__ = [
    "Mute",
    "Muter",
    "check_not_all_empty",
    "check_text",
    "check_time",
    "make_matcher",
    "matcher_to_dict",
    "matchers_from_data",
    "matches_empty",
    "reject_unknown",
]


@dataclass(frozen=True, slots=True)
class Mute:
    """Why an alert is muted: `stage` and `reason` (metric labels), `rule` that did it, and `detail`."""

    stage: str
    reason: str
    rule: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Muter(Protocol):
    """Decides whether an alert is muted at a given time (silences, maintenance, inhibition)."""

    type_name: ClassVar[str]
    reasons: ClassVar[type[StrEnum]]

    def observe(self, alert: Alert, now: float) -> None: ...

    def mutes(self, alert: Alert, now: float) -> Mute | None: ...


# --------------------------------------------------------------------------- shared matcher helpers
# Silences, maintenance windows and inhibit rules all hold `bridge.routing.Matcher`s; these helpers
# read them from data (config, API, journal) with errors that name the field, and write them back.

_OPS = ("=", "!=", "=~", "!~")


def make_matcher(name: str, op: str, value: str, field_name: str = "matchers") -> Matcher:
    """Build one matcher from its parts (regexes anchored, as everywhere); ValueError names the field."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{field_name}.name: must be a non-empty string")
    if op not in _OPS:
        raise ValueError(f"{field_name}.op: must be one of {', '.join(_OPS)}")
    if not isinstance(value, str):
        raise ValueError(f"{field_name}.value: must be a string")
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(value)
        except re.error as err:
            raise ValueError(f"{field_name}.value: invalid regex {value!r}: {err}") from None
    return Matcher(name.strip(), op, value, regex)


def matchers_from_data(items: object, field_name: str = "matchers") -> tuple[Matcher, ...]:
    """Matchers from a list of `name=value` texts or `{name, op, value}` objects (may be empty)."""
    if items is None:
        return ()
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise ValueError(f"{field_name}: must be a list of matchers")
    found: list[Matcher] = []
    for i, item in enumerate(items):
        where = f"{field_name}[{i}]"
        if isinstance(item, Matcher):
            found.append(item)
        elif isinstance(item, str):
            try:
                found.append(parse_matcher(item))
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
        elif isinstance(item, Mapping):
            unknown = sorted(set(item) - {"name", "op", "value"})
            if unknown:
                raise ValueError(f"{where}.{unknown[0]}: unknown field")
            found.append(make_matcher(item.get("name"), item.get("op", "="), item.get("value"), where))  # type: ignore[arg-type]
        else:
            raise ValueError(f"{where}: must be a matcher text (name=value) or an object {{name, op, value}}")
    return tuple(found)


def matcher_to_dict(matcher: Matcher) -> dict[str, str]:
    """The JSON form `matchers_from_data` reads back: `{name, op, value}`."""
    return {"name": matcher.name, "op": matcher.op, "value": matcher.value}


def matches_empty(matcher: Matcher) -> bool:
    """Alertmanager's `matchesEmpty`: an `=` or `=~` matcher that an absent label (empty string) satisfies.

    Negative matchers never count (silence/silence.go), so `foo!="bar"` alone is a valid silence.
    """
    if matcher.op == "=":
        return matcher.value == ""
    if matcher.op == "=~":
        assert matcher.regex is not None
        return matcher.regex.fullmatch("") is not None
    return False


def check_not_all_empty(matchers: Sequence[Matcher], field_name: str = "matchers") -> None:
    """Reject a matcher set that would match every alert, as Alertmanager does for silences."""
    if matchers and all(matches_empty(m) for m in matchers):
        raise ValueError(f"{field_name}: at least one matcher must not match the empty string")


def check_text(value: object, field_name: str, *, required: bool = True) -> str:
    """A string field; `required` ones must not be blank."""
    if not isinstance(value, str):
        raise ValueError(f"{field_name}: must be a string")
    if required and not value.strip():
        raise ValueError(f"{field_name}: must not be empty")
    return value


def check_time(value: object, field_name: str) -> float:
    """An epoch-seconds field: a finite number (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{field_name}: must be a finite number of seconds since the epoch")
    return float(value)


def reject_unknown(data: Mapping[str, Any], known: Iterable[str]) -> None:
    """`from_dict` helpers reject unknown fields (a typo must not silently widen a mute)."""
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field")
