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

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

from bridge.model import Alert

__all__ = ["Mute", "Muter"]


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
