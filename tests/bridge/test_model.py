"""The data model: time parsing and formatting, alert serialisation, canonical identity, action keys."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.incidents import Incident, incident_id
from bridge.model import (
    Action,
    ActionKind,
    Alert,
    AlertStatus,
    Link,
    Severity,
    canonical_fingerprint,
    format_time,
    parse_time,
)

T0 = datetime(2024, 3, 4, 9, 12, 3, tzinfo=UTC).timestamp()

PARSE = [
    ("utc-z", "2024-03-04T09:12:03Z", T0),
    ("lowercase-z", "2024-03-04T09:12:03z", T0),
    ("zero-offset", "2024-03-04T09:12:03+00:00", T0),
    ("positive-offset", "2024-03-04T11:12:03+02:00", T0),
    ("negative-offset", "2024-03-04T04:12:03-05:00", T0),
    ("milliseconds", "2024-03-04T09:12:03.250Z", T0 + 0.25),
    ("nanoseconds-truncated-to-microseconds", "2024-03-04T09:12:03.123456789Z", T0 + 0.123456),
    ("nanoseconds-with-offset", "2024-03-04T10:12:03.500000000+01:00", T0 + 0.5),
    ("no-zone-means-utc", "2024-03-04T09:12:03", T0),
    ("surrounding-spaces", "  2024-03-04T09:12:03Z ", T0),
    ("go-zero-time-is-unset", "0001-01-01T00:00:00Z", None),
    ("go-zero-time-with-offset-is-unset", "0001-01-01T00:00:00.000+00:00", None),
]


@pytest.mark.parametrize(("text", "expected"), [p[1:] for p in PARSE], ids=[p[0] for p in PARSE])
def test_parse_time(text: str, expected: float | None) -> None:
    """RFC 3339 timestamps parse to epoch seconds; Go's zero time means unset."""
    got = parse_time(text)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "junk",
    ["", "yesterday", "2024-13-01T00:00:00Z", "2024-03-04T25:00:00Z", "12:00", 1709543523, None],
    ids=["empty", "word", "month-13", "hour-25", "time-only", "number", "none"],
)
def test_parse_time_rejects(junk: object) -> None:
    """Anything that is not an RFC 3339 string raises ValueError."""
    with pytest.raises(ValueError):
        parse_time(junk)  # type: ignore[arg-type]


FORMAT = [
    ("whole-second", T0, "2024-03-04T09:12:03.000Z"),
    ("milliseconds", T0 + 0.123, "2024-03-04T09:12:03.123Z"),
    ("sub-millisecond-truncated", T0 + 0.9999, "2024-03-04T09:12:03.999Z"),
    ("epoch", 0.0, "1970-01-01T00:00:00.000Z"),
]


@pytest.mark.parametrize(("ts", "text"), [f[1:] for f in FORMAT], ids=[f[0] for f in FORMAT])
def test_format_time(ts: float, text: str) -> None:
    """Times format as RFC 3339 UTC with milliseconds and a Z, and parse back."""
    assert format_time(ts) == text
    assert parse_time(text) == pytest.approx(ts, abs=1e-3)


FULL = Alert(
    source="am",
    fingerprint="abc",
    key="abc@1",
    status=AlertStatus.FIRING,
    severity=Severity.CRITICAL,
    summary="CPU high",
    starts_at=T0,
    ends_at=T0 + 300,
    description="on web1",
    labels={"alertname": "CPU", "instance": "web1"},
    annotations={"runbook": "https://r/cpu"},
    service="api",
    resource="web1",
    links=(Link("https://g/d", "dashboard"), Link("https://g/x")),
    raw_ref="journal:42",
)
MINIMAL = Alert(
    source="pd",
    fingerprint="k",
    key="k",
    status=AlertStatus.RESOLVED,
    severity=Severity.NONE,
    summary="",
    starts_at=0.0,
)


@pytest.mark.parametrize("subject", [FULL, MINIMAL], ids=["every-field", "defaults"])
def test_alert_dict_round_trip(subject: Alert) -> None:
    """Alert.from_dict(alert.to_dict()) gives the same alert, and to_dict is plain JSON data."""
    data = subject.to_dict()
    assert Alert.from_dict(data) == subject
    assert data["status"] in ("firing", "resolved") and isinstance(data["labels"], dict)
    assert isinstance(data["links"], list)


def test_alert_from_dict_fills_optional_fields() -> None:
    """from_dict accepts the required fields only and defaults the rest."""
    alert = Alert.from_dict(
        {
            "source": "am",
            "fingerprint": "f",
            "key": "f@0",
            "status": "firing",
            "severity": "warning",
            "starts_at": 5,
        }
    )
    assert (alert.summary, alert.ends_at, dict(alert.labels), alert.links, alert.starts_at) == (
        "",
        None,
        {},
        (),
        5.0,
    )
    assert alert.identity == "am/f"


FINGERPRINTS = [
    ("order-independent", ({"a": "1", "b": "2"}, None), ({"b": "2", "a": "1"}, None), True),
    ("value-matters", ({"a": "1"}, None), ({"a": "2"}, None), False),
    ("name-matters", ({"a": "1"}, None), ({"b": "1"}, None), False),
    ("restricted-to-names", ({"a": "1", "pod": "x"}, ["a"]), ({"a": "1", "pod": "y"}, ["a"]), True),
    (
        "restriction-order-independent",
        ({"a": "1", "b": "2"}, ["b", "a"]),
        ({"a": "1", "b": "2"}, ["a", "b"]),
        True,
    ),
    ("missing-name-counts-as-empty", ({"a": "1"}, ["a", "b"]), ({"a": "1", "b": ""}, ["a", "b"]), True),
    ("no-concatenation-ambiguity", ({"a": "1b"}, None), ({"a1": "b"}, None), False),
    ("separator-cannot-be-forged", ({"a": "1", "b": "2"}, None), ({"a": "1\xffb\xff2"}, None), False),
]


@pytest.mark.parametrize(
    ("left", "right", "same"), [f[1:] for f in FINGERPRINTS], ids=[f[0] for f in FINGERPRINTS]
)
def test_canonical_fingerprint(left: tuple, right: tuple, same: bool) -> None:
    """The fingerprint depends on the (restricted) label set only, not on order."""
    assert (canonical_fingerprint(*left) == canonical_fingerprint(*right)) is same


def test_canonical_fingerprint_shape() -> None:
    """A fingerprint is 16 lowercase hex digits (64 bits)."""
    fp = canonical_fingerprint({"alertname": "CPU"})
    assert len(fp) == 16 and int(fp, 16) >= 0 and fp == fp.lower()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CRIT", Severity.CRITICAL),
        (" Error ", Severity.CRITICAL),
        ("p3", Severity.WARNING),
        ("low", Severity.INFO),
        ("ok", Severity.NONE),
        ("weird", Severity.WARNING),
        (None, Severity.WARNING),
    ],
    ids=["crit", "error-with-spaces", "p3", "low", "ok", "unknown-is-warning", "none-is-warning"],
)
def test_severity_coerce(text: object, expected: Severity) -> None:
    """Vendor severity spellings map onto the normalized scale; unknown ones default to warning."""
    assert Severity.coerce(text) is expected


def test_severity_coerce_default() -> None:
    """An explicit default replaces warning for unknown spellings."""
    assert Severity.coerce("weird", Severity.INFO) is Severity.INFO


def test_idempotency_key_unique_per_incident_sink_revision() -> None:
    """An action's idempotency key is `incident:sink:revision`, distinct for each of the three."""
    incident = Incident(
        id=incident_id("r:{}", T0, 1),
        key="r:{}",
        route="r",
        group_labels={},
        sinks=("pager", "slack"),
        pool=None,
        created_at=T0,
    )
    keys = set()
    for revision in (1, 2):
        incident.revision = revision
        action = Action(ActionKind.UPDATE, T0, incident.view(), incident.sinks)
        keys |= {action.idempotency_key(sink) for sink in action.sinks}
    assert keys == {f"{incident.id}:{s}:{r}" for s in ("pager", "slack") for r in (1, 2)}


def test_incident_id_is_deterministic() -> None:
    """The same group key, time and serial give the same incident id; any change gives another."""
    assert incident_id("r:{}", T0, 1) == incident_id("r:{}", T0, 1)
    assert (
        len(
            {
                incident_id("r:{}", T0, 1),
                incident_id("r:{}", T0, 2),
                incident_id("r:{a}", T0, 1),
                incident_id("r:{}", T0 + 1, 1),
            }
        )
        == 4
    )
