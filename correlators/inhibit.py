"""Inhibition: a firing source alert mutes target alerts that share its `equal` labels.

Rules are Alertmanager's `inhibit_rules`: `source_matchers`, `target_matchers` and `equal` (label
names, pseudo-labels such as `@service` allowed). A target alert is inhibited while some firing alert
matching the source matchers has the same values for every `equal` label; a label missing on both
sides counts as equal (both empty), as in Alertmanager. Rules are tried in order; the first that
inhibits names the mute.

As in prometheus/alertmanager inhibit/inhibit.go (`Mutes`, `hasEqual` with `excludeTwoSidedMatch`):
when the target also matches the rule's source matchers, only sources that do *not* match the target
matchers may inhibit it, so an alert never inhibits itself and two alerts that each match both sides
do not inhibit each other. Muting does not chain: an alert that is silenced or inhibited still
inhibits others, as in Alertmanager.

`observe` indexes every firing alert that matches a rule's source matchers under (rule, values of
its `equal` labels), and drops it when it resolves (an expired alert must be observed as resolved);
`mutes` is one index lookup per rule whose target matchers match. The answer is evaluated on every
call: a source that starts firing after the target mutes it from then on, and once the source
resolves the target is no longer muted. Among several sources the earliest observed is named.

Reasons (closed set): `inhibited`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from bridge.model import Alert, AlertStatus
from bridge.routing import Matcher, alert_label
from correlators.mute import Mute, check_text, matcher_to_dict, matchers_from_data, reject_unknown

__all__ = ["InhibitReason", "InhibitRule", "Inhibitor"]


class InhibitReason(StrEnum):
    INHIBITED = "inhibited"


_RULE_FIELDS = ("name", "source_matchers", "target_matchers", "equal")


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """One inhibition rule. Construction validates it; errors are ValueError naming the field."""

    name: str
    source_matchers: tuple[Matcher, ...]
    target_matchers: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_text(self.name, "name")
        for side in ("source_matchers", "target_matchers"):
            matchers = getattr(self, side)
            if isinstance(matchers, str) or not all(isinstance(m, Matcher) for m in matchers):
                raise ValueError(f"{side}: must be a sequence of Matcher")
            if not matchers:
                raise ValueError(f"{side}: at least one matcher is required")
            object.__setattr__(self, side, tuple(matchers))
        if isinstance(self.equal, str):
            raise ValueError("equal: must be a list of label names")
        names: list[str] = []
        for i, name in enumerate(self.equal):
            name = check_text(name, f"equal[{i}]").strip()
            if name not in names:
                names.append(name)
        object.__setattr__(self, "equal", tuple(names))

    def source_matches(self, alert: Alert) -> bool:
        return all(m.matches(alert) for m in self.source_matchers)

    def target_matches(self, alert: Alert) -> bool:
        return all(m.matches(alert) for m in self.target_matchers)

    def equal_values(self, alert: Alert) -> tuple[str, ...]:
        """The alert's values of the `equal` labels (missing: empty string), the index key."""
        return tuple(alert_label(alert, name) for name in self.equal)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source_matchers": [matcher_to_dict(m) for m in self.source_matchers],
            "target_matchers": [matcher_to_dict(m) for m in self.target_matchers],
            "equal": list(self.equal),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InhibitRule:
        """Read a rule (matchers as `name=value` texts or `{name, op, value}`); unknown fields refused."""
        if not isinstance(data, Mapping):
            raise ValueError("rule: must be an object")
        reject_unknown(data, _RULE_FIELDS)
        if "name" not in data:
            raise ValueError("name: required")
        equal = data.get("equal") or ()
        if isinstance(equal, str) or not isinstance(equal, Sequence):
            raise ValueError("equal: must be a list of label names")
        return cls(
            name=data["name"],
            source_matchers=matchers_from_data(data.get("source_matchers"), "source_matchers"),
            target_matchers=matchers_from_data(data.get("target_matchers"), "target_matchers"),
            equal=tuple(equal),
        )


@dataclass(slots=True)
class _Bucket:
    """Firing sources of one rule with the same `equal` values, in the order they were first seen.

    `two_sided` holds sources that also match the rule's target matchers: they may not inhibit a
    target that itself matches the source matchers.
    """

    one_sided: dict[str, Alert] = field(default_factory=dict)
    two_sided: dict[str, Alert] = field(default_factory=dict)


_Entry = tuple[int, tuple[str, ...], bool]  # (rule index, equal values, two-sided)


class Inhibitor:
    """Mutes target alerts while a matching source alert fires (a Muter)."""

    type_name: ClassVar[str] = "inhibit"
    reasons: ClassVar[type[StrEnum]] = InhibitReason

    def __init__(self, rules: Iterable[InhibitRule]) -> None:
        self.rules: tuple[InhibitRule, ...] = tuple(rules)
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in seen:
                raise ValueError(f"rules[{i}].name: duplicate rule name {rule.name!r}")
            seen.add(rule.name)
        self._index: list[dict[tuple[str, ...], _Bucket]] = [{} for _ in self.rules]
        self._entries: dict[str, list[_Entry]] = {}  # source alert identity -> where it is indexed

    def observe(self, alert: Alert, now: float) -> None:
        """Index a firing alert under every rule whose source matchers match it; drop it on resolve."""
        identity = alert.identity
        new: list[_Entry] = []
        if alert.status is AlertStatus.FIRING:
            for i, rule in enumerate(self.rules):
                if rule.source_matches(alert):
                    new.append((i, rule.equal_values(alert), rule.target_matches(alert)))
        for entry in self._entries.pop(identity, ()):
            if entry not in new:
                self._unindex(identity, entry)
        for i, key, two_sided in new:
            bucket = self._index[i].get(key)
            if bucket is None:
                bucket = self._index[i][key] = _Bucket()
            (bucket.two_sided if two_sided else bucket.one_sided)[identity] = alert
        if new:
            self._entries[identity] = new

    def mutes(self, alert: Alert, now: float) -> Mute | None:
        """The first rule (in order) under which a firing source inhibits `alert`, or None."""
        for i, rule in enumerate(self.rules):
            if not rule.target_matches(alert):
                continue
            key = rule.equal_values(alert)
            bucket = self._index[i].get(key)
            if bucket is None:
                continue
            source = _first_other(bucket.one_sided, alert.identity)
            if source is None and not rule.source_matches(alert):
                source = _first_other(bucket.two_sided, alert.identity)
            if source is None:
                continue
            return Mute(
                stage=self.type_name,
                reason=InhibitReason.INHIBITED.value,
                rule=rule.name,
                detail={
                    "source_alert": source.key,
                    "source": source.identity,
                    "source_summary": source.summary,
                    "equal": dict(zip(rule.equal, key, strict=True)),
                },
            )
        return None

    def sources(self, rule_name: str) -> list[Alert]:
        """The firing source alerts indexed for a rule, in the order first seen (for the API)."""
        for i, rule in enumerate(self.rules):
            if rule.name == rule_name:
                found: list[Alert] = []
                for bucket in self._index[i].values():
                    found.extend(bucket.one_sided.values())
                    found.extend(bucket.two_sided.values())
                return found
        raise KeyError(rule_name)

    def _unindex(self, identity: str, entry: _Entry) -> None:
        i, key, two_sided = entry
        bucket = self._index[i].get(key)
        if bucket is None:
            return
        (bucket.two_sided if two_sided else bucket.one_sided).pop(identity, None)
        if not bucket.one_sided and not bucket.two_sided:
            del self._index[i][key]


def _first_other(alerts: dict[str, Alert], identity: str) -> Alert | None:
    """The earliest alert in `alerts` other than the one with `identity` (at most two steps)."""
    for other, alert in alerts.items():
        if other != identity:
            return alert
    return None
