"""Chaos on loopback, bounded in time: Redis, three `alertbridge serve --redis` replicas and two RQ
workers take a few thousand alerts over real HTTP while the partition owner is SIGKILLed twice, an RQ
worker once, and a replica is frozen (SIGSTOP) past its lease. Then: every alert answered 2xx is in
the journal; every replica's incidents equal a single-process replay of the journal; every action
the replay emits reached the sink (and no other), each idempotency key at least once; every paged
incident that resolved got its resolve delivered."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from bridge.ingest import Applier
from bridge.settings import validate_settings
from bridge.store.redis import RedisStore
from bridge.wiring import build_engine, build_sources
from tests.e2e.conftest import Receiver, Server, http, wait_until
from tests.redistools import running_redis

pytestmark = pytest.mark.e2e

ALERTS = 2400  # alerts sent, over 120 series: new, repeated and resolved
PREFIX = "chaos"
LEASE_TTL = 1.5


def chaos_config(sink_url: str, redis_url: str) -> dict[str, Any]:
    return {
        "sources": [{"name": "prom", "type": "prometheus"}],
        "sinks": [{"name": "hook", "type": "webhook", "url": sink_url}],
        "routes": [{"name": "default", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s",
                    "sinks": ["hook"]}],
        "dispatch": {"initial_backoff": "100ms", "max_backoff": "1s"},
        "server": {"tick": "100ms"},
        "redis": {"url": redis_url, "prefix": PREFIX, "lease_ttl": f"{LEASE_TTL}s"},
    }


def body(i: int, now: float) -> bytes:
    """Request i: alert series i % 120 (12 groups); every 3rd request of a series resolves it."""
    series, turn = i % 120, i // 120
    starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))
    resolved = turn % 3 == 2
    ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 1 if resolved else now + 3600))
    return json.dumps([{"labels": {"alertname": f"Chaos{series % 12}", "instance": f"host-{series}",
                                   "severity": "critical"},
                        "annotations": {"summary": f"host-{series} is down"},
                        "startsAt": starts, "endsAt": ends}]).encode()


class Load(threading.Thread):
    """Sends ALERTS requests round robin over the live replicas; records what was answered 2xx."""

    def __init__(self, replicas: list[Server]) -> None:
        super().__init__(daemon=True)
        self.replicas = replicas
        self.accepted: list[bytes] = []
        self.refused = 0
        self.started_at = self.ended_at = 0.0

    def run(self) -> None:
        self.started_at = time.monotonic()
        for i in range(ALERTS):
            payload = body(i, time.time())
            for attempt in range(12):  # bounded: another replica, or the same one once it is back
                server = self.replicas[(i + attempt) % len(self.replicas)]
                try:
                    status, _ = http("POST", server.base + "/api/v2/alerts", payload,
                                     {"Content-Type": "application/json"}, timeout=3)
                except OSError:
                    status = 0
                if 200 <= status < 300:
                    self.accepted.append(payload)
                    break
                self.refused += 1
                time.sleep(0.05)
        self.ended_at = time.monotonic()


def owner_pid(r: redis.Redis) -> int | None:
    value = r.get(f"{PREFIX}:lease:default")
    if value is None:
        return None
    holder = value.decode().split(":", 1)[1]  # "<token>:<host>:<pid>:<random>"
    return int(holder.split(":")[1])


def _other_owner(r: redis.Redis, pids: dict[int, Server], dead_port: int) -> Server | None:
    """The live owner if it is not the replica on `dead_port`; the lease is read once."""
    owner = pids.get(owner_pid(r) or 0)
    return owner if owner is not None and owner.port != dead_port else None


def replay(config: dict[str, Any], redis_url: str) -> tuple[Any, list[Any]]:
    """A single process applying the journal in order: its engine and every action it emitted."""
    settings = validate_settings(config)
    engine = build_engine(settings)
    actions: list[Any] = []
    applier = Applier(engine, build_sources(settings), actions.extend)
    store = RedisStore(redis_url, prefix=PREFIX)
    for entry in store.entries():
        actions.extend(applier.apply(entry.kind, entry.source, entry.data, entry.at))
    return engine, actions


def test_chaos(tmp_path: Path, receiver: Receiver) -> None:
    """Nothing acknowledged is lost, state equals a replay, every action is delivered, resolves arrive."""
    procs: list[Server] = []
    workers: list[subprocess.Popen[bytes]] = []
    with running_redis(tmp_path / "redis") as redis_server:
        config = chaos_config(receiver.url, redis_server.url)
        config_path = tmp_path / "chaos.yaml"
        config_path.write_text(yaml.safe_dump(config))
        env = {**os.environ, "ALERTBRIDGE_CONFIG": str(config_path), "PYTHONUNBUFFERED": "1"}
        rq = str(Path(sys.executable).with_name("rq"))

        def worker() -> subprocess.Popen[bytes]:
            log = open(tmp_path / f"worker-{len(workers)}.log", "wb")  # noqa: SIM115 - lives with the process
            proc = subprocess.Popen([rq, "worker", "--with-scheduler", "-w", "rq.worker.SimpleWorker", "--url",
                                     redis_server.url, "alertbridge-deliveries"],
                                    env=env, stdout=log, stderr=subprocess.STDOUT)
            workers.append(proc)
            return proc

        r = redis_server.client()
        try:
            for i in range(3):
                procs.append(Server(config, tmp_path / f"replica-{i}").start())
            worker()
            worker()
            pids = {p.proc.pid: p for p in procs if p.proc}
            wait_until(lambda: pids.get(owner_pid(r) or 0), 15, "a partition owner")

            load = Load(list(procs))
            load.start()
            takeovers: list[float] = []
            for round_ in range(2):  # SIGKILL the owner twice; restart it as a fresh replica
                progress = (round_ + 1) * ALERTS // 4
                wait_until(lambda n=progress: len(load.accepted) > n or None, 60, "load progress")  # type: ignore[misc]
                # the lease may be between holders at any instant: read it once per look
                victim = wait_until(lambda: pids.get(owner_pid(r) or 0), LEASE_TTL * 6, "the current owner")
                killed_at = time.monotonic()
                victim.stop(signal.SIGKILL)
                dead = victim.port
                wait_until(lambda d=dead: _other_owner(r, pids, d), LEASE_TTL * 6, "a new owner")  # type: ignore[misc]
                takeovers.append(time.monotonic() - killed_at)
                replacement = Server(config, tmp_path / f"replica-{len(procs)}").start()
                procs.append(replacement)
                pids[replacement.proc.pid] = replacement  # type: ignore[union-attr]
                load.replicas[load.replicas.index(victim)] = replacement
            workers[0].kill()  # one RQ worker dies mid-job at worst; its jobs are retried or re-sent
            worker()
            frozen = next(p for p in procs if p.proc and p.proc.poll() is None)
            os.kill(frozen.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
            time.sleep(LEASE_TTL * 2)  # past its lease, if it held it
            os.kill(frozen.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
            load.join(120)
            assert not load.is_alive(), "the load did not finish"

            # the journal holds every accepted request
            store = RedisStore(redis_server.url, prefix=PREFIX)
            journaled = Counter(json.dumps(json.loads(e.data["body"])) for e in store.entries() if e.kind == "webhook")
            accepted = Counter(json.dumps(json.loads(b)) for b in load.accepted)
            assert not (accepted - journaled), "an accepted request is missing from the journal"

            # let the timers of the last alerts fire (group_wait), then let deliveries drain
            time.sleep(2.5)
            engine, actions = replay(config, redis_server.url)
            expected = {a.idempotency_key("hook") for a in actions}

            def delivered() -> Counter[str]:
                return Counter(req["headers"].get("Idempotency-Key") for req in list(receiver.requests))

            try:
                wait_until(lambda: expected <= set(delivered()) or None, 90, "every action delivered")
            except AssertionError:
                import asyncio

                async def states() -> Any:
                    from rq.job import Job

                    s = RedisStore(redis_server.url, prefix=PREFIX)
                    try:
                        due = await s.due(time.time() + 3600, 50)
                        jobs = []
                        for d in due[:5]:
                            try:
                                job = Job.fetch(f"{PREFIX}-delivery-{d.id}", connection=r)
                                jobs.append((d.id, d.attempts, job.get_status()))
                            except Exception as exc:
                                jobs.append((d.id, d.attempts, type(exc).__name__))
                        return await s.counts(), jobs
                    finally:
                        await s.aclose()

                missing = sorted(expected - set(delivered()))
                raise AssertionError(f"{len(missing)} of {len(expected)} actions not delivered, e.g. {missing[:5]}; "
                                     f"outbox {asyncio.run(states())}; unexpected "
                                     f"{sorted(set(delivered()) - expected)[:5]}") from None
            got = delivered()
            assert set(got) == expected, f"unexpected deliveries: {sorted(set(got) - expected)[:5]}"
            # every live replica's engine is the replay's
            want = sorted((v.id, v.status.value, v.revision) for v in engine.views())
            for server in procs:
                if server.proc is None or server.proc.poll() is not None:
                    continue
                listed = server.get_json("/api/v1/incidents?limit=1000")["items"]
                assert sorted((i["id"], i["status"], i["revision"]) for i in listed) == want
            # every paged incident that resolved got its resolve
            resolved = {a.incident.id for a in actions if a.kind.value == "resolve"}
            kinds = {(req["json"]["incident"]["id"], req["json"]["action"]) for req in receiver.requests}
            assert all((inc, "resolve") in kinds for inc in resolved)
            duplicates = sum(n - 1 for n in got.values())
            print(f"\nchaos: {len(load.accepted)} accepted ({load.refused} refused then retried) in "
                  f"{load.ended_at - load.started_at:.1f} s; {len(engine.views())} incidents, {len(expected)} "
                  f"deliveries, {duplicates} redelivered (same key); takeover "
                  f"{', '.join(f'{t:.2f} s' for t in takeovers)}")
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.terminate()
            for proc in workers:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            for server in procs:
                if server.proc is not None and server.proc.poll() is None:
                    os.kill(server.proc.pid, signal.SIGCONT)
                server.stop()
            r.close()
