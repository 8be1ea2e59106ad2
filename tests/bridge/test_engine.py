"""Behaviour of the correlation engine on a fake clock: (time, alert) in, (time, kind, title) out."""

from __future__ import annotations

import pytest

from bridge.model import ActionKind, AlertStatus, IncidentStatus, Severity
from tests.bridge.conftest import (
    Event,
    Row,
    alert,
    bare_resolve,
    make_engine,
    play,
    resolved,
    route,
    summary,
)

# Alerts of the `CPU` group (default route: group_by alertname, group_wait 30 s, group_interval
# 300 s, reopen_window 300 s) on four instances, and another group.
A = alert("CPU", instance="web1")
B = alert("CPU", instance="web2")
C = alert("CPU", instance="web3")
D = alert("CPU", instance="web4")
DISK = alert("Disk", instance="db1")


def firing(n: int, name: str = "CPU") -> str:
    return f"[FIRING:{n}] alertname={name} - {name}"


def resolved_title(name: str = "CPU") -> str:
    return f"[RESOLVED] alertname={name} - {name}"


OPEN, UPDATE, ACK, RESOLVE = "open", "update", "acknowledge", "resolve"


# ------------------------------------------------------------------------------------------- streams

STREAMS: list[tuple[str, list[Event], float, list[Row]]] = [
    # dedup
    ("repeats-never-act", [(0, A), (10, A), (20, A), (40, A), (500, A)], 1000, [(30, OPEN, firing(1))]),
    (
        "changed-annotation-and-severity-coalesce-into-one-update",
        [
            (0, A),
            (100, alert("CPU", annotations={"runbook": "r1"})),
            (110, alert("CPU", annotations={"runbook": "r1"}, severity="warning")),
        ],
        1000,
        [(30, OPEN, firing(1)), (330, UPDATE, firing(1))],
    ),
    (
        "bare-resolve-merges-with-known-alert",
        [(0, A), (100, bare_resolve(A))],
        1000,
        [(30, OPEN, firing(1)), (100, RESOLVE, resolved_title())],
    ),
    # group_wait
    ("opens-at-group-wait-even-when-advanced-late", [(0, A)], 5000, [(30, OPEN, firing(1))]),
    (
        "alerts-joining-within-group-wait-page-together",
        [(0, A), (10, B), (29, C)],
        1000,
        [(30, OPEN, firing(3))],
    ),
    ("resolved-within-group-wait-never-pages", [(0, A), (10, resolved(A))], 1000, []),
    ("expired-within-group-wait-never-pages", [(0, alert("CPU", ends_at=20))], 1000, []),
    ("group-wait-starts-at-first-alert-not-last", [(100, A), (120, B)], 1000, [(130, OPEN, firing(2))]),
    # group_interval
    (
        "several-joins-make-one-update-per-interval",
        [(0, A), (40, B), (50, C), (60, D)],
        1000,
        [(30, OPEN, firing(1)), (330, UPDATE, firing(4))],
    ),
    (
        "join-after-a-quiet-interval-updates-at-once",
        [(0, A), (400, B)],
        1000,
        [(30, OPEN, firing(1)), (400, UPDATE, firing(2))],
    ),
    (
        "next-update-waits-an-interval-after-the-last",
        [(0, A), (40, B), (400, C), (500, D)],
        1000,
        [(30, OPEN, firing(1)), (330, UPDATE, firing(2)), (630, UPDATE, firing(4))],
    ),
    ("no-update-without-change", [(0, A), (40, B)], 5000, [(30, OPEN, firing(1)), (330, UPDATE, firing(2))]),
    (
        "final-resolve-is-not-delayed-and-drops-pending-update",
        [(0, A), (40, B), (50, resolved(A)), (60, resolved(B))],
        1000,
        [(30, OPEN, firing(1)), (60, RESOLVE, resolved_title())],
    ),
    # resolve
    (
        "resolves-when-all-alerts-resolve",
        [(0, A), (0, B), (400, resolved(A)), (450, resolved(B))],
        1000,
        [(30, OPEN, firing(2)), (400, UPDATE, firing(1)), (450, RESOLVE, resolved_title())],
    ),
    (
        "partial-resolve-is-a-coalesced-update",
        [(0, A), (0, B), (100, resolved(A))],
        1000,
        [(30, OPEN, firing(2)), (330, UPDATE, firing(1))],
    ),
    ("resolve-of-unknown-alert-is-ignored", [(0, resolved(A))], 1000, []),
    (
        "repeated-resolve-is-ignored",
        [(0, A), (100, resolved(A)), (110, resolved(A))],
        1000,
        [(30, OPEN, firing(1)), (100, RESOLVE, resolved_title())],
    ),
    # expiry
    (
        "expires-at-ends-at",
        [(0, alert("CPU", ends_at=100))],
        1000,
        [(30, OPEN, firing(1)), (100, RESOLVE, resolved_title())],
    ),
    (
        "repeat-with-later-ends-at-postpones-expiry",
        [(0, alert("CPU", ends_at=100)), (90, alert("CPU", ends_at=200)), (190, alert("CPU", ends_at=300))],
        1000,
        [(30, OPEN, firing(1)), (300, RESOLVE, resolved_title())],
    ),
    (
        "repeat-without-ends-at-cancels-expiry",
        [(0, alert("CPU", ends_at=100)), (50, A)],
        1000,
        [(30, OPEN, firing(1))],
    ),
    # separate groups are independent
    (
        "two-groups-two-incidents",
        [(0, A), (10, DISK)],
        1000,
        [(30, OPEN, firing(1)), (40, OPEN, firing(1, "Disk"))],
    ),
]


@pytest.mark.parametrize(
    ("events", "until", "expected"), [s[1:] for s in STREAMS], ids=[s[0] for s in STREAMS]
)
def test_stream(events: list[Event], until: float, expected: list[Row]) -> None:
    """A stream of alerts produces exactly the expected actions, each at its own time."""
    assert summary(play(make_engine(), events, until)) == expected


@pytest.mark.parametrize(
    "step", [None, 1.0, 7.0, 1000.0], ids=["only-at-submits", "every-1s", "every-7s", "rarely"]
)
@pytest.mark.parametrize(
    ("events", "until", "expected"), [s[1:] for s in STREAMS], ids=[s[0] for s in STREAMS]
)
def test_stream_independent_of_tick(
    events: list[Event], until: float, expected: list[Row], step: float | None
) -> None:
    """Actions and their times do not depend on how often `advance` is called."""
    assert summary(play(make_engine(), events, until, step=step)) == expected


# ------------------------------------------------------------------------------------------ dedup


def test_repeats_are_counted_as_dedup_drops() -> None:
    """Each repeat of an unchanged alert is counted under (dedup, repeat)."""
    engine = make_engine()
    play(engine, [(0, A), (10, A), (20, A), (40, A)], 100)
    assert engine.stats.dropped[("dedup", "repeat")] == 3
    assert engine.stats.received["am"] == 4


def test_bare_resolve_keeps_what_was_known() -> None:
    """A bare resolve (no summary) resolves the known alert and keeps its summary, labels and severity."""
    engine = make_engine()
    actions = play(engine, [(0, A), (100, bare_resolve(A))], 200)
    (kept,) = actions[-1].incident.alerts
    assert (kept.status, kept.summary, kept.severity, dict(kept.labels), kept.ends_at) == (
        AlertStatus.RESOLVED,
        "CPU",
        Severity.CRITICAL,
        dict(A.labels),
        100,
    )


def test_expiry_is_not_counted_as_received() -> None:
    """An alert expiring on its ends_at is not counted as a received alert."""
    engine = make_engine()
    play(engine, [(0, alert("CPU", ends_at=100))], 1000)
    assert engine.stats.received["am"] == 1


# --------------------------------------------------------------------------------------- grouping

GROUPING = [
    (
        "group-by-alertname-one-incident",
        [route(group_by=["alertname"])],
        [A, B],
        [("default", {"alertname": "CPU"}, 2)],
    ),
    (
        "group-by-instance-two-incidents",
        [route(group_by=["alertname", "instance"])],
        [A, B],
        [
            ("default", {"alertname": "CPU", "instance": "web1"}, 1),
            ("default", {"alertname": "CPU", "instance": "web2"}, 1),
        ],
    ),
    (
        "group-by-all-labels",
        [route(group_by=["..."])],
        [A, alert("CPU", labels={"zone": "a"})],
        [
            ("default", {"alertname": "CPU", "instance": "web1"}, 1),
            ("default", {"alertname": "CPU", "instance": "web1", "zone": "a"}, 1),
        ],
    ),
    (
        "group-by-pseudo-label",
        [route(group_by=["@service"])],
        [alert("CPU", service="api"), alert("Disk", service="api"), alert("Mem", service="db")],
        [("default", {"@service": "api"}, 2), ("default", {"@service": "db"}, 1)],
    ),
    ("group-by-nothing-one-incident-per-route", [route(group_by=[])], [A, DISK], [("default", {}, 2)]),
    (
        "first-match-wins",
        [route("db", "alertname=Disk"), route("rest")],
        [A, DISK],
        [("rest", {"alertname": "CPU"}, 1), ("db", {"alertname": "Disk"}, 1)],
    ),
    (
        "continue-takes-later-routes-too",
        [
            route("audit", continue_=True, group_by=[], sinks=["log"]),
            route("db", "alertname=Disk"),
            route("rest"),
        ],
        [DISK],
        [("audit", {}, 1), ("db", {"alertname": "Disk"}, 1)],
    ),
    (
        "severity-pseudo-label-routes",
        [route("pages", "@severity=critical"), route("tickets")],
        [A, alert("Mem", severity="warning")],
        [("pages", {"alertname": "CPU"}, 1), ("tickets", {"alertname": "Mem"}, 1)],
    ),
    (
        "source-pseudo-label-routes",
        [route("graf", "@source=~graf.*"), route("rest")],
        [A, alert("Mem", source="grafana")],
        [("rest", {"alertname": "CPU"}, 1), ("graf", {"alertname": "Mem"}, 1)],
    ),
    (
        "route-sources-filter",
        [route("graf", sources=["grafana"]), route("rest")],
        [A, alert("Mem", source="grafana")],
        [("rest", {"alertname": "CPU"}, 1), ("graf", {"alertname": "Mem"}, 1)],
    ),
]


@pytest.mark.parametrize(
    ("routes", "alerts", "expected"), [g[1:] for g in GROUPING], ids=[g[0] for g in GROUPING]
)
def test_grouping(routes: list, alerts: list, expected: list[tuple[str, dict[str, str], int]]) -> None:
    """Routes pick where each alert goes and group_by picks its incident: (route, group labels, size)."""
    engine = make_engine(*routes)
    actions = engine.submit(alerts, 0) + engine.advance(100)
    assert [
        (a.incident.route, dict(a.incident.group_labels), len(a.incident.alerts)) for a in actions
    ] == expected
    assert all(a.kind is ActionKind.OPEN for a in actions)


def test_continue_route_pages_its_own_sinks() -> None:
    """An alert taking two routes opens one incident per route, each delivered to its route's sinks."""
    engine = make_engine(
        route("audit", continue_=True, sinks=["log"]), route("rest", sinks=["pager", "slack"])
    )
    actions = engine.submit([A], 0) + engine.advance(100)
    assert [(a.incident.route, a.sinks) for a in actions] == [
        ("audit", ("log",)),
        ("rest", ("pager", "slack")),
    ]
    assert len({a.incident.id for a in actions}) == 2


def test_unrouted_alerts_are_counted_and_dropped() -> None:
    """An alert no route matches produces nothing and is counted as unrouted."""
    engine = make_engine(route("db", "team=db"))
    actions = play(engine, [(0, A), (10, A), (20, resolved(A))], 1000)
    assert actions == []
    assert engine.stats.unrouted == 1
    assert engine.stats.dropped[("routing", "no_route")] == 1
    assert engine.views() == []


# ------------------------------------------------------------------------------------- group_wait


@pytest.mark.parametrize(
    "late", [30, 31, 1000, 86400], ids=["on-time", "1s-late", "much-later", "a-day-later"]
)
def test_open_is_stamped_with_its_due_time(late: float) -> None:
    """The OPEN action is dated created + group_wait whenever advance happens to run."""
    engine = make_engine(route(group_wait=30))
    assert engine.submit([A], 5) == []
    assert engine.advance(34) == []
    (action,) = engine.advance(5 + late)
    assert (action.kind, action.at, action.incident.opened_at, action.reason) == (
        ActionKind.OPEN,
        35,
        35,
        "group_wait elapsed",
    )


def test_transient_alerts_are_counted_and_invisible() -> None:
    """Alerts resolving within group_wait are counted as transient and leave no visible incident."""
    engine = make_engine()
    play(
        engine, [(0, A), (5, B), (10, resolved(A)), (20, resolved(B)), (40, DISK), (45, resolved(DISK))], 1000
    )
    assert engine.stats.transient == 2
    assert engine.views() == []
    assert engine.stats.opened == {}


def test_group_wait_zero_pages_at_once() -> None:
    """With group_wait 0 the incident opens in the submit call that created it."""
    engine = make_engine(route(group_wait=0))
    assert summary(engine.submit([A], 5)) == [(5, OPEN, firing(1))]
    assert engine.advance(1000) == []


def test_refire_after_transient_starts_a_new_wait() -> None:
    """A series re-firing after a transient episode waits group_wait again from its new start."""
    engine = make_engine()
    actions = play(engine, [(0, A), (10, resolved(A)), (100, alert("CPU", starts_at=100))], 1000)
    assert summary(actions) == [(130, OPEN, firing(1))]
    assert engine.stats.transient == 1


# --------------------------------------------------------------------------------------- resolve


def test_refire_within_reopen_window_reopens_the_same_incident() -> None:
    """A re-fire within reopen_window of the resolve re-opens the same incident with an OPEN action."""
    engine = make_engine(route(reopen_window=300))
    actions = play(engine, [(0, A), (100, resolved(A)), (350, alert("CPU", starts_at=350))], 1000)
    assert summary(actions) == [
        (30, OPEN, firing(1)),
        (100, RESOLVE, resolved_title()),
        (350, OPEN, firing(1)),
    ]
    assert len({a.incident.id for a in actions}) == 1
    assert actions[-1].reason == "re-opened"
    assert actions[-1].incident.status is IncidentStatus.TRIGGERED
    assert actions[-1].incident.resolved_at is None
    assert engine.stats.reopened == 1


def test_refire_after_reopen_window_opens_a_new_incident() -> None:
    """A re-fire after reopen_window opens a new incident, with a new id, after group_wait."""
    engine = make_engine(route(reopen_window=300))
    actions = play(engine, [(0, A), (100, resolved(A)), (401, alert("CPU", starts_at=401))], 1000)
    assert summary(actions) == [
        (30, OPEN, firing(1)),
        (100, RESOLVE, resolved_title()),
        (431, OPEN, firing(1)),
    ]
    first, _, second = actions
    assert first.incident.id != second.incident.id
    assert second.reason == "group_wait elapsed"
    assert engine.stats.reopened == 0


def test_reopened_incident_resolves_again() -> None:
    """A re-opened incident resolves again when its alerts resolve, and can be re-opened again."""
    engine = make_engine()
    a2, a3 = alert("CPU", starts_at=200), alert("CPU", starts_at=400)
    actions = play(engine, [(0, A), (100, resolved(A)), (200, a2), (250, resolved(a2)), (400, a3)], 1000)
    assert [(at, kind) for at, kind, _ in summary(actions)] == [
        (30, OPEN),
        (100, RESOLVE),
        (200, OPEN),
        (250, RESOLVE),
        (400, OPEN),
    ]
    assert len({a.incident.id for a in actions}) == 1


def test_refire_and_resolve_in_one_batch_after_a_resolve_is_silent() -> None:
    """A re-fire resolved again within the same batch sends nothing: no second RESOLVE without an OPEN."""
    engine = make_engine()
    a2, a3 = alert("CPU", starts_at=200), alert("CPU", starts_at=300)
    first = play(engine, [(0, A), (100, resolved(A))], 150)
    assert engine.submit([a2, resolved(a2)], 200) == []
    assert engine.stats.resolved == 1
    assert engine.stats.transient == 1
    (reopen,) = engine.submit([a3], 300)
    assert (reopen.kind, reopen.incident.id, reopen.incident.revision) == (
        ActionKind.OPEN,
        first[0].incident.id,
        3,
    )


def test_resolve_and_refire_in_one_batch_is_an_update() -> None:
    """A resolve and the next episode's re-fire in one batch keep the incident open, as one update."""
    engine = make_engine()
    events = [(0, A), (400, resolved(A)), (400, alert("CPU", starts_at=400))]
    assert summary(play(engine, events, 1000)) == [(30, OPEN, firing(1)), (400, UPDATE, firing(1))]


# ---------------------------------------------------------------------------------------- expiry


def test_expiry_timers_stay_bounded_under_refreshes() -> None:
    """10k repeats that each push ends_at later keep only a few pending timers, and expire once."""
    engine = make_engine()
    actions = []
    for t in range(10_000):
        actions += engine.submit([alert("CPU", ends_at=t + 100.0)], float(t))
    assert len(engine._timers) <= 3
    actions += engine.advance(20_000)
    assert summary(actions) == [(30, OPEN, firing(1)), (10_099, RESOLVE, resolved_title())]
    assert engine._timers == []


def test_ends_at_in_the_past_never_acts_before_the_alert_arrived() -> None:
    """A firing alert whose ends_at is already past expires at the next tick, not back in time."""
    engine = make_engine(route(group_wait=0))
    actions = play(engine, [(100, alert("CPU", ends_at=50))], 1000)
    assert summary(actions) == [(100, OPEN, firing(1)), (100, RESOLVE, resolved_title())]
    assert actions[-1].incident.alerts[0].ends_at == 50


def test_changed_alert_expiry_is_refreshed_too() -> None:
    """An update that changes the alert also moves its expiry."""
    engine = make_engine()
    events = [(0, alert("CPU", ends_at=100)), (50, alert("CPU", severity="warning", ends_at=400))]
    assert summary(play(engine, events, 1000)) == [
        (30, OPEN, firing(1)),
        (330, UPDATE, firing(1)),
        (400, RESOLVE, resolved_title()),
    ]


# ----------------------------------------------------------------------------------- acknowledge


def _opened(engine_routes: tuple = (), *alerts_: object) -> tuple:
    engine = make_engine(*engine_routes)
    (opened,) = engine.submit(alerts_ or [A], 0) + engine.advance(30)
    return engine, opened.incident.id


def test_acknowledge_emits_once() -> None:
    """Acknowledging sets the status and emits one ACK at once; acknowledging again does nothing."""
    engine, inc = _opened()
    engine.submit([B], 40)  # a pending update does not delay the ack
    (ack,) = engine.acknowledge(inc, "alice", 50)
    assert (ack.kind, ack.at, ack.reason) == (ActionKind.ACKNOWLEDGE, 50, "acknowledged by alice")
    assert (ack.incident.status, ack.incident.acknowledged_by) == (IncidentStatus.ACKNOWLEDGED, "alice")
    assert engine.acknowledge(inc, "bob", 60) == []
    assert engine.get(inc).acknowledged_by == "alice"


@pytest.mark.parametrize("target", ["unknown", "resolved", "in-group-wait"])
def test_acknowledge_without_effect(target: str) -> None:
    """Acknowledging an unknown, resolved or not yet opened incident does nothing."""
    engine = make_engine()
    engine.submit([A], 0)
    inc = "inc-000000000000" if target == "unknown" else next(iter(engine.incidents))
    if target == "resolved":
        assert [a.kind for a in engine.submit([resolved(A)], 100)] == [ActionKind.OPEN, ActionKind.RESOLVE]
    now = 20 if target == "in-group-wait" else 200
    engine.advance(now)
    assert engine.acknowledge(inc, "alice", now) == []


def test_acknowledge_alerts_acknowledges_their_incidents() -> None:
    """Acknowledging by alert identity acknowledges each incident holding those alerts once."""
    engine = make_engine(route(group_by=["alertname", "instance"]))
    engine.submit([A, B, C], 0)
    engine.advance(30)
    actions = engine.acknowledge_alerts([A.identity, B.identity, A.identity, "am/nope"], "pagerduty", 40)
    assert [(a.kind, a.incident.group_labels["instance"]) for a in actions] == [
        (ActionKind.ACKNOWLEDGE, "web1"),
        (ActionKind.ACKNOWLEDGE, "web2"),
    ]


def test_updates_keep_the_acknowledgement() -> None:
    """An acknowledged incident stays acknowledged through updates."""
    engine, inc = _opened()
    engine.acknowledge(inc, "alice", 40)
    (update,) = engine.submit([B], 400)
    assert (update.kind, update.incident.status, update.incident.acknowledged_by) == (
        ActionKind.UPDATE,
        IncidentStatus.ACKNOWLEDGED,
        "alice",
    )


def test_manual_resolve_then_repeats_do_not_reopen() -> None:
    """A manual resolve emits RESOLVE, and repeats or changes of its still-firing alerts do not re-open it."""
    engine, inc = _opened((), A, B)
    (res,) = engine.resolve(inc, "alice", 50)
    assert (res.kind, res.at, res.reason, res.incident.status) == (
        ActionKind.RESOLVE,
        50,
        "resolved by alice",
        IncidentStatus.RESOLVED,
    )
    later = play(engine, [(60, A), (70, B), (80, alert("CPU", severity="warning")), (400, A)], 1000)
    assert later == []
    assert engine.resolve(inc, "bob", 1000) == []


def test_manual_resolve_then_new_alert_reopens() -> None:
    """After a manual resolve, a new alert of the group within reopen_window re-opens the same incident."""
    engine, inc = _opened((), A)
    engine.resolve(inc, "alice", 50)
    (reopen,) = engine.submit([B], 100)
    assert (reopen.kind, reopen.at, reopen.reason, reopen.incident.id) == (
        ActionKind.OPEN,
        100,
        "re-opened",
        inc,
    )


def test_incident_reopened_after_manual_resolve_still_tracks_old_alerts() -> None:
    """An incident re-opened after a manual resolve follows its older alerts again and resolves with them."""
    engine, inc = _opened((), A)
    engine.resolve(inc, "alice", 50)
    events = [(60, alert("CPU", severity="warning")), (100, B), (400, resolved(B)), (500, resolved(A))]
    actions = play(engine, events, 1000)
    assert summary(actions) == [
        (100, OPEN, firing(2)),
        (400, UPDATE, firing(1)),
        (500, RESOLVE, resolved_title()),
    ]
    assert actions[0].incident.alerts[0].severity is Severity.WARNING  # what it learned while resolved
    assert all(a.incident.id == inc for a in actions)


def test_manual_resolve_of_unknown_or_waiting_incident_does_nothing() -> None:
    """Resolving an unknown incident, or one still in group_wait, emits nothing."""
    engine = make_engine()
    engine.submit([A], 0)
    assert engine.resolve("inc-000000000000", "alice", 10) == []
    assert engine.resolve(next(iter(engine.incidents)), "alice", 10) == []
    assert summary(engine.advance(30)) == [(30, OPEN, firing(1))]


# ----------------------------------------------------------------------------------- determinism

DETERMINISM_STREAM: list[Event] = [
    (0, A),
    (3, DISK),
    (10, B),
    (12, A),
    (40, alert("CPU", severity="warning")),
    (45, C),
    (60, resolved(DISK)),
    (100, alert("Mem", ends_at=250)),
    (400, resolved(B)),
    (420, resolved(C)),
    (421, alert("CPU", instance="web1", severity="warning", ends_at=900)),
    (700, alert("Disk", starts_at=700)),
    (1200, alert("Mem", starts_at=1200)),
    (1300, resolved(alert("Disk", starts_at=700))),
]


def _fingerprint(actions: list) -> list[tuple]:
    return [
        (a.kind, a.at, a.incident.id, a.incident.revision, a.incident.title, a.incident.priority, a.reason)
        for a in actions
    ]


@pytest.mark.parametrize("step", [1.0, 0.5, 13.0], ids=["every-1s", "every-half-second", "every-13s"])
def test_same_stream_same_actions(step: float) -> None:
    """The same stream gives identical actions on two engines, whether ticked often or only at submits."""
    reference = _fingerprint(play(make_engine(), DETERMINISM_STREAM, 3000))
    assert reference == _fingerprint(play(make_engine(), DETERMINISM_STREAM, 3000))
    assert reference == _fingerprint(play(make_engine(), DETERMINISM_STREAM, 3000, step=step))
    assert len(reference) > 8


# ------------------------------------------------------------------------------ idempotency keys


def test_revision_increases_by_one_per_action() -> None:
    """Each action of an incident carries the next revision, so idempotency keys never repeat."""
    engine, inc = _opened(((route(sinks=["pager", "slack"])),), A)
    actions = [
        *engine.submit([B], 400),
        *engine.acknowledge(inc, "alice", 410),
        *engine.submit([C], 800),
        *engine.submit([resolved(A), resolved(B), resolved(C)], 900),
        *engine.submit([alert("CPU", starts_at=950)], 950),
    ]
    assert [(a.kind.value, a.incident.revision) for a in actions] == [
        (UPDATE, 2),
        (ACK, 3),
        (UPDATE, 4),
        (RESOLVE, 5),
        (OPEN, 6),
    ]
    keys = [a.idempotency_key(sink) for a in actions for sink in a.sinks]
    assert len(keys) == len(set(keys)) == 10
    assert actions[0].idempotency_key("pager") == f"{inc}:pager:2"


def test_views_are_snapshots() -> None:
    """An action's incident view stays as delivered when the incident changes later."""
    engine, _ = _opened()
    (update,) = engine.submit([B], 400)
    engine.submit([resolved(A), resolved(B)], 500)
    assert (update.incident.revision, len(update.incident.firing), update.incident.status) == (
        2,
        2,
        IncidentStatus.TRIGGERED,
    )


# -------------------------------------------------------------------------------------- priority


def test_priority_change_on_update_is_in_the_timeline() -> None:
    """A priority change caused by an update is carried by the update and recorded in the timeline."""
    engine = make_engine(services={"api": 1})
    events = [
        (0, alert("CPU", severity="warning", service="api")),
        (400, alert("CPU", instance="web2", service="api")),
    ]
    actions = play(engine, events, 1000)
    assert [(a.kind.value, a.incident.priority) for a in actions] == [(OPEN, "P2"), (UPDATE, "P1")]
    entries = [e for e in engine.incidents[actions[0].incident.id].timeline if e.event == "priority"]
    assert [(e.at, e.detail["previous"], e.detail["priority"]) for e in entries] == [
        (30, None, "P2"),
        (400, "P2", "P1"),
    ]
    assert "service api is tier 1" in entries[-1].reason
    assert "severity critical" in entries[-1].reason


def test_priority_does_not_fall_when_the_urgent_alert_resolves() -> None:
    """An incident keeps the priority of its worst moment: a resolved critical alert still counts."""
    engine = make_engine(services={"api": 2})
    crit, warn = alert("CPU", service="api"), alert("CPU", instance="web2", severity="warning", service="api")
    actions = play(engine, [(0, crit), (0, warn), (400, resolved(crit))], 1000)
    assert [(a.kind.value, a.incident.priority) for a in actions] == [(OPEN, "P2"), (UPDATE, "P2")]


def test_open_counts_by_priority() -> None:
    """Opened incidents are counted by their priority."""
    engine = make_engine(route(group_by=["alertname", "instance"]), services={"api": 1})
    play(engine, [(0, alert("CPU", service="api")), (0, alert("CPU", instance="web2", severity="info"))], 100)
    assert engine.stats.opened == {"P1": 1, "P5": 1}


def test_timeline_explains_the_incident() -> None:
    """The timeline says which route grouped the alerts, when it paged, and why it resolved."""
    engine = make_engine()
    play(engine, [(0, A), (10, B), (400, resolved(A)), (401, resolved(B))], 1000)
    (incident,) = engine.incidents.values()
    assert [(e.at, e.event, e.by) for e in incident.timeline] == [
        (0, "grouped", "route:default"),
        (0, "alert added", "route:default"),
        (10, "alert added", "route:default"),
        (30, "priority", "priority"),
        (30, "paged", "engine"),
        (401, "resolved", "engine"),
    ]


def test_sender_group_resolve_resolves_alerts_the_sender_left_out() -> None:
    """A group the sender declares resolved resolves every alert seen in it, even ones not listed."""
    engine = make_engine(route(group_wait=0, group_interval=0))
    a, b = alert("Disk", instance="db1"), alert("Disk", instance="db2")
    engine.submit([a], 10, sender_group="{}:{alertname=Disk}")
    engine.submit([b], 20, sender_group="{}:{alertname=Disk}")
    actions = engine.submit([resolved(a, ends_at=30)], 30, sender_group="{}:{alertname=Disk}", group_resolved=True)
    assert [x.kind.value for x in actions] == ["resolve"]
    assert {al.status.value for al in actions[0].incident.alerts} == {"resolved"}
    assert engine.stats.implied_resolves == 1
    timeline = engine.get(actions[0].incident.id).timeline  # type: ignore[union-attr]
    assert any("sender group was resolved" in entry.reason for entry in timeline)


def test_other_sender_groups_are_left_alone() -> None:
    """Resolving one sender group does not touch alerts seen only in another."""
    engine = make_engine(route(group_wait=0, group_interval=0))
    a, b = alert("Disk", instance="db1"), alert("Disk", instance="db2")
    engine.submit([a], 10, sender_group="g1")
    engine.submit([b], 20, sender_group="g2")
    actions = engine.submit([resolved(a, ends_at=30)], 30, sender_group="g1", group_resolved=True)
    assert [x.kind.value for x in actions] == ["update"]
    assert engine.stats.implied_resolves == 0
