"""Silences: mute alerts that match a set of label matchers for a time, with Alertmanager's semantics.

A silence has matchers (all must match; regexes anchored; pseudo-labels `@service` etc. allowed), a
time range `[starts_at, ends_at)`, an author and a comment. Its state at `now` is `pending` (not
started), `active`, or `expired` (`now >= ends_at`). The state follows silence/silence.go of
prometheus/alertmanager, with one difference: an Alertmanager silence is still active at exactly
`ends_at`; here the range is half-open, so `expire(id, now)` mutes nothing from `now` on.

Changing a silence (`add` with an existing id) follows Alertmanager's `Silences.Set`/`canUpdate`:
it is updated in place when that does not rewrite history (same matchers; if active, same start and
an end not in the past; if pending, a start not in the past); otherwise the old silence is expired
(kept, visible as expired) and the change is stored as a new silence under a new id. A new silence
starting in the past starts `now`.

`expire` ends a silence and keeps it (the API lists it as expired, with its end time, until `gc`
drops it after the retention); `delete` forgets it entirely, with no history (admin cleanup).

The store records, per silence, how often it matched and when it last matched a firing alert, so a
silence that has matched nothing for a while is reported (`unused`). A silence counts as in use while
an alert it muted is still firing (the store follows resolves through `observe`), so a long silence
over one long-firing alert is not reported.

`silence_from_alertmanager` / `silence_to_alertmanager` read Alertmanager API v2's PostableSilence
and write its GettableSilence, so the HTTP API can be Alertmanager-compatible.

Reasons (closed set): `silenced`.
"""

from __future__ import annotations

import builtins
import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, ClassVar

from bridge.model import Alert, AlertStatus, format_time, parse_time
from bridge.routing import Matcher
from correlators.mute import (
    Mute,
    check_not_all_empty,
    check_text,
    check_time,
    make_matcher,
    matcher_to_dict,
    matchers_from_data,
    reject_unknown,
)

__all__ = [
    "Silence",
    "SilenceReason",
    "SilenceState",
    "SilenceStore",
    "SilenceUsage",
    "can_update",
    "silence_from_alertmanager",
    "silence_to_alertmanager",
]


class SilenceReason(StrEnum):
    SILENCED = "silenced"


class SilenceState(StrEnum):
    """Alertmanager's silence states (types.SilenceState)."""

    PENDING = "pending"
    ACTIVE = "active"
    EXPIRED = "expired"


_FIELDS = ("id", "matchers", "starts_at", "ends_at", "created_by", "comment", "created_at", "updated_at")


@dataclass(frozen=True, slots=True)
class Silence:
    """One silence. Construction validates it; errors are ValueError naming the field (`ends_at: ...`).

    `ends_at == starts_at` is allowed only as the record of a pending silence that was expired (both
    set to the expiry time, as Alertmanager does); `SilenceStore.add` requires `ends_at > starts_at`.
    `created_at`/`updated_at` are stamped by the store.
    """

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float = 0.0
    updated_at: float = 0.0

    def __post_init__(self) -> None:
        check_text(self.id, "id")
        if isinstance(self.matchers, str) or not all(isinstance(m, Matcher) for m in self.matchers):
            raise ValueError("matchers: must be a sequence of Matcher")
        object.__setattr__(self, "matchers", tuple(self.matchers))
        if not self.matchers:
            raise ValueError("matchers: at least one matcher is required")
        check_not_all_empty(self.matchers)
        for name in ("starts_at", "ends_at", "created_at", "updated_at"):
            object.__setattr__(self, name, check_time(getattr(self, name), name))
        if self.ends_at < self.starts_at:
            raise ValueError("ends_at: must be after starts_at")
        check_text(self.created_by, "created_by")
        check_text(self.comment, "comment")

    def state(self, now: float) -> SilenceState:
        if now < self.starts_at:
            return SilenceState.PENDING
        if now >= self.ends_at:
            return SilenceState.EXPIRED
        return SilenceState.ACTIVE

    def is_active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, alert: Alert) -> bool:
        """All matchers match the alert (labels and pseudo-labels; absent labels are empty)."""
        return all(m.matches(alert) for m in self.matchers)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the journal and snapshots; `from_dict` is its inverse."""
        return {
            "id": self.id,
            "matchers": [matcher_to_dict(m) for m in self.matchers],
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "created_by": self.created_by,
            "comment": self.comment,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Silence:
        """Read `to_dict`'s form (matchers may also be `name=value` texts); unknown fields are refused."""
        if not isinstance(data, Mapping):
            raise ValueError("silence: must be an object")
        reject_unknown(data, _FIELDS)
        for name in ("id", "matchers", "starts_at", "ends_at", "created_by", "comment"):
            if name not in data:
                raise ValueError(f"{name}: required")
        return cls(
            id=data["id"],
            matchers=matchers_from_data(data["matchers"]),
            starts_at=data["starts_at"],
            ends_at=data["ends_at"],
            created_by=data["created_by"],
            comment=data["comment"],
            created_at=data.get("created_at", 0.0),
            updated_at=data.get("updated_at", 0.0),
        )


@dataclass(frozen=True, slots=True)
class SilenceUsage:
    """How a silence has been used: `matches` answers of `mutes`, when it last matched a firing alert,
    and how many alerts it muted are still firing."""

    matches: int = 0
    last_matched_at: float | None = None
    firing: int = 0


def can_update(old: Silence, new: Silence, now: float) -> bool:
    """Alertmanager's `canUpdate`: may `old` become `new` in place without rewriting history?

    Matchers must be the same. An active silence keeps its start (compared in whole seconds, as
    Alertmanager does, so a start read back from the API in milliseconds still compares equal) and
    may not end in the past; a pending one may not start in the past; an expired one never changes.
    """
    if [matcher_to_dict(m) for m in old.matchers] != [matcher_to_dict(m) for m in new.matchers]:
        return False
    state = old.state(now)
    if state is SilenceState.ACTIVE:
        return math.floor(new.starts_at) == math.floor(old.starts_at) and new.ends_at >= now
    if state is SilenceState.PENDING:
        return new.starts_at >= now
    return False


def _default_id(previous: Silence, now: float) -> str:
    """A deterministic id for the silence that replaces `previous` (same inputs, same id)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"alertbridge:silence:{previous.id}:{now!r}"))


class SilenceStore:
    """Holds silences and answers whether an alert is silenced at `now` (a Muter)."""

    type_name: ClassVar[str] = "silences"
    reasons: ClassVar[type[StrEnum]] = SilenceReason

    def __init__(self, silences: Iterable[Silence] = (),
                 id_factory: Callable[[Silence, float], str] = _default_id) -> None:
        """`silences` are restored as they are (no update rules); `id_factory(previous, now)` names
        the new silence that replaces one which could not be updated in place."""
        self._silences: dict[str, Silence] = {}
        self._usage: dict[str, _Usage] = {}
        self._muting: dict[str, set[str]] = {}  # alert identity -> ids of the silences that muted it
        self._ordered: builtins.list[Silence] | None = []
        self._id_factory = id_factory
        self.version = 0  # bumped on every change, so a caller can tell its cached answers are stale
        for silence in silences:
            self.restore(silence)

    # ------------------------------------------------------------------------------ changes

    def restore(self, silence: Silence) -> None:
        """Put a silence back as it was (journal replay, snapshot load): no update rules, no clamping."""
        self._silences[silence.id] = silence
        self._usage.setdefault(silence.id, _Usage())
        self._changed()

    def add(self, silence: Silence, now: float) -> Silence:
        """Create or change a silence at `now`, the way Alertmanager's `Silences.Set` does.

        Unknown id: stored under that id. Known id: updated in place if `can_update`, else the old
        one is expired and `silence` is stored under a new id. A new silence that starts in the past
        starts at `now`. Returns the silence as stored (its id may be new). Raises ValueError when
        `ends_at` is not after `starts_at` or is not in the future (Alertmanager's API checks).
        """
        if silence.ends_at <= silence.starts_at:
            raise ValueError("ends_at: must be after starts_at")
        if silence.ends_at <= now:
            raise ValueError("ends_at: must be in the future")
        previous = self._silences.get(silence.id)
        if previous is not None and can_update(previous, silence, now):
            stored = replace(silence, created_at=previous.created_at, updated_at=now)
        else:
            new_id = silence.id
            if previous is not None:
                new_id = self._id_factory(previous, now)
                while new_id in self._silences:
                    new_id = self._id_factory(self._silences[new_id], now)
                if previous.state(now) is not SilenceState.EXPIRED:
                    self._end(previous, now)
            stored = replace(silence, id=new_id, starts_at=max(silence.starts_at, now), created_at=now,
                             updated_at=now)
            self._usage[new_id] = _Usage()
        self._silences[stored.id] = stored
        self._changed()
        return stored

    def expire(self, silence_id: str, now: float) -> bool:
        """End a silence at `now` and keep it as expired. False if it had already expired.

        An active silence ends now; a pending one gets start and end `now` (Alertmanager's `expire`).
        Raises KeyError for an unknown id.
        """
        silence = self._silences[silence_id]
        if silence.state(now) is SilenceState.EXPIRED:
            return False
        self._end(silence, now)
        return True

    def delete(self, silence_id: str) -> None:
        """Forget a silence entirely (no expired record, no usage). Raises KeyError for an unknown id."""
        del self._silences[silence_id]
        self._usage.pop(silence_id, None)
        for ids in self._muting.values():
            ids.discard(silence_id)
        self._changed()

    def gc(self, now: float, retention: float) -> builtins.list[str]:
        """Drop silences that ended at least `retention` seconds ago (Alertmanager's GC); their ids."""
        gone = sorted(s.id for s in self._silences.values() if s.ends_at + retention <= now)
        for silence_id in gone:
            self.delete(silence_id)
        return gone

    def _end(self, silence: Silence, now: float) -> None:
        starts_at = min(silence.starts_at, now)
        self._silences[silence.id] = replace(silence, starts_at=starts_at, ends_at=now, updated_at=now)
        self._changed()

    def _changed(self) -> None:
        self._ordered = None
        self.version += 1

    # ------------------------------------------------------------------------------ queries

    def get(self, silence_id: str) -> Silence | None:
        return self._silences.get(silence_id)

    def __len__(self) -> int:
        return len(self._silences)

    def __contains__(self, silence_id: object) -> bool:
        return silence_id in self._silences

    def list(self, now: float, state: SilenceState | None = None) -> builtins.list[Silence]:
        """All silences (or those in `state` at `now`), by start time then id."""
        ordered = self._sorted()
        if state is None:
            return list(ordered)
        return [s for s in ordered if s.state(now) is state]

    def expired_since(self, now: float, since: float) -> builtins.list[Silence]:
        """Silences expired at `now` that ended at or after `since`, by end time then id."""
        found = [s for s in self._silences.values() if since <= s.ends_at <= now]
        return sorted(found, key=lambda s: (s.ends_at, s.id))

    def usage(self, silence_id: str) -> SilenceUsage | None:
        record = self._usage.get(silence_id)
        if record is None:
            return None
        firing = sum(1 for ids in self._muting.values() if silence_id in ids)
        return SilenceUsage(record.matches, record.last_matched_at, firing)

    def unused(self, now: float, after: float) -> builtins.list[Silence]:
        """Active silences that have matched no firing alert for at least `after` seconds.

        Idle time counts from the silence's start or from the last time it matched a firing alert,
        whichever is later; a silence with a muted alert still firing is in use.
        """
        busy = {sid for ids in self._muting.values() for sid in ids}
        found = []
        for silence in self._sorted():
            if not silence.is_active(now) or silence.id in busy:
                continue
            last = self._usage[silence.id].last_matched_at
            since = silence.starts_at if last is None else max(silence.starts_at, last)
            if now - since >= after:
                found.append(silence)
        return found

    # ------------------------------------------------------------------------------ muter

    def observe(self, alert: Alert, now: float) -> None:
        """Follow alerts this store muted: when one resolves (or stops matching), note the time."""
        ids = self._muting.get(alert.identity)
        if not ids:
            return
        still = set()
        if alert.status is AlertStatus.FIRING:
            still = {sid for sid in ids if (s := self._silences.get(sid)) is not None and s.matches(alert)}
        for sid in ids - still:
            record = self._usage.get(sid)
            if record is not None:
                record.last_matched_at = now if record.last_matched_at is None else max(record.last_matched_at, now)
        if still:
            self._muting[alert.identity] = still
        else:
            del self._muting[alert.identity]

    def mutes(self, alert: Alert, now: float) -> Mute | None:
        """The first active silence matching `alert` (by start time, then id), or None.

        Every matching active silence is credited with the match (Alertmanager lists them all in
        `silencedBy`), so a silence shadowed by an earlier one is not reported as unused.
        """
        first: Silence | None = None
        matched: builtins.list[str] = []
        until = now
        for silence in self._sorted():
            if not (silence.starts_at <= now < silence.ends_at) or not silence.matches(alert):
                continue
            record = self._usage[silence.id]
            record.matches += 1
            record.last_matched_at = now if record.last_matched_at is None else max(record.last_matched_at, now)
            matched.append(silence.id)
            until = max(until, silence.ends_at)
            if first is None:
                first = silence
        if first is None:
            return None
        if alert.status is AlertStatus.FIRING:
            self._muting.setdefault(alert.identity, set()).update(matched)
        return Mute(
            stage=self.type_name,
            reason=SilenceReason.SILENCED.value,
            rule=first.id,
            detail={
                "matchers": [str(m) for m in first.matchers],
                "created_by": first.created_by,
                "comment": first.comment,
                "ends_at": first.ends_at,
                "silenced_by": matched,
                "until": until,  # every matching silence is active from now to its end
            },
        )

    def _sorted(self) -> builtins.list[Silence]:
        if self._ordered is None:
            self._ordered = sorted(self._silences.values(), key=lambda s: (s.starts_at, s.id))
        return self._ordered

    # ------------------------------------------------------------------------------ snapshot

    def to_dict(self) -> dict[str, Any]:
        """Silences and their usage, JSON-ready (a snapshot for persistence)."""
        return {
            "silences": [s.to_dict() for s in self._sorted()],
            "usage": {sid: {"matches": u.matches, "last_matched_at": u.last_matched_at}
                      for sid, u in sorted(self._usage.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], id_factory: Callable[[Silence, float], str] = _default_id,
                  ) -> SilenceStore:
        store = cls((Silence.from_dict(s) for s in data.get("silences", ())), id_factory)
        for sid, usage in (data.get("usage") or {}).items():
            if sid in store._usage:
                store._usage[sid] = _Usage(int(usage.get("matches", 0)), usage.get("last_matched_at"))
        return store


@dataclass(slots=True)
class _Usage:
    matches: int = 0
    last_matched_at: float | None = None


# ------------------------------------------------------------------------ Alertmanager API v2 shape

def silence_from_alertmanager(body: Mapping[str, Any], now: float, id: str) -> Silence:
    """Read Alertmanager API v2's PostableSilence (`POST /api/v2/silences`) into a Silence.

    The silence takes `body["id"]` when the body names one (an update: Alertmanager answers 404 if it
    is unknown, which the caller checks with `SilenceStore.get`), else `id`. `isEqual` defaults to
    true, as in Alertmanager's OpenAPI spec; unknown fields are ignored, as Alertmanager's decoder
    does (clients post a GettableSilence back with `status` and `updatedAt`). Errors are ValueError
    naming the body field (`matchers[1].isRegex: required`); Alertmanager's API checks (start before
    end, end not in the past) are applied here with `now`. Pass the result to `SilenceStore.add`.
    """
    if not isinstance(body, Mapping):
        raise ValueError("body: must be a JSON object")
    sid = body.get("id") or id
    check_text(sid, "id")
    raw = body.get("matchers")
    if raw is None:
        raise ValueError("matchers: required")
    if not isinstance(raw, list):
        raise ValueError("matchers: must be a list")
    if not raw:
        raise ValueError("matchers: at least one matcher is required")
    matchers = tuple(_am_matcher(item, f"matchers[{i}]") for i, item in enumerate(raw))
    check_not_all_empty(matchers)
    starts_at = _am_time(body, "startsAt")
    ends_at = _am_time(body, "endsAt")
    if ends_at <= starts_at:
        raise ValueError("endsAt: must be after startsAt")
    if ends_at <= now:
        raise ValueError("endsAt: must be in the future")
    for name in ("createdBy", "comment"):
        if name not in body:
            raise ValueError(f"{name}: required")
        check_text(body[name], name)
    return Silence(id=sid, matchers=matchers, starts_at=starts_at, ends_at=ends_at,
                   created_by=body["createdBy"], comment=body["comment"], created_at=now, updated_at=now)


def silence_to_alertmanager(silence: Silence, now: float) -> dict[str, Any]:
    """Write Alertmanager API v2's GettableSilence (`GET /api/v2/silence/{id}`), state as of `now`."""
    return {
        "id": silence.id,
        "status": {"state": silence.state(now).value},
        "updatedAt": format_time(silence.updated_at),
        "comment": silence.comment,
        "createdBy": silence.created_by,
        "startsAt": format_time(silence.starts_at),
        "endsAt": format_time(silence.ends_at),
        "matchers": [
            {"name": m.name, "value": m.value, "isRegex": m.op in ("=~", "!~"), "isEqual": m.op in ("=", "=~")}
            for m in silence.matchers
        ],
    }


def _am_matcher(item: object, where: str) -> Matcher:
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: must be an object")
    for name in ("name", "value", "isRegex"):
        if name not in item:
            raise ValueError(f"{where}.{name}: required")
    is_regex, is_equal = item["isRegex"], item.get("isEqual", True)
    for name, flag in (("isRegex", is_regex), ("isEqual", is_equal)):
        if not isinstance(flag, bool):
            raise ValueError(f"{where}.{name}: must be true or false")
    op = ("=~" if is_equal else "!~") if is_regex else ("=" if is_equal else "!=")
    return make_matcher(item["name"], op, item["value"], where)


def _am_time(body: Mapping[str, Any], name: str) -> float:
    value = body.get(name)
    if value is None:
        raise ValueError(f"{name}: required")
    try:
        parsed = parse_time(value)
    except ValueError:
        raise ValueError(f"{name}: must be an RFC 3339 date-time") from None
    if parsed is None:
        raise ValueError(f"{name}: required")
    return parsed
