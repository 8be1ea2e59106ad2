"""Helpers shared by the source plugins: JSON decoding, typed field access, labels, paths, durations.

Every helper raises `PayloadInvalid(field, reason)` with a dotted `field` path into the body, never
another exception, so a parser built from them can only return a `Parsed` or raise `PayloadInvalid`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson
from pydantic import Field

from bridge.errors import PayloadInvalid
from bridge.model import Link, Severity, parse_time
from bridge.payload import kind, optional_str  # re-exported: sources import the model layer from here
from bridge.plugins import (
    SourceConfig,
    parse_duration,
)

__all__ = [
    "MAX_EPOCH",
    "MISSING",
    "AlertFields",
    "LabelMappingConfig",
    "Path",
    "alert_fields",
    "dump_json",
    "epoch_or_time",
    "first_label",
    "join_path",
    "kind",
    "load_json",
    "optional_str",
    "parse_duration",
    "scalar_text",
    "string_map",
    "text_or_json",
    "time_field",
]

#: Latest instant a source may report (9999-12-31T23:59:59Z); later ones are rejected.
MAX_EPOCH: Final = 253402300799.0


class _Missing:
    """Sentinel for "no value at this path" (distinct from JSON null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


# ------------------------------------------------------------------------------------------- JSON

def load_json(body: bytes) -> Any:
    """Decode a request body; invalid JSON (or nesting deeper than 1024) -> PayloadInvalid("body")."""
    try:
        return orjson.loads(body)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise PayloadInvalid("body", f"invalid JSON: {exc}") from None


def dump_json(value: Any, field: str) -> str:
    """Compact JSON text of a decoded value (sorted keys); too deeply nested -> PayloadInvalid."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError: nesting beyond orjson's encoder limit (254)
        raise PayloadInvalid(field, "is nested too deeply") from None


def join_path(prefix: str, part: str | int) -> str:
    """`join_path("alerts", 3) == "alerts[3]"`, `join_path("alerts[3]", "labels") == "alerts[3].labels"`."""
    if isinstance(part, int):
        return f"{prefix}[{part}]"
    return f"{prefix}.{part}" if prefix else part


def scalar_text(value: Any) -> str | None:
    """A JSON scalar as label text (`"x"`, `1`, `1.5`, `true`); None for null, arrays and objects."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return None


def text_or_json(value: Any, field: str) -> str:
    """A scalar's label text (`scalar_text`), else compact JSON of the array or object."""
    text = scalar_text(value)
    return text if text is not None else dump_json(value, field)


def string_map(value: Any, field: str, *, nested: Literal["reject", "json"] = "reject") -> dict[str, str]:
    """A JSON object as `{str: str}`: strings kept, numbers/bools as their JSON text, nulls dropped.

    `nested` says what to do with array/object values: "reject" (PayloadInvalid naming
    `field.<key>`) or "json" (encode them as compact JSON text).
    """
    if value is None or value is MISSING:
        return {}
    if not isinstance(value, dict):
        raise PayloadInvalid(field, f"must be an object, got {kind(value)}")
    out: dict[str, str] = {}
    for key, item in value.items():
        if item is None:
            continue
        text = scalar_text(item)
        if text is None:
            if nested != "json":
                raise PayloadInvalid(join_path(field, key), f"must be a string, got {kind(item)}")
            text = dump_json(item, join_path(field, key))
        out[key] = text
    return out


# ------------------------------------------------------------------------------------------- times

def time_field(value: Any, field: str) -> float | None:
    """An RFC 3339 string as epoch seconds; None for absent/null/Go zero time; else PayloadInvalid."""
    if value is None or value is MISSING:
        return None
    if not isinstance(value, str):
        raise PayloadInvalid(field, f"must be an RFC 3339 timestamp string, got {kind(value)}")
    try:
        parsed = parse_time(value)
    except (ValueError, OverflowError):
        raise PayloadInvalid(field, f"is not an RFC 3339 timestamp: {value[:64]!r}") from None
    if parsed is not None and not -MAX_EPOCH <= parsed <= MAX_EPOCH:
        raise PayloadInvalid(field, "is out of range")
    return parsed


_NUMERIC = re.compile(r"^-?\d+(\.\d+)?$")


def epoch_or_time(value: Any, field: str) -> float | None:
    """RFC 3339, or epoch seconds/milliseconds (number or numeric string; > 1e11 means ms)."""
    if value is None or value is MISSING:
        return None
    if isinstance(value, str) and _NUMERIC.match(value.strip()):
        value = float(value.strip())
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
        if abs(seconds) > 1e11:
            seconds /= 1000.0
        if not math.isfinite(seconds) or not 0 <= seconds <= MAX_EPOCH:
            raise PayloadInvalid(field, "is not a valid epoch time")
        return seconds
    return time_field(value, field)


_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
                 "y": 31536000.0}
_DURATION_PART: Final = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_DURATION: Final = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+")


# ----------------------------------------------------------------------------------- label mapping

class LabelMappingConfig(SourceConfig):
    """Config shared by the Alertmanager-shaped sources: which labels give identity, severity, etc."""

    identity_labels: list[str] | None = Field(
        None,
        description="Labels that identify an alert series when the payload carries no fingerprint "
        "(missing ones count as empty); null means all labels, as Alertmanager does.",
    )
    severity_label: str = Field("severity", description="Label holding the alert's severity.")
    default_severity: Severity = Field(
        Severity.WARNING, description="Severity used when the severity label is missing or unknown."
    )
    service_labels: list[str] = Field(
        ["service"], description="Labels tried in order for the affected service; first non-empty wins."
    )
    resource_labels: list[str] = Field(
        ["instance", "host", "nodename", "node"],
        description="Labels tried in order for the affected resource (host, instance); first non-empty wins.",
    )


def first_label(labels: Mapping[str, str], names: Iterable[str]) -> str | None:
    """The first non-empty value among `labels[name]` for `names`, else None."""
    for name in names:
        value = labels.get(name)
        if value:
            return value
    return None


#: Annotations read as links, with the link text they get.
_LINK_ANNOTATIONS: Final = (
    ("runbook_url", "Runbook"),
    ("runbook", "Runbook"),
    ("dashboard_url", "Dashboard"),
    ("dashboard", "Dashboard"),
)


@dataclass(frozen=True, slots=True)
class AlertFields:
    """What an Alertmanager-shaped alert's labels and annotations map to."""

    severity: Severity
    service: str | None
    resource: str | None
    summary: str
    description: str
    links: tuple[Link, ...]


def alert_fields(
    config: LabelMappingConfig, labels: Mapping[str, str], annotations: Mapping[str, str], generator_url: str
) -> AlertFields:
    """Severity, service, resource, summary, description and links from labels and annotations.

    summary: annotations summary, title, message, description, then the alertname label.
    links: generatorURL ("Source"), runbook_url/runbook ("Runbook"), dashboard_url/dashboard ("Dashboard").
    """
    default = config.default_severity
    raw_severity = labels.get(config.severity_label)
    severity = Severity.coerce(raw_severity, default) if raw_severity else default
    summary = (
        annotations.get("summary")
        or annotations.get("title")
        or annotations.get("message")
        or annotations.get("description")
        or labels.get("alertname")
        or ""
    )
    links: list[Link] = []
    if generator_url:
        links.append(Link(generator_url, "Source"))
    seen = {generator_url}
    for key, text in _LINK_ANNOTATIONS:
        href = annotations.get(key)
        if href and href not in seen:
            seen.add(href)
            links.append(Link(href, text))
    return AlertFields(
        severity=severity,
        service=first_label(labels, config.service_labels),
        resource=first_label(labels, config.resource_labels),
        summary=summary,
        description=annotations.get("description", ""),
        links=tuple(links),
    )


# -------------------------------------------------------------------------------------------- paths

_PATH_NAME: Final = re.compile(r'[^.\[\]"]+')
_PATH_BRACKET: Final = re.compile(r'\[(?:(?P<index>\d+)|(?P<quoted>"(?:[^"\\]|\\.)*"))\]')


@dataclass(frozen=True, slots=True)
class Path:
    """A compiled field path: dotted names, `[n]` list indexes and `["any key"]` quoted keys.

    `data.items[0].name`, `payload["custom details"].host`; the empty path is the value itself.
    """

    text: str
    steps: tuple[str | int, ...]

    @classmethod
    def parse(cls, text: str) -> Path:
        """Compile `text`; ValueError names the offending position."""
        steps: list[str | int] = []
        pos = 0
        while pos < len(text):
            if text[pos] == "[":
                bracket = _PATH_BRACKET.match(text, pos)
                if bracket is None:
                    raise ValueError(f"path {text!r}: expected [n] or [\"key\"] at {pos}")
                index, quoted = bracket.group("index"), bracket.group("quoted")
                steps.append(int(index) if index is not None else orjson.loads(quoted))
                pos = bracket.end()
                continue
            if steps:
                if text[pos] != ".":
                    raise ValueError(f"path {text!r}: expected '.' or '[' at {pos}")
                pos += 1
            name = _PATH_NAME.match(text, pos)
            if name is None:
                raise ValueError(f"path {text!r}: expected a name at {pos}")
            steps.append(name.group())
            pos = name.end()
        return cls(text, tuple(steps))

    def get(self, value: Any) -> Any:
        """The value at this path inside `value`, or MISSING when any step does not exist."""
        for step in self.steps:
            if isinstance(step, int):
                if not isinstance(value, list) or step >= len(value):
                    return MISSING
            elif not isinstance(value, dict) or step not in value:
                return MISSING
            value = value[step]
        return value

    def under(self, prefix: str) -> str:
        """The full dotted path of this path applied at `prefix` (for error messages)."""
        if not self.text:
            return prefix or "body"
        if not prefix:
            return self.text
        return f"{prefix}{self.text}" if self.text.startswith("[") else f"{prefix}.{self.text}"


# ------------------------------------------------------------- Alertmanager-style envelopes (AM, Grafana)


def envelope_items(data: Any, what: str) -> tuple[list[Any], int]:
    """The `alerts` list and `truncatedAlerts` of an Alertmanager-style webhook envelope."""
    if not isinstance(data, dict):
        raise PayloadInvalid("body", f"must be a JSON object ({what}), got {kind(data)}")
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
    return items, truncated


def envelope_group(data: Mapping[str, Any]) -> str | None:
    """The envelope's `groupKey` (the sender's group), if it has one."""
    group = data.get("groupKey")
    return group if isinstance(group, str) and group else None


def envelope_alert(source: str, config: Any, item: Any, path: str, now: float,
                   statuses: Mapping[str, Any], status_names: str,
                   absolute: Any = None, extra_links: Iterable[Link] = ()) -> Any:
    """One element of an Alertmanager-style `alerts` list as an Alert (see sources/alertmanager.py).

    `statuses` maps the lower-cased per-alert status to AlertStatus; `absolute(url)` turns relative
    URLs into absolute ones (Grafana); `extra_links` are appended after the standard ones.
    """
    from bridge.model import AlertStatus, canonical_fingerprint

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
    elif isinstance(status_raw, str) and status_raw.strip().lower() in statuses:
        status = statuses[status_raw.strip().lower()]
    else:
        raise PayloadInvalid(join_path(path, "status"), f"must be one of: {status_names}")
    if status is AlertStatus.FIRING:
        ends_at = None
    elif ends_at is None:
        ends_at = now
    fingerprint = optional_str(item, "fingerprint", join_path(path, "fingerprint"))
    if not fingerprint:
        fingerprint = canonical_fingerprint(labels, config.identity_labels or None)
    generator = optional_str(item, "generatorURL", join_path(path, "generatorURL")) or ""
    fields = alert_fields(config, labels, annotations, absolute(generator) if absolute else generator)
    links = fields.links
    if extra_links:
        merged = list(links)
        seen = {link.href for link in merged}
        for link in extra_links:
            if link.href and link.href not in seen:
                seen.add(link.href)
                merged.append(link)
        links = tuple(merged)
    return labelled_alert(source, fingerprint, f"{source}:{fingerprint}:{starts_text}", status, fields,
                          labels, annotations, starts_at, ends_at, links)


def labelled_alert(source: str, fingerprint: str, key: str, status: Any, fields: AlertFields,
                   labels: dict[str, str], annotations: dict[str, str], starts_at: float, ends_at: float | None,
                   links: tuple[Link, ...] | None = None) -> Any:
    """The Alert of a label-based source (Alertmanager, Grafana, Prometheus) from its mapped fields."""
    from bridge.model import Alert

    return Alert(
        source=source,
        fingerprint=fingerprint,
        key=key,
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
        links=fields.links if links is None else links,
    )


class FiringCache:
    """Alerts already built from byte-identical firing items, most recent first (bounded).

    Senders re-send every firing alert unchanged (Alertmanager every group_interval, Prometheus every
    evaluation); building the Alert again (labels, fingerprint, times, links) was ~45 % of ingest CPU
    at batch 100. Only items whose Alert does not depend on `now` may be cached: the caller decides.
    Parsing stays pure: the cached Alert is exactly what a fresh parse would build.
    """

    def __init__(self, size: int = 20_000) -> None:
        self._size = size
        self._items: dict[bytes, Any] = {}

    def key(self, item: Any) -> bytes | None:
        try:
            return orjson.dumps(item)
        except (TypeError, orjson.JSONEncodeError):
            return None

    def get(self, key: bytes) -> Any:
        return self._items.get(key)

    def put(self, key: bytes, alert: Any) -> None:
        items = self._items
        items[key] = alert
        if len(items) > self._size:
            del items[next(iter(items))]  # the oldest insertion
