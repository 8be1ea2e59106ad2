"""Shared helpers for sink tests: an action factory, a scripted fake receiver, a sync deliver runner.

Neither pytest-asyncio nor aiohttp's pytest plugin is installed, so tests are plain functions that
drive the sink with `asyncio.run`. The fake receiver runs its own event loop in a thread: it is a
real HTTP server on 127.0.0.1, independent of the loop each test runs the sink in.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import socket
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from multidict import CIMultiDict

import sinks  # noqa: F401  (imported for its side effect: registers every sink in SINKS)
from bridge.model import (
    Action,
    ActionKind,
    Alert,
    AlertStatus,
    IncidentStatus,
    IncidentView,
    Link,
    Severity,
)
from bridge.plugins import SINKS, Outcome

#: 2024-03-04T09:12:03.123Z: the fixed "now" of every test object.
T0 = 1709543523.123
HOOK_PATH = "/hooks/T000/B000/secret-token"

# --------------------------------------------------------------------------------------- test objects


def make_alert(n: int = 0, **overrides: Any) -> Alert:
    """Alert number `n` of a test incident: firing, critical, with a source link and a runbook."""
    values: dict[str, Any] = {
        "source": "alertmanager",
        "fingerprint": f"fp{n:04d}",
        "key": f"fp{n:04d}@{int(T0)}",
        "status": AlertStatus.FIRING,
        "severity": Severity.CRITICAL,
        "summary": f"Instance db-{n} is down",
        "starts_at": T0 - 600 + n,
        "labels": {"alertname": "InstanceDown", "instance": f"db-{n}:9100", "service": "payments"},
        "annotations": {"runbook_url": f"https://runbooks.example.org/instance-down#{n}"},
        "service": "payments",
        "resource": f"db-{n}",
        "links": (Link(f"http://prometheus.example.org:9090/graph?g0.expr=up%7Bn%3D{n}%7D&g0.tab=1",
                       "source"),),
    }
    values.update(overrides)
    return Alert(**values)


def make_incident(alerts: tuple[Alert, ...] | None = None, n_alerts: int = 2,
                  **overrides: Any) -> IncidentView:
    """An open P1 incident on route `db-oncall` holding `alerts` (default: `n_alerts` firing ones)."""
    values: dict[str, Any] = {
        "id": "inc-7f3a",
        "key": "route=db-oncall/alertname=InstanceDown",
        "route": "db-oncall",
        "status": IncidentStatus.TRIGGERED,
        "priority": "P1",
        "priority_reason": "severity critical on tier-1 service payments",
        "pool": "databases",
        "title": "InstanceDown (payments)",
        "revision": 1,
        "opened_at": T0 - 300,
        "updated_at": T0,
        "resolved_at": None,
        "acknowledged_by": None,
        "alerts": alerts if alerts is not None else tuple(make_alert(i) for i in range(n_alerts)),
        "group_labels": {"alertname": "InstanceDown"},
    }
    values.update(overrides)
    return IncidentView(**values)


def make_action(kind: ActionKind = ActionKind.OPEN, *, reason: str | None = None, at: float = T0,
                **incident: Any) -> Action:
    """An action of `kind`, its incident in the state that kind implies (acked by alice, resolved...)."""
    state: dict[str, Any] = {}
    if kind is ActionKind.UPDATE:
        state = {"revision": 3}
    elif kind is ActionKind.ACKNOWLEDGE:
        state = {"revision": 4, "status": IncidentStatus.ACKNOWLEDGED, "acknowledged_by": "alice"}
    elif kind is ActionKind.RESOLVE:
        alerts = tuple(make_alert(i, status=AlertStatus.RESOLVED, ends_at=T0) for i in range(2))
        state = {"revision": 5, "status": IncidentStatus.RESOLVED, "resolved_at": T0, "alerts": alerts}
    state.update(incident)
    default_reason = {
        ActionKind.OPEN: "new incident from rule group-by-alertname",
        ActionKind.UPDATE: "alert fp0002 joined",
        ActionKind.ACKNOWLEDGE: "acknowledged through the API",
        ActionKind.RESOLVE: "all alerts resolved",
        ActionKind.ASSIGN: "assigned to alice: round robin over 2 on-call members under quota",
        ActionKind.ESCALATE: "not acknowledged within 5m: escalated to tier 2 (bob)",
        ActionKind.SLA_WARNING: "80% of the 15m time-to-acknowledge target for P1 has passed",
        ActionKind.SLA_BREACH: "the 15m time-to-acknowledge target for P1 was breached",
    }[kind]
    return Action(kind=kind, at=at, incident=make_incident(**state), sinks=("under-test",),
                  reason=default_reason if reason is None else reason)


ALL_KINDS = pytest.mark.parametrize("kind", list(ActionKind), ids=[k.value for k in ActionKind])


def make_sink(type_name: str, url: str = "", **fields: Any) -> Any:
    """A registered sink of `type_name` named `<type>-test`, pointed at `url` when it has one."""
    cls = SINKS[type_name]
    data: dict[str, Any] = {"name": f"{type_name}-test", "type": type_name, **fields}
    if "url" in cls.config_model.model_fields:
        data.setdefault("url", url)
    return cls(cls.config_model(**data))


def deliver(sink: Any, action: Action, key: str | None = None) -> Outcome:
    """Run one `sink.deliver` (then `sink.close`) in a fresh event loop and return its Outcome."""

    async def go() -> Outcome:
        try:
            return await sink.deliver(action, key or action.idempotency_key(sink.name))
        finally:
            await sink.close()

    return asyncio.run(go())


# ------------------------------------------------------------------------------------- fake receiver


@dataclass(frozen=True)
class Reply:
    """One scripted answer. A status below 200 is sent raw, then the connection is dropped."""

    status: int = 200
    body: bytes | str = b"ok"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Request:
    """One request as the fake receiver saw it."""

    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class FakeReceiver:
    """A real HTTP server on 127.0.0.1 (own thread and loop) answering from a script, recording all."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.default = Reply()
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._release: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._serve, name="fake-receiver", daemon=True)
        self._ready = threading.Event()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The hook URL sinks are pointed at (shaped like a Slack webhook path)."""
        return self.base_url + HOOK_PATH

    def script(self, *replies: Reply) -> None:
        """Queue answers for the next requests; once they are used up, `default` answers."""
        with self._lock:
            self._script.extend(replies)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            self.requests.append(Request(request.method, request.path, CIMultiDict(request.headers), body))
            reply = self._script.popleft() if self._script else self.default
        if reply.delay:
            assert self._release is not None
            with contextlib.suppress(TimeoutError):  # released at teardown: never outlives its test
                await asyncio.wait_for(self._release.wait(), reply.delay)
        if reply.status < 200:
            transport = request.transport
            assert transport is not None
            # "Connection: close" so a client taking a 101 as final does not reuse the dropped connection.
            transport.write(f"HTTP/1.1 {reply.status} Interim\r\nConnection: close\r\n\r\n".encode())
            transport.close()
            raise asyncio.CancelledError  # the connection is gone; aiohttp treats this as a disconnect
        payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
        no_body = reply.status in (204, 304)
        return web.Response(status=reply.status, body=None if no_body else payload,
                            headers=dict(reply.headers))

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()
        assert self._runner is not None
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    async def _start(self) -> None:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake receiver did not start")

    def stop(self) -> None:
        release = self._release
        if release is not None:
            self._loop.call_soon_threadsafe(release.set)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def receiver() -> Iterator[FakeReceiver]:
    """A started fake receiver; script it with `receiver.script(Reply(...))`, read `receiver.requests`."""
    fake = FakeReceiver()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def closed_url() -> str:
    """A loopback URL on a port nothing listens on (bound, then released): connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{HOOK_PATH}"


# ---------------------------------------------------------------------------------- fake SMTP server


def free_port() -> int:
    """A loopback port nothing listens on right now (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass(frozen=True)
class Mail:
    """One message as the SMTP server accepted it: the envelope and the raw bytes."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes

    def message(self) -> Any:
        """The message parsed with the modern e-mail policy (an `email.message.EmailMessage`)."""
        return email.parser.BytesParser(policy=email.policy.default).parsebytes(self.content)


class SmtpRecorder:
    """An aiosmtpd handler that records accepted mail and answers from a script.

    `rcpt_replies` maps a recipient (or "*" for all) to the reply its RCPT gets, e.g. "550 5.1.1 no
    such user"; `data_reply` replaces the DATA answer; `credentials` are the accepted (user, password).
    """

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.rcpt_replies: dict[str, str] = {}
        self.data_reply: str | None = None
        self.credentials: tuple[str, str] | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        reply = self.rcpt_replies.get(address) or self.rcpt_replies.get("*")
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply is not None:
            return self.data_reply
        content = envelope.original_content or envelope.content
        self.mails.append(Mail(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(content)))
        return "250 Message accepted for delivery"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = (self.credentials is not None and isinstance(auth_data, LoginPassword)
              and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials)
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 235/535 reply


@dataclass(frozen=True)
class SmtpServer:
    """A running local SMTP server and its recorder."""

    host: str
    port: int
    handler: SmtpRecorder

    @property
    def mails(self) -> list[Mail]:
        return self.handler.mails


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real aiosmtpd server on 127.0.0.1 (own thread); plain SMTP, AUTH offered without TLS."""
    handler = SmtpRecorder()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), authenticator=handler.authenticate,
                            auth_require_tls=False)
    controller.start()  # returns once the server answers
    try:
        yield SmtpServer("127.0.0.1", controller.port, handler)
    finally:
        controller.stop()
