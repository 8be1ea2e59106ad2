"""sinks/log.py: one JSON line per action on stdout (or stderr), always delivered."""

from __future__ import annotations

import io

import orjson
import pytest

from bridge.model import ActionKind
from bridge.plugins import Outcome, OutcomeKind
from sinks.log import LogSink, LogSinkConfig
from tests.sinks.conftest import ALL_KINDS, deliver, make_action


def log_sink(**fields: object) -> LogSink:
    return LogSink(LogSinkConfig.model_validate({"name": "audit", "type": "log", **fields}))


@ALL_KINDS
def test_each_action_is_one_json_line(capsys: pytest.CaptureFixture[str], kind: ActionKind) -> None:
    """An action becomes exactly one stdout line: JSON with the documented keys."""
    action = make_action(kind)
    assert deliver(log_sink(), action) == Outcome.delivered()
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert len(lines) == 1 and out.endswith("\n")
    assert orjson.loads(lines[0]) == {
        "sink": "audit",
        "action": kind.value,
        "idempotency_key": action.idempotency_key("audit"),
        "reason": action.reason,
        "at": "2024-03-04T09:12:03.123Z",
        "incident": action.incident.to_dict(),
    }


def test_stream_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """With `stream: stderr` the line goes to stderr and stdout stays empty."""
    deliver(log_sink(stream="stderr"), make_action())
    out, err = capsys.readouterr()
    assert out == ""
    assert orjson.loads(err)["sink"] == "audit"


def test_broken_stream_is_failed_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """A closed stdout is a failed Outcome, never an exception."""
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr("sys.stdout", closed)
    outcome = deliver(log_sink(), make_action())
    assert outcome.kind is OutcomeKind.FAILED
    assert "stdout" in outcome.reason


def test_unknown_stream_is_rejected() -> None:
    """Only stdout and stderr are accepted streams."""
    with pytest.raises(ValueError, match="stream"):
        log_sink(stream="file")
