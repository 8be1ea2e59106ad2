"""Helpers for tests that drive the real aiohttp app in-process (no sockets to the outside)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from aiohttp.test_utils import TestClient, TestServer

from bridge.app import create_app
from bridge.model import Action
from bridge.plugins import Outcome, SinkConfig
from bridge.runtime import Runtime
from bridge.settings import validate_settings

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_bytes(relpath: str) -> bytes:
    return (FIXTURES / relpath).read_bytes()


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: float = 1_790_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RecordingSink:
    """A sink that records every delivery and answers with scripted outcomes (default delivered)."""

    name: str = "rec"
    outcomes: list[Outcome] = field(default_factory=list)
    delivered: list[tuple[str, Action]] = field(default_factory=list)
    attempts: int = 0
    type_name: ClassVar[str] = "recording"
    config_model: ClassVar[type[SinkConfig]] = SinkConfig

    def __post_init__(self) -> None:
        self.changed = asyncio.Event()

    async def deliver(self, action: Action, idempotency_key: str) -> Outcome:
        self.attempts += 1
        outcome = self.outcomes.pop(0) if self.outcomes else Outcome.delivered(200)
        if outcome.kind.value == "delivered":
            self.delivered.append((idempotency_key, action))
        self.changed.set()
        return outcome

    async def close(self) -> None:
        return None

    def kinds(self) -> list[str]:
        return [action.kind.value for _, action in self.delivered]

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        """Wait (bounded) until `count` deliveries succeeded."""
        async def until() -> None:
            while len(self.delivered) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)


def base_config(data_dir: Path, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "server": {"data_dir": str(data_dir), "max_body_bytes": 64 * 1024},
        "sources": [
            {"name": "am", "type": "alertmanager"},
            {"name": "prom", "type": "prometheus"},
            {"name": "pd", "type": "pagerduty"},
        ],
        "sinks": [{"name": "rec", "type": "log"}],
        "routes": [{"name": "default", "group_by": ["alertname"], "group_wait": 0,
                    "group_interval": 0, "sinks": ["rec"]}],
    }
    config.update(overrides)
    return config


@contextlib.asynccontextmanager
async def running_app(config: dict[str, Any], sink: RecordingSink | None = None,
                      clock: FakeClock | None = None) -> AsyncIterator[tuple[TestClient, Runtime, RecordingSink]]:
    """Start the real app on a loopback test server; yield a client, the runtime and the sink."""
    settings = validate_settings(config)
    sink = sink if sink is not None else RecordingSink()
    runtime = Runtime(settings, clock=clock or FakeClock(), sinks={"rec": sink})
    app = create_app(settings, runtime=runtime)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, runtime, sink
    finally:
        await client.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)
