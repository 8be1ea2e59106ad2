"""Slack incoming webhook: posts each incident action as a readable Block Kit message.

Request: `POST <webhook url>` (the URL is the secret: no auth header) with `Content-Type:
application/json` and a body `{"text": <notification fallback>, "blocks": [...]}`, plus `channel`,
`username` and `icon_emoji` when configured (app-created webhooks may ignore `channel`). The
blocks, built by the pure `render()`:

    header    "🔴 P1 · [FIRING] <title>"  /  "🟠 P1 · [UPDATE: 3 alerts firing] <title>"
              "👀 P1 · [ACKNOWLEDGED by alice] <title>"  /  "✅ P1 · [RESOLVED] <title>"
    section   the action's reason; fields: status, priority (and why), pool, route, alerts firing
    divider
    section   one per alert (firing first, most severe first, at most 10): severity, summary,
              service/resource, links (generatorURL, runbook) as mrkdwn links
    context   "…and N more alerts" when capped
    context   incident id · revision · time

Text from alerts is escaped (`&`, `<`, `>`), so an alert cannot mention `@channel`. Slack's limits
are kept (header ≤150, section text ≤3000, field ≤2000, ≤10 fields, ≤50 blocks), truncating
with "…" and counting UTF-16 code units, the stricter of the two ways to count.

Idempotency key: none is possible. An incoming webhook has no dedup and cannot edit a message, so
a redelivery posts again; the incident id and revision in the context block make a duplicate
recognisable, and update/resolve are new messages.
Retries: 429 (honouring `Retry-After`), 408 and 5xx (Slack's `rollup_error`), timeouts and
connection errors. Other 4xx (`invalid_payload`, `channel_not_found`, `channel_is_archived`, ...)
fail. A 2xx whose body is neither `ok` nor empty fails without retry, as in Alertmanager: posting
again could duplicate a message that may have been posted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import orjson
from pydantic import ConfigDict, Field, SecretStr, field_validator

from bridge.model import Action, ActionKind, Alert, AlertStatus, IncidentStatus, Severity, format_time
from bridge.plugins import Outcome, SinkConfig, register_sink
from sinks._http import LazySession, post_json

__all__ = ["MAX_ALERTS", "SlackSink", "SlackSinkConfig", "render"]

#: Alerts listed in one message; the rest are counted ("…and N more alerts").
MAX_ALERTS = 10
HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
CONTEXT_LIMIT = 2000
TEXT_LIMIT = 3000
MAX_BLOCKS = 50
_SUMMARY_LIMIT = 500
_ELLIPSIS = "…"
_DOT = " \u00b7 "  # " · ", the separator used in every line

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

_KIND_EMOJI = {
    ActionKind.OPEN: "🔴",
    ActionKind.UPDATE: "🟠",
    ActionKind.ACKNOWLEDGE: "👀",
    ActionKind.RESOLVE: "✅",
    ActionKind.ASSIGN: "👤",
    ActionKind.ESCALATE: "⏫",
    ActionKind.SLA_WARNING: "⏳",
    ActionKind.SLA_BREACH: "⌛",
}
_SEVERITY_EMOJI = {
    Severity.CRITICAL: "🔴",
    Severity.WARNING: "🟠",
    Severity.INFO: "🔵",
    Severity.NONE: "⚪",
}
_SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2, Severity.NONE: 3}
_RUNBOOK_ANNOTATIONS = ("runbook_url", "runbook")


class SlackSinkConfig(SinkConfig):
    """Post every incident action to a Slack channel through an incoming webhook."""

    # The URL is the credential: keep it out of validation error messages.
    model_config = ConfigDict(hide_input_in_errors=True)

    type: Literal["slack"] = Field(description="Selects this sink: `slack`.")
    url: SecretStr = Field(
        description="Incoming webhook URL (https://hooks.slack.com/services/...); it is the credential. "
        "http is accepted only for a loopback host (tests, local proxies).",
    )
    channel: str | None = Field(
        None, min_length=1, description="Channel override, e.g. `#alerts` (ignored by app-created webhooks)."
    )
    username: str | None = Field(None, min_length=1, description="Display name override for the poster.")
    icon_emoji: str | None = Field(
        None, pattern=r"^:[a-z0-9_+'-]+:$", description="Poster icon override, e.g. `:rotating_light:`."
    )

    @field_validator("url")
    @classmethod
    def _https_url(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())  # never echo the URL: it is the secret
        if not parts.hostname:
            raise ValueError("must be an https URL with a host")
        if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS):
            return value
        raise ValueError(
            f"must be https (http only for a loopback host), got scheme {parts.scheme or 'none'!r}"
        )


# ------------------------------------------------------------------------------------------ rendering

def _units(text: str) -> int:
    """Length in UTF-16 code units (an emoji counts 2), the stricter way Slack may count."""
    return len(text.encode("utf-16-le")) // 2


def _cut(text: str, limit: int) -> str:
    """`text` shortened to at most `limit` UTF-16 code units, ending with "…" when cut."""
    if _units(text) <= limit:
        return text
    budget = limit - 1
    used = 0
    out: list[str] = []
    for ch in text:
        size = 2 if ord(ch) > 0xFFFF else 1
        if used + size > budget:
            break
        out.append(ch)
        used += size
    return "".join(out) + _ELLIPSIS


def _esc(text: str) -> str:
    """Escape the three characters mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(href: str, label: str) -> str | None:
    """A mrkdwn link `<href|label>`, or None for anything but an http(s) URL."""
    if urlsplit(href).scheme not in ("http", "https"):
        return None
    safe_href = href.replace("<", "%3C").replace(">", "%3E").replace("|", "%7C").replace(" ", "%20")
    safe_label = _esc(_cut(label, 80)).replace("|", "/")
    return f"<{safe_href}|{safe_label}>"


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": _cut(text, limit), "emoji": True}


def _mrkdwn(text: str, limit: int) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _cut(text, limit)}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _headline(action: Action) -> str:
    """`[FIRING]`, `[UPDATE: 3 alerts firing]`, `[ACKNOWLEDGED by alice]` or `[RESOLVED]`."""
    incident = action.incident
    if action.kind is ActionKind.OPEN:
        return "[FIRING]"
    if action.kind is ActionKind.UPDATE:
        return f"[UPDATE: {_plural(len(incident.firing), 'alert')} firing]"
    if action.kind is ActionKind.ACKNOWLEDGE:
        who = incident.acknowledged_by
        return f"[ACKNOWLEDGED by {who}]" if who else "[ACKNOWLEDGED]"
    if action.kind is ActionKind.ASSIGN:
        return f"[ASSIGNED to {incident.assignee}]" if incident.assignee else "[ASSIGNED]"
    if action.kind is ActionKind.ESCALATE:
        return f"[ESCALATED to tier {incident.escalation_level}]"
    if action.kind is ActionKind.SLA_WARNING:
        return "[SLA WARNING]"
    if action.kind is ActionKind.SLA_BREACH:
        return "[SLA BREACHED]"
    return "[RESOLVED]"


def _title_line(action: Action) -> str:
    incident = action.incident
    return f"{_KIND_EMOJI[action.kind]} {incident.priority}{_DOT}{_headline(action)} {incident.title}"


def _duration(seconds: float) -> str:
    minutes = int(max(0.0, seconds) // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def _slack_date(ts: float) -> str:
    """A date Slack shows in each reader's own time zone, with RFC 3339 UTC as the fallback."""
    return f"<!date^{int(ts)}^{{date_short_pretty}} {{time_secs}}|{format_time(ts)}>"


def _facts(action: Action) -> list[dict[str, Any]]:
    incident = action.incident
    status = incident.status.value
    if incident.status is IncidentStatus.ACKNOWLEDGED and incident.acknowledged_by:
        status = f"{status} by {incident.acknowledged_by}"
    priority = incident.priority
    if incident.priority_reason:
        priority = f"{priority} ({incident.priority_reason})"
    facts = [
        ("Status", status),
        ("Priority", priority),
        ("Pool", incident.pool or "none"),
        ("Route", incident.route),
        ("Alerts firing", f"{len(incident.firing)} of {len(incident.alerts)}"),
    ]
    if incident.resolved_at is not None:
        facts.append(("Duration", _duration(incident.resolved_at - incident.opened_at)))
    return [_mrkdwn(f"*{name}*\n{_esc(_cut(value, FIELD_LIMIT - 40))}", FIELD_LIMIT) for name, value in facts]


def _alert_links(alert: Alert) -> list[str]:
    seen: set[str] = set()
    links: list[str] = []
    candidates: list[tuple[str, str]] = [(link.href, link.text or "link") for link in alert.links]
    for key in _RUNBOOK_ANNOTATIONS:
        if alert.annotations.get(key):
            candidates.append((alert.annotations[key], "runbook"))
    for href, label in candidates:
        if href in seen:
            continue
        seen.add(href)
        rendered = _link(href, label)
        if rendered is not None:
            links.append(rendered)
    return links


def _alert_block(alert: Alert) -> dict[str, Any]:
    """One alert: `🔴 *critical* · summary` / `service · resource · <links>`."""
    if alert.status is AlertStatus.RESOLVED:
        mark = f"✅ *resolved* ({alert.severity.value})"
    else:
        mark = f"{_SEVERITY_EMOJI[alert.severity]} *{alert.severity.value}*"
    lines = [f"{mark}{_DOT}{_esc(_cut(alert.summary or alert.key, _SUMMARY_LIMIT))}"]
    where = [f"`{_esc(_cut(part, 200))}`" for part in (alert.service, alert.resource) if part]
    details = where + _alert_links(alert)
    if details:
        lines.append(_DOT.join(details))
    return {"type": "section", "text": _mrkdwn("\n".join(lines), SECTION_LIMIT)}


def _ordered(alerts: Iterable[Alert]) -> list[Alert]:
    """Firing before resolved, most severe first, oldest first."""
    return sorted(
        alerts,
        key=lambda a: (a.status is not AlertStatus.FIRING, _SEVERITY_RANK[a.severity], a.starts_at),
    )


def render(
    action: Action,
    *,
    channel: str | None = None,
    username: str | None = None,
    icon_emoji: str | None = None,
    max_alerts: int = MAX_ALERTS,
) -> dict[str, Any]:
    """The Slack message for `action` (pure): `text` fallback, Block Kit `blocks`, optional overrides."""
    incident = action.incident
    title = _title_line(action)
    summary: dict[str, Any] = {"type": "section", "fields": _facts(action)[:10]}
    if action.reason:
        summary["text"] = _mrkdwn(_esc(action.reason), SECTION_LIMIT)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(title, HEADER_LIMIT)},
        summary,
        {"type": "divider"},
    ]
    # Leave room for the "more" and the context blocks under Slack's 50-block cap.
    shown = _ordered(incident.alerts)[: max(0, min(max_alerts, MAX_BLOCKS - len(blocks) - 2))]
    blocks += [_alert_block(alert) for alert in shown]
    hidden = len(incident.alerts) - len(shown)
    if hidden > 0:
        more = f"{_ELLIPSIS}and {_plural(hidden, 'more alert')}"
        blocks.append({"type": "context", "elements": [_mrkdwn(more, CONTEXT_LIMIT)]})
    where = f"Incident `{_esc(incident.id)}`{_DOT}revision {incident.revision}{_DOT}{_slack_date(action.at)}"
    blocks.append({"type": "context", "elements": [_mrkdwn(where, CONTEXT_LIMIT)]})

    text = f"{title}{_DOT}{_plural(len(incident.firing), 'alert')} firing"
    message: dict[str, Any] = {"text": _cut(text, TEXT_LIMIT), "blocks": blocks[:MAX_BLOCKS]}
    for key, value in (("channel", channel), ("username", username), ("icon_emoji", icon_emoji)):
        if value is not None:
            message[key] = value
    return message


def _slack_ok(body: str) -> str | None:
    """Slack answers a post with the literal body `ok`; anything else in a 2xx is an error."""
    text = body.strip()
    if text in ("", "ok"):
        return None
    return f"Slack answered 2xx with {' '.join(text.split())[:200]!r} instead of 'ok'"


@register_sink
class SlackSink:
    """Delivers actions to Slack through an incoming webhook."""

    type_name: ClassVar[str] = "slack"
    config_model: ClassVar[type[SinkConfig]] = SlackSinkConfig

    def __init__(self, config: SlackSinkConfig) -> None:
        self.name = config.name
        self.config = config
        self._session = LazySession()

    def body(self, action: Action) -> bytes:
        """The JSON body posted for `action`, with this sink's channel/username/icon overrides."""
        message = render(
            action,
            channel=self.config.channel,
            username=self.config.username,
            icon_emoji=self.config.icon_emoji,
        )
        return orjson.dumps(message)

    async def deliver(self, action: Action, idempotency_key: str) -> Outcome:
        try:
            body = self.body(action)
        except Exception as exc:  # a sink never raises: a rendering bug is a failed delivery
            return Outcome.failed(f"cannot render message: {type(exc).__name__}: {exc}")
        return await post_json(
            self._session.get(),
            self.config.url.get_secret_value(),
            body,
            {"Content-Type": "application/json"},
            self.config.timeout,
            check_body=_slack_ok,
        )

    async def close(self) -> None:
        await self._session.close()
