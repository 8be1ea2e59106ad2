"""Silences and maintenance windows through the API: created, applied, journaled, listed, expired."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.apptools import FakeClock, base_config, fixture_bytes, run, running_app

JSON = {"Content-Type": "application/json"}
FIRING = "alertmanager/captured_v0.25_webhook_firing_2alerts.json"  # alertname InstanceDown, job node


def test_silenced_alerts_never_page_and_expiry_is_visible(tmp_path: Path) -> None:
    """A silence on alertname mutes the alerts; expiring it keeps it listed as expired."""

    async def scenario() -> None:
        async with running_app(base_config(tmp_path)) as (client, _runtime, sink):
            resp = await client.post("/api/v1/silences", json={
                "matchers": ['alertname="InstanceDown"'], "duration": "2h", "created_by": "alice",
                "comment": "known outage"})
            assert resp.status == 201, await resp.text()
            silence = await resp.json()
            assert silence["state"] == "active" and silence["matchers_text"] == ['alertname="InstanceDown"']
            assert (await client.post("/v1/sources/am", data=fixture_bytes(FIRING), headers=JSON)).status == 200
            assert (await (await client.get("/api/v1/incidents")).json())["total"] == 0
            listed = (await (await client.get("/api/v1/silences")).json())["items"]
            assert listed[0]["muting_now"] == 2 and listed[0]["matched"] >= 2
            metrics = await (await client.get("/metrics")).text()
            assert 'alertbridge_alerts_dropped_total{reason="silenced",stage="silences"} 2.0' in metrics
            assert 'alertbridge_silences{state="active"} 1.0' in metrics
            expired = await (await client.delete(f"/api/v1/silences/{silence['id']}")).json()
            assert expired["state"] == "expired"
            states = [s["state"] for s in (await (await client.get("/api/v1/silences?state=expired")).json())["items"]]
            assert states == ["expired"]
            assert sink.delivered == []

    run(scenario())


BAD_SILENCES = [
    pytest.param({"duration": "1h", "created_by": "a", "comment": "c"}, "matchers", id="no-matchers"),
    pytest.param({"matchers": [], "duration": "1h", "created_by": "a", "comment": "c"}, "matchers",
                 id="empty-matchers"),
    pytest.param({"matchers": ['a=~".*"'], "duration": "1h", "created_by": "a", "comment": "c"}, "matchers",
                 id="matches-everything"),
    pytest.param({"matchers": ["a=b"], "created_by": "a", "comment": "c"}, "ends_at", id="no-end"),
    pytest.param({"matchers": ["a=b"], "duration": "soon", "created_by": "a", "comment": "c"}, "duration",
                 id="bad-duration"),
    pytest.param({"matchers": ["a=b"], "duration": "1h", "comment": "c"}, "created_by", id="no-author"),
    pytest.param({"matchers": ["a=b"], "duration": "1h", "created_by": "a", "comment": ""}, "comment",
                 id="empty-comment"),
    pytest.param({"matchers": ["a=b"], "ends_at": "2001-01-01T00:00:00Z", "created_by": "a", "comment": "c"},
                 "ends_at", id="ends-in-the-past"),
    pytest.param({"matchers": ["a=b"], "duration": "1h", "created_by": "a", "comment": "c", "x": 1}, "x",
                 id="unknown-field"),
]


@pytest.mark.parametrize(("body", "field"), BAD_SILENCES)
def test_bad_silences_are_rejected_naming_the_field(tmp_path: Path, body: dict[str, Any], field: str) -> None:
    """An invalid silence gets a 400 naming the field, and nothing is journaled."""

    async def scenario() -> None:
        async with running_app(base_config(tmp_path)) as (client, runtime, _):
            resp = await client.post("/api/v1/silences", json=body)
            assert resp.status == 400
            assert (await resp.json())["field"].startswith(field)
            assert runtime.store is not None and runtime.store.last_seq() == 0

    run(scenario())


def test_silences_survive_a_restart(tmp_path: Path) -> None:
    """Silences are journaled: after a restart they are still there and still mute."""
    clock = FakeClock()

    async def first() -> str:
        async with running_app(base_config(tmp_path), clock=clock) as (client, _, _):
            resp = await client.post("/api/v1/silences", json={
                "matchers": ["job=node"], "duration": "1h", "created_by": "bob", "comment": "migration"})
            return str((await resp.json())["id"])

    async def second(silence_id: str) -> None:
        clock.advance(60)
        async with running_app(base_config(tmp_path), clock=clock) as (client, _, _sink):
            assert (await (await client.get(f"/api/v1/silences/{silence_id}")).json())["state"] == "active"
            await client.post("/v1/sources/am", data=fixture_bytes(FIRING), headers=JSON)
            assert (await (await client.get("/api/v1/incidents")).json())["total"] == 0

    run(second(run(first())))


def test_maintenance_window_through_the_api(tmp_path: Path) -> None:
    """A window on the alerts' job mutes them while open; listing shows it; deleting it lifts it."""
    clock = FakeClock()

    async def scenario() -> None:
        async with running_app(base_config(tmp_path), clock=clock) as (client, _, _sink):
            resp = await client.post("/api/v1/maintenance", json={
                "id": "db-upgrade", "matchers": ["job=node"], "start": "2020-01-01T00:00:00Z",
                "end": "2099-01-01T00:00:00Z", "comment": "upgrade"})
            assert resp.status == 201, await resp.text()
            assert (await resp.json())["active"] is True
            assert (await client.post("/api/v1/maintenance", json={"id": "db-upgrade", "hosts": ["x"],
                                                                   "start": "2020-01-01T00:00:00Z",
                                                                   "end": "2099-01-01T00:00:00Z"})).status == 409
            await client.post("/v1/sources/am", data=fixture_bytes(FIRING), headers=JSON)
            assert (await (await client.get("/api/v1/incidents")).json())["total"] == 0
            assert (await client.delete("/api/v1/maintenance/db-upgrade")).status == 204
            assert (await client.get("/api/v1/maintenance/db-upgrade")).status == 404

    run(scenario())


def test_bad_window_names_the_field(tmp_path: Path) -> None:
    """A window without a scope or with a bad time gets a 400 naming the field."""

    async def scenario() -> None:
        async with running_app(base_config(tmp_path)) as (client, _, _):
            resp = await client.post("/api/v1/maintenance", json={"start": "2020-01-01T00:00:00Z",
                                                                   "end": "2099-01-01T00:00:00Z"})
            assert resp.status == 400 and (await resp.json())["field"] == "scope"
            resp = await client.post("/api/v1/maintenance", json={"hosts": ["a"], "start": "tomorrow",
                                                                   "end": "2099-01-01T00:00:00Z"})
            assert resp.status == 400 and (await resp.json())["field"] == "start"

    run(scenario())


def test_inhibition_from_config(tmp_path: Path) -> None:
    """An inhibit rule in the config mutes a target while its source fires."""
    config = base_config(tmp_path, inhibit_rules=[{
        "name": "node-down-mutes-the-rest", "source_matchers": ['instance="localhost:8081"'],
        "target_matchers": ['instance="localhost:8082"'], "equal": ["alertname"]}])

    async def scenario() -> None:
        async with running_app(config) as (client, runtime, sink):
            await client.post("/v1/sources/am", data=fixture_bytes(FIRING), headers=JSON)
            await sink.wait_for(1)
            [incident] = (await (await client.get("/api/v1/incidents")).json())["items"]
            detail = await (await client.get(f"/api/v1/incidents/{incident['id']}")).json()
            assert [a["labels"]["instance"] for a in detail["alerts"]] == ["localhost:8081"]
            assert runtime.engine.stats.dropped[("inhibit", "inhibited")] == 1

    run(scenario())


def test_config_maintenance_errors_name_their_path(tmp_path: Path) -> None:
    """check-config names the field of a broken maintenance window or inhibit rule."""
    from bridge.errors import ConfigError
    from bridge.settings import validate_settings

    config = base_config(tmp_path, maintenance=[{"hosts": ["a"], "start": "soon", "end": "2099-01-01T00:00:00Z"}],
                         inhibit_rules=[{"name": "x", "source_matchers": [], "target_matchers": ["a=b"]}])
    with pytest.raises(ConfigError) as caught:
        validate_settings(config)
    text = "\n".join(caught.value.problems)
    assert "maintenance[0].start" in text and "inhibit_rules[0].source_matchers" in text


def test_unused_silence_is_reported(tmp_path: Path) -> None:
    """A silence that matched nothing for report_unused_after is flagged in the API and metrics."""
    clock = FakeClock()
    config = base_config(tmp_path, silences={"report_unused_after": "10m"})

    async def scenario() -> None:
        async with running_app(config, clock=clock) as (client, runtime, _):
            await client.post("/api/v1/silences", json={"matchers": ["alertname=Nothing"], "duration": "2h",
                                                        "created_by": "carol", "comment": "just in case"})
            assert not (await (await client.get("/api/v1/silences")).json())["items"][0]["unused"]
            clock.advance(11 * 60)
            await runtime.tick()
            assert (await (await client.get("/api/v1/silences")).json())["items"][0]["unused"]
            assert "alertbridge_silences_unused 1.0" in await (await client.get("/metrics")).text()

    run(scenario())


def test_alertmanager_silence_api_round_trip(tmp_path: Path) -> None:
    """The Alertmanager API v2 silence endpoints accept the real PostableSilence and answer like Alertmanager."""
    import json as _json

    body = _json.loads(fixture_bytes("alertmanager_api/post_api_v2_silences_request.json"))
    body["startsAt"], body["endsAt"] = "2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z"

    async def scenario() -> None:
        async with running_app(base_config(tmp_path)) as (client, _, _):
            resp = await client.post("/api/v2/silences", json=body)
            assert resp.status == 200, await resp.text()
            silence_id = (await resp.json())["silenceID"]
            got = await (await client.get(f"/api/v2/silence/{silence_id}")).json()
            assert got["status"]["state"] == "active" and got["createdBy"] == "incident-bridge"
            assert {m["name"]: m["isRegex"] for m in got["matchers"]} == {"alertname": False, "instance": True}
            assert [s["id"] for s in await (await client.get("/api/v2/silences")).json()] == [silence_id]
            updated = dict(got, comment="still on it")
            resp = await client.post("/api/v2/silences", json=updated)
            assert (await resp.json())["silenceID"] == silence_id  # same matchers: updated in place
            assert (await client.delete(f"/api/v2/silence/{silence_id}")).status == 200
            assert (await (await client.get(f"/api/v2/silence/{silence_id}")).json())["status"]["state"] == "expired"
            resp = await client.post("/api/v2/silences", json={**body, "matchers": []})
            assert resp.status == 422 and (await resp.json())["code"] == 612
            resp = await client.post("/api/v2/silences", json={**body, "id": "nope"})
            assert resp.status == 404

    run(scenario())
