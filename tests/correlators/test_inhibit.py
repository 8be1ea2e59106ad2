"""Inhibition: Alertmanager's inhibit rules over an index of firing source alerts, evaluated continuously."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from bridge.model import Alert
from bridge.routing import compile_matchers
from correlators.inhibit import Inhibitor, InhibitRule
from correlators.mute import Mute, Muter
from tests.bridge.conftest import alert, resolved


def rule(name: str = "node-down", source: tuple[str, ...] = ('alertname="NodeDown"',),
         target: tuple[str, ...] = ('severity="warning"',), equal: tuple[str, ...] = ("cluster",)) -> InhibitRule:
    """An inhibit rule from matcher texts (default: NodeDown inhibits warnings of the same cluster)."""
    return InhibitRule(name, compile_matchers(source), compile_matchers(target), equal)


def node_down(cluster: str | None = "eu", **kw: Any) -> Alert:
    labels = {"severity": "critical", **({"cluster": cluster} if cluster is not None else {}), **kw}
    return alert("NodeDown", instance="node1", labels=labels)


def warning(name: str = "HighLatency", cluster: str | None = "eu", **kw: Any) -> Alert:
    labels = {"severity": "warning", **({"cluster": cluster} if cluster is not None else {}), **kw}
    return alert(name, instance="web1", severity="warning", labels=labels)


# ------------------------------------------------------------------------------- scenarios

SOURCE, TARGET = node_down(), warning()
SCENARIOS = [
    # (id, rules, steps: ("fire" | "resolve", alert) or ("check", alert, rule name or None))
    ("source-before-target", [rule()], [("fire", SOURCE), ("fire", TARGET), ("check", TARGET, "node-down")]),
    ("source-after-target", [rule()],
     [("fire", TARGET), ("check", TARGET, None), ("fire", SOURCE), ("check", TARGET, "node-down")]),
    ("source-resolves", [rule()],
     [("fire", SOURCE), ("check", TARGET, "node-down"), ("resolve", SOURCE), ("check", TARGET, None)]),
    ("source-fires-again", [rule()],
     [("fire", SOURCE), ("resolve", SOURCE), ("fire", SOURCE), ("check", TARGET, "node-down")]),
    ("equal-label-differs", [rule()], [("fire", node_down("us")), ("check", TARGET, None)]),
    ("equal-label-missing-on-both-sides", [rule()], [("fire", node_down(None)), ("check", warning(cluster=None),
                                                                                      "node-down")]),
    ("equal-label-missing-on-source-only", [rule()], [("fire", node_down(None)), ("check", TARGET, None)]),
    ("equal-label-missing-on-target-only", [rule()], [("fire", SOURCE), ("check", warning(cluster=None), None)]),
    ("no-equal-labels-any-source", [rule(equal=())], [("fire", node_down("us")), ("check", TARGET, "node-down")]),
    ("several-equal-labels", [rule(equal=("cluster", "zone"))],
     [("fire", node_down(zone="a")), ("check", warning(zone="a"), "node-down"), ("check", warning(zone="b"), None)]),
    ("target-matchers-do-not-match", [rule()], [("fire", SOURCE), ("check", warning(severity="critical"), None)]),
    ("source-matchers-do-not-match", [rule()], [("fire", warning("Other")), ("check", TARGET, None)]),
    ("pseudo-label-equal", [rule(equal=("@service",))],
     [("fire", replace(SOURCE, service="payments")), ("check", replace(TARGET, service="payments"), "node-down"),
      ("check", replace(TARGET, service="search"), None)]),
    ("two-sources-one-resolves", [rule()],
     [("fire", SOURCE), ("fire", node_down(instance_id="2")), ("resolve", SOURCE), ("check", TARGET, "node-down"),
      ("resolve", node_down(instance_id="2")), ("check", TARGET, None)]),
    ("source-moves-to-other-cluster", [rule()],
     [("fire", SOURCE), ("fire", replace(SOURCE, labels={**SOURCE.labels, "cluster": "us"})), ("check", TARGET, None),
      ("check", warning(cluster="us"), "node-down")]),
    ("first-rule-in-order-wins", [rule("zone"), rule("cluster-wide", equal=())],
     [("fire", SOURCE), ("check", TARGET, "zone")]),
    ("later-rule-when-first-has-no-source", [rule("zone"), rule("cluster-wide", equal=())],
     [("fire", node_down("us")), ("check", TARGET, "cluster-wide")]),
]

BOTH = rule("any-critical", source=('severity="critical"',), target=('alertname=~"Node.*"',), equal=("cluster",))
SELF = [
    ("alert-does-not-inhibit-itself", [BOTH], [("fire", SOURCE), ("check", SOURCE, None)]),
    ("two-sided-alerts-do-not-inhibit-each-other", [BOTH],
     [("fire", SOURCE), ("fire", node_down(instance_id="2")), ("check", SOURCE, None),
      ("check", node_down(instance_id="2"), None)]),
    ("two-sided-target-inhibited-by-one-sided-source", [BOTH],
     [("fire", alert("DiskDead", labels={"severity": "critical", "cluster": "eu"})), ("fire", SOURCE),
      ("check", SOURCE, "any-critical")]),
    ("one-sided-target-inhibited-by-two-sided-source", [BOTH],
     [("fire", SOURCE), ("check", alert("NodeSlow", labels={"severity": "warning", "cluster": "eu"}),
                         "any-critical")]),
]


@pytest.mark.parametrize(("rules", "steps"), [c[1:] for c in SCENARIOS + SELF], ids=[c[0] for c in SCENARIOS + SELF])
def test_inhibition(rules: list[InhibitRule], steps: list[tuple[Any, ...]]) -> None:
    """A target is muted while a firing source of a rule matching it shares its `equal` values (Alertmanager rules)."""
    inhibitor = Inhibitor(rules)
    for at, (op, subject, *expected) in enumerate(steps):
        if op == "fire":
            inhibitor.observe(subject, float(at))
        elif op == "resolve":
            inhibitor.observe(resolved(subject), float(at))
        else:
            mute = inhibitor.mutes(subject, float(at))
            assert (None if mute is None else mute.rule) == expected[0], f"step {at}"


def test_mute_names_the_earliest_source_and_equal_values() -> None:
    """The Mute names the rule, the earliest firing source's episode key and the shared label values."""
    inhibitor = Inhibitor([rule()])
    later = node_down(instance_id="2")
    inhibitor.observe(SOURCE, 1.0)
    inhibitor.observe(later, 2.0)
    inhibitor.observe(SOURCE, 3.0)  # a re-send keeps its place
    assert inhibitor.mutes(TARGET, 4.0) == Mute(
        stage="inhibit",
        reason="inhibited",
        rule="node-down",
        detail={"source_alert": SOURCE.key, "source": SOURCE.identity, "source_summary": "NodeDown",
                "equal": {"cluster": "eu"}},
    )
    assert inhibitor.sources("node-down") == [SOURCE, later]


def test_only_firing_source_alerts_are_indexed() -> None:
    """The index holds firing alerts matching a source side only, so lookups never scan other alerts."""
    inhibitor = Inhibitor([rule()])
    for i in range(100):
        inhibitor.observe(warning(f"W{i}"), float(i))
    inhibitor.observe(SOURCE, 100.0)
    inhibitor.observe(resolved(node_down("us")), 101.0)
    assert inhibitor.sources("node-down") == [SOURCE]
    inhibitor.observe(resolved(SOURCE), 102.0)
    assert inhibitor.sources("node-down") == []
    with pytest.raises(KeyError):
        inhibitor.sources("nope")


INVALID = [
    ("blank-name", dict(name=""), "name: must not be empty"),
    ("no-source-matchers", dict(source_matchers=()), "source_matchers: at least one matcher is required"),
    ("no-target-matchers", dict(target_matchers=()), "target_matchers: at least one matcher is required"),
    ("equal-a-string", dict(equal="cluster"), "equal: must be a list"),
    ("blank-equal-name", dict(equal=("cluster", "")), r"equal\[1\]: must not be empty"),
]


@pytest.mark.parametrize(("changes", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_rule_names_the_field(changes: dict[str, Any], message: str) -> None:
    """An invalid rule raises ValueError whose message starts with the field's name."""
    with pytest.raises(ValueError, match="^" + message):
        replace(rule(), **changes)


def test_duplicate_rule_names_are_refused() -> None:
    """Rule names identify the rule in the timeline, so they must be unique."""
    with pytest.raises(ValueError, match=r"^rules\[1\].name: duplicate"):
        Inhibitor([rule(), rule()])


def test_rule_dict_round_trip() -> None:
    """A rule reads from config-style data (matcher texts) and round-trips through `to_dict`."""
    data = {"name": "r", "source_matchers": ['alertname="NodeDown"'], "target_matchers": ['severity=~"warn.*"'],
            "equal": ["cluster", "@service"]}
    parsed = InhibitRule.from_dict(data)
    assert parsed == rule("r", target=('severity=~"warn.*"',), equal=("cluster", "@service"))
    assert InhibitRule.from_dict(parsed.to_dict()) == parsed
    with pytest.raises(ValueError, match=r"^source_match: unknown field"):
        InhibitRule.from_dict({**data, "source_match": {}})
    with pytest.raises(ValueError, match=r"^target_matchers\[0\]: "):
        InhibitRule.from_dict({**data, "target_matchers": ["nope"]})


def test_inhibitor_is_a_muter() -> None:
    """The inhibitor satisfies the Muter protocol as `inhibit`, with its closed reason set."""
    inhibitor = Inhibitor([])
    assert isinstance(inhibitor, Muter)
    assert inhibitor.type_name == "inhibit"
    assert {r.value for r in Inhibitor.reasons} == {"inhibited"}
    assert inhibitor.mutes(TARGET, 0.0) is None
    assert compile_matchers(['a="b"']) == rule(source=('a="b"',)).source_matchers
