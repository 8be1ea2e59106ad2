"""Benchmark orchestrator: alertbridge ingest throughput, memory, end-to-end latency and profile.

    .venv/bin/python -m tests.bench.run [--with-alertmanager] [--duration 15] [--out-dir DIR]
    .venv/bin/python -m tests.bench.run --only throughput --profile py-spy    # profile instead
    .venv/bin/python -m tests.bench.run analyze FILE [FILE...]                # py-spy raw / .prof -> tables
    .venv/bin/python -m tests.bench.run receiver --port N                     # the webhook receiver

Every data point starts a FRESH alertbridge (`python -m bridge serve --config <tests/bench/bench.yaml with
the sink url pointed at our receiver> --listen 127.0.0.1:<free port> --data-dir <fresh temp dir>`) and a
fresh webhook receiver (`receiver` below, a free port), pre-warms 10k distinct alerts, and then:

* throughput: wrk with the shared harness's `wrk_post.lua` (args `style batch active dup A S startsAt
  seed`) when wrk and ../shared/bench are there, else `python -m tests.bench.loadgen`; both styles
  (am-webhook-v4 -> /v1/sources/alertmanager, am-api-v2 -> /api/v2/alerts) at batch 1 and 100;
* memory: VmRSS of the server idle, then after posting 10k and 100k distinct alerts and waiting
  `--settle` s; (RSS - idle RSS) / alerts;
* e2e: open loop, one brand-new alert (a new group) every 25 ms; t0 = CLOCK_MONOTONIC before the
  POST, t1 = CLOCK_MONOTONIC when the receiver has read the webhook naming that alert's `e2e_id`.

`--with-alertmanager` also runs the shared harness in the same run (interleaved per batch size):
`bench_am.py throughput` against Alertmanager (its own fresh instance per point) and against
alertbridge (`--target-url`, `--target-pid`), plus `bench_am.py e2e` and `bench_am.py memory` for
Alertmanager. Its JSONL goes to the output directory (the shared tree is read-only).

Noise control (the 2-core box is shared): before each point we wait (bounded, `--quiet-wait`) for the
machine to be idle; every point records machine busy % (/proc/stat) and "foreign" CPU (busy minus
the processes we measured); a point where others used more than `--foreign-max` % of one core is
re-run (up to `--max-attempts`) and the clean attempt is reported.

Profiling (`--profile py-spy`: sampling, all threads, `py-spy record --threads --nonblocking`;
`--profile cprofile` or env `ALERTBRIDGE_BENCH_CPROFILE=FILE`: the server runs under cProfile via
`python -c`, main thread only) writes raw profiles to the output directory and prints the top
functions by self and cumulative share.

Everything binds and targets 127.0.0.1; every load step is bounded in time and count; processes are
started here and stopped by their PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.bench import loadgen

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BENCH_CONFIG = HERE / "bench.yaml"
SHARED = loadgen.SHARED_BENCH
WRK_LUA = SHARED / "wrk_post.lua"
BENCH_AM = SHARED / "bench_am.py"
DEFAULT_SINK_URL = "http://127.0.0.1:19095/webhook"
CPROFILE_ENV = "ALERTBRIDGE_BENCH_CPROFILE"
PATHS = {"am-webhook-v4": "/v1/sources/alertmanager", "am-api-v2": "/api/v2/alerts"}

# `python -c` wrapper: the real CLI under cProfile; the stats are dumped when serve returns (SIGTERM).
CPROFILE_SNIPPET = """
import cProfile, sys
from bridge.cli import main
out, argv = sys.argv[1], sys.argv[2:]
profile = cProfile.Profile()
profile.enable()
try:
    code = main(argv)
finally:
    profile.disable()
    profile.dump_stats(out)
sys.exit(code)
"""


# Experiment hook, env ALERTBRIDGE_BENCH_GC=FILE[,THRESHOLD]: the server runs through this wrapper,
# which times every cyclic-GC pass (gc.callbacks) and writes the totals to FILE at exit; THRESHOLD,
# when given, is passed to gc.set_threshold(THRESHOLD) first (gen0 only) to see what GC costs.
GC_ENV = "ALERTBRIDGE_BENCH_GC"
GC_SNIPPET = """
import gc, json, sys, time
from bridge.cli import main
spec, argv = sys.argv[1].split(","), sys.argv[2:]
if len(spec) > 1:
    gc.set_threshold(int(spec[1]), *gc.get_threshold()[1:])
stats = {"seconds": [0.0, 0.0, 0.0], "collections": [0, 0, 0], "max_ms": 0.0, "threshold": gc.get_threshold()}
started = [0.0]
def timer(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
    else:
        took = time.perf_counter() - started[0]
        stats["seconds"][info["generation"]] += took
        stats["collections"][info["generation"]] += 1
        stats["max_ms"] = max(stats["max_ms"], took * 1000)
gc.callbacks.append(timer)
try:
    code = main(argv)
finally:
    with open(spec[0], "w") as handle:
        json.dump(stats, handle)
sys.exit(code)
"""


# ------------------------------------------------------------------------------------------ utils
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            http_get(url, 1.0)
            return
        except Exception as exc:
            last = exc
            time.sleep(0.05)
    raise RuntimeError(f"not ready after {timeout}s: {url} ({last})")


def stop_pid(proc: subprocess.Popen[Any] | None, timeout: float = 15.0) -> None:
    """Stop a process we started, by its PID: SIGTERM, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


def proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
    return out


def wait_quiet(max_wait: float, busy_max: float = 8.0, sample: float = 1.0) -> dict[str, Any]:
    """Bounded wait until the whole machine is idle (others share these 2 cores)."""
    t0 = time.monotonic()
    while True:
        before = loadgen.sys_cpu()
        time.sleep(sample)
        busy = loadgen.busy_pct(before, loadgen.sys_cpu())["busy"]
        waited = time.monotonic() - t0
        if busy <= busy_max or waited >= max_wait:
            return {"waited_s": round(waited, 1), "busy_pct_before": busy, "quiet": busy <= busy_max}


def top_processes(seconds: float = 1.0, n: int = 4) -> list[dict[str, Any]]:
    """The busiest processes over a short sample (to say who made the box busy)."""
    def snap() -> dict[int, tuple[str, int]]:
        out = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{d}/stat") as h:
                    s = h.read()
                    rest = s[s.rindex(")") + 2:].split()
                    out[int(d)] = (s[s.index("(") + 1:s.rindex(")")], int(rest[11]) + int(rest[12]))
        return out
    a = snap()
    time.sleep(seconds)
    b = snap()
    top = sorted(((t - a.get(p, (c, t))[1], p, c) for p, (c, t) in b.items()), reverse=True)[:n]
    return [{"pid": p, "comm": c, "cpu_pct": round(100.0 * d / loadgen.CLK_TCK / seconds, 1)} for d, p, c in top if d]


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def have_wrk() -> bool:
    return shutil.which("wrk") is not None and WRK_LUA.is_file()


def median(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------------------- processes
class Receiver:
    """Our webhook receiver (`python -m tests.bench.run receiver`) as a subprocess on a free port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(workdir / f"receiver-{self.port}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.bench.run", "receiver", "--port", str(self.port)],
                                     cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        wait_http(self.url + "/stats", 20, self.proc)

    def get(self, path: str) -> Any:
        return json.loads(http_get(self.url + path, 10))

    def stop(self) -> None:
        stop_pid(self.proc)
        self.log.close()


class Bridge:
    """`alertbridge serve` on a free loopback port with a fresh data dir; bench.yaml, sink -> `sink_url`."""

    def __init__(self, workdir: Path, sink_url: str, *, cprofile_out: Path | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix=f"bridge-{self.port}-", dir=workdir))
        config = BENCH_CONFIG.read_text()
        if DEFAULT_SINK_URL not in config:
            raise SystemExit(f"{BENCH_CONFIG}: expected the sink url {DEFAULT_SINK_URL}")
        self.config = self.dir / "bench.yaml"
        self.config.write_text(config.replace(DEFAULT_SINK_URL, sink_url.rstrip("/") + "/webhook"))
        self.data = self.dir / "data"
        cli = ["serve", "--config", str(self.config), "--listen", f"127.0.0.1:{self.port}",
               "--data-dir", str(self.data)]
        cprofile_out = cprofile_out or (Path(os.environ[CPROFILE_ENV]) if os.environ.get(CPROFILE_ENV) else None)
        if cprofile_out is not None:
            self.cmd = [sys.executable, "-c", CPROFILE_SNIPPET, str(cprofile_out), *cli]
        elif os.environ.get(GC_ENV):
            self.cmd = [sys.executable, "-c", GC_SNIPPET, os.environ[GC_ENV], *cli]
        else:
            self.cmd = [sys.executable, "-m", "bridge", *cli]
        self.log_path = self.dir / "serve.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid
        wait_http(self.base + "/readyz", 30, self.proc)

    def url(self, style: str) -> str:
        return self.base + PATHS[style]

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        with contextlib.suppress(Exception):
            for line in http_get(self.base + "/metrics", 10).decode().splitlines():
                if line and not line.startswith("#"):
                    key, _, value = line.rpartition(" ")
                    with contextlib.suppress(ValueError):
                        out[key] = float(value)
        return out

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.data.glob("*") if p.is_file())

    def stop(self, keep: bool = False) -> None:
        stop_pid(self.proc, timeout=30)
        self.log.close()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def bridge_and_receiver(workdir: Path, *, cprofile_out: Path | None = None) -> Iterator[tuple[Bridge, Receiver]]:
    receiver = Receiver(workdir)
    bridge = None
    try:
        bridge = Bridge(workdir, receiver.url, cprofile_out=cprofile_out)
        yield bridge, receiver
    finally:
        if bridge is not None:
            bridge.stop()
        receiver.stop()


def run_loadgen(args: list[str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "tests.bench.loadgen", *args]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    lines = p.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"loadgen failed ({p.returncode}): {p.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["cmd"] = "python -m tests.bench.loadgen " + " ".join(args)
    return result


def prewarm(url: str, style: str, active: int, starts_at: str, start_from: int = 0) -> dict[str, Any]:
    if active <= start_from:
        return {"alerts": 0}
    r = run_loadgen(["--url", url, "--style", style, "--active", str(active), "--prewarm-from", str(start_from),
                     "--prewarm-only", "--starts-at", starts_at], timeout=900)
    pw: dict[str, Any] = r["prewarm"]
    if pw.get("errors"):
        raise RuntimeError(f"prewarm errors: {pw['errors']}")
    return pw


# ------------------------------------------------------------------------------------- throughput
def run_wrk(url: str, style: str, batch: int, conc: int, duration: int, active: int, dup: float,
            starts_at: str, seed: int, watch: dict[str, int]) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{conc}", f"-d{duration}s", "--timeout", "30s", "-s", str(WRK_LUA), url, "--",
           style, str(batch), str(active), str(dup), "10", "50", starts_at, str(seed)]
    c0 = children_cpu_s()
    window = loadgen.CpuWindow(watch)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        stop_pid(p)
        raise
    cpu = window.result({"loadgen": children_cpu_s() - c0})
    m = re.search(r"WRKJSON (.*)", out)
    if not m:
        raise RuntimeError(f"wrk output not parsed: {out[-1500:]} {err[-1500:]}")
    w = json.loads(m.group(1))
    seconds = w["duration_us"] / 1e6
    errors = {k: w[k] for k in w if k.startswith("err_") and w[k]}
    ok = w["requests"] - w["err_status"]
    return {"gen": "wrk", "cmd": " ".join(cmd), "ok_requests": ok, "err_requests": sum(errors.values()),
            "statuses": errors, "window_s": round(seconds, 3), "requests_per_s": round(ok / seconds, 1),
            "alerts_per_s": round(ok * batch / seconds, 1),
            "lat_ms": {"p50": w["lat_p50_us"] / 1000, "p90": w["lat_p90_us"] / 1000, "p99": w["lat_p99_us"] / 1000,
                       "max": w["lat_max_us"] / 1000},
            "new_alerts_sent": w["new_alerts"], "cpu": cpu}


def run_python_gen(url: str, style: str, batch: int, conc: int, duration: float, active: int, dup: float,
                   starts_at: str, seed: int, watch: dict[str, int], max_requests: int) -> dict[str, Any]:
    args = ["--url", url, "--style", style, "--batch", str(batch), "--concurrency", str(conc),
            "--duration", str(duration), "--warmup", "1", "--active", str(active), "--no-prewarm",
            "--dup", str(dup), "--starts-at", starts_at, "--seed", str(seed), "--max-requests", str(max_requests)]
    for name, pid in watch.items():
        args += ["--watch-pid", f"{name}={pid}"]
    r = run_loadgen(args, timeout=duration + 120)
    r["gen"] = "python"
    return r


def profiler_start(kind: str, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    if kind != "py-spy":
        return None
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        raise SystemExit("--profile py-spy: py-spy not found (.venv/bin/pip install py-spy)")
    cmd = [exe, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "100", "-f", "raw", "--threads",
           "--nonblocking", "-o", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def throughput_point(a: argparse.Namespace, workdir: Path, style: str, batch: int, conc: int,
                     profile_tag: str | None = None, series: int = 1) -> dict[str, Any]:
    gen = a.gen if a.gen != "auto" else ("wrk" if have_wrk() else "python")
    cprofile_out = workdir / f"cprofile-{profile_tag}.prof" if a.profile == "cprofile" and profile_tag else None
    with bridge_and_receiver(workdir, cprofile_out=cprofile_out) as (bridge, receiver):
        url = bridge.url(style)
        starts_at = loadgen.rfc3339_now()
        pw = prewarm(url, style, a.active, starts_at)
        time.sleep(a.settle_before)
        watch = {"bridge": bridge.pid, "receiver": receiver.proc.pid}
        spy = None
        if a.profile == "py-spy" and profile_tag:
            spy = profiler_start("py-spy", bridge.pid, a.duration, workdir / f"pyspy-{profile_tag}.txt")
        if gen == "wrk":
            r = run_wrk(url, style, batch, conc, int(a.duration), a.active, a.dup, starts_at, a.seed, watch)
        else:
            r = run_python_gen(url, style, batch, conc, a.duration, a.active, a.dup, starts_at, a.seed, watch,
                               a.max_requests)
        if spy is not None:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                stop_pid(spy)
        time.sleep(0.3)
        rec = {"kind": "throughput", "target": "alertbridge", "driver": "tests.bench.run", "style": style,
               "batch": batch, "concurrency": conc, "active": a.active, "dup_ratio": a.dup,
               "prewarm": pw, "bridge_status": proc_status(bridge.pid), "receiver": receiver.get("/stats"),
               "profiled": a.profile if profile_tag else None, "repeat": series, "series": series, **r}
        if rec["cpu"].get("foreign_cpu_pct", 0) > a.foreign_max:
            rec["busy_top"] = top_processes()
    gc_file = os.environ.get(GC_ENV, "").split(",")[0]
    if gc_file and Path(gc_file).exists():  # written by the server at exit (experiment hook)
        rec["server_gc"] = json.loads(Path(gc_file).read_text())
        Path(gc_file).unlink()
    return rec


def gated(a: argparse.Namespace, out: Out, what: str, fn: Any) -> dict[str, Any]:
    """Run a point after a bounded wait for an idle box; re-run it if others used the CPU meanwhile."""
    rec: dict[str, Any] = {}
    for attempt in range(1, a.max_attempts + 1):
        gate = wait_quiet(a.quiet_wait)
        rec = fn()
        rec["attempt"], rec["gate"] = attempt, gate
        foreign = (rec.get("cpu") or {}).get("foreign_cpu_pct")
        rec["contaminated"] = foreign is not None and foreign > a.foreign_max
        out.write(rec)
        if not rec["contaminated"]:
            break
        print(f"  {what}: others used {foreign} % of a core; re-running", file=sys.stderr, flush=True)
    return rec


# ------------------------------------------------------------------------------------ Alertmanager
def bench_am(a: argparse.Namespace, out: Out, args: list[str], series: int = 1,
             attempts: int | None = None) -> list[dict[str, Any]]:
    """Run the shared harness (read-only tree; results go to our out dir), return its new records."""
    if not BENCH_AM.is_file():
        raise SystemExit(f"--with-alertmanager: {BENCH_AM} not found")
    path = out.dir / "bench_am.jsonl"
    before = path.read_text().count("\n") if path.exists() else 0
    cmd = [sys.executable, str(BENCH_AM), *args, "--out", str(path), "--quiet-wait", str(a.quiet_wait),
           "--foreign-max", str(a.foreign_max), "--max-attempts", str(attempts or a.max_attempts),
           "--am-port", str(free_port()), "--receiver-port", str(free_port())]
    print("  $ " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, cwd=SHARED, capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        raise RuntimeError(f"bench_am.py failed: {p.stderr[-3000:]}")
    lines = path.read_text().splitlines()[before:]
    records = [json.loads(line) for line in lines]
    for rec in records:
        rec["bench_am_cmd"] = " ".join(["bench_am.py", *args])
        rec["series"] = series
    return [r for r in records if r.get("kind") != "machine"]


# ------------------------------------------------------------------------------------------ memory
def memory_run(a: argparse.Namespace, workdir: Path, style: str) -> list[dict[str, Any]]:
    recs = []
    with bridge_and_receiver(workdir) as (bridge, receiver):
        time.sleep(a.settle)
        idle = proc_status(bridge.pid)
        recs.append({"kind": "memory", "target": "alertbridge", "style": style, "level": 0,
                     "rss_kb": idle["VmRSS"], "hwm_kb": idle["VmHWM"], "disk_bytes": bridge.disk_bytes()})
        prev = 0
        starts_at = loadgen.rfc3339_now()
        for level in a.memory_levels:
            window = loadgen.CpuWindow({"bridge": bridge.pid, "receiver": receiver.proc.pid})
            pw = prewarm(bridge.url(style), style, level, starts_at, start_from=prev)
            prev = level
            time.sleep(a.settle)
            st = proc_status(bridge.pid)
            m = bridge.metrics()
            rss_delta = st["VmRSS"] - idle["VmRSS"]
            recs.append({"kind": "memory", "target": "alertbridge", "style": style, "level": level,
                         "rss_kb": st["VmRSS"], "hwm_kb": st["VmHWM"], "idle_rss_kb": idle["VmRSS"],
                         "bytes_per_alert": round(rss_delta * 1024 / level), "settle_s": a.settle,
                         "disk_bytes": bridge.disk_bytes(), "prewarm": pw, "cpu": window.result(),
                         "incidents_metric": {k: v for k, v in m.items() if "incident" in k and "bucket" not in k},
                         "receiver": receiver.get("/stats")})
    return recs


# --------------------------------------------------------------------------------------------- e2e
def e2e_body(style: str, eid: str, i: int) -> bytes:
    labels = {"alertname": "E2EProbe", "e2e_id": eid, "instance": "probe:9100", "service": "e2e-" + eid,
              "severity": "critical"}
    alert: dict[str, Any] = {"labels": labels, "annotations": {"summary": "e2e probe " + eid},
                             "startsAt": loadgen.rfc3339_now(), "generatorURL": loadgen.GEN_URL}
    if style == "am-webhook-v4":
        alert.update({"status": "firing", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": f"{0xE2E0000 + i:016x}"})
        doc: Any = {"receiver": "bench", "status": "firing", "alerts": [alert], "groupLabels": {},
                    "commonLabels": labels, "commonAnnotations": alert["annotations"],
                    "externalURL": "http://127.0.0.1:9093", "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0}
    else:
        doc = [alert]
    return json.dumps(doc).encode()


async def e2e_probe(url: str, style: str, count: int, interval_s: float, receiver_url: str, tag: str,
                    wait_s: float = 20.0) -> dict[str, Any]:
    import aiohttp

    sent: dict[str, int] = {}
    post_ms: list[float] = []
    statuses: collections.Counter[str] = collections.Counter()
    async with aiohttp.ClientSession() as session:
        t_next = time.monotonic()
        for i in range(count):
            eid = f"{tag}-{i}"
            body = e2e_body(style, eid, i)
            t0 = time.monotonic_ns()
            async with session.post(url, data=body, headers=loadgen.JSON_HEADERS) as response:
                await response.read()
                statuses[str(response.status)] += 1
            post_ms.append((time.monotonic_ns() - t0) / 1e6)
            sent[eid] = t0
            t_next += interval_s
            await asyncio.sleep(max(0.0, t_next - time.monotonic()))
        deadline = time.monotonic() + wait_s
        seen: dict[str, int] = {}
        while time.monotonic() < deadline:
            async with session.get(receiver_url + "/e2e") as response:
                seen = json.loads(await response.read())
            if all(k in seen for k in sent):
                break
            await asyncio.sleep(0.25)
    lat = sorted((seen[k] - t0) / 1e6 for k, t0 in sent.items() if k in seen)
    post_ms.sort()

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {"sent": len(sent), "received": len(lat), "missing": len(sent) - len(lat), "post_statuses": dict(statuses),
            "e2e_ms": {"p50": r(loadgen.percentile(lat, 50)), "p90": r(loadgen.percentile(lat, 90)),
                       "p99": r(loadgen.percentile(lat, 99)), "max": r(lat[-1] if lat else None)},
            "post_ms": {"p50": r(loadgen.percentile(post_ms, 50)), "p99": r(loadgen.percentile(post_ms, 99))}}


def e2e_point(a: argparse.Namespace, workdir: Path, style: str, rep: int) -> dict[str, Any]:
    with bridge_and_receiver(workdir) as (bridge, receiver):
        time.sleep(1.0)
        window = loadgen.CpuWindow({"bridge": bridge.pid, "receiver": receiver.proc.pid, "harness": os.getpid()})
        res = asyncio.run(e2e_probe(bridge.url(style), style, a.e2e_count, a.e2e_interval_ms / 1000.0,
                                    receiver.url, f"r{rep}"))
        return {"kind": "e2e", "target": "alertbridge", "style": style, "repeat": rep, "count": a.e2e_count,
                "interval_ms": a.e2e_interval_ms, **res, "cpu": window.result()}


# ---------------------------------------------------------------------------------------- receiver
def receiver_main(port: int) -> int:
    """Webhook receiver: counts notifications; records the first time each `e2e_id` label is seen
    firing, in alertbridge's webhook document (`incident.alerts[]`) or an Alertmanager envelope."""
    import orjson
    from aiohttp import web

    stats = {"notifications": 0, "bytes": 0, "bad": 0, "actions": {}}
    seen: dict[str, int] = {}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        t = time.monotonic_ns()
        stats["notifications"] += 1
        stats["bytes"] += len(body)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            stats["bad"] += 1
            return web.Response(status=400)
        if isinstance(doc, dict) and isinstance(doc.get("incident"), dict):
            action = str(doc.get("action"))
            stats["actions"][action] = stats["actions"].get(action, 0) + 1
            alerts = doc["incident"].get("alerts") or []
        else:
            alerts = doc.get("alerts", []) if isinstance(doc, dict) else doc
        for alert in alerts if isinstance(alerts, list) else ():
            labels = alert.get("labels") if isinstance(alert, dict) else None
            if labels and "e2e_id" in labels and alert.get("status", "firing") == "firing":
                seen.setdefault(labels["e2e_id"], t)
        return web.Response(text="ok")

    async def get_stats(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(stats), content_type="application/json")

    async def get_e2e(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(seen), content_type="application/json")

    app = web.Application(client_max_size=1 << 30)
    app.router.add_get("/stats", get_stats)
    app.router.add_get("/e2e", get_e2e)
    app.router.add_post("/{tail:.*}", hook)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
    return 0


# ----------------------------------------------------------------------------------------- profile
_BORING = re.compile(r"^(<module>|_run_module_as_main|_run_code|main|run|_serve|Runner\.run"
                     r"|BaseEventLoop\.(run_until_complete|run_forever|_run_once)"
                     r"|Handle\._run|Thread\.(run|_bootstrap|_bootstrap_inner)|_worker"
                     # aiohttp/middleware plumbing around our handler: same share as `_ingest`
                     r"|RequestHandler\._handle_request|Application\._handle|_fix_request_current_app\.<locals>\.impl"
                     r"|request_id_middleware|error_middleware|_compat_handler\.<locals>\.handler|ingest_named) ")


#: leaf frames that are waiting, not computing: the event loop's epoll, the store writer's blocking
#: queue get(), the thread pool's idle get(), and COMMIT (WAL write + fsync, GIL released). py-spy
#: does not always classify these as idle.
_WAITS = re.compile(r"^(EpollSelector\.select|SQLiteStore\._write_loop|SQLiteStore\._commit|_worker) ")


def analyze_pyspy(path: Path, top: int = 15) -> str:
    """Top functions of a `py-spy record -f raw --threads` file, by self and cumulative share of the
    samples that were computing (wait leaves, `_WAITS`, are counted apart)."""
    self_n: collections.Counter[str] = collections.Counter()
    cum_n: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    waits: collections.Counter[str] = collections.Counter()
    total = busy = 0
    for line in path.read_text().splitlines():
        stack, _, n_text = line.rpartition(" ")
        if not n_text.isdigit():
            continue
        n = int(n_text)
        frames = stack.split(";")
        total += n
        threads[re.sub(r"\(\d+\)", "", frames[0]).replace("thread : ", "")] += n
        names = [re.sub(r":\d+\)$", ")", f) for f in frames[1:]]
        if names and _WAITS.match(names[-1]):
            waits[names[-1].split(" ")[0]] += n
            continue
        busy += n
        if names:
            self_n[names[-1]] += n
        for name in set(names):
            cum_n[name] += n
    busy = busy or 1
    lines = [f"{path.name}: {total} samples (py-spy, all threads, 100 Hz); threads: "
             + ", ".join(f"{t} {100 * c / total:.0f}%" for t, c in threads.most_common()),
             "waiting (excluded below): " + ", ".join(f"{w} {100 * c / total:.1f}%" for w, c in waits.most_common())
             + f"; computing: {busy} samples = 100 % below"]
    lines += ["", "| # | self % | function (file) |", "|---|---|---|"]
    lines += [f"| {i} | {100 * c / busy:.1f} | `{f}` |" for i, (f, c) in enumerate(self_n.most_common(top), 1)]
    cum = [(f, c) for f, c in cum_n.most_common() if not _BORING.match(f)][:top]
    lines += ["", "| # | cumulative % | function (file) |", "|---|---|---|"]
    lines += [f"| {i} | {100 * c / busy:.1f} | `{f}` |" for i, (f, c) in enumerate(cum, 1)]
    return "\n".join(lines)


def analyze_cprofile(path: Path, top: int = 15) -> str:
    import pstats

    st = pstats.Stats(str(path))
    total = st.total_tt or 1e-9  # type: ignore[attr-defined]
    rows = []
    for (file, line, name), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else file
        rows.append((name, where, nc, tt, ct))
    out = [f"{path.name}: cProfile, main thread only, {total:.1f} s profiled", "",
           "| # | self (tottime) % | calls | function |", "|---|---|---|---|"]
    out += [f"| {i} | {100 * tt / total:.1f} | {nc} | `{name} ({where})` |"
            for i, (name, where, nc, tt, _ct) in enumerate(sorted(rows, key=lambda r: -r[3])[:top], 1)]
    out += ["", "| # | cumulative % | calls | function |", "|---|---|---|---|"]
    cum = [r for r in sorted(rows, key=lambda r: -r[4]) if not _BORING.match(r[0] + " ")
           and r[0] not in ("<built-in method builtins.exec>", "<method 'run' of '_contextvars.Context' objects>")]
    out += [f"| {i} | {100 * ct / total:.1f} | {nc} | `{name} ({where})` |"
            for i, (name, where, nc, _tt, ct) in enumerate(cum[:top], 1)]
    return "\n".join(out)


def analyze(path: Path, top: int = 15) -> str:
    return analyze_cprofile(path, top) if path.suffix == ".prof" else analyze_pyspy(path, top)


# ------------------------------------------------------------------------------------------ report
class Out:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = directory / "results.jsonl"

    def write(self, rec: dict[str, Any]) -> None:
        rec.setdefault("ts", time.strftime("%Y-%m-%dT%H:%M:%S"))
        with open(self.path, "a") as handle:
            handle.write(json.dumps(rec) + "\n")
        brief = {k: rec.get(k) for k in ("kind", "target", "gen", "style", "batch", "concurrency", "level",
                                          "alerts_per_s", "lat_ms", "e2e_ms", "rss_kb", "bytes_per_alert",
                                          "err_requests", "contaminated") if k in rec}
        cpu = rec.get("cpu") or {}
        brief["busy%"] = cpu.get("machine_busy_pct", (cpu.get("system") or {}).get("busy"))
        print(json.dumps(brief), file=sys.stderr, flush=True)


def _f(x: Any, nd: int = 0) -> str:
    if x is None:
        return "-"
    return f"{x:,.{nd}f}"


def _cpu(rec: dict[str, Any], *names: str) -> Any:
    cpu = rec.get("cpu") or {}
    for n in names:
        if "cpu_pct_" + n in cpu:
            return cpu["cpu_pct_" + n]
    return None


def _busy(rec: dict[str, Any]) -> Any:
    cpu = rec.get("cpu") or {}
    return cpu.get("machine_busy_pct", (cpu.get("system") or {}).get("busy"))


def report(records: list[dict[str, Any]]) -> str:
    """Markdown tables: throughput, e2e, memory (only clean attempts; contaminated ones are flagged)."""
    out = ["### Throughput (closed loop, 10k pre-warmed alerts, 90 % re-sends; CPU % of one core, 200 = box)", "",
           "| target | driver | gen | style | batch | conc | alerts/s | req/s | p50 ms | p99 ms | errors "
           "| CPU% target | CPU% gen | busy% | foreign% | clean |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    thr = [r for r in records if r.get("kind") == "throughput" and not r.get("profiled")]
    final: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in thr:  # attempts of one point share a key; keep the clean one (or the last)
        target = "alertbridge" if str(r.get("target")).startswith("http") else r.get("target")
        key = (target, r.get("driver"), r.get("gen"), r.get("style"), r.get("batch"),
               r.get("concurrency"), r.get("series", r.get("repeat")), r.get("run"))
        prev = final.get(key)
        if prev is None or prev.get("contaminated") or not r.get("contaminated"):
            final[key] = r
    for r in sorted(final.values(), key=lambda r: (r.get("batch"), r.get("style"), str(r.get("target")) < "b",
                                                   str(r.get("driver")))):
        target = r.get("target") or "?"
        target = "alertbridge" if target == "alertbridge" or str(target).startswith("http") else target
        lat = r.get("lat_ms") or {}
        out.append(
            f"| {target} | {r.get('driver', 'bench_am.py')} | {r.get('gen')} | {r.get('style')} | {r.get('batch')} "
            f"| {r.get('concurrency')} | {_f(r.get('alerts_per_s'))} | {_f(r.get('requests_per_s'))} "
            f"| {_f(lat.get('p50'), 2)} | {_f(lat.get('p99'), 1)} | {r.get('err_requests')} "
            f"| {_f(_cpu(r, 'bridge', 'target', 'am'))} | {_f(_cpu(r, 'loadgen'))} | {_f(_busy(r))} "
            f"| {_f(r.get('foreign_cpu_pct', (r.get('cpu') or {}).get('foreign_cpu_pct')))} "
            f"| {'no' if r.get('contaminated') else 'yes'} |")
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = collections.defaultdict(list)
    for r in final.values():
        if not r.get("contaminated"):
            target = "alertbridge" if str(r.get("target")).startswith("http") else r.get("target")
            groups[(r.get("batch"), r.get("style"), target, r.get("driver", "bench_am.py"), r.get("gen"),
                    r.get("concurrency"))].append(r)
    if groups:
        out += ["", "### Summary over runs (clean points only): alerts/s min / **median** / max", "",
                "| batch | style | target | driver | gen | conc | n | alerts/s | POST p50 ms (med) | POST p99 ms (med) "
                "| CPU% target (med) | busy% (med) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for key in sorted(groups, key=lambda k: tuple(str(x) for x in k)):
            rs = groups[key]
            rates = sorted(r["alerts_per_s"] for r in rs)
            out.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {key[4]} | {key[5]} | {len(rs)} "
                       f"| {_f(rates[0])} / **{_f(median(rates))}** / {_f(rates[-1])} "
                       f"| {_f(median([(r.get('lat_ms') or {}).get('p50') for r in rs]), 2)} "
                       f"| {_f(median([(r.get('lat_ms') or {}).get('p99') for r in rs]), 1)} "
                       f"| {_f(median([_cpu(r, 'bridge', 'target', 'am') for r in rs]))} "
                       f"| {_f(median([_busy(r) for r in rs]))} |")
    e2e = [r for r in records if r.get("kind") == "e2e"]
    if e2e:
        out += ["", "### End to end: POST of a new alert (new group) -> webhook receipt, group_wait 0s", "",
                "| target | style | repeat | sent | received | e2e p50 ms | p90 ms | p99 ms | max ms | POST p50 ms "
                "| busy% | clean |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in e2e:
            e, p = r.get("e2e_ms") or {}, r.get("post_ms") or {}
            out.append(f"| {r.get('target')} | {r.get('style')} | {r.get('repeat')} | {r.get('sent')} "
                       f"| {r.get('received')} | {_f(e.get('p50'), 2)} | {_f(e.get('p90'), 2)} | {_f(e.get('p99'), 2)} "
                       f"| {_f(e.get('max'), 1)} | {_f(p.get('p50'), 2)} | {_f(_busy(r))} "
                       f"| {'no' if r.get('contaminated') else 'yes'} |")
    mem = [r for r in records if r.get("kind") == "memory"]
    if mem:
        out += ["", "### Memory (VmRSS after posting N distinct alerts and waiting)", "",
                "| target | level (active alerts) | VmRSS MB | VmHWM MB | (RSS - idle) per alert | disk (journal) MB |",
                "|---|---|---|---|---|---|"]
        am_idle = None
        for r in mem:
            if r.get("target") == "alertbridge":
                per = r.get("bytes_per_alert")
                out.append(f"| alertbridge | {r['level']:,} | {r['rss_kb'] / 1024:.1f} | {r['hwm_kb'] / 1024:.1f} "
                           f"| {_f(per / 1024 if per is not None else None, 2)} KiB | {r['disk_bytes'] / 2**20:.1f} |")
            else:  # bench_am.py memory record
                if r.get("level") == 0:
                    am_idle = r.get("rss_mb")
                per = ((r["rss_mb"] - am_idle) * 1024 / r["level"]) if am_idle is not None and r.get("level") else None
                out.append(f"| alertmanager | {r['level']:,} | {r['rss_mb']:.1f} | {r.get('hwm_mb', 0):.1f} "
                           f"| {_f(per, 2)} KiB | - |")
    return "\n".join(out)


# -------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", type=Path, default=None, help="JSONL, profiles, logs (default: a new /tmp dir)")
    ap.add_argument("--only", default="throughput,memory,e2e", help="comma list: throughput, memory, e2e")
    ap.add_argument("--styles", default="am-webhook-v4,am-api-v2")
    ap.add_argument("--batches", default="1,100")
    ap.add_argument("--conc-b1", type=int, default=16, help="connections at batch 1 (harness: AM best c=16)")
    ap.add_argument("--conc-b100", type=int, default=8, help="connections at batch 100 (harness: AM best c=8)")
    ap.add_argument("--gen", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--duration", type=float, default=15, help="s per throughput point (<= 120)")
    ap.add_argument("--max-requests", type=int, default=1_000_000, help="python generator only")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--active", type=int, default=10_000)
    ap.add_argument("--dup", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--settle-before", type=float, default=2.0, help="s between pre-warm and load")
    ap.add_argument("--memory-levels", default="10000,100000")
    ap.add_argument("--memory-style", default="am-api-v2")
    ap.add_argument("--settle", type=float, default=15.0, help="s to wait before reading RSS")
    ap.add_argument("--e2e-count", type=int, default=300)
    ap.add_argument("--e2e-interval-ms", type=float, default=25.0)
    ap.add_argument("--e2e-styles", default="am-api-v2,am-webhook-v4")
    ap.add_argument("--with-alertmanager", action="store_true", help="also run ../shared/bench/bench_am.py")
    ap.add_argument("--profile", choices=("none", "py-spy", "cprofile"), default="none",
                    help="profile the server during the throughput points (their figures are not reported)")
    ap.add_argument("--quiet-wait", type=float, default=60, help="max s to wait for an idle box before a point")
    ap.add_argument("--foreign-max", type=float, default=15.0, help="re-run a point if others used > this %% CPU")
    ap.add_argument("--max-attempts", type=int, default=2)
    a = ap.parse_args(argv)
    if not 0 < a.duration <= 120:
        ap.error("--duration must be in (0, 120]")
    a.only = set(a.only.split(","))
    a.styles = [s for s in a.styles.split(",") if s]
    a.e2e_styles = [s for s in a.e2e_styles.split(",") if s]
    a.batches = [int(b) for b in a.batches.split(",") if b]
    a.memory_levels = [int(x) for x in a.memory_levels.split(",") if x]
    for s in (*a.styles, *a.e2e_styles, a.memory_style):
        if s not in PATHS:
            ap.error(f"unknown style {s}")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["receiver"]:
        sub = argparse.ArgumentParser(prog="python -m tests.bench.run receiver")
        sub.add_argument("--port", type=int, required=True)
        return receiver_main(sub.parse_args(argv[1:]).port)
    if argv[:1] == ["analyze"]:
        for p in argv[1:]:
            print(analyze(Path(p)) + "\n")
        return 0
    if argv[:1] == ["report"]:
        records = [{"run": str(Path(p).parent), **json.loads(line)}
                   for p in argv[1:] for line in Path(p).read_text().splitlines() if line]
        print(report(records))
        return 0
    a = parse_args(argv)
    out = Out(a.out_dir or Path(tempfile.mkdtemp(prefix="alertbridge-bench-")))
    workdir = out.dir / "work"
    workdir.mkdir(exist_ok=True)
    out.write({"kind": "machine", "nproc": os.cpu_count(), "loadavg": Path("/proc/loadavg").read_text().strip(),
               "python": sys.version.split()[0], "wrk": have_wrk(), "argv": argv, "cmd": "python -m tests.bench.run"})
    print(f"results -> {out.path}", file=sys.stderr, flush=True)
    records: list[dict[str, Any]] = []
    t_start = time.monotonic()

    if "throughput" in a.only:
        for rep in range(1, a.repeats + 1):
            for batch in a.batches:
                conc = a.conc_b1 if batch == 1 else a.conc_b100
                if a.with_alertmanager and a.profile == "none":
                    gen = "wrk" if have_wrk() else "python"
                    common = ["throughput", "--gen", gen, "--batch", str(batch), "--concurrency", str(conc),
                              "--concurrency-b1", str(conc), "--active", str(a.active), "--dup", str(a.dup),
                              "--duration", str(int(a.duration)), "--repeats", "1", "--seed", str(a.seed)]
                    records += bench_am(a, out, common, rep)
                for style in a.styles:
                    tag = f"{style}-b{batch}-r{rep}" if a.profile != "none" else None

                    def point(style: str = style, batch: int = batch, conc: int = conc,
                              tag: str | None = tag, rep: int = rep) -> dict[str, Any]:
                        return throughput_point(a, workdir, style, batch, conc, tag, rep)

                    rec = gated(a, out, f"{style} batch {batch}", point)
                    records.append(rec)
                    if tag:
                        prof = workdir / (f"pyspy-{tag}.txt" if a.profile == "py-spy" else f"cprofile-{tag}.prof")
                        if prof.exists():
                            print(analyze(prof) + "\n", flush=True)
                    if a.with_alertmanager and a.profile == "none":
                        # the harness re-uses a --target-url target across its attempts (state grows):
                        # one attempt per call, a fresh bridge per attempt, re-run here if contaminated
                        for _attempt in range(a.max_attempts):
                            with bridge_and_receiver(workdir) as (bridge, _receiver):
                                got = bench_am(a, out, [*common, "--target-url", bridge.url(style),
                                                        "--target-pid", str(bridge.pid), "--style", style],
                                               rep, attempts=1)
                            records += got
                            if not any(r.get("contaminated") for r in got):
                                break

    if "e2e" in a.only and a.profile == "none":
        for rep in range(1, a.repeats + 1):
            for style in a.e2e_styles:
                def probe(style: str = style, rep: int = rep) -> dict[str, Any]:
                    return e2e_point(a, workdir, style, rep)

                records.append(gated(a, out, f"e2e {style}", probe))
            if a.with_alertmanager:
                records += bench_am(a, out, ["e2e", "--group-wait", "0s", "--count", str(a.e2e_count),
                                             "--interval-ms", str(a.e2e_interval_ms), "--repeats", "1"], rep)

    if "memory" in a.only and a.profile == "none":
        for rep in range(1, a.repeats + 1):
            wait_quiet(a.quiet_wait)
            for rec in memory_run(a, workdir, a.memory_style):
                rec["repeat"] = rep
                out.write(rec)
                records.append(rec)
            if a.with_alertmanager:
                records += bench_am(a, out, ["memory", "--levels", ",".join(map(str, a.memory_levels)),
                                             "--settle-mem", str(int(a.settle)), "--repeats", "1"], rep)

    for rec in records:
        rec.setdefault("run", str(out.dir))
    table = report(records)
    (out.dir / "tables.md").write_text(table + "\n")
    print(table)
    print(f"\nresults: {out.path} ({time.monotonic() - t_start:.0f} s)", file=sys.stderr)
    errors = sum(int(r.get("err_requests") or 0) for r in records
                 if r.get("kind") == "throughput" and r.get("target") == "alertbridge")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
