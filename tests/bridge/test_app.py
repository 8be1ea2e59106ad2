"""The HTTP app end to end in-process: ingest, bad input, auth, API actions, restart, dead letters."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from bridge.plugins import Outcome
from tests.apptools import FakeClock, RecordingSink, base_config, fixture_bytes, run, running_app

JSON = {"Content-Type": "application/json"}
AM_FIXTURES = [
    "alertmanager/captured_v0.25_webhook_firing_2alerts.json",
    "alertmanager/captured_v0.25_webhook_firing_1resolved_1firing.json",
    "alertmanager/captured_v0.25_webhook_resolved.json",
    "alertmanager/captured_v0.25_webhook_max_alerts1_firing_truncated.json",
    "alertmanager/captured_v0.25_webhook_max_alerts1_resolved_truncated.json",
    "alertmanager/oncall_example_firing.json",
]


def test_alertmanager_fixtures_open_then_resolve(tmp_path: Path) -> None:
    """Posting the captured Alertmanager sequence opens one incident per alertname and resolves it."""

    async def scenario() -> None:
        async with running_app(base_config(tmp_path)) as (client, _, sink):
            for name in AM_FIXTURES[:3]:
                resp = await client.post("/v1/sources/am", data=fixture_bytes(name), headers=JSON)
                assert resp.status == 200, await resp.text()
            await sink.wait_for(3)
            listing = await (await client.get("/api/v1/incidents")).json()
            assert listing["total"] == 1
            incident = listing["items"][0]
            assert incident["status"] == "resolved"
            detail = await (await client.get(f"/api/v1/incidents/{incident['id']}")).json()
            assert {a["status"] for a in detail["alerts"]} == {"resolved"}
            assert [e["event"] for e in detail["timeline"]][:2] == ["grouped", "alert added"]
            assert sink.kinds()[0] == "open" and sink.kinds()[-1] == "resolve"

    run(scenario())


def test_truncated_alerts_are_counted(tmp_path: Path) -> None:
    """A notification Alertmanager truncated (max_alerts) is accepted and the truncation is counted."""

    async def scenario() -> None:
        async with running_app(base_config(tmp_path)) as (client, _, _):
            body = fixture_bytes("alertmanager/captured_v0.25_webhook_max_alerts1_firing_truncated.json")
            assert (await client.post("/v1/sources/am", data=body, headers=JSON)).status == 200
            metrics = await (await client.get("/metrics")).text()
            assert 'alertbridge_ingest_truncated_alerts_total{source="am"} 1.0' in metrics

    run(scenario())


BAD_INPUT = [
    pytest.param("/v1/sources/am", b"{not json", JSON, 400, "body", id="invalid-json"),
    pytest.param("/v1/sources/am", b'{"version":"4"}', JSON, 400, "alerts", id="missing-alerts"),
    pytest.param("/v1/sources/am", b'{"alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"soon"}]}',
                 JSON, 400, "alerts[0].startsAt", id="bad-time"),
    pytest.param("/v1/sources/am", b"{}", {"Content-Type": "text/plain"}, 415, "Content-Type",
                 id="wrong-content-type"),
    pytest.param("/v1/sources/am", b'{"alerts":[' + b'{"x":1},' * 20000 + b'{}]}', JSON, 413, "body",
                 id="over-size-limit"),
    pytest.param("/v1/sources/nope", b"{}", JSON, 404, "name", id="unknown-source"),
    pytest.param("/api/v2/alerts", b'{"labels":{}}', JSON, 400, None, id="prometheus-not-an-array"),
    pytest.param("/api/v2/alerts", b'[{"annotations":{}}]', JSON, 422, "0.labels", id="prometheus-no-labels"),
    pytest.param("/v2/enqueue", b'{"event_action":"trigger"}', JSON, 400, "routing_key", id="pagerduty-no-key"),
]


@pytest.mark.parametrize(("path", "body", "headers", "status", "field"), BAD_INPUT)
def test_bad_input_is_rejected_whole(tmp_path: Path, path: str, body: bytes, headers: dict[str, str],
                                     status: int, field: str | None) -> None:
    """Bad input gets the right 4xx naming the field, is counted, and nothing of it is journaled."""

    async def scenario() -> None:
        async with running_app(base_config(tmp_path)) as (client, runtime, _):
            resp = await client.post(path, data=body, headers=headers)
            assert resp.status == status
            payload = await resp.json()
            if field is not None:
                assert field in json.dumps(payload)
            assert runtime.store is not None and runtime.store.last_seq() == 0
            metrics = await (await client.get("/metrics")).text()
            assert "alertbridge_ingest_rejected_total{" in metrics

    run(scenario())


AUTH_CASES = [
    pytest.param({"bearer_token": "s3cret"}, {"Authorization": "Bearer s3cret"}, 200, id="bearer-ok"),
    pytest.param({"bearer_token": "s3cret"}, {"Authorization": "Bearer nope"}, 401, id="bearer-wrong"),
    pytest.param({"bearer_token": "s3cret"}, {}, 401, id="bearer-missing"),
    pytest.param({"basic": {"username": "am", "password": "pw"}},
                 {"Authorization": "Basic " + base64.b64encode(b"am:pw").decode()}, 200, id="basic-ok"),
    pytest.param({"basic": {"username": "am", "password": "pw"}},
                 {"Authorization": "Basic " + base64.b64encode(b"am:x").decode()}, 401, id="basic-wrong"),
]


@pytest.mark.parametrize(("auth", "headers", "status"), AUTH_CASES)
def test_source_authentication(tmp_path: Path, auth: dict[str, Any], headers: dict[str, str], status: int) -> None:
    """A source with credentials accepts only requests that carry them; a 401 journals nothing."""
    config = base_config(tmp_path, sources=[{"name": "am", "type": "alertmanager", "auth": auth}])

    async def scenario() -> None:
        async with running_app(config) as (client, runtime, _):
            body = fixture_bytes(AM_FIXTURES[0])
            resp = await client.post("/v1/sources/am", data=body, headers={**JSON, **headers})
            assert resp.status == status
            assert runtime.store is not None
            assert runtime.store.last_seq() == (1 if status == 200 else 0)

    run(scenario())


def test_acknowledge_and_resolve_reach_the_sink(tmp_path: Path) -> None:
    """Acknowledge and a manual resolve through the API are delivered to the sink, in order."""

    async def scenario() -> None:
        async with running_app(base_config(tmp_path)) as (client, _, sink):
            await client.post("/v1/sources/am", data=fixture_bytes(AM_FIXTURES[0]), headers=JSON)
            await sink.wait_for(1)
            incident_id = (await (await client.get("/api/v1/incidents")).json())["items"][0]["id"]
            resp = await client.post(f"/api/v1/incidents/{incident_id}/acknowledge", json={"by": "alice"})
            assert resp.status == 200
            assert (await resp.json())["acknowledged_by"] == "alice"
            resp = await client.post(f"/api/v1/incidents/{incident_id}/resolve", json={"by": "bob"})
            assert (await resp.json())["status"] == "resolved"
            await sink.wait_for(3)
            assert sink.kinds() == ["open", "acknowledge", "resolve"]
            again = await client.post(f"/api/v1/incidents/{incident_id}/acknowledge")
            assert again.status == 409

    run(scenario())


API_ERRORS = [
    pytest.param("GET", "/api/v1/incidents/inc-missing", None, 404, id="unknown-incident"),
    pytest.param("POST", "/api/v1/incidents/inc-missing/resolve", None, 404, id="resolve-unknown"),
    pytest.param("GET", "/api/v1/incidents?status=open", None, 400, id="bad-status-filter"),
    pytest.param("GET", "/api/v1/incidents?limit=0", None, 400, id="bad-limit"),
    pytest.param("GET", "/api/v1/alerts?status=maybe", None, 400, id="bad-alert-status"),
    pytest.param("POST", "/api/v1/dead-letters/abc/retry", None, 400, id="bad-delivery-id"),
    pytest.param("POST", "/api/v1/dead-letters/99/retry", None, 404, id="unknown-delivery"),
    pytest.param("GET", "/no/such/route", None, 404, id="unknown-route"),
    pytest.param("DELETE", "/api/v1/incidents", None, 405, id="wrong-method"),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), API_ERRORS)
def test_api_errors_are_json(tmp_path: Path, method: str, path: str, body: Any, status: int) -> None:
    """API errors answer the right status with a JSON body that says why."""

    async def scenario() -> None:
        async with running_app(base_config(tmp_path)) as (client, _, _):
            resp = await client.request(method, path, json=body)
            assert resp.status == status
            payload = await resp.json()
            assert payload["error"] and "reason" in payload

    run(scenario())


def test_acknowledge_body_is_validated(tmp_path: Path) -> None:
    """An acknowledge body with an unknown field is rejected naming that field."""

    async def scenario() -> None:
        async with running_app(base_config(tmp_path)) as (client, _, sink):
            await client.post("/v1/sources/am", data=fixture_bytes(AM_FIXTURES[0]), headers=JSON)
            await sink.wait_for(1)
            incident_id = (await (await client.get("/api/v1/incidents")).json())["items"][0]["id"]
            resp = await client.post(f"/api/v1/incidents/{incident_id}/acknowledge", json={"who": "x"})
            assert resp.status == 400
            assert (await resp.json())["field"] == "who"

    run(scenario())


def test_restart_rebuilds_state_without_paging_twice(tmp_path: Path) -> None:
    """After a restart the same incidents exist, and the sink gets no second open."""
    clock = FakeClock()
    sink = RecordingSink()

    async def first() -> list[dict[str, Any]]:
        async with running_app(base_config(tmp_path), sink, clock) as (client, _, _):
            await client.post("/v1/sources/am", data=fixture_bytes(AM_FIXTURES[0]), headers=JSON)
            await sink.wait_for(1)
            return (await (await client.get("/api/v1/incidents")).json())["items"]

    async def second() -> list[dict[str, Any]]:
        clock.advance(10)
        async with running_app(base_config(tmp_path), sink, clock) as (client, runtime, _):
            assert runtime.dispatcher is not None
            await runtime.dispatcher.run_once()
            return (await (await client.get("/api/v1/incidents")).json())["items"]

    before = run(first())
    after = run(second())
    assert [i["id"] for i in after] == [i["id"] for i in before]
    assert sink.kinds() == ["open"]


def test_dead_letter_is_listed_and_retried(tmp_path: Path) -> None:
    """A delivery the sink refuses for good is a dead letter; retrying it delivers it."""
    sink = RecordingSink(outcomes=[Outcome.failed("HTTP 400 bad request", 400)])

    async def scenario() -> None:
        async with running_app(base_config(tmp_path), sink) as (client, runtime, _):
            await client.post("/v1/sources/am", data=fixture_bytes(AM_FIXTURES[0]), headers=JSON)
            assert runtime.dispatcher is not None
            for _ in range(50):  # bounded: the dispatcher records the failure asynchronously
                dead = (await (await client.get("/api/v1/dead-letters")).json())["items"]
                if dead:
                    break
                await runtime.dispatcher.run_once()
            assert len(dead) == 1 and "400" in dead[0]["last_error"]
            resp = await client.post(f"/api/v1/dead-letters/{dead[0]['id']}/retry")
            assert resp.status == 200 and (await resp.json())["state"] == "pending"
            await sink.wait_for(1)
            assert sink.kinds() == ["open"]
            assert (await client.post(f"/api/v1/dead-letters/{dead[0]['id']}/retry")).status == 409

    run(scenario())


def test_group_wait_holds_the_page_until_the_clock_reaches_it(tmp_path: Path) -> None:
    """With group_wait, nothing pages until the runtime's clock passes it; a transient never pages."""
    clock = FakeClock()
    config = base_config(tmp_path, routes=[{"name": "default", "group_by": ["alertname"], "group_wait": "30s",
                                            "sinks": ["rec"]}])

    async def scenario() -> None:
        async with running_app(config, clock=clock) as (client, runtime, sink):
            await client.post("/v1/sources/am", data=fixture_bytes(AM_FIXTURES[0]), headers=JSON)
            await runtime.tick()
            assert (await (await client.get("/api/v1/incidents")).json())["total"] == 0
            clock.advance(31)
            await runtime.tick()
            await sink.wait_for(1)
            assert sink.kinds() == ["open"]

    run(scenario())


def test_health_readiness_and_metrics(tmp_path: Path) -> None:
    """healthz and readyz answer 200 once started; metrics expose ingest, drops and queue depth."""

    async def scenario() -> None:
        async with running_app(base_config(tmp_path)) as (client, _, sink):
            assert (await client.get("/healthz")).status == 200
            assert (await client.get("/readyz")).status == 200
            body = fixture_bytes(AM_FIXTURES[0])
            await client.post("/v1/sources/am", data=body, headers=JSON)
            await client.post("/v1/sources/am", data=body, headers=JSON)
            await sink.wait_for(1)
            text = await (await client.get("/metrics")).text()
            for needle in ('alertbridge_ingest_alerts_total{source="am"} 4.0',
                           'alertbridge_alerts_dropped_total{reason="repeat",stage="dedup"} 2.0',
                           "alertbridge_outbox_deliveries{", "alertbridge_incidents{",
                           "alertbridge_ingest_latency_seconds_bucket", "alertbridge_deliveries_total{"):
                assert needle in text, needle

    run(scenario())
