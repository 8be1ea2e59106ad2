"""sinks/slack.py: the Block Kit message render() builds, Slack's limits, and a real round trip."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.model import Action, ActionKind, AlertStatus, Link, Recipient, Severity
from bridge.plugins import Outcome, OutcomeKind
from sinks.slack import SlackSink, SlackSinkConfig, render
from tests.sinks.conftest import ALL_KINDS, T0, FakeReceiver, Reply, deliver, make_action, make_alert

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slack"
BLOCK_TYPES = {"header", "section", "divider", "context", "actions"}
ACK = "https://bridge.example/api/v1/links/ack-token"
RESOLVE = "https://bridge.example/api/v1/links/resolve-token"


def units(text: str) -> int:
    """Length in UTF-16 code units, the stricter way Slack may count characters."""
    return len(text.encode("utf-16-le")) // 2


def assert_text_object(obj: dict[str, Any], types: set[str], limit: int) -> None:
    assert set(obj) <= {"type", "text", "emoji", "verbatim"}
    assert obj["type"] in types
    assert isinstance(obj["text"], str) and obj["text"]
    assert units(obj["text"]) <= limit


def assert_block_kit(message: dict[str, Any]) -> None:
    """The message is well-formed Block Kit within Slack's documented limits."""
    assert isinstance(message["text"], str) and message["text"]
    blocks = message["blocks"]
    assert 1 <= len(blocks) <= 50
    for block in blocks:
        kind = block["type"]
        assert kind in BLOCK_TYPES
        if kind == "header":
            assert set(block) == {"type", "text"}
            assert_text_object(block["text"], {"plain_text"}, 150)
        elif kind == "section":
            assert set(block) <= {"type", "text", "fields"} and ({"text", "fields"} & set(block))
            if "text" in block:
                assert_text_object(block["text"], {"mrkdwn", "plain_text"}, 3000)
            for item in block.get("fields", []):
                assert_text_object(item, {"mrkdwn", "plain_text"}, 2000)
            assert len(block.get("fields", [])) <= 10
        elif kind == "context":
            assert set(block) == {"type", "elements"}
            assert 1 <= len(block["elements"]) <= 10
            for item in block["elements"]:
                assert_text_object(item, {"mrkdwn", "plain_text"}, 2000)
        elif kind == "actions":
            assert set(block) == {"type", "elements"}
            assert 1 <= len(block["elements"]) <= 25
            for button in block["elements"]:
                assert set(button) == {"type", "text", "style", "url", "action_id", "value"}
                assert button["type"] == "button" and button["style"] in {"primary", "danger"}
                assert_text_object(button["text"], {"plain_text"}, 75)
                assert len(button["url"]) <= 3000 and len(button["value"]) <= 2000
                assert len(button["action_id"]) <= 255
        else:
            assert block == {"type": "divider"}


def blocks_of(message: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [b for b in message["blocks"] if b["type"] == kind]


def alert_sections(message: dict[str, Any]) -> list[str]:
    """The texts of the per-alert sections (every section after the divider)."""
    after = message["blocks"][message["blocks"].index({"type": "divider"}) + 1:]
    return [b["text"]["text"] for b in after if b["type"] == "section"]


def slack_config(**fields: object) -> SlackSinkConfig:
    """A Slack config named `team-db`, validated from plain data as a loaded config file would be."""
    return SlackSinkConfig.model_validate({"name": "team-db", "type": "slack", **fields})


@ALL_KINDS
def test_render_is_valid_block_kit(kind: ActionKind) -> None:
    """Every action kind renders to well-formed Block Kit with a text fallback."""
    assert_block_kit(render(make_action(kind)))


HEADERS = [
    (ActionKind.OPEN, "🔴 P1 · [FIRING] InstanceDown (payments)"),
    (ActionKind.UPDATE, "🟠 P1 · [UPDATE: 2 alerts firing] InstanceDown (payments)"),
    (ActionKind.ACKNOWLEDGE, "👀 P1 · [ACKNOWLEDGED by alice] InstanceDown (payments)"),
    (ActionKind.RESOLVE, "✅ P1 · [RESOLVED] InstanceDown (payments)"),
]


@pytest.mark.parametrize(("kind", "header"), HEADERS, ids=[k.value for k, _ in HEADERS])
def test_header_says_kind_priority_and_title(kind: ActionKind, header: str) -> None:
    """The header reads emoji, priority, what happened and the title; the text fallback starts the same."""
    message = render(make_action(kind))
    expected = {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}}
    assert message["blocks"][0] == expected
    assert message["text"].startswith(header)


def test_update_header_counts_one_alert_in_singular() -> None:
    """An update with one firing alert says "1 alert firing"."""
    message = render(make_action(ActionKind.UPDATE, n_alerts=1))
    assert "[UPDATE: 1 alert firing]" in message["blocks"][0]["text"]["text"]


@ALL_KINDS
def test_summary_section_has_status_priority_pool_route_and_count(kind: ActionKind) -> None:
    """The first section states status, priority with its reason, pool, route and alerts firing."""
    action = make_action(kind)
    section = blocks_of(render(action), "section")[0]
    facts = "\n".join(f["text"] for f in section["fields"])
    incident = action.incident
    for expected in (f"*Status*\n{incident.status.value}", "*Priority*\nP1 (severity critical on tier-1",
                     "*Pool*\ndatabases", "*Route*\ndb-oncall",
                     f"*Alerts firing*\n{len(incident.firing)} of {len(incident.alerts)}"):
        assert expected in facts
    assert section["text"]["text"] == action.reason


def test_acknowledged_status_names_who() -> None:
    """An acknowledged incident's status says who acknowledged it."""
    section = blocks_of(render(make_action(ActionKind.ACKNOWLEDGE)), "section")[0]
    assert "*Status*\nacknowledged by alice" in [f["text"] for f in section["fields"]]


def test_resolve_shows_duration_and_resolved_alerts() -> None:
    """A resolve shows how long the incident lasted and marks each alert resolved."""
    message = render(make_action(ActionKind.RESOLVE))
    facts = [f["text"] for f in blocks_of(message, "section")[0]["fields"]]
    assert "*Duration*\n5m" in facts
    assert all(text.startswith("✅ *resolved* (critical)") for text in alert_sections(message))


def test_alert_lines_carry_severity_summary_service_resource_and_links() -> None:
    """Each alert shows severity, summary, service/resource and its links as mrkdwn links."""
    text = alert_sections(render(make_action()))[0]
    assert text.startswith("🔴 *critical* · Instance db-0 is down\n")
    assert "`payments` · `db-0`" in text
    assert "<http://prometheus.example.org:9090/graph?g0.expr=up%7Bn%3D0%7D&g0.tab=1|source>" in text
    assert "<https://runbooks.example.org/instance-down#0|runbook>" in text


def test_alerts_are_capped_at_ten_with_a_count() -> None:
    """25 alerts list the first 10 and say "…and 15 more alerts"."""
    message = render(make_action(n_alerts=25))
    assert_block_kit(message)
    assert len(alert_sections(message)) == 10
    contexts = [b["elements"][0]["text"] for b in blocks_of(message, "context")]
    assert "…and 15 more alerts" in contexts


def test_firing_and_most_severe_alerts_come_first() -> None:
    """The listed alerts are firing before resolved, critical before warning."""
    alerts = (
        make_alert(0, severity=Severity.WARNING, summary="warn"),
        make_alert(1, status=AlertStatus.RESOLVED, summary="done"),
        make_alert(2, severity=Severity.CRITICAL, summary="crit"),
    )
    texts = alert_sections(render(make_action(ActionKind.UPDATE, alerts=alerts)))
    assert [t.split("\n")[0].rsplit(" · ", 1)[1] for t in texts] == ["crit", "warn", "done"]


def test_context_names_incident_revision_and_time() -> None:
    """The last block gives the incident id, revision and the action time (RFC 3339 fallback)."""
    context = render(make_action(ActionKind.UPDATE))["blocks"][-1]
    text = context["elements"][0]["text"]
    assert "Incident `inc-7f3a`" in text and "revision 3" in text
    assert "<!date^1709543523^{date_short_pretty} {time_secs}|2024-03-04T09:12:03.123Z>" in text


def test_long_texts_are_truncated_within_limits() -> None:
    """Oversized title, reason and summary are cut with "…" to Slack's limits."""
    action = make_action(title="T" * 1000, reason="r" * 5000,
                         alerts=(make_alert(0, summary="s" * 5000, service="v" * 4000),))
    message = render(action)
    assert_block_kit(message)
    header = message["blocks"][0]["text"]["text"]
    assert units(header) == 150 and header.endswith("…")
    assert blocks_of(message, "section")[0]["text"]["text"].endswith("…")


def test_alert_text_cannot_mention_or_break_markup() -> None:
    """`<`, `>` and `&` from alerts are escaped, so `<!channel>` does not notify anyone."""
    alert = make_alert(0, summary="<!channel> disk > 90% & rising",
                       links=(Link("javascript:alert(1)", "x"), Link("https://e.example/a|b>c", "a|b")))
    text = alert_sections(render(make_action(alerts=(alert,))))[0]
    assert "&lt;!channel&gt; disk &gt; 90% &amp; rising" in text
    assert "javascript:" not in text
    assert "<https://e.example/a%7Cb%3Ec|a/b>" in text


def test_overrides_are_included_only_when_configured() -> None:
    """channel, username and icon_emoji appear exactly when given."""
    assert {"channel", "username", "icon_emoji"}.isdisjoint(render(make_action()))
    message = render(make_action(), channel="#alerts", username="alertbridge", icon_emoji=":rotating_light:")
    assert (message["channel"], message["username"], message["icon_emoji"]) == (
        "#alerts", "alertbridge", ":rotating_light:")


@pytest.mark.parametrize("state", ["firing", "resolved"])
def test_general_shape_matches_alertmanager_capture(state: str) -> None:
    """Like Alertmanager's captured post: a JSON object with channel, username and a human headline."""
    stem = f"captured_alertmanager_v0.25_incoming_webhook_{state}"
    captured = json.loads((FIXTURES / f"{stem}.json").read_text())
    captured_request = json.loads((FIXTURES / f"{stem}.request.json").read_text())
    kind = ActionKind.OPEN if state == "firing" else ActionKind.RESOLVE
    sink = SlackSink(slack_config(url="https://hooks.slack.com/services/T/B/x", channel="#alerts",
                                  username="Alertmanager"))
    ours = json.loads(sink.body(make_action(kind)))
    # Every top-level field Alertmanager sends, except the legacy attachments we replace by blocks.
    assert set(captured) - {"attachments"} <= set(ours)
    assert (ours["channel"], ours["username"]) == (captured["channel"], captured["username"])
    # The same headline convention: the state in brackets, in the notification text.
    headline = "[FIRING" if state == "firing" else "[RESOLVED"
    assert captured["attachments"][0]["fallback"].startswith(headline)
    assert headline in ours["text"]
    assert captured_request["headers"]["Content-Type"] == "application/json"


@ALL_KINDS
def test_round_trip_posts_the_rendered_message(receiver: FakeReceiver, kind: ActionKind) -> None:
    """The sink POSTs render()'s message as JSON to the webhook URL and Slack's "ok" is delivered."""
    receiver.script(Reply(200, "ok"))
    sink = SlackSink(slack_config(url=receiver.url, channel="#db", username="alertbridge"))
    action = make_action(kind)
    assert deliver(sink, action) == Outcome.delivered(200)
    request = receiver.requests[0]
    assert (request.method, request.path) == ("POST", "/hooks/T000/B000/secret-token")
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == render(action, channel="#db", username="alertbridge")


SLACK_ANSWERS = [
    ("ok", 200, "ok", OutcomeKind.DELIVERED),
    ("empty-2xx", 200, "", OutcomeKind.DELIVERED),
    ("html-2xx", 200, "<html>login</html>", OutcomeKind.FAILED),
    ("invalid_payload", 400, "invalid_payload", OutcomeKind.FAILED),
    ("action_prohibited", 403, "action_prohibited", OutcomeKind.FAILED),
    ("channel_not_found", 404, "channel_not_found", OutcomeKind.FAILED),
    ("channel_is_archived", 410, "channel_is_archived", OutcomeKind.FAILED),
    ("rollup_error", 500, "rollup_error", OutcomeKind.RETRY),
    ("rate_limited", 429, "rate_limited", OutcomeKind.RETRY),
]


@pytest.mark.parametrize(("status", "body", "kind"), [a[1:] for a in SLACK_ANSWERS],
                         ids=[a[0] for a in SLACK_ANSWERS])
def test_slack_answers(receiver: FakeReceiver, status: int, body: str, kind: OutcomeKind) -> None:
    """Slack's documented answers map to outcomes; a 2xx that is not "ok" is failed, not retried."""
    receiver.script(Reply(status, body))
    outcome = deliver(SlackSink(slack_config(url=receiver.url)), make_action())
    assert outcome.kind is kind
    if status >= 400:
        assert body in outcome.reason


URLS = [
    ("https", "https://hooks.slack.com/services/T/B/x", None),
    ("http-loopback", "http://127.0.0.1:9/services/T/B/x", None),
    ("http-localhost", "http://localhost:9/services/T/B/x", None),
    ("http-remote", "http://hooks.slack.com/services/T/B/x", "must be https"),
    ("no-scheme", "hooks.slack.com/services/T/B/x", "must be an https URL"),
]


@pytest.mark.parametrize(("url", "problem"), [u[1:] for u in URLS], ids=[u[0] for u in URLS])
def test_url_must_be_https(url: str, problem: str | None) -> None:
    """The webhook URL must be https (http only on loopback); the error never echoes the URL."""
    if problem is None:
        assert slack_config(url=url).url.get_secret_value() == url
        return
    with pytest.raises(ValidationError) as caught:
        slack_config(url=url)
    assert [e["loc"] for e in caught.value.errors()] == [("url",)]
    assert problem in str(caught.value)
    assert "services/T/B/x" not in str(caught.value)


def test_url_is_secret_in_repr() -> None:
    """The URL is a credential: hidden in the config's repr."""
    assert "services/T/B/x" not in repr(slack_config(url="https://hooks.slack.com/services/T/B/x"))


# ------------------------------------------------------------------ recipients, lifecycle facts, buttons


def people(action: Action, *recipients: Recipient, **links: str) -> Action:
    """`action` addressed to `recipients`, carrying `links` (default: both signed links)."""
    return dataclasses.replace(action, recipients=recipients,
                               links=links or {"acknowledge": ACK, "resolve": RESOLVE})


def test_recipients_with_slack_ids_are_mentioned() -> None:
    """Recipients with a Slack user id are mentioned as `<@ID>` in the summary and the fallback text."""
    action = people(make_action(ActionKind.ESCALATE),
                    Recipient("bob", {"slack": "U024BE7LH"}),
                    Recipient("carol", {"email": "carol@example.org"}),
                    Recipient("dan", {"slack": "W0123ABC"}),
                    Recipient("bob again", {"slack": "U024BE7LH"}))
    message = render(action)
    assert_block_kit(message)
    summary = blocks_of(message, "section")[0]["text"]["text"]
    assert summary == f"{action.reason}\n<@U024BE7LH> <@W0123ABC>"
    assert message["text"].endswith(" · <@U024BE7LH> <@W0123ABC>")


def test_malformed_slack_handles_are_not_mentioned() -> None:
    """A handle that is not a user id (`!channel`, markup, lower case) is never put inside `<@…>`."""
    action = people(make_action(), Recipient("x", {"slack": "!channel"}), Recipient("y", {"slack": "U1|x>"}),
                    Recipient("z", {"slack": "u024be7lh"}))
    message = render(action)
    assert "<@" not in json.dumps(message)
    assert blocks_of(message, "section")[0]["text"]["text"] == action.reason


def test_root_cause_assignee_escalation_and_sla_are_fields() -> None:
    """Root cause, assignee, escalation tier and SLA deadlines (reader-local dates) are summary fields."""
    action = make_action(ActionKind.ASSIGN, root_cause="payments-db", assignee="alice", escalation_level=1,
                         sla={"acknowledge_by": T0 + 900})
    fields = [f["text"] for f in blocks_of(render(action), "section")[0]["fields"]]
    assert "*Root cause*\npayments-db" in fields
    assert "*Assignee*\nalice" in fields
    assert "*Escalation*\ntier 1" in fields
    assert ("*Acknowledge by*\n<!date^1709544423^{date_short_pretty} {time_secs}|2024-03-04T09:27:03.123Z> "
            "(in 15m)") in fields


def test_more_than_ten_fields_continue_in_a_second_section() -> None:
    """Past Slack's 10 fields per section the facts continue in a second section before the divider."""
    sla = {"acknowledge_by": T0 + 900, "resolve_by": T0 + 3600, "first_update_by": T0 + 600}
    action = make_action(ActionKind.ESCALATE, root_cause="db", assignee="bob", escalation_level=2, sla=sla)
    message = render(action)
    assert_block_kit(message)
    first, second = blocks_of(message, "section")[:2]
    assert len(first["fields"]) == 10
    assert [f["text"].split("\n")[0] for f in second["fields"]] == ["*First update by*"]
    assert message["blocks"].index(second) < message["blocks"].index({"type": "divider"})


def test_buttons_acknowledge_and_resolve() -> None:
    """With signed links, an actions block before the divider holds Acknowledge and Resolve link buttons."""
    message = render(people(make_action()))
    assert_block_kit(message)
    (actions,) = blocks_of(message, "actions")
    assert actions["elements"] == [
        {"type": "button", "text": {"type": "plain_text", "text": "Acknowledge", "emoji": True},
         "style": "primary", "url": ACK, "action_id": "alertbridge.acknowledge", "value": "inc-7f3a"},
        {"type": "button", "text": {"type": "plain_text", "text": "Resolve", "emoji": True},
         "style": "danger", "url": RESOLVE, "action_id": "alertbridge.resolve", "value": "inc-7f3a"},
    ]
    assert message["blocks"].index(actions) + 1 == message["blocks"].index({"type": "divider"})


@pytest.mark.parametrize(("kind", "links", "action_ids"), [
    (ActionKind.OPEN, {}, []),
    (ActionKind.ACKNOWLEDGE, {"acknowledge": ACK, "resolve": RESOLVE}, ["alertbridge.resolve"]),
    (ActionKind.RESOLVE, {"acknowledge": ACK, "resolve": RESOLVE}, []),
    (ActionKind.OPEN, {"acknowledge": "https://x.example/" + "a" * 3000, "resolve": RESOLVE},
     ["alertbridge.resolve"]),
], ids=["no-links", "acknowledged", "resolved", "overlong-url"])
def test_buttons_only_while_they_apply(kind: ActionKind, links: dict[str, str], action_ids: list[str]) -> None:
    """No links, no buttons; Acknowledge only while triggered, Resolve until resolved; an overlong URL has none."""
    action = dataclasses.replace(make_action(kind), links=links)
    message = render(action)
    assert_block_kit(message)
    found = [button["action_id"] for block in blocks_of(message, "actions") for button in block["elements"]]
    assert found == action_ids


def test_buttons_and_mentions_keep_the_block_cap() -> None:
    """With buttons, mentions and 60 alerts the message stays within 50 blocks and counts the rest."""
    action = people(make_action(n_alerts=60), Recipient("bob", {"slack": "U024BE7LH"}))
    message = render(action, max_alerts=60)
    assert_block_kit(message)
    assert len(message["blocks"]) == 50
    assert blocks_of(message, "context")[0]["elements"][0]["text"].startswith("…and ")


def test_round_trip_with_buttons_and_mentions(receiver: FakeReceiver) -> None:
    """The posted body carries the buttons and mentions render() built."""
    receiver.script(Reply(200, "ok"))
    action = people(make_action(), Recipient("bob", {"slack": "U024BE7LH"}))
    assert deliver(SlackSink(slack_config(url=receiver.url)), action) == Outcome.delivered(200)
    body = receiver.requests[0].json()
    assert body == render(action)
    assert "<@U024BE7LH>" in body["text"]
    assert [b["type"] for b in body["blocks"]].count("actions") == 1
