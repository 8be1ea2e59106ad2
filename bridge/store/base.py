"""The store contract: the journal of accepted input and the outbox of deliveries, backend-agnostic.

Two backends satisfy it: SQLite in the data directory (embedded mode, `bridge.store.sqlite`) and
Redis (distributed mode, a later issue). Both run the same contract tests. This module holds only
the Protocols, the record dataclasses and the JSON form of an action; no backend is imported here.

Journal
    A write-ahead log of what the bridge accepted, in the order it accepted it. `append` returns
    only once the entry is durable, so a 2xx to a monitoring tool means "journaled". Sequence
    numbers start at 1 and only grow. `entries()` streams the log back at startup to rebuild the
    engine's state; the engine is deterministic, so the rebuilt state equals the lost one.

Outbox
    Every (action, sink) pair to deliver, keyed by its idempotency key
    (`Action.idempotency_key(sink)`): enqueueing the same key twice is a no-op, which is what lets
    a restart rebuild and re-enqueue the same actions without duplicate pages. A delivery is
    `pending` until the sink accepted it (`delivered`) or it will never be accepted (`dead`).
    `due()` returns at most the oldest pending delivery of each (sink, incident), so a later
    action of an incident (resolve) never reaches a sink before an earlier one (open) succeeded
    or went dead.

Async vs sync: everything the event loop calls while serving is `async` (a backend must never
block the loop on an fsync or a network round trip); `entries()` and `last_seq()` are sync because
they run once, at startup, before the bridge serves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, runtime_checkable

import orjson

from bridge.model import (
    Action,
    ActionKind,
    Alert,
    IncidentStatus,
    IncidentView,
    Recipient,
    parse_time,
)

__all__ = [
    "CommitHook",
    "Delivery",
    "DeliveryState",
    "Journal",
    "JournalEntry",
    "LazyAction",
    "NewDelivery",
    "Outbox",
    "Store",
    "action_from_dict",
    "action_to_dict",
    "new_deliveries",
    "settle",
]


# ------------------------------------------------------------------------------------------- records

@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One accepted input, as journaled.

    `seq` is assigned by the store (1, 2, 3, ... in commit order); `at` is when the bridge accepted
    it (epoch seconds); `kind` says what it is ("alerts", "acknowledge", "resolve", ...); `source`
    is the source name or "api"; `data` is its JSON form (for "alerts": `{"alerts": [Alert.to_dict()]}`).
    """

    seq: int
    at: float
    kind: str
    source: str
    data: dict[str, Any]


class DeliveryState(StrEnum):
    """Where a delivery is in its life. A `str`, so `delivery.state == "dead"` works."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One action to deliver to one sink, with its delivery history.

    `action` is `action_to_dict(action)`; `attempts` counts failed attempts (reset by
    `retry_dead`); `next_at` is when the next attempt is due; `last_error` is the reason of the
    last failed attempt ("" if none).
    """

    id: int
    idempotency_key: str
    sink: str
    incident_id: str
    revision: int
    kind: str
    action: dict[str, Any]
    state: DeliveryState
    attempts: int
    next_at: float
    created_at: float
    updated_at: float
    last_error: str


class NewDelivery(NamedTuple):
    """What `Outbox.enqueue` takes: one (action, sink) pair. A plain tuple works too."""

    idempotency_key: str
    sink: str
    incident_id: str
    revision: int
    kind: str
    action: dict[str, Any]


# ------------------------------------------------------------------------------- action <-> JSON form

def action_to_dict(action: Action) -> dict[str, Any]:
    """The JSON form of an action stored in the outbox; `action_from_dict` is its inverse.

    `at` is kept as epoch seconds (exact); the incident is `IncidentView.to_dict()`, whose times are
    RFC 3339 with millisecond precision, so incident times round-trip exactly to the millisecond.
    """
    return {
        "kind": action.kind.value,
        "at": action.at,
        "reason": action.reason,
        "sinks": list(action.sinks),
        "incident": action.incident.to_dict(),
        "recipients": [r.to_dict() for r in action.recipients],
    }


def action_from_dict(data: Mapping[str, Any]) -> Action:
    """Rebuild an `Action` from `action_to_dict`'s output. Raises KeyError/ValueError if malformed."""
    at = data["at"]
    return Action(
        kind=ActionKind(data["kind"]),
        at=_required_time(at) if isinstance(at, str) else float(at),
        incident=_incident_from_dict(data["incident"]),
        sinks=tuple(data.get("sinks") or ()),
        reason=data.get("reason", ""),
        recipients=tuple(Recipient(r["name"], dict(r.get("handles") or {}))
                         for r in data.get("recipients") or ()),
    )


def _incident_from_dict(data: Mapping[str, Any]) -> IncidentView:
    # The inverse of IncidentView.to_dict(); "alerts_firing" is derived there, so it is not read.
    resolved_at = data.get("resolved_at")
    return IncidentView(
        id=data["id"],
        key=data["key"],
        route=data["route"],
        status=IncidentStatus(data["status"]),
        priority=data["priority"],
        priority_reason=data.get("priority_reason", ""),
        pool=data.get("pool"),
        title=data.get("title", ""),
        revision=int(data["revision"]),
        opened_at=_required_time(data["opened_at"]),
        updated_at=_required_time(data["updated_at"]),
        resolved_at=None if resolved_at is None else _required_time(resolved_at),
        acknowledged_by=data.get("acknowledged_by"),
        alerts=tuple(Alert.from_dict(a) for a in data.get("alerts") or ()),
        group_labels=dict(data.get("group_labels") or {}),
        root_cause=data.get("root_cause"),
        assignee=data.get("assignee"),
        escalation_level=int(data.get("escalation_level") or 0),
        sla={name: _required_time(at) for name, at in (data.get("sla") or {}).items()},
    )


def _required_time(value: str) -> float:
    parsed = parse_time(value)
    if parsed is None:
        raise ValueError(f"time {value!r} is unset")
    return parsed


def new_deliveries(action: Action) -> list[NewDelivery]:
    """One outbox row per sink of `action`, keyed by `action.idempotency_key(sink)`."""
    form = action_to_dict(action)
    incident = action.incident
    return [
        NewDelivery(action.idempotency_key(sink), sink, incident.id, incident.revision,
                    action.kind.value, form)
        for sink in action.sinks
    ]


# ------------------------------------------------------------------------------ backends' shared parts

#: Called on the event loop with each committed batch of journal entries, in seq order.
CommitHook = Callable[[list[JournalEntry]], None]


class LazyAction(Mapping[str, Any]):
    """An outbox row's action JSON, decoded on first use (both backends' `Delivery.action`).

    `due()` reads every head-of-line row, including ones already in flight that the dispatcher then
    skips; decoding each large action there was the biggest single cost in the ingest profile.
    """

    __slots__ = ("_blob", "_data")

    def __init__(self, blob: bytes) -> None:
        self._blob = blob
        self._data: dict[str, Any] | None = None

    def _decoded(self) -> dict[str, Any]:
        if self._data is None:
            self._data = orjson.loads(self._blob)
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __eq__(self, other: object) -> bool:
        return self._decoded() == (dict(other) if isinstance(other, Mapping) else other)

    __hash__ = None  # type: ignore[assignment]



def settle(hook: Any, entries: Sequence[JournalEntry], outcomes: Sequence[tuple[Any, Any, BaseException | None]],
           is_append: Any, log: Any) -> None:
    """After a write batch, on the event loop: run the `on_commit` hook for the committed entries,
    then resume each awaiting operation (`op.future`) with its value or error. An append whose
    entries the hook failed on gets the hook's error: its input is journaled but not applied."""
    hook_error: Exception | None = None
    if entries and hook is not None:
        try:
            hook(list(entries))
        except Exception as exc:
            hook_error = exc
            log.exception("journal commit hook failed", first_seq=entries[0].seq, last_seq=entries[-1].seq)
    for op, value, error in outcomes:
        future = op.future
        if future.done():  # the awaiting request was cancelled
            continue
        if error is not None:
            future.set_exception(error)
        elif hook_error is not None and is_append(op):
            future.set_exception(hook_error)
        else:
            future.set_result(value)


# ---------------------------------------------------------------------------------------- contracts

@runtime_checkable
class Journal(Protocol):
    """The write-ahead log of accepted input."""

    async def append(self, kind: str, source: str, data: dict[str, Any], at: float) -> JournalEntry:
        """Journal one input; returns once it is durable. Raises `StoreUnavailable` if it is not.

        `data` must be JSON-able (TypeError otherwise, before anything is written).
        """
        ...

    def entries(self, after_seq: int = 0) -> Iterator[JournalEntry]:
        """Stream the entries with `seq > after_seq`, in seq order (startup rebuild)."""
        ...

    def last_seq(self) -> int:
        """The highest committed seq; 0 for an empty journal."""
        ...


@runtime_checkable
class Outbox(Protocol):
    """The durable queue of deliveries and their ledger (delivered, dead letters)."""

    async def enqueue(self, deliveries: Sequence[NewDelivery], now: float) -> int:
        """Insert new pending deliveries (due at `now`); known idempotency keys are skipped.

        Returns how many were new. Returns once they are durable.
        """
        ...

    def enqueue_nowait(self, deliveries: Sequence[NewDelivery], now: float) -> asyncio.Future[int]:
        """`enqueue` for synchronous callers on the event loop (the journal's commit hook).

        Never blocks; calls are applied in call order; the future resolves as `enqueue` would.
        """
        ...

    async def due(self, now: float, limit: int) -> list[Delivery]:
        """Pending deliveries with `next_at <= now`, oldest first, at most one per (sink, incident).

        Only the oldest pending delivery of each (sink, incident) is eligible: if it is not yet due,
        nothing of that pair is.
        """
        ...

    async def next_due_at(self) -> float | None:
        """The earliest `next_at` among the deliveries `due` could return; None if nothing is pending."""
        ...

    async def mark_delivered(self, delivery_id: int, now: float) -> bool:
        """pending -> delivered. False if it was not pending."""
        ...

    async def mark_retry(self, delivery_id: int, next_at: float, error: str, now: float) -> bool:
        """Record a failed attempt (attempts += 1) and when to try again. False if not pending."""
        ...

    async def mark_dead(self, delivery_id: int, error: str, now: float, *, attempted: bool = True) -> bool:
        """pending -> dead. `attempted` counts the final attempt (False: none was made)."""
        ...

    async def dead_letters(self, limit: int = 100, offset: int = 0) -> list[Delivery]:
        """Dead deliveries, newest first."""
        ...

    async def get_delivery(self, delivery_id: int) -> Delivery | None:
        """One delivery by id, any state."""
        ...

    async def retry_dead(self, delivery_id: int, now: float) -> bool:
        """dead -> pending, due at `now`, attempts reset. False if it was not dead."""
        ...

    async def pending_count(self) -> int:
        """How many deliveries are pending."""
        ...

    async def counts(self) -> dict[str, int]:
        """Deliveries per state; every `DeliveryState` value is a key."""
        ...


@runtime_checkable
class Store(Journal, Outbox, Protocol):
    """A backend: the journal and the outbox together."""

    async def aclose(self) -> None:
        """Finish queued writes, then release the backend. Later writes raise StoreUnavailable."""
        ...
