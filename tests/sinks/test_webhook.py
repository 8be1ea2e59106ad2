"""sinks/webhook.py: the documented JSON body, its headers, HMAC signing and config validation."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pydantic import ValidationError

from bridge.model import ActionKind
from bridge.plugins import Outcome
from sinks.webhook import WebhookSink, WebhookSinkConfig, sign, verify
from tests.sinks.conftest import ALL_KINDS, FakeReceiver, deliver, make_action

#: The incident object's keys: part of the public schema (version "1").
INCIDENT_KEYS = [
    "id", "key", "route", "status", "priority", "priority_reason", "pool", "title", "revision",
    "opened_at", "updated_at", "resolved_at", "acknowledged_by", "group_labels",
    "root_cause", "assignee", "escalation_level", "sla", "alerts_firing", "alerts",
]
SECRET = "s3cr3t-signing-key"


def config(**fields: object) -> WebhookSinkConfig:
    """A webhook config named `hooks`, validated from plain data as a loaded config file would be."""
    return WebhookSinkConfig.model_validate({"name": "hooks", "type": "webhook", **fields})


def webhook(url: str, **fields: object) -> WebhookSink:
    return WebhookSink(config(url=url, **fields))


@ALL_KINDS
def test_body_is_the_documented_schema(receiver: FakeReceiver, kind: ActionKind) -> None:
    """The body is exactly {version, action, idempotency_key, reason, at, incident, recipients, links}."""
    action = make_action(kind)
    outcome = deliver(webhook(receiver.url), action, key="inc-7f3a:hooks:9")
    assert outcome == Outcome.delivered(200)
    body = receiver.requests[0].json()
    assert body == {
        "version": "1",
        "action": kind.value,
        "idempotency_key": "inc-7f3a:hooks:9",
        "reason": action.reason,
        "at": "2024-03-04T09:12:03.123Z",
        "incident": action.incident.to_dict(),
        "recipients": [],
        "links": {},
    }
    assert list(body) == ["version", "action", "idempotency_key", "reason", "at", "incident", "recipients", "links"]
    assert list(body["incident"]) == INCIDENT_KEYS


@pytest.mark.parametrize(
    ("kind", "status", "acknowledged_by", "firing"),
    [
        (ActionKind.OPEN, "triggered", None, 2),
        (ActionKind.ACKNOWLEDGE, "acknowledged", "alice", 2),
        (ActionKind.RESOLVE, "resolved", None, 0),
    ],
    ids=["open-triggered", "acknowledge-by-alice", "resolve-none-firing"],
)
def test_incident_state_follows_the_action(receiver: FakeReceiver, kind: ActionKind, status: str,
                                           acknowledged_by: str | None, firing: int) -> None:
    """The incident in the body carries the status, acknowledger and firing count of its revision."""
    deliver(webhook(receiver.url), make_action(kind))
    incident = receiver.requests[0].json()["incident"]
    assert (incident["status"], incident["acknowledged_by"], incident["alerts_firing"]) == (
        status, acknowledged_by, firing)


def test_headers_carry_key_type_and_extras(receiver: FakeReceiver) -> None:
    """POST with JSON content type, the Idempotency-Key and the configured extra headers."""
    sink = webhook(receiver.url, headers={"Authorization": "Bearer t0ken", "X-Team": "db"})
    action = make_action()
    deliver(sink, action)
    request = receiver.requests[0]
    assert request.method == "POST"
    assert request.path == "/hooks/T000/B000/secret-token"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == action.idempotency_key("hooks") == "inc-7f3a:hooks:1"
    assert request.headers["Authorization"] == "Bearer t0ken"
    assert request.headers["X-Team"] == "db"


def test_unsigned_requests_have_no_signature_headers(receiver: FakeReceiver) -> None:
    """Without a secret, no timestamp or signature header is sent."""
    deliver(webhook(receiver.url), make_action())
    headers = receiver.requests[0].headers
    assert "X-Alertbridge-Signature" not in headers
    assert "X-Alertbridge-Timestamp" not in headers


def test_signature_verifies_with_the_helper(receiver: FakeReceiver) -> None:
    """The signature verifies with the right secret, and not with a wrong one or a changed body."""
    action = make_action()
    deliver(webhook(receiver.url, secret=SECRET), action)
    request = receiver.requests[0]
    timestamp = request.headers["X-Alertbridge-Timestamp"]
    signature = request.headers["X-Alertbridge-Signature"]
    assert timestamp == str(int(action.at))
    assert signature.startswith("sha256=")
    assert verify(SECRET.encode(), timestamp, request.body, signature)
    assert not verify(b"wrong-secret", timestamp, request.body, signature)
    assert not verify(SECRET.encode(), timestamp, request.body + b" ", signature)
    assert not verify(SECRET.encode(), int(timestamp) + 1, request.body, signature)
    assert not verify(SECRET.encode(), "not-a-number", request.body, signature)


def test_redelivery_is_byte_identical(receiver: FakeReceiver) -> None:
    """Delivering the same action twice sends the same body and signature (no wall clock)."""
    action = make_action()
    deliver(webhook(receiver.url, secret=SECRET), action)
    deliver(webhook(receiver.url, secret=SECRET), action)
    first, second = receiver.requests
    assert first.body == second.body
    assert first.headers["X-Alertbridge-Signature"] == second.headers["X-Alertbridge-Signature"]


def test_sign_is_hmac_sha256_over_timestamp_dot_body() -> None:
    """sign() is HMAC-SHA256 of `<timestamp>.<body>`, hex, prefixed `sha256=`."""
    expected = hmac.new(b"key", b"1709543523.{}", hashlib.sha256).hexdigest()
    assert sign(b"key", 1709543523, b"{}") == f"sha256={expected}"


CONFIG_ERRORS = [
    ("ftp-scheme", {"url": "ftp://example.org/in"}, "url", "got scheme 'ftp'"),
    ("no-scheme", {"url": "example.org/in"}, "url", "must be an http or https URL"),
    ("no-host", {"url": "https:///in"}, "url", "must name a host"),
    ("empty-secret", {"url": "https://x.example", "secret": ""}, "secret", "must not be empty"),
    ("reserved-header", {"url": "https://x.example", "headers": {"idempotency-key": "x"}}, "headers",
     "cannot be overridden"),
    ("header-crlf", {"url": "https://x.example", "headers": {"X-A": "v\r\nX-B: injected"}}, "headers",
     "line break"),
    ("unknown-field", {"url": "https://x.example", "method": "PUT"}, "method", "Extra inputs"),
]


@pytest.mark.parametrize(("fields", "where", "message"), [c[1:] for c in CONFIG_ERRORS],
                         ids=[c[0] for c in CONFIG_ERRORS])
def test_config_errors_name_the_field(fields: dict[str, object], where: str, message: str) -> None:
    """Invalid config is rejected with an error that names the field and the problem."""
    with pytest.raises(ValidationError) as caught:
        config(**fields)
    errors = caught.value.errors()
    assert [e["loc"] for e in errors] == [(where,)]
    assert message in errors[0]["msg"]


def test_config_errors_do_not_echo_header_values() -> None:
    """A rejected config does not print header values, which are often credentials."""
    with pytest.raises(ValidationError) as caught:
        config(url="https://x.example", headers={"Authorization": "Bearer t0ken\n"})
    assert "t0ken" not in str(caught.value)


def test_secrets_are_hidden_in_repr() -> None:
    """The signing secret and header values are SecretStr: hidden in repr and dumps."""
    loaded = config(url="https://x.example", secret=SECRET, headers={"Authorization": "Bearer t0ken"})
    assert SECRET not in repr(loaded) and "t0ken" not in repr(loaded)
    assert "t0ken" not in str(loaded.model_dump())
