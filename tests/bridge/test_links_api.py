"""Signed links and Slack buttons through the real app: acknowledge/resolve once, 403 for anything else,
and an engine clock where escalation stops once acknowledged."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from tests.apptools import FakeClock, base_config, fixture_bytes, run, running_app

JSON = {"Content-Type": "application/json"}
FIRING = "alertmanager/captured_v0.25_webhook_firing_2alerts.json"
SECRET = "0123456789abcdef0123456789abcdef-link-secret"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    cfg = base_config(tmp_path, **extra)
    cfg["server"]["public_url"] = "https://alertbridge.example.org"
    cfg["links"] = {"secret": SECRET, "ttl": "1h"}
    cfg["slack_app"] = {"signing_secret": SLACK_SECRET}
    cfg["pools"] = [{"name": "db", "members": [{"name": "alice"}, {"name": "bob"}], "escalation": "db"}]
    cfg["escalation_policies"] = [{"name": "db", "tiers": [{"assignee": True, "timeout": "5m"},
                                                           {"members": ["bob"], "timeout": "5m"}]}]
    cfg["routes"][0]["pool"] = "db"
    return cfg


def path_of(url: str) -> str:
    return urlsplit(url).path


def test_links_acknowledge_once_and_refuse_forged_expired_and_reused(tmp_path: Path) -> None:
    """A page carries signed links; GET only confirms; POST acknowledges once; others get 403 and change nothing."""

    async def scenario() -> None:
        clock = FakeClock()
        async with running_app(config(tmp_path), clock=clock) as (client, runtime, sink):
            assert (await client.post("/v1/sources/am", data=fixture_bytes(FIRING), headers=JSON)).status == 200
            await sink.wait_for(1)
            page = sink.delivered[0][1]
            assert page.kind.value == "open" and page.recipients[0].name == "alice"
            ack = path_of(page.links["acknowledge"])
            incident = page.incident.id
            # GET never acts (mail scanners follow links)
            resp = await client.get(ack)
            assert resp.status == 200 and '<form method="post"' in (await resp.text()).lower()
            assert runtime.engine.get(incident).status.value == "triggered"
            # forged: one character of the signature changed
            forged = ack[:-1] + ("A" if ack[-1] != "A" else "B")
            assert (await client.post(forged)).status == 403
            assert runtime.engine.get(incident).status.value == "triggered"
            # used once
            resp = await client.post(ack)
            assert resp.status == 200, await resp.text()
            assert runtime.engine.get(incident).status.value == "acknowledged"
            assert runtime.engine.get(incident).acknowledged_by == "signed link"
            # reused
            assert (await client.post(ack)).status == 403
            # expired: the resolve link after its ttl
            clock.advance(3601)
            assert (await client.post(path_of(page.links["resolve"]))).status == 403
            assert runtime.engine.get(incident).status.value == "acknowledged"
            metrics = await (await client.get("/metrics")).text()
            assert 'alertbridge_link_refusals_total{reason="bad signature"} 1.0' in metrics
            assert 'alertbridge_link_refusals_total{reason="already used"} 1.0' in metrics
            assert 'alertbridge_link_refusals_total{reason="expired"} 1.0' in metrics
            assert 'alertbridge_link_uses_total{action="acknowledge"} 1.0' in metrics

    run(scenario())


def test_a_used_link_stays_used_after_a_restart(tmp_path: Path) -> None:
    """Single use survives a restart: the journal rebuilds the record of used links."""

    async def scenario() -> None:
        clock = FakeClock()
        async with running_app(config(tmp_path), clock=clock) as (client, _runtime, sink):
            await client.post("/v1/sources/am", data=fixture_bytes(FIRING), headers=JSON)
            await sink.wait_for(1)
            resolve = path_of(sink.delivered[0][1].links["resolve"])
            assert (await client.post(resolve)).status == 200
        async with running_app(config(tmp_path), clock=clock) as (client, runtime, _sink):
            assert (await client.post(resolve)).status == 403
            (incident,) = runtime.engine.incidents.values()
            assert incident.status.value == "resolved"

    run(scenario())


def test_acknowledge_stops_escalation(tmp_path: Path) -> None:
    """Without an acknowledge tier 2 is paged after the timeout; a link acknowledge before it stops that."""

    async def scenario(acknowledge: bool) -> list[str]:
        clock = FakeClock()
        async with running_app(config(tmp_path / str(acknowledge)), clock=clock) as (client, runtime, sink):
            await client.post("/v1/sources/am", data=fixture_bytes(FIRING), headers=JSON)
            await sink.wait_for(1)
            if acknowledge:
                assert (await client.post(path_of(sink.delivered[0][1].links["acknowledge"]))).status == 200
                await sink.wait_for(2)
            clock.advance(301)
            await runtime.tick()
            (incident,) = runtime.engine.incidents.values()
            events = [entry.event for entry in incident.timeline]
            if not acknowledge:
                await sink.wait_for(2)
                assert "escalated" in events
            else:
                assert "escalated" not in events and "escalation stopped" in events
            return [f"{a.kind.value}:{','.join(r.name for r in a.recipients)}" for _, a in sink.delivered]

    assert run(scenario(False)) == ["open:alice", "escalate:bob"]
    assert run(scenario(True)) == ["open:alice", "acknowledge:alice"]


def slack_request(payload: dict[str, Any], timestamp: int, secret: str = SLACK_SECRET) -> tuple[bytes, dict[str, str]]:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    base = f"v0:{timestamp}:".encode() + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": str(timestamp),
                  "X-Slack-Signature": signature}


def click(incident: str, action: str = "alertbridge.acknowledge") -> dict[str, Any]:
    return {"type": "block_actions", "user": {"id": "U0ALICE", "username": "alice", "team_id": "T1"},
            "team": {"id": "T1", "domain": "example"}, "response_url": "https://hooks.slack.com/actions/T1/1/x",
            "actions": [{"type": "button", "action_id": action, "block_id": "b", "value": incident,
                         "action_ts": "1700000000.000001"}]}


def test_slack_button_acknowledges_as_the_user_and_bad_signatures_are_refused(tmp_path: Path) -> None:
    """A signed Slack click acknowledges as slack:<user>; a bad or stale signature gets 401 and changes nothing."""

    async def scenario() -> None:
        clock = FakeClock()
        async with running_app(config(tmp_path), clock=clock) as (client, runtime, sink):
            await client.post("/v1/sources/am", data=fixture_bytes(FIRING), headers=JSON)
            await sink.wait_for(1)
            incident = sink.delivered[0][1].incident.id
            body, headers = slack_request(click(incident), int(clock.now), secret="wrong-secret")
            assert (await client.post("/api/v1/slack/actions", data=body, headers=headers)).status == 401
            body, headers = slack_request(click(incident), int(clock.now) - 600)
            assert (await client.post("/api/v1/slack/actions", data=body, headers=headers)).status == 401
            assert runtime.engine.get(incident).status.value == "triggered"
            body, headers = slack_request(click(incident), int(clock.now))
            resp = await client.post("/api/v1/slack/actions", data=body, headers=headers)
            assert resp.status == 200
            answer = await resp.json()
            assert answer["response_type"] == "ephemeral" and "acknowledged by alice" in answer["text"]
            assert runtime.engine.get(incident).acknowledged_by == "slack:alice"
            body, headers = slack_request(click("inc-unknown"), int(clock.now))
            resp = await client.post("/api/v1/slack/actions", data=body, headers=headers)
            assert resp.status == 200 and "not known" in (await resp.json())["text"]

    run(scenario())


def test_report_endpoint_counts_the_pool(tmp_path: Path) -> None:
    """GET /api/v1/report lists the pool's incidents and pages per person."""

    async def scenario() -> None:
        async with running_app(config(tmp_path)) as (client, _runtime, sink):
            await client.post("/v1/sources/am", data=fixture_bytes(FIRING), headers=JSON)
            await sink.wait_for(1)
            report = await (await client.get("/api/v1/report?since=1d")).json()
            assert [(r["pool"], r["incidents"]) for r in report["pools"]] == [("db", 1)]
            assert report["people"] == [{"member": "alice", "pages": 1, "pages_per_day": 1.0}]
            assert (await client.get("/api/v1/report?since=soon")).status == 400

    run(scenario())

