"""Closed-loop aiohttp load generator for alertbridge's Alertmanager-compatible ingest endpoints.

    python -m tests.bench.loadgen --base http://127.0.0.1:9095 --style am-api-v2 --batch 100 \
        --concurrency 8 --duration 15

Styles (the shared harness's, ../shared/bench/README.md):

* `am-webhook-v4`: one Alertmanager webhook v4 envelope per request, POSTed to
  `<base>/v1/sources/<--source, default alertmanager>`;
* `am-api-v2`: a JSON list of Alertmanager API v2 postable alerts, POSTed to `<base>/api/v2/alerts`.

Load: alert index i is one fingerprint (labels `alertname=BenchAlert{i%A}`, `env`, `instance=host-{i}:9100`,
`job`, `service=svc-{(i//A)%S}`, `severity`); indices [0, --active) are pre-warmed first (batches of
100, 4 connections), then each alert slot of a request is, with probability --dup, a re-send of an
index already sent, else a brand-new index. `--concurrency` workers each POST, wait for the answer,
POST again (closed loop) until `--warmup + --duration` seconds (duration capped at 120 s) or
`--max-requests` requests. Only answers completed after the warm-up count.

Bodies: by default generated here (`--bodies own`), byte-identical to the shared harness's
`common.build_body()` and picker (same label scheme, same seeded random sequence; checked by
tests/bench/test_bench.py when ../shared/bench is present). `--bodies shared` imports
`../shared/bench/common.py` instead (error if it is missing).

Prints a human summary on stderr and, as the last line of stdout, one JSON object: alerts/s,
requests/s, p50/p90/p99/max latency (ms) of 2xx POSTs, error counts by status or exception, the
generator's own CPU, the watched processes' CPU (`--watch-pid name=PID`) and the machine's busy %
over the window (from /proc/stat).

Loopback targets only.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import resource
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

STYLES = ("am-webhook-v4", "am-api-v2")
MAX_DURATION = 120.0
REPO = Path(__file__).resolve().parents[2]
SHARED_BENCH = REPO.parent / "shared" / "bench"
JSON_HEADERS = {"Content-Type": "application/json"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1

# ------------------------------------------------------------------------------------ alert bodies
# Same byte layout as ../shared/bench/common.py (and its wrk_post.lua); keep in sync.
SEVERITIES = ("critical", "warning", "info")
LABELS_FMT = ('{"alertname":"BenchAlert%d","env":"prod","instance":"host-%d:9100",'
              '"job":"node","service":"svc-%d","severity":"%s"}')
ANN_FMT = '{"runbook_url":"http://runbooks.invalid/bench","summary":"Bench alert %d on host-%d"}'
GEN_URL = "http://127.0.0.1:9090/graph?g0.expr=bench"
LABEL_KEYS = ("alertname", "env", "instance", "job", "service", "severity")


def _label_values(i: int, a: int, s: int) -> tuple[str, ...]:
    return (f"BenchAlert{i % a}", "prod", f"host-{i}:9100", "node", f"svc-{(i // a) % s}", SEVERITIES[i % 3])


def _labels(i: int, a: int, s: int) -> str:
    return LABELS_FMT % (i % a, i, (i // a) % s, SEVERITIES[i % 3])


def alert_api_v2(i: int, a: int, s: int, starts_at: str) -> str:
    return ('{"labels":' + _labels(i, a, s) + ',"annotations":' + ANN_FMT % (i, i)
            + ',"startsAt":"' + starts_at + '","generatorURL":"' + GEN_URL + '"}')


def alert_webhook_v4(i: int, a: int, s: int, starts_at: str) -> str:
    # fingerprint is synthetic ("%016x" of the index), as in the shared harness
    return ('{"status":"firing","labels":' + _labels(i, a, s) + ',"annotations":' + ANN_FMT % (i, i)
            + ',"startsAt":"' + starts_at + '","endsAt":"0001-01-01T00:00:00Z","generatorURL":"' + GEN_URL
            + f'","fingerprint":"{i:016x}"}}')


def _common_labels(idxs: Sequence[int], a: int, s: int) -> str:
    first = _label_values(idxs[0], a, s)
    common = [True] * len(LABEL_KEYS)
    for i in idxs[1:]:
        values = _label_values(i, a, s)
        for k in range(len(LABEL_KEYS)):
            if common[k] and values[k] != first[k]:
                common[k] = False
    return "{" + ",".join(f'"{LABEL_KEYS[k]}":"{first[k]}"' for k in range(len(LABEL_KEYS)) if common[k]) + "}"


def _common_annotations(idxs: Sequence[int]) -> str:
    if all(i == idxs[0] for i in idxs):
        return ANN_FMT % (idxs[0], idxs[0])
    return '{"runbook_url":"http://runbooks.invalid/bench"}'


def build_body(style: str, idxs: Sequence[int], a: int, s: int, starts_at: str) -> bytes:
    """The request body for alert indices `idxs` (same bytes as the shared harness's build_body)."""
    if style == "am-api-v2":
        return ("[" + ",".join(alert_api_v2(i, a, s, starts_at) for i in idxs) + "]").encode()
    if style == "am-webhook-v4":
        return ('{"receiver":"bench","status":"firing","alerts":['
                + ",".join(alert_webhook_v4(i, a, s, starts_at) for i in idxs)
                + '],"groupLabels":{},"commonLabels":' + _common_labels(idxs, a, s)
                + ',"commonAnnotations":' + _common_annotations(idxs)
                + ',"externalURL":"http://127.0.0.1:9093","version":"4","groupKey":"{}:{}",'
                '"truncatedAlerts":0}').encode()
    raise ValueError(f"unknown style {style!r}")


class Picker:
    """Alert indices: with probability `dup` a re-send of an index already sent (uniform over the
    pre-warmed [0, active) plus the new ones sent so far), else a brand-new index. Same seeded
    sequence as the shared harness's common.Picker."""

    def __init__(self, active: int, dup: float, seed: int) -> None:
        self.active = active
        self.dup = dup
        self.rng = random.Random(seed)
        self.new_base = active
        self.next_new = active

    def pick(self, n: int) -> list[int]:
        out = []
        rnd = self.rng.random
        for _ in range(n):
            pool = self.active + (self.next_new - self.new_base)
            if pool > 0 and rnd() < self.dup:
                r = int(rnd() * pool)
                out.append(r if r < self.active else self.new_base + (r - self.active))
            else:
                out.append(self.next_new)
                self.next_new += 1
        return out

    @property
    def new_sent(self) -> int:
        return self.next_new - self.new_base


def shared_common() -> Any:
    """../shared/bench/common.py as a module; a clear error if the harness is not there."""
    if not (SHARED_BENCH / "common.py").is_file():
        raise SystemExit(f"--bodies shared: the shared harness is not at {SHARED_BENCH} "
                         "(expected ../shared/bench relative to the repo); use --bodies own")
    if str(SHARED_BENCH) not in sys.path:
        sys.path.insert(0, str(SHARED_BENCH))
    import common  # type: ignore[import-not-found]

    return common


def rfc3339_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --------------------------------------------------------------------------------------- /proc
def sys_cpu() -> list[int]:
    with open("/proc/stat") as handle:
        return [int(x) for x in handle.readline().split()[1:]]


def busy_pct(before: list[int], after: list[int]) -> dict[str, float]:
    """Machine-wide busy % (all cores = 100), and its user/system/softirq/steal parts, between two
    /proc/stat samples."""
    d = [y - x for x, y in zip(before, after, strict=False)]
    total = sum(d[:8]) or 1
    idle = d[3] + d[4]
    return {"busy": round(100.0 * (total - idle) / total, 1), "user": round(100.0 * (d[0] + d[1]) / total, 1),
            "system": round(100.0 * d[2] / total, 1), "irq": round(100.0 * (d[5] + d[6]) / total, 1),
            "iowait": round(100.0 * d[4] / total, 1), "steal": round(100.0 * d[7] / total, 1)}


def all_proc_ticks() -> dict[int, tuple[str, int]]:
    """{pid: (comm, utime + stime ticks)} of every process visible in /proc."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as handle:
                text = handle.read()
            rest = text[text.rindex(")") + 2:].split()
            out[int(d)] = (text[text.index("(") + 1:text.rindex(")")], int(rest[11]) + int(rest[12]))
        except (OSError, ValueError, IndexError):
            continue
    return out


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of every thread of `pid`, in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12])


class CpuWindow:
    """CPU % (of one core: 200 = this whole 2-core box) of some pids, and machine busy %, over a window."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {k: v for k, v in pids.items() if v}
        self.t0 = time.monotonic()
        self.ticks0 = {k: cpu_ticks(p) for k, p in self.pids.items()}
        self.sys0 = sys_cpu()
        self.all0 = all_proc_ticks()

    def result(self, extra_seconds: dict[str, float] | None = None) -> dict[str, Any]:
        dt = max(time.monotonic() - self.t0, 1e-9)
        out: dict[str, Any] = {"window_s": round(dt, 3)}
        for name, pid in self.pids.items():
            t1, t0 = cpu_ticks(pid), self.ticks0[name]
            if t1 is not None and t0 is not None:
                out["cpu_pct_" + name] = round(100.0 * (t1 - t0) / CLK_TCK / dt, 1)
        for name, seconds in (extra_seconds or {}).items():
            out["cpu_pct_" + name] = round(100.0 * seconds / dt, 1)
        machine = busy_pct(self.sys0, sys_cpu())
        out["machine_busy_pct"] = machine["busy"]
        out["steal_pct"] = machine["steal"]
        out["machine"] = machine
        known = sum(v for k, v in out.items() if k.startswith("cpu_pct_"))
        # CPU (% of one core) that processes other than the measured ones used in the window
        out["foreign_cpu_pct"] = round(machine["busy"] * NCPU - known, 1)
        # who: the busiest processes of the window that we did not measure (processes that started
        # and ended inside the window are not seen; kernel work not charged to a process neither)
        ours = set(self.pids.values()) | {os.getpid()}
        top = []
        for pid, (comm, ticks) in all_proc_ticks().items():
            delta = ticks - self.all0.get(pid, (comm, 0))[1]
            if delta > 0 and pid not in ours:
                top.append((delta, pid, comm))
        top.sort(reverse=True)
        out["others_top"] = [{"pid": p, "comm": c, "cpu_pct": round(100.0 * t / CLK_TCK / dt, 1)}
                             for t, p, c in top[:4]]
        return out


# ------------------------------------------------------------------------------------------- load
def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(sorted_values) - 1)
    return sorted_values[f] + (sorted_values[c] - sorted_values[f]) * (k - f)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def target_url(a: argparse.Namespace) -> str:
    if a.url:
        return str(a.url)
    base = a.base.rstrip("/")
    return base + ("/api/v2/alerts" if a.style == "am-api-v2" else f"/v1/sources/{a.source}")


async def prewarm(session: aiohttp.ClientSession, url: str, a: argparse.Namespace, starts_at: str,
                  body_fn: Callable[..., bytes]) -> dict[str, Any]:
    """Send indices [prewarm_from, active) once, in batches of `prewarm_batch`, 4 connections."""
    idxs = list(range(a.prewarm_from, a.active))
    chunks = iter([idxs[i:i + a.prewarm_batch] for i in range(0, len(idxs), a.prewarm_batch)])
    errors: collections.Counter[str] = collections.Counter()
    t0 = time.monotonic()

    async def worker() -> None:
        for chunk in chunks:
            body = body_fn(a.style, chunk, a.alertnames, a.services, starts_at)
            try:
                async with session.post(url, data=body, headers=JSON_HEADERS) as response:
                    await response.read()
                    if not 200 <= response.status < 300:
                        errors[str(response.status)] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors[type(exc).__name__] += 1

    await asyncio.gather(*[worker() for _ in range(4)])
    dt = time.monotonic() - t0
    return {"alerts": len(idxs), "seconds": round(dt, 3),
            "alerts_per_s": round(len(idxs) / dt, 1) if dt > 0 else None, "errors": dict(errors)}


async def run(a: argparse.Namespace) -> dict[str, Any]:
    url = target_url(a)
    body_fn: Callable[..., bytes] = shared_common().build_body if a.bodies == "shared" else build_body
    starts_at = a.starts_at or rfc3339_now()
    out: dict[str, Any] = {
        "kind": "loadgen", "generator": "alertbridge-tests-bench-loadgen", "bodies": a.bodies, "url": url,
        "style": a.style, "batch": a.batch, "concurrency": a.concurrency, "duration_s": a.duration,
        "warmup_s": a.warmup, "max_requests": a.max_requests, "active": a.active, "dup_ratio": a.dup,
        "alertnames": a.alertnames, "services": a.services, "starts_at": starts_at, "seed": a.seed,
    }
    connector = aiohttp.TCPConnector(limit=max(a.concurrency, 4))
    timeout = aiohttp.ClientTimeout(total=a.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     skip_auto_headers=("User-Agent",)) as session:
        if a.active > a.prewarm_from and not a.no_prewarm:
            out["prewarm"] = await prewarm(session, url, a, starts_at, body_fn)
        if a.prewarm_only:
            return out
        watch = {}
        for item in a.watch_pid:
            name, _, pid = item.partition("=")
            watch[name] = int(pid)
        picker = Picker(a.active, a.dup, a.seed)
        t_start = time.monotonic()
        t_window = t_start + a.warmup
        t_end = t_window + a.duration
        latencies: list[float] = []
        statuses: collections.Counter[str] = collections.Counter()
        count = {"sent": 0, "ok": 0, "err": 0, "bytes": 0, "in_window_sent": 0}
        cpu: dict[str, Any] = {}

        async def worker() -> None:
            while time.monotonic() < t_end and count["sent"] < a.max_requests:
                body = body_fn(a.style, picker.pick(a.batch), a.alertnames, a.services, starts_at)
                count["sent"] += 1
                count["bytes"] += len(body)
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=JSON_HEADERS) as response:
                        await response.read()
                        status: str | int = response.status
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    status = type(exc).__name__
                t1 = time.perf_counter()
                done = time.monotonic()
                if t_window <= done <= t_end:
                    statuses[str(status)] += 1
                    if isinstance(status, int) and 200 <= status < 300:
                        count["ok"] += 1
                        latencies.append(t1 - t0)
                    else:
                        count["err"] += 1
                elif isinstance(status, str) or not 200 <= status < 300:
                    count["err"] += 1  # an error during the warm-up still counts as an error
                    statuses[str(status)] += 1

        async def sampler() -> None:
            await asyncio.sleep(max(0.0, t_window - time.monotonic()))
            window = CpuWindow(watch)
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            while time.monotonic() < t_end and count["sent"] < a.max_requests:
                await asyncio.sleep(min(0.05, max(0.0, t_end - time.monotonic())))
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            own = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            cpu.update(window.result({"loadgen": own}))
            cpu["measured_s"] = cpu["window_s"]

        await asyncio.gather(sampler(), *[worker() for _ in range(a.concurrency)])
    latencies.sort()
    # the window is shorter than --duration when --max-requests ended the run first
    window_s = min(a.duration, cpu.get("measured_s") or a.duration) or a.duration
    out.update({
        "ok_requests": count["ok"], "err_requests": count["err"], "sent_requests": count["sent"],
        "statuses": dict(statuses), "window_s": round(window_s, 3),
        "requests_per_s": round(count["ok"] / window_s, 1),
        "alerts_per_s": round(count["ok"] * a.batch / window_s, 1),
        "lat_ms": {"p50": _ms(percentile(latencies, 50)), "p90": _ms(percentile(latencies, 90)),
                   "p99": _ms(percentile(latencies, 99)), "max": _ms(latencies[-1] if latencies else None),
                   "mean": _ms(sum(latencies) / len(latencies) if latencies else None)},
        "avg_body_bytes": round(count["bytes"] / count["sent"]) if count["sent"] else None,
        "new_alerts_sent": picker.new_sent,
        "cpu": cpu,
    })
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.loadgen", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="http://127.0.0.1:9095", help="alertbridge base URL (loopback)")
    ap.add_argument("--url", default=None, help="full target URL (overrides --base and the style's path)")
    ap.add_argument("--source", default="alertmanager", help="alertmanager-type source name (am-webhook-v4)")
    ap.add_argument("--style", choices=STYLES, default="am-webhook-v4")
    ap.add_argument("--batch", type=int, default=1, help="alerts per request (the benchmark uses 1 and 100)")
    ap.add_argument("--concurrency", type=int, default=16, help="closed-loop workers (connections)")
    ap.add_argument("--duration", type=float, default=15.0, help=f"measured seconds (<= {MAX_DURATION:g})")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of load before the window (<= 30)")
    ap.add_argument("--max-requests", type=int, default=1_000_000, help="stop after this many requests")
    ap.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, s")
    ap.add_argument("--active", type=int, default=10_000, help="pre-warmed distinct alerts [0, active)")
    ap.add_argument("--dup", "--dup-ratio", dest="dup", type=float, default=0.9,
                    help="share of alert slots that re-send an already-sent alert")
    ap.add_argument("--no-prewarm", action="store_true", help="treat [0, active) as already sent")
    ap.add_argument("--prewarm-only", action="store_true", help="pre-warm, print, exit")
    ap.add_argument("--prewarm-from", type=int, default=0, help="pre-warm [prewarm-from, active) only")
    ap.add_argument("--prewarm-batch", type=int, default=100)
    ap.add_argument("--alertnames", type=int, default=10)
    ap.add_argument("--services", type=int, default=50)
    ap.add_argument("--starts-at", default=None, help="RFC 3339 startsAt of every alert (default: now)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bodies", choices=("own", "shared"), default="own",
                    help="own: generated here (same bytes); shared: import ../shared/bench/common.py")
    ap.add_argument("--watch-pid", action="append", default=[], help="NAME=PID: CPU %% over the window")
    ap.add_argument("--json-out", default=None, help="also write the JSON result to this file")
    a = ap.parse_args(argv)
    url = target_url(a)
    host = urlsplit(url).hostname or ""
    if not (host == "localhost" or host == "::1" or host.startswith("127.")):
        ap.error(f"loopback targets only, not {host!r}")
    if not 0 < a.duration <= MAX_DURATION:
        ap.error(f"--duration must be in (0, {MAX_DURATION:g}] s")
    if not 0 <= a.warmup <= 30:
        ap.error("--warmup must be in [0, 30] s")
    if a.batch < 1 or a.concurrency < 1 or a.max_requests < 1:
        ap.error("--batch, --concurrency and --max-requests must be >= 1")
    if not 0.0 <= a.dup <= 1.0:
        ap.error("--dup must be in [0, 1]")
    return a


def summary(r: dict[str, Any]) -> str:
    if "ok_requests" not in r:
        return f"prewarm: {r.get('prewarm')}"
    lat, cpu = r["lat_ms"], r.get("cpu", {})
    errors = {k: v for k, v in r["statuses"].items() if not (k.isdigit() and 200 <= int(k) < 300)}
    return (f"{r['style']} batch {r['batch']} c={r['concurrency']}: {r['alerts_per_s']:.0f} alerts/s, "
            f"{r['requests_per_s']:.0f} req/s over {r['window_s']} s; 2xx latency p50 {lat['p50']} ms, "
            f"p99 {lat['p99']} ms; errors {r['err_requests']} {errors or ''}; "
            f"machine busy {cpu.get('machine_busy_pct')} %, loadgen CPU {cpu.get('cpu_pct_loadgen')} %")


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    try:
        import uvloop  # type: ignore[import-not-found]  # optional: a cheaper client

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    try:
        result = loop.run_until_complete(run(a))
    finally:
        loop.close()
    line = json.dumps(result)
    if a.json_out:
        Path(a.json_out).write_text(line + "\n")
    print(summary(result), file=sys.stderr, flush=True)
    print(line, flush=True)
    return 0 if result.get("err_requests", 0) == 0 and not (result.get("prewarm") or {}).get("errors") else 1


if __name__ == "__main__":
    sys.exit(main())
