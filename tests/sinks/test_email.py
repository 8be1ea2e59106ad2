"""sinks/email.py: the message it builds and how SMTP answers map to outcomes, against a real aiosmtpd server."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.model import Action, ActionKind, Recipient
from bridge.plugins import Outcome, OutcomeKind
from sinks.email import EmailSink, EmailSinkConfig, header_safe, parse_address
from tests.sinks.conftest import T0, SmtpServer, deliver, free_port, make_action, make_alert

ACK = "https://bridge.example/api/v1/links/ack-token"
RESOLVE = "https://bridge.example/api/v1/links/resolve-token"
ALICE = Recipient("alice", {"email": "alice@example.org", "slack": "U1"})
BOB = Recipient("bob", {"email": "Bob <bob@example.org>"})


def email_config(**fields: Any) -> EmailSinkConfig:
    """An e-mail config named `mail`, validated from plain data as a loaded config file would be."""
    data = {"name": "mail", "type": "email", "host": "smtp.example.org", "sender": "alertbridge@example.org",
            **fields}
    return EmailSinkConfig.model_validate(data)


def sink_for(server: SmtpServer, **fields: Any) -> EmailSink:
    """A sink sending plain SMTP to `server`, with `to: [oncall@example.org]` unless overridden."""
    values: dict[str, Any] = {"host": server.host, "port": server.port, "security": "none",
                              "to": ["oncall@example.org"], **fields}
    return EmailSink(email_config(**values))


def people(action: Action, *recipients: Recipient) -> Action:
    """`action` addressed to `recipients`, with both signed links."""
    return dataclasses.replace(action, recipients=recipients, links={"acknowledge": ACK, "resolve": RESOLVE})


def parts(message: Any) -> tuple[str, str]:
    """The text/plain and text/html contents of a received message."""
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    return plain.get_content(), html.get_content()


# ---------------------------------------------------------------------------------------- round trips

def test_recipients_are_action_recipients_then_to(smtp_server: SmtpServer) -> None:
    """RCPT TO goes to the recipients' email handles, then `to`, deduplicated case-insensitively, in order."""
    sink = sink_for(smtp_server, to=["oncall@example.org", "ALICE@example.org"])
    action = people(make_action(), ALICE, BOB, Recipient("carol", {"slack": "U3"}))
    assert deliver(sink, action) == Outcome.delivered()
    (mail,) = smtp_server.mails
    assert mail.mail_from == "alertbridge@example.org"
    assert mail.rcpt_tos == ("alice@example.org", "bob@example.org", "oncall@example.org")
    assert mail.message()["To"] == "alice@example.org, bob@example.org, oncall@example.org"


def test_malformed_recipient_handle_is_skipped(smtp_server: SmtpServer) -> None:
    """A recipient whose email handle is not an address is skipped; the others still get the message."""
    action = people(make_action(), Recipient("eve", {"email": "not an address\r\nBcc: x@evil.example"}), ALICE)
    assert deliver(sink_for(smtp_server, to=[]), action) == Outcome.delivered()
    assert smtp_server.mails[0].rcpt_tos == ("alice@example.org",)


SUBJECTS = [
    ("open", ActionKind.OPEN, {}, "[alertbridge] P1 [FIRING] InstanceDown (payments)"),
    ("escalate", ActionKind.ESCALATE, {"escalation_level": 2},
     "[alertbridge] P1 [ESCALATED to tier 2] InstanceDown (payments)"),
    ("resolve", ActionKind.RESOLVE, {}, "[alertbridge] P1 [RESOLVED] InstanceDown (payments)"),
    ("custom-prefix", ActionKind.OPEN, {"subject_prefix": "[db]"}, "[db] P1 [FIRING] InstanceDown (payments)"),
    ("no-prefix", ActionKind.OPEN, {"subject_prefix": ""}, "P1 [FIRING] InstanceDown (payments)"),
]


@pytest.mark.parametrize(("kind", "fields", "subject"), [s[1:] for s in SUBJECTS], ids=[s[0] for s in SUBJECTS])
def test_subject_is_prefix_priority_headline_title(smtp_server: SmtpServer, kind: ActionKind,
                                                   fields: dict[str, Any], subject: str) -> None:
    """The subject reads "<prefix> <priority> [HEADLINE] <title>"."""
    prefix = {"subject_prefix": fields["subject_prefix"]} if "subject_prefix" in fields else {}
    incident = {k: v for k, v in fields.items() if k != "subject_prefix"}
    deliver(sink_for(smtp_server, **prefix), make_action(kind, **incident))
    assert smtp_server.mails[0].message()["Subject"] == subject


def test_title_cannot_inject_headers(smtp_server: SmtpServer) -> None:
    """Line breaks in the title are folded into spaces: no header can be injected through it."""
    deliver(sink_for(smtp_server), make_action(title="Disk full\r\nBcc: victim@example.org"))
    message = smtp_server.mails[0].message()
    assert message["Subject"] == "[alertbridge] P1 [FIRING] Disk full Bcc: victim@example.org"
    assert message["Bcc"] is None
    assert smtp_server.mails[0].rcpt_tos == ("oncall@example.org",)


def test_headers_identify_thread_and_time(smtp_server: SmtpServer) -> None:
    """Message-ID is the header-safe idempotency key, the thread is the incident, Date is the action's time."""
    action = make_action(ActionKind.UPDATE)
    deliver(sink_for(smtp_server), action)
    message = smtp_server.mails[0].message()
    assert message["Message-ID"] == "<inc-7f3a%3Amail%3A3@alertbridge>"
    assert message["In-Reply-To"] == "<inc-7f3a@alertbridge>"
    assert message["References"] == "<inc-7f3a@alertbridge>"
    assert parsedate_to_datetime(message["Date"]).timestamp() == int(T0)
    assert message["From"] == "alertbridge@example.org"
    assert message["X-Alertbridge-Incident"] == "inc-7f3a"
    assert message["X-Alertbridge-Action"] == "update"
    assert message["Auto-Submitted"] == "auto-generated"


def test_redelivery_has_the_same_message_id(smtp_server: SmtpServer) -> None:
    """Delivering one action twice sends two mails with one Message-ID, so clients see a duplicate."""
    sink = sink_for(smtp_server)
    action = make_action()
    deliver(sink, action)
    deliver(sink, action)
    ids = [mail.message()["Message-ID"] for mail in smtp_server.mails]
    assert ids == ["<inc-7f3a%3Amail%3A1@alertbridge>"] * 2


def test_message_has_a_text_and_an_html_part(smtp_server: SmtpServer) -> None:
    """Both parts carry the reason, facts, signed links, alerts with their links and the incident id."""
    action = people(make_action(ActionKind.ASSIGN, assignee="alice", root_cause="payments-db"), ALICE)
    deliver(sink_for(smtp_server), action)
    message = smtp_server.mails[0].message()
    assert message.get_content_type() == "multipart/alternative"
    plain, html = parts(message)
    for text in (plain, html):
        for expected in ("P1 [ASSIGNED to alice] InstanceDown (payments)", "assigned to alice: round robin",
                         "Root cause", "payments-db", "Assignee", "Instance db-0 is down",
                         "https://runbooks.example.org/instance-down#0", ACK, RESOLVE, "inc-7f3a"):
            assert expected in text, (expected, text)
    assert "Acknowledge: " + ACK in plain
    assert f'<a href="{ACK}"' in html


def test_acknowledge_link_is_gone_once_acknowledged(smtp_server: SmtpServer) -> None:
    """After acknowledgement the mail offers only the resolve link."""
    deliver(sink_for(smtp_server), people(make_action(ActionKind.ACKNOWLEDGE)))
    plain, html = parts(smtp_server.mails[0].message())
    assert ACK not in plain and ACK not in html
    assert RESOLVE in plain and RESOLVE in html


def test_html_part_escapes_alert_text(smtp_server: SmtpServer) -> None:
    """Markup and quotes from alerts and titles are escaped in the HTML part, link targets included."""
    alert = make_alert(0, summary="<script>alert(1)</script> & co", service='pay"ments',
                       annotations={"runbook_url": 'https://rb.example/x?a=1&b="><img src=x>'})
    deliver(sink_for(smtp_server), make_action(title="<b>bold</b>", alerts=(alert,)))
    plain, html = parts(smtp_server.mails[0].message())
    assert "<script>" not in html and "<b>bold</b>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert 'href="https://rb.example/x?a=1&amp;b=&quot;&gt;&lt;img src=x&gt;"' in html
    assert "<script>alert(1)</script> & co" in plain  # the text part is plain text: nothing to escape


def test_alert_list_is_capped_with_a_count(smtp_server: SmtpServer) -> None:
    """25 alerts list 10 and say "…and 15 more alerts" in both parts."""
    deliver(sink_for(smtp_server), make_action(n_alerts=25))
    plain, html = parts(smtp_server.mails[0].message())
    assert "…and 15 more alerts" in plain and "…and 15 more alerts" in html
    assert "Instance db-9 is down" in plain and "Instance db-10 is down" not in plain


def test_login_with_credentials(smtp_server: SmtpServer) -> None:
    """With username and password the sink authenticates and the message is delivered."""
    smtp_server.handler.credentials = ("bridge", "s3cret")
    sink = sink_for(smtp_server, username="bridge", password="s3cret")
    assert deliver(sink, make_action()) == Outcome.delivered()
    assert len(smtp_server.mails) == 1


# ------------------------------------------------------------------------------------------- outcomes

REFUSALS = [
    ("rcpt-451-greylisted", "rcpt", "451 4.7.1 Greylisted, try again later", OutcomeKind.RETRY, 451),
    ("rcpt-550-no-such-user", "rcpt", "550 5.1.1 No such user", OutcomeKind.FAILED, 550),
    ("data-451-local-error", "data", "451 4.3.0 Temporary local problem", OutcomeKind.RETRY, 451),
    ("data-552-too-big", "data", "552 5.3.4 Message too big", OutcomeKind.FAILED, 552),
    ("data-554-rejected", "data", "554 5.7.1 Rejected as spam", OutcomeKind.FAILED, 554),
]


@pytest.mark.parametrize(("stage", "reply", "kind", "code"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_smtp_replies_map_to_outcomes(smtp_server: SmtpServer, stage: str, reply: str, kind: OutcomeKind,
                                      code: int) -> None:
    """A 4xx reply is a retry and a 5xx reply is failed, with the code and the server's text in the reason."""
    if stage == "rcpt":
        smtp_server.handler.rcpt_replies["*"] = reply
    else:
        smtp_server.handler.data_reply = reply
    outcome = deliver(sink_for(smtp_server), make_action())
    assert (outcome.kind, outcome.status) == (kind, code)
    assert reply.split(" ", 2)[2] in outcome.reason
    assert smtp_server.mails == []


def test_some_recipients_refused_is_delivered_to_the_rest(smtp_server: SmtpServer) -> None:
    """When only some recipients are refused the message went to the others: delivered, not retried."""
    smtp_server.handler.rcpt_replies["alice@example.org"] = "550 5.1.1 No such user"
    outcome = deliver(sink_for(smtp_server), people(make_action(), ALICE))
    assert outcome == Outcome.delivered()
    assert smtp_server.mails[0].rcpt_tos == ("oncall@example.org",)


def test_wrong_password_is_failed(smtp_server: SmtpServer) -> None:
    """An authentication failure is failed (retrying cannot fix a wrong password)."""
    smtp_server.handler.credentials = ("bridge", "right")
    outcome = deliver(sink_for(smtp_server, username="bridge", password="wrong"), make_action())
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.reason.startswith("SMTP authentication failed: 535")
    assert "wrong" not in outcome.reason


def test_starttls_not_offered_is_failed(smtp_server: SmtpServer) -> None:
    """`security: starttls` against a server without STARTTLS fails instead of sending in clear."""
    outcome = deliver(sink_for(smtp_server, security="starttls"), make_action())
    assert outcome.kind is OutcomeKind.FAILED
    assert "STARTTLS" in outcome.reason
    assert smtp_server.mails == []


def test_connection_refused_is_retry() -> None:
    """A refused connection is a retry named after the error."""
    sink = EmailSink(email_config(host="127.0.0.1", port=free_port(), security="none", to=["a@example.org"]))
    assert deliver(sink, make_action()) == Outcome.retry("ConnectionRefusedError")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the backlog) but never sends the SMTP greeting."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_silent_server_is_retry_after_timeout(silent_port: int) -> None:
    """A server that never greets within the timeout gives a retry "timeout"."""
    sink = EmailSink(email_config(host="127.0.0.1", port=silent_port, security="none", to=["a@example.org"],
                                  timeout=0.2))
    assert deliver(sink, make_action()) == Outcome.retry("timeout")


def test_no_recipient_is_failed_without_connecting() -> None:
    """No recipient handle and an empty `to` is failed before any connection is made."""
    sink = EmailSink(email_config(host="127.0.0.1", port=free_port(), security="none"))
    outcome = deliver(sink, people(make_action(), Recipient("carol", {"slack": "U3"})))
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.reason.startswith("no recipient")


# --------------------------------------------------------------------------------------------- config

CONFIGS = [
    ("minimal", {}, None),
    ("display-name-sender", {"sender": "alertbridge <alerts@example.org>"}, None),
    ("credentials-with-starttls", {"username": "u", "password": "p"}, None),
    ("credentials-plain-on-loopback", {"username": "u", "password": "p", "security": "none",
                                       "host": "127.0.0.1"}, None),
    ("username-without-password", {"username": "u"}, "username and password must be set together"),
    ("password-without-username", {"password": "p"}, "username and password must be set together"),
    ("credentials-in-clear", {"username": "u", "password": "p", "security": "none"}, "in clear"),
    ("bad-sender", {"sender": "not an address"}, "sender"),
    ("two-senders", {"sender": "a@example.org, b@example.org"}, "not one e-mail address"),
    ("bad-to", {"to": ["ok@example.org", "nope"]}, "to"),
    ("newline-in-prefix", {"subject_prefix": "[x]\nBcc: y@example.org"}, "line break"),
    ("url-as-host", {"host": "smtp://mail.example.org"}, "host name"),
    ("bad-security", {"security": "ssl"}, "security"),
    ("port-out-of-range", {"port": 70000}, "port"),
    ("unknown-field", {"tls": True}, "Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("fields", "problem"), [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_config_validation(fields: dict[str, Any], problem: str | None) -> None:
    """The config accepts valid settings and names the problem in invalid ones, never echoing the password."""
    if problem is None:
        config = email_config(**fields)
        assert (config.port, config.security, config.subject_prefix, config.to) == (
            fields.get("port", 587), fields.get("security", "starttls"), "[alertbridge]", [])
        return
    with pytest.raises(ValidationError) as caught:
        email_config(**fields)
    assert problem in str(caught.value)


def test_password_is_secret_in_repr() -> None:
    """The password never shows in the config's repr."""
    assert "s3cret" not in repr(email_config(username="u", password="s3cret"))


ADDRESSES = [
    ("plain", "a@example.org", ("", "a@example.org")),
    ("display-name", "Alert Bridge <a@example.org>", ("Alert Bridge", "a@example.org")),
    ("localhost", "root@localhost", ("", "root@localhost")),
]


@pytest.mark.parametrize(("value", "parsed"), [a[1:] for a in ADDRESSES], ids=[a[0] for a in ADDRESSES])
def test_parse_address(value: str, parsed: tuple[str, str]) -> None:
    """An address, with or without a display name, parses to (name, addr-spec)."""
    assert parse_address(value) == parsed


@pytest.mark.parametrize(("key", "safe"), [
    ("inc-7f3a:mail:3", "inc-7f3a%3Amail%3A3"),
    ("a b<c>@d", "a%20b%3Cc%3E%40d"),
    ("a..b", "a%2E%2Eb"),
    ("é", "%C3%A9"),
], ids=["colons", "specials", "double-dot", "non-ascii"])
def test_header_safe(key: str, safe: str) -> None:
    """Keys become valid Message-ID left parts: atext kept, the rest percent-encoded."""
    assert header_safe(key) == safe
