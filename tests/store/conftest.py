"""Store fixtures: one contract, every backend.

`backend` is parametrized over ["sqlite", "redis"]. It is a factory rather than an opened store,
because a store's async connections belong to the event loop that uses them: `backend.run(body)`
opens a store, runs `await body(store)` on a fresh loop and closes the store; `backend.open()`
opens another store on the same data (the same file, or the same Redis prefix), which is how
"after a restart" is written. Redis tests share one session server and get a unique key prefix
each, so no test sees another's keys and none needs a FLUSHALL.

The record factories (`alert`, `action`, `delivery`) are plain functions, imported by the tests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

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
from bridge.store import NewDelivery, SQLiteStore, Store
from bridge.store.redis import RedisStore
from tests.redistools import RedisServer, running_redis

T = TypeVar("T")
T0 = 1_700_000_000.0
BACKENDS = ["sqlite", "redis"]


def alert(n: int = 1, status: AlertStatus = AlertStatus.FIRING) -> Alert:
    return Alert(
        source="am", fingerprint=f"fp{n}", key=f"fp{n}:1", status=status, severity=Severity.CRITICAL,
        summary=f"disk full {n}", starts_at=T0 + 0.25, labels={"host": f"h{n}"},
        annotations={"runbook": "r"}, links=(Link("https://x/1", "graph"),), raw_ref="raw/1",
    )


def action(kind: ActionKind = ActionKind.OPEN, incident: str = "inc1", revision: int = 1,
           sinks: tuple[str, ...] = ("pager",)) -> Action:
    view = IncidentView(
        id=incident, key=f"key-{incident}", route="db", status=IncidentStatus.TRIGGERED, priority="P1",
        priority_reason="critical", pool="dba", title="Disk full", revision=revision,
        opened_at=T0 + 0.123, updated_at=T0 + 1.5, resolved_at=None, acknowledged_by=None,
        alerts=(alert(1), alert(2, AlertStatus.RESOLVED)), group_labels={"cluster": "c1"},
    )
    return Action(kind=kind, at=T0 + 1.234567, incident=view, sinks=sinks, reason="opened by grouping")


def delivery(key: str, sink: str = "pager", incident: str = "inc1", revision: int = 1,
             kind: str = "open") -> NewDelivery:
    return NewDelivery(key, sink, incident, revision, kind, {"kind": kind, "n": key})


@dataclass
class Backend:
    """Opens stores of one kind on one location; `name` is "sqlite" or "redis"."""

    name: str
    open: Callable[..., Any]  # (**store kwargs) -> Store

    def run(self, body: Callable[[Any], Awaitable[T]], **kwargs: Any) -> T:
        """Run `body(store)` on a fresh event loop with a newly opened store, closing it after."""

        async def main() -> T:
            store = self.open(**kwargs)
            try:
                return await body(store)
            finally:
                await store.aclose()

        return asyncio.run(main())


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session's shared-server tests (started only if one asks for it)."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def redis_backend(server: RedisServer, prefix: str | None = None) -> Backend:
    """Stores on `server` under a fresh key prefix (or `prefix`)."""
    prefix = prefix or f"test-{uuid.uuid4().hex[:12]}"

    def open_store(**kwargs: Any) -> Store:
        kwargs.setdefault("timeout", 2.0)
        kwargs.setdefault("connect_timeout", 1.0)
        return RedisStore(server.url, prefix=prefix, **kwargs)

    return Backend("redis", open_store)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A store factory for each backend: SQLite in tmp_path, Redis on the session server."""
    if request.param == "sqlite":
        return Backend("sqlite", lambda **kwargs: SQLiteStore(tmp_path, **kwargs))
    return redis_backend(request.getfixturevalue("redis_server"))
