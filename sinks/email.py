"""E-mail over SMTP: sends each incident action as one multipart message to the people it concerns.

Request: one SMTP session per action with the stdlib `smtplib` (run in a worker thread): connect to
`host:port`, plain (`security: none`), upgraded with STARTTLS (`starttls`, the default; a server
that does not offer it is an error, never a silent downgrade) or TLS from the first byte (`tls`,
usually port 465), `AUTH` when `username`/`password` are set, then `MAIL FROM:<sender>` and one
`RCPT TO` per recipient. Recipients are the `email` handles of `action.recipients` followed by
the configured `to`, deduplicated (case-insensitively, first spelling and order kept); malformed
handles are skipped. No recipient at all is a failed delivery.

The message (built by the pure `EmailSink.message()` from `sinks._message.notification(action)`,
the content every human-facing sink shows):

    Subject: <subject_prefix> P1 [FIRING] <title>
    From: <sender>                 To: <recipients>
    Date: <action.at, RFC 5322>    (the decision time, not the wall clock)
    Message-ID: <idempotency key, made header-safe @alertbridge>
    In-Reply-To / References: <incident id @alertbridge>   (mail clients thread one incident)
    X-Alertbridge-Incident: <incident id>   X-Alertbridge-Action: open | update | ...
    Auto-Submitted: auto-generated          (RFC 3834: no out-of-office replies)

    multipart/alternative: text/plain and text/html, both with the headline, the action's reason,
    the facts (status, priority and why, pool, route, alerts firing, root cause, assignee,
    escalation level, SLA deadlines), Acknowledge/Resolve links, the alerts (at most 10, then a
    count) with their links, runbook/dashboard/source links and the incident id and revision.
    Everything in the HTML part is escaped, link targets included.

"Header-safe" keeps RFC 5322 atom characters and percent-encodes the rest (`:` becomes `%3A`), so
`inc-7f3a:mail:3` gives `<inc-7f3a%3Amail%3A3@alertbridge>`.

Idempotency key: the Message-ID. SMTP has no dedup, so a redelivery is sent again, but with the
same Message-ID, which mail clients and list servers recognise as the same message.
Retries: 4xx SMTP replies (greylisting, `451 try again later`, `421` at connect), timeouts (the
`timeout` applies to each SMTP round trip) and connection errors. 5xx replies fail: a refused
sender or message, every recipient refused, an authentication failure, a server without STARTTLS
or AUTH, and an untrusted TLS certificate. When only some recipients are refused the message
was delivered to the rest, so it counts as delivered (retrying would send it twice); the refusals
are logged. The sink never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import smtplib
import ssl
from collections.abc import Iterable, Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, getaddresses
from typing import Any, ClassVar, Literal

import structlog
from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.model import Action, format_time
from bridge.plugins import Outcome, SinkConfig, register_sink
from sinks._http import LOOPBACK_HOSTS
from sinks._message import NamedLink, Notification, notification, plural

__all__ = ["EmailSink", "EmailSinkConfig", "header_safe", "parse_address"]

log = structlog.get_logger(__name__)

#: Right-hand side of every Message-ID and thread reference this sink writes.
MESSAGE_ID_DOMAIN = "alertbridge"
INCIDENT_HEADER = "X-Alertbridge-Incident"
ACTION_HEADER = "X-Alertbridge-Action"
_TITLE_LIMIT = 200
#: RFC 5322 `atext`: what may stand in a Message-ID's left part unencoded (plus single inner dots).
_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&'*+-/=?^_`{|}~")
_HOST_RE = re.compile(r"^[A-Za-z0-9.:\[\]-]+$")


def parse_address(value: str) -> tuple[str, str]:
    """`(display name, addr-spec)` of one address (`a@example.org` or `Name <a@example.org>`).

    Raises ValueError for anything else: several addresses, line breaks, an invalid addr-spec.
    """
    if any(ch in value for ch in "\r\n"):
        raise ValueError("must not contain a line break")
    found = getaddresses([value])
    if len(found) != 1 or not found[0][1]:
        raise ValueError(f"{value!r} is not one e-mail address")
    name, spec = found[0]
    try:
        address = Address(addr_spec=spec)
    except Exception:  # the stdlib parser raises assorted errors (HeaderParseError, IndexError...)
        raise ValueError(f"{value!r} is not a valid e-mail address") from None
    if not address.username or ("." not in address.domain and address.domain != "localhost"):
        raise ValueError(f"{value!r} is not a valid e-mail address")
    return name, address.addr_spec


def header_safe(text: str) -> str:
    """`text` as a Message-ID left part: atext kept, everything else (and awkward dots) percent-encoded."""
    out = []
    for ch in text:
        if ch in _ATEXT or ch == ".":
            out.append(ch)
        else:
            out.append("".join(f"%{byte:02X}" for byte in ch.encode()))
    encoded = "".join(out)
    if encoded.startswith(".") or encoded.endswith(".") or ".." in encoded:
        encoded = encoded.replace(".", "%2E")
    return encoded or "%00"


class EmailSinkConfig(SinkConfig):
    """Send every incident action as an e-mail (text and HTML) over SMTP."""

    type: Literal["email"] = Field(description="Selects this sink: `email`.")
    host: str = Field(min_length=1, description="SMTP server host name or IP address.")
    port: int = Field(587, ge=1, le=65535, description="SMTP server port (587 submission, 465 for `tls`, 25).")
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls",
        description="`starttls`: upgrade the connection with STARTTLS (required, never skipped); `tls`: TLS "
        "from the first byte (SMTPS, usually port 465); `none`: plain text (only for a local relay).",
    )
    username: str | None = Field(None, min_length=1, description="SMTP AUTH user name; set with `password`.")
    password: SecretStr | None = Field(None, description="SMTP AUTH password; set with `username`.")
    sender: str = Field(
        description="From address, `alerts@example.org` or `alertbridge <alerts@example.org>`; also the "
        "envelope sender.",
    )
    to: list[str] = Field(
        default_factory=list,
        description="Addresses that receive every action, after the action's own recipients (their `email` "
        "handles); may be empty when every action names its recipients.",
    )
    subject_prefix: str = Field(
        "[alertbridge]", max_length=100, description="Put before every subject, e.g. `[alertbridge]`; may be empty."
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not _HOST_RE.match(value):
            raise ValueError("must be a host name or IP address (no scheme, port or path)")
        return value

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        parse_address(value)
        return value

    @field_validator("to")
    @classmethod
    def _to(cls, value: list[str]) -> list[str]:
        problems = []
        for i, item in enumerate(value):
            try:
                parse_address(item)
            except ValueError as exc:
                problems.append(f"[{i}] {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("subject_prefix")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(ch in value for ch in "\r\n"):
            raise ValueError("must not contain a line break")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> EmailSinkConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password must be set together (or neither)")
        if self.password is not None and self.security == "none" and self.host not in LOOPBACK_HOSTS:
            raise ValueError("username/password need security starttls or tls: they would cross the network in clear")
        return self


# ------------------------------------------------------------------------------------------ rendering

def _one_line(text: str, limit: int) -> str:
    """Whitespace (line breaks included) collapsed, cut to `limit` characters with "…"."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _link_lines(title: str, links: Sequence[NamedLink]) -> list[str]:
    return [f"{title}:", *(f"  {link.label}: {link.href}" for link in links)] if links else []


def render_text(note: Notification) -> str:
    """The text/plain part."""
    lines = [note.subject]
    if note.reason:
        lines += ["", note.reason]
    lines.append("")
    lines += [f"{fact.name}: {fact.text}" for fact in note.facts]
    actions = [(name, url) for name, url in (("Acknowledge", note.acknowledge_url), ("Resolve", note.resolve_url))
               if url]
    if actions:
        lines.append("")
        lines += [f"{name}: {url}" for name, url in actions]
    lines += ["", f"Alerts ({note.alerts_firing} of {note.alerts_total} firing):"]
    for alert in note.alerts:
        state = alert.severity.value if alert.firing else f"resolved, {alert.severity.value}"
        where = ", ".join(part for part in (alert.service, alert.resource) if part)
        lines.append(f"- [{state}] {alert.summary}" + (f" ({where})" if where else ""))
        lines += [f"    {link.label}: {link.href}" for link in alert.links]
    if note.more_alerts:
        lines.append(f"…and {plural(note.more_alerts, 'more alert')}")
    for title, links in (("Runbooks", note.runbooks), ("Dashboards", note.dashboards), ("Sources", note.sources)):
        if links:
            lines += ["", *_link_lines(title, links)]
    lines += ["", "--", f"Incident {note.incident_id} · revision {note.revision} · {format_time(note.at)}"]
    return "\n".join(lines) + "\n"


def _a(href: str, label: str) -> str:
    return f'<a href="{html.escape(href, quote=True)}">{html.escape(label)}</a>'


def _button(href: str, label: str, colour: str) -> str:
    style = (f"display:inline-block;padding:8px 16px;margin-right:8px;border-radius:4px;"
             f"background:{colour};color:#ffffff;text-decoration:none;font-weight:bold")
    return f'<a href="{html.escape(href, quote=True)}" style="{style}">{html.escape(label)}</a>'


def render_html(note: Notification) -> str:
    """The text/html part: the same content as the text part, every value escaped."""
    esc = html.escape
    parts = [
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head>',
        '<body style="font-family:Helvetica,Arial,sans-serif;font-size:14px;color:#1d1c1d">',
        f"<h2>{esc(note.subject)}</h2>",
    ]
    if note.reason:
        parts.append(f"<p>{esc(note.reason)}</p>")
    parts.append('<table cellpadding="4" style="border-collapse:collapse">')
    parts += [
        f'<tr><th align="left" valign="top">{esc(fact.name)}</th><td>{esc(fact.text)}</td></tr>'
        for fact in note.facts
    ]
    parts.append("</table>")
    buttons = []
    if note.acknowledge_url:
        buttons.append(_button(note.acknowledge_url, "Acknowledge", "#2eb67d"))
    if note.resolve_url:
        buttons.append(_button(note.resolve_url, "Resolve", "#e01e5a"))
    if buttons:
        parts.append(f"<p>{''.join(buttons)}</p>")
    parts.append(f"<h3>Alerts ({note.alerts_firing} of {note.alerts_total} firing)</h3><ul>")
    for alert in note.alerts:
        state = alert.severity.value if alert.firing else f"resolved, {alert.severity.value}"
        where = ", ".join(part for part in (alert.service, alert.resource) if part)
        item = f"<b>[{esc(state)}]</b> {esc(alert.summary)}" + (f" ({esc(where)})" if where else "")
        if alert.links:
            item += "<br>" + " · ".join(_a(link.href, link.label) for link in alert.links)
        parts.append(f"<li>{item}</li>")
    parts.append("</ul>")
    if note.more_alerts:
        parts.append(f"<p>…and {esc(plural(note.more_alerts, 'more alert'))}</p>")
    for title, links in (("Runbooks", note.runbooks), ("Dashboards", note.dashboards), ("Sources", note.sources)):
        if links:
            parts.append(f"<p><b>{title}:</b> " + " · ".join(_a(link.href, link.label) for link in links) + "</p>")
    parts.append(
        f'<p style="color:#616061;font-size:12px">Incident {esc(note.incident_id)} · revision {note.revision}'
        f" · {esc(format_time(note.at))}</p></body></html>"
    )
    return "\n".join(parts) + "\n"


def _recipients(note: Notification, configured: Iterable[str]) -> list[str]:
    """Addr-specs of the action's recipients' `email` handles, then `to`; deduplicated, order kept."""
    seen: set[str] = set()
    found: list[str] = []
    candidates = [handle for _, handle in note.handles("email")] + list(configured)
    for value in candidates:
        try:
            _, spec = parse_address(value)
        except ValueError:  # a malformed handle: skipped (the other recipients still get the message)
            continue
        if spec.lower() not in seen:
            seen.add(spec.lower())
            found.append(spec)
    return found


# ------------------------------------------------------------------------------------------- delivery

def _by_code(code: int, what: str, detail: bytes | str) -> Outcome:
    """4xx: retry; anything else (5xx, nonsense): failed. The reason quotes the server's text."""
    text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
    reason = f"SMTP {code} {what}: {_one_line(text, 200)}".rstrip(": ")
    if 400 <= code <= 499:
        return Outcome.retry(reason, status=code)
    return Outcome.failed(reason, status=code)


def _refused(refused: dict[str, tuple[int, bytes]]) -> Outcome:
    """Every recipient refused: retry if all refusals are temporary (4xx), else failed."""
    codes = [code for code, _ in refused.values()]
    detail = "; ".join(f"{rcpt}: {code} {_one_line(msg.decode('utf-8', 'replace'), 80)}"
                       for rcpt, (code, msg) in refused.items())
    reason = f"SMTP recipients refused: {_one_line(detail, 300)}"
    worst = max(codes) if codes else 550
    if codes and all(400 <= code <= 499 for code in codes):
        return Outcome.retry(reason, status=worst)
    return Outcome.failed(reason, status=worst)


@register_sink
class EmailSink:
    """Delivers actions as e-mail through an SMTP server."""

    type_name: ClassVar[str] = "email"
    config_model: ClassVar[type[SinkConfig]] = EmailSinkConfig

    def __init__(self, config: EmailSinkConfig) -> None:
        self.name = config.name
        self.config = config
        self._sender = parse_address(config.sender)[1]

    def message(self, action: Action, idempotency_key: str) -> tuple[EmailMessage, list[str]]:
        """The message for `action` and its envelope recipients (pure; deterministic for one action)."""
        note = notification(action)
        recipients = _recipients(note, self.config.to)
        title = _one_line(note.title, _TITLE_LIMIT)
        subject = f"{note.priority} {note.headline} {title}"
        if self.config.subject_prefix:
            subject = f"{self.config.subject_prefix} {subject}"
        thread = f"<{header_safe(note.incident_id)}@{MESSAGE_ID_DOMAIN}>"
        message = EmailMessage()
        message["Subject"] = _one_line(subject, 900)
        message["From"] = self.config.sender
        if recipients:
            message["To"] = ", ".join(recipients)
        message["Date"] = formatdate(action.at, usegmt=True)
        message["Message-ID"] = f"<{header_safe(idempotency_key)}@{MESSAGE_ID_DOMAIN}>"
        message["In-Reply-To"] = thread
        message["References"] = thread
        message[INCIDENT_HEADER] = _one_line(note.incident_id, 200)
        message[ACTION_HEADER] = note.kind.value
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(render_text(note))
        message.add_alternative(render_html(note), subtype="html")
        return message, recipients

    async def deliver(self, action: Action, idempotency_key: str) -> Outcome:
        try:  # rendering (the stdlib's header handling is slow) and the session both run in a worker thread
            return await asyncio.to_thread(self._deliver, action, idempotency_key)
        except Exception as exc:  # a sink never raises (the thread itself returns Outcomes)
            log.error("email send crashed", error=type(exc).__name__)
            return Outcome.failed(f"unexpected error: {type(exc).__name__}: {exc}")

    def _deliver(self, action: Action, idempotency_key: str) -> Outcome:
        try:
            message, recipients = self.message(action, idempotency_key)
        except Exception as exc:  # a sink never raises: a rendering bug is a failed delivery
            return Outcome.failed(f"cannot render message: {type(exc).__name__}: {exc}")
        if not recipients:
            return Outcome.failed("no recipient: the action names nobody with an email handle and `to` is empty")
        return self._send(message, recipients)

    def _send(self, message: EmailMessage, recipients: list[str]) -> Outcome:
        """One SMTP session (blocking; runs in a worker thread). Returns, never raises."""
        config = self.config
        smtp: smtplib.SMTP | None = None
        try:
            if config.security == "tls":
                smtp = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout,
                                        context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
            if config.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if config.username is not None and config.password is not None:
                smtp.login(config.username, config.password.get_secret_value())
            refused = smtp.send_message(message, from_addr=self._sender, to_addrs=recipients)
            with contextlib.suppress(smtplib.SMTPException, OSError):  # sent already: a failed QUIT changes nothing
                smtp.quit()
        except smtplib.SMTPAuthenticationError as exc:
            return Outcome.failed(f"SMTP authentication failed: {exc.smtp_code} "
                                  f"{_one_line(_text(exc.smtp_error), 200)}", exc.smtp_code)
        except smtplib.SMTPRecipientsRefused as exc:
            return _refused(exc.recipients)
        except smtplib.SMTPSenderRefused as exc:
            return _by_code(exc.smtp_code, "sender refused", exc.smtp_error)
        except smtplib.SMTPDataError as exc:
            return _by_code(exc.smtp_code, "message refused", exc.smtp_error)
        except smtplib.SMTPResponseException as exc:  # connect/HELO errors and other replies
            return _by_code(exc.smtp_code, "error", exc.smtp_error)
        except smtplib.SMTPNotSupportedError as exc:  # no STARTTLS or no AUTH offered: configuration
            return Outcome.failed(f"SMTP server does not support it: {exc}")
        except smtplib.SMTPServerDisconnected as exc:
            # smtplib turns a read timeout into "Connection unexpectedly closed: timed out".
            return Outcome.retry("timeout" if isinstance(exc.__context__, TimeoutError) else "SMTPServerDisconnected")
        except smtplib.SMTPException as exc:  # e.g. no usable AUTH mechanism; before OSError, its base
            return Outcome.failed(f"SMTP error: {type(exc).__name__}: {exc}")
        except ssl.SSLCertVerificationError as exc:
            return Outcome.failed(f"TLS certificate not trusted: {exc.verify_message}")
        except TimeoutError:  # before OSError: socket.timeout is a TimeoutError, and an OSError
            return Outcome.retry("timeout")
        except OSError as exc:  # refused, reset, unreachable, DNS, other TLS errors
            return Outcome.retry(type(exc).__name__)
        except Exception as exc:  # a bug or a stdlib surprise: failed, and logged
            log.error("email send crashed", error=type(exc).__name__, reason=str(exc))
            return Outcome.failed(f"unexpected error: {type(exc).__name__}: {exc}")
        finally:
            if smtp is not None:
                smtp.close()
        if refused:
            log.warning("email recipients refused", sink=self.name, refused=sorted(refused),
                        delivered=len(recipients) - len(refused))
        return Outcome.delivered()

    async def close(self) -> None:
        """Nothing to close: every delivery is its own SMTP session."""


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
