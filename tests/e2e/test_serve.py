"""`alertbridge serve` as a real process: fixtures in, incidents in the API, webhooks out."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.replay import replay, stream_lines
from bridge.settings import validate_settings
from bridge.wiring import build_engine, build_sources
from tests.apptools import FIXTURES
from tests.e2e.conftest import ROOT, Receiver, Server, e2e_config, wait_until

pytestmark = pytest.mark.e2e

AM_SEQUENCE = [
    "captured_v0.25_webhook_firing_2alerts.json",
    "captured_v0.25_webhook_firing_1resolved_1firing.json",
    "captured_v0.25_webhook_resolved.json",
]
AM_OTHERS = [
    "captured_v0.25_webhook_max_alerts1_firing_truncated.json",
    "captured_v0.25_webhook_max_alerts1_resolved_truncated.json",
    "oncall_example_firing.json",
]
STORM_SMALL = Path(__file__).resolve().parents[3] / "shared" / "storm" / "data" / "small-11" / "stream.jsonl.gz"


def test_every_alertmanager_fixture_through_a_real_server(tmp_path: Path, receiver: Receiver,
                                                          servers: list[Server]) -> None:
    """Every Alertmanager fixture is accepted; the receiver gets the open, then the resolve."""
    server = Server(e2e_config(receiver.url), tmp_path / "data").start()
    servers.append(server)
    for name in AM_SEQUENCE:
        status, body = server.post("/v1/sources/am", (FIXTURES / "alertmanager" / name).read_bytes())
        assert status == 200, (name, body)
    [incident] = server.get_json("/api/v1/incidents")["items"]
    assert incident["status"] == "resolved" and incident["group_labels"] == {"alertname": "InstanceDown"}
    first = incident["id"]
    wait_until(lambda: (first, "resolve") in receiver.actions(), 10, "the resolve webhook")
    assert [action for inc, action in receiver.actions() if inc == first] == ["open", "update", "resolve"]
    # A second episode (Alertmanager run 2, max_alerts 1) fires and resolves again within the reopen
    # window, then Grafana OnCall's example fires InstanceDown once more: same group, same incident.
    for name in AM_OTHERS:
        status, body = server.post("/v1/sources/am", (FIXTURES / "alertmanager" / name).read_bytes())
        assert status == 200, (name, body)
    [incident] = server.get_json("/api/v1/incidents")["items"]
    assert incident["id"] == first and incident["status"] == "triggered"
    expected = ["open", "update", "resolve", "open", "resolve", "open"]
    wait_until(lambda: len(receiver.requests) >= len(expected), 10, "the webhooks of the later episodes")
    assert [action for _, action in receiver.actions()] == expected
    keys = [r["headers"]["Idempotency-Key"] for r in receiver.requests]
    assert len(keys) == len(set(keys)), "a delivery was sent twice"
    assert server.stop() == 0


def test_restart_loses_nothing_and_pages_once(tmp_path: Path, receiver: Receiver, servers: list[Server]) -> None:
    """A SIGKILL after the 2xx loses no alert; the restarted server re-opens nothing and pages no one twice."""
    data = tmp_path / "data"
    server = Server(e2e_config(receiver.url), data).start()
    servers.append(server)
    status, _ = server.post("/v1/sources/am", (FIXTURES / "alertmanager" / AM_SEQUENCE[0]).read_bytes())
    assert status == 200
    wait_until(lambda: receiver.actions(), 10, "the open webhook")
    before = server.get_json("/api/v1/incidents")["items"]
    server.stop(signal.SIGKILL)
    again = Server(e2e_config(receiver.url), data).start()
    servers.append(again)
    after = again.get_json("/api/v1/incidents")["items"]
    assert [(i["id"], i["revision"], i["status"]) for i in after] == [
        (i["id"], i["revision"], i["status"]) for i in before]
    assert again.get_json("/api/v1/alerts")["total"] == 2
    assert [a for _, a in receiver.actions()].count("open") == 1


@pytest.mark.skipif(not STORM_SMALL.exists(), reason="../shared/storm data set not present")
def test_serving_and_replaying_give_the_same_incidents(tmp_path: Path, receiver: Receiver,
                                                       servers: list[Server]) -> None:
    """A recorded stream served over HTTP, exported and replayed, gives the same incidents."""
    config = e2e_config(receiver.url)
    server = Server(config, tmp_path / "data").start()
    servers.append(server)
    sent = 0
    with gzip.open(STORM_SMALL, "rb") as handle:
        for line in handle:
            record = json.loads(line)
            path = {"alertmanager": "/v1/sources/am", "pagerduty_events_v2": "/v2/enqueue"}.get(record["source"])
            if path is None:
                continue
            status, body = server.post(path, json.dumps(record["body"]).encode())
            assert status in (200, 202), body
            sent += 1
            if sent >= 150:
                break
    served = server.get_json("/api/v1/incidents?limit=1000")["items"]
    acked = served[0]["id"]
    assert server.post(f"/api/v1/incidents/{acked}/acknowledge", b'{"by": "e2e"}')[0] in (200, 409)
    served = {i["id"]: server.get_json(f"/api/v1/incidents/{i['id']}")
              for i in server.get_json("/api/v1/incidents?limit=1000")["items"]}
    assert served
    server.stop()

    exported = tmp_path / "journal.jsonl"
    subprocess.run([sys.executable, "-m", "bridge", "export", "--data-dir", str(tmp_path / "data"),
                    "--out", str(exported)], check=True, cwd=ROOT, capture_output=True)
    settings = validate_settings(config)
    engine = build_engine(settings)
    with exported.open("rb") as handle:
        summary = replay(stream_lines(handle), engine, build_sources(settings), lambda _: None)
    assert summary.applied == sent + 1 and not summary.skipped
    replayed = {v.id: v for v in engine.views()}
    assert set(replayed) == set(served)
    for incident_id, view in replayed.items():
        mine = served[incident_id]
        assert (view.status.value, view.priority, view.revision) == (
            mine["status"], mine["priority"], mine["revision"])
        assert sorted(a.key for a in view.alerts) == sorted(a["key"] for a in mine["alerts"])
