"""The shipped configs: every example in config/examples/ and config/alertbridge.yaml is valid as it stands."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.oncall import schedule_problems
from bridge.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [*sorted((ROOT / "config" / "examples").glob("*.yaml")), ROOT / "config" / "alertbridge.yaml"]
YEAR = 365 * 86400.0


def test_the_examples_are_found() -> None:
    """The list of shipped configs includes the on-call example and the default config."""
    names = {path.name for path in SHIPPED}
    assert {"oncall.yaml", "storm.yaml", "alertbridge.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[path.name for path in SHIPPED])
def test_shipped_config_passes_check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`alertbridge check-config` accepts the file and exits 0."""
    assert main(["check-config", str(path)]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith(f"{path}: ok")


@pytest.mark.parametrize("path", SHIPPED, ids=[path.name for path in SHIPPED])
def test_shipped_config_needs_no_environment(path: Path) -> None:
    """Every `${VAR}` placeholder in a shipped config has a default, so it validates in an empty environment."""
    load_settings(path, env={})


def test_oncall_example_schedules_have_no_gap_for_a_year() -> None:
    """The on-call example's schedules cover every minute of the coming year, not just check-config's 28 days."""
    settings = load_settings(ROOT / "config" / "examples" / "oncall.yaml", env={})
    members = {member.name for pool in settings.pools for member in pool.members}
    assert settings.schedules
    for schedule in settings.schedules:
        assert schedule_problems(schedule, members, time.time(), horizon=YEAR) == [], schedule.name


def test_oncall_example_answers_for_every_pool(capsys: pytest.CaptureFixture[str]) -> None:
    """`alertbridge oncall` runs on the on-call example for each of its pools, as its header shows."""
    example = str(ROOT / "config" / "examples" / "oncall.yaml")
    for pool in ("databases", "web", "triage"):
        assert main(["oncall", pool, "--at", "2026-12-25T03:00:00Z", "--config", example]) == 0, pool
    out = capsys.readouterr().out
    assert "on call: alice (override) since 2026-12-24 17:00 CET until 2026-12-25 09:00 CET" in out
    assert "  taro: working (mon-fri 07:00-16:00 Asia/Tokyo; local time Fri 12:00 JST)" in out
