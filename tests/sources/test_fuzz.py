"""Every source parser fed junk returns a Parsed or raises PayloadInvalid (4xx, field named), nothing else."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.errors import PayloadInvalid
from bridge.model import Alert
from bridge.plugins import Parsed
from sources.alertmanager import AlertmanagerSource, AlertmanagerSourceConfig
from sources.datadog import DatadogSource, DatadogSourceConfig
from sources.generic import GenericSource, GenericSourceConfig
from sources.grafana import GrafanaSource, GrafanaSourceConfig
from sources.pagerduty import PagerDutySource, PagerDutySourceConfig
from sources.prometheus import PrometheusSource, PrometheusSourceConfig
from tests.sources.conftest import load_fixture

NOW = 1795458600.0  # 2026-11-23T18:30:00Z
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SOURCES: dict[str, Any] = {
    "alertmanager": AlertmanagerSource(AlertmanagerSourceConfig(name="am", type="alertmanager")),
    "prometheus": PrometheusSource(PrometheusSourceConfig(name="prom", type="prometheus")),
    "pagerduty": PagerDutySource(PagerDutySourceConfig(name="pd", type="pagerduty", routing_key_length=None)),
    "generic": GenericSource(GenericSourceConfig(
        name="gen", type="generic", alerts_path="alerts", summary="annotations.summary",
        fingerprint="fingerprint",
        status="status", severity="labels.severity", labels="labels", annotations="annotations",
        label_paths={"first": "values.B", "whole": "values"}, service="labels.team", resource="labels.zone",
        starts_at="startsAt", ends_at="endsAt", url="generatorURL", description="annotations.description",
    )),
}

FIXTURES: dict[str, list[str]] = {
    "alertmanager": [
        "alertmanager/captured_v0.25_webhook_firing_1resolved_1firing.json",
        "alertmanager/captured_v0.25_webhook_max_alerts1_firing_truncated.json",
        "alertmanager/oncall_example_firing.json",
        "grafana/webhook_firing_docs.json",
    ],
    "prometheus": [
        "alertmanager_api/post_api_v2_alerts_request_firing.json",
        "alertmanager_api/post_api_v2_alerts_request_resolve.json",
    ],
    "pagerduty": [
        "pagerduty_events_v2/captured_alertmanager_v0.25_trigger.json",
        "pagerduty_events_v2/captured_alertmanager_v0.25_resolve.json",
        "pagerduty_events_v2/openapi_enqueue_trigger_example.json",
        "pagerduty_events_v2/devdocs_trigger_example.json",
        "pagerduty_events_v2/devdocs_acknowledge_example.json",
    ],
    "generic": [
        "grafana/webhook_firing_docs.json",
        "alertmanager/captured_v0.25_webhook_firing_2alerts.json",
    ],
}

#: Keys the parsers look for, so random objects reach past the first check.
KEYS = st.sampled_from([
    "alerts", "labels", "annotations", "startsAt", "endsAt", "status", "fingerprint", "generatorURL",
    "truncatedAlerts", "routing_key", "event_action", "dedup_key", "payload", "summary", "source",
    "severity", "custom_details", "timestamp", "links", "href", "client_url", "values", "B", "team",
]) | st.text(max_size=8)
SCALARS = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["firing", "resolved", "trigger", "resolve", "acknowledge", "critical", "error",
                       "2026-11-23T18:22:10Z", "0001-01-01T00:00:00Z", "1700000000000", "", "x" * 40])
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    SCALARS, lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=30,
)


def check(kind: str, body: bytes) -> None:
    """The parser's contract on one body: a well-formed Parsed, or a PayloadInvalid that names a field."""
    source = SOURCES[kind]
    try:
        parsed = source.parse(body, {}, NOW)
    except PayloadInvalid as exc:
        assert isinstance(exc.field, str) and exc.field, exc
        assert isinstance(exc.reason, str) and exc.reason
        assert 400 <= exc.status < 500
        status, error = source.error_body(exc.field, exc.reason, exc.status)
        assert status == exc.status
        assert (error["field"], error["reason"]) == (exc.field, exc.reason)
        orjson.dumps(error)
        return
    assert isinstance(parsed, Parsed)
    for alert in parsed.alerts:
        assert isinstance(alert, Alert)
        assert alert.source == source.name
        assert alert.key.startswith(f"{source.name}:") and alert.fingerprint
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in alert.labels.items())
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in alert.annotations.items())
        assert math.isfinite(alert.starts_at)
        assert alert.ends_at is None or math.isfinite(alert.ends_at)
        orjson.dumps(alert.to_dict())
    if parsed.response is not None:
        orjson.dumps(parsed.response)


def mutate(data: st.DataObject, doc: Any) -> Any:
    """Drop a key or element, or replace a value with random JSON, at a random place in `doc`."""
    containers: list[Any] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict | list) and value:
            containers.append(value)
            for child in value.values() if isinstance(value, dict) else value:
                walk(child)

    walk(doc)
    if not containers:
        return data.draw(JSON_VALUES)
    target = data.draw(st.sampled_from(containers))
    slot = data.draw(st.sampled_from(list(target) if isinstance(target, dict) else range(len(target))))
    if data.draw(st.booleans()):
        del target[slot]
    else:
        target[slot] = data.draw(JSON_VALUES)
    return doc


@pytest.mark.parametrize("kind", sorted(SOURCES))
@FUZZ
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes(kind: str, body: bytes) -> None:
    """Random bytes are parsed or rejected with PayloadInvalid, never another exception."""
    check(kind, body)


@pytest.mark.parametrize("kind", sorted(SOURCES))
@FUZZ
@given(value=JSON_VALUES)
def test_arbitrary_json(kind: str, value: Any) -> None:
    """Any JSON value, wrong types everywhere, is parsed or rejected with PayloadInvalid."""
    check(kind, json.dumps(value).encode())


@pytest.mark.parametrize("kind", sorted(SOURCES))
@FUZZ
@given(data=st.data())
def test_mutated_real_fixtures(kind: str, data: st.DataObject) -> None:
    """Real payloads with keys dropped or replaced are parsed or rejected with PayloadInvalid."""
    doc = orjson.loads(load_fixture(data.draw(st.sampled_from(FIXTURES[kind]))))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        doc = mutate(data, doc)
    check(kind, json.dumps(doc).encode())


def _nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = {"a": [leaf]}
    return leaf


DEEP = _nested(300, "x")  # within the JSON decoder's limit, beyond orjson's encoder limit
DEEP_BODIES = {
    "alertmanager": {"alerts": [{"labels": {"a": DEEP}, "startsAt": "2026-11-23T18:22:10Z"}]},
    "prometheus": [{"labels": {"a": "b"}, "annotations": DEEP}],
    "pagerduty": {"routing_key": "k", "event_action": "trigger",
                  "payload": {"summary": "s", "source": "h", "severity": "info",
                              "custom_details": {"d": DEEP}}},
    "generic": {"alerts": [{"annotations": {"summary": "s"}, "labels": {"x": DEEP}, "values": DEEP}]},
}


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_deeply_nested_values(kind: str) -> None:
    """Values nested deeper than the JSON encoder accepts are rejected cleanly (no RecursionError)."""
    check(kind, json.dumps(DEEP_BODIES[kind]).encode())


@pytest.mark.parametrize("kind", sorted(SOURCES))
@pytest.mark.parametrize("depth", [1023, 5000], ids=["at-decoder-limit", "beyond-decoder-limit"])
def test_deeply_nested_bodies(kind: str, depth: int) -> None:
    """A body nested past the decoder's limit is a 400 on `body`; one just inside it is handled."""
    check(kind, b"[" * depth + b"]" * depth)


# ------------------------------------------------------------------------------ grafana and datadog
# Added after the tests above (whose parametrization was fixed when they were defined), so the
# newer sources get their own copies of the same checks, over their fixtures and storm samples.

SOURCES["grafana"] = GrafanaSource(GrafanaSourceConfig(name="graf", type="grafana"))
SOURCES["datadog"] = DatadogSource(DatadogSourceConfig(name="dd", type="datadog"))
SOURCES["datadog-fields"] = DatadogSource(DatadogSourceConfig(
    name="ddf", type="datadog", fingerprint_fields=["alert_id", "org.id", 'tags["x"]'],
))
NEWER = ["datadog", "datadog-fields", "grafana"]


def _storm_bodies(name: str) -> list[Any]:
    lines = load_fixture(f"storm/{name}").splitlines()
    return [orjson.loads(line)["body"] for line in lines if line.strip()]


_DATADOG_DOCS = [orjson.loads(load_fixture(f"datadog/{name}")) for name in (
    "webhook_default_payload_rendered_triggered.json", "webhook_default_template.json",
    "webhook_template_extended_servicenow.json")] + _storm_bodies("datadog_samples.jsonl")
_GRAFANA_DOCS = [orjson.loads(load_fixture(f"grafana/{name}")) for name in (
    "webhook_firing_docs.json", "webhook_grafana12_test_alert_keep.json")] + _storm_bodies("grafana_samples.jsonl")
NEWER_DOCS: dict[str, list[Any]] = {
    "grafana": _GRAFANA_DOCS, "datadog": _DATADOG_DOCS, "datadog-fields": _DATADOG_DOCS,
}

#: The newer sources' field names and template values, so random objects reach past the first check.
NEWER_KEYS = KEYS | st.sampled_from([
    "alert_id", "alert_title", "alert_transition", "alert_type", "alert_status", "alert_priority",
    "priority", "alert_scope", "aggreg_key", "alert_cycle_key", "hostname", "host_name", "tags", "link",
    "title", "body", "date", "last_updated", "org", "id", "dashboardURL", "panelURL", "silenceURL",
    "externalURL", "groupKey", "state", "instance", "service",
])
NEWER_SCALARS = SCALARS | st.sampled_from([
    "Triggered", "Re-Triggered", "Recovered", "Warn", "No Data", "success", "warning", "P1", "alerting",
    "ok", "no_data", "pending", "$ALERT_CYCLE_KEY", "$TAGS", "env:prod,host:a,service:b,bare", "1591216985000",
    "[Triggered on {host:a}] x", "[P1] [Recovered] y", "%%%\nRunbook: https://rb.example/1\n%%%",
    "The monitor was last triggered at Wed Jun 03 2020 20:43:04 UTC.", "https://app.example/monitors#12",
    "?orgId=1", "http://[::1", "https://grafana.example/",
])
NEWER_JSON = st.recursive(
    NEWER_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(NEWER_KEYS, children, max_size=6),
    max_leaves=30,
)


@pytest.mark.parametrize("kind", NEWER)
@FUZZ
@given(body=st.binary(max_size=300))
def test_newer_sources_arbitrary_bytes(kind: str, body: bytes) -> None:
    """Random bytes are parsed or rejected with PayloadInvalid by grafana and datadog, never another exception."""
    check(kind, body)


@pytest.mark.parametrize("kind", NEWER)
@FUZZ
@given(value=NEWER_JSON)
def test_newer_sources_arbitrary_json(kind: str, value: Any) -> None:
    """Any JSON value, with their field names and template values, is parsed or rejected with PayloadInvalid."""
    check(kind, json.dumps(value).encode())


@pytest.mark.parametrize("kind", NEWER)
@FUZZ
@given(data=st.data())
def test_newer_sources_mutated_real_fixtures(kind: str, data: st.DataObject) -> None:
    """Vendor fixtures and storm deliveries with keys dropped or replaced are parsed or rejected cleanly."""
    doc = json.loads(json.dumps(data.draw(st.sampled_from(NEWER_DOCS[kind]))))  # a fresh copy to mutate
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        doc = mutate(data, doc)
    check(kind, json.dumps(doc).encode())


NEWER_DEEP_BODIES = {
    "grafana": {"alerts": [{"labels": {"a": DEEP}, "startsAt": "2026-11-23T18:22:10Z"}]},
    "datadog": {"alert_id": "1", "tags": DEEP, "title": DEEP},
    "datadog-fields": {"alert_id": DEEP, "org": {"id": DEEP}},
}


@pytest.mark.parametrize("kind", NEWER)
def test_newer_sources_deeply_nested_values(kind: str) -> None:
    """Values nested deeper than the JSON encoder accepts are rejected cleanly (no RecursionError)."""
    check(kind, json.dumps(NEWER_DEEP_BODIES[kind]).encode())


@pytest.mark.parametrize("kind", NEWER)
@pytest.mark.parametrize("depth", [1023, 5000], ids=["at-decoder-limit", "beyond-decoder-limit"])
def test_newer_sources_deeply_nested_bodies(kind: str, depth: int) -> None:
    """A body nested past the decoder's limit is a 400 on `body`; one just inside it is handled."""
    check(kind, b"[" * depth + b"]" * depth)
