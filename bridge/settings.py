"""The configuration schema: one YAML file, validated by pydantic, every error reported at once.

`load_settings(path)` reads the YAML, interpolates `${ENV_VAR}` (and `${ENV_VAR:-default}`) in
string values, validates, cross-checks references (route -> sink, unique names, matchers, paths)
and raises `ConfigError` with every problem as `path: reason` (`sinks[1].url: ...`).

Plugin sections (`sources`, `sinks`) are unions of the registered plugins' own config models,
discriminated by `type`; adding a plugin never touches this file.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, create_model

from bridge.errors import ConfigError
from bridge.model import Severity
from bridge.oncall import ScheduleSettings
from bridge.plugins import SINKS, SOURCES, Duration, parse_duration
from bridge.pool_settings import AssignmentSettings, EscalationPolicySettings, PoolSettings, SlaSettings
from bridge.priority import ITIL_MATRIX, LEVELS

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DispatchSettings",
    "Duration",
    "PrioritySettings",
    "RouteSettings",
    "ServerSettings",
    "ServiceSettings",
    "load_catalog",
    "load_settings",
    "parse_duration",
    "settings_model",
    "validate_settings",
    "with_catalog",
]

DEFAULT_CONFIG_PATH = Path("config/alertbridge.yaml")


Level = Annotated[str, Field(pattern="^(high|medium|low)$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ServerSettings(_Model):
    listen: str = Field("127.0.0.1:9095", description="HOST:PORT to listen on.",
                        pattern=r"^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$")
    data_dir: Path = Field(Path("./data"), description="Directory for the journal, state and outbox (SQLite).")
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0, description="Largest accepted request body, in bytes.")
    tick: Duration = Field(1.0, gt=0, le=60, description="How often the engine's timers are advanced.")
    public_url: str | None = Field(None, description="Base URL people and tools reach this service at.")


class LoggingSettings(_Model):
    level: str = Field("info", pattern="^(debug|info|warning|error)$", description="Minimum log level.")
    format: str = Field("json", pattern="^(json|console)$", description="json lines, or human-readable.")


class PrecursorSettings(_Model):
    name: str = Field(description="Name of the rule (shown in the incident timeline).")
    matchers: list[str] = Field(description="Alertmanager matchers the early-warning alerts match (all must).")
    min_firing_for: Duration = Field(600.0, description="Sustained this long, they page (instead of the route's "
                                                        "min_firing_for).")
    urgency: Level = Field("low", description="Urgency they page at; a later critical alert raises it.")


class RouteSettings(_Model):
    name: str = Field(description="Unique route name; part of every incident key it makes.",
                      pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    matchers: list[str] = Field(default_factory=list,
                                description='Alertmanager matchers (name=value, !=, =~, !~); all must match.')
    sources: list[str] = Field(default_factory=list, description="Only alerts from these sources (empty: any).")
    group_by: list[str] = Field(default_factory=list,
                                description="Labels whose values make the group (['...'] = all labels).")
    group_wait: Duration = Field(30.0, description="Wait before a new incident pages; alerts resolved by "
                                                   "then never page (transient).")
    group_interval: Duration = Field(300.0, description="Minimum time between update notifications.")
    reopen_window: Duration = Field(300.0, description="A re-fire within this time of the resolve re-opens "
                                                       "the incident instead of opening a new one.")
    sinks: list[str] = Field(default_factory=list, description="Names of the sinks incidents are sent to.")
    pool: str | None = Field(None, description="Resolver pool the incidents are assigned to.")
    continue_: bool = Field(False, alias="continue",
                            description="Keep evaluating later routes after this one matched.")
    page: bool = Field(True, description="False: alerts this route takes never open or page anything "
                                         "(counted as dropped), e.g. for info-level alerts.")
    grouping: str = Field("labels", pattern="^(labels|topology)$",
                          description="labels: one incident per group_by values; topology: alerts on services "
                                      "connected through the catalog's depends_on join one incident (alerts "
                                      "on services outside the catalog fall back to labels).")
    topology_window: Duration = Field(600.0, description="topology: a service whose alerts resolved longer ago "
                                                         "than this no longer pulls new alerts in.")
    min_firing_for: Duration = Field(0.0, description="Hold-down: an alert must fire this long before it may "
                                                      "open or join an incident; resolved sooner, it never "
                                                      "pages (counted as a page avoided).")
    flap_episodes: int = Field(0, ge=0, description="Flap detection: this many firing episodes of one condition "
                                                    "(same source, alert name, service and resource, whatever "
                                                    "the sender's ids) within flap_window make it flapping "
                                                    "(0: off).")
    flap_window: Duration = Field(1800.0, description="Window over which state changes are counted.")
    flap_clear_after: Duration = Field(900.0, description="A flapping series pages only once an episode has "
                                                          "fired this long.")
    group_window: str = Field("until_resolved", pattern="^(until_resolved|fixed|sliding)$",
                              description="How long an incident takes new alerts of its group: until_resolved "
                                          "(while any alert fires), fixed (group_window_for from its first alert) "
                                          "or sliding (until no alert joined for group_window_for); later alerts "
                                          "open a new incident.")
    group_window_for: Duration = Field(600.0, description="The length of a fixed or sliding group_window.")
    corroborate_after: Duration = Field(0.0, description="Corroboration: a held alert pages this long after it "
                                                         "fired when another tool reports a firing alert on the "
                                                         "same or a directly connected service (0: off).")
    resolve_hysteresis: Duration = Field(0.0, description="After the last alert resolves, wait this long before "
                                                          "resolving the incident; an alert firing again meanwhile "
                                                          "cancels it (no resolve, no re-page).")
    precursors: list[PrecursorSettings] = Field(
        default_factory=list, description="Early warning: sustained warnings (a disk filling, a leak) that page at "
                                          "low urgency before the outage; the first that matches an alert applies.")
    group_held: bool = Field(False, description="Alerts still held back already join incidents (as pending: "
                                                "they shape grouping, not pages), so the symptoms of one "
                                                "failure gather before the first page.")


class ServiceSettings(_Model):
    name: str = Field(description="Service name, as alerts name it (the service label).")
    criticality: int = Field(3, ge=1, le=9, description="Criticality tier: 1 is the most critical.")
    owner: str | None = Field(None, description="Pool that owns the service.")
    business_hours: bool = Field(False, description="Only needed during business hours.")
    depends_on: list[str] = Field(default_factory=list, description="Services this one calls or runs on.")
    hosts: list[str] = Field(default_factory=list, description="Hosts the service runs on.")


class PrioritySettings(_Model):
    urgency: dict[Severity, Level] = Field(
        default_factory=lambda: {Severity.CRITICAL: "high", Severity.WARNING: "medium",
                                 Severity.INFO: "low", Severity.NONE: "low"},
        description="Severity -> urgency (high|medium|low).")
    impact_by_tier: dict[int, Level] = Field(
        default_factory=lambda: {1: "high", 2: "medium", 3: "low", 4: "low", 5: "low"},
        description="Service criticality tier -> impact.")
    default_impact: Level = Field("low", description="Impact of an alert whose service is not in the catalog.")
    matrix: dict[Level, dict[Level, str]] = Field(
        default_factory=lambda: {k: dict(v) for k, v in ITIL_MATRIX.items()},
        description="impact -> urgency -> priority label (default: ITIL 3x3 to P1..P5).")
    blast_radius: dict[Level, int] = Field(
        default_factory=dict,
        description="Impact reached by the number of impacted services, e.g. {high: 6, medium: 3}.")
    business_hours_downgrade: bool = Field(
        False, description="Lower urgency one step when every impacted service is business-hours only and "
                           "the incident started outside business hours (catalog business_hours).")


class SilenceSettings(_Model):
    report_unused_after: Duration = Field(3600.0, gt=0, description="An active silence that has matched no "
                                                                      "firing alert this long is reported as "
                                                                      "unused (API, metrics, log).")


class DispatchSettings(_Model):
    initial_backoff: Duration = Field(1.0, gt=0, description="First retry delay.")
    max_backoff: Duration = Field(300.0, gt=0, description="Longest retry delay.")
    max_attempts: int = Field(8, ge=1, le=100, description="Attempts before a delivery is dead-lettered.")
    jitter: float = Field(0.2, ge=0, le=1, description="Random share added to or removed from each delay.")
    concurrency: int = Field(32, ge=1, le=1024, description="Deliveries in flight at once.")


class LinkSettings(_Model):
    secret: SecretStr | None = Field(None, description="Key (32+ bytes) that signs the acknowledge/resolve links "
                                                       "in notifications; unset: no links. Needs "
                                                       "server.public_url.")
    previous_secrets: list[SecretStr] = Field(default_factory=list, description="Old keys still accepted (key "
                                                                                "rotation); never used to sign.")
    ttl: Duration = Field(86400.0, gt=0, description="How long a link stays valid after its notification.")


class RedisSettings(_Model):
    url: str | None = Field(None, description="Distributed mode: journal, outbox and leases in this Redis "
                                              "(redis://host:6379/0); unset: embedded mode (SQLite). Also "
                                              "--redis / ALERTBRIDGE_REDIS.")
    prefix: str = Field("alertbridge", min_length=1, description="Prefix of every key alertbridge writes.")
    lease_ttl: Duration = Field(5.0, gt=0, description="Partition lease: a standby takes over within about this "
                                                       "long after the owner dies.")
    queue: str = Field("alertbridge-deliveries", min_length=1, description="RQ queue the deliveries are jobs on "
                                                                           "(`rq worker` listens to it).")
    partition_label: str | None = Field(None, description="Partition the engine state by this alert label (e.g. "
                                                          "cluster, tenant): each partition has its own journal, "
                                                          "engine and owner. Unset: one partition.")
    partitions: list[str] = Field(default_factory=list, description="The partition_label values that get a "
                                                                    "partition of their own; other alerts go to "
                                                                    "`default`.")


class SlackAppSettings(_Model):
    signing_secret: SecretStr | None = Field(None, description="Slack app signing secret: enables the interactive "
                                                               "endpoint POST /api/v1/slack/actions (Acknowledge "
                                                               "and Resolve buttons).")


def _plugin_union(registry: Mapping[str, type[Any]]) -> Any:
    models = tuple(cls.config_model for cls in registry.values())
    if not models:
        raise RuntimeError("no plugin registered")
    if len(models) == 1:
        return models[0]
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007 - dynamic union


@functools.cache
def settings_model() -> type[BaseModel]:
    """The full Settings model, built once the plugin packages are imported."""
    import sinks  # noqa: F401 - registers the sinks
    import sources  # noqa: F401 - registers the sources

    source_union = _plugin_union(SOURCES)
    sink_union = _plugin_union(SINKS)
    return create_model(
        "Settings",
        __config__=ConfigDict(frozen=True, extra="forbid"),
        server=(ServerSettings, Field(default_factory=ServerSettings, description="HTTP server.")),
        logging=(LoggingSettings, Field(default_factory=LoggingSettings, description="Logs.")),
        sources=(list[source_union], Field(default_factory=list, description="Monitoring tools that post.")),  # type: ignore[valid-type]  # built from the registry
        sinks=(list[sink_union], Field(default_factory=list, description="Where incidents are delivered.")),  # type: ignore[valid-type]  # built from the registry
        routes=(list[RouteSettings], Field(default_factory=list, description="Ordered routes; first match.")),
        services=(list[ServiceSettings], Field(default_factory=list, description="Service catalog (inline).")),
        catalog=(Path | None, Field(None, description="Service catalog file (YAML; see `alertbridge catalog "
                                                      "import`), relative to this config file.")),
        priority=(PrioritySettings, Field(default_factory=PrioritySettings, description="Priority policy.")),
        dispatch=(DispatchSettings, Field(default_factory=DispatchSettings, description="Delivery retries.")),
        silences=(SilenceSettings, Field(default_factory=SilenceSettings, description="Silences (see the API).")),
        maintenance=(list[dict[str, Any]], Field(default_factory=list, description=(
            "Maintenance windows: {id, services | hosts | matchers, start + end (RFC 3339), or rrule | cron + "
            "duration + timezone, comment}; alerts in scope never page while a window is open."))),
        inhibit_rules=(list[dict[str, Any]], Field(default_factory=list, description=(
            "Alertmanager-style inhibition: {name, source_matchers, target_matchers, equal}: while a source "
            "alert fires, targets with the same `equal` labels do not page."))),
        pools=(list[PoolSettings], Field(default_factory=list, description=(
            "Resolver pools: members (contacts, quota, working hours), on-call schedule, escalation policy, "
            "channels. With none, incidents are only sent to their routes' sinks."))),
        schedules=(list[ScheduleSettings], Field(default_factory=list, description=(
            "On-call schedules: rotations (daily, weekly, custom) in layers, with overrides."))),
        escalation_policies=(list[EscalationPolicySettings], Field(default_factory=list, description=(
            "Escalation policies: tiers with a timeout each, repeated `repeat` times."))),
        assignment=(AssignmentSettings, Field(default_factory=AssignmentSettings, description=(
            "Ordered rules from incidents to pools; the triage pool for the rest."))),
        sla=(SlaSettings, Field(default_factory=SlaSettings, description=(
            "Per-priority targets for time to acknowledge and to resolve; warnings and breaches."))),
        links=(LinkSettings, Field(default_factory=LinkSettings, description=(
            "Signed acknowledge/resolve links in notifications (no login; expiring; single use)."))),
        slack_app=(SlackAppSettings, Field(default_factory=SlackAppSettings, description=(
            "Slack interactivity: Acknowledge/Resolve buttons in Slack messages."))),
        redis=(RedisSettings, Field(default_factory=RedisSettings, description=(
            "Distributed mode: several alertbridge processes and RQ workers sharing one Redis."))),
    )



def _format_loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    skip_tag = False
    for i, item in enumerate(loc):
        if skip_tag:
            skip_tag = False
            if isinstance(item, str) and (item in SOURCES or item in SINKS):
                continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
            if i >= 1 and loc[i - 1] in ("sources", "sinks"):
                skip_tag = True
        else:
            name = "continue" if item == "continue_" else str(item)
            parts.append(("." if parts else "") + name)
    return "".join(parts) or "(top level)"


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, path: str, env: Mapping[str, str], problems: list[str]) -> Any:
    if isinstance(value, str):
        def sub(found: re.Match[str]) -> str:
            name, default = found.group(1), found.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(f"{path}: environment variable {name} is not set")
            return ""

        return _ENV_RE.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k), env, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env, problems) for i, v in enumerate(value)]
    return value


def validate_settings(raw: Any, env: Mapping[str, str] | None = None) -> Any:
    """Validate a parsed YAML document; raise ConfigError listing every problem."""
    problems: list[str] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): must be a mapping"])
    data = _interpolate(raw, "", os.environ if env is None else env, problems)
    try:
        settings = settings_model().model_validate(data)
    except ValidationError as err:
        for e in err.errors():
            message = e["msg"].removeprefix("Value error, ")
            problems.append(f"{_format_loc(tuple(e['loc']))}: {message}")
        problems.extend(p for p in _raw_references(data) if p not in problems)
        raise ConfigError(problems) from None
    problems.extend(_cross_check(settings))
    if problems:
        raise ConfigError(problems)
    return settings


def _raw_references(data: dict[str, Any]) -> list[str]:
    """Reference checks on the raw document, so they are reported even when validation failed."""
    def names(section: str) -> set[str] | None:
        items = data.get(section)
        if not isinstance(items, list):
            return None
        return {item["name"] for item in items if isinstance(item, dict) and isinstance(item.get("name"), str)}

    problems: list[str] = []
    routes = data.get("routes")
    if not isinstance(routes, list):
        return problems
    for section in ("sinks", "sources"):
        known = names(section)
        if known is None and data.get(section) is not None:
            continue
        known = known or set()
        for i, route in enumerate(routes):
            refs = route.get(section) if isinstance(route, dict) else None
            for j, ref in enumerate(refs if isinstance(refs, list) else []):
                if isinstance(ref, str) and ref not in known:
                    problems.append(f"routes[{i}].{section}[{j}]: unknown {section[:-1]} {ref!r}")
    return problems


def _cross_check(settings: Any) -> list[str]:
    from bridge.routing import matcher_problems

    problems: list[str] = []
    for section in ("sources", "sinks", "routes", "services", "pools", "schedules", "escalation_policies"):
        seen: dict[str, int] = {}
        for i, item in enumerate(getattr(settings, section)):
            if item.name in seen:
                problems.append(f"{section}[{i}].name: duplicate name {item.name!r} "
                                f"(also {section}[{seen[item.name]}])")
            seen.setdefault(item.name, i)
    sink_names = {s.name for s in settings.sinks}
    source_names = {s.name for s in settings.sources}
    for i, route in enumerate(settings.routes):
        for j, sink in enumerate(route.sinks):
            if sink not in sink_names:
                problems.append(f"routes[{i}].sinks[{j}]: unknown sink {sink!r}")
        for j, source in enumerate(route.sources):
            if source not in source_names:
                problems.append(f"routes[{i}].sources[{j}]: unknown source {source!r}")
        problems.extend(matcher_problems(f"routes[{i}].matchers", route.matchers))
        for k, precursor in enumerate(route.precursors):
            problems.extend(matcher_problems(f"routes[{i}].precursors[{k}].matchers", precursor.matchers))
    if settings.sources and not settings.routes:
        problems.append("routes: at least one route is needed, or every alert is dropped as unrouted")
    paths: dict[str, int] = {}
    for i, source in enumerate(settings.sources):
        for path in SOURCES[source.type].compat_paths:
            if path in paths:
                problems.append(f"sources[{i}].type: {path} is already served by sources[{paths[path]}]; "
                                "only one source of this type can be mounted there")
            paths.setdefault(path, i)
    from bridge.suppression import inhibit_rule, maintenance_window

    for i, item in enumerate(settings.maintenance):
        try:
            maintenance_window(item, f"config-{i + 1}")
        except ValueError as err:
            problems.append(f"maintenance[{i}].{err}" if ":" in str(err) else f"maintenance[{i}]: {err}")
    for i, item in enumerate(settings.inhibit_rules):
        try:
            inhibit_rule(item)
        except ValueError as err:
            problems.append(f"inhibit_rules[{i}].{err}" if ":" in str(err) else f"inhibit_rules[{i}]: {err}")
    if settings.pools or settings.schedules or settings.escalation_policies:
        from bridge.pool_settings import pool_problems

        problems.extend(pool_problems(settings, time.time()))
    redis = settings.redis
    if redis.partitions and redis.partition_label is None:
        problems.append("redis.partitions: needs redis.partition_label (the label whose values they are)")
    if redis.partition_label is not None and not redis.partitions:
        problems.append("redis.partition_label: list the values that get a partition in redis.partitions")
    for i, name in enumerate(redis.partitions):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name):
            problems.append(f"redis.partitions[{i}]: {name!r} is not a partition name (letters, digits, _ . -)")
    links = settings.links
    if links.secret is not None:
        if len(links.secret.get_secret_value().encode()) < 32:
            problems.append("links.secret: must be at least 32 bytes (e.g. `openssl rand -hex 32`)")
        if not settings.server.public_url:
            problems.append("links.secret: server.public_url must be set so links can point back here")
        else:
            from bridge.links import LinkSigner

            try:
                LinkSigner(b"x" * 32, settings.server.public_url, links.ttl)
            except ValueError as err:
                problems.append(f"server.public_url: {err}")
    for i, old in enumerate(links.previous_secrets):
        if len(old.get_secret_value().encode()) < 32:
            problems.append(f"links.previous_secrets[{i}]: must be at least 32 bytes")
    for level in LEVELS:
        if level not in settings.priority.matrix or any(u not in settings.priority.matrix[level] for u in LEVELS):
            problems.append(f"priority.matrix.{level}: must map every urgency (high, medium, low)")
    return problems


def load_catalog(path: str | Path) -> Any:
    """Read and validate a catalog file; raise ConfigError naming its problems."""
    from bridge.catalog import CatalogSettings

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise ConfigError([f"catalog: {path}: cannot read: {err.strerror or err}"]) from None
    except yaml.YAMLError as err:
        raise ConfigError([f"catalog: {path}: not YAML: {err}"]) from None
    try:
        return CatalogSettings.model_validate(raw or {})
    except ValidationError as err:
        raise ConfigError([f"catalog {path}: {_format_loc(tuple(e['loc']))}: {e['msg']}"
                           for e in err.errors()]) from None


def with_catalog(settings: Any, catalog: str | Path | None) -> Any:
    """The settings with `catalog` replaced (the --catalog flag)."""
    if catalog is None:
        return settings
    return settings.model_copy(update={"catalog": Path(catalog).resolve()})


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Any:
    """Read and validate a YAML config file; raise ConfigError with every problem found.

    A relative `catalog:` path is made relative to the config file's folder, and the catalog is
    checked to load.
    """
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError([f"{path}: cannot read: {err.strerror or err}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        raise ConfigError([f"{path}: {where}: {getattr(err, 'problem', None) or err}"]) from None
    settings = validate_settings(raw, env)
    if settings.catalog is not None and not settings.catalog.is_absolute():
        settings = settings.model_copy(update={"catalog": (Path(path).parent / settings.catalog).resolve()})
    if settings.catalog is not None:
        load_catalog(settings.catalog)
    return settings
