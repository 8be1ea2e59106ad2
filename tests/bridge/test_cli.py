"""The `alertbridge` command line: check-config and its errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_configs_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    """Every YAML shipped under config/ passes check-config."""
    files = sorted((ROOT / "config").rglob("*.yaml"))
    assert files
    for path in files:
        assert main(["check-config", str(path)]) == 0, path
    assert "ok" in capsys.readouterr().out


def test_check_config_prints_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid config exits 2 and lists all its problems with their paths."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        "sources:\n  - {name: am, type: alertmanager, colour: red}\n"
        "sinks:\n  - {name: hook, type: webhook, url: 'ftp://x'}\n"
        "routes:\n  - {name: r, sinks: [nowhere], group_wait: soon}\n"
    )
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    for needle in ("sources[0].colour", "sinks[0].url", "routes[0].group_wait"):
        assert needle in err, needle


def test_check_config_reports_cross_references(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A route naming an unknown sink is reported with its path."""
    path = tmp_path / "bad.yaml"
    path.write_text("sources: [{name: am, type: alertmanager}]\nsinks: [{name: out, type: log}]\n"
                    "routes: [{name: r, sinks: [nowhere]}]\n")
    assert main(["check-config", str(path)]) == 2
    assert "routes[0].sinks[0]: unknown sink 'nowhere'" in capsys.readouterr().err


def test_unreadable_and_malformed_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file and broken YAML are reported, not raised."""
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text("routes: [\n")
    assert main(["check-config", str(broken)]) == 2
    assert "line" in capsys.readouterr().err


def test_python_dash_m_bridge_works() -> None:
    """`python -m bridge --version` runs the same command."""
    out = subprocess.run([sys.executable, "-m", "bridge", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("alertbridge ")


def test_serve_refuses_an_invalid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`serve` exits 2 with the same messages as check-config when the config is invalid."""
    path = tmp_path / "bad.yaml"
    path.write_text("server: {listen: nowhere}\n")
    assert main(["serve", "--config", str(path)]) == 2
    assert "server.listen" in capsys.readouterr().err


def test_reference_errors_are_reported_with_schema_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown sink is reported even when another part of the config fails validation."""
    path = tmp_path / "bad.yaml"
    path.write_text("sources: [{name: am, type: alertmanager, colour: red}]\nsinks: [{name: out, type: log}]\n"
                    "routes: [{name: r, sinks: [nowhere]}]\n")
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "sources[0].colour" in err and "routes[0].sinks[0]: unknown sink 'nowhere'" in err
