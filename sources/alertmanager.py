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
from bridge.model import Alert, AlertStatus
from bridge.plugins import Parsed, register_source
from sources._common import (
    FiringCache,
    LabelMappingConfig,
    envelope_alert,
    envelope_group,
    envelope_items,
    join_path,
    load_json,
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
        self._cache = FiringCache()

    def parse(self, body: bytes, headers: Mapping[str, str], now: float) -> Parsed:
        data = load_json(body)
        items, truncated = envelope_items(data, "Alertmanager webhook")
        alerts = [self._alert(item, i, now) for i, item in enumerate(items)]
        sender_group = envelope_group(data)
        group_resolved = sender_group is not None and data.get("status") == "resolved"
        return Parsed(alerts=alerts, truncated=truncated, sender_group=sender_group, group_resolved=group_resolved)

    def _alert(self, item: Any, index: int, now: float) -> Alert:
        # a firing alert with an explicit status does not depend on `now`: cache it (FiringCache)
        key = self._cache.key(item) if isinstance(item, dict) and item.get("status") == "firing" else None
        if key is not None:
            cached = self._cache.get(key)
            if cached is not None:
                return cached  # type: ignore[no-any-return]
        alert = envelope_alert(self.name, self.config, item, join_path("alerts", index), now, _STATUSES,
                               "firing, resolved")
        if key is not None:
            self._cache.put(key, alert)
        return alert

    def error_body(self, field: str, reason: str, status: int) -> tuple[int, dict[str, Any]]:
        """Alertmanager documents no error body for webhook receivers: ours (`PayloadInvalid.to_dict`)."""
        return status, PayloadInvalid(field, reason, status).to_dict()
