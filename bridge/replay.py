"""Replay a recorded stream through the same sources and engine, on the recorded clock.

Input: JSON lines `{"at": seconds-or-RFC3339, "source": NAME, "body": <the tool's JSON>}` (plain or
gzip), and the operations people made through the API, `{"at", "op": "acknowledge" | "resolve" |
"silence" | "maintenance", "data": {...}}` (`alertbridge export` writes both from a data directory's
journal; acknowledge and resolve may also be written `{"at", "op", "incident", "by"}`).
Numeric `at` values are seconds on the stream's own clock, offset by `start` (epoch seconds) to give
the engine its wall-clock time; RFC 3339 values are absolute. No network, no sinks, no
journal: as fast as the CPU allows.

Output: incident lifecycle events, one JSON object per line, in the format of
`../shared/storm/README.md`: `{"incident_id", "action", "at", "priority", "pool", "alert_keys"}`
with `action` one of open, page, update, resolve. An `open` is always followed by a `page` to the
incident's pool (opening is what pages).
"""

from __future__ import annotations

import gzip
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from bridge.engine import Engine
from bridge.errors import PayloadInvalid
from bridge.ingest import (
    ENTRY_ACK,
    ENTRY_OVERRIDE,
    ENTRY_RESOLVE,
    ENTRY_SILENCE,
    ENTRY_TICK,
    ENTRY_WEBHOOK,
    ENTRY_WINDOW,
    Applier,
)
from bridge.model import Action, ActionKind, parse_time
from bridge.plugins import Source

__all__ = ["ReplayError", "ReplaySummary", "events_for", "journal_records", "open_binary", "replay", "stream_lines"]


_OPS = (ENTRY_ACK, ENTRY_RESOLVE, ENTRY_SILENCE, ENTRY_WINDOW, ENTRY_TICK, ENTRY_OVERRIDE)


class ReplayError(Exception):
    """A line could not be replayed and `strict` was asked for."""


@dataclass(slots=True)
class ReplaySummary:
    lines: int = 0
    applied: int = 0
    alerts: int = 0
    by_source: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> count
    first_errors: list[str] = field(default_factory=list)
    events: int = 0
    pages: int = 0
    incidents: int = 0
    seconds: float = 0.0

    def skip(self, reason: str, message: str) -> None:
        self.skipped[reason] += 1
        if len(self.first_errors) < 10:
            self.first_errors.append(message)

    def render(self) -> str:
        rate = self.lines / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"replayed {self.lines} lines in {self.seconds:.2f} s ({rate:,.0f} lines/s)",
            f"  applied: {self.applied} deliveries, {self.alerts} alerts "
            f"({', '.join(f'{k}: {v}' for k, v in sorted(self.by_source.items())) or 'none'})",
            f"  skipped: {sum(self.skipped.values())}"
            + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(self.skipped.items()))})" if self.skipped else ""),
            f"  output: {self.events} events, {self.incidents} incidents, {self.pages} pages",
        ]
        lines += [f"  - {e}" for e in self.first_errors]
        return "\n".join(lines)


def open_binary(path: str | Path, mode: str = "rb") -> IO[bytes]:
    """Open a file for binary reading or writing, gzip'd when its name ends in .gz."""
    if str(path).endswith(".gz"):
        return gzip.open(path, mode)  # type: ignore[return-value]
    return open(path, mode)


def stream_lines(handle: Iterable[str | bytes]) -> Iterator[tuple[int, str | bytes]]:
    for number, line in enumerate(handle, 1):
        if line.strip():
            yield number, line


def events_for(action: Action, offset: float) -> list[dict[str, Any]]:
    """The storm events format for one engine action (`offset` is subtracted from times)."""
    view = action.incident
    base = {
        "incident_id": view.id,
        "at": round(action.at - offset, 3),
        "priority": view.priority,
        "pool": view.pool,
        "alert_keys": [alert.key for alert in view.alerts],
    }
    if action.kind is ActionKind.OPEN:
        return [{**base, "action": "open"}, {**base, "action": "page"}]
    if action.kind is ActionKind.RESOLVE:
        return [{**base, "action": "resolve"}]
    return [{**base, "action": "update"}]


def replay(lines: Iterable[tuple[int, str | bytes]], engine: Engine, sources: dict[str, Source],
           write: Callable[[dict[str, Any]], None], *, start: float = 0.0, strict: bool = False,
           drain: float = 0.0) -> ReplaySummary:
    """Run the stream through `engine`; call `write` for every output event."""
    summary = ReplaySummary()
    began = time.perf_counter()
    incidents: set[str] = set()
    collected: list[Action] = []
    applier = Applier(engine, sources, collected.extend)
    last = start

    def emit(actions: list[Action]) -> None:
        for action in actions:
            incidents.add(action.incident.id)
            for event in events_for(action, start):
                summary.events += 1
                summary.pages += event["action"] == "page"
                write(event)

    for number, line in lines:
        summary.lines += 1
        try:
            record = orjson.loads(line)
            at_raw, op = record["at"], record.get("op")
            if op is None:
                source_name, body = record["source"], record["body"]
            elif op not in _OPS:
                raise ValueError(f"unknown operation {op!r}")
            if isinstance(at_raw, bool) or not isinstance(at_raw, int | float | str):
                raise ValueError("'at' must be seconds or an RFC 3339 time")
            at = start + float(at_raw) if not isinstance(at_raw, str) else parse_time(at_raw)
            if at is None:
                raise ValueError("'at' is the zero time")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
            message = f"line {number}: not a stream record: {err}"
            if strict:
                raise ReplayError(message) from None
            summary.skip("invalid_line", message)
            continue
        if op is not None:
            at = max(at, last)
            last = at
            op_data = record.get("data")
            if not isinstance(op_data, dict):  # the short form of acknowledge / resolve lines
                op_data = {"incident": record.get("incident"), "by": record.get("by")}
            try:
                emit(applier.apply(op, "api", op_data, at))
            except (KeyError, TypeError, ValueError) as err:
                message = f"line {number}: operation {op} could not be applied: {err}"
                if strict:
                    raise ReplayError(message) from None
                summary.skip("invalid_operation", message)
                continue
            summary.applied += 1
            continue
        source = sources.get(source_name) if isinstance(source_name, str) else None
        if source is None:
            message = f"line {number}: source {source_name!r} is not in the config"
            if strict:
                raise ReplayError(message)
            summary.skip("unknown_source", message)
            continue
        at = max(at, last)
        last = at
        raw = body.encode() if isinstance(body, str) else orjson.dumps(body)
        try:
            parsed = source.parse(raw, {}, at)
        except PayloadInvalid as err:
            message = f"line {number}: {source_name} rejected it: {err.field}: {err.reason}"
            if strict:
                raise ReplayError(message) from None
            summary.skip(f"rejected:{source_name}", message)
            continue
        data: dict[str, Any] = {"body": ""}
        applier.remember(source_name, at, data, parsed)
        emit(applier.apply(ENTRY_WEBHOOK, source_name, data, at))
        summary.applied += 1
        summary.alerts += len(parsed.alerts)
        summary.by_source[source_name] += 1
    emit(engine.advance(last + drain))
    summary.incidents = len(incidents)
    summary.seconds = time.perf_counter() - began
    return summary


def journal_records(entries: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """A data directory's journal as replay input lines (absolute epoch-second times)."""
    for entry in entries:
        if entry.kind == ENTRY_WEBHOOK:
            body = entry.data.get("body", "")
            try:
                decoded: Any = orjson.loads(body)
            except orjson.JSONDecodeError:
                decoded = body
            yield {"at": entry.at, "source": entry.source, "body": decoded}
        elif entry.kind in _OPS:
            yield {"at": entry.at, "op": entry.kind, "data": entry.data}
