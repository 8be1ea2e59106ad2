"""End to end: a real `alertbridge serve` escalates L1 -> L2 because nobody acknowledged, then the
incident is acknowledged through the signed link in the escalation message and escalates no more."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import Receiver, Server, e2e_config, http, wait_until

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).parents[1] / "fixtures" / "alertmanager" / "captured_v0.25_webhook_firing_2alerts.json"
SECRET = "e2e-link-secret-0123456789abcdef0123456789"


def test_escalates_then_a_signed_link_acknowledges_and_stops_it(tmp_path: Path, receiver: Receiver,
                                                               servers: list[Server]) -> None:
    """Nobody acknowledges L1 (alice) within 2s, so L2 (bob) is paged; bob's link acknowledges; no L3."""
    config = e2e_config(receiver.url, pool="db")
    base = receiver.url.rsplit("/", 1)[0]
    config["sinks"] += [{"name": "alice-pager", "type": "webhook", "url": f"{base}/alice"},
                        {"name": "bob-pager", "type": "webhook", "url": f"{base}/bob"},
                        {"name": "carol-pager", "type": "webhook", "url": f"{base}/carol"}]
    config["pools"] = [{"name": "db", "escalation": "db", "members": [
        {"name": "alice", "notify": ["alice-pager"], "contacts": {"email": "alice@example.org"}},
        {"name": "bob", "notify": ["bob-pager"]}, {"name": "carol", "notify": ["carol-pager"]}]}]
    config["escalation_policies"] = [{"name": "db", "tiers": [
        {"assignee": True, "timeout": "2s"}, {"members": ["bob"], "timeout": "2s"},
        {"members": ["carol"], "timeout": "2s"}]}]
    config["links"] = {"secret": SECRET, "ttl": "1h"}
    server = Server(config, tmp_path / "data")
    config["server"]["public_url"] = server.base
    servers.append(server.start())

    status, _ = server.post("/v1/sources/am", FIXTURE.read_bytes())
    assert status == 200

    def paged(person: str) -> list[dict]:
        return [r["json"] for r in receiver.requests if r["path"] == f"/{person}"]

    (page,) = wait_until(lambda: paged("alice") or None, 10, "the page to alice")
    assert page["action"] == "open" and page["recipients"][0]["handles"] == {"email": "alice@example.org"}
    assert page["incident"]["assignee"] == "alice" and page["incident"]["escalation_level"] == 1
    (escalation,) = wait_until(lambda: paged("bob") or None, 10, "the escalation to bob")
    assert escalation["action"] == "escalate" and escalation["incident"]["escalation_level"] == 2
    assert "not acknowledged within 2s at tier L1" in escalation["reason"]

    ack = urlsplit(escalation["links"]["acknowledge"])
    assert f"{ack.scheme}://{ack.netloc}" == server.base
    status, body = http("GET", server.base + ack.path)
    assert status == 200 and b"<form" in body.lower()  # GET only asks to confirm
    status, body = http("POST", server.base + ack.path)
    assert status == 200, body
    incident = server.get_json(f"/api/v1/incidents/{escalation['incident']['id']}")
    assert incident["status"] == "acknowledged" and incident["acknowledged_by"] == "signed link"
    assert "escalation stopped" in [e["event"] for e in incident["timeline"]]

    status, _ = http("POST", server.base + ack.path)
    assert status == 403  # reused: nothing changes
    forged = ack.path[:-2] + ("AA" if not ack.path.endswith("AA") else "BB")
    assert http("POST", server.base + forged)[0] == 403

    # L2's timeout passes well after the acknowledge: L3 (carol) is never paged
    wait_until(lambda: any(r["json"]["action"] == "acknowledge" for r in receiver.requests if r["json"]), 10,
               "the acknowledge notification")
    time.sleep(3)
    assert paged("carol") == []
    assert [r["action"] for r in paged("bob")] == ["escalate"]
