"""Prometheus Alertmanager webhook receiver (`webhook_configs`, payload version 4).

Reads the webhook envelope `{"version": "4", "status", "receiver", "groupKey", "truncatedAlerts",
"groupLabels", "commonLabels", "commonAnnotations", "externalURL", "alerts": [...]}`. Only `alerts`
(required, a list) and `truncatedAlerts` are read; other top-level keys are ignored, and any
`version` is accepted (Grafana reuses the envelope with `"version": "1"`).

Each element of `alerts` becomes one Alert:

| Alert field   | from                                                                              |
| ------------- | --------------------------------------------------------------------------------- |
| status        | the alert's own `status` (a "firing" group carries resolved alerts); if absent,   |
|               | resolved when `endsAt` is set and not after `now`                                 |
| fingerprint   | `fingerprint`; if absent, canonical hash of `identity_labels` (all labels if unset) |
| key           | `"<source name>:<fingerprint>:<startsAt as sent>"` (the storm alert key)          |
| starts_at     | `startsAt` (required, RFC 3339)                                                   |
| ends_at       | firing: None; resolved: `endsAt`, or `now` when it is Go's zero time              |
| severity      | label `severity_label` through `Severity.coerce`, else `default_severity`          |
| service       | first non-empty of `service_labels`                                               |
| resource      | first non-empty of `resource_labels`                                              |
| summary       | annotation summary / title / message / description, else label alertname          |
| description   | annotation description                                                            |
| links         | generatorURL, annotations runbook_url / runbook / dashboard_url / dashboard       |

Label and annotation values: strings are kept, numbers and booleans become their JSON text, nulls
are dropped; arrays and objects are rejected (400 naming `alerts[i].labels.<name>`). Alertmanager
itself only ever sends strings. `truncatedAlerts` (alerts cut by `max_alerts`) is reported as
`Parsed.truncated`. `groupKey` is `Parsed.sender_group`; a notification whose group `status` is
"resolved" sets `Parsed.group_resolved`, because Alertmanager sends it only once every alert of the
group resolved, even when `max_alerts` left some of them out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field

from bridge.errors import PayloadInvalid
from bridge.model import Alert, AlertStatus, canonical_fingerprint
from bridge.plugins import Parsed, register_source
from sources._common import (
    LabelMappingConfig,
    alert_fields,
    join_path,
    kind,
    load_json,
    optional_str,
    string_map,
    time_field,
)

__all__ = ["AlertmanagerSource", "AlertmanagerSourceConfig"]


class AlertmanagerSourceConfig(LabelMappingConfig):
    """Receives Alertmanager webhook notifications (point a `webhook_configs` url at this source)."""

    type: Literal["alertmanager"] = Field(description="Source type: the Alertmanager webhook receiver.")


_STATUSES = {"firing": AlertStatus.FIRING, "resolved": AlertStatus.RESOLVED}


@register_source
class AlertmanagerSource:
    """Turns an Alertmanager webhook notification into one Alert per element of `alerts`."""

    type_name: ClassVar[str] = "alertmanager"
    config_model: ClassVar[type[AlertmanagerSourceConfig]] = AlertmanagerSourceConfig
    compat_paths: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: AlertmanagerSourceConfig) -> None:
        self.name = config.name
        self.config = config

    def parse(self, body: bytes, headers: Mapping[str, str], now: float) -> Parsed:
        data = load_json(body)
        if not isinstance(data, dict):
            raise PayloadInvalid("body", f"must be a JSON object (Alertmanager webhook), got {kind(data)}")
        items = data.get("alerts")
        if items is None:
            raise PayloadInvalid("alerts", "is required")
        if not isinstance(items, list):
            raise PayloadInvalid("alerts", f"must be an array, got {kind(items)}")
        truncated = data.get("truncatedAlerts", 0)
        if truncated is None:
            truncated = 0
        if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
            raise PayloadInvalid("truncatedAlerts", "must be a non-negative integer")
        alerts = [self._alert(item, join_path("alerts", i), now) for i, item in enumerate(items)]
        group = data.get("groupKey")
        sender_group = group if isinstance(group, str) and group else None
        group_resolved = sender_group is not None and data.get("status") == "resolved"
        return Parsed(alerts=alerts, truncated=truncated, sender_group=sender_group, group_resolved=group_resolved)

    def _alert(self, item: Any, path: str, now: float) -> Alert:
        if not isinstance(item, dict):
            raise PayloadInvalid(path, f"must be an object, got {kind(item)}")
        labels_raw = item.get("labels")
        if labels_raw is None:
            raise PayloadInvalid(join_path(path, "labels"), "is required")
        labels = string_map(labels_raw, join_path(path, "labels"))
        annotations = string_map(item.get("annotations"), join_path(path, "annotations"))

        starts_text = item.get("startsAt")
        starts_path = join_path(path, "startsAt")
        if starts_text is None:
            raise PayloadInvalid(starts_path, "is required")
        starts_at = time_field(starts_text, starts_path)
        if starts_at is None:
            raise PayloadInvalid(starts_path, "must not be the zero time")
        ends_at = time_field(item.get("endsAt"), join_path(path, "endsAt"))

        status_raw = item.get("status")
        if status_raw is None:
            resolved = ends_at is not None and ends_at <= now
            status = AlertStatus.RESOLVED if resolved else AlertStatus.FIRING
        elif isinstance(status_raw, str) and status_raw.lower() in _STATUSES:
            status = _STATUSES[status_raw.lower()]
        else:
            raise PayloadInvalid(join_path(path, "status"), "must be 'firing' or 'resolved'")
        if status is AlertStatus.FIRING:
            ends_at = None
        elif ends_at is None:
            ends_at = now

        fingerprint = optional_str(item, "fingerprint", join_path(path, "fingerprint"))
        if not fingerprint:
            fingerprint = canonical_fingerprint(labels, self.config.identity_labels or None)
        generator_url = optional_str(item, "generatorURL", join_path(path, "generatorURL")) or ""
        fields = alert_fields(self.config, labels, annotations, generator_url)
        return Alert(
            source=self.name,
            fingerprint=fingerprint,
            key=f"{self.name}:{fingerprint}:{starts_text}",
            status=status,
            severity=fields.severity,
            summary=fields.summary,
            starts_at=starts_at,
            ends_at=ends_at,
            description=fields.description,
            labels=labels,
            annotations=annotations,
            service=fields.service,
            resource=fields.resource,
            links=fields.links,
        )

    def error_body(self, field: str, reason: str, status: int) -> tuple[int, dict[str, Any]]:
        """Alertmanager documents no error body for webhook receivers: ours (`PayloadInvalid.to_dict`)."""
        return status, PayloadInvalid(field, reason, status).to_dict()
