"""The journal-first ingest pipeline: durable, then applied, then answered.

Every input that changes state (a webhook body, an acknowledge, a manual resolve) is appended to
the journal. The journal commits in groups and hands each committed batch back, in journal order,
to `apply_committed`, which feeds the engine and enqueues the resulting actions in the outbox;
only then does the request that carried it get its answer. So:

- a 2xx means the input is on disk and its effects are in the engine;
- the engine sees inputs in exactly journal order, so rebuilding state after a restart is
  replaying the journal through the same engine (`rebuild`), with the same incident ids and
  revisions, and the outbox's idempotency keys make the re-enqueued actions no-ops.

Webhook entries journal the raw body, not our parse of it: the journal is the recorded stream,
`{"at", "source", "body"}`, exactly the format `alertbridge replay` reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bridge.engine import Engine
from bridge.errors import PayloadInvalid
from bridge.links import LinkClaim, UsedLinks
from bridge.log import get_logger
from bridge.model import Action, Alert
from bridge.plugins import Parsed, Source

__all__ = ["ENTRY_ACK", "ENTRY_OVERRIDE", "ENTRY_RESOLVE", "ENTRY_SILENCE", "ENTRY_TICK", "ENTRY_WEBHOOK",
           "ENTRY_WINDOW", "Applier"]

ENTRY_WEBHOOK = "webhook"
ENTRY_ACK = "acknowledge"
ENTRY_RESOLVE = "resolve"
ENTRY_SILENCE = "silence"  # {"op": "set", "silence": {...}} | {"op": "expire", "id": ...}
ENTRY_WINDOW = "maintenance"  # {"op": "set", "window": {...}} | {"op": "delete", "id": ...}
ENTRY_OVERRIDE = "override"  # {"op": "set", "override": {schedule, id, ...}} | {"op": "delete", "id": ...}
ENTRY_TICK = "tick"  # {}: the clock reached `at` (distributed mode: engine timers fire in journal order)

log = get_logger("alertbridge.ingest")


class Applier:
    """Applies journal entries to the engine, in order, and passes the actions on."""

    def __init__(self, engine: Engine, sources: Mapping[str, Source],
                 on_actions: Callable[[list[Action]], None], *, keep: Callable[[Alert], bool] | None = None) -> None:
        self.engine = engine
        self.sources = sources
        self.on_actions = on_actions
        #: which alerts of a webhook this engine takes (distributed mode: its partition's); None: all
        self.keep = keep
        #: signed links already used (rebuilt from the journal's acknowledge/resolve entries)
        self.used_links = UsedLinks()
        # parses made while the request was validated, so a live entry is not parsed twice. Keyed
        # by what the journal hands back (source, time, body): parse is pure in exactly those, so
        # two identical keys have identical parses. A rebuild parses again from the recorded body.
        self._parsed: dict[tuple[str, float, str], list[Parsed]] = {}

    def remember(self, source: str, at: float, data: Mapping[str, Any], parsed: Parsed) -> None:
        self._parsed.setdefault((source, at, data["body"]), []).append(parsed)

    def forget(self, source: str, at: float, data: Mapping[str, Any]) -> None:
        key = (source, at, data["body"])
        found = self._parsed.get(key)
        if found:
            found.pop()
            if not found:
                del self._parsed[key]

    def _take(self, source: str, at: float, data: Mapping[str, Any]) -> Parsed | None:
        key = (source, at, data.get("body"))
        found = self._parsed.get(key)  # type: ignore[arg-type]
        if not found:
            return None
        parsed = found.pop()
        if not found:
            del self._parsed[key]  # type: ignore[arg-type]
        return parsed

    def apply(self, kind: str, source: str, data: Mapping[str, Any], at: float) -> list[Action]:
        engine = self.engine
        if kind == ENTRY_WEBHOOK:
            parsed = self._take(source, at, data)
            if parsed is None:
                parsed = self._reparse(source, data, at)
                if parsed is None:
                    return engine.advance(at)
            alerts = parsed.alerts if self.keep is None else [a for a in parsed.alerts if self.keep(a)]
            actions = engine.submit(alerts, at, sender_group=parsed.sender_group,
                                    group_resolved=parsed.group_resolved)
            if parsed.acknowledge:
                actions.extend(engine.acknowledge_alerts(parsed.acknowledge, source, at))
            return actions
        if kind in (ENTRY_ACK, ENTRY_RESOLVE):
            token = data.get("token")
            if token is not None:  # a signed link: used once, however often the journal is replayed
                claim = LinkClaim(data["incident"], "acknowledge" if kind == ENTRY_ACK else "resolve",
                                  int(data.get("token_expires") or 0), 0, token)
                if not self.used_links.use(claim, at):
                    return engine.advance(at)
                self.used_links.prune(at)
            if kind == ENTRY_ACK:
                return engine.acknowledge(data["incident"], data.get("by") or "api", at)
            return engine.resolve(data["incident"], data.get("by") or "api", at)
        if kind == ENTRY_SILENCE:
            if data.get("op") == "set":
                return engine.set_silence(data["silence"], at)[0]
            return engine.expire_silence(data["id"], at)
        if kind == ENTRY_WINDOW:
            if data.get("op") == "set":
                return engine.set_window(data["window"], at)
            return engine.delete_window(data["id"], at)
        if kind == ENTRY_OVERRIDE:
            if data.get("op") == "set":
                return engine.set_override(data["override"], at)
            return engine.delete_override(data["id"], at)
        if kind != ENTRY_TICK:
            log.warning("journal entry of unknown kind skipped", kind=kind)
        return engine.advance(at)

    def apply_batch(self, entries: Iterable[Any]) -> None:
        """The journal's on-commit hook: apply committed entries in journal order."""
        actions: list[Action] = []
        for entry in entries:
            actions.extend(self.apply(entry.kind, entry.source, entry.data, entry.at))
        decisions = self.engine.decisions
        if decisions:
            for decision in decisions:
                log.debug("alert dropped", **decision)
            decisions.clear()
        if actions:
            self.on_actions(actions)

    def _reparse(self, source_name: str, data: Mapping[str, Any], at: float) -> Parsed | None:
        source = self.sources.get(source_name)
        if source is None:
            log.warning("journal entry for a source no longer configured skipped", source=source_name)
            return None
        body = data.get("body", "")
        try:
            return source.parse(body.encode() if isinstance(body, str) else body, {}, at)
        except PayloadInvalid as err:
            log.warning("journal entry no longer parses; skipped", source=source_name, field=err.field,
                        reason=err.reason)
            return None
