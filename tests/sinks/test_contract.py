"""The sink contract, checked over every module in sinks/: registration, docs, config, never raising."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import typing
from typing import Any

import pytest

import sinks
from bridge.plugins import SINKS, Outcome, OutcomeKind, Sink, SinkConfig
from tests.sinks.conftest import FakeReceiver, Reply, SmtpServer, deliver, make_action, make_sink

MODULES = sorted(m.name for m in pkgutil.iter_modules(sinks.__path__) if not m.name.startswith("_"))
PER_MODULE = pytest.mark.parametrize("module_name", MODULES)

#: Required config fields besides `url`, for sinks that need more to be constructed.
EXTRA_FIELDS: dict[str, dict[str, Any]] = {
    "email": {"host": "smtp.example.org", "sender": "alertbridge@example.org", "to": ["oncall@example.org"]},
}


def sink_for(module_name: str, url: str, **fields: Any) -> Any:
    return make_sink(module_name, url, **{**EXTRA_FIELDS.get(module_name, {}), **fields})


@pytest.fixture
def live(request: pytest.FixtureRequest, module_name: str) -> dict[str, Any]:
    """Fields pointing a sink that does not speak HTTP at a live local server of its own protocol."""
    if module_name == "email":
        server: SmtpServer = request.getfixturevalue("smtp_server")
        return {"host": server.host, "port": server.port, "security": "none"}
    return {}


def test_modules_found() -> None:
    """The contract runs over the shipped sinks at least (the discovery itself works)."""
    assert {"email", "log", "slack", "teams", "webhook"} <= set(MODULES)


@PER_MODULE
def test_module_is_registered_under_its_name(module_name: str) -> None:
    """`import sinks` registers each module's class in SINKS under the module's name."""
    cls = SINKS[module_name]
    assert cls.__module__ == f"sinks.{module_name}"
    assert cls.type_name == module_name
    assert module_name in sinks.__all__


@PER_MODULE
def test_module_docstring_documents_the_sink(module_name: str) -> None:
    """The module docstring opens with a one-sentence summary and states its idempotency and retries."""
    doc = importlib.import_module(f"sinks.{module_name}").__doc__
    assert doc, f"sinks/{module_name}.py has no module docstring"
    first_line = doc.strip().splitlines()[0]
    assert first_line.endswith(".") and first_line.count(". ") == 0
    assert "Idempotency key:" in doc
    assert "Retries:" in doc


@PER_MODULE
def test_config_model_is_documented_and_closed(module_name: str) -> None:
    """The config is a frozen SinkConfig rejecting unknown fields, every field described, `type` tagged."""
    model = SINKS[module_name].config_model
    assert issubclass(model, SinkConfig)
    assert model.model_config.get("extra") == "forbid" and model.model_config.get("frozen") is True
    undocumented = [name for name, f in model.model_fields.items() if not (f.description or "").strip()]
    assert undocumented == []
    assert typing.get_args(model.model_fields["type"].annotation) == (module_name,)
    assert (model.__doc__ or "").strip()


@PER_MODULE
def test_sink_satisfies_the_protocol(module_name: str) -> None:
    """A constructed sink is a Sink with name and config set, built outside any event loop."""
    sink = sink_for(module_name, "https://receiver.example/hook")
    assert isinstance(sink, Sink)
    assert sink.name == f"{module_name}-test"
    assert sink.config.name == sink.name


STATUSES = list(range(100, 600))


def expected_kind(status: int) -> set[OutcomeKind]:
    if 200 <= status <= 299:
        return {OutcomeKind.DELIVERED}
    if status in (408, 429) or status >= 500:
        return {OutcomeKind.RETRY}
    if status < 200:  # an interim answer, then the connection is dropped
        return {OutcomeKind.RETRY, OutcomeKind.FAILED}
    return {OutcomeKind.FAILED}


@PER_MODULE
def test_deliver_never_raises_for_any_status(receiver: FakeReceiver, module_name: str, live: dict[str, Any],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """For every status 100..599 deliver returns an Outcome of the documented kind, never raising."""
    sink = sink_for(module_name, receiver.url, timeout=2.0, **live)
    receiver.script(*(Reply(status, "ok") for status in STATUSES))
    action = make_action()
    # A sink without a URL never meets these statuses: a few deliveries to its live server suffice.
    attempts = len(STATUSES) if "url" in SINKS[module_name].config_model.model_fields else 3

    async def sweep() -> list[Outcome]:
        try:
            return [await sink.deliver(action, action.idempotency_key(sink.name)) for _ in range(attempts)]
        finally:
            await sink.close()

    outcomes = asyncio.run(sweep())
    if not receiver.requests:  # not an HTTP sink: it must still deliver every time
        assert {o.kind for o in outcomes} == {OutcomeKind.DELIVERED}
        return
    assert len(receiver.requests) == len(STATUSES)
    wrong = [(s, o) for s, o in zip(STATUSES, outcomes, strict=True) if o.kind not in expected_kind(s)]
    assert wrong == []


@PER_MODULE
def test_deliver_never_raises_on_timeout(receiver: FakeReceiver, module_name: str, live: dict[str, Any],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A receiver slower than the timeout gives an Outcome (retry for HTTP sinks), never an exception."""
    receiver.script(Reply(200, "ok", delay=5.0))
    outcome = deliver(sink_for(module_name, receiver.url, timeout=0.2, **live), make_action())
    assert isinstance(outcome, Outcome)
    if receiver.requests:
        assert outcome == Outcome.retry("timeout")
