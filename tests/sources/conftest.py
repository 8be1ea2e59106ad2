"""Shared helpers for the source tests: real vendor payloads from tests/fixtures/, edited copies."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.errors import PayloadInvalid
from bridge.plugins import Parsed

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def load_fixture(relpath: str) -> bytes:
    """The bytes of `tests/fixtures/<relpath>`, exactly as the vendor sent or documented them."""
    return (FIXTURES / relpath).read_bytes()


def load_json_fixture(relpath: str) -> Any:
    """A fixture decoded (a fresh copy every call, so tests may edit it)."""
    return orjson.loads(load_fixture(relpath))


def edited(relpath: str, *edits: tuple[tuple[str | int, ...], Any]) -> bytes:
    """A fixture with values replaced at key paths (value `DELETE` removes the key), re-encoded."""
    doc = copy.deepcopy(load_json_fixture(relpath))
    for path, value in edits:
        target = doc
        for step in path[:-1]:
            target = target[step]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return orjson.dumps(doc)


DELETE = object()


def parse_error(source: Any, body: bytes, now: float = 0.0) -> PayloadInvalid:
    """The PayloadInvalid that `source.parse` raises for `body` (fails the test if it returns)."""
    with pytest.raises(PayloadInvalid) as info:
        source.parse(body, {}, now)
    return info.value


def parse_ok(source: Any, body: bytes, now: float) -> Parsed:
    """`source.parse(body)` with no headers at the fixed `now`."""
    return source.parse(body, {"Content-Type": "application/json"}, now)
