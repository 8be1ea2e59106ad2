"""The PagerDuty Events API v2 source on PagerDuty's documented events and Alertmanager's captures."""

from __future__ import annotations

import pytest

from bridge.model import AlertStatus, Link, Severity, parse_time
from sources.pagerduty import PagerDutySource, PagerDutySourceConfig
from tests.sources.conftest import DELETE, edited, load_fixture, load_json_fixture, parse_error, parse_ok

NOW = 1795458600.0  # 2026-11-23T18:30:00Z
AM_TRIGGER = "pagerduty_events_v2/captured_alertmanager_v0.25_trigger.json"
AM_RESOLVE = "pagerduty_events_v2/captured_alertmanager_v0.25_resolve.json"
AM_UPDATE = "pagerduty_events_v2/captured_alertmanager_v0.25_trigger_update_partial_resolve.json"
OPENAPI_TRIGGER = "pagerduty_events_v2/openapi_enqueue_trigger_example.json"
DEVDOCS_TRIGGER = "pagerduty_events_v2/devdocs_trigger_example.json"
AM_DEDUP = "6deb6322f8f3d0527aa4eb1bc3139fdeea97e69c8a998b5c88b7e6f2756de185"


def make(name: str = "pagerduty", **options: object) -> PagerDutySource:
    config = PagerDutySourceConfig.model_validate({"name": name, "type": "pagerduty", **options})
    return PagerDutySource(config)


def test_mounted_at_the_events_api_path() -> None:
    """Tools post to /v2/enqueue, so the source is also mounted there."""
    assert PagerDutySource.compat_paths == ("/v2/enqueue",)


def test_alertmanager_trigger_is_a_firing_alert_with_the_documented_202() -> None:
    """Alertmanager's captured trigger is accepted with PagerDuty's 202 body and the storm key."""
    parsed = parse_ok(make(), load_fixture(AM_TRIGGER), NOW)
    assert parsed.status == 202
    documented = load_json_fixture("pagerduty_events_v2/devdocs_response_202.json")
    assert parsed.response == {**documented, "dedup_key": AM_DEDUP}
    openapi = load_json_fixture("pagerduty_events_v2/openapi_response_202_success.json")
    assert set(parsed.response) == set(openapi)
    (alert,) = parsed.alerts
    assert alert.status is AlertStatus.FIRING
    assert (alert.fingerprint, alert.key) == (AM_DEDUP, f"pagerduty:{AM_DEDUP}")
    assert alert.identity == f"pagerduty/{AM_DEDUP}"
    assert alert.severity is Severity.CRITICAL  # "error"
    assert alert.summary == "[FIRING:2] InstanceDown (node critical)"
    assert (alert.resource, alert.service) == ("Alertmanager", None)
    assert alert.starts_at == NOW  # no payload.timestamp
    assert alert.ends_at is None
    assert alert.labels["source"] == "Alertmanager"
    assert alert.labels["severity"] == "error"
    assert alert.labels["custom_details.num_firing"] == "2"
    assert alert.labels["custom_details.resolved"] == ""
    client = Link("http://alertmanager.example.org:9093/#/alerts?receiver=combo", "Alertmanager")
    assert alert.links == (client,)


def test_update_and_resolve_keep_the_dedup_key_episode() -> None:
    """A re-trigger and the resolve of the same dedup_key map to the same key; resolve is bare."""
    source = make()
    first = parse_ok(source, load_fixture(AM_TRIGGER), NOW).alerts[0]
    update = parse_ok(source, load_fixture(AM_UPDATE), NOW).alerts[0]
    resolved = parse_ok(source, load_fixture(AM_RESOLVE), NOW + 60)
    assert update.key == first.key
    assert update.summary == "[FIRING:1] InstanceDown (node critical)"
    (alert,) = resolved.alerts
    assert (alert.key, alert.fingerprint) == (first.key, first.fingerprint)
    assert alert.status is AlertStatus.RESOLVED
    assert (alert.ends_at, alert.summary, alert.severity) == (NOW + 60, "", Severity.WARNING)
    assert resolved.status == 202
    assert resolved.response == {"status": "success", "message": "Event processed", "dedup_key": AM_DEDUP}


def test_openapi_trigger_maps_every_payload_field() -> None:
    """component, group, class, source, severity, custom_details, timestamp and links are mapped."""
    (alert,) = parse_ok(make("pd"), load_fixture(OPENAPI_TRIGGER), NOW).alerts
    assert (alert.key, alert.fingerprint) == ("pd:srv01/mysql", "srv01/mysql")
    assert alert.severity is Severity.CRITICAL
    assert (alert.service, alert.resource) == ("mysql", "prod-datapipe03.example.com")
    assert alert.summary == "DISK at 99% on machine prod-datapipe03.example.com"
    assert alert.starts_at == parse_time("2015-07-17T08:42:58.315+00:00")
    assert alert.labels == {
        "component": "mysql",
        "group": "prod-datapipe",
        "class": "disk",
        "source": "prod-datapipe03.example.com",
        "severity": "critical",
        "custom_details.free space": "1%",
        "custom_details.ping time": "1500ms",
        "custom_details.load avg": "0.75",
    }
    assert alert.links == (
        Link("http://pagerduty.example.com", "An example link."),
        Link("https://monitoring.service.com", "Sample Monitoring Service"),
    )


def test_devdocs_placeholder_routing_key_gets_the_documented_400() -> None:
    """PagerDuty's own example uses a short routing key, which it rejects with this exact body."""
    error = parse_error(make(), load_fixture(DEVDOCS_TRIGGER), NOW)
    assert (error.field, error.status) == ("routing_key", 400)
    status, body = make().error_body(error.field, error.reason, error.status)
    documented = load_json_fixture("pagerduty_events_v2/devdocs_response_400_invalid_event.json")
    assert status == 400
    assert body == {**documented, "field": "routing_key", "reason": error.reason}


def test_devdocs_examples_accepted_when_length_check_is_off() -> None:
    """With routing_key_length null, the documented trigger/acknowledge/resolve examples parse."""
    source = make(routing_key_length=None)
    (alert,) = parse_ok(source, load_fixture(DEVDOCS_TRIGGER), NOW).alerts
    assert alert.key == "pagerduty:samplekeyhere"
    assert (alert.severity, alert.service) == (Severity.INFO, "postgres")
    assert alert.labels["custom_details.load avg"] == "0.75"

    ack = parse_ok(source, load_fixture("pagerduty_events_v2/devdocs_acknowledge_example.json"), NOW)
    assert (ack.alerts, ack.acknowledge, ack.status) == ([], ("pagerduty/dedupkeyhere",), 202)
    assert ack.response == {"status": "success", "message": "Event processed", "dedup_key": "dedupkeyhere"}

    resolved = parse_ok(source, load_fixture("pagerduty_events_v2/devdocs_resolve_example.json"), NOW)
    assert [(a.key, a.status, a.ends_at) for a in resolved.alerts] == [
        ("pagerduty:dedupkeyhere", AlertStatus.RESOLVED, NOW)]


def test_trigger_without_dedup_key_gets_a_deterministic_one() -> None:
    """The generated dedup_key is returned, stable for the same event and different per routing key."""
    body = edited(OPENAPI_TRIGGER, (("dedup_key",), DELETE))
    first = parse_ok(make(), body, NOW)
    again = parse_ok(make(), body, NOW + 100)
    other = parse_ok(make(), edited(OPENAPI_TRIGGER, (("dedup_key",), DELETE),
                                    (("routing_key",), "f" * 32)), NOW)
    assert first.response is not None and again.response is not None and other.response is not None
    dedup = first.response["dedup_key"]
    assert len(dedup) == 32
    assert first.alerts[0].fingerprint == dedup == again.response["dedup_key"]
    assert first.alerts[0].key == f"pagerduty:{dedup}"
    assert other.response["dedup_key"] != dedup


@pytest.mark.parametrize(
    ("value", "severity"),
    [
        pytest.param("critical", Severity.CRITICAL, id="critical"),
        pytest.param("error", Severity.CRITICAL, id="error-is-critical"),
        pytest.param("warning", Severity.WARNING, id="warning"),
        pytest.param("info", Severity.INFO, id="info"),
    ],
)
def test_severity_mapping(value: str, severity: Severity) -> None:
    """PagerDuty's four severities map onto the normalized scale."""
    body = edited(OPENAPI_TRIGGER, (("payload", "severity"), value))
    assert parse_ok(make(), body, NOW).alerts[0].severity is severity


@pytest.mark.parametrize(
    ("edits", "field", "reason"),
    [
        pytest.param([(("routing_key",), DELETE)], "routing_key", "'routing_key' is missing or blank",
                     id="routing-key-missing"),
        pytest.param([(("routing_key",), "  ")], "routing_key", "'routing_key' is missing or blank",
                     id="routing-key-blank"),
        pytest.param([(("routing_key",), 12)], "routing_key", "'routing_key' is missing or blank",
                     id="routing-key-a-number"),
        pytest.param([(("routing_key",), "x" * 33)], "routing_key",
                     "Length of 'routing_key' is incorrect (should be 32 characters)",
                     id="routing-key-33-chars"),
        pytest.param([(("event_action",), DELETE)], "event_action", "'event_action' is missing or blank",
                     id="event-action-missing"),
        pytest.param([(("event_action",), "escalate")], "event_action",
                     "'event_action' is invalid (must be one of: trigger, acknowledge, resolve)",
                     id="event-action-unknown"),
        pytest.param([(("dedup_key",), 7)], "dedup_key", "'dedup_key' must be a string",
                     id="dedup-key-a-number"),
        pytest.param([(("dedup_key",), "k" * 256)], "dedup_key",
                     "'dedup_key' is too long (maximum 255 characters)", id="dedup-key-256-chars"),
        pytest.param([(("event_action",), "resolve"), (("dedup_key",), DELETE)], "dedup_key",
                     "'dedup_key' is required for the resolve action", id="resolve-without-dedup-key"),
        pytest.param([(("event_action",), "acknowledge"), (("dedup_key",), "")], "dedup_key",
                     "'dedup_key' is required for the acknowledge action", id="acknowledge-blank-dedup-key"),
        pytest.param([(("payload",), DELETE)], "payload", "'payload' is missing or not an object",
                     id="payload-missing"),
        pytest.param([(("payload",), "text")], "payload", "'payload' is missing or not an object",
                     id="payload-a-string"),
        pytest.param([(("payload", "summary"), DELETE)], "payload.summary",
                     "'payload.summary' is missing or blank", id="summary-missing"),
        pytest.param([(("payload", "summary"), "s" * 1025)], "payload.summary",
                     "'payload.summary' is too long (maximum 1024 characters)", id="summary-1025-chars"),
        pytest.param([(("payload", "source"), "")], "payload.source", "'payload.source' is missing or blank",
                     id="source-blank"),
        pytest.param([(("payload", "severity"), DELETE)], "payload.severity",
                     "'payload.severity' is missing or blank", id="severity-missing"),
        pytest.param([(("payload", "severity"), "Critical")], "payload.severity",
                     "'payload.severity' is invalid (must be one of: critical, error, warning, info)",
                     id="severity-wrong-case"),
        pytest.param([(("payload", "component"), ["db"])], "payload.component",
                     "'payload.component' must be a string", id="component-an-array"),
    ],
)
def test_invalid_events_name_the_field(edits: list, field: str, reason: str) -> None:
    """An invalid event is a 400 "invalid event" whose errors, field and reason say what is wrong."""
    error = parse_error(make(), edited(OPENAPI_TRIGGER, *edits), NOW)
    assert (error.field, error.reason, error.status) == (field, reason, 400)
    status, body = make().error_body(error.field, error.reason, error.status)
    assert (status, body) == (400, {
        "status": "invalid event", "message": "Event object is invalid", "errors": [reason],
        "field": field, "reason": reason,
    })


def test_summary_of_1024_characters_is_accepted() -> None:
    """The summary limit is inclusive."""
    body = edited(OPENAPI_TRIGGER, (("payload", "summary"), "s" * 1024))
    assert parse_ok(make(), body, NOW).alerts[0].summary == "s" * 1024


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"{oops", "JSON parse error", id="invalid-json"),
        pytest.param(b"[1, 2]", "Event object format is unrecognized", id="array-body"),
    ],
)
def test_unrecognized_bodies_get_the_documented_error_shape(body: bytes, reason: str) -> None:
    """A body that is not a JSON object gets PagerDuty's "Unrecognized object" error body."""
    error = parse_error(make(), body, NOW)
    assert (error.field, error.reason) == ("body", reason)
    status, out = make().error_body(error.field, error.reason, error.status)
    documented = load_json_fixture("pagerduty_events_v2/openapi_response_error_example.json")
    assert status == 400
    assert {k: out[k] for k in ("status", "message")} == {k: documented[k] for k in ("status", "message")}
    assert (out["errors"], out["field"], out["reason"]) == ([reason], "body", reason)


@pytest.mark.parametrize(
    "fixture",
    ["pagerduty_events_v2/openapi_change_event_build_example.json",
     "pagerduty_events_v2/openapi_change_event_git_example.json"],
    ids=["build-change-event", "git-change-event"],
)
def test_change_events_are_not_alert_events(fixture: str) -> None:
    """Change events (for /v2/change/enqueue) lack event_action and are rejected naming it."""
    assert parse_error(make(), load_fixture(fixture), NOW).field == "event_action"


def test_routing_keys_allow_list() -> None:
    """With routing_keys set, only those keys are accepted (the key is the sender's credential)."""
    source = make(routing_keys=["e93facc04764012d7bfb002500d5d1a6"])
    assert len(parse_ok(source, load_fixture(AM_TRIGGER), NOW).alerts) == 1
    other = edited(AM_TRIGGER, (("routing_key",), "0" * 32))
    error = parse_error(source, other, NOW)
    assert (error.field, error.status) == ("routing_key", 400)


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        pytest.param("2015-07-17T08:42:58.315+0000", parse_time("2015-07-17T08:42:58.315Z"),
                     id="pd-offset-form"),
        pytest.param("2024-03-04T09:12:03Z", parse_time("2024-03-04T09:12:03Z"), id="rfc3339"),
        pytest.param("last tuesday", NOW, id="unparseable-is-now"),
        pytest.param(1700000000, NOW, id="number-is-now"),
        pytest.param(DELETE, NOW, id="absent-is-now"),
    ],
)
def test_timestamp_or_now(timestamp: object, expected: float) -> None:
    """payload.timestamp is the start time when it parses, else the receipt time."""
    body = edited(OPENAPI_TRIGGER, (("payload", "timestamp"), timestamp))
    assert parse_ok(make(), body, NOW).alerts[0].starts_at == expected


@pytest.mark.parametrize(
    ("details", "labels"),
    [
        pytest.param({"a": {"b": [1, 2]}}, {"custom_details.a": '{"b":[1,2]}'}, id="nested-json-encoded"),
        pytest.param({"n": None, "t": True}, {"custom_details.t": "true"}, id="null-dropped-bool-text"),
        pytest.param("free text", {"custom_details": "free text"}, id="string-details"),
        pytest.param([1, "x"], {"custom_details": '[1,"x"]'}, id="array-details"),
    ],
)
def test_custom_details_flattened_to_string_labels(details: object, labels: dict) -> None:
    """custom_details become one level of string labels; nested values are compact JSON."""
    body = edited(OPENAPI_TRIGGER, (("payload", "custom_details"), details))
    got = parse_ok(make(), body, NOW).alerts[0].labels
    assert {k: v for k, v in got.items() if k.startswith("custom_details")} == labels


def test_malformed_links_are_skipped() -> None:
    """Links without a string href are ignored rather than failing the page."""
    body = edited(OPENAPI_TRIGGER, (("links",), [{"text": "no href"}, "x", {"href": "https://a.example"}]),
                  (("client_url",), DELETE))
    assert parse_ok(make(), body, NOW).alerts[0].links == (Link("https://a.example", ""),)
