"""PagerDuty Events API v2 (`POST /v2/enqueue`), so any tool that pages PagerDuty can send here.

Reads an event `{"routing_key", "event_action", "dedup_key", "payload": {"summary", "source",
"severity", "timestamp", "component", "group", "class", "custom_details"}, "links", "client",
"client_url"}` and validates it as PagerDuty does: `routing_key` required (32 characters unless
`routing_key_length` says otherwise, and one of `routing_keys` when that is set), `event_action`
one of trigger / acknowledge / resolve, `dedup_key` at most 255 characters and required for
acknowledge and resolve; a trigger needs `payload.summary` (at most 1024 characters),
`payload.source` and `payload.severity` (critical, error, warning or info).

Success is 202 `{"status": "success", "message": "Event processed", "dedup_key": ...}`. A trigger
without `dedup_key` gets a deterministic one (a hash of the routing key and the canonical payload),
returned in that body. Errors are 400 `{"status": "invalid event", "message": "Event object is
invalid", "errors": [...]}` (or "Unrecognized object" when the body is not a JSON object), plus
`field` and `reason`.

| event       | result                                                                                   |
| ----------- | ---------------------------------------------------------------------------------------- |
| trigger     | a firing Alert                                                                            |
| resolve     | a resolved Alert with the same fingerprint and key, `ends_at` = now, summary "" and       |
|             | severity warning (the engine merges a bare resolve with what it knew of the series)       |
| acknowledge | no alert; `Parsed.acknowledge` = (`"<source name>/<dedup_key>"`,), the `Alert.identity`    |

| Alert field  | from (trigger)                                                                          |
| ------------ | --------------------------------------------------------------------------------------- |
| fingerprint  | `dedup_key`                                                                             |
| key          | `"<source name>:<dedup_key>"` (the storm alert key)                                     |
| severity     | `payload.severity`: critical/error -> critical, warning -> warning, info -> info         |
| summary      | `payload.summary`                                                                       |
| service      | `payload.component`                                                                     |
| resource     | `payload.source`                                                                        |
| starts_at    | `payload.timestamp` when it parses (RFC 3339), else now                                  |
| labels       | component, group, class, source, severity (those present), and `custom_details.<key>`   |
|              | for each custom detail (strings kept, other values as compact JSON)                      |
| links        | `links[]` (href, text), then `client_url` (text: `client`)                               |
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import orjson
from pydantic import Field, SecretStr

from bridge.errors import PayloadInvalid
from bridge.model import Alert, AlertStatus, Link, Severity
from bridge.plugins import Parsed, SourceConfig, register_source
from sources._common import dump_json, text_or_json, time_field

__all__ = ["PagerDutySource", "PagerDutySourceConfig"]


class PagerDutySourceConfig(SourceConfig):
    """Receives PagerDuty Events API v2 events (point a tool's PagerDuty events URL at this source)."""

    type: Literal["pagerduty"] = Field(description="Source type: the PagerDuty Events API v2 endpoint.")
    routing_key_length: int | None = Field(
        32,
        ge=1,
        description="Required length of `routing_key`, as PagerDuty checks it (32); null accepts any "
        "non-empty key (PagerDuty's documentation examples use short placeholders).",
    )
    routing_keys: list[SecretStr] = Field(
        [],
        description="When non-empty, the only routing keys accepted (400 otherwise). Senders such as "
        "Alertmanager send no auth header: the routing key is the credential.",
    )


_ACTIONS = ("trigger", "acknowledge", "resolve")
_SEVERITIES = {
    "critical": Severity.CRITICAL,
    "error": Severity.CRITICAL,
    "warning": Severity.WARNING,
    "info": Severity.INFO,
}
_LABEL_FIELDS = ("component", "group", "class", "source", "severity")
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255


def _required_text(obj: Mapping[str, Any], key: str, field: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PayloadInvalid(field, f"'{field}' is missing or blank")
    return value


@register_source
class PagerDutySource:
    """Accepts PagerDuty Events API v2 trigger, acknowledge and resolve events."""

    type_name: ClassVar[str] = "pagerduty"
    config_model: ClassVar[type[PagerDutySourceConfig]] = PagerDutySourceConfig
    compat_paths: ClassVar[tuple[str, ...]] = ("/v2/enqueue",)

    def __init__(self, config: PagerDutySourceConfig) -> None:
        self.name = config.name
        self.config = config
        self._routing_keys = tuple(key.get_secret_value().encode() for key in config.routing_keys)

    def parse(self, body: bytes, headers: Mapping[str, str], now: float) -> Parsed:
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise PayloadInvalid("body", "JSON parse error") from None
        if not isinstance(event, dict):
            raise PayloadInvalid("body", "Event object format is unrecognized")

        routing_key = self._routing_key(event)
        action = event.get("event_action")
        if not isinstance(action, str) or not action:
            raise PayloadInvalid("event_action", "'event_action' is missing or blank")
        if action not in _ACTIONS:
            raise PayloadInvalid(
                "event_action", "'event_action' is invalid (must be one of: trigger, acknowledge, resolve)"
            )
        dedup_key = event.get("dedup_key")
        if dedup_key is not None and not isinstance(dedup_key, str):
            raise PayloadInvalid("dedup_key", "'dedup_key' must be a string")
        if dedup_key and len(dedup_key) > MAX_DEDUP_KEY:
            raise PayloadInvalid("dedup_key", f"'dedup_key' is too long (maximum {MAX_DEDUP_KEY} characters)")

        if action == "trigger":
            alert = self._trigger(event, routing_key, dedup_key or None, now)
            return self._accepted([alert], alert.fingerprint)
        if not dedup_key:
            raise PayloadInvalid("dedup_key", f"'dedup_key' is required for the {action} action")
        if action == "acknowledge":
            return self._accepted([], dedup_key, acknowledge=(f"{self.name}/{dedup_key}",))
        resolved = Alert(
            source=self.name,
            fingerprint=dedup_key,
            key=f"{self.name}:{dedup_key}",
            status=AlertStatus.RESOLVED,
            severity=Severity.WARNING,
            summary="",
            starts_at=now,
            ends_at=now,
        )
        return self._accepted([resolved], dedup_key)

    def _accepted(self, alerts: list[Alert], dedup_key: str, acknowledge: tuple[str, ...] = ()) -> Parsed:
        response = {"status": "success", "message": "Event processed", "dedup_key": dedup_key}
        return Parsed(alerts=alerts, acknowledge=acknowledge, response=response, status=202)

    def _routing_key(self, event: Mapping[str, Any]) -> str:
        routing_key = _required_text(event, "routing_key", "routing_key")
        expected = self.config.routing_key_length
        if expected is not None and len(routing_key) != expected:
            raise PayloadInvalid(
                "routing_key", f"Length of 'routing_key' is incorrect (should be {expected} characters)"
            )
        if self._routing_keys:
            given = routing_key.encode()
            if not any(hmac.compare_digest(given, key) for key in self._routing_keys):
                raise PayloadInvalid("routing_key", "'routing_key' is not accepted by this source")
        return routing_key

    def _trigger(
        self, event: Mapping[str, Any], routing_key: str, dedup_key: str | None, now: float
    ) -> Alert:
        payload = event.get("payload")
        if not isinstance(payload, dict):
            raise PayloadInvalid("payload", "'payload' is missing or not an object")
        summary = _required_text(payload, "summary", "payload.summary")
        if len(summary) > MAX_SUMMARY:
            raise PayloadInvalid(
                "payload.summary", f"'payload.summary' is too long (maximum {MAX_SUMMARY} characters)"
            )
        source = _required_text(payload, "source", "payload.source")
        severity_text = _required_text(payload, "severity", "payload.severity")
        severity = _SEVERITIES.get(severity_text)
        if severity is None:
            raise PayloadInvalid(
                "payload.severity",
                "'payload.severity' is invalid (must be one of: critical, error, warning, info)",
            )
        labels: dict[str, str] = {}
        for name in _LABEL_FIELDS:
            value = payload.get(name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise PayloadInvalid(f"payload.{name}", f"'payload.{name}' must be a string")
            labels[name] = value
        details = payload.get("custom_details")
        if isinstance(details, dict):
            for name, value in details.items():
                if value is not None:
                    field = f"payload.custom_details.{name}"
                    labels[f"custom_details.{name}"] = text_or_json(value, field)
        elif details is not None:
            labels["custom_details"] = text_or_json(details, "payload.custom_details")

        if dedup_key is None:
            canonical = dump_json(payload, "payload")
            dedup_key = hashlib.sha256(f"{routing_key}\n{canonical}".encode()).hexdigest()[:32]
        try:
            starts_at = time_field(payload.get("timestamp"), "payload.timestamp") or now
        except PayloadInvalid:
            starts_at = now
        return Alert(
            source=self.name,
            fingerprint=dedup_key,
            key=f"{self.name}:{dedup_key}",
            status=AlertStatus.FIRING,
            severity=severity,
            summary=summary,
            starts_at=starts_at,
            labels=labels,
            service=labels.get("component") or None,
            resource=source,
            links=self._links(event),
        )

    @staticmethod
    def _links(event: Mapping[str, Any]) -> tuple[Link, ...]:
        links: list[Link] = []
        raw = event.get("links")
        for item in raw if isinstance(raw, list) else ():
            if isinstance(item, dict) and isinstance(item.get("href"), str) and item["href"]:
                text = item.get("text")
                links.append(Link(item["href"], text if isinstance(text, str) else ""))
        client_url = event.get("client_url")
        if isinstance(client_url, str) and client_url:
            client = event.get("client")
            links.append(Link(client_url, client if isinstance(client, str) else ""))
        return tuple(links)

    def error_body(self, field: str, reason: str, status: int) -> tuple[int, dict[str, Any]]:
        """PagerDuty's documented error body (`status`, `message`, `errors`), plus `field` and `reason`."""
        if field == "body":
            head = {"status": "Unrecognized object", "message": "Event object format is unrecognized"}
        else:
            head = {"status": "invalid event", "message": "Event object is invalid"}
        return status, {**head, "errors": [reason], "field": field, "reason": reason}
