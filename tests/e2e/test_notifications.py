"""End to end: one incident's notifications through a real `alertbridge serve` to Slack, Teams and e-mail.

The server posts to two fake chat webhooks (Slack answers `ok`, a Teams Workflows trigger answers
202), sends mail to a real aiosmtpd server, and posts every action to a webhook receiver, which is
the reference for what was decided (kind, reason, revision, links). Pool `db` has channels Slack and
Teams; alice (assigned, tier L1) is also reached by e-mail, bob is tier L2. The Alertmanager fixture
has no `service` label and the route no catalog, so its priority is low impact x high urgency (the
alerts are critical): P3. The P3 acknowledge target is 3s with a warning at 50%, so, with nobody
acknowledging: SLA warning at 1.5s, escalation L1 -> L2 at 2s, SLA breach at 3s. The policy repeats
once, so without an acknowledge L2's timeout would page L1 again at 2s + 4s: the acknowledge (through
the signed link in alice's e-mail) lands well before that, and nothing is sent after it.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.e2e.conftest import Receiver, Server, e2e_config, free_port, http, wait_until
from tests.sinks.conftest import FakeReceiver, Reply, SmtpRecorder, SmtpServer

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).parents[1] / "fixtures" / "alertmanager" / "captured_v0.25_webhook_firing_2alerts.json"
SECRET = "e2e-notifications-link-secret-0123456789abcdef"  # 46 bytes: links need 32+
RUNBOOK = "https://runbooks.example.org/db/instance-down"
DASHBOARD = "https://grafana.example.org/d/node-overview/nodes?var-job=node"
SENDER = "alertbridge@example.org"
ALICE = {"email": "alice@example.org", "slack": "UALICE001", "teams": "alice@example.onmicrosoft.com"}
BOB = {"slack": "UBOB00002", "teams": "bob@example.onmicrosoft.com"}

#: Worked out from bridge/priority.py defaults: no service -> default_impact low; critical -> urgency high.
PRIORITY = "P3"
PRIORITY_REASON = "impact low (no service) x urgency high (severity critical on InstanceDown) -> P3"
L1_TIMEOUT, L2_TIMEOUT = 2.0, 4.0
ACK_TARGET, WARN_AT = 3.0, 0.5
REASONS = {
    "sla_warning": "50% of the 3s time-to-acknowledge target for P3 has passed",
    "escalate": "not acknowledged within 2s at tier L1: escalated to tier L2, paging bob",
    "sla_breach": "the 3s time-to-acknowledge target for P3 was breached",
    "acknowledge": "acknowledged by signed link",
    "resolve": "resolved by alice",
}
#: The bracketed headline each action kind gets in every channel (sinks/_message.py `headline`).
HEADLINES = {
    "[FIRING]": "open",
    "[SLA WARNING]": "sla_warning",
    "[ESCALATED to tier 2]": "escalate",
    "[SLA BREACHED]": "sla_breach",
    "[ACKNOWLEDGED by signed link]": "acknowledge",
    "[RESOLVED]": "resolve",
}
TIMER_KINDS = ("sla_warning", "escalate", "sla_breach")


def firing_body() -> bytes:
    """The fixture with `runbook_url` and `dashboard_url` annotations added to each alert (a copy)."""
    payload = json.loads(FIXTURE.read_text())
    for alert in payload["alerts"]:
        alert["annotations"] = {**alert["annotations"], "runbook_url": RUNBOOK, "dashboard_url": DASHBOARD}
    return json.dumps(payload).encode()


def notifications_config(hook: str, slack: str, teams: str, smtp_port: int) -> dict[str, Any]:
    config = e2e_config(hook, pool="db")
    config["sinks"] += [
        {"name": "slack", "type": "slack", "url": slack},
        {"name": "teams", "type": "teams", "url": teams, "endpoint": "workflows"},
        {"name": "email", "type": "email", "host": "127.0.0.1", "port": smtp_port, "security": "none",
         "sender": SENDER, "timeout": 5},
    ]
    config["pools"] = [{"name": "db", "escalation": "db", "notify": ["slack", "teams"], "members": [
        {"name": "alice", "contacts": ALICE, "notify": ["email"]},
        {"name": "bob", "contacts": BOB}]}]
    config["escalation_policies"] = [{"name": "db", "repeat": 1, "tiers": [
        {"assignee": True, "timeout": f"{L1_TIMEOUT:g}s"}, {"members": ["bob"], "timeout": f"{L2_TIMEOUT:g}s"}]}]
    config["sla"] = {"targets": {PRIORITY: {"acknowledge": f"{ACK_TARGET:g}s"}}, "warn_at": WARN_AT}
    config["links"] = {"secret": SECRET, "ttl": "1h"}
    return config


# --------------------------------------------------------------------------------- fake destinations

@pytest.fixture
def slack_hook() -> Iterator[FakeReceiver]:
    """A fake Slack incoming webhook: answers every post `200 ok`."""
    fake = FakeReceiver()
    fake.default = Reply(200, "ok")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def teams_hook() -> Iterator[FakeReceiver]:
    """A fake Teams Workflows trigger: answers every post `202` with an empty body."""
    fake = FakeReceiver()
    fake.default = Reply(202, b"")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real aiosmtpd SMTP server on a free loopback port (plain SMTP, own thread), recording every mail."""
    recorder = SmtpRecorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()  # returns once the server answers
    try:
        yield SmtpServer("127.0.0.1", controller.port, recorder)
    finally:
        controller.stop()


# ------------------------------------------------------------------------------------- reading them

def kind_of(heading: str) -> str:
    """The action kind a Slack header or Teams title names through its bracketed headline."""
    found = [kind for headline, kind in HEADLINES.items() if headline in heading]
    assert len(found) == 1, heading
    return found[0]


def slack_messages(hook: FakeReceiver, kind: str) -> list[dict[str, Any]]:
    messages = [r.json() for r in list(hook.requests)]
    return [m for m in messages if kind_of(m["blocks"][0]["text"]["text"]) == kind]


def teams_cards(hook: FakeReceiver, kind: str) -> list[dict[str, Any]]:
    cards = [r.json()["attachments"][0]["content"] for r in list(hook.requests)]
    return [c for c in cards if kind_of(c["body"][0]["text"]) == kind]


def mails(smtp: SmtpServer, kind: str) -> list[tuple[tuple[str, ...], EmailMessage]]:
    found = [(m.rcpt_tos, m.message()) for m in list(smtp.mails)]
    return [(rcpt, msg) for rcpt, msg in found if msg["X-Alertbridge-Action"] == kind]


def webhooks(receiver: Receiver, kind: str) -> list[dict[str, Any]]:
    return [r["json"] for r in list(receiver.requests) if r["json"] and r["json"]["action"] == kind]


def one(found: list[Any]) -> Any:
    """The single element of `found`, as a truthy value for `wait_until` (None until it exists)."""
    assert len(found) <= 1, found
    return found[0] if found else None


def slack_esc(text: str) -> str:
    """Slack mrkdwn escaping (sinks/slack.py): `&`, `<`, `>`."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def teams_esc(text: str) -> str:
    """Teams markdown escaping (sinks/teams.py): a backslash before `\\ * _ < > ` ~`."""
    return re.sub(r"([\\*_<>`~])", r"\\\1", text)


def slack_text(message: dict[str, Any]) -> str:
    """Every mrkdwn/plain text of a Slack message (sections, fields, context), one per line."""
    texts: list[str] = []
    for block in message["blocks"]:
        if isinstance(block.get("text"), dict):
            texts.append(block["text"]["text"])
        texts += [f["text"] for f in block.get("fields", [])]
        texts += [e["text"] for e in block.get("elements", []) if e.get("type") == "mrkdwn"]
    return "\n".join(texts)


def slack_buttons(message: dict[str, Any]) -> dict[str, str]:
    return {e["text"]["text"]: e["url"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]}


def teams_actions(card: dict[str, Any]) -> dict[str, str]:
    assert all(a["type"] == "Action.OpenUrl" for a in card.get("actions", []))
    return {a["title"]: a["url"] for a in card.get("actions", [])}


def teams_facts(card: dict[str, Any]) -> dict[str, str]:
    (fact_set,) = [b for b in card["body"] if b["type"] == "FactSet"]
    return {f["title"]: f["value"] for f in fact_set["facts"]}


def teams_texts(card: dict[str, Any]) -> list[str]:
    return [b["text"] for b in card["body"] if b["type"] == "TextBlock"]


def parts(message: EmailMessage) -> tuple[str, str]:
    """The text/plain and text/html bodies of a multipart/alternative message (line ends as `\\n`)."""
    assert message.get_content_type() == "multipart/alternative"
    plain, rich = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and rich is not None
    return plain.get_content().replace("\r\n", "\n"), rich.get_content().replace("\r\n", "\n")


def epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


# ------------------------------------------------------------------------------------------- the test

def test_an_incident_is_told_to_slack_teams_and_email_from_open_to_resolve(
        tmp_path: Path, receiver: Receiver, servers: list[Server], slack_hook: FakeReceiver,
        teams_hook: FakeReceiver, smtp: SmtpServer) -> None:
    """Open, SLA warning, escalation, SLA breach, acknowledge by e-mailed link and resolve reach each channel."""
    config = notifications_config(receiver.url, slack_hook.url, teams_hook.base_url + "/workflows/trigger",
                                  smtp.port)
    server = Server(config, tmp_path / "data")
    config["server"]["public_url"] = server.base
    servers.append(server.start())
    link_prefix = server.base + "/api/v1/links/"

    status, body = server.post("/v1/sources/am", firing_body())
    assert status == 200, body

    # 1. the open: Slack and Teams (pool channels) and e-mail to alice (her own sink), same facts and links
    opened = wait_until(lambda: one(webhooks(receiver, "open")), 10, "the open webhook")
    incident = opened["incident"]
    incident_id = incident["id"]
    # messages state their own headline, then the title without its state prefix ("[FIRING:2] ")
    assert incident["title"].startswith("[FIRING:2] ")
    title = incident["title"].removeprefix("[FIRING:2] ")
    assert (incident["priority"], incident["priority_reason"]) == (PRIORITY, PRIORITY_REASON)
    assert incident["assignee"] == "alice" and incident["escalation_level"] == 1
    ack_url, resolve_url = opened["links"]["acknowledge"], opened["links"]["resolve"]
    assert ack_url.startswith(link_prefix) and resolve_url.startswith(link_prefix)

    slack_open = wait_until(lambda: one(slack_messages(slack_hook, "open")), 10, "the open on Slack")
    assert slack_open["blocks"][0]["text"]["text"] == f"🔴 {PRIORITY} · [FIRING] {title}"
    text = slack_text(slack_open)
    assert f"*Priority*\n{PRIORITY} ({slack_esc(PRIORITY_REASON)})" in text
    assert "*Assignee*\nalice" in text and f"<@{ALICE['slack']}>" in text and f"<@{BOB['slack']}>" not in text
    assert f"<{RUNBOOK}|" in text and f"<{DASHBOARD}|" in text
    assert slack_buttons(slack_open) == {"Acknowledge": ack_url, "Resolve": resolve_url}
    assert f"<@{ALICE['slack']}>" in slack_open["text"]  # the push-notification fallback mentions her too

    card = wait_until(lambda: one(teams_cards(teams_hook, "open")), 10, "the open on Teams")
    assert card["type"] == "AdaptiveCard" and card["body"][0]["text"] == f"🔴 {PRIORITY} · [FIRING] {title}"
    facts = teams_facts(card)
    assert facts["Priority"] == f"{PRIORITY} ({teams_esc(PRIORITY_REASON)})" and facts["Assignee"] == "alice"
    assert card["msteams"]["entities"] == [{"type": "mention", "text": "<at>alice</at>",
                                            "mentioned": {"id": ALICE["teams"], "name": "alice"}}]
    actions = teams_actions(card)
    assert actions["Acknowledge"] == ack_url and actions["Resolve"] == resolve_url
    assert set(actions.values()) == {ack_url, resolve_url, RUNBOOK, DASHBOARD}
    assert any(f"]({RUNBOOK})" in t and f"]({DASHBOARD})" in t for t in teams_texts(card))

    rcpt, mail = wait_until(lambda: one(mails(smtp, "open")), 10, "the open e-mail")
    assert rcpt == (ALICE["email"],) and mail["To"] == ALICE["email"] and mail["From"] == SENDER
    assert mail["Subject"] == f"[alertbridge] {PRIORITY} [FIRING] {title}"
    assert mail["Message-ID"] == f"<{incident_id}%3Aemail%3A{incident['revision']}@alertbridge>"
    assert mail["X-Alertbridge-Incident"] == incident_id
    plain, rich = parts(mail)
    assert f"Priority: {PRIORITY} ({PRIORITY_REASON})" in plain and "Assignee: alice" in plain
    assert f"Acknowledge: {ack_url}\nResolve: {resolve_url}\n" in plain
    assert RUNBOOK in plain and DASHBOARD in plain
    for href in (ack_url, resolve_url, RUNBOOK, DASHBOARD):
        assert f'href="{html.escape(href, quote=True)}"' in rich
    assert html.escape(PRIORITY_REASON) in rich

    # 2. nobody acknowledges: SLA warning, escalation to bob, SLA breach, on both pool channels
    for kind in TIMER_KINDS:
        wait_until(lambda k=kind: one(slack_messages(slack_hook, k)) and one(teams_cards(teams_hook, k)),
                   10, f"the {kind} on Slack and Teams")
    for kind in TIMER_KINDS:
        message, card = one(slack_messages(slack_hook, kind)), one(teams_cards(teams_hook, kind))
        assert slack_esc(REASONS[kind]) in slack_text(message), (kind, message)
        assert teams_esc(REASONS[kind]) in teams_texts(card), (kind, card)
        paged = BOB if kind == "escalate" else ALICE
        assert f"<@{paged['slack']}>" in slack_text(message), (kind, message)
        assert f"<at>{'bob' if kind == 'escalate' else 'alice'}</at>" in teams_texts(card), (kind, card)
        assert slack_buttons(message)["Acknowledge"].startswith(link_prefix)
        assert teams_actions(card)["Acknowledge"].startswith(link_prefix)
    escalation = one(webhooks(receiver, "escalate"))
    assert escalation["incident"]["escalation_level"] == 2 and escalation["reason"] == REASONS["escalate"]
    assert "*Escalation*\ntier 2" in slack_text(one(slack_messages(slack_hook, "escalate")))
    sent = [m.message()["X-Alertbridge-Action"] for m in list(smtp.mails)]
    assert "escalate" not in sent  # bob is paged on the pool channels only: he has no personal sink

    # 3. the acknowledge link from alice's e-mail: GET only asks, POST acknowledges
    status, page = http("GET", ack_url)
    assert status == 200 and b'<form method="post"' in page and b"Acknowledge" in page, page
    assert server.get_json(f"/api/v1/incidents/{incident_id}")["status"] == "triggered"
    status, page = http("POST", ack_url)
    assert status == 200 and b"acknowledged" in page, page
    detail = server.get_json(f"/api/v1/incidents/{incident_id}")
    assert detail["status"] == "acknowledged" and detail["acknowledged_by"] == "signed link"
    acked_at = time.time()
    assert acked_at < epoch(escalation["at"]) + L2_TIMEOUT, "acknowledged too late to test that L2 stops"

    ack_message = wait_until(lambda: one(slack_messages(slack_hook, "acknowledge")), 10, "the acknowledge on Slack")
    ack_card = wait_until(lambda: one(teams_cards(teams_hook, "acknowledge")), 10, "the acknowledge on Teams")
    assert slack_esc(REASONS["acknowledge"]) in slack_text(ack_message)
    assert teams_esc(REASONS["acknowledge"]) in teams_texts(ack_card)
    # once acknowledged, only the resolve link is offered
    assert list(slack_buttons(ack_message)) == ["Resolve"]
    assert "Acknowledge" not in teams_actions(ack_card) and "Resolve" in teams_actions(ack_card)

    # without the acknowledge, L2's timeout would page L1 again (repeat: 1): wait past it, bounded
    time.sleep(max(0.0, epoch(escalation["at"]) + L2_TIMEOUT + 1.0 - time.time()))
    for kind in TIMER_KINDS:
        assert len(webhooks(receiver, kind)) == 1, (kind, [r["json"]["action"] for r in receiver.requests])
        assert len(slack_messages(slack_hook, kind)) == 1 and len(teams_cards(teams_hook, kind)) == 1, kind
    timeline = server.get_json(f"/api/v1/incidents/{incident_id}")["timeline"]
    stopped = [e["event"] for e in timeline].index("escalation stopped")
    assert not {"escalated", "sla warning", "sla breached"} & {e["event"] for e in timeline[stopped:]}

    # 4. resolve through the API: a resolve notification everywhere, without any acknowledge/resolve link
    status, body = server.post(f"/api/v1/incidents/{incident_id}/resolve", b'{"by": "alice"}')
    assert status == 200 and json.loads(body)["status"] == "resolved", body
    resolved = wait_until(lambda: one(webhooks(receiver, "resolve")), 10, "the resolve webhook")
    assert resolved["reason"] == REASONS["resolve"] and resolved["links"] == {}
    message = wait_until(lambda: one(slack_messages(slack_hook, "resolve")), 10, "the resolve on Slack")
    assert slack_esc(REASONS["resolve"]) in slack_text(message)
    assert not [b for b in message["blocks"] if b["type"] == "actions"] and link_prefix not in json.dumps(message)
    card = wait_until(lambda: one(teams_cards(teams_hook, "resolve")), 10, "the resolve on Teams")
    assert teams_esc(REASONS["resolve"]) in teams_texts(card)
    assert set(teams_actions(card)) <= {"Runbook", "Dashboard"} and link_prefix not in json.dumps(card)
    _, mail = wait_until(lambda: one(mails(smtp, "resolve")), 10, "the resolve e-mail")
    assert mail["Subject"] == f"[alertbridge] {PRIORITY} [RESOLVED] {title}"  # no contradicting "[FIRING:2]"
    plain, rich = parts(mail)
    assert REASONS["resolve"] in plain and link_prefix not in plain and link_prefix not in rich
    assert "Acknowledge:" not in plain and "Resolve:" not in plain

    # alice's e-mail followed the whole lifecycle (bob's escalation excepted); nothing was dead-lettered
    assert [m.message()["X-Alertbridge-Action"] for m in list(smtp.mails)] == [
        "open", "sla_warning", "sla_breach", "acknowledge", "resolve"]
    assert [r["json"]["action"] for r in list(receiver.requests)] == [
        "open", "sla_warning", "escalate", "sla_breach", "acknowledge", "resolve"]
    assert server.get_json("/api/v1/dead-letters")["items"] == []
