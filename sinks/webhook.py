"""Generic outbound webhook: POSTs each incident action as one stable, versioned JSON document.

Request: `POST <url>` with headers `Content-Type: application/json`, `Idempotency-Key: <key>`,
`User-Agent: alertbridge/<version>`, the configured extra `headers`, and, when `secret` is set,
`X-Alertbridge-Timestamp` and `X-Alertbridge-Signature`. The body (a public contract: fields are
only ever added, never renamed or removed, within a `version`):

    {
      "version": "1",                       # schema version of this document
      "action": "open" | "update" | "acknowledge" | "resolve" | "assign" | "escalate"
                | "sla_warning" | "sla_breach",
      "idempotency_key": "<incident id>:<sink name>:<revision>",   # same as the header
      "reason": "<why the engine emitted this action, may be empty>",
      "at": "2024-03-04T09:12:03.123Z",     # RFC 3339 UTC, when the action was decided
      "incident": { ... }                   # IncidentView.to_dict(): id, key, route, status,
                                            # priority, priority_reason, pool, title, revision,
                                            # opened_at, updated_at, resolved_at, acknowledged_by,
                                            # group_labels, root_cause, assignee,
                                            # escalation_level, sla, alerts_firing, alerts[]
      "recipients": [{"name": "alice", "handles": {"email": "...", "slack": "U123"}}],
      "links": {"acknowledge": "https://.../ack/<token>", "resolve": "..."}   # signed, expiring
    }

Signature: `X-Alertbridge-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}." + body)>` with
`X-Alertbridge-Timestamp: <timestamp>`, where timestamp is `int(action.at)`, not the wall clock, so
a redelivery is byte-identical. Receivers check it with `verify()` and should dedupe on
`Idempotency-Key` rather than reject old timestamps (a retried delivery can be hours late).

Idempotency key: `Action.idempotency_key(sink)`, sent as the `Idempotency-Key` header and in the
body; a receiver that remembers it ignores redeliveries.
Retries: 408, 429 and 5xx (honouring `Retry-After`), timeouts and connection errors; any other
4xx and redirects fail without retry (see `sinks._http`).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import orjson
from pydantic import ConfigDict, Field, SecretStr, field_validator

from bridge.model import Action, format_time
from bridge.plugins import Outcome, SinkConfig, register_sink
from sinks._http import LazySession, post_json

__all__ = ["SCHEMA_VERSION", "WebhookSink", "WebhookSinkConfig", "render", "sign", "verify"]

SCHEMA_VERSION = "1"
SIGNATURE_HEADER = "X-Alertbridge-Signature"
TIMESTAMP_HEADER = "X-Alertbridge-Timestamp"

#: Headers the sink sets itself; an extra header may not replace them (compared case-insensitively).
_RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "idempotency-key", SIGNATURE_HEADER.lower(),
     TIMESTAMP_HEADER.lower()}
)


class WebhookSinkConfig(SinkConfig):
    """POST every incident action as JSON to any HTTP endpoint, optionally HMAC-signed."""

    # Extra header values are often credentials: keep them out of validation error messages.
    model_config = ConfigDict(hide_input_in_errors=True)

    type: Literal["webhook"] = Field(description="Selects this sink: `webhook`.")
    url: str = Field(description="Receiver URL (http or https) the JSON document is POSTed to.")
    secret: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key; when set, requests carry X-Alertbridge-Timestamp and "
        "X-Alertbridge-Signature headers.",
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Extra request headers, e.g. `Authorization`; values are kept secret in logs "
        "and dumps. May not replace Content-Type, Idempotency-Key or the signature headers.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"must be an http or https URL, got scheme {parts.scheme or 'none'!r}")
        if not parts.hostname:
            raise ValueError("must name a host")
        return value

    @field_validator("secret")
    @classmethod
    def _non_empty_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("must not be empty; leave it out to send unsigned requests")
        return value

    @field_validator("headers")
    @classmethod
    def _allowed_headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        problems = []
        for name, header_value in value.items():
            if name.lower() in _RESERVED_HEADERS:
                problems.append(f"{name!r} is set by the sink and cannot be overridden")
            elif not name or any(ch in name for ch in " :\r\n\t"):
                problems.append(f"{name!r} is not a valid header name")
            elif any(ch in header_value.get_secret_value() for ch in "\r\n"):
                problems.append(f"{name!r} has a line break in its value")
        if problems:
            raise ValueError("; ".join(problems))
        return value


def render(action: Action, idempotency_key: str) -> bytes:
    """The request body for `action`: the versioned document described in the module docstring."""
    document: dict[str, Any] = {
        "version": SCHEMA_VERSION,
        "action": action.kind.value,
        "idempotency_key": idempotency_key,
        "reason": action.reason,
        "at": format_time(action.at),
        "incident": action.incident.to_dict(),
        "recipients": [recipient.to_dict() for recipient in action.recipients],
        "links": dict(action.links),
    }
    return orjson.dumps(document)


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 over `f"{timestamp}."` followed by the raw body."""
    mac = hmac.new(secret, f"{int(timestamp)}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: bytes, timestamp: int | str, body: bytes, signature: str) -> bool:
    """True when `signature` (the X-Alertbridge-Signature value) matches; constant-time compare."""
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(sign(secret, stamp, body), signature.strip())


@register_sink
class WebhookSink:
    """Delivers actions to a generic HTTP receiver."""

    type_name: ClassVar[str] = "webhook"
    config_model: ClassVar[type[SinkConfig]] = WebhookSinkConfig

    def __init__(self, config: WebhookSinkConfig) -> None:
        self.name = config.name
        self.config = config
        self._session = LazySession()

    def request(self, action: Action, idempotency_key: str) -> tuple[bytes, dict[str, str]]:
        """The body and headers of the POST for `action` (pure; deterministic for one action)."""
        body = render(action, idempotency_key)
        headers = {name: value.get_secret_value() for name, value in self.config.headers.items()}
        headers["Content-Type"] = "application/json"
        headers["Idempotency-Key"] = idempotency_key
        if self.config.secret is not None:
            timestamp = int(action.at)
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(self.config.secret.get_secret_value().encode(), timestamp, body)
        return body, headers

    async def deliver(self, action: Action, idempotency_key: str) -> Outcome:
        try:
            body, headers = self.request(action, idempotency_key)
        except Exception as exc:  # a sink never raises: a rendering bug is a failed delivery
            return Outcome.failed(f"cannot render request: {type(exc).__name__}: {exc}")
        return await post_json(self._session.get(), self.config.url, body, headers, self.config.timeout)

    async def close(self) -> None:
        await self._session.close()
