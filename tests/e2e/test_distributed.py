"""Distributed mode end to end: replicas share one Redis; when Redis goes away ingest answers 503 with
Retry-After and readiness fails, and when it is back everything carries on by itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import ROOT, Receiver, Server, e2e_config, free_port, http, wait_until
from tests.redistools import running_redis

pytestmark = pytest.mark.e2e


def alert(name: str) -> bytes:
    now = time.time()
    return json.dumps([{"labels": {"alertname": name, "instance": "db-1", "severity": "critical"},
                        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
                        "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600))}]).encode()


def test_redis_outage_gives_503_and_recovers_by_itself(tmp_path: Path, receiver: Receiver,
                                                       servers: list[Server]) -> None:
    """Redis stops: POST is 503 with Retry-After, /readyz 503; Redis returns: both replicas serve and agree."""
    with running_redis(tmp_path / "redis") as redis_server:
        config = e2e_config(receiver.url)
        config["redis"] = {"url": redis_server.url, "prefix": "outage", "lease_ttl": "1s"}
        one = Server(config, tmp_path / "one").start()
        servers.append(one)
        two = Server(config, tmp_path / "two").start()
        servers.append(two)
        json_headers = {"Content-Type": "application/json"}
        assert http("POST", one.base + "/api/v2/alerts", alert("Before"), json_headers)[0] == 200

        redis_server.stop()
        status, body = 0, b""
        response_headers: dict[str, str] = {}
        request = urllib.request.Request(two.base + "/api/v2/alerts", data=alert("During"), method="POST",
                                         headers=json_headers)
        try:
            urllib.request.urlopen(request, timeout=10)
        except urllib.error.HTTPError as err:
            status, body, response_headers = err.code, err.read(), dict(err.headers)
        assert status == 503 and response_headers.get("Retry-After"), (status, body)
        wait_until(lambda: http("GET", one.base + "/readyz")[0] == 503 or None, 10, "readiness to fail")

        redis_server.start()
        wait_until(lambda: all(http("GET", s.base + "/readyz")[0] == 200 for s in (one, two)) or None, 20,
                   "readiness to come back")
        # a request that meets a connection the outage broke gets a 503 and is retried, as monitoring tools do
        wait_until(lambda: http("POST", two.base + "/api/v2/alerts", alert("After"), json_headers)[0] == 200
                   or None, 10, "an accepted POST after the outage", interval=0.2)

        def titles(server: Server) -> list[str]:
            return sorted(i["group_labels"]["alertname"] for i in server.get_json("/api/v1/incidents")["items"])

        wait_until(lambda: titles(one) == titles(two) == ["After", "Before"] or None, 15, "both replicas agree")


def test_alertbridge_cluster_runs_the_whole_topology_on_loopback(tmp_path: Path, receiver: Receiver) -> None:
    """`alertbridge cluster` (make run-distributed): a POST through its balancer pages through an RQ worker."""
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump(e2e_config(receiver.url)))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "cluster", "--config", str(config), "--listen",
                             f"127.0.0.1:{port}", "--replicas", "2", "--workers", "1", "--data-dir",
                             str(tmp_path / "cluster")], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return http("GET", base + "/readyz", timeout=2)[0] == 200
            except OSError:
                return False

        wait_until(lambda: ready() or None, 30, "the cluster's balancer and a replica")
        assert http("POST", base + "/api/v2/alerts", alert("Cluster"), {"Content-Type": "application/json"})[0] == 200
        wait_until(lambda: [r for r in receiver.requests if r["json"] and r["json"]["action"] == "open"] or None, 30,
                   "the page, delivered by the RQ worker")
        # the worker's attempt reaches every replica's /metrics (counted in Redis)
        wait_until(lambda: b'alertbridge_worker_deliveries_total{outcome="delivered",sink="hook"} 1.0'
                   in http("GET", base + "/metrics")[1] or None, 10, "the worker's attempt in /metrics")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0


def clustered(name: str, cluster: str) -> bytes:
    now = time.time()
    return json.dumps([{"labels": {"alertname": name, "cluster": cluster, "severity": "critical"},
                        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
                        "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600))}]).encode()


def test_partitions_by_label_have_their_own_journal_and_owner(tmp_path: Path, receiver: Receiver,
                                                              servers: list[Server]) -> None:
    """Alerts split by `cluster` into eu, us and default; each partition is owned, paged, and seen everywhere."""
    from bridge.store.redis import RedisStore

    with running_redis(tmp_path / "redis") as redis_server:
        config = e2e_config(receiver.url)
        config["redis"] = {"url": redis_server.url, "prefix": "parts", "lease_ttl": "1s",
                           "partition_label": "cluster", "partitions": ["eu", "us"]}
        config_path = tmp_path / "parts.yaml"
        config_path.write_text(yaml.safe_dump(config))
        one = Server(config, tmp_path / "one").start()
        servers.append(one)
        two = Server(config, tmp_path / "two").start()
        servers.append(two)
        worker = subprocess.Popen([str(Path(sys.executable).with_name("rq")), "worker", "--with-scheduler", "-w",
                                   "rq.worker.SimpleWorker", "--url", redis_server.url, "alertbridge-deliveries"],
                                  env={**os.environ, "ALERTBRIDGE_CONFIG": str(config_path)},
                                  stdout=open(tmp_path / "worker.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        try:
            json_headers = {"Content-Type": "application/json"}
            both = json.dumps(json.loads(clustered("Both", "eu")) + json.loads(clustered("Both", "us"))).encode()
            for server, body in ((one, clustered("Eu", "eu")), (two, clustered("Us", "us")),
                                 (one, clustered("Other", "apac")), (two, both)):
                assert http("POST", server.base + "/api/v2/alerts", body, json_headers)[0] == 200

            def incidents(server: Server) -> list[tuple[str, str]]:
                items = server.get_json("/api/v1/incidents?limit=100")["items"]
                return sorted((i["group_labels"]["alertname"], i["id"]) for i in items)

            wait_until(lambda: (len(incidents(one)) == 5 and incidents(one) == incidents(two)) or None, 20,
                       "both replicas to show the five incidents")
            assert [name for name, _ in incidents(one)] == ["Both", "Both", "Eu", "Other", "Us"]
            assert len({incident for _, incident in incidents(one)}) == 5  # partitions never share an id
            # /metrics counts every partition's engine, on every replica
            for server in (one, two):
                text = http("GET", server.base + "/metrics")[1].decode()
                assert sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                           if line.startswith("alertbridge_incidents_opened_total{")) == 5, text
            with redis_server.client() as r:
                owners = {p: r.get(f"parts:lease:{p}") for p in ("default", "eu", "us")}
            assert all(owners.values()), owners  # every partition has an owner
            journals = {p: [e.data["body"] for e in RedisStore(redis_server.url, prefix=f"parts:{p}").entries()
                            if e.kind == "webhook"] for p in ("eu", "us")}
            default = [e.data["body"] for e in RedisStore(redis_server.url, prefix="parts").entries()
                       if e.kind == "webhook"]
            assert len(journals["eu"]) == 2 and len(journals["us"]) == 2 and len(default) == 1
            wait_until(lambda: len({r["json"]["incident"]["id"] for r in receiver.requests
                                    if r["json"] and r["json"]["action"] == "open"}) == 5 or None, 30,
                       "the five pages, delivered by the worker")
        finally:
            worker.terminate()
            worker.wait(10)


def test_escalation_timer_survives_the_owner_and_fires_once(tmp_path: Path, receiver: Receiver,
                                                            servers: list[Server]) -> None:
    """The owner dies after the page: the next owner escalates at the tier's timeout (late by at most the
    takeover), and exactly once."""
    with running_redis(tmp_path / "redis") as redis_server:
        config = e2e_config(receiver.url, pool="db")
        config["redis"] = {"url": redis_server.url, "prefix": "timers", "lease_ttl": "1s"}
        config["pools"] = [{"name": "db", "escalation": "db", "members": [{"name": "alice"}, {"name": "bob"}]}]
        config["escalation_policies"] = [{"name": "db", "tiers": [{"assignee": True, "timeout": "4s"},
                                                                  {"members": ["bob"], "timeout": "1h"}]}]
        config_path = tmp_path / "timers.yaml"
        config_path.write_text(yaml.safe_dump(config))
        replicas = [Server(config, tmp_path / f"r{i}").start() for i in range(2)]
        servers.extend(replicas)
        worker = subprocess.Popen([str(Path(sys.executable).with_name("rq")), "worker", "--with-scheduler", "-w",
                                   "rq.worker.SimpleWorker", "--url", redis_server.url, "alertbridge-deliveries"],
                                  env={**os.environ, "ALERTBRIDGE_CONFIG": str(config_path)},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def actions() -> list[tuple[float, str]]:
                return [(time.monotonic(), r["json"]["action"]) for r in list(receiver.requests) if r["json"]]

            def owner() -> Server:
                with redis_server.client() as r:
                    value = r.get("timers:lease:default")
                pid = int(value.decode().split(":")[2]) if value else -1
                return next((s for s in replicas if s.proc is not None and s.proc.pid == pid), None)  # type: ignore[return-value]

            wait_until(lambda: any(s.proc is not None for s in replicas) and owner(), 10, "an owner")
            assert http("POST", replicas[0].base + "/api/v2/alerts", alert("Timer"),
                        {"Content-Type": "application/json"})[0] == 200
            wait_until(lambda: [a for _, a in actions()] == ["open"] or None, 15, "the page")
            paged_at = time.monotonic()
            owner().stop(signal.SIGKILL)
            escalated = wait_until(lambda: [t for t, a in actions() if a == "escalate"] or None, 20, "the escalation")
            late = escalated[0] - paged_at
            assert late < 4 + 1 + 3, f"escalated {late:.1f} s after the page (timeout 4 s, lease ttl 1 s)"
            print(f"\nescalation {late:.2f} s after the page (tier timeout 4 s, owner SIGKILLed, lease ttl 1 s)")
            time.sleep(2)  # a second owner firing it again would show by now
            assert [a for _, a in actions()] == ["open", "escalate"]
        finally:
            worker.terminate()
            worker.wait(10)
