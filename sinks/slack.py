"""Slack incoming webhook: posts each incident action as a readable Block Kit message.

Request: `POST <webhook url>` (the URL is the secret: no auth header) with `Content-Type:
application/json` and a body `{"text": <notification fallback>, "blocks": [...]}`, plus `channel`,
`username` and `icon_emoji` when configured (app-created webhooks may ignore `channel`). The
content is `sinks._message.notification(action)`, the same every human-facing sink shows; the
blocks, built by the pure `render()`:

    header    "🔴 P1 · [FIRING] <title>"  /  "🟠 P1 · [UPDATE: 3 alerts firing] <title>"
              "👀 P1 · [ACKNOWLEDGED by alice] <title>"  /  "✅ P1 · [RESOLVED] <title>"
              "👤 P1 · [ASSIGNED to alice] <title>"  /  "⏫ P1 · [ESCALATED to tier 2] <title>" ...
    section   the action's reason and `<@U…>` mentions of the recipients with a "slack" handle;
              fields: status, priority (and why), pool, route, alerts firing, duration, root
              cause, assignee, escalation level, SLA deadlines (a second section past 10 fields)
    actions   buttons "Acknowledge" (primary) and "Resolve" (danger) when the action carries
              signed links: `url` the link, `action_id` "alertbridge.acknowledge" /
              "alertbridge.resolve", `value` the incident id (a Slack app with interactivity
              also receives the click; opening the link is what acknowledges)
    divider
    section   one per alert (firing first, most severe first, at most 10): severity, summary,
              service/resource, links (source, runbook, dashboard) as mrkdwn links
    context   "…and N more alerts" when capped
    context   incident id · revision · time

The `text` fallback (what a push notification shows) is the header, the alerts firing and the
mentions.
Text from alerts is escaped (`&`, `<`, `>`), so an alert cannot mention `@channel`. Slack's limits
are kept (header ≤150, section text ≤3000, field ≤2000, ≤10 fields, ≤50 blocks, button text ≤75,
button URL ≤3000: a longer link gets no button), truncating
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

import re
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import orjson
from pydantic import ConfigDict, Field, SecretStr, field_validator

from bridge.model import Action, format_time
from bridge.plugins import Outcome, SinkConfig, register_sink
from sinks._http import LazySession, post_json, secret_https_url
from sinks._message import MAX_ALERTS, SEVERITY_EMOJI, AlertLine, Fact, Notification, notification, plural

__all__ = ["ACKNOWLEDGE_ACTION_ID", "MAX_ALERTS", "RESOLVE_ACTION_ID", "SlackSink", "SlackSinkConfig", "render"]

#: `action_id` of the buttons, so a Slack app with interactivity can recognise the click.
ACKNOWLEDGE_ACTION_ID = "alertbridge.acknowledge"
RESOLVE_ACTION_ID = "alertbridge.resolve"

HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
CONTEXT_LIMIT = 2000
TEXT_LIMIT = 3000
MAX_BLOCKS = 50
MAX_FIELDS = 10
BUTTON_TEXT_LIMIT = 75
BUTTON_URL_LIMIT = 3000
BUTTON_VALUE_LIMIT = 2000
_SUMMARY_LIMIT = 500
_ELLIPSIS = "…"
_DOT = " \u00b7 "  # " · ", the separator used in every line


#: A Slack user id (`U024BE7LH`, or `W…` on Enterprise Grid): the only thing put inside `<@…>`.
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")


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

    _https_url = field_validator("url")(secret_https_url)


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


def _slack_date(ts: float) -> str:
    """A date Slack shows in each reader's own time zone, with RFC 3339 UTC as the fallback."""
    return f"<!date^{int(ts)}^{{date_short_pretty}} {{time_secs}}|{format_time(ts)}>"


def _field(fact: Fact) -> dict[str, Any]:
    """`*Name*` and the value on the next line; a point in time is shown in the reader's time zone, with its note."""
    if fact.at is not None:
        value = _slack_date(fact.at) + (f" ({_esc(fact.note)})" if fact.note else "")
    else:
        value = _esc(_cut(fact.text, FIELD_LIMIT - 40))
    return _mrkdwn(f"*{_esc(fact.name)}*\n{value}", FIELD_LIMIT)


def _mentions(note: Notification) -> str:
    """`<@U024BE7LH> <@W0123ABC>` for recipients with a Slack user id; malformed ids are skipped."""
    return " ".join(f"<@{handle}>" for _, handle in note.handles("slack") if _USER_ID.fullmatch(handle))


def _alert_block(line: AlertLine) -> dict[str, Any]:
    """One alert: `🔴 *critical* · summary` / `service · resource · <links>`."""
    if line.firing:
        mark = f"{SEVERITY_EMOJI[line.severity]} *{line.severity.value}*"
    else:
        mark = f"✅ *resolved* ({line.severity.value})"
    lines = [f"{mark}{_DOT}{_esc(_cut(line.summary, _SUMMARY_LIMIT))}"]
    where = [f"`{_esc(_cut(part, 200))}`" for part in (line.service, line.resource) if part]
    links = [rendered for link in line.links if (rendered := _link(link.href, link.label)) is not None]
    details = where + links
    if details:
        lines.append(_DOT.join(details))
    return {"type": "section", "text": _mrkdwn("\n".join(lines), SECTION_LIMIT)}


def _button(text: str, url: str | None, action_id: str, style: str, value: str) -> dict[str, Any] | None:
    """A link button; None when there is no link or it is longer than a button URL may be."""
    if url is None or len(url) > BUTTON_URL_LIMIT:
        return None
    return {
        "type": "button",
        "text": _plain(text, BUTTON_TEXT_LIMIT),
        "style": style,
        "url": url,
        "action_id": action_id,
        "value": _cut(value, BUTTON_VALUE_LIMIT),
    }


def _actions(note: Notification) -> dict[str, Any] | None:
    """The Acknowledge / Resolve buttons, when the action carries signed links for them."""
    buttons = [
        _button("Acknowledge", note.acknowledge_url, ACKNOWLEDGE_ACTION_ID, "primary", note.incident_id),
        _button("Resolve", note.resolve_url, RESOLVE_ACTION_ID, "danger", note.incident_id),
    ]
    elements = [button for button in buttons if button is not None]
    return {"type": "actions", "elements": elements} if elements else None


def render(
    action: Action,
    *,
    channel: str | None = None,
    username: str | None = None,
    icon_emoji: str | None = None,
    max_alerts: int = MAX_ALERTS,
) -> dict[str, Any]:
    """The Slack message for `action` (pure): `text` fallback, Block Kit `blocks`, optional overrides."""
    note = notification(action, max_alerts=max_alerts)
    title = note.heading
    mentions = _mentions(note)
    fields = [_field(fact) for fact in note.facts]
    summary: dict[str, Any] = {"type": "section", "fields": fields[:MAX_FIELDS]}
    text = "\n".join(part for part in (_esc(note.reason), mentions) if part)
    if text:
        summary["text"] = _mrkdwn(text, SECTION_LIMIT)
    blocks: list[dict[str, Any]] = [{"type": "header", "text": _plain(title, HEADER_LIMIT)}, summary]
    blocks += [
        {"type": "section", "fields": fields[i : i + MAX_FIELDS]} for i in range(MAX_FIELDS, len(fields), MAX_FIELDS)
    ]
    actions = _actions(note)
    if actions is not None:
        blocks.append(actions)
    blocks.append({"type": "divider"})
    # Leave room for the "more" and the context blocks under Slack's 50-block cap.
    shown = note.alerts[: max(0, MAX_BLOCKS - len(blocks) - 2)]
    blocks += [_alert_block(line) for line in shown]
    hidden = note.alerts_total - len(shown)
    if hidden > 0:
        more = f"{_ELLIPSIS}and {plural(hidden, 'more alert')}"
        blocks.append({"type": "context", "elements": [_mrkdwn(more, CONTEXT_LIMIT)]})
    where = f"Incident `{_esc(note.incident_id)}`{_DOT}revision {note.revision}{_DOT}{_slack_date(note.at)}"
    blocks.append({"type": "context", "elements": [_mrkdwn(where, CONTEXT_LIMIT)]})

    fallback = f"{title}{_DOT}{note.summary}"
    if mentions:
        fallback += f"{_DOT}{mentions}"
    message: dict[str, Any] = {"text": _cut(fallback, TEXT_LIMIT), "blocks": blocks[:MAX_BLOCKS]}
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
