"""On-call schedule overrides through the real app: created, applied to assignment, journaled (they
survive a restart), listed and removed; bad input refused naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.apptools import FakeClock, fixture_bytes, run, running_app
from tests.bridge.test_links_api import FIRING, JSON, config


def schedule_config(tmp_path: Path) -> dict[str, Any]:
    cfg = config(tmp_path)
    cfg["schedules"] = [{"name": "db-primary", "time_zone": "UTC", "layers": [
        {"name": "weekly", "rotation": "weekly", "members": ["alice", "bob"], "start": "2026-01-12"}]}]
    cfg["pools"][0]["schedule"] = "db-primary"
    return cfg


def test_an_override_through_the_api_changes_who_is_paged_and_survives_a_restart(tmp_path: Path) -> None:
    """POST an override: bob covers alice; the next page goes to bob; after a restart he still does."""

    async def scenario() -> None:
        clock = FakeClock(1_790_000_000.0)  # Monday 2026-09-21 14:13 UTC: alice's week (weeks alternate from Jan 12)
        async with running_app(schedule_config(tmp_path), clock=clock) as (client, _runtime, sink):
            (schedule,) = (await (await client.get("/api/v1/schedules")).json())["items"]
            assert schedule["on_call"] == ["alice"]
            resp = await client.post("/api/v1/schedules/db-primary/overrides", json={
                "member": "bob", "start": "2026-09-21T00:00:00Z", "end": "2026-09-28T00:00:00Z",
                "replaces": "alice", "created_by": "alice", "comment": "dentist"})
            assert resp.status == 201, await resp.text()
            override = await resp.json()
            assert override["member"] == "bob" and override["id"].startswith("ov-")
            assert (await (await client.get("/api/v1/schedules")).json())["items"][0]["on_call"] == ["bob"]
            await client.post("/v1/sources/am", data=fixture_bytes(FIRING), headers=JSON)
            await sink.wait_for(1)
            assert sink.delivered[0][1].incident.assignee == "bob"
        async with running_app(schedule_config(tmp_path), clock=clock) as (client, _runtime, _sink):
            items = (await (await client.get("/api/v1/schedules")).json())["items"]
            assert items[0]["on_call"] == ["bob"] and items[0]["overrides"][0]["comment"] == "dentist"
            resp = await client.delete(f"/api/v1/schedules/db-primary/overrides/{override['id']}")
            assert resp.status == 204
            assert (await (await client.get("/api/v1/schedules")).json())["items"][0]["on_call"] == ["alice"]

    run(scenario())


def test_bad_overrides_are_refused_naming_the_field(tmp_path: Path) -> None:
    """Unknown member, end before start, missing author, unknown schedule: 4xx naming the field; nothing kept."""

    async def scenario() -> None:
        async with running_app(schedule_config(tmp_path)) as (client, _runtime, _sink):
            good = {"member": "bob", "start": "2026-09-21T00:00:00Z", "end": "2026-09-22T00:00:00Z",
                    "created_by": "alice", "comment": "swap"}
            for change, field in (({"member": "zed"}, "member"), ({"end": "2026-09-20T00:00:00Z"}, "end"),
                                  ({"created_by": ""}, "created_by"), ({"start": "soon"}, "start"),
                                  ({"extra": 1}, "extra")):
                resp = await client.post("/api/v1/schedules/db-primary/overrides", json={**good, **change})
                assert resp.status == 400 and (await resp.json())["field"] == field, (change, await resp.text())
            assert (await client.post("/api/v1/schedules/nope/overrides", json=good)).status == 404
            assert (await (await client.get("/api/v1/schedules")).json())["items"][0]["overrides"] == []

    run(scenario())
