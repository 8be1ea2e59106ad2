"""Microsoft Teams: posts each incident action as an Adaptive Card to a Workflows (or legacy) webhook.

Request: `POST <webhook url>` (the URL carries its own `sig` credential: no auth header) with
`Content-Type: application/json` and the message envelope Teams documents for incoming webhooks,
which the Workflows template "Post to a channel when a webhook request is received" reads too:

    {"type": "message",
     "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                      "contentUrl": null,
                      "content": <AdaptiveCard 1.4, built by the pure `render_card()`>}]}

The card shows `sinks._message.notification(action)`, the content every human-facing sink shows:

    TextBlock   "🔴 P1 · [FIRING] <title>" (large, bold; red/amber/blue/green by action kind)
    TextBlock   the action's reason
    TextBlock   "<at>Alice</at> <at>Bob</at>": mentions of the recipients with a "teams" handle
                (user principal name), each with its `msteams.entities` mention entity
    FactSet     status, priority (and why), pool, route, alerts firing, duration, root cause,
                assignee, escalation level, SLA deadlines
    TextBlock   one per alert (firing first, most severe first, at most 10): severity, summary,
                service/resource and its links; then "…and N more alerts" when capped
    TextBlock   incident id · revision · time (subtle)
    actions     `Action.OpenUrl`: Acknowledge, Resolve (the signed links, while they apply), then
                runbook and dashboard links; at most 6, the most Teams shows

Text from alerts is markdown-escaped (`\\`, `*`, `_`, `<`, `>`, `` ` ``, `~`, and `(` after `]`),
so an alert cannot add links, formatting or `<at>` mentions. `msteams.width` is "Full". Teams refuses
messages over 28 KB: alerts are dropped from the list (and counted) until the body fits.

Idempotency key: none is possible. A Teams webhook has no dedup and cannot edit a post, so a
redelivery posts again; the incident id and revision in the card make a duplicate recognisable.
Retries: 429 (honouring `Retry-After`), 408 and 5xx, timeouts and connection errors; other 4xx
fail (see `sinks._http`). Workflows URLs succeed on any 2xx (the trigger answers 202 with an empty
body). A legacy Office 365 connector (`*.webhook.office.com`, `outlook.office.com`, or any URL
with `endpoint: connector`) answers a post with the body `1` and reports some errors, throttling
among them, inside a 200, so any other 2xx body is an error: a retry when it names HTTP 429/5xx
or throttling, else failed without retry (posting again could duplicate a message that may have
been posted).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlsplit

import orjson
from pydantic import ConfigDict, Field, SecretStr, field_validator

from bridge.model import Action, ActionKind, format_time
from bridge.plugins import Outcome, OutcomeKind, SinkConfig, register_sink
from sinks._http import BODY_EXCERPT, LazySession, post_json, secret_https_url
from sinks._message import MAX_ALERTS, SEVERITY_EMOJI, AlertLine, Notification, notification, plural

__all__ = ["MAX_BODY_BYTES", "TeamsSink", "TeamsSinkConfig", "is_legacy_url", "render", "render_card"]

CARD_VERSION = "1.4"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
#: Teams refuses webhook messages over 28 KB.
MAX_BODY_BYTES = 28 * 1024
#: Card-level actions Teams shows.
MAX_ACTIONS = 6
_TITLE_LIMIT = 300
_TEXT_LIMIT = 2000
_SUMMARY_LIMIT = 500
_DOT = " \u00b7 "

_LEGACY_HOSTS = ("webhook.office.com", "outlook.office.com")
_COLOURS = {
    ActionKind.OPEN: "attention",
    ActionKind.ESCALATE: "attention",
    ActionKind.SLA_BREACH: "attention",
    ActionKind.UPDATE: "warning",
    ActionKind.SLA_WARNING: "warning",
    ActionKind.ACKNOWLEDGE: "accent",
    ActionKind.ASSIGN: "accent",
    ActionKind.RESOLVE: "good",
}
#: Markdown that could format, link (`](`) or mention (`<at>`): backslash-escaped in text from alerts.
_MARKDOWN = re.compile(r"([\\*_<>`~]|(?<=\])\()")
_HTTP_ERROR = re.compile(r"HTTP error (\d{3})")


class TeamsSinkConfig(SinkConfig):
    """Post every incident action as an Adaptive Card to a Microsoft Teams channel."""

    # The URL is the credential: keep it out of validation error messages.
    model_config = ConfigDict(hide_input_in_errors=True)

    type: Literal["teams"] = Field(description="Selects this sink: `teams`.")
    url: SecretStr = Field(
        description="Workflows webhook URL (the HTTP POST URL of a 'Post to a channel when a webhook request is "
        "received' flow) or a legacy `*.webhook.office.com` connector URL; it is the credential. http is "
        "accepted only for a loopback host (tests, local proxies).",
    )
    endpoint: Literal["auto", "workflows", "connector"] = Field(
        "auto",
        description="How the URL answers: `workflows` (any 2xx is success), `connector` (a legacy Office 365 "
        "connector, whose success body is `1`), or `auto`: `connector` for a `*.webhook.office.com` or "
        "`outlook.office.com` host, else `workflows` (set it when a proxy hides the host).",
    )

    _https_url = field_validator("url")(secret_https_url)


def is_legacy_url(url: str) -> bool:
    """True for an Office 365 connector URL, which answers `1` on success."""
    host = (urlsplit(url).hostname or "").lower()
    return any(host == legacy or host.endswith("." + legacy) for legacy in _LEGACY_HOSTS)


# ------------------------------------------------------------------------------------------ rendering

def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _md(text: str, limit: int = _TEXT_LIMIT) -> str:
    """`text` cut to `limit` and markdown-escaped, so it shows literally."""
    return _MARKDOWN.sub(r"\\\1", _cut(text, limit))


def _md_link(href: str, label: str) -> str:
    """A markdown link whose target cannot end early (`(`, `)`, spaces and `<>` percent-encoded)."""
    safe_href = quote(href, safe="/:?#[]@!$&'*+,;=%-._~")
    safe_href = safe_href.replace("(", "%28").replace(")", "%29")
    safe_label = _md(label, 80).replace("[", "(").replace("]", ")")  # a bracket would end the link text
    return f"[{safe_label}]({safe_href})"


def _name(name: str) -> str:
    """A display name usable inside `<at>…</at>`: no markup characters, one line."""
    return " ".join(re.sub(r"[<>\[\]\\*_`~]", "", name).split()) or "someone"


def _text(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **extra}


def _alert_text(line: AlertLine) -> str:
    if line.firing:
        mark = f"{SEVERITY_EMOJI[line.severity]} **{line.severity.value}**"
    else:
        mark = f"✅ **resolved** ({line.severity.value})"
    text = f"{mark}{_DOT}{_md(line.summary, _SUMMARY_LIMIT)}"
    details = [_md(part, 200) for part in (line.service, line.resource) if part]
    details += [_md_link(link.href, link.label) for link in line.links]
    if details:
        text += "\n\n" + _DOT.join(details)
    return text


def _mentions(note: Notification) -> tuple[str, list[dict[str, Any]]]:
    """The mention line and its entities, one per recipient with a "teams" handle."""
    texts: list[str] = []
    entities: list[dict[str, Any]] = []
    for name, handle in note.handles("teams"):
        if any(ch in handle for ch in "\r\n<>"):
            continue
        shown = f"<at>{_name(name)}</at>"
        texts.append(shown)
        entities.append({"type": "mention", "text": shown, "mentioned": {"id": handle, "name": name}})
    return " ".join(texts), entities


def _actions(note: Notification) -> list[dict[str, Any]]:
    actions: list[dict[str, Any]] = []
    if note.acknowledge_url:
        actions.append({"type": "Action.OpenUrl", "title": "Acknowledge", "url": note.acknowledge_url,
                        "style": "positive"})
    if note.resolve_url:
        actions.append({"type": "Action.OpenUrl", "title": "Resolve", "url": note.resolve_url,
                        "style": "destructive"})
    for link in (*note.runbooks, *note.dashboards):
        actions.append({"type": "Action.OpenUrl", "title": _cut(link.label, 40), "url": link.href})
    return actions[:MAX_ACTIONS]


def render_card(action: Action, *, max_alerts: int = MAX_ALERTS) -> dict[str, Any]:
    """The Adaptive Card for `action` (pure), listing at most `max_alerts` alerts."""
    note = notification(action, max_alerts=max_alerts)
    body: list[dict[str, Any]] = [
        _text(_md(note.heading, _TITLE_LIMIT), size="Large", weight="Bolder",
              color=_COLOURS.get(note.kind, "default")),
    ]
    if note.reason:
        body.append(_text(_md(note.reason)))
    mention_text, entities = _mentions(note)
    if mention_text:
        body.append(_text(mention_text))
    body.append({"type": "FactSet",
                 "facts": [{"title": _md(fact.name, 100), "value": _md(fact.text, 500)} for fact in note.facts]})
    body.append(_text(f"**Alerts** ({note.alerts_firing} of {note.alerts_total} firing)", separator=True))
    body += [_text(_alert_text(line)) for line in note.alerts]
    if note.more_alerts:
        body.append(_text(f"…and {plural(note.more_alerts, 'more alert')}", isSubtle=True))
    body.append(_text(f"Incident {_md(note.incident_id, 200)}{_DOT}revision {note.revision}{_DOT}"
                      f"{format_time(note.at)}", isSubtle=True, size="Small"))
    msteams: dict[str, Any] = {"width": "Full"}
    if entities:
        msteams["entities"] = entities
    card: dict[str, Any] = {
        "$schema": CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "msteams": msteams,
        "body": body,
    }
    actions = _actions(note)
    if actions:
        card["actions"] = actions
    return card


def _envelope(card: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message",
            "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card}]}


def render(action: Action, *, max_alerts: int = MAX_ALERTS) -> dict[str, Any]:
    """The message posted for `action` (pure): the envelope around `render_card`, under 28 KB.

    When the message is too large, fewer alerts are listed (the rest counted) until it fits.
    """
    shown = max(0, max_alerts)
    while True:
        message = _envelope(render_card(action, max_alerts=shown))
        if shown == 0 or len(orjson.dumps(message)) <= MAX_BODY_BYTES:
            return message
        shown //= 2


def _legacy_ok(body: str) -> str | None:
    """A legacy connector answers `1`; anything else in a 2xx is an error it reports in the body."""
    text = body.strip()
    if text == "1":
        return None
    excerpt = " ".join(text.split())[:BODY_EXCERPT]
    return f"Teams connector answered 2xx with {excerpt!r} instead of '1'"


def _retryable_body(reason: str) -> bool:
    """An error body naming HTTP 429/5xx or throttling is temporary."""
    found = _HTTP_ERROR.search(reason)
    if found is not None:
        code = int(found.group(1))
        return code in (408, 429) or 500 <= code <= 599
    lowered = reason.lower()
    return "throttl" in lowered or "too many requests" in lowered or "rate limit" in lowered


@register_sink
class TeamsSink:
    """Delivers actions to a Microsoft Teams channel through a Workflows or connector webhook."""

    type_name: ClassVar[str] = "teams"
    config_model: ClassVar[type[SinkConfig]] = TeamsSinkConfig

    def __init__(self, config: TeamsSinkConfig) -> None:
        self.name = config.name
        self.config = config
        if config.endpoint == "auto":
            self._legacy = is_legacy_url(config.url.get_secret_value())
        else:
            self._legacy = config.endpoint == "connector"
        self._session = LazySession()

    def body(self, action: Action) -> bytes:
        """The JSON body posted for `action`."""
        return orjson.dumps(render(action))

    async def deliver(self, action: Action, idempotency_key: str) -> Outcome:
        try:
            body = self.body(action)
        except Exception as exc:  # a sink never raises: a rendering bug is a failed delivery
            return Outcome.failed(f"cannot render message: {type(exc).__name__}: {exc}")
        outcome = await post_json(
            self._session.get(),
            self.config.url.get_secret_value(),
            body,
            {"Content-Type": "application/json"},
            self.config.timeout,
            check_body=_legacy_ok if self._legacy else None,
        )
        status = outcome.status
        if (outcome.kind is OutcomeKind.FAILED and status is not None and 200 <= status <= 299
                and _retryable_body(outcome.reason)):
            # The connector's "200, but throttled": nothing was posted, so posting again is safe.
            return Outcome.retry(outcome.reason, None, status)
        return outcome

    async def close(self) -> None:
        await self._session.close()
