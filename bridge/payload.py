"""Reading decoded JSON payloads: the kind of a value as error messages name it, and typed fields
that raise `PayloadInvalid` naming the field. Shared by the sources and the Slack interactivity
endpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.errors import PayloadInvalid

__all__ = ["kind", "optional_str"]


def kind(value: Any) -> str:
    """The JSON kind of a decoded value, as error messages name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def optional_str(obj: Mapping[str, Any], key: str, field: str) -> str | None:
    """`obj[key]` when it is a string; None when absent or null; PayloadInvalid for other kinds."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadInvalid(field, f"must be a string, got {kind(value)}")
    return value
