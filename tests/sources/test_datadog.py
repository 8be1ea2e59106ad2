"""The Datadog webhook source on a real default-template delivery, the documented templates and storm deliveries."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from bridge.model import AlertStatus, Link, Severity, canonical_fingerprint
from sources.datadog import DatadogSource, DatadogSourceConfig
from tests.sources.conftest import (
    DELETE,
    FIXTURES,
    edited,
    load_fixture,
    load_json_fixture,
    parse_error,
    parse_ok,
)

NOW = 1795458600.0  # 2026-11-23T18:30:00Z
RENDERED = "datadog/webhook_default_payload_rendered_triggered.json"
DEFAULT_TEMPLATE = "datadog/webhook_default_template.json"
EXTENDED_TEMPLATE = "datadog/webhook_template_extended_servicenow.json"
STORM_SAMPLES = FIXTURES / "storm" / "datadog_samples.jsonl"
STORM_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "storm" / "data"

# storm sample lines (tests/fixtures/storm/datadog_samples.jsonl)
WARN_HOST, RECOVERED_HOST, TRIGGERED_HOST = 0, 1, 2
WARN_SERVICE_ONLY, RECOVERED_SERVICE_ONLY, TRIGGERED_POD = 4, 5, 6
TRIGGERED_SERVICE_ONLY, RETRIGGERED_SERVICE_ONLY = 9, 10
RETRIGGERED_CYCLE_START, RETRIGGERED_CYCLE_END = 13, 14  # the Triggered and Recovered around sample 10

PG_SCOPE = "host:pg-partners-1,service:partners-db"
PG_SLOW_FP = canonical_fingerprint({"monitor": "49261104", "scope": PG_SCOPE})


def make(name: str = "datadog", **options: object) -> DatadogSource:
    config = DatadogSourceConfig.model_validate({"name": name, "type": "datadog", **options})
    return DatadogSource(config)


def storm_samples() -> list[dict[str, Any]]:
    """The storm deliveries cut into tests/fixtures/storm (`{"at", "source", "body"}` per line)."""
    return [orjson.loads(line) for line in STORM_SAMPLES.read_bytes().splitlines() if line.strip()]


def sample_body(index: int) -> dict[str, Any]:
    """The decoded body of one storm sample (a fresh copy)."""
    body: dict[str, Any] = storm_samples()[index]["body"]
    return body


def sample(index: int, **fields: Any) -> bytes:
    """A storm sample's body with top-level fields replaced (`DELETE` removes one), re-encoded."""
    body = sample_body(index)
    for name, value in fields.items():
        if value is DELETE:
            body.pop(name, None)
        else:
            body[name] = value
    return orjson.dumps(body)


def parse_one(body: bytes, source: DatadogSource | None = None, now: float = NOW) -> Any:
    (alert,) = parse_ok(source or make(), body, now).alerts
    return alert


# ----------------------------------------------------------------------------------- vendor fixtures

def test_rendered_default_template_delivery() -> None:
    """A real delivery of Datadog's default template: identity from the monitor link, key from the trigger time."""
    parsed = parse_ok(make(), load_fixture(RENDERED), NOW)
    assert (parsed.status, parsed.response, parsed.sender_group, parsed.group_resolved) == (200, None, None, False)
    (alert,) = parsed.alerts
    fingerprint = canonical_fingerprint({"monitor": "18692904", "scope": ""})
    assert alert.fingerprint == fingerprint
    assert alert.key == f"datadog:{fingerprint}:2020-06-03T20:43:04.000Z"
    assert (alert.status, alert.severity) == (AlertStatus.FIRING, Severity.CRITICAL)  # "[Triggered]"
    assert alert.summary == "[TEST] Host Cluster Alert"
    assert alert.labels == {"alertname": "[TEST] Host Cluster Alert"}
    assert alert.annotations == {"event_type": "service_check"}
    assert alert.starts_at == 1591216984.0  # "last triggered at Wed Jun 03 2020 20:43:04 UTC"
    assert alert.ends_at is None
    assert (alert.service, alert.resource) == (None, None)
    assert alert.description.startswith("@webhook-relay-test\n")
    assert alert.description.endswith("[[Edit Monitor](https://app.datadoghq.com/monitors#18692904/edit)]")
    assert "%%%" not in alert.description
    assert alert.links == (
        Link("https://app.datadoghq.com/monitors#18692904?", "Monitor Status"),
        Link("https://app.datadoghq.com/monitors#18692904/edit", "Edit Monitor"),
    )


@pytest.mark.parametrize("template", [DEFAULT_TEMPLATE, EXTENDED_TEMPLATE], ids=["default", "extended"])
def test_unrendered_templates_are_rejected_naming_the_identity(template: str) -> None:
    """A template whose variables were never substituted has no identity: a 400 naming alert_id."""
    error = parse_error(make(), load_fixture(template), NOW)
    assert (error.field, error.status) == ("alert_id", 400)


def test_extended_template_with_some_variables_left_unsubstituted() -> None:
    """Literal `$VARIABLES` in the extended template count as absent, never as values."""
    body = edited(
        EXTENDED_TEMPLATE,
        (("alert_id",), "1234"),
        (("title",), "[Recovered on {role:db}] Disk full"),
        (("tags",), "role:db,$TAGS,env:prod"),
        (("date",), "1591216985000"),
    )
    alert = parse_one(body)
    fingerprint = canonical_fingerprint({"monitor": "1234", "scope": "role:db"})
    assert alert.fingerprint == fingerprint
    assert alert.key == f"datadog:{fingerprint}:2020-06-03T20:43:05.000Z"  # no $ALERT_CYCLE_KEY, no footer
    assert alert.status is AlertStatus.RESOLVED  # $ALERT_TRANSITION, $ALERT_TYPE, $ALERT_STATUS ignored
    assert alert.severity is Severity.WARNING  # default: $ALERT_PRIORITY and $PRIORITY ignored
    assert alert.summary == "Disk full"  # $ALERT_TITLE ignored
    assert alert.labels == {"role": "db", "env": "prod", "alertname": "Disk full"}
    assert alert.annotations == {"alert_id": "1234"}
    assert alert.resource is None  # $HOSTNAME ignored
    assert alert.description == ""  # $EVENT_MSG ignored
    assert (alert.starts_at, alert.ends_at) == (1591216985.0, 1591216985.0)


# ------------------------------------------------------------------------------------- storm samples

def test_storm_samples_keys_follow_the_contract() -> None:
    """Every storm sample's key is "datadog:" + alert_cycle_key, verbatim."""
    for line in storm_samples():
        alert = parse_one(orjson.dumps(line["body"]))
        assert alert.key == "datadog:" + line["body"]["alert_cycle_key"]


@pytest.mark.parametrize(
    ("index", "status", "severity", "service", "resource"),
    [
        pytest.param(WARN_HOST, AlertStatus.FIRING, Severity.WARNING, "partners-db", "pg-partners-1",
                     id="warn-host"),
        pytest.param(RECOVERED_HOST, AlertStatus.RESOLVED, Severity.INFO, "partners-db", "pg-partners-1",
                     id="recovered-host"),
        pytest.param(TRIGGERED_HOST, AlertStatus.FIRING, Severity.CRITICAL, "partners-db", "pg-partners-1",
                     id="triggered-host"),
        pytest.param(3, AlertStatus.FIRING, Severity.CRITICAL, "payments-db", "mysql-payments-1",
                     id="retriggered-host"),
        pytest.param(WARN_SERVICE_ONLY, AlertStatus.FIRING, Severity.WARNING, "support-svc", None,
                     id="warn-service-only"),
        pytest.param(RECOVERED_SERVICE_ONLY, AlertStatus.RESOLVED, Severity.INFO, "support-svc", None,
                     id="recovered-service-only"),
        pytest.param(TRIGGERED_POD, AlertStatus.FIRING, Severity.CRITICAL, "mobile-bff", "k8s-node-b-02",
                     id="triggered-pod-scope"),
        pytest.param(RETRIGGERED_SERVICE_ONLY, AlertStatus.FIRING, Severity.CRITICAL, "fraud-api", None,
                     id="retriggered-service-only"),
    ],
)
def test_storm_samples_status_severity_service_resource(
    index: int, status: AlertStatus, severity: Severity, service: str, resource: str | None
) -> None:
    """Storm deliveries map transition to status, alert_type to severity, tags to service and host."""
    alert = parse_one(sample(index))
    assert (alert.status, alert.severity, alert.service, alert.resource) == (status, severity, service, resource)


def test_storm_sample_fields() -> None:
    """A storm Warn maps summary, description, labels, annotations, times and links."""
    alert = parse_one(sample(WARN_HOST))
    body = sample_body(WARN_HOST)
    assert alert.fingerprint == PG_SLOW_FP
    assert alert.summary == "[partners-db] slow queries piling up"
    assert alert.description.startswith("Slow queries piling up on host:pg-partners-1,service:partners-db.")
    assert alert.labels == {
        "env": "prod", "host": "pg-partners-1", "service": "partners-db", "team": "team-data-platform",
        "zone": "eu-west-1a", "alertname": "[partners-db] slow queries piling up",
    }
    assert alert.annotations == {name: body[name] for name in (
        "alert_id", "alert_scope", "alert_query", "alert_status", "alert_type", "alert_priority",
        "event_type", "aggreg_key", "alert_cycle_key")}
    assert alert.starts_at == 1709853559.0  # "last triggered at Thu Mar 07 2024 23:19:19 UTC"
    assert alert.ends_at is None
    assert alert.links == (
        Link("https://app.datadoghq.eu/event/event?id=7368000000000016132", "Event"),
        Link("https://runbooks.example.net/alerts/postgresqlslowqueries", "Runbook"),
        Link("https://app.datadoghq.eu/monitors/49261104?group=host%3Apg-partners-1%2Cservice%3Apartners-db"
             "&from_ts=1709852659185&to_ts=1709854459185&event_id=7368000000000016132", "Monitor Status"),
        Link("https://app.datadoghq.eu/monitors/49261104/edit", "Edit Monitor"),
    )


def test_storm_recovery_keeps_series_and_episode() -> None:
    """The recovery of an episode has the trigger's fingerprint and key, and ends at its date."""
    warn, recovered = parse_one(sample(WARN_HOST)), parse_one(sample(RECOVERED_HOST))
    assert (recovered.fingerprint, recovered.key) == (warn.fingerprint, warn.key)
    assert recovered.starts_at == warn.starts_at
    assert recovered.ends_at == 1709853659.623


def test_storm_retrigger_keeps_the_episode() -> None:
    """A Re-Triggered renotify and the recovery share the key of the cycle's first Triggered."""
    keys = {parse_one(sample(i)).key for i in (RETRIGGERED_CYCLE_START, RETRIGGERED_SERVICE_ONLY,
                                                 RETRIGGERED_CYCLE_END)}
    assert keys == {"datadog:c6dcf54c30eb72548e2ba75d01b93a4f"}


def test_storm_new_episode_same_series() -> None:
    """Two cycles of one monitor and scope share the fingerprint but get different keys."""
    first, again = parse_one(sample(TRIGGERED_SERVICE_ONLY)), parse_one(sample(RETRIGGERED_SERVICE_ONLY))
    assert first.fingerprint == again.fingerprint
    assert first.key != again.key


def test_fallback_key_is_stable_across_a_cycle_without_alert_cycle_key() -> None:
    """Without $ALERT_CYCLE_KEY, every delivery of one cycle gets one key, and each cycle its own."""
    keys: dict[str, set[str]] = {}
    for line in storm_samples():
        body = line["body"]
        cycle = body.pop("alert_cycle_key")
        keys.setdefault(cycle, set()).add(parse_one(orjson.dumps(body)).key)
    assert all(len(found) == 1 for found in keys.values())
    assert len({key for found in keys.values() for key in found}) == len(keys)


# ------------------------------------------------------------------------------------ mapping tables

@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"alert_transition": "Triggered"}, AlertStatus.FIRING, id="transition-triggered"),
        pytest.param({"alert_transition": "Re-Triggered"}, AlertStatus.FIRING, id="transition-retriggered"),
        pytest.param({"alert_transition": "Warn"}, AlertStatus.FIRING, id="transition-warn"),
        pytest.param({"alert_transition": "Re-Warn"}, AlertStatus.FIRING, id="transition-rewarn"),
        pytest.param({"alert_transition": "Renotify"}, AlertStatus.FIRING, id="transition-renotify"),
        pytest.param({"alert_transition": "No Data", "alert_type": "success"}, AlertStatus.FIRING,
                     id="transition-no-data-is-firing"),
        pytest.param({"alert_transition": "Re-No Data"}, AlertStatus.FIRING, id="transition-re-no-data"),
        pytest.param({"alert_transition": "Recovered", "alert_type": "error"}, AlertStatus.RESOLVED,
                     id="transition-recovered-wins-over-type"),
        pytest.param({"alert_transition": "RECOVERED"}, AlertStatus.RESOLVED, id="transition-case-insensitive"),
        pytest.param({"alert_transition": "Warn Recovered"}, AlertStatus.RESOLVED, id="transition-any-recovered"),
        pytest.param({"alert_transition": "$ALERT_TRANSITION", "alert_type": "success"}, AlertStatus.RESOLVED,
                     id="placeholder-transition-falls-to-type"),
        pytest.param({"alert_transition": "Sideways", "alert_type": "success"}, AlertStatus.RESOLVED,
                     id="unknown-transition-falls-to-type"),
        pytest.param({"alert_transition": DELETE, "alert_type": "success"}, AlertStatus.RESOLVED,
                     id="type-success"),
        pytest.param({"alert_transition": DELETE, "alert_type": "error"}, AlertStatus.FIRING, id="type-error"),
        pytest.param({"alert_transition": DELETE, "alert_type": "info"}, AlertStatus.FIRING, id="type-info"),
        pytest.param({"alert_transition": DELETE, "alert_type": DELETE, "alert_status": "OK"},
                     AlertStatus.RESOLVED, id="status-word-ok"),
        pytest.param({"alert_transition": DELETE, "alert_type": DELETE,
                      "alert_status": "avg:x{*} by {host} recovered on host:a"}, AlertStatus.RESOLVED,
                     id="status-text-says-recovered"),
        pytest.param({"alert_transition": DELETE, "alert_type": DELETE, "alert_status": "avg:x > 2 on host:a",
                      "title": "[Recovered on {host:a}] x"}, AlertStatus.RESOLVED,
                     id="status-text-silent-title-decides"),
        pytest.param({"alert_transition": DELETE, "alert_type": DELETE, "alert_status": DELETE,
                      "title": "[P1] [Triggered] x"}, AlertStatus.FIRING, id="title-priority-prefix"),
        pytest.param({"alert_transition": DELETE, "alert_type": DELETE, "alert_status": DELETE,
                      "title": "[Recovered] x"}, AlertStatus.RESOLVED, id="title-recovered"),
        pytest.param({"alert_transition": DELETE, "alert_type": DELETE, "alert_status": DELETE,
                      "title": "[TEST] x"}, AlertStatus.FIRING, id="no-indicator-is-firing"),
    ],
)
def test_status_mapping(fields: dict[str, Any], expected: AlertStatus) -> None:
    """Status: alert_transition, then alert_type, then alert_status, then the title prefix, else firing."""
    alert = parse_one(sample(WARN_HOST, **fields))
    assert alert.status is expected
    assert (alert.ends_at is None) is (expected is AlertStatus.FIRING)


@pytest.mark.parametrize(
    ("fields", "options", "expected"),
    [
        pytest.param({"alert_type": "error"}, {}, Severity.CRITICAL, id="type-error"),
        pytest.param({"alert_type": "warning"}, {}, Severity.WARNING, id="type-warning"),
        pytest.param({"alert_type": "info"}, {}, Severity.INFO, id="type-info"),
        pytest.param({"alert_type": "success"}, {}, Severity.INFO, id="type-success"),
        pytest.param({"alert_type": "Error"}, {}, Severity.CRITICAL, id="type-case-insensitive"),
        pytest.param({"alert_type": DELETE, "alert_transition": "Triggered"}, {}, Severity.CRITICAL,
                     id="transition-triggered"),
        pytest.param({"alert_type": DELETE, "alert_transition": "Re-Warn"}, {}, Severity.WARNING,
                     id="transition-rewarn"),
        pytest.param({"alert_type": "$ALERT_TYPE", "alert_transition": DELETE,
                      "title": "[Triggered on {host:a}] x"}, {}, Severity.CRITICAL, id="title-transition"),
        pytest.param({"alert_type": DELETE, "alert_transition": "No Data", "alert_priority": "P1"}, {},
                     Severity.CRITICAL, id="no-data-uses-priority-p1"),
        pytest.param({"alert_type": DELETE, "alert_transition": "Renotify", "alert_priority": "P3"}, {},
                     Severity.WARNING, id="renotify-uses-priority-p3"),
        pytest.param({"alert_type": DELETE, "alert_transition": "Recovered", "alert_priority": "P5"}, {},
                     Severity.INFO, id="recovered-uses-priority-p5"),
        pytest.param({"alert_type": DELETE, "alert_transition": DELETE, "alert_priority": "$ALERT_PRIORITY",
                      "priority": "low", "title": "x"}, {}, Severity.INFO, id="event-priority-low"),
        pytest.param({"alert_type": DELETE, "alert_transition": DELETE, "alert_priority": DELETE,
                      "priority": "normal", "title": "x"}, {}, Severity.WARNING, id="event-priority-normal-default"),
        pytest.param({"alert_type": "bogus", "alert_transition": DELETE, "alert_priority": DELETE,
                      "title": "x"}, {"default_severity": "critical"}, Severity.CRITICAL,
                     id="configured-default"),
    ],
)
def test_severity_mapping(fields: dict[str, Any], options: dict[str, Any], expected: Severity) -> None:
    """Severity: alert_type, then the transition, then alert_priority / priority, else default_severity."""
    assert parse_one(sample(WARN_HOST, **fields), make(**options)).severity is expected


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        pytest.param("env:prod,host:pg-1,service:partners-db", {"env": "prod", "host": "pg-1",
                                                                 "service": "partners-db"}, id="key-value"),
        pytest.param(" env:prod , ,service:db ", {"env": "prod", "service": "db"}, id="blanks-trimmed"),
        pytest.param("url:http://x:80/a", {"url": "http://x:80/a"}, id="value-with-colons"),
        pytest.param("canary,env:prod", {"tag_canary": "true", "env": "prod"}, id="bare-tag"),
        pytest.param(":odd", {"tag_:odd": "true"}, id="empty-name-is-bare"),
        pytest.param("role:db,role:primary,role:db", {"role": "db,primary"}, id="repeated-key-joined"),
        pytest.param("env:", {"env": ""}, id="empty-value"),
        pytest.param("$TAGS", {}, id="placeholder"),
        pytest.param("env:prod,$TAGS[team]", {"env": "prod"}, id="placeholder-entry-skipped"),
        pytest.param(["env:prod", "host:a,service:b"], {"env": "prod", "host": "a", "service": "b"},
                     id="list-of-strings"),
        pytest.param("", {}, id="empty"),
        pytest.param(DELETE, {}, id="missing"),
        pytest.param("alertname:custom", {"alertname": "custom"}, id="alertname-tag-wins"),
    ],
)
def test_tags_become_labels(tags: Any, expected: dict[str, str]) -> None:
    """`key:value` tags become labels, bare tags `tag_<name>=true`; the monitor name is `alertname`."""
    alert = parse_one(sample(WARN_HOST, tags=tags, alert_title="Slow"))
    assert alert.labels == {"alertname": "Slow", **expected}


@pytest.mark.parametrize(
    ("fields", "options", "service", "resource"),
    [
        pytest.param({}, {}, "partners-db", "pg-partners-1", id="defaults"),
        pytest.param({"hostname": "other-host"}, {}, "partners-db", "other-host", id="hostname-field-first"),
        pytest.param({"hostname": DELETE, "host_name": "h-2"}, {}, "partners-db", "h-2", id="host_name-field"),
        pytest.param({"hostname": ""}, {}, "partners-db", "pg-partners-1", id="empty-hostname-uses-tag"),
        pytest.param({"hostname": "$HOSTNAME"}, {}, "partners-db", "pg-partners-1",
                     id="placeholder-hostname-uses-tag"),
        pytest.param({"hostname": "", "tags": "service:x"}, {}, "x", None, id="no-host"),
        pytest.param({"tags": "app:web,service:db"}, {"service_tags": ["app", "service"]}, "web", "pg-partners-1",
                     id="configured-service-tag"),
        pytest.param({"hostname": "", "tags": "node:n1,host:h1"}, {"resource_tags": ["node", "host"]},
                     None, "n1", id="configured-resource-tag"),
    ],
)
def test_service_and_resource_mapping(fields: dict[str, Any], options: dict[str, Any], service: str | None,
                                      resource: str | None) -> None:
    """Service from the service tag; resource from hostname/host_name, else the host tag (both configurable)."""
    alert = parse_one(sample(WARN_HOST, **fields), make(**options))
    assert (alert.service, alert.resource) == (service, resource)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({}, "[partners-db] slow queries piling up", id="alert_title"),
        pytest.param({"alert_title": "$ALERT_TITLE"}, "[partners-db] slow queries piling up",
                     id="title-without-prefix"),
        pytest.param({"alert_title": DELETE, "title": "[Re-Triggered on {host:a}] Disk full"}, "Disk full",
                     id="retriggered-prefix-stripped"),
        pytest.param({"alert_title": DELETE, "title": "[P2] [Warn] Disk full"}, "Disk full",
                     id="priority-prefix-stripped"),
        pytest.param({"alert_title": DELETE, "title": "[db] Disk full"}, "[db] Disk full",
                     id="non-transition-bracket-kept"),
        pytest.param({"alert_title": DELETE, "title": DELETE}, "Datadog monitor 49261104", id="monitor-id"),
    ],
)
def test_summary(fields: dict[str, Any], expected: str) -> None:
    """Summary is alert_title, else the title without its transition prefix, else the monitor id."""
    assert parse_one(sample(WARN_HOST, **fields)).summary == expected


# ---------------------------------------------------------------------------------- identity and keys

@pytest.mark.parametrize(
    ("fields", "parts"),
    [
        pytest.param({}, {"monitor": "49261104", "scope": PG_SCOPE}, id="alert_id-and-scope"),
        pytest.param({"alert_scope": "service:partners-db, host:pg-partners-1"},
                     {"monitor": "49261104", "scope": PG_SCOPE}, id="scope-trimmed-and-sorted"),
        pytest.param({"alert_scope": "$ALERT_SCOPE"}, {"monitor": "49261104", "scope": PG_SCOPE},
                     id="scope-from-title"),
        pytest.param({"alert_scope": DELETE, "title": "x", "tags": "env:prod,service:db,host:h"},
                     {"monitor": "49261104", "scope": "host:h,service:db"}, id="scope-from-tags"),
        pytest.param({"alert_scope": DELETE, "title": "x", "tags": ""}, {"monitor": "49261104", "scope": ""},
                     id="monitor-without-scope"),
        pytest.param({"alert_id": 49261104}, {"monitor": "49261104", "scope": PG_SCOPE},
                     id="unquoted-number-alert_id"),
        pytest.param({"alert_id": "$ALERT_ID"}, {"monitor": "49261104", "scope": PG_SCOPE},
                     id="monitor-from-body-url"),
        pytest.param({"alert_id": DELETE, "body": "no links", "link": "https://app.datadoghq.eu/monitors#77"},
                     {"monitor": "77", "scope": PG_SCOPE}, id="monitor-from-link-fragment"),
        pytest.param({"alert_id": DELETE, "body": DELETE}, {"aggreg_key": "c214b118ea60061e17f25326fc05ea54"},
                     id="aggreg_key"),
        pytest.param({"alert_id": DELETE, "body": DELETE, "aggreg_key": DELETE},
                     {"monitor_name": "[partners-db] slow queries piling up", "scope": PG_SCOPE},
                     id="monitor-name"),
        pytest.param({"alert_id": DELETE, "body": DELETE, "aggreg_key": DELETE, "alert_title": DELETE,
                      "title": DELETE}, {"alert_cycle_key": "fdda20a6774c2d9e1dec9799679534aa"}, id="cycle-key"),
    ],
)
def test_default_fingerprint(fields: dict[str, Any], parts: dict[str, str]) -> None:
    """The series is the monitor plus its scope, falling back through monitor URL, aggreg_key, name, cycle."""
    assert parse_one(sample(WARN_HOST, **fields)).fingerprint == canonical_fingerprint(parts)


def test_configured_fingerprint_fields() -> None:
    """fingerprint_fields replaces the default identity with the hash of the listed paths' values."""
    source = make(fingerprint_fields=["alert_id", "org.id", "hostname"])
    alert = parse_one(sample(WARN_HOST), source)
    assert alert.fingerprint == canonical_fingerprint(
        {"alert_id": "49261104", "org.id": "100011", "hostname": "pg-partners-1"})
    assert alert.key == "datadog:fdda20a6774c2d9e1dec9799679534aa"  # the episode key is unchanged
    partial = parse_one(sample(WARN_HOST, hostname="$HOSTNAME"), source)
    assert partial.fingerprint == canonical_fingerprint({"alert_id": "49261104", "org.id": "100011", "hostname": ""})


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        pytest.param({}, "datadog:fdda20a6774c2d9e1dec9799679534aa", id="cycle-key-verbatim"),
        pytest.param({"alert_cycle_key": "$ALERT_CYCLE_KEY"}, f"datadog:{PG_SLOW_FP}:2024-03-07T23:19:19.000Z",
                     id="placeholder-uses-footer-trigger-time"),
        pytest.param({"alert_cycle_key": "", "body": "no footer"}, f"datadog:{PG_SLOW_FP}:2024-03-07T23:19:19.185Z",
                     id="blank-no-footer-uses-date"),
        pytest.param({"alert_cycle_key": DELETE, "body": DELETE, "date": "garbage"},
                     f"datadog:{PG_SLOW_FP}:2024-03-07T23:19:19.185Z", id="bad-date-uses-last_updated"),
        pytest.param({"alert_cycle_key": DELETE, "body": DELETE, "date": DELETE, "last_updated": "$LAST_UPDATED"},
                     f"datadog:{PG_SLOW_FP}:2026-11-23T18:30:00.000Z", id="no-time-uses-now"),
        pytest.param({"alert_cycle_key": 12345}, "datadog:12345", id="unquoted-number-cycle-key"),
    ],
)
def test_episode_key(fields: dict[str, Any], key: str) -> None:
    """The key is the cycle key when substituted, else fingerprint + trigger time (footer, date, updated, now)."""
    assert parse_one(sample(WARN_HOST, **fields)).key == key


def test_key_uses_the_configured_source_name() -> None:
    """The episode key and identity are prefixed with the source's configured name."""
    alert = parse_one(sample(WARN_HOST), make("dd-eu"))
    assert alert.key == "dd-eu:fdda20a6774c2d9e1dec9799679534aa"
    assert alert.identity == f"dd-eu/{PG_SLOW_FP}"


# ----------------------------------------------------------------------------------- times and links

@pytest.mark.parametrize(
    ("index", "fields", "starts_at", "ends_at"),
    [
        pytest.param(WARN_HOST, {}, 1709853559.0, None, id="footer-trigger-time"),
        pytest.param(WARN_HOST, {"body": "x"}, 1709853559.185, None, id="date-epoch-ms"),
        pytest.param(WARN_HOST, {"body": "x", "date": "2024-03-07T23:00:00Z"}, 1709852400.0, None,
                     id="date-rfc3339"),
        pytest.param(WARN_HOST, {"body": "last triggered at Thu Feb 31 2024 23:19:19 UTC", "date": "nope",
                                 "last_updated": "-5"}, NOW, None, id="all-unparseable-is-now"),
        pytest.param(RECOVERED_HOST, {}, 1709853559.0, 1709853659.623, id="recovered-ends-at-date"),
        pytest.param(RECOVERED_HOST, {"date": DELETE}, 1709853559.0, 1709853659.623,
                     id="recovered-ends-at-last_updated"),
        pytest.param(RECOVERED_HOST, {"date": DELETE, "last_updated": DELETE}, 1709853559.0, NOW,
                     id="recovered-ends-now"),
    ],
)
def test_times(index: int, fields: dict[str, Any], starts_at: float, ends_at: float | None) -> None:
    """starts_at is the trigger time, else date / last_updated (epoch ms), else now; a recovery ends at date."""
    alert = parse_one(sample(index, **fields))
    assert (alert.starts_at, alert.ends_at) == (starts_at, ends_at)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"link": "$LINK", "body": "see https://x.example/a."}, [("https://x.example/a", "")],
                     id="bare-url-trailing-dot"),
        pytest.param({"link": DELETE, "body": "%%%\nRunbook: https://rb.example/1\n%%%"},
                     [("https://rb.example/1", "Runbook")], id="runbook-line"),
        pytest.param({"link": DELETE, "body": "[docs](https://d.example/x) https://d.example/x"},
                     [("https://d.example/x", "docs")], id="markdown-then-same-bare-once"),
        pytest.param({"link": "https://e.example/1", "body": "https://e.example/1"},
                     [("https://e.example/1", "Event")], id="event-link-once"),
        pytest.param({"link": DELETE, "body": "ftp://x.example/1 mailto:a@b"}, [], id="only-http"),
        pytest.param({"link": DELETE, "body": " ".join(f"https://x.example/{i}" for i in range(30))},
                     [(f"https://x.example/{i}", "") for i in range(20)], id="capped-at-20"),
    ],
)
def test_links(fields: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    """Links: `link` as "Event", then body URLs (markdown text, "Runbook" lines), each once, at most 20."""
    alert = parse_one(sample(WARN_HOST, **fields))
    assert [(link.href, link.text) for link in alert.links] == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param("%%%\nhello **world**\n%%%", "hello **world**", id="fenced-markdown"),
        pytest.param("plain text", "plain text", id="plain"),
        pytest.param("$EVENT_MSG", "", id="placeholder"),
        pytest.param(DELETE, "", id="missing"),
    ],
)
def test_description(body: Any, expected: str) -> None:
    """The description is $EVENT_MSG without its `%%%` fences; a placeholder is no description."""
    assert parse_one(sample(WARN_HOST, body=body)).description == expected


# ------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(b"{not json", "body", id="invalid-json"),
        pytest.param(b"[]", "body", id="array-body"),
        pytest.param(b'"text"', "body", id="string-body"),
        pytest.param(b"{}", "alert_id", id="empty-object"),
        pytest.param(orjson.dumps({"title": "$EVENT_TITLE", "alert_id": "$ALERT_ID"}), "alert_id",
                     id="placeholders-only"),
        pytest.param(sample(WARN_HOST, alert_id={"id": 1}), "alert_id", id="alert_id-an-object"),
        pytest.param(sample(WARN_HOST, title=["x"]), "title", id="title-an-array"),
        pytest.param(sample(WARN_HOST, alert_transition={}), "alert_transition", id="transition-an-object"),
        pytest.param(sample(WARN_HOST, tags={"env": "prod"}), "tags", id="tags-an-object"),
        pytest.param(sample(WARN_HOST, tags=["env:prod", {"x": 1}]), "tags[1]", id="tags-list-item-an-object"),
        pytest.param(sample(WARN_HOST, body=[1]), "body", id="body-an-array"),
        pytest.param(sample(WARN_HOST, date={"ms": 1}), "date", id="date-an-object"),
        pytest.param(sample(WARN_HOST, alert_cycle_key=[]), "alert_cycle_key", id="cycle-key-an-array"),
    ],
)
def test_invalid_payloads_name_the_field(body: bytes, field: str) -> None:
    """A body that is not an object, has no identity, or a read field that is not text is a 400 naming it."""
    error = parse_error(make(), body, NOW)
    assert (error.field, error.status) == (field, 400)
    status, payload = make().error_body(error.field, error.reason, error.status)
    assert (status, payload) == (400, {"error": "payload_invalid", "field": field, "reason": error.reason})


def test_configured_fingerprint_fields_all_absent_names_the_first() -> None:
    """When none of fingerprint_fields has a value the 400 names the first and lists them all."""
    source = make(fingerprint_fields=["monitor.id", "alert_scope"])
    error = parse_error(source, sample(WARN_HOST, alert_scope="$ALERT_SCOPE"), NOW)
    assert error.field == "monitor.id"
    assert "monitor.id, alert_scope" in error.reason
    nested = parse_error(source, sample(WARN_HOST, monitor={"id": {"deep": 1}}), NOW)
    assert nested.field == "monitor.id"


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"fingerprint_fields": []}, id="empty-fingerprint-fields"),
        pytest.param({"fingerprint_fields": [""]}, id="empty-path"),
        pytest.param({"fingerprint_fields": ["a..b"]}, id="malformed-path"),
        pytest.param({"service_tag": "svc"}, id="misspelt-option"),
        pytest.param({"default_severity": "urgent"}, id="unknown-severity"),
    ],
)
def test_invalid_config_is_rejected(options: dict[str, Any]) -> None:
    """Bad fingerprint paths, unknown options and unknown severities are config errors."""
    with pytest.raises(ValidationError):
        make(**options)


def test_parse_is_pure() -> None:
    """The same bytes at the same `now` give equal results, whatever the headers; alerts round-trip."""
    body = sample(RECOVERED_HOST)
    first = make().parse(body, {}, NOW)
    assert first == make().parse(body, {"User-Agent": "Datadog Webhook"}, NOW)
    (alert,) = first.alerts
    assert orjson.loads(orjson.dumps(alert.to_dict())) == alert.to_dict()


def test_vendor_fixture_is_unchanged_by_parsing() -> None:
    """Parsing never edits the decoded payload it was given (the fixture still equals the file)."""
    doc = load_json_fixture(RENDERED)
    parse_ok(make(), orjson.dumps(doc), NOW)
    assert doc == load_json_fixture(RENDERED)


@pytest.mark.skipif(not STORM_DATA.is_dir(), reason="the storm data set (../shared/storm) is not present")
@pytest.mark.parametrize("dataset", ["small-11", "small-12", "medium-11"])
def test_every_storm_datadog_delivery_parses(dataset: str) -> None:
    """Every Datadog delivery of a storm stream parses into the contract's key, service, host and severity."""
    source, count = make(), 0
    severities = {"error": Severity.CRITICAL, "warning": Severity.WARNING, "success": Severity.INFO}
    with gzip.open(STORM_DATA / dataset / "stream.jsonl.gz", "rb") as stream:
        for line in stream:
            if b'"source":"datadog"' not in line:
                continue
            body = orjson.loads(line)["body"]
            alert = parse_one(orjson.dumps(body), source)
            tags = dict(tag.split(":", 1) for tag in body["tags"].split(","))
            assert alert.key == "datadog:" + body["alert_cycle_key"]
            assert (alert.service, alert.resource) == (tags["service"], tags.get("host"))
            assert alert.severity is severities[body["alert_type"]]
            recovered = body["alert_transition"] == "Recovered"
            assert alert.status is (AlertStatus.RESOLVED if recovered else AlertStatus.FIRING)
            count += 1
    assert count > 0
