"""Plugin contracts (Protocols), their result types, base config models and the registries.

A plugin is one module that defines a class satisfying one Protocol and registers it under its
type name (`@register_source`, `@register_sink`, `@register_stage`). The packages' `__init__`
import their modules by name, so adding a plugin is one greppable line there.

This module imports only the model, the errors and pydantic, so plugins may import it freely.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from bridge.model import Action, Alert

__all__ = [
    "SINKS",
    "SOURCES",
    "STAGES",
    "BasicAuth",
    "Duration",
    "Outcome",
    "OutcomeKind",
    "Parsed",
    "PluginConfig",
    "Sink",
    "SinkConfig",
    "Source",
    "SourceAuth",
    "SourceConfig",
    "Stage",
    "StageConfig",
    "StageContext",
    "Verdict",
    "VerdictKind",
    "format_duration",
    "parse_duration",
    "register_sink",
    "register_source",
    "register_stage",
]


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: Any) -> float:
    """`30s`, `5m`, `1h30m`, `250ms`, or a number of seconds -> seconds (float, >= 0)."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 30s, 5m or 1h30m")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("must be a finite duration")
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("must be a duration like 30s, 5m or 1h30m")
    text = value.strip()
    pos, total = 0, 0.0
    for found in _DURATION_RE.finditer(text):
        if found.start() != pos:
            break
        total += float(found.group(1)) * _UNITS[found.group(2)]
        pos = found.end()
    if pos != len(text) or not text:
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 5m, 1h30m)") from None
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is not a finite duration")
        if number < 0:
            raise ValueError("must not be negative")
        return number
    return total


def format_duration(seconds: float) -> str:
    """Seconds as people write a duration, the inverse of `parse_duration`: 45s, 5m, 2h, 1h30m, 1m30s."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text or "0s"


Duration = Annotated[float, BeforeValidator(parse_duration)]


class PluginConfig(BaseModel):
    """Base of every plugin's config: frozen, unknown fields rejected, `name` and `type` given."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    name: str = Field(description="Unique name of this component; used in URLs, routes and metrics.",
                      pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


# --------------------------------------------------------------------------------------------- sources

class BasicAuth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    username: str = Field(description="Expected basic-auth user name.")
    password: SecretStr = Field(description="Expected basic-auth password.")


class SourceAuth(BaseModel):
    """How a monitoring tool proves who it is. Exactly one of the two may be set."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    bearer_token: SecretStr | None = Field(None, description="Expected `Authorization: Bearer <token>`.")
    basic: BasicAuth | None = Field(None, description="Expected HTTP basic credentials.")


class SourceConfig(PluginConfig):
    auth: SourceAuth | None = Field(None, description="Credential required on every request; none if unset.")
    resolve_latency: Duration = Field(
        0.0, description="How late this source may report that an alert already resolved (Alertmanager and "
                         "Grafana batch resolves into the next group_interval, e.g. 5m). An alert is held back "
                         "until it is known to have fired min_firing_for, so this much longer.")


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a source made of one request body.

    `acknowledge` lists alert identities (`Alert.identity`) whose incidents the sender acknowledged
    (PagerDuty's `acknowledge` event). `response` is the JSON body the vendor's API documents for a
    success (None: empty body), sent with `status`.

    `sender_group` is the sender's own group of this notification (Alertmanager's `groupKey`), and
    `group_resolved` says the sender declared the whole group resolved: then every alert the engine
    saw in that group resolves, including those the sender left out (`max_alerts` truncation), so a
    resolve is never lost to truncation.
    """

    alerts: list[Alert]
    acknowledge: tuple[str, ...] = ()
    truncated: int = 0
    sender_group: str | None = None
    group_resolved: bool = False
    response: Mapping[str, Any] | None = None
    status: int = 200


@runtime_checkable
class Source(Protocol):
    """Parses one vendor's webhook payload. `parse` is pure: same bytes and `now`, same result.

    Raises `bridge.errors.PayloadInvalid(field, reason)` for anything it cannot accept; the whole
    request is then rejected. `error_body` turns such an error into the vendor's documented error
    shape (status, JSON body).
    """

    type_name: ClassVar[str]
    config_model: ClassVar[type[SourceConfig]]
    #: extra fixed paths the source is also mounted at, besides /v1/sources/{name}
    compat_paths: ClassVar[tuple[str, ...]]

    name: str
    config: Any  # its validated `config_model` instance

    def parse(self, body: bytes, headers: Mapping[str, str], now: float) -> Parsed: ...

    def error_body(self, field: str, reason: str, status: int) -> tuple[int, dict[str, Any]]: ...


# ----------------------------------------------------------------------------------------------- sinks

class SinkConfig(PluginConfig):
    timeout: float = Field(10.0, gt=0, le=300, description="Seconds before a delivery attempt times out.")


class OutcomeKind(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one delivery attempt, returned (never raised).

    `retry_after` is the receiver's `Retry-After` in seconds when it sent one.
    """

    kind: OutcomeKind
    reason: str = ""
    retry_after: float | None = None
    status: int | None = None

    @classmethod
    def delivered(cls, status: int | None = None) -> Outcome:
        return cls(OutcomeKind.DELIVERED, "", None, status)

    @classmethod
    def retry(cls, reason: str, retry_after: float | None = None, status: int | None = None) -> Outcome:
        return cls(OutcomeKind.RETRY, reason, retry_after, status)

    @classmethod
    def failed(cls, reason: str, status: int | None = None) -> Outcome:
        return cls(OutcomeKind.FAILED, reason, None, status)


@runtime_checkable
class Sink(Protocol):
    """Delivers actions to one destination. Never raises for an expected failure: returns Outcome."""

    type_name: ClassVar[str]
    config_model: ClassVar[type[SinkConfig]]
    name: str

    async def deliver(self, action: Action, idempotency_key: str) -> Outcome: ...

    async def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------- stages

class StageConfig(PluginConfig):
    pass


class VerdictKind(StrEnum):
    PASS = "pass"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class StageContext:
    """What a stage may read: the clock and what the engine already knows of this alert series."""

    now: float
    previous: Alert | None


@dataclass(frozen=True, slots=True)
class Verdict:
    """A stage's decision. `reason` is a member of the stage's closed reason enum (a metric label)."""

    kind: VerdictKind
    reason: str = ""
    alert: Alert | None = None  # a replacement (annotated) alert, when the stage enriched it
    detail: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Stage(Protocol):
    type_name: ClassVar[str]
    reasons: ClassVar[type[StrEnum]]

    def process(self, alert: Alert, ctx: StageContext) -> Verdict: ...


# ------------------------------------------------------------------------------------------ registries

SOURCES: dict[str, type[Any]] = {}
SINKS: dict[str, type[Any]] = {}
STAGES: dict[str, type[Any]] = {}

T = TypeVar("T", bound=type[Any])


def _registrar(registry: dict[str, type[Any]]) -> Any:
    def register(cls: T) -> T:
        name = cls.type_name
        if name in registry and registry[name] is not cls:
            raise RuntimeError(f"plugin type {name!r} registered twice")
        registry[name] = cls
        return cls

    return register


register_source = _registrar(SOURCES)
register_sink = _registrar(SINKS)
register_stage = _registrar(STAGES)
