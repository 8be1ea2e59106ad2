"""Replay: a recorded stream through the same sources and engine, on the recorded clock."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pytest

from bridge.cli import main
from bridge.replay import ReplayError, replay
from bridge.settings import validate_settings
from bridge.wiring import build_engine, build_sources
from tests.apptools import base_config, fixture_bytes

FIRING = json.loads(fixture_bytes("alertmanager/captured_v0.25_webhook_firing_2alerts.json"))
RESOLVED_ONE = json.loads(fixture_bytes("alertmanager/captured_v0.25_webhook_firing_1resolved_1firing.json"))
RESOLVED = json.loads(fixture_bytes("alertmanager/captured_v0.25_webhook_resolved.json"))


def _lines(records: list[dict]) -> list[tuple[int, bytes]]:
    return list(enumerate((orjson.dumps(r) for r in records), 1))


def _run(records: list[dict], tmp_path: Path, strict: bool = False, **route: object):
    config = base_config(tmp_path)
    config["routes"][0].update(route)
    settings = validate_settings(config)
    events: list[dict] = []
    summary = replay(_lines(records), build_engine(settings), build_sources(settings), events.append,
                     start=1_700_000_000.0, strict=strict, drain=60)
    return events, summary


def test_stream_gives_storm_events(tmp_path: Path) -> None:
    """Open is followed by a page; the resolve comes last; keys follow the storm alert-key contract."""
    records = [{"at": 0, "source": "am", "body": FIRING}, {"at": 5.5, "source": "am", "body": RESOLVED_ONE},
               {"at": 9, "source": "am", "body": RESOLVED}]
    events, summary = _run(records, tmp_path)
    assert [e["action"] for e in events] == ["open", "page", "update", "resolve"]
    assert events[0]["at"] == 0 and events[-1]["at"] == 9
    first = FIRING["alerts"][0]
    assert f"am:{first['fingerprint']}:{first['startsAt']}" in events[0]["alert_keys"]
    assert set(events[0]) == {"incident_id", "action", "at", "priority", "pool", "alert_keys"}
    assert summary.applied == 3 and summary.pages == 1


def test_group_wait_uses_the_recorded_clock(tmp_path: Path) -> None:
    """With group_wait 30 s the page is stamped 30 s after the first delivery, not at replay time."""
    events, _ = _run([{"at": 100, "source": "am", "body": FIRING}], tmp_path, group_wait="30s")
    assert [(e["action"], e["at"]) for e in events] == [("open", 130), ("page", 130)]


BAD_LINES = [
    pytest.param({"at": 1, "source": "nope", "body": FIRING}, "unknown_source", id="unknown-source"),
    pytest.param({"at": 1, "source": "am", "body": {"x": 1}}, "rejected:am", id="rejected-by-source"),
    pytest.param({"source": "am", "body": FIRING}, "invalid_line", id="missing-at"),
    pytest.param({"at": "yesterday", "source": "am", "body": FIRING}, "invalid_line", id="bad-at"),
]


@pytest.mark.parametrize(("record", "reason"), BAD_LINES)
def test_bad_lines_are_counted_and_skipped(tmp_path: Path, record: dict, reason: str) -> None:
    """A line that cannot be replayed is counted under its reason and skipped; --strict stops."""
    events, summary = _run([record, {"at": 2, "source": "am", "body": FIRING}], tmp_path)
    assert summary.skipped == {reason: 1}
    assert summary.applied == 1 and events
    with pytest.raises(ReplayError):
        _run([record], tmp_path, strict=True)


def test_rfc3339_times_are_accepted(tmp_path: Path) -> None:
    """`at` may be an RFC 3339 time instead of seconds."""
    events, summary = _run([{"at": "2026-11-23T18:22:10Z", "source": "am", "body": FIRING}], tmp_path)
    assert summary.applied == 1 and events[0]["action"] == "open"


def test_cli_replays_gzip_to_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`alertbridge replay` reads .jsonl.gz, writes events and prints a summary with the skips."""
    import yaml

    stream = tmp_path / "stream.jsonl.gz"
    with gzip.open(stream, "wb") as handle:
        handle.write(orjson.dumps({"at": 0, "source": "am", "body": FIRING}) + b"\n")
        handle.write(orjson.dumps({"at": 1, "source": "ghost", "body": {}}) + b"\n")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(base_config(tmp_path)))
    out = tmp_path / "events.jsonl"
    assert main(["replay", str(stream), "--config", str(config), "--out", str(out)]) == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["action"] for e in events] == ["open", "page"]
    err = capsys.readouterr().err
    assert "replayed 2 lines" in err and "unknown_source: 1" in err
    assert main(["replay", str(stream), "--config", str(config), "--out", str(out), "--strict"]) == 2


def test_replay_is_deterministic(tmp_path: Path) -> None:
    """Two replays of the same stream give byte-identical events."""
    records = [{"at": i * 3, "source": "am", "body": b} for i, b in enumerate([FIRING, RESOLVED_ONE, RESOLVED])]
    assert _run(records, tmp_path)[0] == _run(records, tmp_path)[0]
