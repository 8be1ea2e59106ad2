"""Slack interactivity: request signature verification and block_actions button clicks."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import AuthFailed, PayloadInvalid
from bridge.slack_interactive import (
    ACTION_IDS,
    SlackInteraction,
    SlackSignatureInvalid,
    SlackSignatureReason,
    action_id,
    interaction_response,
    parse_interaction,
    slack_signature,
    verify_slack_request,
)

# Slack's worked example from "Verifying requests from Slack"
# (https://api.slack.com/authentication/verifying-requests-from-slack), a slash-command body; also
# reproduced as the test vector of the slack-verify package
# (https://hackage.haskell.org/package/slack-verify-0.1.0.0/src/README.md).
SLACK_SECRET = b"8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TIMESTAMP = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
NOW = float(SLACK_TIMESTAMP) + 2


def headers(timestamp: str = SLACK_TIMESTAMP, signature: str = SLACK_SIGNATURE) -> dict[str, str]:
    return {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature}


def reason_of(hdrs: dict[str, str], body: bytes = SLACK_BODY, now: float = NOW,
              secret: bytes = SLACK_SECRET) -> SlackSignatureReason:
    with pytest.raises(SlackSignatureInvalid) as caught:
        verify_slack_request(secret, hdrs, body, now)
    return caught.value.reason


# --------------------------------------------------------------------------------------- signature

def test_documented_test_vector() -> None:
    """Slack's documented example signature is reproduced and verifies."""
    assert slack_signature(SLACK_SECRET, SLACK_TIMESTAMP, SLACK_BODY) == SLACK_SIGNATURE
    verify_slack_request(SLACK_SECRET, headers(), SLACK_BODY, NOW)


def test_header_names_are_case_insensitive() -> None:
    """Lower-case header names (as some servers and proxies deliver them) verify too."""
    verify_slack_request(SLACK_SECRET, {k.lower(): v for k, v in headers().items()}, SLACK_BODY, NOW)


@pytest.mark.parametrize(
    ("offset", "fresh"),
    [(0, True), (300, True), (-300, True), (301, False), (-301, False), (86_400, False)],
    ids=["same-second", "5min-late", "5min-early", "just-too-late", "just-too-early", "a-day-late"],
)
def test_stale_timestamp(offset: float, fresh: bool) -> None:
    """A request stamped more than 5 minutes from now, either way, is refused as stale (a replay)."""
    now = float(SLACK_TIMESTAMP) + offset
    if fresh:
        verify_slack_request(SLACK_SECRET, headers(), SLACK_BODY, now)
    else:
        assert reason_of(headers(), now=now) is SlackSignatureReason.STALE_TIMESTAMP


def test_nan_clock_fails_closed() -> None:
    """A NaN `now` makes every request stale rather than always fresh."""
    assert reason_of(headers(), now=float("nan")) is SlackSignatureReason.STALE_TIMESTAMP


@pytest.mark.parametrize("missing", ["X-Slack-Request-Timestamp", "X-Slack-Signature"])
def test_missing_headers(missing: str) -> None:
    """A request without the timestamp or the signature header is refused as missing a header."""
    hdrs = headers()
    del hdrs[missing]
    assert reason_of(hdrs) is SlackSignatureReason.MISSING_HEADER


def test_no_headers_at_all() -> None:
    """A request with no headers is refused as missing a header."""
    assert reason_of({}) is SlackSignatureReason.MISSING_HEADER


@pytest.mark.parametrize("timestamp", ["", "abc", "1531420618.5", "-1531420618", " 1531420618", "١٥٣١٤٢٠٦١٨"],
                         ids=["empty", "letters", "fraction", "negative", "space", "arabic-digits"])
def test_malformed_timestamp(timestamp: str) -> None:
    """A timestamp header that is not plain epoch seconds is refused as malformed."""
    assert reason_of(headers(timestamp=timestamp)) is SlackSignatureReason.MALFORMED_TIMESTAMP


@pytest.mark.parametrize(
    ("hdrs", "body", "secret"),
    [
        (headers(), SLACK_BODY + b"&x=1", SLACK_SECRET),
        (headers(), SLACK_BODY, b"another-signing-secret"),
        (headers(signature=SLACK_SIGNATURE.upper()), SLACK_BODY, SLACK_SECRET),
        (headers(signature=SLACK_SIGNATURE[3:]), SLACK_BODY, SLACK_SECRET),
        (headers(signature="v1=" + SLACK_SIGNATURE[3:]), SLACK_BODY, SLACK_SECRET),
        (headers(signature="v0=\u00e9\u00e9"), SLACK_BODY, SLACK_SECRET),
        (headers(signature="\ud800"), SLACK_BODY, SLACK_SECRET),
        (headers(timestamp="1531420619"), SLACK_BODY, SLACK_SECRET),
    ],
    ids=["altered-body", "wrong-secret", "upper-case-hex", "no-version", "other-version", "non-ascii",
         "lone-surrogate", "other-timestamp"],
)
def test_bad_signature(hdrs: dict[str, str], body: bytes, secret: bytes) -> None:
    """An altered body or timestamp, another secret, or a signature not exactly Slack's is refused as bad."""
    assert reason_of(hdrs, body=body, secret=secret) is SlackSignatureReason.BAD_SIGNATURE


def test_signature_error_is_an_auth_failure() -> None:
    """SlackSignatureInvalid is an AuthFailed (401) carrying its reason."""
    error = SlackSignatureInvalid(SlackSignatureReason.STALE_TIMESTAMP)
    assert isinstance(error, AuthFailed) and error.status == 401
    assert error.to_dict() == {"error": "slack_signature_invalid", "reason": "stale timestamp"}


# ------------------------------------------------------------------------------------------ payload

# A block_actions payload for a button click, shaped after Slack's reference example in
# https://api.slack.com/reference/interaction-payloads/block-actions (fields: type, team, user,
# api_app_id, token, container, trigger_id, channel, message, response_url, actions[] with action_id,
# block_id, text, value, type, action_ts) and the interactivity guide
# https://api.slack.com/interactivity/handling (form field `payload`). Ids are made up.
BLOCK_ACTIONS: dict[str, Any] = {
    "type": "block_actions",
    "team": {"id": "T9TK3CUKW", "domain": "example"},
    "user": {"id": "UA8RXUSPL", "username": "jtorrance", "name": "jtorrance", "team_id": "T9TK3CUKW"},
    "api_app_id": "AABA1ABCD",
    "token": "9s8d9as89d8as9d8as989",
    "container": {"type": "message", "message_ts": "1548261231.000200", "channel_id": "CBR2V3XEX",
                  "is_ephemeral": False},
    "trigger_id": "12321423423.333649436676.d8c1bb837935619ccad0f624c448ffb3",
    "channel": {"id": "CBR2V3XEX", "name": "incidents"},
    "enterprise": None,
    "is_enterprise_install": False,
    "message": {
        "type": "message",
        "subtype": "bot_message",
        "bot_id": "BAH5CA16Z",
        "text": "[P1] Disk full on db-1",
        "ts": "1548261231.000200",
        "blocks": [{"type": "actions", "block_id": "alertbridge.actions", "elements": [
            {"type": "button", "action_id": "alertbridge.acknowledge", "value": "01HV4K8Z9Q2M7XTA",
             "text": {"type": "plain_text", "text": "Acknowledge", "emoji": True}},
            {"type": "button", "action_id": "alertbridge.resolve", "value": "01HV4K8Z9Q2M7XTA",
             "text": {"type": "plain_text", "text": "Resolve", "emoji": True}},
        ]}],
    },
    "state": {"values": {}},
    "response_url": "https://hooks.slack.com/actions/AABA1ABCD/1232321423432/D09sSasdasdAS9091209",
    "actions": [{
        "action_id": "alertbridge.acknowledge",
        "block_id": "alertbridge.actions",
        "text": {"type": "plain_text", "text": "Acknowledge", "emoji": True},
        "value": "01HV4K8Z9Q2M7XTA",
        "style": "primary",
        "type": "button",
        "action_ts": "1548426417.840180",
    }],
}


DELETE = object()  # sentinel for `changed`: remove the key instead of setting it


def form(payload: object) -> bytes:
    """The request body Slack sends: `payload=<JSON>`, form-encoded."""
    return urlencode({"payload": json.dumps(payload)}).encode()


def changed(path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    """BLOCK_ACTIONS with the value at `path` replaced (or deleted when `value` is DELETE)."""
    doc = copy.deepcopy(BLOCK_ACTIONS)
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


def test_parses_a_realistic_block_actions_payload() -> None:
    """A signed, form-encoded Acknowledge click verifies and parses into who did what to which incident."""
    body = form(BLOCK_ACTIONS)
    now = 1_548_426_418.0
    timestamp = str(int(now))
    secret = b"slack-signing-secret"
    verify_slack_request(secret, headers(timestamp, slack_signature(secret, timestamp, body)), body, now)
    assert parse_interaction(body) == SlackInteraction(
        user_id="UA8RXUSPL",
        user_name="jtorrance",
        team_id="T9TK3CUKW",
        action="acknowledge",
        incident_id="01HV4K8Z9Q2M7XTA",
        response_url="https://hooks.slack.com/actions/AABA1ABCD/1232321423432/D09sSasdasdAS9091209",
        action_ts="1548426417.840180",
    )


def test_resolve_button() -> None:
    """The Resolve button's action_id parses to the resolve action."""
    assert parse_interaction(form(changed(("actions", 0, "action_id"), "alertbridge.resolve"))).action == "resolve"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("user", "username"), DELETE, "jtorrance"),
        (("user", "username"), None, "jtorrance"),
    ],
    ids=["no-username-uses-name", "null-username-uses-name"],
)
def test_user_name_falls_back(path: tuple[str, ...], value: object, expected: str) -> None:
    """Without `username` the user's `name` is used."""
    assert parse_interaction(form(changed(path, value))).user_name == expected


def test_user_name_falls_back_to_id_and_team_to_user() -> None:
    """With no names the user id is the name; with `team: null` (org-wide install) the user's team_id is used."""
    doc = changed(("team",), None)
    del doc["user"]["username"], doc["user"]["name"]
    parsed = parse_interaction(form(doc))
    assert (parsed.user_name, parsed.team_id) == ("UA8RXUSPL", "T9TK3CUKW")


def test_response_url_is_optional() -> None:
    """A payload without response_url (e.g. from a Home tab) parses with response_url None."""
    assert parse_interaction(form(changed(("response_url",), DELETE))).response_url is None


def test_action_ids_match_the_helper() -> None:
    """The recognised action_ids are exactly the ones `action_id()` renders buttons with."""
    assert set(ACTION_IDS) == {action_id("acknowledge"), action_id("resolve")}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (json.dumps(BLOCK_ACTIONS).encode(), "body"),
        (b"\xff\xfe", "body"),
        (b"payload=%ff", "body"),
        (b"", "payload"),
        (b"text=hello", "payload"),
        (form(BLOCK_ACTIONS) + b"&" + form(BLOCK_ACTIONS), "payload"),
        (b"payload=%7Bnot+json", "payload"),
        (form([BLOCK_ACTIONS]), "payload"),
        (form(changed(("type",), "view_submission")), "payload.type"),
        (form(changed(("user",), DELETE)), "payload.user"),
        (form(changed(("user",), "UA8RXUSPL")), "payload.user"),
        (form(changed(("user", "id"), DELETE)), "payload.user.id"),
        (form(changed(("user", "id"), 42)), "payload.user.id"),
        (form(changed(("user", "username"), ["x"])), "payload.user.username"),
        (form(changed(("team",), "T9TK3CUKW")), "payload.team"),
        (form({**changed(("team",), None), "user": {"id": "U1"}}), "payload.team.id"),
        (form(changed(("actions",), [])), "payload.actions"),
        (form(changed(("actions",), {"action_id": "alertbridge.resolve"})), "payload.actions"),
        (form(changed(("actions", 0), "alertbridge.resolve")), "payload.actions[0]"),
        (form(changed(("actions", 0, "action_id"), "approve_request")), "payload.actions[0].action_id"),
        (form(changed(("actions", 0, "action_id"), None)), "payload.actions[0].action_id"),
        (form(changed(("actions", 0, "value"), DELETE)), "payload.actions[0].value"),
        (form(changed(("actions", 0, "value"), "")), "payload.actions[0].value"),
        (form(changed(("actions", 0, "action_ts"), 1548426417.84)), "payload.actions[0].action_ts"),
        (form(changed(("response_url",), "http://hooks.slack.com/x")), "payload.response_url"),
        (form(changed(("response_url",), 7)), "payload.response_url"),
    ],
    ids=["json-not-form", "not-utf8", "percent-not-utf8", "empty", "no-payload", "two-payloads", "bad-json",
         "payload-list", "wrong-type", "no-user", "user-string", "no-user-id", "user-id-int", "username-list",
         "team-string", "no-team-anywhere", "no-actions", "actions-object", "action-string", "unknown-action-id",
         "null-action-id", "no-value", "empty-value", "action-ts-number", "http-response-url", "response-url-int"],
)
def test_invalid_payloads_name_the_field(body: bytes, field: str) -> None:
    """Anything but a block_actions click on one of our buttons is PayloadInvalid naming the offending field."""
    with pytest.raises(PayloadInvalid) as caught:
        parse_interaction(body)
    assert caught.value.field == field
    assert caught.value.status == 400


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
FIELDS = ["type", "user", "id", "username", "name", "team", "team_id", "actions", "action_id", "value",
          "action_ts", "response_url", "block_actions", "alertbridge.acknowledge", "alertbridge.resolve"]
SHAPED = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from(FIELDS) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), children, max_size=6),
    max_leaves=30,
)
BODIES = (
    st.binary(max_size=300)
    | st.text(max_size=200).map(str.encode)
    | JSON_VALUES.map(form)
    | SHAPED.map(form)
    | st.builds(lambda path, value: form(changed(path, value)),
                st.sampled_from([("user",), ("user", "id"), ("team",), ("actions",), ("actions", 0),
                                 ("actions", 0, "action_id"), ("actions", 0, "value"), ("response_url",),
                                 ("type",)]),
                JSON_VALUES)
)


@settings(max_examples=400, deadline=None)
@given(BODIES)
def test_fuzz_any_body_gives_an_interaction_or_payload_invalid(body: bytes) -> None:
    """Any bytes parse to a SlackInteraction or raise PayloadInvalid, never anything else."""
    try:
        parsed = parse_interaction(body)
    except PayloadInvalid as error:
        assert error.field
        return
    assert isinstance(parsed, SlackInteraction) and parsed.action in ("acknowledge", "resolve")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=30), st.text(max_size=80), max_size=4), st.binary(max_size=100))
def test_fuzz_verify_raises_only_signature_invalid(hdrs: dict[str, str], body: bytes) -> None:
    """Random headers and bodies are refused with SlackSignatureInvalid, never another exception."""
    with pytest.raises(SlackSignatureInvalid):
        verify_slack_request(SLACK_SECRET, hdrs, body, NOW)


# ----------------------------------------------------------------------------------------- response

def test_interaction_response_is_ephemeral_and_escaped() -> None:
    """The reply is an ephemeral message that keeps the original and cannot mention @channel."""
    assert interaction_response("Acknowledged <!channel> & co") == {
        "response_type": "ephemeral",
        "replace_original": False,
        "text": "Acknowledged &lt;!channel&gt; &amp; co",
    }
