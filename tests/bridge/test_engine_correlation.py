"""Engine correlation on a fake clock: hold-down, flapping, muting, guaranteed resolve, topology."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridge.catalog import Catalog, CatalogSettings, ServiceEntry
from bridge.engine import Engine, EngineConfig
from bridge.model import ActionKind
from bridge.routing import parse_matcher
from correlators.dedup import DedupStage
from correlators.inhibit import Inhibitor, InhibitRule
from correlators.maintenance import MaintenanceCalendar, MaintenanceWindow
from correlators.silences import Silence, SilenceStore
from tests.bridge.conftest import alert, policy, resolved, route

OPEN, RESOLVE = ActionKind.OPEN, ActionKind.RESOLVE


def engine_with(*routes, catalog=None, muters=(), latency=None, tiers=None) -> Engine:
    return Engine(EngineConfig(routes=routes, priority=policy(tiers), stages=(DedupStage(),),
                               catalog=catalog or Catalog.empty(), muters=muters, resolve_latency=latency or {}))


def held(**changes) -> object:
    return replace(route(group_wait=0, group_interval=0), **changes)


def kinds(actions) -> list[tuple[float, str]]:
    return [(a.at, a.kind.value) for a in actions]


def test_hold_down_pages_only_after_min_firing_for() -> None:
    """An alert must fire min_firing_for before it pages; one that resolves first never pages."""
    engine = engine_with(held(min_firing_for=120))
    blip, real = alert("Blip"), alert("Real")
    assert engine.submit([blip, real], 0) == []
    assert engine.submit([resolved(blip)], 60) == []
    assert kinds(engine.advance(500)) == [(120, "open")]
    assert engine.stats.pages_avoided["hold_down"] == 1


def test_resolve_latency_lengthens_the_hold_for_late_reporting_sources() -> None:
    """A source that reports resolves 300 s late holds its alerts 300 s, so its late resolve still counts."""
    engine = engine_with(held(min_firing_for=120), latency={"am": 310})
    blip = alert("Blip")
    engine.submit([blip], 0)
    assert engine.submit([resolved(blip)], 300) == []  # the resolve arrives one group_interval late
    assert engine.advance(1000) == []


def test_a_flapping_condition_is_held_until_it_stays_up() -> None:
    """After flap_episodes episodes within flap_window, an episode pages only once it lasts flap_clear_after."""
    engine = engine_with(held(min_firing_for=30, flap_episodes=3, flap_window=3600, flap_clear_after=600))
    actions = []
    for start in (0, 100, 200):  # three short episodes: none lasts 30 s
        actions += engine.submit([alert("Flappy", starts_at=start)], start)
        actions += engine.submit([resolved(alert("Flappy", starts_at=start))], start + 20)
    actions += engine.submit([alert("Flappy", starts_at=300)], 300)  # flapping now: held 600 s
    actions += engine.advance(800)
    assert actions == []
    assert kinds(engine.advance(1000)) == [(900, "open")]


def test_a_silenced_alert_never_pages() -> None:
    """A matching active silence keeps a new alert from opening anything."""
    store = SilenceStore([Silence("s1", (parse_matcher("alertname=CPU"),), 0, 1000, "alice", "known")])
    engine = engine_with(held(), muters=(store,))
    assert engine.submit([alert("CPU")], 10) == []
    assert engine.stats.dropped[("silences", "silenced")] == 1


def test_a_paged_incident_still_gets_its_resolve_after_its_alerts_are_silenced() -> None:
    """Guaranteed resolve: silencing the alerts of a paged incident does not swallow its resolve."""
    store = SilenceStore()
    engine = engine_with(held(), muters=(store,))
    cpu = alert("CPU")
    assert kinds(engine.submit([cpu], 0)) == [(0, "open")]
    store.add(Silence("s1", (parse_matcher("alertname=CPU"),), 10, 1000, "alice", "quiet please"), 10)
    assert kinds(engine.submit([resolved(cpu)], 50)) == [(50, "resolve")]


def test_inhibition_evaluated_when_the_hold_ends() -> None:
    """A source that starts firing after the target (but before the target pages) still mutes it."""
    rule = InhibitRule("down-mutes-latency", (parse_matcher("alertname=Down"),),
                       (parse_matcher("alertname=Latency"),), ("instance",))
    engine = engine_with(held(min_firing_for=60), muters=(Inhibitor([rule]),))
    engine.submit([alert("Latency", instance="db1")], 0)
    engine.submit([alert("Down", instance="db1")], 30)
    actions = engine.advance(200)
    assert [a.incident.title.split()[1] for a in actions if a.kind is OPEN] == ["alertname=Down"]
    assert engine.stats.dropped[("inhibit", "inhibited")] == 1


def test_maintenance_window_mutes_alerts_on_its_hosts() -> None:
    """An alert on a host inside an open maintenance window does not page; after the window it does."""
    window = MaintenanceWindow("mw", hosts=("db-1",), start=0, end=100)
    engine = engine_with(held(), muters=(MaintenanceCalendar([window]),))
    assert engine.submit([alert("Down", instance="db-1:9100")], 50) == []
    assert kinds(engine.submit([alert("Down", instance="db-2:9100")], 60)) == [(60, "open")]


CATALOG = Catalog.build(CatalogSettings(services=[
    ServiceEntry(name="db", owner="team-data", criticality=1, hosts=["db-1"]),
    ServiceEntry(name="api", owner="team-api", criticality=2, depends_on=["db"]),
    ServiceEntry(name="web", owner="team-web", criticality=1, depends_on=["api"]),
    ServiceEntry(name="batch", owner="team-batch", criticality=3),
]))


def topology(**changes) -> object:
    return held(topology=True, topology_window=600, **changes)


def test_connected_services_join_one_incident_routed_to_the_root_cause_owner() -> None:
    """Alerts on db, api and web (a dependency chain) make one incident routed to the db's owner."""
    engine = engine_with(topology(min_firing_for=60), catalog=CATALOG)
    engine.submit([alert("Errors", instance="web-a", service="web")], 0)
    engine.submit([alert("Errors", instance="api-a", service="api")], 5)
    engine.submit([alert("Down", instance="db-1:9100")], 10)  # host-level: the host's service
    actions = engine.advance(200)
    opened = [a for a in actions if a.kind is OPEN]
    assert len(opened) == 1 and opened[0].incident.pool in ("team-web", "team-data")
    incident = engine.get(opened[0].incident.id)
    assert incident is not None and incident.root_cause == "db" and incident.pool == "team-data"
    assert {a.service for a in incident.alerts.values()} == {"web", "api", "db"}


def test_unrelated_services_stay_separate() -> None:
    """Concurrent alerts on services with no dependency between them are two incidents."""
    engine = engine_with(topology(), catalog=CATALOG)
    a = engine.submit([alert("Errors", instance="web-a", service="web")], 0)
    b = engine.submit([alert("Errors", instance="batch-a", service="batch")], 1)
    assert a[0].incident.id != b[0].incident.id
    assert (a[0].incident.pool, b[0].incident.pool) == ("team-web", "team-batch")


def test_an_alert_connecting_two_incidents_merges_them() -> None:
    """When an alert on a shared dependency connects two open incidents, the younger merges into the older."""
    engine = engine_with(topology(), catalog=CATALOG)
    web = engine.submit([alert("Errors", instance="web-a", service="web")], 0)[0].incident.id
    db = engine.submit([alert("Down", instance="db-1", service="db")], 1)[0].incident.id
    actions = engine.submit([alert("Errors", instance="api-a", service="api")], 2)
    assert (RESOLVE, db) in [(a.kind, a.incident.id) for a in actions]
    merged = engine.get(web)
    assert merged is not None and {a.service for a in merged.alerts.values()} == {"web", "db", "api"}
    assert engine.stats.merged == 1


WINDOWS = [
    pytest.param("until_resolved", 0, [0, 0, 0], id="until-resolved-takes-alerts-while-any-fires"),
    pytest.param("fixed", 100, [0, 0, 1], id="fixed-window-closes-100s-after-the-first-alert"),
    pytest.param("sliding", 100, [0, 0, 1], id="sliding-window-closes-after-100s-without-a-new-alert"),
]


@pytest.mark.parametrize(("window", "length", "incident_of"), WINDOWS)
def test_grouping_windows(window: str, length: float, incident_of: list[int]) -> None:
    """Alerts at 0 s, 90 s and 250 s of one group join one incident or start a new one, per window."""
    engine = engine_with(held(group_window=window, group_window_for=length or 600))
    ids: list[str] = []
    for at, instance in ((0, "a"), (90, "b"), (250, "c")):
        engine.submit([alert("CPU", instance=instance)], at)
        ids.append(next(i for i in engine.series.values() if i.alert.labels["instance"] == instance).incidents[0])
    distinct = list(dict.fromkeys(ids))
    assert [distinct.index(i) for i in ids] == incident_of


def test_sliding_window_stays_open_while_alerts_keep_coming() -> None:
    """A sliding window keeps taking alerts that arrive less than its length apart."""
    engine = engine_with(held(group_window="sliding", group_window_for=100))
    for at, instance in ((0, "a"), (90, "b"), (180, "c"), (270, "d")):
        engine.submit([alert("CPU", instance=instance)], at)
    assert len({s.incidents[0] for s in engine.series.values()}) == 1


def test_early_warning_pages_at_low_urgency_then_the_critical_raises_it() -> None:
    """A sustained warning matching a precursor rule pages at low urgency; the critical alert raises it."""
    from bridge.routing import Precursor

    rule = Precursor("disk-filling", (parse_matcher("alertname=DiskFilling"),), 300, "low")
    engine = engine_with(held(min_firing_for=60, precursors=(rule,), group_by=("instance",)),
                         catalog=Catalog.build(CatalogSettings(services=[ServiceEntry(name="db", criticality=1)])),
                         tiers={"db": 1})
    engine.submit([alert("DiskFilling", instance="db1", service="db", severity="warning")], 0)
    opened = [a for a in engine.advance(400) if a.kind is OPEN]
    assert [(a.at, a.incident.priority) for a in opened] == [(300, "P3")]  # high impact x low urgency
    assert "early warning disk-filling" in opened[0].incident.priority_reason
    engine.submit([alert("DiskFull", instance="db1", service="db", severity="critical")], 1000)
    updates = engine.advance(2000)
    assert updates and updates[-1].incident.priority == "P1"


def test_resolve_hysteresis_swallows_a_quick_refire() -> None:
    """With resolve_hysteresis, a re-fire soon after the resolve cancels it: no resolve, no second page."""
    engine = engine_with(held(resolve_hysteresis=120))
    cpu = alert("CPU")
    assert kinds(engine.submit([cpu], 0)) == [(0, "open")]
    assert engine.submit([resolved(cpu)], 100) == []
    refire = alert("CPU", starts_at=150)
    actions = engine.submit([refire], 150)
    assert [a.kind for a in actions] == [ActionKind.UPDATE]
    assert kinds(engine.submit([resolved(refire)], 300)) == []
    assert kinds(engine.advance(1000)) == [(420, "resolve")]


def test_updates_stop_once_an_inhibiting_source_fires_but_the_resolve_still_comes() -> None:
    """An incident whose alerts become inhibited after its page gets no more updates, yet its resolve."""
    rule = InhibitRule("down-mutes-latency", (parse_matcher("alertname=Down"),),
                       (parse_matcher("alertname=Latency"),), ("instance",))
    engine = engine_with(route("down", "alertname=Down", group_wait=0), held(group_by=("instance",)),
                         muters=(Inhibitor([rule]),))
    latency = alert("Latency", instance="db1")
    assert kinds(engine.submit([latency], 0)) == [(0, "open")]
    engine.submit([alert("Down", instance="db1")], 10)
    assert engine.submit([replace(latency, summary="worse")], 20) == []
    assert kinds(engine.submit([resolved(replace(latency, summary="worse"))], 30)) == [(30, "resolve")]


def test_another_tool_on_the_same_service_corroborates_a_held_alert() -> None:
    """With corroborate_after, a held alert pages early once a second tool reports the same service."""
    engine = engine_with(held(min_firing_for=300, corroborate_after=30, group_by=("service",)))
    engine.submit([alert("Errors", service="api", source="am")], 0)
    engine.submit([alert("ErrorRate", service="api", source="dd")], 10)
    opened = [a for a in engine.advance(100) if a.kind is OPEN]
    assert [a.at for a in opened] == [30]
    other = engine_with(held(min_firing_for=300, corroborate_after=30, group_by=("service",)))
    other.submit([alert("Errors", service="api", source="am")], 0)
    other.submit([alert("Latency", instance="x", service="api", source="am")], 10)  # same tool: no
    assert [a.at for a in other.advance(400) if a.kind is OPEN] == [300]


def test_expiring_a_silence_early_lets_its_firing_alert_page() -> None:
    """An alert muted until a silence's end pages as soon as the silence is expired by hand."""
    store = SilenceStore([Silence("s1", (parse_matcher("alertname=CPU"),), 0, 1000, "alice", "known")])
    engine = engine_with(held(), muters=(store,))
    assert engine.submit([alert("CPU")], 10) == []
    assert engine.expire_silence("s1", 100) == []
    assert kinds(engine.advance(101)) == [(100, "open")]


def test_a_slow_burn_outage_joins_its_warning_incident_after_the_window() -> None:
    """A fixed window has closed, but the service still fires there: its outage joins and raises the priority."""
    engine = engine_with(topology(group_window="fixed", group_window_for=600), catalog=CATALOG, tiers={"db": 1})
    warning = engine.submit([alert("DiskFilling", instance="db-1", service="db", severity="warning")], 0)
    outage = engine.submit([alert("DiskFull", instance="db-1", service="db", severity="critical")], 1800)
    assert [a.kind for a in outage] == [ActionKind.UPDATE]
    assert outage[0].incident.id == warning[0].incident.id and outage[0].incident.priority == "P1"
    # the outage (its first critical) starts the window again: the outage's symptoms join it...
    symptom = engine.submit([alert("Errors", instance="api-a", service="api")], 1801)
    assert [a.kind for a in symptom] == [ActionKind.UPDATE] and symptom[0].incident.id == warning[0].incident.id
    # ...until that window too has passed: another service's alert then opens an incident of its own
    other = engine.submit([alert("Latency", instance="web-a", service="web")], 2402)
    assert [a.kind for a in other] == [OPEN] and other[0].incident.id != warning[0].incident.id


HUB = Catalog.build(CatalogSettings(services=[
    ServiceEntry(name="k8s", owner="team-platform", criticality=1),
    *(ServiceEntry(name=f"app{i}", owner=f"team-{i}", criticality=3, depends_on=["k8s"]) for i in range(4)),
]))


@pytest.mark.parametrize(("hub_severity", "joined"), [("warning", False), ("critical", True)])
def test_a_shared_dependency_known_only_from_warnings_pulls_nothing_in(hub_severity: str, joined: bool) -> None:
    """Four services run on k8s: a k8s warning does not make an app's alert part of its incident; a critical does."""
    engine = engine_with(topology(), catalog=HUB)
    hub = engine.submit([alert("NodePressure", instance="node-1", service="k8s", severity=hub_severity)], 0)
    app = engine.submit([alert("Errors", instance="app0-a", service="app0")], 10)
    same = app[0].incident.id == hub[0].incident.id if app else True
    assert same is joined


@pytest.mark.parametrize(("first", "second", "joined"), [
    ("warning", "warning", False), ("critical", "warning", True), ("warning", "critical", True)],
    ids=["two-warnings-stay-apart", "critical-pulls-a-warning-in", "a-critical-joins-a-warning"])
def test_a_topology_link_needs_a_critical_on_one_side(first: str, second: str, joined: bool) -> None:
    """Warnings on two connected services may each be noise: they group only when one side is critical."""
    engine = engine_with(topology(), catalog=CATALOG)
    db = engine.submit([alert("Slow", instance="db-1", service="db", severity=first)], 0)
    api = engine.submit([alert("Slow", instance="api-a", service="api", severity=second)], 10)
    same = api[0].incident.id == db[0].incident.id if api else True
    assert same is joined


def test_a_held_alert_firing_again_with_a_later_start_is_a_new_episode() -> None:
    """Alertmanager can hide a resolve between two group_interval ticks: the alert shows up firing with a
    later startsAt. That is a new episode: it counts for flap detection and is held from its own start."""
    engine = engine_with(held(min_firing_for=300, flap_episodes=3, flap_window=3600, flap_clear_after=1800))
    actions = engine.submit([alert("Flappy", starts_at=0)], 0)
    actions += engine.submit([resolved(alert("Flappy", starts_at=0))], 100)
    actions += engine.submit([alert("Flappy", starts_at=200)], 200)
    actions += engine.submit([alert("Flappy", starts_at=400)], 400)  # its resolve was hidden: a 3rd episode
    actions += engine.advance(1000)  # 200 + 300 would have paged as one long episode
    assert actions == []
    assert engine.flap_state(alert("Flappy"), 1000)["flapping"]
    assert kinds(engine.advance(3000)) == [(2200, "open")]  # 400 + flap_clear_after


def test_a_held_alert_on_a_service_of_a_paged_incident_joins_it_at_once() -> None:
    """The hold keeps a lone alert from paging; on a service that already fires in a paged incident it
    adds context without paging anyone anew, so it joins at once (and counts for the priority)."""
    engine = engine_with(topology(min_firing_for=300), catalog=CATALOG, tiers={"api": 3})
    engine.submit([alert("MemoryHigh", instance="api-a", service="api", severity="warning")], 0)
    (opened,) = [a for a in engine.advance(300) if a.kind is OPEN]
    assert opened.incident.priority == "P4"
    actions = engine.submit([alert("OOMKilled", instance="api-a", service="api")], 400)
    assert [a.kind for a in actions] == [ActionKind.UPDATE] and actions[0].incident.id == opened.incident.id
    incident = engine.get(opened.incident.id)
    assert incident is not None and {a.summary for a in incident.alerts.values()} == {"MemoryHigh", "OOMKilled"}
    assert incident.priority == "P3"
    # a held alert on another service (no incident of its own yet) still waits for its hold
    assert engine.submit([alert("Errors", instance="batch-a", service="batch")], 410) == []


def test_a_failure_below_an_older_incident_does_not_take_it_over() -> None:
    """A cause cannot come after its symptoms: a db failing 20 minutes into the api's incident is a new
    problem (its own incident, its own owner), not the root cause of the api's incident."""
    engine = engine_with(topology(), catalog=CATALOG)
    (api,) = engine.submit([alert("Errors", instance="api-a", service="api")], 0)
    (db,) = engine.submit([alert("Down", instance="db-1:9100")], 500)
    assert db.kind is OPEN and db.incident.id != api.incident.id and db.incident.pool == "team-data"
    api_incident = engine.get(api.incident.id)
    assert api_incident is not None and api_incident.pool == "team-api"
    # a cause that fires with its symptoms (within CAUSE_SLACK) is their root cause
    engine2 = engine_with(topology(), catalog=CATALOG)
    (first,) = engine2.submit([alert("Errors", instance="api-a", service="api")], 0)
    engine2.submit([alert("Down", instance="db-1:9100")], 60)
    incident = engine2.get(first.incident.id)
    assert incident is not None and incident.root_cause == "db" and incident.pool == "team-data"


def test_the_first_page_goes_to_the_owner_of_a_failing_dependency_still_held_back() -> None:
    """A late-reporting tool keeps its alerts held longer: the db's critical alert is still held when the
    api's alert (from a prompt tool) pages, yet the page goes to the db's owner, and says why."""
    engine = engine_with(topology(min_firing_for=60), catalog=CATALOG, latency={"late": 300})
    engine.submit([alert("Errors", instance="api-a", service="api", source="prompt")], 0)
    engine.submit([alert("Down", instance="db-1:9100", source="late")], 10)
    (opened,) = [a for a in engine.advance(60) if a.kind is OPEN]
    assert opened.incident.pool == "team-data" and opened.incident.root_cause == "db"
    incident = engine.get(opened.incident.id)
    assert incident is not None and "still held back" in next(
        e.reason for e in incident.timeline if e.event == "root cause")
    # the held alert joins once confirmed; one that resolves first leaves the api's owner in charge
    engine.advance(400)
    assert {a.service for a in incident.alerts.values()} == {"api", "db"}
    other = engine_with(topology(min_firing_for=60), catalog=CATALOG, latency={"late": 300})
    other.submit([alert("Errors", instance="api-a", service="api", source="prompt")], 0)
    other.submit([alert("Down", instance="db-1:9100", source="late")], 10)
    other.submit([resolved(alert("Down", instance="db-1:9100", source="late"))], 30)
    (page,) = [a for a in other.advance(60) if a.kind is OPEN]
    assert page.incident.pool == "team-api"


@pytest.mark.parametrize(("also_failing", "root"), [((), "app0"), (("app1",), "k8s")])
def test_a_held_shared_dependency_is_the_root_cause_only_under_two_failing_services(also_failing, root) -> None:
    """A shared dependency (HUB_DEPENDENTS or more services on it) explains one failing service no better
    than that service does: it takes a second failing service above it, confirmed or held."""
    engine = engine_with(topology(min_firing_for=60), catalog=HUB, latency={"late": 300})
    engine.submit([alert("Errors", instance="app0-a", service="app0", source="prompt")], 0)
    engine.submit([alert("NodeDown", instance="k8s-a", service="k8s", source="late")], 5)
    for name in also_failing:
        engine.submit([alert("Errors", instance=f"{name}-a", service=name, source="late")], 6)
    (opened,) = [a for a in engine.advance(60) if a.kind is OPEN]
    assert opened.incident.root_cause == root


@pytest.mark.parametrize(("db_severity", "joined"), [("critical", True), ("warning", False)])
def test_a_warning_above_the_root_of_an_outage_is_one_of_its_symptoms(db_severity: str, joined: bool) -> None:
    """Two warnings on connected services do not link (either may be noise), but once the incident has
    gone critical, a warning on a service above its root cause is a symptom of that outage."""
    engine = engine_with(topology(), catalog=CATALOG)
    (db,) = engine.submit([alert("Down", instance="db-1", service="db", severity=db_severity)], 0)
    engine.submit([alert("Slow", instance="api-a", service="api", severity="warning")], 10)
    web = engine.submit([alert("Slow", instance="web-a", service="web", severity="warning")], 20)
    incident = engine.get(db.incident.id)
    assert incident is not None
    assert ("web" in {a.service for a in incident.alerts.values()}) is joined
    assert [a.kind for a in web] == ([ActionKind.UPDATE] if joined else [OPEN])


def test_a_held_alert_is_judged_by_when_it_began_firing_not_when_its_hold_ended() -> None:
    """A fixed window takes an alert that began firing inside it, even when its hold ends after it."""
    engine = engine_with(topology(min_firing_for=120, group_window="fixed", group_window_for=300),
                         catalog=CATALOG)
    actions = engine.submit([alert("Down", instance="db-1", service="db")], 0)
    actions += engine.submit([alert("Errors", instance="api-a", service="api")], 250)  # held until 370
    actions += engine.advance(400)
    opened = [a for a in actions if a.kind is OPEN]
    assert len(opened) == 1
    incident = engine.get(opened[0].incident.id)
    assert incident is not None and {a.service for a in incident.alerts.values()} == {"db", "api"}


def test_a_held_alert_that_clears_on_a_service_of_a_paged_incident_is_recorded_there() -> None:
    """A symptom that clears within its hold pages nobody, but if its service is part of a paged
    incident it was part of that failure: the incident lists it (resolved)."""
    engine = engine_with(topology(min_firing_for=300), catalog=CATALOG)
    actions = engine.submit([alert("Down", instance="db-1", service="db")], 0)
    actions += engine.submit([alert("SlowQueries", instance="db-1", service="db")], 200)  # held until 500
    actions += engine.submit([resolved(alert("SlowQueries", instance="db-1", service="db"))], 450)
    actions += engine.advance(1000)
    (opened,) = [a for a in actions if a.kind is OPEN]
    incident = engine.get(opened.incident.id)
    assert incident is not None and {a.summary for a in incident.alerts.values()} == {"Down", "SlowQueries"}
    assert any("resolved before its hold ended" in e.reason for e in incident.timeline)
    # on a service the incident does not hold, a cleared alert stays out (it may be unrelated noise)
    engine.submit([alert("Errors", instance="batch-a", service="batch")], 1100)
    engine.submit([resolved(alert("Errors", instance="batch-a", service="batch"))], 1150)
    assert "batch" not in {a.service for a in incident.alerts.values()}


def test_an_alert_muted_by_maintenance_is_not_recorded_in_a_paged_incident_when_it_clears() -> None:
    """Maintenance holds an alert until the window ends; it is muted, not a symptom: when it clears,
    the paged incident on its service does not take it (nor its severity)."""
    window = MaintenanceWindow("mw", hosts=("db-2",), start=0, end=1000)
    engine = engine_with(topology(min_firing_for=60), catalog=CATALOG, muters=(MaintenanceCalendar([window]),))
    actions = engine.submit([alert("Slow", instance="db-1", service="db", severity="warning")], 0)
    actions += engine.submit([alert("Down", instance="db-2", service="db")], 100)  # db-2 is in maintenance
    actions += engine.submit([resolved(alert("Down", instance="db-2", service="db"))], 200)
    actions += engine.advance(300)
    (opened,) = [a for a in actions if a.kind is OPEN]
    incident = engine.get(opened.incident.id)
    assert incident is not None and [a.summary for a in incident.alerts.values()] == ["Slow"]


@pytest.mark.parametrize(("name", "severity", "joined_at_once"), [
    ("Slow", "warning", True),  # its own check already fires there: the same condition again
    ("Errors", "critical", True),  # a critical on the incident's service escalates it
    ("Latency", "warning", False),  # another warning after the window: held like any lone alert
])
def test_after_the_window_a_held_alert_joins_at_once_only_as_the_same_check_or_a_critical(
        name: str, severity: str, joined_at_once: bool) -> None:
    engine = engine_with(topology(min_firing_for=300, group_window="fixed", group_window_for=600), catalog=CATALOG)
    engine.submit([alert("Slow", instance="api-a", service="api", severity="warning")], 0)
    (opened,) = [a for a in engine.advance(300) if a.kind is OPEN]
    engine.submit([alert(name, instance="api-b", service="api", severity=severity)], 1000)
    incident = engine.get(opened.incident.id)
    assert incident is not None
    assert (len(incident.alerts) == 2) is joined_at_once


def test_a_held_cause_steers_the_first_page_but_does_not_move_a_paged_incident() -> None:
    """Once paged, an incident is not rerouted on a held alert (it may yet turn out transient)."""
    engine = engine_with(topology(min_firing_for=60), catalog=CATALOG, latency={"late": 300})
    engine.submit([alert("Errors", instance="api-a", service="api", source="prompt")], 0)
    (opened,) = [a for a in engine.advance(60) if a.kind is OPEN]
    assert opened.incident.pool == "team-api"
    engine.submit([alert("Down", instance="db-1:9100", source="late")], 100)  # held until 400
    engine.submit([alert("Latency", instance="api-b", service="api", source="prompt")], 110)
    incident = engine.get(opened.incident.id)
    assert incident is not None and incident.pool == "team-api" and incident.root_cause == "api"


NODES = Catalog.build(CatalogSettings(services=[
    ServiceEntry(name="k8s", owner="team-platform", criticality=1, hosts=["node-1", "node-2"]),
    ServiceEntry(name="app0", owner="team-0", criticality=3, depends_on=["k8s"], hosts=["node-1"]),
    *(ServiceEntry(name=f"app{i}", owner=f"team-{i}", criticality=3, depends_on=["k8s"], hosts=["node-2"])
      for i in range(1, 4)),
]))


@pytest.mark.parametrize(("node", "root"), [("node-1", "k8s"), ("node-2", "app0")])
def test_a_held_node_alert_explains_only_the_services_running_on_that_node(node: str, root: str) -> None:
    """A node failing takes down the instances on it, not every service of the cluster: a held critical
    on node-2 does not steer the page of an incident on app0, which runs on node-1."""
    engine = engine_with(topology(min_firing_for=60), catalog=NODES, latency={"late": 300})
    engine.submit([alert("Errors", instance="app0-a", service="app0", source="prompt")], 0)
    engine.submit([alert("Errors", instance="app1-a", service="app1", source="late")], 2)
    engine.submit([alert("NodeNotReady", instance=f"{node}:9100", source="late")], 5)
    (opened,) = [a for a in engine.advance(60) if a.kind is OPEN]
    assert opened.incident.root_cause == root
