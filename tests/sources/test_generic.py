"""The generic JSON source: field paths over real Grafana, Google Cloud Monitoring and Datadog bodies."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from bridge.model import AlertStatus, Link, Severity, canonical_fingerprint, format_time, parse_time
from sources._common import MISSING, Path
from sources.generic import GenericSource, GenericSourceConfig
from tests.sources.conftest import DELETE, edited, load_fixture, parse_error, parse_ok

NOW = 1795458600.0  # 2026-11-23T18:30:00Z

GRAFANA = {
    "alerts_path": "alerts",
    "fingerprint": "fingerprint",
    "status": "status",
    "summary": "annotations.summary",
    "description": "annotations.description",
    "labels": "labels",
    "annotations": "annotations",
    "severity": "labels.severity",
    "service": "labels.team",
    "resource": "labels.zone",
    "starts_at": "startsAt",
    "ends_at": "endsAt",
    "url": "generatorURL",
}
GCP = {
    "alerts_path": "incident",
    "fingerprint": "incident_id",
    "status": "state",
    "summary": "summary",
    "description": "documentation.content",
    "labels": "resource.labels",
    "label_paths": {
        "policy": "policy_name", "resource_type": "resource.type", "threshold": "threshold_value",
    },
    "resource": "resource_name",
    "starts_at": "started_at",
    "ends_at": "ended_at",
    "url": "url",
}
DATADOG = {
    "fingerprint": "id",
    "summary": "title",
    "description": "body",
    "starts_at": "date",
    "label_paths": {"org": "org.name", "event_type": "event_type"},
}


def make(name: str = "generic", **options: Any) -> GenericSource:
    config = GenericSourceConfig.model_validate({"name": name, "type": "generic", **options})
    return GenericSource(config)


def body_of(doc: Any) -> bytes:
    return orjson.dumps(doc)


def test_grafana_webhook_alerts_list() -> None:
    """A list of alert objects maps path by path; keys are fingerprint and startsAt as sent."""
    parsed = parse_ok(make("grafana", **GRAFANA), load_fixture("grafana/webhook_firing_docs.json"), NOW)
    assert [a.key for a in parsed.alerts] == [
        "grafana:c6eadffa33fcdf37:2021-10-12T09:51:03.157076+02:00",
        "grafana:bc97ff14869b13e3:2021-10-12T09:56:03.157076+02:00",
    ]
    alert = parsed.alerts[0]
    assert alert.status is AlertStatus.FIRING
    assert alert.starts_at == parse_time("2021-10-12T09:51:03.157076+02:00")
    assert alert.ends_at is None  # Go zero time
    assert (alert.summary, alert.description) == ("This alert was triggered for zone us-1",
                                                  "The system has high memory usage")
    assert (alert.service, alert.resource, alert.severity) == ("blue", "us-1", Severity.WARNING)
    assert alert.labels == {"alertname": "High memory usage", "team": "blue", "zone": "us-1"}
    assert alert.annotations["runbook_url"] == "https://myrunbook.com/runbook/1234"
    assert alert.links == (Link("https://play.grafana.org/alerting/1afz29v7z/edit", "Source"),)


@pytest.mark.parametrize(
    ("fixture", "status", "key", "starts", "ends"),
    [
        pytest.param("gcp_monitoring/webhook_v1.2_open_captured.json", AlertStatus.FIRING,
                     "gcp:0.mtdi83m6w8ao:1675315787", 1675315787.0, None, id="open-incident"),
        pytest.param("gcp_monitoring/webhook_v1.2_closed_docs_copy.json", AlertStatus.RESOLVED,
                     "gcp:0.opqiw61fsv7p:1577840461", 1577840461.0, 1577877071.0, id="closed-incident"),
    ],
)
def test_google_cloud_monitoring_incident(fixture: str, status: AlertStatus, key: str, starts: float,
                                          ends: float | None) -> None:
    """One object at `incident`; state open/closed; epoch-second times; ended_at null is unset."""
    (alert,) = parse_ok(make("gcp", **GCP), load_fixture(fixture), NOW).alerts
    assert (alert.status, alert.key, alert.starts_at, alert.ends_at) == (status, key, starts, ends)
    assert alert.labels["resource_type"] == "gce_instance"
    assert alert.links[0].href.startswith("https://console.cloud.google.com/monitoring/alerting/incidents/")


def test_google_label_paths_and_missing_ones() -> None:
    """label_paths add labels; a path absent from the body adds none."""
    source = make("gcp", **GCP)
    open_body = load_fixture("gcp_monitoring/webhook_v1.2_open_captured.json")
    closed_body = load_fixture("gcp_monitoring/webhook_v1.2_closed_docs_copy.json")
    open_labels = parse_ok(source, open_body, NOW).alerts[0].labels
    closed_labels = parse_ok(source, closed_body, NOW).alerts[0].labels
    assert open_labels == {
        "project_id": "xxxxxxxxxxxxxxxxxxxxxxxx", "policy": "choonho-server-cpu-alert-policy-test",
        "resource_type": "gce_instance", "threshold": "0.5",
    }
    assert "threshold" not in closed_labels
    assert closed_labels["zone"] == "us-central1-c"


def test_datadog_body_is_one_alert_with_epoch_ms_string() -> None:
    """alerts_path "" reads the body as the alert; an epoch-milliseconds string is a start time."""
    (alert,) = parse_ok(make("datadog", **DATADOG),
                        load_fixture("datadog/webhook_default_payload_rendered_triggered.json"), NOW).alerts
    assert alert.key == "datadog:5485379890863845239:1591216985000"
    assert alert.starts_at == 1591216985.0
    assert alert.status is AlertStatus.FIRING
    assert alert.summary == "[Triggered] [TEST] Host Cluster Alert"
    assert alert.labels == {"org": "Puppet", "event_type": "service_check"}


@pytest.mark.parametrize(
    ("path", "doc", "expected"),
    [
        pytest.param("a.b", {"a": {"b": 1}}, 1, id="dotted"),
        pytest.param("items[1].name", {"items": [{"name": "x"}, {"name": "y"}]}, "y", id="index"),
        pytest.param("[0]", [5, 6], 5, id="leading-index"),
        pytest.param('tags["team name"]', {"tags": {"team name": "sre"}}, "sre", id="quoted-key"),
        pytest.param('a["x.y"].z', {"a": {"x.y": {"z": True}}}, True, id="quoted-key-with-dot"),
        pytest.param("", {"k": 1}, {"k": 1}, id="empty-is-the-value"),
        pytest.param("a.c", {"a": {"b": 1}}, MISSING, id="missing-key"),
        pytest.param("items[5]", {"items": [1]}, MISSING, id="index-out-of-range"),
        pytest.param("a.b", {"a": [1]}, MISSING, id="name-on-a-list"),
        pytest.param("a[0]", {"a": {"0": 1}}, MISSING, id="index-on-an-object"),
        pytest.param("a.b", {"a": None}, MISSING, id="through-null"),
    ],
)
def test_path_resolver(path: str, doc: Any, expected: Any) -> None:
    """Paths walk objects by name and lists by index; anything that does not exist is MISSING."""
    found = Path.parse(path).get(doc)
    if expected is MISSING:
        assert found is MISSING
    else:
        assert found == expected


@pytest.mark.parametrize("path", ["a..b", ".a", "a[", "a[x]", "a]b", "a[0]b", "a[-1]", 'a["b]'],
                         ids=["double-dot", "leading-dot", "open-bracket", "non-numeric-index",
                              "stray-bracket", "name-after-index", "negative-index", "unterminated-quote"])
def test_invalid_paths_are_config_errors(path: str) -> None:
    """A malformed path is rejected when the config loads, not on the first request."""
    with pytest.raises(ValidationError):
        GenericSourceConfig(name="g", type="generic", summary=path)
    with pytest.raises(ValidationError):
        GenericSourceConfig(name="g", type="generic", summary="t", label_paths={"x": path})


def test_summary_path_is_required_in_config() -> None:
    """A generic source without a summary path is a config error."""
    with pytest.raises(ValidationError):
        GenericSourceConfig(name="g", type="generic")


ALERTS = {"alerts": [{"title": "a", "state": "firing"}, {"title": "b", "state": "ok"}, {"state": "ok"}]}


@pytest.mark.parametrize(
    ("options", "doc", "field"),
    [
        pytest.param({"alerts_path": "alerts"}, ALERTS, "alerts[2].title",
                     id="missing-summary-named-in-full"),
        pytest.param({}, [{"title": "a"}, {"name": "b"}], "[1].title", id="missing-summary-in-a-list-body"),
        pytest.param({}, {"name": "b"}, "title", id="missing-summary-in-an-object-body"),
        pytest.param({"alerts_path": "data.items"}, {"data": {}}, "data.items", id="alerts-path-missing"),
        pytest.param({"alerts_path": "alerts"}, {"alerts": "x"}, "alerts", id="alerts-path-a-string"),
        pytest.param({"alerts_path": "alerts"}, {"alerts": [{"title": "a"}, 3]}, "alerts[1]",
                     id="alert-not-an-object"),
        pytest.param({}, 7, "body", id="body-a-number"),
        pytest.param({}, {"title": {"a": 1}}, "title", id="summary-an-object"),
        pytest.param({"alerts_path": "alerts", "status": "state"},
                     {"alerts": [{"title": "a", "state": "pending"}]}, "alerts[0].state",
                     id="unknown-status"),
        pytest.param({"status": "state"}, {"title": "a", "state": [1]}, "state", id="status-an-array"),
        pytest.param({"starts_at": "at"}, {"title": "a", "at": "noon"}, "at", id="bad-start-time"),
        pytest.param({"ends_at": "until"}, {"title": "a", "until": -5}, "until", id="negative-epoch"),
        pytest.param({"fingerprint": "id"}, {"title": "a"}, "id", id="configured-fingerprint-missing"),
        pytest.param({"key": "episode"}, {"title": "a", "episode": None}, "episode",
                     id="configured-key-null"),
        pytest.param({"labels": "tags"}, {"title": "a", "tags": ["x"]}, "tags", id="labels-not-an-object"),
        pytest.param({"alerts_path": "alerts", "service": "svc.name"},
                     {"alerts": [{"title": "a", "svc": {"name": ["x"]}}]}, "alerts[0].svc.name",
                     id="service-an-array"),
    ],
)
def test_errors_name_the_full_path(options: dict, doc: Any, field: str) -> None:
    """A missing required value or a wrong type is a 400 naming the full path from the body root."""
    source = make(**{"summary": "title", **options})
    error = parse_error(source, body_of(doc), NOW)
    assert (error.field, error.status) == (field, 400)
    assert source.error_body(error.field, error.reason, error.status) == (
        400, {"error": "payload_invalid", "field": field, "reason": error.reason})


@pytest.mark.parametrize(
    ("value", "options", "status"),
    [
        pytest.param("ALERTING", {}, AlertStatus.FIRING, id="alerting-any-case"),
        pytest.param("Problem", {}, AlertStatus.FIRING, id="problem"),
        pytest.param("OK", {}, AlertStatus.RESOLVED, id="ok"),
        pytest.param(" recovered ", {}, AlertStatus.RESOLVED, id="recovered-trimmed"),
        pytest.param(1, {"firing_values": ["1"], "resolved_values": ["0"]}, AlertStatus.FIRING,
                     id="configured-numeric-firing"),
        pytest.param(0, {"firing_values": ["1"], "resolved_values": ["0"]}, AlertStatus.RESOLVED,
                     id="configured-numeric-resolved"),
        pytest.param(DELETE, {}, AlertStatus.FIRING, id="absent-is-firing"),
    ],
)
def test_status_values(value: Any, options: dict, status: AlertStatus) -> None:
    """Status values match firing_values / resolved_values case-insensitively."""
    doc = {"title": "t", "state": value}
    if value is DELETE:
        del doc["state"]
    alert = parse_ok(make(summary="title", status="state", **options), body_of(doc), NOW).alerts[0]
    assert alert.status is status
    assert alert.ends_at == (NOW if status is AlertStatus.RESOLVED else None)


@pytest.mark.parametrize(
    "value",
    [1700000000, 1700000000000, "1700000000", "1700000000000", 1700000000.0, "2023-11-14T22:13:20Z"],
    ids=["epoch-s", "epoch-ms", "epoch-s-string", "epoch-ms-string", "epoch-float", "rfc3339"],
)
def test_time_forms(value: Any) -> None:
    """Epoch seconds, epoch milliseconds (numbers or strings) and RFC 3339 all read as one instant."""
    alert = parse_ok(make(summary="t", starts_at="at"), body_of({"t": "x", "at": value}), NOW).alerts[0]
    assert alert.starts_at == 1700000000.0


def test_default_fingerprint_and_key() -> None:
    """Without paths, the labels' canonical hash is the fingerprint and now is the key's start."""
    doc = {"t": "disk full", "tags": {"host": "db-1", "env": "prod"}}
    alert = parse_ok(make(summary="t", labels="tags"), body_of(doc), NOW).alerts[0]
    fp = canonical_fingerprint({"host": "db-1", "env": "prod"})
    assert (alert.fingerprint, alert.key, alert.starts_at) == (fp, f"generic:{fp}:{format_time(NOW)}", NOW)
    narrow = parse_ok(make(summary="t", labels="tags", identity_labels=["host"]), body_of(doc), NOW).alerts[0]
    assert narrow.fingerprint == canonical_fingerprint({"host": "db-1"}, ["host"])


def test_fingerprint_of_summary_when_there_are_no_labels() -> None:
    """Alerts without labels are told apart by their summary, not all merged into one series."""
    one = parse_ok(make(summary="t"), body_of({"t": "a"}), NOW).alerts[0]
    two = parse_ok(make(summary="t"), body_of({"t": "b"}), NOW).alerts[0]
    assert one.fingerprint == canonical_fingerprint({"summary": "a"})
    assert one.fingerprint != two.fingerprint


def test_configured_key_path() -> None:
    """A key path gives the episode key directly, prefixed with the source name."""
    doc = {"title": "t", "cycle": "abc-1", "id": "42"}
    alert = parse_ok(make("dd", summary="title", key="cycle", fingerprint="id"), body_of(doc), NOW).alerts[0]
    assert (alert.key, alert.fingerprint) == ("dd:abc-1", "42")


@pytest.mark.parametrize(
    ("value", "severity"),
    [
        pytest.param("P1", Severity.CRITICAL, id="p1"),
        pytest.param("warn", Severity.WARNING, id="warn"),
        pytest.param("low", Severity.INFO, id="low"),
        pytest.param("bizarre", Severity.INFO, id="unknown-uses-default"),
        pytest.param(DELETE, Severity.INFO, id="absent-uses-default"),
    ],
)
def test_severity_coerced_with_default(value: Any, severity: Severity) -> None:
    """Severity goes through Severity.coerce; unknown or absent values take default_severity."""
    doc = {"t": "x", "sev": value}
    if value is DELETE:
        del doc["sev"]
    alert = parse_ok(make(summary="t", severity="sev", default_severity="info"), body_of(doc), NOW).alerts[0]
    assert alert.severity is severity


def test_label_and_annotation_values_become_strings() -> None:
    """Scalars become text, nested values compact JSON, nulls are dropped."""
    doc = {"t": "x", "tags": {"n": 3, "b": True, "o": {"k": [1]}, "z": None}, "meta": {"a": 1.5}}
    alert = parse_ok(make(summary="t", labels="tags", annotations="meta", label_paths={"whole": "meta"}),
                     body_of(doc), NOW).alerts[0]
    assert alert.labels == {"n": "3", "b": "true", "o": '{"k":[1]}', "whole": '{"a":1.5}'}
    assert alert.annotations == {"a": "1.5"}


def test_edited_grafana_alert_resolves_with_its_end_time() -> None:
    """A resolved alert keeps its ends_at path's value."""
    body = edited("grafana/webhook_firing_docs.json", (("alerts", 0, "status"), "resolved"),
                  (("alerts", 0, "endsAt"), "2021-10-12T10:00:00+02:00"))
    alert = parse_ok(make(**GRAFANA), body, NOW).alerts[0]
    assert (alert.status, alert.ends_at) == (AlertStatus.RESOLVED, parse_time("2021-10-12T10:00:00+02:00"))
