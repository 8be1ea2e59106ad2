"""Any JSON webhook, mapped to alerts by configured field paths.

For tools without a dedicated source (Grafana OnCall formats, Google Cloud Monitoring, Datadog,
Zabbix scripts, home-grown ones). `alerts_path` selects the alert objects in the body (a list, or one
object; "" is the body itself); every other path is read inside each alert object. Paths are
dotted names with `[n]` list indexes and `["any key"]` quoted keys: `incident.resource.labels`,
`data.items[0].name`, `tags["team name"]`. They are checked when the config loads.

| Alert field  | from                                                                                    |
| ------------ | --------------------------------------------------------------------------------------- |
| summary      | `summary` (required path; a missing value is a 400 naming it, e.g. `alerts[2].title`)    |
| status       | `status` matched case-insensitively against `firing_values` / `resolved_values`         |
|              | (another value is a 400); no `status` path: firing                                      |
| labels       | the object at `labels`, then each of `label_paths` (name -> path) that is present       |
| annotations  | the object at `annotations`                                                              |
| fingerprint  | `fingerprint` (required when set); else the canonical hash of `identity_labels` (all     |
|              | labels if unset), or of the summary when there are no labels                             |
| key          | `"<source name>:" + key` when `key` is set; else                                        |
|              | `"<source name>:<fingerprint>:<starts_at as sent>"` (RFC 3339 of now if absent)          |
| severity     | `severity` through `Severity.coerce`, else `default_severity`                            |
| starts_at    | `starts_at`: RFC 3339 or epoch seconds/milliseconds (number or numeric string); else now |
| ends_at      | `ends_at` (same forms); resolved alerts without one end now                              |
| description, service, resource | the paths of the same names                                             |
| links        | `url`                                                                                    |

Values: strings are kept; numbers and booleans become their JSON text; label and annotation values
that are arrays or objects become compact JSON; a text field (summary, service, ...) that is an
array or object is a 400. A null counts as missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from bridge.errors import PayloadInvalid
from bridge.model import Alert, AlertStatus, Link, Severity, canonical_fingerprint, format_time
from bridge.plugins import Parsed, SourceConfig, register_source
from sources._common import (
    MISSING,
    Path,
    epoch_or_time,
    kind,
    load_json,
    scalar_text,
    string_map,
    text_or_json,
)

__all__ = ["GenericSource", "GenericSourceConfig"]

_PATH_FIELDS = (
    "alerts_path", "fingerprint", "status", "severity", "summary", "description", "labels",
    "annotations", "service", "resource", "starts_at", "ends_at", "key", "url",
)


class GenericSourceConfig(SourceConfig):
    """Receives any JSON webhook and maps it to alerts with configured field paths."""

    type: Literal["generic"] = Field(description="Source type: any JSON mapped by field paths.")
    alerts_path: str = Field(
        "", description="Path to the list of alert objects (or to one alert object); \"\" is the body itself."
    )
    summary: str = Field(description="Path to the alert's one-line summary (required in every alert).")
    fingerprint: str | None = Field(
        None,
        description="Path to the alert series' identity (required in every alert when set); unset: a "
        "canonical hash of the labels.",
    )
    identity_labels: list[str] | None = Field(
        None, description="Labels hashed into the fingerprint when no `fingerprint` path is set; null: all."
    )
    status: str | None = Field(None, description="Path to the alert's status; unset: every alert is firing.")
    firing_values: list[str] = Field(
        ["firing", "alerting", "triggered", "problem", "open", "active"],
        description="Status values meaning firing (case-insensitive).",
    )
    resolved_values: list[str] = Field(
        ["resolved", "ok", "recovered", "closed", "inactive"],
        description="Status values meaning resolved (case-insensitive).",
    )
    severity: str | None = Field(None, description="Path to the severity, mapped by `Severity.coerce`.")
    default_severity: Severity = Field(
        Severity.WARNING, description="Severity when the severity path is unset, missing or unknown."
    )
    description: str | None = Field(None, description="Path to the alert's longer description.")
    labels: str | None = Field(None, description="Path to an object whose members become labels.")
    label_paths: dict[str, str] = Field(
        {}, description="Extra labels: label name -> path (a missing value adds no label)."
    )
    annotations: str | None = Field(None, description="Path to an object whose members become annotations.")
    service: str | None = Field(None, description="Path to the affected service.")
    resource: str | None = Field(None, description="Path to the affected resource (host, instance, ...).")
    starts_at: str | None = Field(
        None, description="Path to the start time: RFC 3339 or epoch seconds/milliseconds; unset: receipt."
    )
    ends_at: str | None = Field(None, description="Path to the end time (same forms as `starts_at`).")
    key: str | None = Field(
        None,
        description="Path to the firing episode's key (required in every alert when set); unset: "
        "fingerprint and starts_at as sent.",
    )
    url: str | None = Field(None, description="Path to a link back to the alert in the sending tool.")

    @field_validator(*_PATH_FIELDS)
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None:
            Path.parse(value)
        return value

    @field_validator("label_paths")
    @classmethod
    def _label_paths(cls, value: dict[str, str]) -> dict[str, str]:
        for path in value.values():
            Path.parse(path)
        return value


@register_source
class GenericSource:
    """Maps any JSON body to alerts through configured field paths."""

    type_name: ClassVar[str] = "generic"
    config_model: ClassVar[type[GenericSourceConfig]] = GenericSourceConfig
    compat_paths: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: GenericSourceConfig) -> None:
        self.name = config.name
        self.config = config
        self._root = Path.parse(config.alerts_path)
        self._paths = {
            name: Path.parse(text) for name in _PATH_FIELDS[1:] if (text := getattr(config, name)) is not None
        }
        self._label_paths = {label: Path.parse(path) for label, path in config.label_paths.items()}
        self._firing = {value.lower() for value in config.firing_values}
        self._resolved = {value.lower() for value in config.resolved_values}

    def parse(self, body: bytes, headers: Mapping[str, str], now: float) -> Parsed:
        data = load_json(body)
        found = self._root.get(data)
        where = self._root.under("")
        if found is MISSING or found is None:
            raise PayloadInvalid(where, "is required")
        if isinstance(found, dict):
            return Parsed(alerts=[self._alert(found, self._root.text, now)])
        if not isinstance(found, list):
            raise PayloadInvalid(where, f"must be an object or an array of objects, got {kind(found)}")
        prefix = self._root.text
        return Parsed(alerts=[self._alert(item, f"{prefix}[{i}]", now) for i, item in enumerate(found)])

    # ------------------------------------------------------------------------------------ fields

    def _lookup(self, item: Mapping[str, Any], name: str, at: str, required: bool = False) -> tuple[Any, str]:
        """The value at the configured path `name` (MISSING if unset, absent or null) and its full path."""
        path = self._paths.get(name)
        if path is None:
            return MISSING, ""
        value = path.get(item)
        if value is None or value is MISSING:
            if required:
                raise PayloadInvalid(path.under(at), "is required")
            return MISSING, path.under(at)
        return value, path.under(at)

    def _text(self, item: Mapping[str, Any], name: str, at: str, required: bool = False) -> str | None:
        value, where = self._lookup(item, name, at, required)
        if value is MISSING:
            return None
        text = scalar_text(value)
        if text is None:
            raise PayloadInvalid(where, f"must be a string, got {kind(value)}")
        return text

    def _time(self, item: Mapping[str, Any], name: str, at: str) -> tuple[Any, float | None]:
        value, where = self._lookup(item, name, at)
        return value, epoch_or_time(value, where)

    def _mapping(self, item: Mapping[str, Any], name: str, at: str) -> dict[str, str]:
        value, where = self._lookup(item, name, at)
        return string_map(value, where, nested="json")

    def _status(self, item: Mapping[str, Any], at: str) -> AlertStatus:
        value, where = self._lookup(item, "status", at)
        if value is MISSING:
            return AlertStatus.FIRING
        text = scalar_text(value)
        lowered = text.strip().lower() if text is not None else None
        if lowered in self._resolved:
            return AlertStatus.RESOLVED
        if lowered not in self._firing:
            expected = ", ".join([*self.config.firing_values, *self.config.resolved_values])
            shown = repr(text[:64]) if text is not None else kind(value)
            raise PayloadInvalid(where, f"unknown status {shown} (expected one of: {expected})")
        return AlertStatus.FIRING

    def _alert(self, item: Any, at: str, now: float) -> Alert:
        if not isinstance(item, dict):
            raise PayloadInvalid(at or "body", f"must be an object, got {kind(item)}")
        summary = self._text(item, "summary", at, required=True) or ""
        status = self._status(item, at)

        labels = self._mapping(item, "labels", at)
        for label, path in self._label_paths.items():
            value = path.get(item)
            if value is not None and value is not MISSING:
                labels[label] = text_or_json(value, path.under(at))
        annotations = self._mapping(item, "annotations", at)

        starts_raw, starts_at = self._time(item, "starts_at", at)
        _, ends_at = self._time(item, "ends_at", at)
        if starts_at is None:
            starts_at = now
        if status is AlertStatus.RESOLVED and ends_at is None:
            ends_at = now

        fingerprint = self._text(item, "fingerprint", at, required=True)
        if not fingerprint:
            identity = labels or {"summary": summary}
            fingerprint = canonical_fingerprint(identity, self.config.identity_labels if labels else None)
        episode = self._text(item, "key", at, required=True)
        if episode is None:
            started = format_time(now) if starts_raw is MISSING else scalar_text(starts_raw)
            episode = f"{fingerprint}:{started}"

        severity_text = self._text(item, "severity", at)
        default = self.config.default_severity
        severity = Severity.coerce(severity_text, default) if severity_text else default
        url = self._text(item, "url", at)
        return Alert(
            source=self.name,
            fingerprint=fingerprint,
            key=f"{self.name}:{episode}",
            status=status,
            severity=severity,
            summary=summary,
            starts_at=starts_at,
            ends_at=ends_at,
            description=self._text(item, "description", at) or "",
            labels=labels,
            annotations=annotations,
            service=self._text(item, "service", at) or None,
            resource=self._text(item, "resource", at) or None,
            links=(Link(url, "Source"),) if url else (),
        )

    def error_body(self, field: str, reason: str, status: int) -> tuple[int, dict[str, Any]]:
        """No vendor to imitate: `PayloadInvalid.to_dict()` (`error`, `field`, `reason`)."""
        return status, PayloadInvalid(field, reason, status).to_dict()
