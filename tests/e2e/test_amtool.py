"""Alertmanager's own CLI, amtool, manages alertbridge's silences (Debian's prometheus-alertmanager ships it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Receiver, Server, e2e_config

pytestmark = pytest.mark.e2e
AMTOOL = shutil.which("amtool")


@pytest.mark.skipif(AMTOOL is None, reason="amtool is not installed (apt-get install prometheus-alertmanager)")
def test_amtool_adds_queries_and_expires_silences(tmp_path: Path, receiver: Receiver, servers: list[Server]) -> None:
    """amtool silence add / query / expire work against alertbridge's Alertmanager-compatible API."""
    server = Server(e2e_config(receiver.url), tmp_path / "data").start()
    servers.append(server)

    def amtool(*args: str) -> str:
        done = subprocess.run([str(AMTOOL), f"--alertmanager.url={server.base}", *args], capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    silence_id = amtool("silence", "add", "alertname=DiskFull", 'instance=~"db-.*"', "-c", "disk swap", "-a", "ops",
                        "-d", "1h")
    assert silence_id in amtool("silence", "query", "-q").split()
    listed = server.get_json("/api/v1/silences")["items"]
    assert [(s["id"], s["state"], s["created_by"]) for s in listed] == [(silence_id, "active", "ops")]
    amtool("silence", "expire", silence_id)
    assert server.get_json(f"/api/v1/silences/{silence_id}")["state"] == "expired"
