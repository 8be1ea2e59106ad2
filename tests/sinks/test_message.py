"""sinks/_message.py: the channel-neutral content every human-facing sink shows."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bridge.model import Action, ActionKind, AlertStatus, Link, Recipient, Severity
from sinks._message import (
    MAX_ALERTS,
    MAX_LINKS,
    Fact,
    LinkKind,
    NamedLink,
    alert_links,
    duration_text,
    notification,
)
from tests.sinks.conftest import ALL_KINDS, T0, make_action, make_alert

ACK = "https://bridge.example/api/v1/links/ack-token"
RESOLVE = "https://bridge.example/api/v1/links/resolve-token"


def people(action: Action, *recipients: Recipient, **links: str) -> Action:
    """`action` addressed to `recipients`, carrying `links` (default: both signed links)."""
    return dataclasses.replace(action, recipients=recipients,
                               links=links or {"acknowledge": ACK, "resolve": RESOLVE})


def facts(action: Action) -> dict[str, str]:
    return {fact.name: fact.text for fact in notification(action).facts}


HEADLINES = [
    ("open", ActionKind.OPEN, {}, "[FIRING]"),
    ("update", ActionKind.UPDATE, {}, "[UPDATE: 2 alerts firing]"),
    ("update-singular", ActionKind.UPDATE, {"n_alerts": 1}, "[UPDATE: 1 alert firing]"),
    ("acknowledge", ActionKind.ACKNOWLEDGE, {}, "[ACKNOWLEDGED by alice]"),
    ("acknowledge-anonymous", ActionKind.ACKNOWLEDGE, {"acknowledged_by": None}, "[ACKNOWLEDGED]"),
    ("resolve", ActionKind.RESOLVE, {}, "[RESOLVED]"),
    ("assign", ActionKind.ASSIGN, {"assignee": "alice"}, "[ASSIGNED to alice]"),
    ("assign-nobody", ActionKind.ASSIGN, {}, "[ASSIGNED]"),
    ("escalate", ActionKind.ESCALATE, {"escalation_level": 2}, "[ESCALATED to tier 2]"),
    ("escalate-no-level", ActionKind.ESCALATE, {}, "[ESCALATED]"),
    ("sla-warning", ActionKind.SLA_WARNING, {}, "[SLA WARNING]"),
    ("sla-breach", ActionKind.SLA_BREACH, {}, "[SLA BREACHED]"),
]


@pytest.mark.parametrize(("kind", "incident", "headline"), [h[1:] for h in HEADLINES], ids=[h[0] for h in HEADLINES])
def test_headline_per_kind(kind: ActionKind, incident: dict[str, Any], headline: str) -> None:
    """Each action kind has its bracketed headline, naming who acknowledged, the assignee or the tier."""
    note = notification(make_action(kind, **incident))
    assert note.headline == headline
    assert note.subject == f"P1 {headline} InstanceDown (payments)"


def test_heading_subject_and_summary() -> None:
    """The heading adds the kind's emoji to priority, headline and title; the summary counts firing alerts."""
    note = notification(make_action())
    assert note.heading == "🔴 P1 · [FIRING] InstanceDown (payments)"
    assert note.summary == "2 alerts firing"
    assert (note.title, note.priority, note.reason) == (
        "InstanceDown (payments)", "P1", "new incident from rule group-by-alertname")


@ALL_KINDS
def test_every_kind_has_the_base_facts(kind: ActionKind) -> None:
    """Every kind states status, priority with its reason, pool, route and alerts firing, in that order."""
    names = [fact.name for fact in notification(make_action(kind)).facts]
    assert names[:5] == ["Status", "Priority", "Pool", "Route", "Alerts firing"]
    assert facts(make_action(kind))["Priority"] == "P1 (severity critical on tier-1 service payments)"


def test_lifecycle_facts_appear_when_set() -> None:
    """Root cause, assignee, escalation tier and SLA deadlines are facts once the incident has them."""
    action = make_action(ActionKind.ESCALATE, root_cause="payments-db", assignee="bob", escalation_level=2,
                         sla={"acknowledge_by": T0 + 900, "resolve_by": T0 + 3900})
    assert facts(action) == {
        "Status": "triggered",
        "Priority": "P1 (severity critical on tier-1 service payments)",
        "Pool": "databases",
        "Route": "db-oncall",
        "Alerts firing": "2 of 2",
        "Root cause": "payments-db",
        "Assignee": "bob",
        "Escalation": "tier 2",
        "Acknowledge by": "2024-03-04T09:27:03.123Z (in 15m)",
        "Resolve by": "2024-03-04T10:17:03.123Z (in 1h 5m)",
    }
    deadline = notification(action).facts[-1]
    assert deadline == Fact("Resolve by", "2024-03-04T10:17:03.123Z", T0 + 3900, "in 1h 5m")


def test_unset_lifecycle_facts_are_left_out() -> None:
    """Without root cause, assignee, escalation or SLA, only the base facts are shown."""
    assert list(facts(make_action())) == ["Status", "Priority", "Pool", "Route", "Alerts firing"]


def test_breached_deadline_says_overdue() -> None:
    """A deadline before the action's time reads "overdue by" (relative to the action, not the wall clock)."""
    action = make_action(ActionKind.SLA_BREACH, sla={"acknowledge_by": T0 - 120})
    assert facts(action)["Acknowledge by"] == "2024-03-04T09:10:03.123Z (overdue by 2m)"


SLA = {"acknowledge_by": T0 + 900, "resolve_by": T0 + 3600}
DEADLINES = [
    ("triggered", ActionKind.OPEN, {}, ["Acknowledge by", "Resolve by"]),
    ("acknowledged", ActionKind.ACKNOWLEDGE, {}, ["Resolve by"]),
    ("resolved", ActionKind.RESOLVE, {}, []),
]


@pytest.mark.parametrize(("kind", "extra", "names"), [d[1:] for d in DEADLINES], ids=[d[0] for d in DEADLINES])
def test_deadlines_follow_the_status(kind: ActionKind, extra: dict[str, Any], names: list[str]) -> None:
    """Acknowledge-by shows only while triggered, resolve-by until resolved."""
    note = notification(make_action(kind, sla=SLA, **extra))
    assert [d.name for d in note.deadlines] == names


def test_resolved_incident_states_its_duration_and_acknowledger() -> None:
    """A resolve says how long the incident lasted; an acknowledged status names who."""
    assert facts(make_action(ActionKind.RESOLVE))["Duration"] == "5m"
    assert facts(make_action(ActionKind.ACKNOWLEDGE))["Status"] == "acknowledged by alice"


@pytest.mark.parametrize(("seconds", "text"), [(0, "0m"), (59, "0m"), (3599, "59m"), (3660, "1h 1m"),
                                               (90000, "1d 1h"), (-5, "0m")])
def test_duration_text(seconds: float, text: str) -> None:
    """Durations read in whole minutes, hours and minutes, or days and hours."""
    assert duration_text(seconds) == text


def test_alerts_are_capped_with_the_count_of_the_rest() -> None:
    """25 alerts list MAX_ALERTS and count the other 15; a smaller cap is honoured."""
    note = notification(make_action(n_alerts=25))
    assert (len(note.alerts), note.more_alerts, note.alerts_total) == (MAX_ALERTS, 15, 25)
    small = notification(make_action(n_alerts=25), max_alerts=3)
    assert (len(small.alerts), small.more_alerts) == (3, 22)


def test_firing_and_most_severe_alerts_come_first() -> None:
    """Alerts are listed firing before resolved, critical before warning before info, oldest first."""
    alerts = (
        make_alert(0, severity=Severity.INFO, summary="info"),
        make_alert(1, status=AlertStatus.RESOLVED, summary="done"),
        make_alert(2, severity=Severity.WARNING, summary="warn"),
        make_alert(3, severity=Severity.CRITICAL, summary="crit-late", starts_at=T0),
        make_alert(4, severity=Severity.CRITICAL, summary="crit-early", starts_at=T0 - 9999),
    )
    note = notification(make_action(ActionKind.UPDATE, alerts=alerts))
    assert [line.summary for line in note.alerts] == ["crit-early", "crit-late", "warn", "info", "done"]
    assert [line.firing for line in note.alerts] == [True, True, True, True, False]
    assert note.alerts_firing == 4


def test_alert_without_summary_shows_its_key() -> None:
    """An alert with an empty summary is listed by its key."""
    note = notification(make_action(alerts=(make_alert(0, summary=""),)))
    assert note.alerts[0].summary == "fp0000@1709543523"


LINKS = [
    ("runbook_url", {"runbook_url": "https://rb.example/a"}, (), [("https://rb.example/a", "runbook", "runbook")]),
    ("runbook", {"runbook": "https://rb.example/b"}, (), [("https://rb.example/b", "runbook", "runbook")]),
    ("dashboard_url", {"dashboard_url": "https://g.example/d"}, (),
     [("https://g.example/d", "dashboard", "dashboard")]),
    ("dashboardURL", {"dashboardURL": "https://g.example/d"}, (), [("https://g.example/d", "dashboard", "dashboard")]),
    ("panelURL", {"panelURL": "https://g.example/p"}, (), [("https://g.example/p", "dashboard", "dashboard")]),
    ("grafana_url", {"grafana_url": "https://g.example/g"}, (), [("https://g.example/g", "dashboard", "dashboard")]),
    ("link-source", {}, (Link("https://prom.example/graph", "Source"),),
     [("https://prom.example/graph", "Source", "source")]),
    ("link-runbook-by-text", {}, (Link("https://wiki.example/rb", "Runbook"),),
     [("https://wiki.example/rb", "Runbook", "runbook")]),
    ("link-panel-by-text", {}, (Link("https://g.example/p", "Panel"),),
     [("https://g.example/p", "Panel", "dashboard")]),
    ("link-without-text", {}, (Link("https://x.example/"),), [("https://x.example/", "link", "source")]),
    ("dedup-link-and-annotation", {"runbook_url": "https://rb.example/a"}, (Link("https://rb.example/a", "docs"),),
     [("https://rb.example/a", "docs", "runbook")]),
    ("dedup-two-annotations", {"runbook_url": "https://rb.example/a", "runbook": "https://rb.example/a"}, (),
     [("https://rb.example/a", "runbook", "runbook")]),
    ("not-http-dropped", {"runbook_url": "javascript:alert(1)", "dashboard_url": "/relative"},
     (Link("ftp://x.example/f", "f"),), []),
]


@pytest.mark.parametrize(("annotations", "links", "expected"), [c[1:] for c in LINKS], ids=[c[0] for c in LINKS])
def test_alert_links(annotations: dict[str, str], links: tuple[Link, ...],
                     expected: list[tuple[str, str, str]]) -> None:
    """Runbook and dashboard annotations and Alert.links become typed http(s) links, deduplicated by URL."""
    alert = make_alert(0, annotations=annotations, links=links)
    assert [(link.href, link.label, link.kind.value) for link in alert_links(alert)] == expected


def test_incident_links_are_deduplicated_across_alerts_and_numbered() -> None:
    """Runbooks, dashboards and sources of all alerts are listed once each; equal labels are numbered."""
    alerts = (
        make_alert(0, annotations={"runbook_url": "https://rb.example/x", "dashboard_url": "https://g.example/d"}),
        make_alert(1, annotations={"runbook_url": "https://rb.example/x"}),
        make_alert(2, annotations={"runbook_url": "https://rb.example/y"}, links=()),
    )
    note = notification(make_action(alerts=alerts))
    assert note.runbooks == (NamedLink("https://rb.example/x", "Runbook 1", LinkKind.RUNBOOK),
                             NamedLink("https://rb.example/y", "Runbook 2", LinkKind.RUNBOOK))
    assert note.dashboards == (NamedLink("https://g.example/d", "Dashboard", LinkKind.DASHBOARD),)
    assert [link.label for link in note.sources] == ["Source 1", "Source 2"]


def test_incident_links_are_capped() -> None:
    """At most MAX_LINKS runbooks are listed, however many alerts have one."""
    note = notification(make_action(n_alerts=12))
    assert len(note.runbooks) == MAX_LINKS


ACTION_LINKS = [
    ("triggered-both", ActionKind.OPEN, ACK, RESOLVE),
    ("escalated-both", ActionKind.ESCALATE, ACK, RESOLVE),
    ("acknowledged-resolve-only", ActionKind.ACKNOWLEDGE, None, RESOLVE),
    ("resolved-none", ActionKind.RESOLVE, None, None),
]


@pytest.mark.parametrize(("kind", "ack", "resolve"), [a[1:] for a in ACTION_LINKS], ids=[a[0] for a in ACTION_LINKS])
def test_signed_links_follow_the_status(kind: ActionKind, ack: str | None, resolve: str | None) -> None:
    """The acknowledge link shows only while triggered, the resolve link until resolved."""
    note = notification(people(make_action(kind)))
    assert (note.acknowledge_url, note.resolve_url) == (ack, resolve)


def test_missing_or_unsafe_signed_links_are_left_out() -> None:
    """No links, or a link that is not http(s), gives no acknowledge/resolve URL."""
    assert notification(make_action()).acknowledge_url is None
    note = notification(people(make_action(), acknowledge="javascript:alert(1)", resolve=RESOLVE))
    assert (note.acknowledge_url, note.resolve_url) == (None, RESOLVE)


def test_handles_per_channel_are_deduplicated() -> None:
    """handles(channel) lists (name, handle) of recipients with that channel's handle, each handle once."""
    action = people(make_action(),
                    Recipient("alice", {"slack": "U1", "email": "alice@example.org"}),
                    Recipient("bob", {"email": "bob@example.org"}),
                    Recipient("alice again", {"slack": "U1"}),
                    Recipient("carol", {"slack": " "}))
    note = notification(action)
    assert note.handles("slack") == (("alice", "U1"),)
    assert note.handles("email") == (("alice", "alice@example.org"), ("bob", "bob@example.org"))
    assert note.handles("teams") == ()


@ALL_KINDS
def test_notification_is_pure(kind: ActionKind) -> None:
    """The same action always gives an equal notification."""
    action = people(make_action(kind, n_alerts=12), Recipient("alice", {"slack": "U1"}))
    assert notification(action) == notification(action)
