"""Ingest throughput of distributed mode with 1, 2 and 3 replicas on one Redis (loopback only).

    .venv/bin/python -m tests.bench.distributed --replicas 1 2 3 --duration 10 --batch 1

For each replica count: a fresh redis-server (AOF, appendfsync always), that many `alertbridge serve
--redis` processes, and one `tests.bench.loadgen` per replica (closed loop, `--concurrency` each)
for `--duration` seconds; prints the summed accepted alerts/s and the p99 of each generator. No
RQ worker runs: this measures ingest (parse, journal durably in Redis, 2xx), which is what the
replicas scale; the owner's engine follows the journal as it would.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.e2e.conftest import Server, e2e_config
from tests.redistools import running_redis


def run(replicas: int, duration: float, batch: int, concurrency: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, running_redis(Path(tmp) / "redis") as redis_server:
        config = e2e_config("http://127.0.0.1:9/unused")
        config["redis"] = {"url": redis_server.url, "prefix": "bench"}
        config["logging"] = {"level": "warning"}
        servers = [Server(config, Path(tmp) / f"r{i}").start() for i in range(replicas)]
        try:
            gens = [subprocess.Popen([sys.executable, "-m", "tests.bench.loadgen", "--base", s.base, "--style",
                                      "am-api-v2", "--batch", str(batch), "--concurrency", str(concurrency),
                                      "--duration", str(duration), "--active", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                    for s in servers]
            results = [json.loads(g.communicate(timeout=duration + 120)[0].strip().splitlines()[-1]) for g in gens]
        finally:
            for s in servers:
                s.stop()
        return {"alerts_per_s": round(sum(r["alerts_per_s"] for r in results)),
                "p99_ms": max(r["lat_ms"]["p99"] or 0 for r in results)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8, help="connections per replica")
    args = parser.parse_args()
    for n in args.replicas:
        figures = run(n, args.duration, args.batch, args.concurrency)
        print(f"replicas={n} batch={args.batch}: {figures['alerts_per_s']} alerts/s, p99 {figures['p99_ms']} ms",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
