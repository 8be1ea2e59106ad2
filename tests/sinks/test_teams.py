"""sinks/teams.py: the Adaptive Card message render() builds and how Teams' answers map to outcomes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from bridge.model import Action, ActionKind, Link, Recipient
from bridge.plugins import Outcome, OutcomeKind
from sinks.teams import MAX_BODY_BYTES, TeamsSink, TeamsSinkConfig, is_legacy_url, render, render_card
from tests.sinks.conftest import ALL_KINDS, FakeReceiver, Reply, deliver, make_action, make_alert

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "msteams"
DOCS_MESSAGE = json.loads((FIXTURES / "incoming_webhook_adaptive_card_message_docs.json").read_text())
ACK = "https://bridge.example/api/v1/links/ack-token"
RESOLVE = "https://bridge.example/api/v1/links/resolve-token"


def teams_config(**fields: object) -> TeamsSinkConfig:
    """A Teams config named `team-db`, validated from plain data as a loaded config file would be."""
    return TeamsSinkConfig.model_validate({"name": "team-db", "type": "teams", **fields})


def people(action: Action, *recipients: Recipient) -> Action:
    """`action` addressed to `recipients`, with both signed links."""
    return dataclasses.replace(action, recipients=recipients, links={"acknowledge": ACK, "resolve": RESOLVE})


def texts(card: dict[str, Any]) -> list[str]:
    """The texts of the card's TextBlocks, in order."""
    return [item["text"] for item in card["body"] if item["type"] == "TextBlock"]


def facts(card: dict[str, Any]) -> dict[str, str]:
    (fact_set,) = [item for item in card["body"] if item["type"] == "FactSet"]
    return {fact["title"]: fact["value"] for fact in fact_set["facts"]}


def actions(card: dict[str, Any]) -> list[tuple[str, str]]:
    assert all(action["type"] == "Action.OpenUrl" for action in card.get("actions", []))
    return [(action["title"], action["url"]) for action in card.get("actions", [])]


# ------------------------------------------------------------------------------------------ rendering

@ALL_KINDS
def test_envelope_matches_the_documented_message(kind: ActionKind) -> None:
    """The message has the docs' envelope: type message, one adaptive-card attachment, contentUrl null."""
    message = render(make_action(kind))
    assert set(message) == set(DOCS_MESSAGE)
    assert message["type"] == DOCS_MESSAGE["type"] == "message"
    (attachment,) = message["attachments"]
    (documented,) = DOCS_MESSAGE["attachments"]
    assert set(attachment) == set(documented)
    assert attachment["contentType"] == documented["contentType"]
    assert attachment["contentUrl"] is None and documented["contentUrl"] is None
    card = attachment["content"]
    assert (card["type"], card["$schema"]) == (documented["content"]["type"], documented["content"]["$schema"])
    assert card["version"] == "1.4"
    assert {item["type"] for item in card["body"]} <= {"TextBlock", "FactSet"}
    assert card["msteams"]["width"] == "Full"


def test_title_states_priority_and_headline() -> None:
    """The first TextBlock is the large, bold heading with priority, headline and title."""
    card = render_card(make_action(ActionKind.ESCALATE, escalation_level=2))
    title = card["body"][0]
    assert title["text"] == "⏫ P1 · [ESCALATED to tier 2] InstanceDown (payments)"
    assert (title["size"], title["weight"], title["color"]) == ("Large", "Bolder", "attention")
    assert card["body"][1]["text"] == "not acknowledged within 5m: escalated to tier 2 (bob)"


def test_facts_state_status_priority_root_cause_assignee_escalation_and_sla() -> None:
    """The FactSet holds status, priority and why, root cause, assignee, escalation level and SLA."""
    action = make_action(ActionKind.ASSIGN, assignee="alice", root_cause="payments-db", escalation_level=1,
                         sla={"acknowledge_by": 1709544423.123})
    assert facts(render_card(action)) == {
        "Status": "triggered",
        "Priority": "P1 (severity critical on tier-1 service payments)",
        "Pool": "databases",
        "Route": "db-oncall",
        "Alerts firing": "2 of 2",
        "Root cause": "payments-db",
        "Assignee": "alice",
        "Escalation": "tier 1",
        "Acknowledge by": "2024-03-04T09:27:03.123Z (in 15m)",
    }


def test_alerts_are_listed_with_links_and_capped_with_a_count() -> None:
    """Each alert is a TextBlock with severity, summary, where and links; past 10 the rest are counted."""
    card = render_card(make_action(n_alerts=25))
    alert_texts = [t for t in texts(card) if t.startswith("🔴 **critical**")]
    assert len(alert_texts) == 10
    assert alert_texts[0] == (
        "🔴 **critical** · Instance db-0 is down\n\npayments · db-0 · "
        "[source](http://prometheus.example.org:9090/graph?g0.expr=up%7Bn%3D0%7D&g0.tab=1) · "
        "[runbook](https://runbooks.example.org/instance-down#0)"
    )
    assert "…and 15 more alerts" in texts(card)


def test_mentions_recipients_with_a_teams_handle() -> None:
    """Recipients with a "teams" handle are mentioned: an `<at>` text and one mention entity each."""
    action = people(make_action(ActionKind.ESCALATE),
                    Recipient("Bob Smith", {"teams": "bob@contoso.example", "slack": "U2"}),
                    Recipient("carol", {"email": "carol@contoso.example"}),
                    Recipient("Dan <admin>", {"teams": "dan@contoso.example"}))
    card = render_card(action)
    assert "<at>Bob Smith</at> <at>Dan admin</at>" in texts(card)
    assert card["msteams"]["entities"] == [
        {"type": "mention", "text": "<at>Bob Smith</at>",
         "mentioned": {"id": "bob@contoso.example", "name": "Bob Smith"}},
        {"type": "mention", "text": "<at>Dan admin</at>",
         "mentioned": {"id": "dan@contoso.example", "name": "Dan <admin>"}},
    ]


def test_no_mentions_without_teams_handles() -> None:
    """Without any "teams" handle there is no mention line and no entities."""
    card = render_card(people(make_action(), Recipient("carol", {"email": "carol@contoso.example"})))
    assert "entities" not in card["msteams"]
    assert not any("<at>" in text for text in texts(card))


def test_open_url_actions_acknowledge_resolve_runbook_dashboard() -> None:
    """Actions open the signed links, then the runbook and dashboard links, at most six."""
    alert = make_alert(0, annotations={"runbook_url": "https://rb.example/x", "dashboard_url": "https://g.example/d"})
    card = render_card(people(make_action(alerts=(alert,))))
    assert actions(card) == [("Acknowledge", ACK), ("Resolve", RESOLVE), ("Runbook", "https://rb.example/x"),
                             ("Dashboard", "https://g.example/d")]
    styles = [action.get("style") for action in card["actions"]]
    assert styles == ["positive", "destructive", None, None]
    assert len(actions(render_card(people(make_action(n_alerts=12))))) == 6


@pytest.mark.parametrize(("kind", "expected"), [
    (ActionKind.OPEN, ["Acknowledge", "Resolve"]),
    (ActionKind.ACKNOWLEDGE, ["Resolve"]),
    (ActionKind.RESOLVE, []),
], ids=["triggered", "acknowledged", "resolved"])
def test_signed_link_actions_follow_the_status(kind: ActionKind, expected: list[str]) -> None:
    """Acknowledge is offered only while triggered, Resolve until resolved."""
    card = render_card(people(make_action(kind, alerts=(make_alert(0, annotations={}),))))
    assert [title for title, _ in actions(card)] == expected


def test_alert_text_cannot_link_format_or_mention() -> None:
    """Markdown links, emphasis and `<at>` tags from alerts are escaped, so they show literally."""
    alert = make_alert(0, summary="[click](javascript:alert(1)) *now* <at>Eve</at>",
                       links=(Link("javascript:alert(1)", "x"), Link("https://e.example/a b)c", "a]b")),
                       annotations={})
    card = render_card(make_action(alerts=(alert,)))
    (text,) = [t for t in texts(card) if t.startswith("🔴 **critical**")]
    assert text.startswith("🔴 **critical** · [click]\\(javascript:alert(1)) \\*now\\* \\<at\\>Eve\\</at\\>\n")
    assert "](javascript" not in text  # neither the summary's link nor the javascript: Link survives
    assert "[a)b](https://e.example/a%20b%29c)" in text


def test_oversized_message_lists_fewer_alerts_to_fit_28_kb() -> None:
    """A message that would exceed 28 KB lists fewer alerts and counts the rest."""
    alerts = tuple(make_alert(i, summary="s" * 600, service="v" * 300) for i in range(40))
    body = orjson.dumps(render(make_action(alerts=alerts)))
    assert len(body) <= MAX_BODY_BYTES
    assert "more alerts" in body.decode()


# ------------------------------------------------------------------------------------------ round trip

def test_round_trip_posts_the_rendered_message(receiver: FakeReceiver) -> None:
    """The sink POSTs render()'s message as JSON to the webhook URL; a Workflows 202 is delivered."""
    receiver.script(Reply(202, ""))
    action = people(make_action(), Recipient("Bob", {"teams": "bob@contoso.example"}))
    assert deliver(TeamsSink(teams_config(url=receiver.url)), action) == Outcome.delivered(202)
    request = receiver.requests[0]
    assert (request.method, request.path) == ("POST", "/hooks/T000/B000/secret-token")
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == render(action)


TEAMS_ANSWERS = [
    ("workflows-202-empty", "auto", Reply(202, ""), OutcomeKind.DELIVERED),
    ("workflows-200-any-body", "auto", Reply(200, "accepted"), OutcomeKind.DELIVERED),
    ("connector-1", "connector", Reply(200, "1"), OutcomeKind.DELIVERED),
    ("connector-throttled-in-200", "connector",
     Reply(200, "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 with "
                "ContextId tcid=0,server=msgapi-production-eus-azsc2-4-170,cv=deadbeef"), OutcomeKind.RETRY),
    ("connector-5xx-in-200", "connector",
     Reply(200, "Microsoft Teams endpoint returned HTTP error 503"), OutcomeKind.RETRY),
    ("connector-other-error-in-200", "connector", Reply(200, "Summary or Text is required."), OutcomeKind.FAILED),
    ("connector-empty-200", "connector", Reply(200, ""), OutcomeKind.FAILED),
    ("rate-limited-429", "auto", Reply(429, "Too Many Requests", {"Retry-After": "30"}), OutcomeKind.RETRY),
    ("bad-request-400", "auto",
     Reply(400, '{"error":{"code":"TriggerInputSchemaMismatch","message":"bad"}}'), OutcomeKind.FAILED),
    ("not-found-404", "auto", Reply(404, ""), OutcomeKind.FAILED),
    ("server-error-502", "auto", Reply(502, "Bad Gateway"), OutcomeKind.RETRY),
]


@pytest.mark.parametrize(("endpoint", "reply", "kind"), [a[1:] for a in TEAMS_ANSWERS],
                         ids=[a[0] for a in TEAMS_ANSWERS])
def test_teams_answers(receiver: FakeReceiver, endpoint: str, reply: Reply, kind: OutcomeKind) -> None:
    """Workflows succeed on any 2xx; a connector needs "1" and its in-body throttling is a retry."""
    receiver.script(reply)
    outcome = deliver(TeamsSink(teams_config(url=receiver.url, endpoint=endpoint)), make_action())
    assert (outcome.kind, outcome.status) == (kind, reply.status)
    if reply.status == 429:
        assert outcome.retry_after == 30.0
    if reply.status == 400:
        assert "TriggerInputSchemaMismatch" in outcome.reason


def test_refused_connection_is_retry(closed_url: str) -> None:
    """A refused connection is a retry, without the (secret) URL in the reason."""
    outcome = deliver(TeamsSink(teams_config(url=closed_url)), make_action())
    assert outcome.kind is OutcomeKind.RETRY
    assert "secret-token" not in outcome.reason


# --------------------------------------------------------------------------------------------- config

@pytest.mark.parametrize(("url", "legacy"), [
    ("https://contoso.webhook.office.com/webhookb2/abc@def/IncomingWebhook/x/y", True),
    ("https://outlook.office.com/webhook/abc/IncomingWebhook/x/y", True),
    ("https://prod-00.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=x", False),
    ("https://default0a.environment.api.powerplatform.com/powerautomate/automations/direct/x?sig=y", False),
    ("https://webhook.office.com.evil.example/x", False),
], ids=["connector", "old-connector", "logic-apps", "power-platform", "lookalike-host"])
def test_is_legacy_url(url: str, legacy: bool) -> None:
    """Only Office 365 connector hosts are treated as legacy connectors."""
    assert is_legacy_url(url) is legacy


URLS = [
    ("https", "https://prod-00.westus.logic.azure.com/workflows/abc?sig=s3cret", None),
    ("http-loopback", "http://127.0.0.1:9/workflows/abc?sig=s3cret", None),
    ("http-remote", "http://prod-00.westus.logic.azure.com/workflows/abc?sig=s3cret", "must be https"),
    ("no-scheme", "prod-00.westus.logic.azure.com/workflows/abc?sig=s3cret", "must be an https URL"),
]


@pytest.mark.parametrize(("url", "problem"), [u[1:] for u in URLS], ids=[u[0] for u in URLS])
def test_url_must_be_https(url: str, problem: str | None) -> None:
    """The webhook URL must be https (http only on loopback); the error never echoes the URL."""
    if problem is None:
        assert teams_config(url=url).url.get_secret_value() == url
        return
    with pytest.raises(ValidationError) as caught:
        teams_config(url=url)
    assert [e["loc"] for e in caught.value.errors()] == [("url",)]
    assert problem in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_url_is_secret_in_repr() -> None:
    """The URL is a credential: hidden in the config's repr."""
    assert "s3cret" not in repr(teams_config(url="https://x.logic.azure.com/workflows/abc?sig=s3cret"))
