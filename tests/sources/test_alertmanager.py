"""The Alertmanager webhook source on real Alertmanager 0.25 captures and documented examples."""

from __future__ import annotations

import orjson
import pytest

from bridge.model import AlertStatus, Link, Severity, canonical_fingerprint, parse_time
from sources.alertmanager import AlertmanagerSource, AlertmanagerSourceConfig
from tests.sources.conftest import DELETE, edited, load_fixture, parse_error, parse_ok

NOW = 1795458600.0  # 2026-11-23T18:30:00Z
FIRING_1RESOLVED = "alertmanager/captured_v0.25_webhook_firing_1resolved_1firing.json"
FIRING_2 = "alertmanager/captured_v0.25_webhook_firing_2alerts.json"


def make(name: str = "alertmanager", **options: object) -> AlertmanagerSource:
    config = AlertmanagerSourceConfig.model_validate({"name": name, "type": "alertmanager", **options})
    return AlertmanagerSource(config)


@pytest.mark.parametrize(
    ("fixture", "expected", "truncated"),
    [
        pytest.param(
            FIRING_2,
            [
                ("alertmanager:94a5f760d44effed:2026-11-23T18:22:10Z", AlertStatus.FIRING, None),
                ("alertmanager:686187dce1084804:2026-11-23T18:22:10Z", AlertStatus.FIRING, None),
            ],
            0,
            id="two-firing",
        ),
        pytest.param(
            FIRING_1RESOLVED,
            [
                ("alertmanager:94a5f760d44effed:2026-11-23T18:22:10Z", AlertStatus.RESOLVED,
                 "2026-11-23T18:22:20Z"),
                ("alertmanager:686187dce1084804:2026-11-23T18:22:10Z", AlertStatus.FIRING, None),
            ],
            0,
            id="firing-group-with-one-resolved-alert",
        ),
        pytest.param(
            "alertmanager/captured_v0.25_webhook_resolved.json",
            [("alertmanager:686187dce1084804:2026-11-23T18:22:10Z", AlertStatus.RESOLVED,
              "2026-11-23T18:22:28Z")],
            0,
            id="resolved-group",
        ),
        pytest.param(
            "alertmanager/captured_v0.25_webhook_max_alerts1_firing_truncated.json",
            [("alertmanager:94a5f760d44effed:2026-11-23T18:26:51Z", AlertStatus.FIRING, None)],
            1,
            id="max-alerts-firing-truncated",
        ),
        pytest.param(
            "alertmanager/captured_v0.25_webhook_max_alerts1_resolved_truncated.json",
            [("alertmanager:94a5f760d44effed:2026-11-23T18:26:51Z", AlertStatus.RESOLVED,
              "2026-11-23T18:26:57Z")],
            1,
            id="max-alerts-resolved-truncated",
        ),
        pytest.param(
            "alertmanager/oncall_example_firing.json",
            [
                ("alertmanager:f404ecabc8dd5cd7:2023-06-12T08:24:38.326Z", AlertStatus.FIRING, None),
                ("alertmanager:f8f08d4e32c61a9d:2023-06-12T08:24:38.326Z", AlertStatus.FIRING, None),
            ],
            0,
            id="grafana-oncall-example",
        ),
        pytest.param(
            "grafana/webhook_firing_docs.json",
            [
                ("alertmanager:c6eadffa33fcdf37:2021-10-12T09:51:03.157076+02:00", AlertStatus.FIRING, None),
                ("alertmanager:bc97ff14869b13e3:2021-10-12T09:56:03.157076+02:00", AlertStatus.FIRING, None),
            ],
            0,
            id="grafana-version-1-envelope",
        ),
    ],
)
def test_fixture_keys_status_and_truncation(fixture: str, expected: list, truncated: int) -> None:
    """Each alert gets the storm key, its own status and end time; truncatedAlerts is reported."""
    parsed = parse_ok(make(), load_fixture(fixture), NOW)
    got = [(a.key, a.status, a.ends_at) for a in parsed.alerts]
    want = [(key, status, None if end is None else parse_time(end)) for key, status, end in expected]
    assert got == want
    assert parsed.truncated == truncated
    assert parsed.acknowledge == ()
    assert parsed.status == 200


def test_alert_fields_mapped_from_labels_and_annotations() -> None:
    """Severity, resource, summary, description, labels and the generator link come from the alert."""
    alert = parse_ok(make(), load_fixture(FIRING_2), NOW).alerts[0]
    assert alert.source == "alertmanager"
    assert alert.fingerprint == "94a5f760d44effed"
    assert alert.identity == "alertmanager/94a5f760d44effed"
    assert alert.severity is Severity.CRITICAL
    assert alert.resource == "localhost:8081"
    assert alert.service is None
    assert alert.summary == "Instance localhost:8081 down"
    assert alert.description == "localhost:8081 of job node has been down for more than 1 minute."
    assert alert.starts_at == parse_time("2026-11-23T18:22:10Z")
    assert alert.labels == {
        "alertname": "InstanceDown", "instance": "localhost:8081", "job": "node", "severity": "critical",
    }
    assert alert.links == (Link("http://prometheus.example.org:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1",
                                "Source"),)


def test_grafana_runbook_annotation_becomes_a_link() -> None:
    """A runbook_url annotation is added after the generatorURL link."""
    alert = parse_ok(make(), load_fixture("grafana/webhook_firing_docs.json"), NOW).alerts[0]
    assert alert.links == (
        Link("https://play.grafana.org/alerting/1afz29v7z/edit", "Source"),
        Link("https://myrunbook.com/runbook/1234", "Runbook"),
    )
    assert alert.severity is Severity.WARNING  # no severity label: the default


def test_key_is_prefixed_with_the_configured_source_name() -> None:
    """The episode key and the identity use the source's configured name, not its type."""
    alert = parse_ok(make("am-prod"), load_fixture(FIRING_2), NOW).alerts[0]
    assert alert.key == "am-prod:94a5f760d44effed:2026-11-23T18:22:10Z"
    assert alert.source == "am-prod"


@pytest.mark.parametrize(
    ("options", "edits", "field", "expected"),
    [
        pytest.param({}, [], "summary", "Instance localhost:8081 down", id="summary-annotation"),
        pytest.param({}, [(("alerts", 0, "annotations", "summary"), DELETE)], "summary",
                     "localhost:8081 of job node has been down for more than 1 minute.",
                     id="summary-falls-back-to-description"),
        pytest.param({}, [(("alerts", 0, "annotations"), {})], "summary", "InstanceDown",
                     id="summary-falls-back-to-alertname"),
        pytest.param({}, [(("alerts", 0, "annotations"), {"message": "m", "description": "d"})],
                     "summary", "m", id="summary-prefers-message-over-description"),
        pytest.param({"severity_label": "priority"},
                     [(("alerts", 0, "labels", "priority"), "P1")], "severity", Severity.CRITICAL,
                     id="severity-from-configured-label"),
        pytest.param({}, [(("alerts", 0, "labels", "severity"), DELETE)], "severity", Severity.WARNING,
                     id="severity-default-warning"),
        pytest.param({"default_severity": "info"}, [(("alerts", 0, "labels", "severity"), "weird")],
                     "severity", Severity.INFO, id="unknown-severity-uses-configured-default"),
        pytest.param({}, [(("alerts", 0, "labels", "service"), "checkout")], "service", "checkout",
                     id="service-label"),
        pytest.param({"service_labels": ["team", "job"]}, [], "service", "node",
                     id="service-first-non-empty-configured-label"),
        pytest.param({"resource_labels": ["host", "instance"]},
                     [(("alerts", 0, "labels", "host"), "db-1")], "resource", "db-1",
                     id="resource-first-configured-label"),
        pytest.param({}, [(("alerts", 0, "labels", "instance"), "")], "resource", None,
                     id="empty-resource-label-is-none"),
    ],
)
def test_configurable_field_mapping(options: dict, edits: list, field: str, expected: object) -> None:
    """Summary falls back through annotations; severity, service and resource follow config."""
    alert = parse_ok(make(**options), edited(FIRING_2, *edits), NOW).alerts[0]
    assert getattr(alert, field) == expected


def test_fingerprint_from_labels_when_payload_has_none() -> None:
    """Without a fingerprint the canonical hash of the labels (or identity_labels) is the identity."""
    body = edited(FIRING_2, (("alerts", 0, "fingerprint"), DELETE))
    labels = {
        "alertname": "InstanceDown", "instance": "localhost:8081", "job": "node", "severity": "critical",
    }
    alert = parse_ok(make(), body, NOW).alerts[0]
    assert alert.fingerprint == canonical_fingerprint(labels)
    assert alert.key == f"alertmanager:{canonical_fingerprint(labels)}:2026-11-23T18:22:10Z"
    narrow = parse_ok(make(identity_labels=["alertname", "instance"]), body, NOW).alerts[0]
    assert narrow.fingerprint == canonical_fingerprint(labels, ["alertname", "instance"])


def test_vendor_fingerprint_wins_over_identity_labels() -> None:
    """identity_labels only apply when Alertmanager sent no fingerprint (the storm key uses its)."""
    alert = parse_ok(make(identity_labels=["alertname"]), load_fixture(FIRING_2), NOW).alerts[0]
    assert alert.fingerprint == "94a5f760d44effed"


@pytest.mark.parametrize(
    ("status", "ends_at", "expected_status", "expected_end"),
    [
        pytest.param("resolved", "0001-01-01T00:00:00Z", AlertStatus.RESOLVED, NOW,
                     id="resolved-zero-end-is-now"),
        pytest.param("resolved", DELETE, AlertStatus.RESOLVED, NOW, id="resolved-no-end-is-now"),
        pytest.param("firing", "2026-11-23T19:00:00Z", AlertStatus.FIRING, None, id="firing-ignores-end"),
        pytest.param(DELETE, "2026-11-23T18:25:00Z", AlertStatus.RESOLVED, parse_time("2026-11-23T18:25:00Z"),
                     id="no-status-past-end-is-resolved"),
        pytest.param(DELETE, "0001-01-01T00:00:00Z", AlertStatus.FIRING, None,
                     id="no-status-zero-end-is-firing"),
        pytest.param("RESOLVED", "2026-11-23T18:25:00Z", AlertStatus.RESOLVED,
                     parse_time("2026-11-23T18:25:00Z"), id="status-case-insensitive"),
    ],
)
def test_status_and_end_time(status: object, ends_at: object, expected_status: AlertStatus,
                             expected_end: float | None) -> None:
    """Per-alert status decides; a resolved alert ends at endsAt, or now when that is unset."""
    body = edited(FIRING_2, (("alerts", 0, "status"), status), (("alerts", 0, "endsAt"), ends_at))
    alert = parse_ok(make(), body, NOW).alerts[0]
    assert (alert.status, alert.ends_at) == (expected_status, expected_end)


def test_label_values_are_coerced_to_strings() -> None:
    """Numbers and booleans become their JSON text and nulls are dropped from labels and annotations."""
    body = edited(
        FIRING_2,
        (("alerts", 0, "labels"), {"alertname": "X", "port": 8080, "up": False, "ratio": 0.5, "gone": None}),
        (("alerts", 0, "annotations"), {"summary": "s", "value": 3}),
    )
    alert = parse_ok(make(), body, NOW).alerts[0]
    assert alert.labels == {"alertname": "X", "port": "8080", "up": "false", "ratio": "0.5"}
    assert alert.annotations == {"summary": "s", "value": "3"}


def test_unknown_top_level_keys_and_versions_are_ignored() -> None:
    """Keys added by newer Alertmanagers (notification_reason, routeLabels) and other versions parse."""
    body = edited(FIRING_2, (("notification_reason",), "new"), (("routeLabels",), {"a": "b"}),
                  (("version",), "5"), (("groupLabels",), 7))
    assert len(parse_ok(make(), body, NOW).alerts) == 2


def test_empty_alert_list_is_accepted() -> None:
    """A notification with no alerts yields no alerts rather than an error."""
    assert parse_ok(make(), b'{"alerts": []}', NOW).alerts == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(b"{not json", "body", id="invalid-json"),
        pytest.param(b"[]", "body", id="array-body"),
        pytest.param(edited(FIRING_2, (("alerts",), DELETE)), "alerts", id="alerts-missing"),
        pytest.param(edited(FIRING_2, (("alerts",), {"a": 1})), "alerts", id="alerts-not-a-list"),
        pytest.param(edited(FIRING_2, (("alerts", 1), "x")), "alerts[1]", id="alert-not-an-object"),
        pytest.param(edited(FIRING_2, (("alerts", 1, "labels"), DELETE)), "alerts[1].labels",
                     id="labels-missing"),
        pytest.param(edited(FIRING_2, (("alerts", 1, "labels"), ["a"])), "alerts[1].labels",
                     id="labels-not-an-object"),
        pytest.param(edited(FIRING_2, (("alerts", 1, "labels", "job"), {"x": 1})), "alerts[1].labels.job",
                     id="label-value-an-object"),
        pytest.param(edited(FIRING_2, (("alerts", 0, "annotations", "summary"), [1])),
                     "alerts[0].annotations.summary", id="annotation-value-an-array"),
        pytest.param(edited(FIRING_2, (("alerts", 1, "startsAt"), DELETE)), "alerts[1].startsAt",
                     id="startsAt-missing"),
        pytest.param(edited(FIRING_2, (("alerts", 1, "startsAt"), "yesterday")), "alerts[1].startsAt",
                     id="startsAt-not-rfc3339"),
        pytest.param(edited(FIRING_2, (("alerts", 1, "startsAt"), 1700000000)), "alerts[1].startsAt",
                     id="startsAt-a-number"),
        pytest.param(edited(FIRING_2, (("alerts", 1, "startsAt"), "0001-01-01T00:00:00Z")),
                     "alerts[1].startsAt", id="startsAt-zero-time"),
        pytest.param(edited(FIRING_2, (("alerts", 1, "endsAt"), "soon")), "alerts[1].endsAt",
                     id="endsAt-not-rfc3339"),
        pytest.param(edited(FIRING_2, (("alerts", 1, "status"), "pending")), "alerts[1].status",
                     id="unknown-status"),
        pytest.param(edited(FIRING_2, (("alerts", 1, "fingerprint"), 42)), "alerts[1].fingerprint",
                     id="fingerprint-not-a-string"),
        pytest.param(edited(FIRING_2, (("alerts", 1, "generatorURL"), {})), "alerts[1].generatorURL",
                     id="generatorURL-not-a-string"),
        pytest.param(edited(FIRING_2, (("truncatedAlerts",), -1)), "truncatedAlerts",
                     id="truncatedAlerts-negative"),
        pytest.param(edited(FIRING_2, (("truncatedAlerts",), "2")), "truncatedAlerts",
                     id="truncatedAlerts-a-string"),
    ],
)
def test_invalid_payloads_name_the_field(body: bytes, field: str) -> None:
    """A payload the source cannot accept is a 400 whose field is the dotted path of the problem."""
    error = parse_error(make(), body, NOW)
    assert (error.field, error.status) == (field, 400)
    status, payload = make().error_body(error.field, error.reason, error.status)
    assert status == 400
    assert payload == {"error": "payload_invalid", "field": field, "reason": error.reason}


def test_parse_is_pure() -> None:
    """The same bytes at the same `now` give equal alerts, whatever the headers."""
    body = load_fixture(FIRING_1RESOLVED)
    first = make().parse(body, {}, NOW)
    second = make().parse(body, {"User-Agent": "Alertmanager/0.25.0"}, NOW)
    assert first == second
    for alert in first.alerts:
        assert orjson.loads(orjson.dumps(alert.to_dict())) == alert.to_dict()


@pytest.mark.parametrize(
    ("fixture", "resolved"),
    [
        ("alertmanager/captured_v0.25_webhook_firing_2alerts.json", False),
        ("alertmanager/captured_v0.25_webhook_firing_1resolved_1firing.json", False),
        ("alertmanager/captured_v0.25_webhook_resolved.json", True),
        ("alertmanager/captured_v0.25_webhook_max_alerts1_resolved_truncated.json", True),
    ],
    ids=["firing", "firing-group-with-a-resolved-alert", "resolved-group", "resolved-group-truncated"],
)
def test_group_key_and_group_resolved(fixture: str, resolved: bool) -> None:
    """groupKey is the sender group; only a group whose status is resolved declares all its alerts resolved."""
    body = load_fixture(fixture)
    parsed = parse_ok(make(), body, NOW)
    assert parsed.sender_group == orjson.loads(body)["groupKey"]
    assert parsed.group_resolved is resolved


def test_repeated_firing_items_are_reused() -> None:
    """A byte-identical firing re-send gives the same Alert, and the resolve of it is parsed afresh."""
    source = make()
    body = load_fixture(FIRING_2)
    first = parse_ok(source, body, NOW).alerts
    again = parse_ok(source, body, NOW + 300).alerts
    assert [a is b for a, b in zip(first, again, strict=True)] == [True, True]
    resolved = parse_ok(source, load_fixture("alertmanager/captured_v0.25_webhook_resolved.json"), NOW).alerts
    assert all(a.status.value == "resolved" for a in resolved)
