"""Grafana unified alerting webhook contact point (Grafana 8 and later, payload version 1).

Reads the Alertmanager-shaped envelope Grafana sends: `{"receiver", "status", "orgId", "alerts": [...],
"groupLabels", "commonLabels", "commonAnnotations", "externalURL", "version": "1", "groupKey",
"truncatedAlerts", "title", "state", "message"}`, each alert `{"status", "labels", "annotations",
"startsAt", "endsAt", "generatorURL", "fingerprint", "silenceURL", "dashboardURL", "panelURL",
"values", "valueString"}`. Only `alerts` (required, a list), `truncatedAlerts`, `groupKey`,
`status`/`state` and `externalURL` are read at the top level; other keys (and any `version`) are
ignored.

Each element of `alerts` becomes one Alert:

| Alert field   | from                                                                              |
| ------------- | --------------------------------------------------------------------------------- |
| status        | the alert's own `status`, in Grafana's vocabulary too (table below); if absent,   |
|               | resolved when `endsAt` is set and not after `now`                                 |
| fingerprint   | `fingerprint`; if absent, canonical hash of `identity_labels` (all labels if unset) |
| key           | `"<source name>:<fingerprint>:<startsAt as sent>"` (the storm alert key)          |
| starts_at     | `startsAt` (required, RFC 3339)                                                   |
| ends_at       | firing: None; resolved: `endsAt`, or `now` when it is Go's zero time              |
| severity      | label `severity_label` through `Severity.coerce`, else `default_severity`          |
| service       | first non-empty of `service_labels` (default `service`)                           |
| resource      | first non-empty of `resource_labels` (default instance, host, nodename, node)     |
| summary       | annotation summary / title / message / description, else label alertname          |
| description   | annotation description                                                            |
| links         | generatorURL "Source", annotations runbook_url / runbook "Runbook" and            |
|               | dashboard_url / dashboard "Dashboard", dashboardURL "Dashboard", panelURL "Panel", |
|               | silenceURL "Silence"; relative URLs (Grafana 12 test alerts send generatorURL     |
|               | `?orgId=1`) are resolved against `externalURL`, empty ones skipped                |

| alert `status` (case-insensitive) | Alert status | why                                                          |
| --------------------------------- | ------------ | ------------------------------------------------------------ |
| firing, alerting                  | firing       | Grafana's notification and rule-state names                  |
| no_data, nodata, error            | firing       | Grafana notifies these as firing alerts (DatasourceNoData,   |
|                                   |              | DatasourceError): the rule can no longer see the system      |
| pending                           | firing       | a sender that reports it asks for attention; holding         |
|                                   |              | short-lived alerts back is the hold-down stage's job         |
| resolved, ok, normal, inactive    | resolved     | Grafana's resolved notification and its "Normal" rule state  |
| anything else                     | 400 naming `alerts[i].status`                                       |

`values` and `valueString` are not mapped: they change on every evaluation, and copying them into
annotations would make every re-send look changed to the dedup stage. Label and annotation values:
strings are kept, numbers and booleans become their JSON text, nulls are dropped; arrays and objects
are rejected (400 naming `alerts[i].labels.<name>`). `truncatedAlerts` is `Parsed.truncated`;
`groupKey` is `Parsed.sender_group`; a notification whose group `status` is "resolved" (or, without
`status`, whose `state` is "ok") sets `Parsed.group_resolved`, as for Alertmanager.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import urljoin, urlsplit

from pydantic import Field

from bridge.errors import PayloadInvalid
from bridge.model import Alert, AlertStatus, Link
from bridge.plugins import Parsed, register_source
from sources._common import (
    LabelMappingConfig,
    envelope_alert,
    envelope_group,
    envelope_items,
    join_path,
    load_json,
    optional_str,
)

__all__ = ["GrafanaSource", "GrafanaSourceConfig"]


class GrafanaSourceConfig(LabelMappingConfig):
    """Receives Grafana alerting notifications (a webhook contact point whose URL is this source)."""

    type: Literal["grafana"] = Field(description="Source type: the Grafana alerting webhook contact point.")


_STATUSES: dict[str, AlertStatus] = {
    "firing": AlertStatus.FIRING,
    "alerting": AlertStatus.FIRING,
    "no_data": AlertStatus.FIRING,
    "nodata": AlertStatus.FIRING,
    "error": AlertStatus.FIRING,
    "pending": AlertStatus.FIRING,
    "resolved": AlertStatus.RESOLVED,
    "ok": AlertStatus.RESOLVED,
    "normal": AlertStatus.RESOLVED,
    "inactive": AlertStatus.RESOLVED,
}
_STATUS_NAMES = ", ".join(sorted(_STATUSES))

#: Per-alert URL fields read as links after the generatorURL and annotation links, with their text.
_URL_FIELDS = (("dashboardURL", "Dashboard"), ("panelURL", "Panel"), ("silenceURL", "Silence"))


@register_source
class GrafanaSource:
    """Turns a Grafana webhook contact-point notification into one Alert per element of `alerts`."""

    type_name: ClassVar[str] = "grafana"
    config_model: ClassVar[type[GrafanaSourceConfig]] = GrafanaSourceConfig
    compat_paths: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: GrafanaSourceConfig) -> None:
        self.name = config.name
        self.config = config

    def parse(self, body: bytes, headers: Mapping[str, str], now: float) -> Parsed:
        data = load_json(body)
        items, truncated = envelope_items(data, "Grafana webhook")
        external = data.get("externalURL")
        base = external if isinstance(external, str) and _scheme(external) in ("http", "https") else ""
        alerts = [self._alert(item, join_path("alerts", i), base, now) for i, item in enumerate(items)]
        sender_group = envelope_group(data)
        status = data.get("status")
        resolved = data.get("state") == "ok" if status is None else status == "resolved"
        return Parsed(
            alerts=alerts,
            truncated=truncated,
            sender_group=sender_group,
            group_resolved=sender_group is not None and resolved,
        )

    def _alert(self, item: Any, path: str, base: str, now: float) -> Alert:
        extra = []
        if isinstance(item, dict):
            for key, text in _URL_FIELDS:
                href = _absolute(optional_str(item, key, join_path(path, key)) or "", base)
                if href:
                    extra.append(Link(href, text))
        return envelope_alert(self.name, self.config, item, path, now, _STATUSES, _STATUS_NAMES,
                              absolute=lambda url: _absolute(url, base), extra_links=extra)

    def error_body(self, field: str, reason: str, status: int) -> tuple[int, dict[str, Any]]:
        """Grafana documents no error body for webhook contact points: ours (`PayloadInvalid.to_dict`)."""
        return status, PayloadInvalid(field, reason, status).to_dict()


def _absolute(href: str, base: str) -> str:
    """`href` resolved against the sender's `externalURL` when it is relative (and a base is known)."""
    href = href.strip()
    if not href or not base or _scheme(href) != "":
        return href
    try:
        return urljoin(base, href)
    except ValueError:  # a malformed URL (an unbalanced "[" host): keep it as sent
        return href


def _scheme(url: str) -> str | None:
    """The URL's scheme ("" for a relative URL), None when it does not parse."""
    try:
        return urlsplit(url).scheme
    except ValueError:
        return None
