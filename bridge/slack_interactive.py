"""Slack interactivity: verify Slack's request signature and read Acknowledge/Resolve button clicks.

Request (Slack's "Interactivity & Shortcuts" Request URL): `POST` with
`Content-Type: application/x-www-form-urlencoded` and one form field, `payload`, holding a JSON
`block_actions` document (https://api.slack.com/interactivity/handling,
https://api.slack.com/reference/interaction-payloads/block-actions). The fields read:

    payload.type                    "block_actions" (anything else is refused)
    payload.user.id                 -> user_id (required)
    payload.user.username | .name   -> user_name (falls back to the user id)
    payload.team.id | user.team_id  -> team_id (required; `team` is null for org-wide installs)
    payload.actions[0].action_id    "alertbridge.acknowledge" | "alertbridge.resolve" -> action
    payload.actions[0].value        the incident id the button was rendered for -> incident_id
    payload.actions[0].action_ts    -> action_ts (Slack's "1548426417.840180" string)
    payload.response_url            -> response_url (https only), or None when absent

Signature (https://api.slack.com/authentication/verifying-requests-from-slack): Slack sends
`X-Slack-Request-Timestamp: <epoch seconds>` and `X-Slack-Signature: v0=<hex>`, where the hex is
HMAC-SHA256(signing secret, b"v0:" + timestamp + b":" + raw body). `verify_slack_request` recomputes
it over the raw body (never a re-encoded one), compares in constant time, and refuses timestamps
more than `tolerance` (5 minutes) from `now`, so a captured request cannot be replayed later.
Reasons, a closed set (`SlackSignatureReason`): "missing header", "malformed timestamp",
"stale timestamp", "bad signature".

Answering: Slack needs an HTTP 200 within 3 seconds or shows the user an error. The reply to the
person is `interaction_response(text)`, POSTed to the interaction's `response_url`: an ephemeral
message (only the clicking user sees it) that leaves the original notification in place.

The module is pure: no I/O, time passed in. Errors: `SlackSignatureInvalid` (an `AuthFailed`, 401)
and `bridge.errors.PayloadInvalid` (400) naming the field, e.g. `payload.actions[0].action_id`;
`parse_interaction` raises nothing else for any input.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final
from urllib.parse import parse_qs

import orjson

from bridge.errors import AuthFailed, PayloadInvalid
from bridge.links import LinkAction
from bridge.payload import optional_str

__all__ = [
    "ACTION_IDS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SlackInteraction",
    "SlackSignatureInvalid",
    "SlackSignatureReason",
    "action_id",
    "interaction_response",
    "parse_interaction",
    "slack_signature",
    "verify_slack_request",
]

SIGNATURE_HEADER: Final = "X-Slack-Signature"
TIMESTAMP_HEADER: Final = "X-Slack-Request-Timestamp"
#: Slack's replay window: requests stamped further than this from now are refused (seconds).
DEFAULT_TOLERANCE: Final = 300.0
#: Button `action_id` -> what it does; the Slack sink renders its buttons with these ids.
ACTION_IDS: Final[Mapping[str, LinkAction]] = {
    "alertbridge.acknowledge": "acknowledge",
    "alertbridge.resolve": "resolve",
}

_VERSION: Final = "v0"
_TIMESTAMP_RE: Final = re.compile(r"[0-9]{1,15}", re.ASCII)
_MAX_FIELDS: Final = 16  # Slack sends one field; bounds the work done on junk


class SlackSignatureReason(StrEnum):
    """Why a request was not accepted as coming from Slack."""

    MISSING_HEADER = "missing header"  # no X-Slack-Request-Timestamp or X-Slack-Signature
    MALFORMED_TIMESTAMP = "malformed timestamp"  # the timestamp header is not epoch seconds
    STALE_TIMESTAMP = "stale timestamp"  # more than `tolerance` from now: a replay, or a skewed clock
    BAD_SIGNATURE = "bad signature"  # wrong secret, altered body, or not from Slack


class SlackSignatureInvalid(AuthFailed):
    """The request's Slack signature was refused; `reason` is one of `SlackSignatureReason`."""

    code = "slack_signature_invalid"

    def __init__(self, reason: SlackSignatureReason) -> None:
        super().__init__(reason.value)
        self.reason = reason

    def to_dict(self) -> dict[str, object]:
        return {"error": self.code, "reason": self.reason.value}


@dataclass(frozen=True, slots=True)
class SlackInteraction:
    """One Acknowledge/Resolve button click, as read from a `block_actions` payload."""

    user_id: str
    user_name: str
    team_id: str
    action: LinkAction
    incident_id: str
    response_url: str | None
    action_ts: str


def action_id(action: LinkAction) -> str:
    """The button `action_id` for `action` (`alertbridge.acknowledge`, `alertbridge.resolve`)."""
    return f"alertbridge.{action}"


def slack_signature(signing_secret: bytes, timestamp: str, body: bytes) -> str:
    """`v0=<hex HMAC-SHA256(signing_secret, "v0:<timestamp>:" + body)>`, as Slack computes it."""
    basestring = f"{_VERSION}:{timestamp}:".encode() + body
    return f"{_VERSION}=" + hmac.new(signing_secret, basestring, hashlib.sha256).hexdigest()


def verify_slack_request(
    signing_secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> None:
    """Return when `body` was signed by Slack within `tolerance` of `now`; else `SlackSignatureInvalid`.

    Header names are matched case-insensitively; `body` must be the raw request body.
    """
    timestamp = _header(headers, TIMESTAMP_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    if timestamp is None or signature is None:
        raise SlackSignatureInvalid(SlackSignatureReason.MISSING_HEADER)
    if _TIMESTAMP_RE.fullmatch(timestamp) is None:
        raise SlackSignatureInvalid(SlackSignatureReason.MALFORMED_TIMESTAMP)
    if not abs(now - int(timestamp)) <= tolerance:  # written so that a NaN clock fails closed
        raise SlackSignatureInvalid(SlackSignatureReason.STALE_TIMESTAMP)
    expected = slack_signature(signing_secret, timestamp, body).encode("ascii")
    # compare bytes: compare_digest refuses str with non-ASCII characters (TypeError)
    if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
        raise SlackSignatureInvalid(SlackSignatureReason.BAD_SIGNATURE)


def parse_interaction(body: bytes) -> SlackInteraction:
    """The button click in a `block_actions` request body; `PayloadInvalid` naming the field otherwise."""
    payload = _payload_json(body)
    if not isinstance(payload, dict):
        raise PayloadInvalid("payload", "must be a JSON object")
    if payload.get("type") != "block_actions":
        raise PayloadInvalid("payload.type", f"must be 'block_actions', got {_show(payload.get('type'))}")

    user = payload.get("user")
    if not isinstance(user, dict):
        raise PayloadInvalid("payload.user", "missing: the interacting user is required")
    user_id = _text(user, "id", "payload.user.id")
    user_name = optional_str(user, "username", "payload.user.username") or optional_str(
        user, "name", "payload.user.name"
    ) or user_id

    team = payload.get("team")
    if team is not None and not isinstance(team, dict):
        raise PayloadInvalid("payload.team", "must be an object or null")
    team_id = (optional_str(team, "id", "payload.team.id") if team else None) or optional_str(
        user, "team_id", "payload.user.team_id"
    )
    if not team_id:
        raise PayloadInvalid("payload.team.id", "missing: neither team.id nor user.team_id is set")

    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions:
        raise PayloadInvalid("payload.actions", "must be a non-empty list")
    first = actions[0]
    if not isinstance(first, dict):
        raise PayloadInvalid("payload.actions[0]", "must be an object")
    raw_action_id = first.get("action_id")
    action = ACTION_IDS.get(raw_action_id) if isinstance(raw_action_id, str) else None
    if action is None:
        raise PayloadInvalid(
            "payload.actions[0].action_id",
            f"must be one of {', '.join(sorted(ACTION_IDS))}, got {_show(raw_action_id)}",
        )
    incident_id = _text(first, "value", "payload.actions[0].value")
    action_ts = _text(first, "action_ts", "payload.actions[0].action_ts")

    response_url = optional_str(payload, "response_url", "payload.response_url")
    if response_url is not None and not response_url.startswith("https://"):
        raise PayloadInvalid("payload.response_url", "must be an https URL")

    return SlackInteraction(
        user_id=user_id,
        user_name=user_name,
        team_id=team_id,
        action=action,
        incident_id=incident_id,
        response_url=response_url,
        action_ts=action_ts,
    )


def interaction_response(text: str) -> dict[str, Any]:
    """The message to POST to the interaction's `response_url` to answer the clicking user.

    `{"response_type": "ephemeral", "replace_original": false, "text": <text>}`: only that user sees
    it, and the notification it answers stays as it is (the Slack sink updates that one itself).
    `text` is plain text: `&`, `<` and `>` are escaped, so an incident title cannot mention
    `@channel` or forge a link.
    """
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return {"response_type": "ephemeral", "replace_original": False, "text": escaped}


# ---------------------------------------------------------------------------------------- helpers

def _header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header `name`, matched case-insensitively, or None when absent or not text."""
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == wanted), None)
    return value if isinstance(value, str) else None


def _payload_json(body: bytes) -> object:
    """The parsed JSON of the single `payload` form field of `body`."""
    if not isinstance(body, bytes | bytearray):
        raise PayloadInvalid("body", "must be bytes")
    try:
        text = bytes(body).decode("utf-8")
        form = parse_qs(
            text, keep_blank_values=True, strict_parsing=True, errors="strict", max_num_fields=_MAX_FIELDS
        )
    except ValueError:  # UnicodeDecodeError is a ValueError
        raise PayloadInvalid("body", "must be application/x-www-form-urlencoded UTF-8") from None
    values = form.get("payload")
    if not values:
        raise PayloadInvalid("payload", "missing: the form has no payload field")
    if len(values) > 1:
        raise PayloadInvalid("payload", "must appear once")
    try:
        return orjson.loads(values[0])
    except orjson.JSONDecodeError:
        raise PayloadInvalid("payload", "not valid JSON") from None


def _text(obj: dict[str, Any], key: str, field: str) -> str:
    """`obj[key]` as a non-empty string; `PayloadInvalid` naming `field` otherwise."""
    value = optional_str(obj, key, field)
    if not value:
        raise PayloadInvalid(field, "missing")
    return value


def _show(value: object) -> str:
    """A short, safe rendering of a vendor value for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
