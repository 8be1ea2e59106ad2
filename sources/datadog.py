"""Datadog Webhooks integration: one monitor notification per request, in the user's payload template.

Every field of a Datadog webhook body is a user-written template whose `$VARIABLES` Datadog fills
in. This source reads the field names of Datadog's default template (`body` = $EVENT_MSG, `title` =
$EVENT_TITLE, `date`, `last_updated`, `event_type`, `id`, `org`) and of the common extended ones
(`alert_id`, `alert_title`, `alert_transition`, `alert_type`, `alert_status`, `alert_priority`,
`priority`, `alert_scope`, `alert_query`, `alert_metric`, `aggreg_key`, `alert_cycle_key`,
`hostname` or `host_name`, `tags`, `link`); other fields are ignored. A field counts as absent when
it is missing, null, blank, or an unsubstituted placeholder (`"$ALERT_CYCLE_KEY"` literally, also
`${ALERT_ID}`, `$TAGS[env]`). Read fields must be strings (numbers and booleans are taken as their
JSON text, for templates that leave a variable unquoted); an array or object is a 400 naming it.

| Alert field  | from                                                                                  |
| ------------ | ------------------------------------------------------------------------------------- |
| fingerprint  | the series: monitor + scope, canonically hashed (below); `fingerprint_fields` overrides |
| key          | `"<source name>:<alert_cycle_key>"` (the storm alert key) when the template has it;    |
|              | else `"<source name>:<fingerprint>:<trigger time, RFC 3339>"`                          |
| status       | first that decides: `alert_transition`, `alert_type`, `alert_status`, the title prefix |
|              | (`[Triggered]`, `[Recovered on {host:a}]`, ...); firing when none does                |
| severity     | first that decides: `alert_type`, the transition, `alert_priority`, `priority`,        |
|              | else `default_severity`                                                               |
| labels       | `tags` (`"env:prod,host:pg-1,service:db"`): `key:value` -> label key=value (values of  |
|              | a repeated key joined with ","), a bare tag `foo` -> label `tag_foo` = "true"; plus    |
|              | `alertname` = the monitor name when no tag sets it (so `group_by: [alertname]` works)  |
| service      | first non-empty label of `service_tags` (default `service`)                            |
| resource     | `hostname` / `host_name`, else the first non-empty label of `resource_tags` (`host`)   |
| summary      | `alert_title`, else `title` without its `[Transition on {scope}]` prefix               |
| description  | `body` ($EVENT_MSG) without its `%%%` markdown fences                                  |
| starts_at    | the trigger time (below), else `date`, else `last_updated` (epoch ms), else now       |
| ends_at      | resolved: `date`, else `last_updated`, else now; firing: None                          |
| links        | `link` ("Event"), then the URLs in `body`: markdown links with their text, bare URLs   |
|              | ("Runbook" when the line names a runbook)                                              |
| annotations  | alert_id, alert_scope, alert_query, alert_status, alert_metric, alert_type,           |
|              | alert_priority, priority, event_type, aggreg_key, alert_cycle_key (those present)     |

Transitions (`alert_transition`, the title prefix, or an `alert_status` word; case, spaces and
hyphens ignored):

| transition                                        | status   | severity implied |
| ------------------------------------------------- | -------- | ---------------- |
| Triggered, Re-Triggered, Alert                    | firing   | critical         |
| Warn, Re-Warn                                     | firing   | warning          |
| Renotify                                          | firing   | (none)           |
| No Data, Re-No Data                               | firing   | (none)           |
| Recovered (and any "...Recovered"), OK, Resolved  | resolved | (none)           |

"No Data" is firing: Datadog sends it only for monitors set to notify on missing data, and a host or
check that stopped reporting is exactly what on-call must see. `alert_type`: error -> firing,
critical; warning -> firing, warning; info -> firing, info; success -> resolved, info. A free-text
`alert_status` (Datadog's "... > 2 on host:a" summary) decides only when it says "recovered".
Priorities P1/P2 -> critical, P3 -> warning, P4/P5 and "low" -> info.

Identity (fingerprint) by default: the monitor is `alert_id`, else the monitor id in a
`/monitors/<id>` (or `#<id>`) URL in `link` or `body`; the scope is `alert_scope`, else the
`{...}` of the title prefix, else the `resource_tags` and `service_tags` tags; scope parts are
trimmed and sorted so all three spell it alike. The fingerprint is the canonical hash of
{monitor, scope}. Without a monitor: `aggreg_key` (Datadog's per-monitor-and-group id), then the
monitor name (`alert_title` / title) with the scope, then `alert_cycle_key` (a series of one
episode); with none of these the request is a 400 naming `alert_id`. `fingerprint_fields` replaces
all of this with the canonical hash of the listed fields' values (a 400 naming the first field when
none has a value).

Trigger time (the fallback episode key, and `starts_at`): the "The monitor was last triggered at
<Thu Mar 07 2024 23:19:19 UTC>" line Datadog appends to $EVENT_MSG, which stays the same in every
notification of one alert cycle (re-notify and recovery included), so the fallback key of a
recovery matches its trigger; without that line, `date`. Unparseable times are ignored (now).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Literal

from pydantic import Field, field_validator

from bridge.errors import PayloadInvalid
from bridge.model import Alert, AlertStatus, Link, Severity, canonical_fingerprint, format_time
from bridge.plugins import Parsed, SourceConfig, register_source
from sources._common import (
    MISSING,
    Path,
    epoch_or_time,
    first_label,
    join_path,
    kind,
    load_json,
    scalar_text,
)

__all__ = ["DatadogSource", "DatadogSourceConfig"]


class DatadogSourceConfig(SourceConfig):
    """Receives Datadog monitor notifications (a Webhooks integration whose URL is this source)."""

    type: Literal["datadog"] = Field(description="Source type: the Datadog Webhooks integration.")
    fingerprint_fields: list[str] | None = Field(
        None,
        description="Body fields (paths such as `alert_id`, `alert_scope`, `org.id`) whose values "
        "identify an alert series; null uses the monitor and its scope (see the source docs).",
    )
    service_tags: list[str] = Field(
        ["service"], description="Tags tried in order for the affected service; first non-empty wins."
    )
    resource_tags: list[str] = Field(
        ["host"],
        description="Tags tried in order for the affected resource when the payload has no "
        "`hostname`/`host_name`; first non-empty wins.",
    )
    default_severity: Severity = Field(
        Severity.WARNING,
        description="Severity used when neither alert_type, the transition nor a priority gives one.",
    )

    @field_validator("fingerprint_fields")
    @classmethod
    def _paths_compile(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must list at least one field (or be null for the default identity)")
        for text in value:
            if not text:
                raise ValueError("a field path must not be empty")
            Path.parse(text)
        return value


_PLACEHOLDER: Final = re.compile(r"\$\{?[A-Z][A-Z0-9_]*(?:\[[^\]]*\]|\.[\w.-]+)?\}?")
_TITLE: Final = re.compile(
    r"\s*(?:\[P[1-5]\]\s*)?\[(?P<transition>[A-Za-z][A-Za-z _-]*?)(?: on \{(?P<scope>[^}]*)\})?\]\s*(?P<rest>.*)",
    re.DOTALL,
)
_TRIGGERED_AT: Final = re.compile(
    r"last triggered at [A-Za-z]{3} (?P<mon>[A-Za-z]{3}) (?P<day>\d{1,2}) (?P<year>\d{4}) "
    r"(?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2}) UTC"
)
_MONTHS: Final = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_MONITOR_URL: Final = re.compile(r"/monitors?(?:#|/)(\d+)")
_URL: Final = re.compile(
    r"\[(?P<text>[^\[\]\n]*)\]\((?P<md>https?://[^\s)]+)\)|(?P<bare>https?://[^\s<>\"'()\[\]]+)"
)
_RECOVERED_WORD: Final = re.compile(r"\brecovered\b", re.IGNORECASE)
MAX_LINKS: Final = 20

_FIRING, _RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED
#: normalized transition word -> (status, severity it implies or None)
_TRANSITIONS: Final[dict[str, tuple[AlertStatus, Severity | None]]] = {
    "triggered": (_FIRING, Severity.CRITICAL),
    "retriggered": (_FIRING, Severity.CRITICAL),
    "alert": (_FIRING, Severity.CRITICAL),
    "warn": (_FIRING, Severity.WARNING),
    "rewarn": (_FIRING, Severity.WARNING),
    "renotify": (_FIRING, None),
    "nodata": (_FIRING, None),
    "renodata": (_FIRING, None),
    "recovered": (_RESOLVED, None),
    "ok": (_RESOLVED, None),
    "resolved": (_RESOLVED, None),
}
_ALERT_TYPES: Final[dict[str, tuple[AlertStatus, Severity]]] = {
    "error": (_FIRING, Severity.CRITICAL),
    "warning": (_FIRING, Severity.WARNING),
    "info": (_FIRING, Severity.INFO),
    "success": (_RESOLVED, Severity.INFO),
}
_PRIORITIES: Final = {
    "p1": Severity.CRITICAL, "p2": Severity.CRITICAL, "p3": Severity.WARNING,
    "p4": Severity.INFO, "p5": Severity.INFO, "low": Severity.INFO,
}
_ANNOTATION_FIELDS: Final = (
    "alert_id", "alert_scope", "alert_query", "alert_status", "alert_metric", "alert_type",
    "alert_priority", "priority", "event_type", "aggreg_key", "alert_cycle_key",
)


def _transition(word: str | None) -> tuple[AlertStatus, Severity | None] | None:
    """A transition word (`Re-Triggered`, `No Data`, ...) as (status, implied severity); None if unknown."""
    if word is None:
        return None
    norm = re.sub(r"[\s_-]+", "", word).lower()
    if norm.endswith("recovered"):
        return _RESOLVED, None
    return _TRANSITIONS.get(norm)


@register_source
class DatadogSource:
    """Turns one Datadog webhook notification (any payload template) into one Alert."""

    type_name: ClassVar[str] = "datadog"
    config_model: ClassVar[type[DatadogSourceConfig]] = DatadogSourceConfig
    compat_paths: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: DatadogSourceConfig) -> None:
        self.name = config.name
        self.config = config
        self._fingerprint_paths = tuple(Path.parse(text) for text in config.fingerprint_fields or ())

    def parse(self, body: bytes, headers: Mapping[str, str], now: float) -> Parsed:
        data = load_json(body)
        if not isinstance(data, dict):
            raise PayloadInvalid("body", f"must be a JSON object (Datadog webhook payload), got {kind(data)}")

        def text(name: str) -> str | None:
            return _template_text(data.get(name), name)

        title = text("title")
        prefix = _TITLE.fullmatch(title) if title else None
        title_transition = _transition(prefix.group("transition")) if prefix else None
        if prefix is not None and title_transition is None:
            prefix = None  # "[TEST] Host down": a bracketed word that is not a transition
        title_name = (prefix.group("rest").strip() if prefix else title.strip() if title else "") or None
        title_scope = prefix.group("scope") if prefix else None

        transition = _transition(text("alert_transition"))
        alert_type = _ALERT_TYPES.get((text("alert_type") or "").strip().lower())
        status = _status(transition, alert_type, text("alert_status"), title_transition)
        severity = self._severity(alert_type, transition or title_transition,
                                  text("alert_priority"), text("priority"))

        labels = _tag_labels(data.get("tags"))
        name = (text("alert_title") or "").strip() or title_name
        if name and "alertname" not in labels:
            labels["alertname"] = name
        message = text("body")
        link = text("link")

        fingerprint = self._fingerprint(data, labels, name, title_scope, link, message)
        trigger_at = _triggered_at(message)
        date_at = _epoch(text("date"))
        updated_at = _epoch(text("last_updated"))
        cycle = text("alert_cycle_key")
        if cycle is not None:
            key = f"{self.name}:{cycle}"
        else:
            episode = next(t for t in (trigger_at, date_at, updated_at, now) if t is not None)
            key = f"{self.name}:{fingerprint}:{format_time(episode)}"
        starts_at = next(t for t in (trigger_at, date_at, updated_at, now) if t is not None)
        ends_at = None
        if status is AlertStatus.RESOLVED:
            ends_at = next(t for t in (date_at, updated_at, now) if t is not None)

        hostname = (text("hostname") or text("host_name") or "").strip() or None
        alert_id = text("alert_id")
        annotations = {field: value.strip() for field in _ANNOTATION_FIELDS
                       if (value := text(field)) is not None}
        alert = Alert(
            source=self.name,
            fingerprint=fingerprint,
            key=key,
            status=status,
            severity=severity,
            summary=name or (f"Datadog monitor {alert_id.strip()}" if alert_id else "Datadog alert"),
            starts_at=starts_at,
            ends_at=ends_at,
            description=_description(message),
            labels=labels,
            annotations=annotations,
            service=first_label(labels, self.config.service_tags),
            resource=hostname or first_label(labels, self.config.resource_tags),
            links=_links(link, message),
        )
        return Parsed(alerts=[alert])

    def _severity(self, alert_type: tuple[AlertStatus, Severity] | None,
                  transition: tuple[AlertStatus, Severity | None] | None,
                  alert_priority: str | None, priority: str | None) -> Severity:
        if alert_type is not None:
            return alert_type[1]
        if transition is not None and transition[1] is not None:
            return transition[1]
        for value in (alert_priority, priority):
            found = _PRIORITIES.get((value or "").strip().lower())
            if found is not None:
                return found
        return self.config.default_severity

    def _fingerprint(self, data: Mapping[str, Any], labels: Mapping[str, str], name: str | None,
                     title_scope: str | None, link: str | None, message: str | None) -> str:
        if self._fingerprint_paths:
            values = {path.text: _template_text(path.get(data), path.under("")) or ""
                      for path in self._fingerprint_paths}
            if not any(value.strip() for value in values.values()):
                first = self._fingerprint_paths[0].text
                names = ", ".join(path.text for path in self._fingerprint_paths)
                raise PayloadInvalid(first, f"is required: none of fingerprint_fields ({names}) has a value")
            return canonical_fingerprint(values)

        def text(field: str) -> str | None:
            value = _template_text(data.get(field), field)
            return value.strip() if value is not None else None

        scope = _scope(text("alert_scope") or title_scope or self._tag_scope(labels))
        monitor = text("alert_id") or _monitor_id(link, message)
        if monitor:
            return canonical_fingerprint({"monitor": monitor, "scope": scope})
        aggreg_key = text("aggreg_key")
        if aggreg_key:
            return canonical_fingerprint({"aggreg_key": aggreg_key})
        if name:
            return canonical_fingerprint({"monitor_name": name, "scope": scope})
        cycle = text("alert_cycle_key")
        if cycle:
            return canonical_fingerprint({"alert_cycle_key": cycle})
        raise PayloadInvalid(
            "alert_id",
            "is required: no alert_id, monitor URL, aggreg_key, alert_title, title or alert_cycle_key "
            "identifies the monitor",
        )

    def _tag_scope(self, labels: Mapping[str, str]) -> str:
        names = [*self.config.resource_tags, *self.config.service_tags]
        return ",".join(f"{name}:{labels[name]}" for name in dict.fromkeys(names) if labels.get(name))

    def error_body(self, field: str, reason: str, status: int) -> tuple[int, dict[str, Any]]:
        """Datadog documents no error body (it retries only on 5xx): ours (`PayloadInvalid.to_dict`)."""
        return status, PayloadInvalid(field, reason, status).to_dict()


def _template_text(value: Any, field: str) -> str | None:
    """A template field's text as sent; None when absent, null, blank or an unsubstituted `$VARIABLE`."""
    if value is None or value is MISSING:
        return None
    text = scalar_text(value)
    if text is None:
        raise PayloadInvalid(field, f"must be a string, got {kind(value)}")
    stripped = text.strip()
    if not stripped or _PLACEHOLDER.fullmatch(stripped):
        return None
    return text


def _status(transition: tuple[AlertStatus, Severity | None] | None,
            alert_type: tuple[AlertStatus, Severity] | None, alert_status: str | None,
            title_transition: tuple[AlertStatus, Severity | None] | None) -> AlertStatus:
    if transition is not None:
        return transition[0]
    if alert_type is not None:
        return alert_type[0]
    if alert_status is not None:
        word = _transition(alert_status)
        if word is not None:
            return word[0]
        if _RECOVERED_WORD.search(alert_status):
            return AlertStatus.RESOLVED
    if title_transition is not None:
        return title_transition[0]
    return AlertStatus.FIRING


def _tag_labels(value: Any) -> dict[str, str]:
    """`"env:prod,host:a,beta"` (or a list of such strings) as labels `{env: prod, host: a, tag_beta: true}`."""
    if isinstance(value, list):
        parts: list[str] = []
        for i, item in enumerate(value):
            text = _template_text(item, join_path("tags", i))
            if text is not None:
                parts.extend(text.split(","))
    else:
        text = _template_text(value, "tags")
        parts = text.split(",") if text is not None else []
    labels: dict[str, str] = {}
    for part in parts:
        tag = part.strip()
        if not tag or _PLACEHOLDER.fullmatch(tag):
            continue
        name, sep, tag_value = tag.partition(":")
        name, tag_value = name.strip(), tag_value.strip()
        if not sep or not name:
            name, tag_value = f"tag_{tag}", "true"
        known = labels.get(name)
        if known is None:
            labels[name] = tag_value
        elif tag_value not in known.split(","):
            labels[name] = f"{known},{tag_value}"
    return labels


def _scope(text: str | None) -> str:
    """A monitor group (`"service:b, host:a"`) in one spelling: parts trimmed and sorted."""
    if not text:
        return ""
    return ",".join(sorted(part.strip() for part in text.split(",") if part.strip()))


def _monitor_id(*texts: str | None) -> str | None:
    for text in texts:
        found = _MONITOR_URL.search(text) if text else None
        if found is not None:
            return found.group(1)
    return None


def _epoch(text: str | None) -> float | None:
    """Epoch seconds or milliseconds (Datadog's `$DATE` is ms) or RFC 3339; None when unparseable."""
    if text is None:
        return None
    try:
        return epoch_or_time(text.strip(), "date")
    except PayloadInvalid:
        return None


def _triggered_at(message: str | None) -> float | None:
    """The time in Datadog's "The monitor was last triggered at Thu Mar 07 2024 23:19:19 UTC." line."""
    found = _TRIGGERED_AT.search(message) if message else None
    if found is None:
        return None
    month = _MONTHS.get(found.group("mon").lower())
    if month is None:
        return None
    try:
        moment = datetime(int(found.group("year")), month, int(found.group("day")), int(found.group("h")),
                          int(found.group("m")), int(found.group("s")), tzinfo=UTC)
    except ValueError:
        return None
    ts = moment.timestamp()
    return ts if ts >= 0 else None


def _description(message: str | None) -> str:
    """$EVENT_MSG without the `%%%` fences Datadog wraps markdown in."""
    if message is None:
        return ""
    text = message.strip()
    if text.startswith("%%%"):
        text = text[3:]
    if text.endswith("%%%"):
        text = text[:-3]
    return text.strip()


def _links(link: str | None, message: str | None) -> tuple[Link, ...]:
    links: list[Link] = []
    seen: set[str] = set()

    def add(href: str, text: str) -> None:
        if href and href not in seen and len(links) < MAX_LINKS:
            seen.add(href)
            links.append(Link(href, text))

    if link is not None:
        add(link.strip(), "Event")
    for line in (message or "").splitlines():
        for found in _URL.finditer(line):
            if found.group("md"):
                add(found.group("md"), found.group("text").strip())
            else:
                href = found.group("bare").rstrip(".,;:!?")
                before = line[: found.start()].lower()
                add(href, "Runbook" if "runbook" in before or "runbook" in href.lower() else "")
    return tuple(links)
