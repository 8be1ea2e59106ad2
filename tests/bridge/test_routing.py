"""Matchers (Alertmanager syntax, pseudo-labels), route selection and group keys."""

from __future__ import annotations

import pytest

from bridge.routing import Matcher, alert_label, parse_matcher, select_routes
from tests.bridge.conftest import alert, route

PARSE = [
    ("equal", "team=db", ("team", "=", "db")),
    ("not-equal", "team!=db", ("team", "!=", "db")),
    ("regex", "team=~db|web", ("team", "=~", "db|web")),
    ("not-regex", "team!~db.*", ("team", "!~", "db.*")),
    ("double-quoted-value", 'team="db ops"', ("team", "=", "db ops")),
    ("single-quoted-value", "team='db'", ("team", "=", "db")),
    ("spaces-around", "  team = db  ", ("team", "=", "db")),
    ("empty-value", "team=", ("team", "=", "")),
    ("dotted-name", "k8s.namespace=prod", ("k8s.namespace", "=", "prod")),
    ("pseudo-label", "@severity=critical", ("@severity", "=", "critical")),
    ("value-holding-an-operator", "expr=a=~b", ("expr", "=", "a=~b")),
]


@pytest.mark.parametrize(("text", "expected"), [p[1:] for p in PARSE], ids=[p[0] for p in PARSE])
def test_parse_matcher(text: str, expected: tuple[str, str, str]) -> None:
    """A matcher parses into name, operator and unquoted value."""
    matcher = parse_matcher(text)
    assert (matcher.name, matcher.op, matcher.value) == expected
    assert (matcher.regex is not None) == (matcher.op in ("=~", "!~"))


BAD = [
    ("no-operator", "team", "is not a matcher"),
    ("empty", "", "is not a matcher"),
    ("no-name", "=db", "is not a matcher"),
    ("name-starting-with-digit", "1team=db", "is not a matcher"),
    ("bad-regex", "team=~(db", "invalid regex"),
    ("bad-negative-regex", "team!~[a-", "invalid regex"),
]


@pytest.mark.parametrize(("text", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_parse_matcher_rejects(text: str, message: str) -> None:
    """Bad syntax or a bad regex raises ValueError with a readable reason that quotes the matcher."""
    with pytest.raises(ValueError, match=message) as err:
        parse_matcher(text)
    assert repr(text) in str(err.value)


WEB = alert(
    "CPU", instance="web1", severity="warning", source="grafana", service="api", labels={"team": "web"}
)

MATCHES = [
    ("equal-hit", 'team="web"', True),
    ("equal-miss", "team=db", False),
    ("not-equal-hit", "team!=db", True),
    ("not-equal-miss", "team!=web", False),
    ("missing-label-equals-empty", "zone=", True),
    ("missing-label-not-equal-value", "zone!=eu", True),
    ("regex-hit", "instance=~web[0-9]+", True),
    ("regex-is-anchored-at-end", "instance=~web", False),
    ("regex-is-anchored-at-start", "instance=~eb1", False),
    ("regex-alternation-is-anchored-as-a-whole", "instance=~x|eb1", False),
    ("not-regex-hit", "instance!~db.*", True),
    ("not-regex-miss", "instance!~web.*", False),
    ("pseudo-source", "@source=grafana", True),
    ("pseudo-severity", "@severity=~warning|critical", True),
    ("pseudo-service", "@service!=api", False),
    ("pseudo-resource-unset-is-empty", "@resource=", True),
    ("unknown-pseudo-label-is-empty", "@nope=", True),
    ("pseudo-label-is-not-a-label", "@team=web", False),
]


@pytest.mark.parametrize(("text", "expected"), [m[1:] for m in MATCHES], ids=[m[0] for m in MATCHES])
def test_matcher_matches(text: str, expected: bool) -> None:
    """A matcher tests a label or pseudo-label; regexes must match the whole value."""
    assert parse_matcher(text).matches(WEB) is expected


def test_matcher_str_round_trips() -> None:
    """A matcher prints in a form that parses back to itself."""
    matcher = parse_matcher('team=~"db|web"')
    again = parse_matcher(str(matcher))
    assert (again.name, again.op, again.value) == (matcher.name, matcher.op, matcher.value)
    assert isinstance(again, Matcher)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("@source", "grafana"),
        ("@service", "api"),
        ("@severity", "warning"),
        ("@resource", ""),
        ("team", "web"),
        ("missing", ""),
    ],
    ids=["source", "service", "severity", "resource-unset", "label", "missing-label"],
)
def test_alert_label(name: str, expected: str) -> None:
    """alert_label reads labels and the normalized pseudo-labels, empty when absent."""
    assert alert_label(WEB, name) == expected


ROUTES = [
    route("db", "team=db"),
    route("audit", "@severity=~warning|critical", continue_=True),
    route("web", "team=web"),
    route("fallback"),
]

SELECT = [
    ("first-match-wins", alert("X", labels={"team": "db"}), ["db"]),
    ("continue-keeps-going-until-a-stop", WEB, ["audit", "web"]),
    ("continue-then-fallback", alert("X", severity="critical"), ["audit", "fallback"]),
    ("fallback-only", alert("X", severity="info"), ["fallback"]),
]


@pytest.mark.parametrize(("subject", "expected"), [s[1:] for s in SELECT], ids=[s[0] for s in SELECT])
def test_select_routes(subject: object, expected: list[str]) -> None:
    """The first matching route wins, and later ones are taken only after a match with `continue`."""
    assert [r.name for r in select_routes(ROUTES, subject)] == expected  # type: ignore[arg-type]


def test_no_route_matches() -> None:
    """An alert no route matches selects nothing."""
    assert select_routes([route("db", "team=db")], WEB) == []


@pytest.mark.parametrize(
    ("sources", "expected"),
    [((), True), (("grafana",), True), (("am", "grafana"), True), (("am",), False)],
    ids=["any-source", "listed", "one-of-several", "not-listed"],
)
def test_route_sources(sources: tuple[str, ...], expected: bool) -> None:
    """A route restricted to sources matches only alerts from them (empty: any)."""
    assert route("r", sources=sources).matches(WEB) is expected


GROUPS = [
    (
        "by-listed-labels",
        ["alertname", "team"],
        {"alertname": "CPU", "team": "web"},
        'r:{alertname="CPU",team="web"}',
    ),
    ("missing-label-is-empty", ["zone"], {"zone": ""}, 'r:{zone=""}'),
    (
        "pseudo-labels",
        ["@service", "@severity"],
        {"@service": "api", "@severity": "warning"},
        'r:{@service="api",@severity="warning"}',
    ),
    (
        "all-labels-sorted",
        ["..."],
        {"alertname": "CPU", "instance": "web1", "team": "web"},
        'r:{alertname="CPU",instance="web1",team="web"}',
    ),
    ("no-labels", [], {}, "r:{}"),
]


@pytest.mark.parametrize(("group_by", "labels", "key"), [g[1:] for g in GROUPS], ids=[g[0] for g in GROUPS])
def test_group_labels_and_key(group_by: list[str], labels: dict[str, str], key: str) -> None:
    """group_by picks the group labels (`...`: all labels, sorted) and the key names route and labels."""
    r = route("r", group_by=group_by)
    assert r.group_labels(WEB) == labels
    assert list(r.group_labels(WEB)) == list(labels)
    assert r.group_key(labels) == key


def test_group_key_cannot_be_forged_by_a_value() -> None:
    """Label values holding quotes and commas cannot make two different groups share a key."""
    r = route("r", group_by=["..."])
    forged = alert("X", labels={"z1": 'x",z2="y'})
    honest = alert("X", labels={"z1": "x", "z2": "y"})
    assert r.group_key(r.group_labels(forged)) != r.group_key(r.group_labels(honest))
