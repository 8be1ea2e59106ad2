"""A real Prometheus Alertmanager posting its webhook to alertbridge (Debian's prometheus-alertmanager)."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import Receiver, Server, e2e_config, free_port, http, wait_until

pytestmark = pytest.mark.e2e

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def _rfc3339(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.skipif(BINARY is None, reason="prometheus-alertmanager is not installed "
                                           "(apt-get install prometheus-alertmanager; .ci/run installs it)")
def test_alertmanager_pages_through_alertbridge(tmp_path: Path, receiver: Receiver, servers: list[Server]) -> None:
    """Alertmanager's webhook opens an incident in alertbridge, and its resolve resolves it."""
    bridge = Server(e2e_config(receiver.url), tmp_path / "data").start()
    servers.append(bridge)
    port = free_port()
    config = {
        "global": {"resolve_timeout": "5m"},
        "route": {"receiver": "bridge", "group_by": ["alertname"], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "bridge", "webhook_configs": [
            {"url": f"{bridge.base}/v1/sources/am", "send_resolved": True}]}],
    }
    (tmp_path / "am.yml").write_text(yaml.safe_dump(config))
    log = (tmp_path / "am.log").open("wb")
    proc = subprocess.Popen(
        [str(BINARY), f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am-data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        am = f"http://127.0.0.1:{port}"
        wait_until(lambda: _up(am + "/-/ready"), 30, "alertmanager /-/ready")
        now = datetime.now(UTC)
        alert = {"labels": {"alertname": "DiskFull", "instance": "db-1:9100", "severity": "critical"},
                 "annotations": {"summary": "disk full on db-1"}, "startsAt": _rfc3339(now),
                 "endsAt": _rfc3339(now + timedelta(hours=1))}
        status, body = http("POST", am + "/api/v2/alerts", json.dumps([alert]).encode(),
                            {"Content-Type": "application/json"})
        assert status == 200, body

        def opened() -> list:
            return bridge.get_json("/api/v1/incidents")["items"]

        [incident] = wait_until(opened, 30, "the incident Alertmanager's webhook opens")
        assert incident["group_labels"] == {"alertname": "DiskFull"} and incident["priority"]
        alert["endsAt"] = _rfc3339(datetime.now(UTC))
        status, _ = http("POST", am + "/api/v2/alerts", json.dumps([alert]).encode(),
                         {"Content-Type": "application/json"})
        assert status == 200

        def resolved() -> bool:
            return bridge.get_json(f"/api/v1/incidents/{incident['id']}")["status"] == "resolved"

        wait_until(resolved, 30, "the resolve Alertmanager sends")
        wait_until(lambda: [a for _, a in receiver.actions()][-1:] == ["resolve"], 10, "the resolve webhook")
        assert receiver.actions()[0][1] == "open"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _up(url: str) -> bool:
    try:
        return http("GET", url)[0] == 200
    except OSError:
        return False
