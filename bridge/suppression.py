"""Silences, maintenance windows and inhibit rules as people write them (config, catalog, API).

Reads the human forms (RFC 3339 times, durations, `name=value` matchers) into the correlators'
objects (`correlators/silences.py`, `maintenance.py`, `inhibit.py`), with errors that name the
field, and writes them back for the API. The engine's copies change only through journal entries,
so a restart or a replay rebuilds the same silences and windows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.model import format_time, parse_time
from bridge.plugins import parse_duration
from correlators.inhibit import InhibitRule
from correlators.maintenance import MaintenanceWindow
from correlators.mute import matcher_to_dict
from correlators.silences import Silence, SilenceStore

__all__ = [
    "inhibit_rule",
    "maintenance_window",
    "silence_from_request",
    "silence_view",
    "window_from_catalog",
    "window_view",
]

_WINDOW_TIMES = ("start", "end", "dtstart", "until")


def _time(value: Any, field: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        parsed = parse_time(value)
    except (ValueError, TypeError):
        parsed = None
    if parsed is None:
        raise ValueError(f"{field}: must be an RFC 3339 time (e.g. 2026-11-23T02:00:00Z)")
    return parsed


def maintenance_window(data: Mapping[str, Any], default_id: str) -> MaintenanceWindow:
    """A window from config or API form: RFC 3339 times, `duration` as `2h`, matchers as text."""
    if not isinstance(data, Mapping):
        raise ValueError("must be an object")
    values = dict(data)
    values.setdefault("id", default_id)
    for name in _WINDOW_TIMES:
        if values.get(name) is not None:
            values[name] = _time(values[name], name)
    if values.get("duration") is not None:
        try:
            values["duration"] = parse_duration(values["duration"])
        except ValueError as err:
            raise ValueError(f"duration: {err}") from None
    if "reason" in values:  # the catalog's word for the comment
        values["comment"] = values.pop("reason") or values.get("comment", "")
    return MaintenanceWindow.from_dict(values)


def window_from_catalog(data: Mapping[str, Any], index: int) -> MaintenanceWindow:
    return maintenance_window(data, f"catalog-{index + 1}")


def window_view(window: MaintenanceWindow, now: float) -> dict[str, Any]:
    body = window.to_dict()
    for name in _WINDOW_TIMES:
        if body.get(name) is not None:
            body[name] = format_time(body[name])
    active = window.active(now)
    upcoming = window.next_occurrence(now)
    body["active"] = active is not None
    body["current"] = _occurrence(active)
    body["next"] = _occurrence(upcoming)
    return body


def _occurrence(found: Any) -> dict[str, str] | None:
    if found is None:
        return None
    start, end = (found.start, found.end) if hasattr(found, "start") else found
    return {"start": format_time(start), "end": format_time(end)}


def inhibit_rule(data: Mapping[str, Any]) -> InhibitRule:
    return InhibitRule.from_dict(data)


_REQUEST_FIELDS = {"matchers", "starts_at", "ends_at", "duration", "created_by", "comment"}


def silence_from_request(body: Any, silence_id: str, now: float) -> Silence:
    """A new silence from the API's form; ValueError names the field."""
    if not isinstance(body, dict):
        raise ValueError("body: must be a JSON object")
    unknown = sorted(set(body) - _REQUEST_FIELDS)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field")
    starts_at = _time(body["starts_at"], "starts_at") if body.get("starts_at") is not None else now
    if body.get("ends_at") is not None and body.get("duration") is not None:
        raise ValueError("duration: give ends_at or duration, not both")
    if body.get("ends_at") is not None:
        ends_at = _time(body["ends_at"], "ends_at")
    elif body.get("duration") is not None:
        try:
            ends_at = starts_at + parse_duration(body["duration"])
        except ValueError as err:
            raise ValueError(f"duration: {err}") from None
    else:
        raise ValueError("ends_at: required (or duration)")
    for name in ("matchers", "created_by", "comment"):
        if name not in body:
            raise ValueError(f"{name}: required")
    return Silence.from_dict({"id": silence_id, "matchers": body["matchers"], "starts_at": starts_at,
                              "ends_at": ends_at, "created_by": body["created_by"], "comment": body["comment"],
                              "created_at": now, "updated_at": now})


def silence_view(store: SilenceStore, silence: Silence, now: float, unused_after: float) -> dict[str, Any]:
    usage = store.usage(silence.id)
    unused_ids = {s.id for s in store.unused(now, unused_after)}
    return {
        "id": silence.id,
        "matchers": [matcher_to_dict(m) for m in silence.matchers],
        "matchers_text": [str(m) for m in silence.matchers],
        "starts_at": format_time(silence.starts_at),
        "ends_at": format_time(silence.ends_at),
        "state": silence.state(now).value,
        "created_by": silence.created_by,
        "comment": silence.comment,
        "created_at": format_time(silence.created_at) if silence.created_at else None,
        "matched": usage.matches if usage else 0,
        "muting_now": usage.firing if usage else 0,
        "last_matched_at": format_time(usage.last_matched_at) if usage and usage.last_matched_at else None,
        "unused": silence.id in unused_ids,
    }
