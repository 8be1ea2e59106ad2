"""Silences: Alertmanager matcher semantics, states and expiry, update rules, unused reporting, API shape."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bridge.model import Alert, parse_time
from bridge.routing import compile_matchers
from correlators.mute import Mute, Muter
from correlators.silences import (
    Silence,
    SilenceState,
    SilenceStore,
    SilenceUsage,
    can_update,
    silence_from_alertmanager,
    silence_to_alertmanager,
)
from tests.bridge.conftest import alert, resolved

CPU = alert("CPU", instance="web1", service="payments", labels={"cluster": "eu"})
DISK = alert("Disk", instance="db1", severity="warning", labels={"cluster": "us"})


def silence(*matchers: str, id: str = "s1", start: float = 100.0, end: float = 200.0, **kw: Any) -> Silence:
    """A silence over `matchers` (default `alertname="CPU"`) from `start` to `end`."""
    return Silence(
        id=id,
        matchers=compile_matchers(matchers or ('alertname="CPU"',)),
        starts_at=start,
        ends_at=end,
        created_by=kw.pop("created_by", "alice"),
        comment=kw.pop("comment", "deploy"),
        **kw,
    )


# ------------------------------------------------------------------------------- matchers

MATCHING = [
    ("equal-matches", ['alertname="CPU"'], CPU, True),
    ("equal-other-value", ['alertname="Disk"'], CPU, False),
    ("not-equal", ['alertname!="Disk"'], CPU, True),
    ("not-equal-same-value", ['alertname!="CPU"'], CPU, False),
    ("regex-is-anchored", ['instance=~"eb"'], CPU, False),
    ("regex-full-match", ['instance=~"web.*"'], CPU, True),
    ("regex-alternation", ['alertname=~"Disk|CPU"'], CPU, True),
    ("negative-regex", ['instance!~"db.*"'], CPU, True),
    ("negative-regex-matching", ['instance!~"web.*"'], CPU, False),
    ("absent-label-is-empty", ['alertname="CPU"', 'team=""'], CPU, True),
    ("absent-label-not-equal", ['team!="sre"'], CPU, True),
    ("absent-label-equal-fails", ['team="sre"'], CPU, False),
    ("all-matchers-must-match", ['alertname="CPU"', 'instance="db1"'], CPU, False),
    ("pseudo-label-service", ['@service="payments"'], CPU, True),
    ("pseudo-label-severity", ['@severity="warning"'], DISK, True),
    ("pseudo-label-missing-service", ['@service="payments"'], DISK, False),
]


@pytest.mark.parametrize(("matchers", "subject", "expected"), [c[1:] for c in MATCHING], ids=[c[0] for c in MATCHING])
def test_matcher_semantics(matchers: list[str], subject: Alert, expected: bool) -> None:
    """An active silence mutes an alert exactly when all its matchers match, Alertmanager style."""
    store = SilenceStore([silence(*matchers)])
    assert (store.mutes(subject, 150.0) is not None) is expected


# ----------------------------------------------------------------------------- validation

INVALID = [
    ("no-matchers", dict(matchers=()), "matchers: at least one matcher is required"),
    ("all-match-empty-regex", dict(matchers=compile_matchers(['foo=~".*"'])),
     "matchers: at least one matcher must not match the empty string"),
    ("all-match-empty-equal", dict(matchers=compile_matchers(['foo=""', 'bar=~"x?"'])),
     "matchers: at least one matcher must not match the empty string"),
    ("end-before-start", dict(ends_at=50.0), "ends_at: must be after starts_at"),
    ("blank-author", dict(created_by=" "), "created_by: must not be empty"),
    ("blank-comment", dict(comment=""), "comment: must not be empty"),
    ("blank-id", dict(id=""), "id: must not be empty"),
    ("not-a-time", dict(starts_at=float("nan")), "starts_at: must be a finite number"),
]


@pytest.mark.parametrize(("changes", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_silence_names_the_field(changes: dict[str, Any], message: str) -> None:
    """An invalid silence raises ValueError whose message starts with the field's name."""
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        replace(silence(), **changes)


def test_negative_matcher_alone_is_valid() -> None:
    """Like Alertmanager, a negative matcher never counts as matching the empty string."""
    assert silence('team!="sre"').matchers[0].op == "!="


STORE_INVALID = [
    ("zero-length", 200.0, 200.0, 0.0, "ends_at: must be after starts_at"),
    ("ends-in-the-past", 100.0, 200.0, 250.0, "ends_at: must be in the future"),
    ("ends-now", 100.0, 200.0, 200.0, "ends_at: must be in the future"),
]


@pytest.mark.parametrize(("start", "end", "now", "message"), [c[1:] for c in STORE_INVALID],
                         ids=[c[0] for c in STORE_INVALID])
def test_add_rejects_what_alertmanager_api_rejects(start: float, end: float, now: float, message: str) -> None:
    """`add` refuses a silence that is empty or already over, as Alertmanager's API does."""
    with pytest.raises(ValueError, match=message):
        SilenceStore().add(silence(start=start, end=end), now)


# ---------------------------------------------------------------------------------- states

STATES = [
    ("before-start-is-pending", 50.0, SilenceState.PENDING, False),
    ("at-start-is-active", 100.0, SilenceState.ACTIVE, True),
    ("just-before-end-is-active", 199.999, SilenceState.ACTIVE, True),
    ("at-end-is-expired", 200.0, SilenceState.EXPIRED, False),
    ("after-end-is-expired", 300.0, SilenceState.EXPIRED, False),
]


@pytest.mark.parametrize(("now", "state", "mutes"), [c[1:] for c in STATES], ids=[c[0] for c in STATES])
def test_state_and_muting_follow_the_clock(now: float, state: SilenceState, mutes: bool) -> None:
    """A silence is pending before its start, active in [start, end), expired from its end; only active mutes."""
    store = SilenceStore([silence()])
    assert store.get("s1").state(now) is state  # type: ignore[union-attr]
    assert (store.mutes(CPU, now) is not None) is mutes
    assert [s.id for s in store.list(now, state)] == ["s1"]


def test_mute_names_the_first_silence_and_why() -> None:
    """The Mute names the earliest-starting matching silence (then lowest id), with matchers, author and end."""
    store = SilenceStore([
        silence(id="b", start=50.0, end=500.0, comment="later id"),
        silence('@service="payments"', id="a", start=50.0, end=300.0, created_by="bob", comment="payments work"),
        silence(id="0-late", start=90.0, end=900.0),
        silence('alertname="Disk"', id="00", start=10.0, end=900.0),
    ])
    mute = store.mutes(CPU, 100.0)
    assert mute == Mute(
        stage="silences",
        reason="silenced",
        rule="a",
        detail={
            "matchers": ['@service="payments"'],
            "created_by": "bob",
            "comment": "payments work",
            "ends_at": 300.0,
            "silenced_by": ["a", "b", "0-late"],
            "until": 900.0,
        },
    )
    assert mute.reason in {r.value for r in SilenceStore.reasons}


# ----------------------------------------------------------------------- update and expiry

UPDATES = [
    # (id, change of the stored silence s1 [100, 200) with matcher alertname=CPU, now, in place?)
    ("active-extend-end", dict(ends_at=400.0), 150.0, True),
    ("active-shorten-end", dict(ends_at=160.0), 150.0, True),
    ("active-new-comment", dict(comment="still deploying"), 150.0, True),
    ("active-start-same-second", dict(starts_at=100.4), 150.0, True),
    ("active-end-in-past", dict(ends_at=140.0), 150.0, False),
    ("active-start-moved", dict(starts_at=120.0), 150.0, False),
    ("active-matchers-changed", dict(matchers=compile_matchers(['alertname="Disk"'])), 150.0, False),
    ("pending-start-later", dict(starts_at=120.0), 50.0, True),
    ("pending-start-in-past", dict(starts_at=40.0), 50.0, False),
    ("expired-any-change", dict(ends_at=400.0), 250.0, False),
]


@pytest.mark.parametrize(("changes", "now", "in_place"), [c[1:] for c in UPDATES], ids=[c[0] for c in UPDATES])
def test_add_with_known_id_updates_like_alertmanager(changes: dict[str, Any], now: float, in_place: bool) -> None:
    """A change that keeps history is applied in place; any other expires the old silence and creates a new one."""
    store = SilenceStore(id_factory=lambda previous, at: f"{previous.id}-v2")
    original = store.add(silence(), 10.0)
    if changes.get("ends_at", 201.0) <= now:
        with pytest.raises(ValueError, match="ends_at: must be in the future"):
            store.add(replace(original, **changes), now)
        return
    assert can_update(original, replace(original, **changes), now) is in_place
    stored = store.add(replace(original, **changes), now)
    if in_place:
        assert stored.id == "s1" and stored.created_at == 10.0 and stored.updated_at == now
        assert [s.id for s in store.list(now)] == ["s1"]
    else:
        assert stored.id == "s1-v2" and stored.created_at == now
        assert stored.starts_at == max(changes.get("starts_at", original.starts_at), now)
        old = store.get("s1")
        assert old is not None and old.state(now) is SilenceState.EXPIRED
        expected_end = original.ends_at if original.state(now) is SilenceState.EXPIRED else now
        assert old.ends_at == expected_end


def test_new_silence_starting_in_the_past_starts_now() -> None:
    """Alertmanager moves the start of a new silence that lies in the past to now."""
    stored = SilenceStore().add(silence(start=10.0, end=500.0), 42.0)
    assert (stored.starts_at, stored.created_at, stored.updated_at) == (42.0, 42.0, 42.0)


EXPIRE = [
    ("active-ends-now", 150.0, True, (100.0, 150.0)),
    ("pending-starts-and-ends-now", 50.0, True, (50.0, 50.0)),
    ("expired-stays", 250.0, False, (100.0, 200.0)),
]


@pytest.mark.parametrize(("now", "changed", "span"), [c[1:] for c in EXPIRE], ids=[c[0] for c in EXPIRE])
def test_expire(now: float, changed: bool, span: tuple[float, float]) -> None:
    """Expiring ends a silence at `now` (a pending one starts and ends then); an expired one is left alone."""
    store = SilenceStore([silence()])
    assert store.expire("s1", now) is changed
    expired = store.get("s1")
    assert expired is not None and (expired.starts_at, expired.ends_at) == span
    assert expired.state(now) is SilenceState.EXPIRED
    assert store.mutes(CPU, now) is None


def test_expire_and_delete_unknown_id_raise_key_error() -> None:
    """Expiring or deleting a silence that does not exist is a KeyError (the API answers 404)."""
    store = SilenceStore()
    with pytest.raises(KeyError):
        store.expire("nope", 1.0)
    with pytest.raises(KeyError):
        store.delete("nope")


def test_expire_keeps_history_delete_forgets() -> None:
    """An expired silence stays listed with its end time; a deleted one is gone entirely."""
    store = SilenceStore([silence(id="kept"), silence(id="gone"), silence(id="old", start=0.0, end=20.0)])
    version = store.version
    store.expire("kept", 150.0)
    store.delete("gone")
    assert store.version == version + 2
    assert [s.id for s in store.list(160.0, SilenceState.EXPIRED)] == ["old", "kept"]
    assert [(s.id, s.ends_at) for s in store.expired_since(160.0, since=100.0)] == [("kept", 150.0)]
    assert [s.id for s in store.expired_since(160.0, since=0.0)] == ["old", "kept"]
    assert store.get("gone") is None and "gone" not in store and len(store) == 2


def test_gc_drops_silences_past_retention() -> None:
    """Silences that ended at least `retention` ago are dropped, as Alertmanager's GC does."""
    store = SilenceStore([silence(id="a", end=200.0), silence(id="b", end=300.0), silence(id="c", end=900.0)])
    assert store.gc(now=400.0, retention=150.0) == ["a"]
    assert [s.id for s in store.list(400.0)] == ["b", "c"]


# -------------------------------------------------------------------------------- usage

def _events(store: SilenceStore, events: list[tuple[float, str, Alert]]) -> None:
    for at, op, subject in events:
        if op == "fire":
            store.observe(subject, at)
            store.mutes(subject, at)
        else:
            store.observe(resolved(subject), at)


UNUSED = [
    # (id, events, now, after, reported)
    ("never-matched-not-yet", [], 3699.0, 3600.0, False),
    ("never-matched-for-after", [], 3700.0, 3600.0, True),
    ("matched-then-resolved-recently", [(1000.0, "fire", CPU), (1500.0, "resolve", CPU)], 5000.0, 3600.0, False),
    ("matched-then-resolved-long-ago", [(1000.0, "fire", CPU), (1500.0, "resolve", CPU)], 5100.0, 3600.0, True),
    ("muted-alert-still-firing", [(1000.0, "fire", CPU)], 99000.0, 3600.0, False),
    ("other-alerts-do-not-count", [(1000.0, "fire", DISK)], 3700.0, 3600.0, True),
]


@pytest.mark.parametrize(("events", "now", "after", "reported"), [c[1:] for c in UNUSED], ids=[c[0] for c in UNUSED])
def test_unused_silences_are_reported(events: list[tuple[float, str, Alert]], now: float, after: float,
                                      reported: bool) -> None:
    """An active silence that matched no firing alert for `after` s (since start or last match) is reported."""
    store = SilenceStore([silence(start=100.0, end=1e9)])
    _events(store, events)
    assert [s.id for s in store.unused(now, after)] == (["s1"] if reported else [])


def test_unused_ignores_pending_and_expired() -> None:
    """Only active silences can be unused: pending and expired ones are not reported."""
    store = SilenceStore([silence(id="pending", start=5000.0, end=9000.0), silence(id="expired", start=0.0, end=10.0)])
    assert store.unused(4000.0, 60.0) == []


def test_usage_counts_every_matching_silence() -> None:
    """Each `mutes` answer credits every active matching silence, so a shadowed silence is not unused."""
    store = SilenceStore([silence(id="first", start=0.0, end=1e9), silence(id="shadowed", start=50.0, end=1e9)])
    _events(store, [(100.0, "fire", CPU), (200.0, "fire", CPU)])
    assert store.usage("first") == store.usage("shadowed") == SilenceUsage(matches=2, last_matched_at=200.0, firing=1)
    store.observe(resolved(CPU), 300.0)
    assert store.usage("shadowed") == SilenceUsage(matches=2, last_matched_at=300.0, firing=0)
    assert store.unused(300.0 + 59.0, 60.0) == []
    assert [s.id for s in store.unused(360.0, 60.0)] == ["first", "shadowed"]
    assert store.usage("nope") is None


# ------------------------------------------------------------------ Alertmanager API shape

FIXTURES = [Path(__file__).parents[1] / "fixtures" / "alertmanager_api", Path("/work/shared/fixtures/alertmanager_api")]


def _fixture(name: str) -> Any:
    for folder in FIXTURES:
        if (folder / name).exists():
            return json.loads((folder / name).read_text())
    pytest.skip(f"fixture {name} not found")


def test_alertmanager_round_trip_on_fixture() -> None:
    """POSTing the recorded PostableSilence and reading it back gives Alertmanager's recorded GettableSilence."""
    body = _fixture("response_get_silence_200.json")["body"]
    now = parse_time(body["updatedAt"])
    assert now is not None
    created = silence_from_alertmanager(_fixture("post_api_v2_silences_request.json"), now, body["id"])
    store = SilenceStore()
    stored = store.add(created, now)
    assert stored.id == _fixture("response_post_silence_200.json")["body"]["silenceID"]
    assert silence_to_alertmanager(stored, now) == body
    assert stored.matches(alert("InstanceDown", instance="localhost:8081"))
    assert not stored.matches(alert("InstanceDown", instance="localhost:9090"))


def test_alertmanager_no_matchers_fixture_is_rejected() -> None:
    """A PostableSilence without matchers is refused, naming `matchers` (Alertmanager answers 422)."""
    assert "matchers" in _fixture("response_post_silence_422_no_matchers.json")["body"]["message"]
    body = {**_fixture("post_api_v2_silences_request.json"), "matchers": []}
    with pytest.raises(ValueError, match=r"^matchers: at least one matcher is required"):
        silence_from_alertmanager(body, 0.0, "x")


REQUEST = {
    "matchers": [{"name": "alertname", "value": "CPU", "isRegex": False}],
    "startsAt": "2026-01-01T00:00:00Z",
    "endsAt": "2026-01-01T02:00:00Z",
    "createdBy": "alice",
    "comment": "deploy",
}
NOW = 1767225600.0  # 2026-01-01T00:00:00Z

AM_INVALID = [
    ("matchers-missing", {"matchers": None}, "matchers: required"),
    ("matchers-not-a-list", {"matchers": {"name": "a"}}, "matchers: must be a list"),
    ("matcher-not-an-object", {"matchers": ["a=b"]}, r"matchers\[0\]: must be an object"),
    ("is-regex-missing", {"matchers": [{"name": "a", "value": "b"}]}, r"matchers\[0\].isRegex: required"),
    ("is-equal-not-bool", {"matchers": [{"name": "a", "value": "b", "isRegex": False, "isEqual": "yes"}]},
     r"matchers\[0\].isEqual: must be true or false"),
    ("bad-regex", {"matchers": [{"name": "a", "value": "(", "isRegex": True}]}, r"matchers\[0\].value: invalid regex"),
    ("blank-name", {"matchers": [{"name": "", "value": "b", "isRegex": False}]}, r"matchers\[0\].name"),
    ("only-empty-matchers", {"matchers": [{"name": "a", "value": ".*", "isRegex": True}]},
     "matchers: at least one matcher must not match the empty string"),
    ("bad-time", {"startsAt": "yesterday"}, "startsAt: must be an RFC 3339 date-time"),
    ("zero-time", {"endsAt": "0001-01-01T00:00:00Z"}, "endsAt: required"),
    ("end-before-start", {"endsAt": "2025-12-31T00:00:00Z"}, "endsAt: must be after startsAt"),
    ("end-in-past", {"startsAt": "2025-12-30T00:00:00Z", "endsAt": "2025-12-31T00:00:00Z"},
     "endsAt: must be in the future"),
    ("author-missing", {"createdBy": None}, "createdBy: required"),
    ("comment-blank", {"comment": " "}, "comment: must not be empty"),
]


@pytest.mark.parametrize(("changes", "message"), [c[1:] for c in AM_INVALID], ids=[c[0] for c in AM_INVALID])
def test_alertmanager_shape_errors_name_the_field(changes: dict[str, Any], message: str) -> None:
    """An invalid PostableSilence raises ValueError naming the Alertmanager field."""
    body = {k: v for k, v in {**REQUEST, **changes}.items() if v is not None}
    with pytest.raises(ValueError, match="^" + message):
        silence_from_alertmanager(body, NOW, "x")


AM_MATCHERS = [
    ("equal", {"isRegex": False, "isEqual": True}, "="),
    ("equal-by-default", {"isRegex": False}, "="),
    ("not-equal", {"isRegex": False, "isEqual": False}, "!="),
    ("regex", {"isRegex": True, "isEqual": True}, "=~"),
    ("negative-regex", {"isRegex": True, "isEqual": False}, "!~"),
]


@pytest.mark.parametrize(("flags", "op"), [c[1:] for c in AM_MATCHERS], ids=[c[0] for c in AM_MATCHERS])
def test_alertmanager_matcher_flags(flags: dict[str, bool], op: str) -> None:
    """isRegex/isEqual map to the four matcher operators and back."""
    body = {**REQUEST, "matchers": [{"name": "alertname", "value": "CP.", **flags}]}
    created = silence_from_alertmanager(body, NOW, "x")
    assert created.matchers[0].op == op
    written = silence_to_alertmanager(created, NOW)["matchers"][0]
    assert written == {"name": "alertname", "value": "CP.", "isRegex": op in ("=~", "!~"),
                       "isEqual": op in ("=", "=~")}


def test_alertmanager_body_id_is_an_update() -> None:
    """A PostableSilence that names an id updates that silence; the given id is only for new ones."""
    store = SilenceStore()
    first = store.add(silence_from_alertmanager(REQUEST, NOW, "generated-1"), NOW)
    later = NOW + 60.0
    body = {**REQUEST, "id": first.id, "startsAt": "2026-01-01T00:00:00.000Z", "endsAt": "2026-01-01T05:00:00Z",
            "status": {"state": "active"}, "updatedAt": "2026-01-01T00:00:00Z"}
    updated = store.add(silence_from_alertmanager(body, later, "generated-2"), later)
    assert (updated.id, updated.ends_at, len(store)) == ("generated-1", NOW + 5 * 3600, 1)


# -------------------------------------------------------------------------- persistence

def test_silence_dict_round_trip() -> None:
    """`to_dict` then `from_dict` gives the same silence, regexes included."""
    original = silence('alertname=~"CPU|Disk"', 'team!="sre"', created_at=5.0, updated_at=6.0)
    assert Silence.from_dict(json.loads(json.dumps(original.to_dict()))) == original


def test_silence_from_dict_rejects_unknown_and_missing_fields() -> None:
    """Unknown and missing fields are refused, naming the field."""
    data = silence().to_dict()
    with pytest.raises(ValueError, match=r"^ends: unknown field"):
        Silence.from_dict({**data, "ends": 5})
    del data["comment"]
    with pytest.raises(ValueError, match=r"^comment: required"):
        Silence.from_dict(data)


def test_store_snapshot_round_trip_keeps_usage() -> None:
    """A store snapshot restores its silences and their usage."""
    store = SilenceStore([silence(start=0.0, end=1e9), silence(id="s2", start=0.0, end=50.0)])
    _events(store, [(10.0, "fire", CPU)])
    copy = SilenceStore.from_dict(json.loads(json.dumps(store.to_dict())))
    assert copy.list(0.0) == store.list(0.0)
    assert copy.usage("s1") == SilenceUsage(matches=1, last_matched_at=10.0, firing=0)


def test_store_is_a_muter() -> None:
    """The store satisfies the Muter protocol as `silences`, with its closed reason set."""
    store = SilenceStore()
    assert isinstance(store, Muter)
    assert store.type_name == "silences"
    assert {r.value for r in SilenceStore.reasons} == {"silenced"}
    store.observe(CPU, 0.0)
    assert store.mutes(CPU, 0.0) is None
