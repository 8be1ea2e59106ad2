"""The load benchmark's own tests: a fast smoke run (part of `make test`) and a short bench (slow).

Neither asserts a rate threshold: the box is shared and timing assertions would be flaky. They check
that the tools run end to end against a real `alertbridge serve` subprocess, with zero errors.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench import loadgen, run

REPO = Path(__file__).resolve().parents[2]


def _loadgen(base: str, style: str, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "tests.bench.loadgen", "--base", base, "--style", style, *extra]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert p.stdout.strip(), p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_loadgen_smoke_against_live_server(tmp_path: Path) -> None:
    """~1 s, bounded requests, both styles, against `python -m bridge serve` on a free port: 0 errors.

    One run as `python -m tests.bench.loadgen` (a subprocess), one in-process (same code), to stay < 5 s.
    """
    common = ["--concurrency", "4", "--active", "200", "--duration", "0.4", "--warmup", "0.1",
              "--max-requests", "300"]
    with run.bridge_and_receiver(tmp_path) as (bridge, _receiver):
        results = [_loadgen(bridge.base, "am-webhook-v4", "--batch", "100", *common)]
        args = loadgen.parse_args(["--base", bridge.base, "--style", "am-api-v2", "--batch", "1", *common])
        results.append(asyncio.run(loadgen.run(args)))
    for r in results:
        assert r["prewarm"]["errors"] == {}, r
        assert r["err_requests"] == 0, r["statuses"]
        assert r["ok_requests"] > 0 and r["alerts_per_s"] > 0, r
        assert r["lat_ms"]["p50"] is not None


def test_bodies_identical_to_shared_harness() -> None:
    """Our generator makes the same bytes as ../shared/bench/common.py (same picks, same bodies)."""
    if not (loadgen.SHARED_BENCH / "common.py").is_file():
        pytest.skip(f"shared harness not at {loadgen.SHARED_BENCH}")
    common = loadgen.shared_common()
    for style in loadgen.STYLES:
        ours, theirs = loadgen.Picker(10_000, 0.9, 7), common.Picker(10_000, 0.9, 7)
        for n in (1, 100, 1, 3, 100):
            idxs = ours.pick(n)
            assert idxs == theirs.pick(n)
            assert loadgen.build_body(style, idxs, 10, 50, "2024-01-01T00:00:00.000Z") == \
                common.build_body(style, idxs, 10, 50, "2024-01-01T00:00:00.000Z")
        assert loadgen.build_body(style, [4, 4], 10, 50, "x") == common.build_body(style, [4, 4], 10, 50, "x")


def test_loadgen_refuses_non_loopback() -> None:
    with pytest.raises(SystemExit):
        loadgen.parse_args(["--base", "http://10.0.0.1:9095"])
    with pytest.raises(SystemExit):
        loadgen.parse_args(["--duration", "121"])


@pytest.mark.slow
def test_short_bench_runs_clean(tmp_path: Path) -> None:
    """The orchestrator's throughput step, 5 s per point, both styles, batch 1 and 100: 0 errors, rate > 0."""
    cmd = [sys.executable, "-m", "tests.bench.run", "--only", "throughput", "--duration", "5",
           "--quiet-wait", "0", "--max-attempts", "1", "--out-dir", str(tmp_path / "out")]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=280)
    assert p.returncode == 0, p.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    points = [r for r in records if r["kind"] == "throughput"]
    assert {(r["style"], r["batch"]) for r in points} == {
        (s, b) for s in ("am-webhook-v4", "am-api-v2") for b in (1, 100)}
    for r in points:
        assert r["err_requests"] == 0, r
        assert r["ok_requests"] > 0 and r["alerts_per_s"] > 0, r
    assert "| alertbridge |" in p.stdout
