"""The Alertmanager API v2 (`POST /api/v2/alerts`) source, on the bodies Alertmanager 0.25 accepted."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from bridge.model import AlertStatus, Severity, canonical_fingerprint, format_time, parse_time
from sources.prometheus import PrometheusSource, PrometheusSourceConfig
from tests.sources.conftest import DELETE, edited, load_fixture, load_json_fixture, parse_error, parse_ok

FIRING = "alertmanager_api/post_api_v2_alerts_request_firing.json"
RESOLVE = "alertmanager_api/post_api_v2_alerts_request_resolve.json"
#: Just after the captures' resolve: the firing fixture's endsAt (19:22:10) is in the future.
NOW = 1795458150.0  # 2026-11-23T18:22:30Z
LABELS_8081 = {
    "alertname": "InstanceDown", "instance": "localhost:8081", "job": "node", "severity": "critical",
}
FP_8081 = canonical_fingerprint(LABELS_8081)


def make(name: str = "prometheus", **options: object) -> PrometheusSource:
    config = PrometheusSourceConfig.model_validate({"name": name, "type": "prometheus", **options})
    return PrometheusSource(config)


def test_mounted_at_the_alertmanager_api_path() -> None:
    """Prometheus posts to /api/v2/alerts, so the source is also mounted there."""
    assert PrometheusSource.compat_paths == ("/api/v2/alerts",)


def test_firing_post_is_accepted_with_an_empty_200() -> None:
    """Alertmanager answers a valid post with 200 and no body; so does this source."""
    parsed = parse_ok(make(), load_fixture(FIRING), NOW)
    assert (parsed.status, parsed.response) == (200, None)
    assert [a.status for a in parsed.alerts] == [AlertStatus.FIRING, AlertStatus.FIRING]
    first = parsed.alerts[0]
    assert first.key == f"prometheus:{FP_8081}:2026-11-23T18:22:10.000Z"
    assert first.fingerprint == FP_8081
    assert first.ends_at == parse_time("2026-11-23T19:22:10.000Z")
    assert first.starts_at == parse_time("2026-11-23T18:22:10.000Z")
    assert (first.severity, first.resource, first.summary) == (
        Severity.CRITICAL, "localhost:8081", "Instance localhost:8081 down")
    assert first.labels == LABELS_8081


def test_resolve_post_resolves_the_same_episode() -> None:
    """Re-posting identical labels with endsAt <= now resolves the alert under the same key."""
    firing = parse_ok(make(), load_fixture(FIRING), NOW).alerts[0]
    resolved = parse_ok(make(), load_fixture(RESOLVE), NOW).alerts[0]
    assert resolved.status is AlertStatus.RESOLVED
    assert resolved.ends_at == parse_time("2026-11-23T18:22:20.000Z")
    assert (resolved.key, resolved.fingerprint) == (firing.key, firing.fingerprint)


@pytest.mark.parametrize(
    ("options", "starts_at", "ends_at", "status", "expected_start", "expected_end", "key_time"),
    [
        pytest.param({}, "2026-11-23T18:00:00Z", "2026-11-23T18:10:00Z", AlertStatus.RESOLVED,
                     "2026-11-23T18:00:00Z", "2026-11-23T18:10:00Z", "2026-11-23T18:00:00Z",
                     id="endsAt-past-resolved"),
        pytest.param({}, "2026-11-23T18:00:00Z", "2026-11-23T18:22:30Z", AlertStatus.RESOLVED,
                     "2026-11-23T18:00:00Z", "2026-11-23T18:22:30Z", "2026-11-23T18:00:00Z",
                     id="endsAt-equal-now-resolved"),
        pytest.param({}, "2026-11-23T18:00:00Z", "2026-11-23T18:40:00Z", AlertStatus.FIRING,
                     "2026-11-23T18:00:00Z", "2026-11-23T18:40:00Z", "2026-11-23T18:00:00Z",
                     id="endsAt-future-firing-until-then"),
        pytest.param({}, "2026-11-23T18:00:00Z", DELETE, AlertStatus.FIRING,
                     "2026-11-23T18:00:00Z", "2026-11-23T18:27:30Z", "2026-11-23T18:00:00Z",
                     id="endsAt-absent-default-resolve-timeout-5m"),
        pytest.param({"resolve_timeout": "1m"}, "2026-11-23T18:00:00Z", DELETE, AlertStatus.FIRING,
                     "2026-11-23T18:00:00Z", "2026-11-23T18:23:30Z", "2026-11-23T18:00:00Z",
                     id="endsAt-absent-configured-resolve-timeout"),
        pytest.param({}, "2026-11-23T18:00:00Z", "0001-01-01T00:00:00Z", AlertStatus.FIRING,
                     "2026-11-23T18:00:00Z", "2026-11-23T18:27:30Z", "2026-11-23T18:00:00Z",
                     id="endsAt-go-zero-is-absent"),
        pytest.param({}, DELETE, DELETE, AlertStatus.FIRING,
                     "2026-11-23T18:22:30Z", "2026-11-23T18:27:30Z", format_time(NOW),
                     id="startsAt-absent-is-now"),
        pytest.param({}, DELETE, "2026-11-23T18:10:00Z", AlertStatus.RESOLVED,
                     "2026-11-23T18:10:00Z", "2026-11-23T18:10:00Z", "2026-11-23T18:10:00.000Z",
                     id="startsAt-absent-past-endsAt-starts-then"),
    ],
)
def test_endsAt_semantics(options: dict, starts_at: object, ends_at: object, status: AlertStatus,
                          expected_start: str, expected_end: str, key_time: str) -> None:
    """endsAt <= now resolves, a future endsAt expires then, no endsAt expires after resolve_timeout."""
    body = edited(FIRING, ((0, "startsAt"), starts_at), ((0, "endsAt"), ends_at))
    alert = parse_ok(make(**options), body, NOW).alerts[0]
    assert alert.status is status
    assert (alert.starts_at, alert.ends_at) == (parse_time(expected_start), parse_time(expected_end))
    assert alert.key == f"prometheus:{FP_8081}:{key_time}"


def test_empty_label_values_are_removed_before_hashing() -> None:
    """A label with an empty value is the same as no label, as in Alertmanager."""
    body = edited(FIRING, ((0, "labels", "team"), ""))
    alert = parse_ok(make(), body, NOW).alerts[0]
    assert alert.labels == LABELS_8081
    assert alert.fingerprint == FP_8081


def test_identity_labels_narrow_the_fingerprint() -> None:
    """With identity_labels set, only those labels identify the series."""
    alert = parse_ok(make(identity_labels=["alertname", "instance"]), load_fixture(FIRING), NOW).alerts[0]
    assert alert.fingerprint == canonical_fingerprint(LABELS_8081, ["alertname", "instance"])


def test_null_body_is_an_empty_post() -> None:
    """`null` decodes to no alerts in Alertmanager (Go's nil slice), so it is accepted."""
    assert parse_ok(make(), b"null", NOW).alerts == []


def _am_response(relpath: str) -> dict:
    return load_json_fixture(relpath)["body"]


@pytest.mark.parametrize(
    ("body", "status", "field", "body_out"),
    [
        pytest.param(b'{"labels": {"a": "b"}}', 400, "body",
                     _am_response("alertmanager_api/response_post_alerts_400_not_an_array.json"),
                     id="not-an-array-400-as-captured"),
        pytest.param(edited(FIRING, ((0, "labels"), DELETE)), 422, "[0].labels",
                     _am_response("alertmanager_api/response_post_alerts_422_missing_labels.json"),
                     id="missing-labels-422-as-captured"),
        pytest.param(edited(FIRING, ((1, "labels"), None)), 422, "[1].labels",
                     {"code": 602, "message": "1.labels in body is required"}, id="null-labels-422"),
        pytest.param(b"", 422, "body", {"code": 602, "message": "alerts in body is required"},
                     id="empty-body-422"),
        pytest.param(edited(FIRING, ((1, "labels"), {})), 400, "[1].labels",
                     {"code": 400, "message": "alert 1: at least one label pair required"},
                     id="empty-labels-400"),
        pytest.param(edited(FIRING, ((0, "labels"), {"alertname": ""})), 400, "[0].labels",
                     {"code": 400, "message": "alert 0: at least one label pair required"},
                     id="only-empty-label-values-400"),
        pytest.param(edited(FIRING, ((1, "labels", "!bad"), "x")), 400, "[1].labels.!bad",
                     {"code": 400, "message": 'alert 1: invalid label set: invalid name "!bad"'},
                     id="invalid-label-name-400"),
        pytest.param(edited(FIRING, ((0, "annotations", "runbook-url"), "x")), 400,
                     "[0].annotations.runbook-url",
                     {"code": 400, "message": 'alert 0: invalid annotations: invalid name "runbook-url"'},
                     id="invalid-annotation-name-400"),
        pytest.param(edited(FIRING, ((0, "startsAt"), "2026-11-23T20:00:00Z")), 400, "[0].endsAt",
                     {"code": 400, "message": "alert 0: start time must be before end time"},
                     id="startsAt-after-endsAt-400"),
        pytest.param(b"[{", 400, "body", None, id="invalid-json-400"),
        pytest.param(b'["x"]', 400, "[0]",
                     {"code": 400, "message": 'parsing alerts body from "" failed, because json: cannot '
                      "unmarshal string into Go value of type models.PostableAlert"},
                     id="element-not-an-object-400"),
        pytest.param(edited(FIRING, ((0, "labels", "job"), 1)), 400, "[0].labels.job",
                     {"code": 400, "message": 'parsing alerts body from "" failed, because json: cannot '
                      "unmarshal number into Go struct field PostableAlert.labels of type string"},
                     id="label-value-a-number-400"),
        pytest.param(edited(FIRING, ((0, "annotations"), [])), 400, "[0].annotations", None,
                     id="annotations-an-array-400"),
        pytest.param(edited(FIRING, ((0, "startsAt"), "tomorrow")), 400, "[0].startsAt", None,
                     id="startsAt-not-a-time-400"),
        pytest.param(edited(FIRING, ((0, "endsAt"), 5)), 400, "[0].endsAt", None,
                     id="endsAt-a-number-400"),
        pytest.param(edited(FIRING, ((0, "generatorURL"), ["x"])), 400, "[0].generatorURL", None,
                     id="generatorURL-an-array-400"),
    ],
)
def test_errors_match_alertmanager(body: bytes, status: int, field: str, body_out: dict | None) -> None:
    """Rejections carry Alertmanager's status code and {code, message} body, plus field and reason."""
    error = parse_error(make(), body, NOW)
    assert (error.status, error.field) == (status, field)
    got_status, got_body = make().error_body(error.field, error.reason, error.status)
    assert got_status == status
    assert got_body["field"] == field
    assert got_body["reason"] == error.reason == got_body["message"]
    if body_out is not None:
        assert {"code": got_body["code"], "message": got_body["message"]} == body_out
    else:
        assert got_body["code"] == 400
        assert got_body["message"].startswith('parsing alerts body from "" failed, because ')


def test_one_invalid_alert_rejects_the_whole_batch() -> None:
    """Nothing a bad request carried is half-applied: the valid alert 0 is not returned either."""
    body = edited(FIRING, ((1, "labels"), {}))
    assert parse_error(make(), body, NOW).reason == "alert 1: at least one label pair required"


def test_utf8_label_names_when_configured() -> None:
    """label_names: utf8 accepts the dotted names Alertmanager 0.27+ allows."""
    body = edited(FIRING, ((0, "labels", "service.name"), "checkout"))
    assert parse_error(make(), body, NOW).field == "[0].labels.service.name"
    alert = parse_ok(make(label_names="utf8", service_labels=["service.name"]), body, NOW).alerts[0]
    assert alert.service == "checkout"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param("5m", 300.0, id="minutes"),
        pytest.param("1h30m", 5400.0, id="compound"),
        pytest.param("90s", 90.0, id="seconds-suffix"),
        pytest.param(45, 45.0, id="number"),
        pytest.param("120", 120.0, id="numeric-string"),
    ],
)
def test_resolve_timeout_accepts_durations(value: object, seconds: float) -> None:
    """resolve_timeout takes Prometheus durations or seconds."""
    config = PrometheusSourceConfig(name="p", type="prometheus", resolve_timeout=value)
    assert config.resolve_timeout == seconds


@pytest.mark.parametrize(
    "value", ["5 minutes", "", "-5m", 0, True], ids=["words", "empty", "negative", "zero", "bool"]
)
def test_resolve_timeout_rejects_invalid_durations(value: object) -> None:
    """A resolve_timeout that is not a positive duration is a config error."""
    with pytest.raises(ValidationError):
        PrometheusSourceConfig(name="p", type="prometheus", resolve_timeout=value)


def test_accepted_alerts_serialize() -> None:
    """Every accepted alert round-trips through its JSON form (what the journal stores)."""
    for alert in parse_ok(make(), load_fixture(FIRING), NOW).alerts:
        assert orjson.loads(orjson.dumps(alert.to_dict())) == alert.to_dict()


def test_repeated_items_are_reused_but_expiry_is_refreshed() -> None:
    """A byte-identical re-send reuses the alert built before, with ends_at refreshed from `now`."""
    source = make()
    body = orjson.dumps([{"labels": {"alertname": "A"}, "startsAt": "2026-11-23T18:00:00Z"}])
    first = source.parse(body, {}, NOW).alerts[0]
    second = source.parse(body, {}, NOW + 60).alerts[0]
    assert second.ends_at == NOW + 60 + source.config.resolve_timeout
    assert (second.fingerprint, second.key, second.labels) == (first.fingerprint, first.key, first.labels)
    ended = orjson.dumps([{"labels": {"alertname": "A"}, "startsAt": "2026-11-23T18:00:00Z",
                           "endsAt": "2026-11-23T18:31:00Z"}])
    assert source.parse(ended, {}, NOW).alerts[0].status.value == "firing"
    assert source.parse(ended, {}, NOW + 3600).alerts[0].status.value == "resolved"  # not a stale cached firing
