"""The `alertbridge oncall` and `alertbridge report` commands (bridge/cli_pools.py), through `bridge.cli.main`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

import bridge.cli_pools
import bridge.log
from bridge.cli import main
from bridge.ingest import ENTRY_ACK, ENTRY_WEBHOOK
from bridge.model import format_time
from bridge.runtime import Runtime
from bridge.settings import validate_settings
from bridge.store.sqlite import SQLiteStore
from tests.apptools import FakeClock, RecordingSink

ROOT = Path(__file__).resolve().parents[2]
#: Monday 2026-11-23 10:00 UTC.
T = 1795428000.0

BERLIN_WEEKDAYS = {"time_zone": "Europe/Berlin",
                   "working_hours": [{"days": ["monday", "tuesday", "wednesday", "thursday", "friday"]}]}
NEW_YORK_WEEKDAYS = {"time_zone": "America/New_York",
                     "working_hours": [{"days": ["monday", "tuesday", "wednesday", "thursday", "friday"]}]}

CONFIG: dict[str, Any] = {
    "sources": [{"name": "am", "type": "alertmanager"}],
    "sinks": [{"name": "out", "type": "log"}],
    "routes": [{"name": "default", "group_by": ["alertname"], "group_wait": "30s", "sinks": ["out"], "pool": "db"}],
    "pools": [
        {"name": "db", "schedule": "db-primary", "escalation": "db-policy",
         "members": [{"name": n} for n in ("alice", "bob", "carol", "lena")]},
        {"name": "web", "escalation": "web-policy",
         "members": [{"name": "wendy", **BERLIN_WEEKDAYS}, {"name": "walt", **NEW_YORK_WEEKDAYS}]},
        {"name": "ops", "members": [{"name": "otto"}]},
    ],
    "schedules": [
        {"name": "db-primary", "time_zone": "Europe/Berlin",
         "layers": [{"name": "weekly", "members": ["alice", "bob", "carol"], "rotation": "weekly",
                     "start": "2026-03-02"}],
         # carol covers alice from Saturday evening (CET) to Sunday noon (CEST), across the DST change
         "overrides": [{"member": "carol", "start": "2026-03-28T18:00", "end": "2026-03-29T12:00",
                        "replaces": "alice"}]},
        {"name": "db-secondary", "time_zone": "Europe/Berlin",
         "layers": [{"name": "weekly", "members": ["bob", "carol", "alice"], "rotation": "weekly",
                     "start": "2026-03-02"}]},
    ],
    "escalation_policies": [
        {"name": "db-policy", "repeat": 1, "tiers": [
            {"assignee": True, "timeout": "5m", "timeouts": {"P1": "2m"}},
            {"schedules": ["db-secondary"], "timeout": "10m"},
            {"members": ["lena"], "timeout": "15m"}]},
        {"name": "web-policy", "tiers": [{"assignee": True, "timeout": "5m"}, {"members": ["lena"]}]},
    ],
    "sla": {"targets": {"P4": {"acknowledge": "10m", "resolve": "1h"}}},
}

QUOTA = "quota: open incidents per member are not known offline; the bridge skips a member at quota when it assigns"
DB_POLICY = "escalation: policy db-policy, 3 tiers, repeat 1"


def write_config(tmp_path: Path, data_dir: Path | None = None) -> Path:
    config = dict(CONFIG, server={"data_dir": str(data_dir or tmp_path / "data")})
    path = tmp_path / "alertbridge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path)


def oncall(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    """Run `alertbridge oncall ARGV`: the exit code, stdout lines and stderr."""
    code = main(["oncall", *argv])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


# -------------------------------------------------------------------------------------------- oncall

ONCALL = [
    ("before-dst-change", "2026-03-28T12:00:00+01:00", [
        "pool db at 2026-03-28T11:00:00.000Z",
        "schedule db-primary at 2026-03-28 12:00 CET",
        "on call: alice (layer weekly) since 2026-03-23 09:00 CET until 2026-03-28 18:00 CET",
        "next: carol (override) from 2026-03-28 18:00 CET until 2026-03-29 12:00 CEST",
        "next: alice (layer weekly) from 2026-03-29 12:00 CEST until 2026-03-30 09:00 CEST",
        "next: bob (layer weekly) from 2026-03-30 09:00 CEST until 2026-04-06 09:00 CEST",
        QUOTA, DB_POLICY,
        "tier L1 now: pages the assignee (alice, unless at quota); unacknowledged, escalates to tier L2 after 5m "
        "(P1: 2m)",
    ]),
    ("override-across-dst-change", "2026-03-29T10:00:00+02:00", [
        "pool db at 2026-03-29T08:00:00.000Z",
        "schedule db-primary at 2026-03-29 10:00 CEST",
        "on call: carol (override) since 2026-03-28 18:00 CET until 2026-03-29 12:00 CEST",
        "next: alice (layer weekly) from 2026-03-29 12:00 CEST until 2026-03-30 09:00 CEST",
        "next: bob (layer weekly) from 2026-03-30 09:00 CEST until 2026-04-06 09:00 CEST",
        "next: carol (layer weekly) from 2026-04-06 09:00 CEST until 2026-04-13 09:00 CEST",
        QUOTA, DB_POLICY,
        "tier L1 now: pages the assignee (carol, unless at quota); unacknowledged, escalates to tier L2 after 5m "
        "(P1: 2m)",
    ]),
    ("utc-time-epoch-seconds", str(T), [
        "pool db at 2026-11-23T10:00:00.000Z",
        "schedule db-primary at 2026-11-23 11:00 CET",
        "on call: carol (layer weekly) since 2026-11-23 09:00 CET until 2026-11-30 09:00 CET",
        "next: alice (layer weekly) from 2026-11-30 09:00 CET until 2026-12-07 09:00 CET",
        "next: bob (layer weekly) from 2026-12-07 09:00 CET until 2026-12-14 09:00 CET",
        "next: carol (layer weekly) from 2026-12-14 09:00 CET until 2026-12-21 09:00 CET",
        QUOTA, DB_POLICY,
        "tier L1 now: pages the assignee (carol, unless at quota); unacknowledged, escalates to tier L2 after 5m "
        "(P1: 2m)",
    ]),
]


@pytest.mark.parametrize(("at", "expected"), [case[1:] for case in ONCALL], ids=[case[0] for case in ONCALL])
def test_oncall_scheduled_pool(config: Path, capsys: pytest.CaptureFixture[str], at: str,
                               expected: list[str]) -> None:
    """For a pool with a schedule: who is on call from which layer or override, since and until when in the
    schedule's local time (DST included), the next shifts, quota's caveat, and whom tier 1 pages."""
    assert oncall(capsys, "db", "--at", at, "--config", str(config)) == (0, expected, "")


def test_oncall_without_schedule_lists_working_hours(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """For a pool without a schedule: each member's working hours in their zone, and who is within them."""
    code, lines, _ = oncall(capsys, "web", "--at", "2026-11-23T10:00:00Z", "--config", str(config))
    assert code == 0
    assert lines == [
        "pool web at 2026-11-23T10:00:00.000Z",
        "no schedule: members within their working hours",
        "  wendy: working (mon-fri 09:00-17:00 Europe/Berlin; local time Mon 11:00 CET)",
        "  walt: not working (mon-fri 09:00-17:00 America/New_York; local time Mon 05:00 EST)",
        "on call: wendy",
        QUOTA,
        "escalation: policy web-policy, 2 tiers, repeat 0",
        "tier L1 now: pages the assignee (wendy, unless at quota); unacknowledged, escalates to tier L2 after 5m",
    ]


def test_oncall_nobody_working_means_tier_one_pages_nobody(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """When nobody is on call, tier 1 (the assignee) pages nobody and the incident would escalate at once."""
    code, lines, _ = oncall(capsys, "web", "--at", "2026-11-28T12:00:00Z", "--config", str(config))
    assert code == 0
    assert lines[4] == "on call: nobody"
    assert lines[-1] == ("tier L1 now: pages nobody (no assignee: nobody in the pool is on call), so the incident "
                         "escalates at once to the next tier with someone to page")


def test_oncall_pool_without_policy(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A pool with no escalation policy and no working hours: every member is on call, only the assignee paged."""
    code, lines, _ = oncall(capsys, "ops", "--at", str(T), "--config", str(config))
    assert code == 0
    assert lines[1:] == ["no schedule: every member", "  otto: on call (no working hours declared)",
                         "on call: otto", QUOTA, "escalation: none (only the assignee is paged)"]


@pytest.mark.parametrize("argv", [["NOW", "db"], ["now", "db"], ["db"]], ids=["NOW", "now", "default"])
def test_oncall_now(config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                    argv: list[str]) -> None:
    """`oncall NOW POOL` (and `oncall POOL`) answers for the current time, as `--at` with that time does."""
    monkeypatch.setattr(bridge.cli_pools, "time", types.SimpleNamespace(time=lambda: T + 0.5))
    expected = oncall(capsys, "db", "--at", str(T + 0.5), "--config", str(config))
    assert oncall(capsys, *argv, "--config", str(config)) == expected
    assert expected[1][1] == "schedule db-primary at 2026-11-23 11:00 CET"


def test_oncall_reads_the_config_from_the_environment(config: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --config, the file named by ALERTBRIDGE_CONFIG is read, as `serve` does."""
    monkeypatch.setenv("ALERTBRIDGE_CONFIG", str(config))
    code, lines, _ = oncall(capsys, "db", "--at", str(T))
    assert (code, lines[0]) == (0, "pool db at 2026-11-23T10:00:00.000Z")


@pytest.mark.parametrize(("argv", "message"), [
    (["nope"], "oncall: unknown pool 'nope'; pools: db, web, ops\n"),
    (["later", "db"], "oncall: expected [NOW] POOL (a time goes in --at)\n"),
    (["NOW", "db", "--at", str(T)], "oncall: give NOW or --at, not both\n"),
    (["db", "--at", "tomorrow"], "--at: 'tomorrow' is not a time (RFC 3339, e.g. 2026-03-29T09:00:00+02:00, or "
                                 "epoch seconds)\n"),
    (["db", "--at", "nan"], "--at: 'nan' is not a time (RFC 3339, e.g. 2026-03-29T09:00:00+02:00, or epoch "
                            "seconds)\n"),
], ids=["unknown-pool", "not-now", "now-and-at", "bad-time", "not-finite"])
def test_oncall_usage_errors(config: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                             message: str) -> None:
    """Bad input exits 2 with one line on stderr; an unknown pool lists the configured pools."""
    assert oncall(capsys, *argv, "--config", str(config)) == (2, [], message)


# -------------------------------------------------------------------------------------------- report

def am_body(name: str, status: str, starts_at: float) -> bytes:
    """An Alertmanager webhook body with one warning alert."""
    alert = {"status": status, "labels": {"alertname": name, "severity": "warning", "instance": "db-1"},
             "startsAt": format_time(starts_at), "annotations": {}}
    return json.dumps({"status": status, "alerts": [alert]}).encode()


def run_bridge(config_path: Path) -> None:
    """Run the bridge on a fake clock: DiskFull fires at T, pages carol at T+30, she acknowledges at T+90 and it
    resolves at T+630. Leaves the journal in the config's data directory."""
    settings = validate_settings(yaml.safe_load(config_path.read_text()), env={})
    clock = FakeClock(T)

    async def scenario() -> None:
        runtime = Runtime(settings, clock=clock, sinks={"out": RecordingSink(name="out")})
        await runtime.start()
        try:
            source = runtime.source("am")
            await runtime.ingest(source, am_body("DiskFull", "firing", T), {})
            clock.advance(30)
            await runtime.tick()
            (incident,) = runtime.engine.incidents.values()
            assert incident.assignee == "carol"  # on call in db-primary in the week of 2026-11-23
            clock.advance(60)
            await runtime.acknowledge(incident.id, "carol")
            clock.advance(540)
            await runtime.ingest(source, am_body("DiskFull", "resolved", T), {})
        finally:
            await runtime.stop()

    asyncio.run(scenario())


@pytest.fixture
def quiet_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """`report` configures structlog for the process (to stderr); keep the test process's logging as it is."""
    monkeypatch.setattr(bridge.log, "configure_logging", lambda level, fmt: None)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    run_bridge(write_config(tmp_path))
    return tmp_path / "data"


def snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def report(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["report", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


ROW = {"pool": "db", "priority": "P4", "incidents": 1, "acknowledged": 1, "resolved": 1,
       "mtta_seconds": 60.0, "median_tta_seconds": 60.0, "mttr_seconds": 600.0, "median_ttr_seconds": 600.0,
       "sla_acknowledge": 1.0, "sla_resolve": 1.0, "escalations": 0, "repeat_rate": 0.0}


def test_report_json_from_a_bridge_journal(quiet_logging: None, tmp_path: Path, data_dir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`report --format json` rebuilds the engine from the journal a running bridge wrote and prints the report
    of the period, without changing a byte in the data directory."""
    before = snapshot(data_dir)
    code, out, err = report(capsys, "--config", str(tmp_path / "alertbridge.yaml"), "--since", "1h",
                            "--until", "2026-11-23T11:00:00Z", "--format", "json")
    assert code == 0, err
    assert json.loads(out) == {"since": "2026-11-23T10:00:00.000Z", "until": "2026-11-23T11:00:00.000Z",
                               "pools": [ROW], "people": [{"member": "carol", "pages": 1, "pages_per_day": 24.0}]}
    assert err == f"rebuilt from 3 journal entries in {data_dir}\n"
    assert snapshot(data_dir) == before


def test_report_table(quiet_logging: None, tmp_path: Path, data_dir: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    """The default format is the table: the period, a header and a row per pool and priority, then people."""
    code, out, _ = report(capsys, "--config", str(tmp_path / "alertbridge.yaml"), "--since", "2026-11-23T00:00:00Z",
                          "--until", str(T + 3600))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "alertbridge report 2026-11-23T00:00:00.000Z .. 2026-11-23T11:00:00.000Z"
    assert lines[2].startswith("pool  priority  incidents  acked  resolved  MTTA")
    assert lines[4].split() == ["db", "P4", "1", "1", "1", "60s", "60s", "10.0m", "10.0m", "100%", "100%", "0",
                                "0%"]
    assert lines[8].split() == ["carol", "1", "2.18"]  # one page in 11 hours


def test_report_until_replays_the_journal_only_up_to_then(quiet_logging: None, tmp_path: Path, data_dir: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """With --until before the acknowledgement, the report is the one the bridge would have made then."""
    code, out, _ = report(capsys, "--config", str(tmp_path / "alertbridge.yaml"), "--data-dir", str(data_dir),
                          "--since", "1h", "--until", str(T + 60), "--format", "json")
    assert code == 0
    (row,) = json.loads(out)["pools"]
    assert (row["incidents"], row["acknowledged"], row["resolved"], row["sla_acknowledge"]) == (1, 0, 0, None)


def test_report_data_dir_from_flag_and_environment(quiet_logging: None, tmp_path: Path, data_dir: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """--data-dir, else ALERTBRIDGE_DATA_DIR, overrides server.data_dir, as for `serve`."""
    (tmp_path / "other").mkdir()
    elsewhere = write_config(tmp_path / "other", data_dir=tmp_path / "empty")
    argv = ["--config", str(elsewhere), "--until", str(T + 3600), "--format", "json"]
    assert report(capsys, *argv)[0] == 2  # the config's own data_dir has no journal
    assert json.loads(report(capsys, *argv, "--data-dir", str(data_dir))[1])["pools"] == [ROW]
    monkeypatch.setenv("ALERTBRIDGE_DATA_DIR", str(data_dir))
    assert json.loads(report(capsys, *argv)[1])["pools"] == [ROW]


def test_report_while_the_bridge_runs(quiet_logging: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With the store open by a running bridge (its -wal file present), the report reads what is committed and
    creates or changes no file but the shared-memory index."""
    config = write_config(tmp_path)
    data = tmp_path / "data"

    async def scenario() -> tuple[int, str]:
        store = SQLiteStore(data)
        try:
            await store.append(ENTRY_WEBHOOK, "am", {"body": am_body("DiskFull", "firing", T).decode()}, T)
            await store.append(ENTRY_ACK, "api", {"incident": "unknown", "by": "bob"}, T + 90)
            before = {name: body for name, body in snapshot(data).items() if not name.endswith("-shm")}
            assert "alertbridge.db-wal" in before
            code, out, _ = report(capsys, "--config", str(config), "--until", str(T + 3600), "--format", "json")
            assert {name: body for name, body in snapshot(data).items() if not name.endswith("-shm")} == before
            return code, out
        finally:
            await store.aclose()

    code, out = asyncio.run(scenario())
    assert code == 0
    assert json.loads(out)["pools"][0]["incidents"] == 1


def test_report_without_a_journal(quiet_logging: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A data directory without a journal exits 2 with a clear message and is left as it was (not created)."""
    config = write_config(tmp_path, data_dir=tmp_path / "nothing-here")
    code, out, err = report(capsys, "--config", str(config))
    assert (code, out) == (2, "")
    assert err == f"{tmp_path / 'nothing-here'}: no journal (alertbridge.db) here\n"
    assert not (tmp_path / "nothing-here").exists()


def test_report_on_a_file_that_is_not_a_journal(quiet_logging: None, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A data directory whose alertbridge.db is not an alertbridge journal exits 2 naming the file."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "alertbridge.db").write_bytes(b"not a database, just bytes" * 100)
    code, _, err = report(capsys, "--config", str(write_config(tmp_path)))
    assert code == 2
    assert err.startswith(f"{tmp_path / 'data' / 'alertbridge.db'}: not an alertbridge journal (")
    assert sorted(os.listdir(tmp_path / "data")) == ["alertbridge.db"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--since", "last week"], "--since: 'last week' is neither a duration (7d, 24h, 1h30m) nor a time (RFC 3339 "
                               "or epoch seconds)\n"),
    (["--until", "soon"], "--until: 'soon' is not a time (RFC 3339, e.g. 2026-03-29T09:00:00+02:00, or epoch "
                          "seconds)\n"),
    (["--since", str(T + 10), "--until", str(T)], "report: --since must be before --until\n"),
], ids=["bad-since", "bad-until", "since-after-until"])
def test_report_usage_errors(quiet_logging: None, config: Path, capsys: pytest.CaptureFixture[str],
                             argv: list[str], message: str) -> None:
    """A period that cannot be read exits 2 with one line naming the flag."""
    assert report(capsys, "--config", str(config), *argv) == (2, "", message)


def test_report_logs_go_to_stderr_and_stdout_stays_json(tmp_path: Path) -> None:
    """Run as a command, the journal's warnings (here: an entry of a source no longer configured) are logged to
    stderr, so `--format json` output stays parseable."""
    config = write_config(tmp_path)

    async def journal() -> None:
        store = SQLiteStore(tmp_path / "data")
        await store.append(ENTRY_WEBHOOK, "retired-source", {"body": "{}"}, T)
        await store.append(ENTRY_WEBHOOK, "am", {"body": am_body("DiskFull", "firing", T).decode()}, T)
        await store.aclose()

    asyncio.run(journal())
    done = subprocess.run([sys.executable, "-m", "bridge", "report", "--config", str(config), "--until",
                           str(T + 3600), "--format", "json"], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pools"][0]["incidents"] == 1
    assert "journal entry for a source no longer configured skipped" in done.stderr
