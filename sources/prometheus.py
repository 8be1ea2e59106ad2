"""Alertmanager API v2 `POST /api/v2/alerts`, so Prometheus can use alertbridge as its Alertmanager.

Point Prometheus' `alerting.alertmanagers` at alertbridge (path prefix `/`, API v2). The body is a
JSON array of postable alerts `{"labels", "annotations", "startsAt", "endsAt", "generatorURL"}`;
success is 200 with an empty body. Errors follow Alertmanager 0.25 (its status codes, and its
`{"code", "message"}` body with `field` and `reason` added):

* empty body: 422, code 602, `alerts in body is required`;
* invalid JSON, not an array, a value of a wrong type: 400, code 400,
  `parsing alerts body from "" failed, because ...`;
* an alert without `labels` (or `labels: null`): 422, code 602, `<i>.labels in body is required`;
* no non-empty label, an invalid label or annotation name, `startsAt` after `endsAt`: 400, code 400,
  `alert <i>: <Alertmanager's validation error>`, e.g. `alert 1: at least one label pair required`.

Unlike Alertmanager, which stores the valid alerts of a batch and rejects the rest, a batch with
one invalid alert is rejected whole: nothing a bad request carried is half-applied.

Mapping (Alertmanager's semantics; labels with an empty value are removed first, as it does):

| Alert field   | from                                                                                  |
| ------------- | ------------------------------------------------------------------------------------- |
| status/ends_at| `endsAt` given and <= now: resolved at `endsAt`; in the future: firing, expiring at    |
|               | `endsAt`; absent: firing, expiring at now + `resolve_timeout`                          |
| starts_at     | `startsAt`; absent: now (or `endsAt` when that is already past, as Alertmanager does)  |
| fingerprint   | canonical hash of the labels (`identity_labels` only, when set)                        |
| key           | `"<source name>:<fingerprint>:<startsAt as sent>"` (RFC 3339 of starts_at if absent)   |
| severity, service, resource, summary, description, links: as the `alertmanager` source      |
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar, Literal

import orjson
from pydantic import Field, field_validator

from bridge.errors import PayloadInvalid
from bridge.model import Alert, AlertStatus, canonical_fingerprint, format_time, parse_time
from bridge.plugins import Parsed, register_source
from sources._common import (
    MAX_EPOCH,
    FiringCache,
    LabelMappingConfig,
    alert_fields,
    dump_json,
    kind,
    labelled_alert,
    parse_duration,
)

__all__ = ["PrometheusSource", "PrometheusSourceConfig"]


class PrometheusSourceConfig(LabelMappingConfig):
    """Receives alerts from Prometheus (or any Alertmanager API v2 client) on `/api/v2/alerts`."""

    type: Literal["prometheus"] = Field(description="Source type: the Alertmanager API v2 alerts endpoint.")
    resolve_timeout: float = Field(
        300.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds (or a duration such as '5m') after which an alert posted without endsAt "
        "resolves unless re-posted; Alertmanager's `global.resolve_timeout`.",
    )
    label_names: Literal["legacy", "utf8"] = Field(
        "legacy",
        description="Valid label and annotation names: 'legacy' is [a-zA-Z_][a-zA-Z0-9_]* as "
        "Alertmanager 0.25 checks; 'utf8' is any non-empty name, as Alertmanager 0.27+ accepts.",
    )

    @field_validator("resolve_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


_LEGACY_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_PARSE_FAILED = 'parsing alerts body from "" failed, because '


def _go_quote(text: str) -> str:
    """Roughly Go's %q: a double-quoted string with JSON-style escapes."""
    return dump_json(text[:128], "body")


def _unmarshal(value: Any, into: str) -> str:
    return f"{_PARSE_FAILED}json: cannot unmarshal {kind(value)} into {into}"


@register_source
class PrometheusSource:
    """Accepts Alertmanager API v2 `PostableAlerts`, as Prometheus sends them to an Alertmanager."""

    type_name: ClassVar[str] = "prometheus"
    config_model: ClassVar[type[PrometheusSourceConfig]] = PrometheusSourceConfig
    compat_paths: ClassVar[tuple[str, ...]] = ("/api/v2/alerts",)

    def __init__(self, config: PrometheusSourceConfig) -> None:
        self.name = config.name
        self.config = config
        self._cache = FiringCache()

    def parse(self, body: bytes, headers: Mapping[str, str], now: float) -> Parsed:
        if not bytes(body).strip():
            raise PayloadInvalid("body", "alerts in body is required", 422)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise PayloadInvalid("body", f"{_PARSE_FAILED}{exc}") from None
        if data is None:  # Go decodes `null` into an empty slice
            return Parsed(alerts=[])
        if not isinstance(data, list):
            raise PayloadInvalid("body", _unmarshal(data, "Go value of type models.PostableAlerts"))
        return Parsed(alerts=[self._alert(item, i, now) for i, item in enumerate(data)])

    def _label_set(self, value: Any, field: str) -> dict[str, str]:
        if not isinstance(value, dict):
            into = f"Go struct field PostableAlert.{field.split('.')[-1]} of type models.LabelSet"
            raise PayloadInvalid(field, _unmarshal(value, into))
        out: dict[str, str] = {}
        for name, item in value.items():
            if item is None:  # Go leaves the string empty
                item = ""
            if not isinstance(item, str):
                into = f"Go struct field PostableAlert.{field.split('.')[-1]} of type string"
                raise PayloadInvalid(f"{field}.{name}", _unmarshal(item, into))
            out[name] = item
        return out

    def _time(self, item: dict[str, Any], key: str, field: str) -> tuple[str | None, float | None]:
        value = item.get(key)
        if value is None:
            return None, None
        if not isinstance(value, str):
            into = f"Go struct field PostableAlert.{key} of type strfmt.DateTime"
            raise PayloadInvalid(field, _unmarshal(value, into))
        try:
            parsed = parse_time(value)
            valid = parsed is None or -MAX_EPOCH <= parsed <= MAX_EPOCH
        except (ValueError, OverflowError):
            parsed, valid = None, False
        if not valid:
            message = f"parsing time {_go_quote(value)} as an RFC 3339 date-time failed"
            raise PayloadInvalid(field, _PARSE_FAILED + message)
        if parsed is None:  # Go's zero time: unset
            return None, None
        return value, parsed

    def _valid_name(self, name: str) -> bool:
        if self.config.label_names == "utf8":
            return bool(name)
        return _LEGACY_NAME.match(name) is not None

    def _alert(self, item: Any, i: int, now: float) -> Alert:
        """Build the alert, or reuse the one built from a byte-identical earlier item (FiringCache).

        Only items with a `startsAt` are cached; an alert without `endsAt` gets `ends_at` = now +
        resolve_timeout afresh, one with `endsAt` is reused only while that is still in the future.
        """
        key = self._cache.key(item) if isinstance(item, dict) and item.get("startsAt") else None
        if key is not None:
            found = self._cache.get(key)
            if found is not None:
                cached, relative = found
                if relative:
                    ends_at = now + self.config.resolve_timeout
                    if cached.starts_at <= ends_at:
                        return replace(cached, ends_at=ends_at)
                elif cached.ends_at is not None and cached.ends_at > now:
                    return cached  # type: ignore[no-any-return]
        alert = self._build(item, i, now)
        if key is not None and alert.status is AlertStatus.FIRING:
            ends_raw = item.get("endsAt")
            relative = ends_raw in (None, "") or (isinstance(ends_raw, str) and ends_raw.startswith("0001-01-01"))
            self._cache.put(key, (alert, relative))
        return alert

    def _build(self, item: Any, i: int, now: float) -> Alert:
        at = f"[{i}]"
        if not isinstance(item, dict):
            raise PayloadInvalid(at, _unmarshal(item, "Go value of type models.PostableAlert"))
        if item.get("labels") is None:
            raise PayloadInvalid(f"{at}.labels", f"{i}.labels in body is required", 422)
        labels = self._label_set(item["labels"], f"{at}.labels")
        annotations_raw = item.get("annotations")
        annotations = {} if annotations_raw is None else self._label_set(annotations_raw, f"{at}.annotations")
        starts_text, starts_at = self._time(item, "startsAt", f"{at}.startsAt")
        _, ends_at = self._time(item, "endsAt", f"{at}.endsAt")
        generator_url = item.get("generatorURL")
        if generator_url is None:
            generator_url = ""
        if not isinstance(generator_url, str):
            into = "Go struct field PostableAlert.generatorURL of type strfmt.URI"
            raise PayloadInvalid(f"{at}.generatorURL", _unmarshal(generator_url, into))

        # Alertmanager's defaults (api/v2 postAlertsHandler), then its validation (types.Alert.Validate).
        if starts_at is None:
            starts_at = ends_at if ends_at is not None and ends_at <= now else now
        if ends_at is None:
            ends_at = now + self.config.resolve_timeout
        status = AlertStatus.FIRING if ends_at > now else AlertStatus.RESOLVED
        labels = {name: value for name, value in labels.items() if value != ""}

        def invalid(field: str, message: str) -> PayloadInvalid:
            return PayloadInvalid(field, f"alert {i}: {message}")

        if ends_at < starts_at:
            raise invalid(f"{at}.endsAt", "start time must be before end time")
        for name in labels:
            if not self._valid_name(name):
                raise invalid(f"{at}.labels.{name}", f"invalid label set: invalid name {_go_quote(name)}")
        if not labels:
            raise invalid(f"{at}.labels", "at least one label pair required")
        for name in annotations:
            if not self._valid_name(name):
                message = f"invalid annotations: invalid name {_go_quote(name)}"
                raise invalid(f"{at}.annotations.{name}", message)

        fingerprint = canonical_fingerprint(labels, self.config.identity_labels or None)
        fields = alert_fields(self.config, labels, annotations, generator_url)
        key = f"{self.name}:{fingerprint}:{starts_text or format_time(starts_at)}"
        return labelled_alert(self.name, fingerprint, key, status, fields, labels, annotations, starts_at, ends_at)

    def error_body(self, field: str, reason: str, status: int) -> tuple[int, dict[str, Any]]:
        """Alertmanager's `{"code", "message"}` (code 602 "required" on 422), plus `field` and `reason`."""
        code = 602 if status == 422 else status
        return status, {"code": code, "message": reason, "field": field, "reason": reason}
