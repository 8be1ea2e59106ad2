"""Log sink: writes each incident action as one JSON line on stdout (or stderr).

Request: none; one line per action, written with orjson and flushed at once:

    {"sink": "<sink name>", "action": "open" | "update" | "acknowledge" | "resolve",
     "idempotency_key": "<incident id>:<sink name>:<revision>", "reason": "<why, may be empty>",
     "at": "2024-03-04T09:12:03.123Z", "incident": { IncidentView.to_dict() }}

Idempotency key: carried in the line, so a reader can drop repeats; the sink itself does not dedup.
Retries: nothing. A write is always delivered, unless the stream itself is broken (closed,
broken pipe), which is failed without retry. The stream is looked up when writing, so a redirected
`sys.stdout` (pytest's capture, a supervisor) is honoured.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar, Literal, TextIO

import orjson
from pydantic import Field

from bridge.model import Action, format_time
from bridge.plugins import Outcome, SinkConfig, register_sink

__all__ = ["LogSink", "LogSinkConfig", "render"]


class LogSinkConfig(SinkConfig):
    """Write every incident action as a JSON line to the process's stdout or stderr."""

    type: Literal["log"] = Field(description="Selects this sink: `log`.")
    stream: Literal["stdout", "stderr"] = Field("stdout", description="Where the JSON lines are written.")


def render(action: Action, idempotency_key: str, sink: str) -> bytes:
    """One JSON line (newline included) for `action`, as described in the module docstring."""
    line: dict[str, Any] = {
        "sink": sink,
        "action": action.kind.value,
        "idempotency_key": idempotency_key,
        "reason": action.reason,
        "at": format_time(action.at),
        "incident": action.incident.to_dict(),
    }
    return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)


@register_sink
class LogSink:
    """Delivers actions as JSON lines to a standard stream."""

    type_name: ClassVar[str] = "log"
    config_model: ClassVar[type[SinkConfig]] = LogSinkConfig

    def __init__(self, config: LogSinkConfig) -> None:
        self.name = config.name
        self.config = config

    def _stream(self) -> TextIO:
        return sys.stderr if self.config.stream == "stderr" else sys.stdout

    async def deliver(self, action: Action, idempotency_key: str) -> Outcome:
        try:
            line = render(action, idempotency_key, self.name).decode()
            stream = self._stream()
            stream.write(line)
            stream.flush()
        except (OSError, ValueError) as exc:  # closed stream, broken pipe: retrying will not help
            return Outcome.failed(f"cannot write to {self.config.stream}: {type(exc).__name__}: {exc}")
        except Exception as exc:  # a sink never raises: anything else is a failed delivery, and a bug
            return Outcome.failed(f"unexpected error: {type(exc).__name__}: {exc}")
        return Outcome.delivered()

    async def close(self) -> None:
        return None
