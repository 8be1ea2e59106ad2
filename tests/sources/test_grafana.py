"""The Grafana webhook contact-point source on Grafana's documented examples and storm deliveries."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from bridge.model import AlertStatus, Link, Severity, canonical_fingerprint, parse_time
from sources.grafana import GrafanaSource, GrafanaSourceConfig
from tests.sources.conftest import DELETE, FIXTURES, edited, load_fixture, parse_error, parse_ok

NOW = 1795458600.0  # 2026-11-23T18:30:00Z
DOCS = "grafana/webhook_firing_docs.json"
TEST_ALERT = "grafana/webhook_grafana12_test_alert_keep.json"
STORM_SAMPLES = FIXTURES / "storm" / "grafana_samples.jsonl"
STORM_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "storm" / "data"


def make(name: str = "grafana", **options: object) -> GrafanaSource:
    config = GrafanaSourceConfig.model_validate({"name": name, "type": "grafana", **options})
    return GrafanaSource(config)


def storm_samples() -> list[dict]:
    """The storm deliveries cut into tests/fixtures/storm (`{"at", "source", "body"}` per line)."""
    return [orjson.loads(line) for line in STORM_SAMPLES.read_bytes().splitlines() if line.strip()]


def sample(index: int) -> bytes:
    """The body of one storm sample, as Grafana POSTed it."""
    return orjson.dumps(storm_samples()[index]["body"])


def test_documented_example_keys_status_and_links() -> None:
    """Grafana's docs example gives two firing alerts with the storm key, labels and labelled links."""
    parsed = parse_ok(make(), load_fixture(DOCS), NOW)
    assert [(a.key, a.status, a.ends_at) for a in parsed.alerts] == [
        ("grafana:c6eadffa33fcdf37:2021-10-12T09:51:03.157076+02:00", AlertStatus.FIRING, None),
        ("grafana:bc97ff14869b13e3:2021-10-12T09:56:03.157076+02:00", AlertStatus.FIRING, None),
    ]
    alert = parsed.alerts[0]
    assert (alert.source, alert.fingerprint) == ("grafana", "c6eadffa33fcdf37")
    assert alert.starts_at == parse_time("2021-10-12T09:51:03.157076+02:00")
    assert alert.labels == {"alertname": "High memory usage", "team": "blue", "zone": "us-1"}
    assert alert.summary == "This alert was triggered for zone us-1"
    assert alert.description == "The system has high memory usage"
    assert (alert.severity, alert.service, alert.resource) == (Severity.WARNING, None, None)
    assert alert.links == (
        Link("https://play.grafana.org/alerting/1afz29v7z/edit", "Source"),
        Link("https://myrunbook.com/runbook/1234", "Runbook"),
        Link("https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT2%2C"
             "team%3Dblue%2Czone%3Dus-1", "Silence"),
    )
    assert (parsed.sender_group, parsed.group_resolved, parsed.truncated) == ("{}:{}", False, 0)
    assert (parsed.status, parsed.response, parsed.acknowledge) == (200, None, ())


def test_grafana12_test_alert_resolves_relative_generator_url() -> None:
    """Grafana 12's relative generatorURL `?orgId=1` is resolved against externalURL; every URL is a link."""
    parsed = parse_ok(make(), load_fixture(TEST_ALERT), NOW)
    (alert,) = parsed.alerts
    assert alert.key == "grafana:c4edaaf9f9f839b0:2026-05-05T13:04:57.62281314Z"
    assert alert.starts_at == parse_time("2026-05-05T13:04:57.622813Z")
    assert alert.resource == "Grafana"  # the instance label
    assert (alert.summary, alert.description) == ("TEST", "Test Description")
    assert alert.links == (
        Link("https://grafana.example.com/?orgId=1", "Source"),
        Link("https://grafana.example.com/d/dashboard_uid", "Dashboard"),
        Link("https://grafana.example.com/d/dashboard_uid?viewPanel=1", "Panel"),
        Link("https://grafana.example.com/alerting/silence/new", "Silence"),
    )
    assert parsed.sender_group == "webhook-c4edaaf9f9f839b0-1777986297"


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        pytest.param([(("externalURL",), DELETE)], "?orgId=1", id="no-externalURL-keeps-relative"),
        pytest.param([(("externalURL",), "not a url")], "?orgId=1", id="non-http-externalURL-keeps-relative"),
        pytest.param([(("externalURL",), "https://g.example/sub/"), (("alerts", 0, "generatorURL"),
                      "/alerting/grafana/abc/view")], "https://g.example/alerting/grafana/abc/view",
                     id="absolute-path-joined-to-host"),
        pytest.param([(("alerts", 0, "generatorURL"), "http://[::1")], "http://[::1",
                     id="malformed-url-kept-as-sent"),
    ],
)
def test_relative_url_resolution(edits: list, expected: str) -> None:
    """Relative URLs are joined to an http(s) externalURL only; anything else is kept as sent."""
    (alert,) = parse_ok(make(), edited(TEST_ALERT, *edits), NOW).alerts
    assert alert.links[0] == Link(expected, "Source")


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        pytest.param([(("alerts", 0, "dashboardURL"), ""), (("alerts", 0, "panelURL"), ""),
                      (("alerts", 0, "silenceURL"), DELETE)],
                     ["Source"], id="empty-and-missing-urls-skipped"),
        pytest.param([(("alerts", 0, "annotations", "runbook_url"), "https://rb.example/x")],
                     ["Source", "Runbook", "Dashboard", "Panel", "Silence"], id="runbook-after-source"),
        pytest.param([(("alerts", 0, "panelURL"), "https://grafana.example.com/d/dashboard_uid")],
                     ["Source", "Dashboard", "Silence"], id="duplicate-url-listed-once"),
    ],
)
def test_link_order_and_dedup(edits: list, expected: list[str]) -> None:
    """Links come in a fixed order (source, runbook, dashboard, panel, silence), each URL once."""
    (alert,) = parse_ok(make(), edited(TEST_ALERT, *edits), NOW).alerts
    assert [link.text for link in alert.links] == expected


@pytest.mark.parametrize(
    ("index", "expected", "group_resolved"),
    [
        pytest.param(0, [("grafana:8adfd9ef2546dadb:2024-03-07T23:30:07.570Z", AlertStatus.FIRING,
                          Severity.WARNING, "edge-gateway")], False, id="firing-warning"),
        pytest.param(1, [("grafana:8adfd9ef2546dadb:2024-03-07T23:30:07.570Z", AlertStatus.RESOLVED,
                          Severity.WARNING, "edge-gateway")], True, id="resolved-warning"),
        pytest.param(2, [("grafana:22f9b8972c951e2b:2024-03-08T01:12:34.804Z", AlertStatus.FIRING,
                          Severity.CRITICAL, "mobile-bff")], False, id="firing-critical"),
        pytest.param(4, [("grafana:d37e25530d6ee26b:2024-03-09T07:08:17.038Z", AlertStatus.FIRING,
                          Severity.CRITICAL, "fraud-api"),
                         ("grafana:e99506864ba3894a:2024-03-09T07:09:37.003Z", AlertStatus.FIRING,
                          Severity.CRITICAL, "payments-worker")], False, id="firing-two-alerts"),
        pytest.param(5, [("grafana:d37e25530d6ee26b:2024-03-09T07:08:17.038Z", AlertStatus.RESOLVED,
                          Severity.CRITICAL, "fraud-api"),
                         ("grafana:e99506864ba3894a:2024-03-09T07:09:37.003Z", AlertStatus.RESOLVED,
                          Severity.CRITICAL, "payments-worker"),
                         ("grafana:a0f28f453c1ab570:2024-03-09T07:28:50.486Z", AlertStatus.RESOLVED,
                          Severity.WARNING, "web-frontend")], True, id="resolved-three-alerts"),
    ],
)
def test_storm_samples_keys_status_severity_service(index: int, expected: list, group_resolved: bool) -> None:
    """Storm deliveries map to the contract's keys, per-alert status, severity label and service label."""
    parsed = parse_ok(make(), sample(index), NOW)
    assert [(a.key, a.status, a.severity, a.service) for a in parsed.alerts] == expected
    assert parsed.group_resolved is group_resolved
    assert parsed.sender_group == storm_samples()[index]["body"]["groupKey"]


def test_storm_resolve_keeps_the_episode_key_and_sets_end() -> None:
    """The resolved re-send of an episode has the firing key, and ends at Grafana's endsAt."""
    firing = parse_ok(make(), sample(0), NOW).alerts[0]
    resolved = parse_ok(make(), sample(1), NOW).alerts[0]
    assert resolved.key == firing.key and resolved.fingerprint == firing.fingerprint
    assert firing.ends_at is None
    assert resolved.ends_at == parse_time("2024-03-07T23:49:29.385Z")
    assert resolved.links[:2] == (
        Link("https://grafana.example.net/alerting/grafana/7d42059eae8d6c/view?orgId=1", "Source"),
        Link("https://runbooks.example.net/alerts/highlatencyp99", "Runbook"),
    )
    assert "valueString" not in resolved.annotations and "values" not in resolved.labels


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param("firing", AlertStatus.FIRING, id="firing"),
        pytest.param("alerting", AlertStatus.FIRING, id="alerting"),
        pytest.param("Alerting", AlertStatus.FIRING, id="case-insensitive"),
        pytest.param("no_data", AlertStatus.FIRING, id="no-data"),
        pytest.param("NoData", AlertStatus.FIRING, id="nodata-camel"),
        pytest.param("error", AlertStatus.FIRING, id="error"),
        pytest.param("pending", AlertStatus.FIRING, id="pending"),
        pytest.param("resolved", AlertStatus.RESOLVED, id="resolved"),
        pytest.param("ok", AlertStatus.RESOLVED, id="ok"),
        pytest.param("Normal", AlertStatus.RESOLVED, id="normal"),
        pytest.param("inactive", AlertStatus.RESOLVED, id="inactive"),
    ],
)
def test_status_vocabulary(status: str, expected: AlertStatus) -> None:
    """Grafana's state names map onto firing/resolved; a resolved alert without endsAt ends now."""
    (alert,) = parse_ok(make(), edited(TEST_ALERT, (("alerts", 0, "status"), status)), NOW).alerts
    assert alert.status is expected
    assert alert.ends_at == (None if expected is AlertStatus.FIRING else NOW)


@pytest.mark.parametrize(
    ("status", "ends_at", "expected_status", "expected_end"),
    [
        pytest.param(DELETE, "2026-11-23T18:25:00Z", AlertStatus.RESOLVED, parse_time("2026-11-23T18:25:00Z"),
                     id="no-status-past-end-is-resolved"),
        pytest.param(DELETE, "0001-01-01T00:00:00Z", AlertStatus.FIRING, None, id="no-status-zero-end-is-firing"),
        pytest.param(DELETE, "2026-11-23T19:00:00Z", AlertStatus.FIRING, None, id="no-status-future-end-is-firing"),
        pytest.param("firing", "2026-11-23T18:25:00Z", AlertStatus.FIRING, None, id="firing-ignores-end"),
    ],
)
def test_status_from_end_time(status: object, ends_at: str, expected_status: AlertStatus,
                              expected_end: float | None) -> None:
    """Without a status the end time decides, as for Alertmanager; a firing alert has no end."""
    body = edited(TEST_ALERT, (("alerts", 0, "status"), status), (("alerts", 0, "endsAt"), ends_at))
    (alert,) = parse_ok(make(), body, NOW).alerts
    assert (alert.status, alert.ends_at) == (expected_status, expected_end)


@pytest.mark.parametrize(
    ("options", "labels", "field", "expected"),
    [
        pytest.param({}, {"service": "checkout"}, "service", "checkout", id="service-label"),
        pytest.param({}, {"team": "blue"}, "service", None, id="no-service-label"),
        pytest.param({"service_labels": ["team", "service"]}, {"team": "blue", "service": "x"}, "service",
                     "blue", id="service-first-configured-label"),
        pytest.param({}, {"instance": "db-1:9100", "host": "db-1"}, "resource", "db-1:9100",
                     id="resource-instance-first"),
        pytest.param({}, {"host": "db-1"}, "resource", "db-1", id="resource-host"),
        pytest.param({}, {"nodename": "node-a"}, "resource", "node-a", id="resource-nodename"),
        pytest.param({}, {"node": "k8s-1"}, "resource", "k8s-1", id="resource-node"),
        pytest.param({}, {"instance": "", "node": "k8s-1"}, "resource", "k8s-1", id="empty-label-skipped"),
        pytest.param({}, {"severity": "critical"}, "severity", Severity.CRITICAL, id="severity-critical"),
        pytest.param({}, {"severity": "info"}, "severity", Severity.INFO, id="severity-info"),
        pytest.param({}, {"severity": "none"}, "severity", Severity.NONE, id="severity-none"),
        pytest.param({}, {}, "severity", Severity.WARNING, id="severity-default"),
        pytest.param({"default_severity": "critical"}, {"severity": "bogus"}, "severity", Severity.CRITICAL,
                     id="unknown-severity-configured-default"),
        pytest.param({"severity_label": "priority"}, {"priority": "P1"}, "severity", Severity.CRITICAL,
                     id="severity-configured-label"),
    ],
)
def test_label_mapping(options: dict, labels: dict, field: str, expected: object) -> None:
    """Service, resource and severity come from the configured labels, as for Alertmanager."""
    body = edited(TEST_ALERT, (("alerts", 0, "labels"), {"alertname": "A", **labels}))
    (alert,) = parse_ok(make(**options), body, NOW).alerts
    assert getattr(alert, field) == expected


def test_fingerprint_from_labels_when_payload_has_none() -> None:
    """Without a fingerprint the canonical hash of the labels (or identity_labels) is the identity."""
    body = edited(TEST_ALERT, (("alerts", 0, "fingerprint"), DELETE))
    labels = {"alertname": "TestAlert", "grafana_folder": "Test Folder", "instance": "Grafana"}
    (alert,) = parse_ok(make(), body, NOW).alerts
    assert alert.fingerprint == canonical_fingerprint(labels)
    assert alert.key == f"grafana:{canonical_fingerprint(labels)}:2026-05-05T13:04:57.62281314Z"
    (narrow,) = parse_ok(make(identity_labels=["alertname"]), body, NOW).alerts
    assert narrow.fingerprint == canonical_fingerprint(labels, ["alertname"])


def test_key_uses_the_configured_source_name() -> None:
    """The episode key and the identity are prefixed with the source's configured name."""
    (alert,) = parse_ok(make("grafana-eu"), load_fixture(TEST_ALERT), NOW).alerts
    assert alert.key == "grafana-eu:c4edaaf9f9f839b0:2026-05-05T13:04:57.62281314Z"
    assert alert.identity == "grafana-eu/c4edaaf9f9f839b0"


@pytest.mark.parametrize(
    ("edits", "sender_group", "resolved"),
    [
        pytest.param([], "webhook-c4edaaf9f9f839b0-1777986297", False, id="firing-group"),
        pytest.param([(("status",), "resolved")], "webhook-c4edaaf9f9f839b0-1777986297", True,
                     id="resolved-group"),
        pytest.param([(("status",), DELETE), (("state",), "ok")], "webhook-c4edaaf9f9f839b0-1777986297", True,
                     id="no-status-state-ok"),
        pytest.param([(("status",), "firing"), (("state",), "ok")], "webhook-c4edaaf9f9f839b0-1777986297",
                     False, id="status-wins-over-state"),
        pytest.param([(("status",), "resolved"), (("groupKey",), DELETE)], None, False,
                     id="no-group-key-no-group-resolve"),
        pytest.param([(("groupKey",), 7)], None, False, id="non-string-group-key-ignored"),
    ],
)
def test_sender_group_and_group_resolved(edits: list, sender_group: str | None, resolved: bool) -> None:
    """groupKey is the sender group; a resolved group (status, else state ok) declares all alerts resolved."""
    parsed = parse_ok(make(), edited(TEST_ALERT, *edits), NOW)
    assert (parsed.sender_group, parsed.group_resolved) == (sender_group, resolved)


def test_unknown_top_level_keys_are_ignored() -> None:
    """Grafana-only envelope keys (orgId, title, state, message, appVersion) and other versions parse."""
    body = edited(DOCS, (("version",), "2"), (("title",), {"x": 1}), (("message",), [1]), (("orgId",), "1"))
    assert len(parse_ok(make(), body, NOW).alerts) == 2


def test_truncated_alerts_reported() -> None:
    """truncatedAlerts (alerts left out by max_alerts) is reported; null counts as zero."""
    assert parse_ok(make(), edited(DOCS, (("truncatedAlerts",), 3)), NOW).truncated == 3
    assert parse_ok(make(), edited(DOCS, (("truncatedAlerts",), None)), NOW).truncated == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(b"{not json", "body", id="invalid-json"),
        pytest.param(b"[]", "body", id="array-body"),
        pytest.param(edited(DOCS, (("alerts",), DELETE)), "alerts", id="alerts-missing"),
        pytest.param(edited(DOCS, (("alerts",), "x")), "alerts", id="alerts-not-a-list"),
        pytest.param(edited(DOCS, (("alerts", 1), 3)), "alerts[1]", id="alert-not-an-object"),
        pytest.param(edited(DOCS, (("alerts", 1, "labels"), DELETE)), "alerts[1].labels", id="labels-missing"),
        pytest.param(edited(DOCS, (("alerts", 1, "labels", "team"), ["blue"])), "alerts[1].labels.team",
                     id="label-value-an-array"),
        pytest.param(edited(DOCS, (("alerts", 0, "annotations"), "x")), "alerts[0].annotations",
                     id="annotations-not-an-object"),
        pytest.param(edited(DOCS, (("alerts", 1, "startsAt"), DELETE)), "alerts[1].startsAt",
                     id="startsAt-missing"),
        pytest.param(edited(DOCS, (("alerts", 1, "startsAt"), "0001-01-01T00:00:00Z")), "alerts[1].startsAt",
                     id="startsAt-zero-time"),
        pytest.param(edited(DOCS, (("alerts", 1, "startsAt"), "now")), "alerts[1].startsAt",
                     id="startsAt-not-rfc3339"),
        pytest.param(edited(DOCS, (("alerts", 1, "endsAt"), 5)), "alerts[1].endsAt", id="endsAt-a-number"),
        pytest.param(edited(DOCS, (("alerts", 1, "status"), "exploded")), "alerts[1].status",
                     id="unknown-status"),
        pytest.param(edited(DOCS, (("alerts", 1, "status"), 1)), "alerts[1].status", id="status-a-number"),
        pytest.param(edited(DOCS, (("alerts", 1, "fingerprint"), 42)), "alerts[1].fingerprint",
                     id="fingerprint-not-a-string"),
        pytest.param(edited(DOCS, (("alerts", 1, "generatorURL"), [])), "alerts[1].generatorURL",
                     id="generatorURL-not-a-string"),
        pytest.param(edited(DOCS, (("alerts", 1, "dashboardURL"), {})), "alerts[1].dashboardURL",
                     id="dashboardURL-not-a-string"),
        pytest.param(edited(DOCS, (("alerts", 0, "panelURL"), 1)), "alerts[0].panelURL",
                     id="panelURL-not-a-string"),
        pytest.param(edited(DOCS, (("alerts", 0, "silenceURL"), True)), "alerts[0].silenceURL",
                     id="silenceURL-not-a-string"),
        pytest.param(edited(DOCS, (("truncatedAlerts",), -1)), "truncatedAlerts", id="truncatedAlerts-negative"),
        pytest.param(edited(DOCS, (("truncatedAlerts",), True)), "truncatedAlerts", id="truncatedAlerts-a-bool"),
    ],
)
def test_invalid_payloads_name_the_field(body: bytes, field: str) -> None:
    """A payload the source cannot accept is a 400 whose field is the dotted path of the problem."""
    error = parse_error(make(), body, NOW)
    assert (error.field, error.status) == (field, 400)
    status, payload = make().error_body(error.field, error.reason, error.status)
    assert (status, payload) == (400, {"error": "payload_invalid", "field": field, "reason": error.reason})


def test_parse_is_pure() -> None:
    """The same bytes at the same `now` give equal results, whatever the headers; alerts round-trip."""
    body = sample(5)
    first = make().parse(body, {}, NOW)
    assert first == make().parse(body, {"User-Agent": "Grafana/12.4.2"}, NOW)
    for alert in first.alerts:
        assert orjson.loads(orjson.dumps(alert.to_dict())) == alert.to_dict()


@pytest.mark.skipif(not STORM_DATA.is_dir(), reason="the storm data set (../shared/storm) is not present")
@pytest.mark.parametrize("dataset", ["small-11", "small-12", "medium-11"])
def test_every_storm_grafana_delivery_parses(dataset: str) -> None:
    """Every Grafana delivery of a storm stream parses into the contract's keys, statuses and services."""
    source, count = make(), 0
    with gzip.open(STORM_DATA / dataset / "stream.jsonl.gz", "rb") as stream:
        for line in stream:
            if b'"source":"grafana"' not in line:
                continue
            body = orjson.loads(line)["body"]
            parsed = parse_ok(source, orjson.dumps(body), NOW)
            expected = [(f"grafana:{a['fingerprint']}:{a['startsAt']}", a["status"], a["labels"].get("service"))
                        for a in body["alerts"]]
            assert [(a.key, a.status.value, a.service) for a in parsed.alerts] == expected
            count += 1
    assert count > 0
