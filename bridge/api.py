"""The REST API under /api/v1: incidents, alerts, dead letters, silences, maintenance, signed links,
Slack interactivity, the on-call report, and its OpenAPI document."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from bridge.errors import NotFound, PayloadInvalid
from bridge.keys import RUNTIME
from bridge.links import PAGE_HEADERS, LinkInvalid, confirmation_page, result_page
from bridge.log import get_logger
from bridge.model import AlertStatus, IncidentStatus, format_time
from bridge.openapi import openapi_document
from bridge.runtime import Conflict
from bridge.store.base import Delivery

__all__ = ["add_routes"]

log = get_logger("alertbridge.http")

PREFIX = "/api/v1"
_MAX_LIMIT = 1000


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/incidents", list_incidents)
    r.add_get(f"{PREFIX}/incidents/{{id}}", get_incident)
    r.add_post(f"{PREFIX}/incidents/{{id}}/acknowledge", acknowledge)
    r.add_post(f"{PREFIX}/incidents/{{id}}/resolve", resolve)
    r.add_get(f"{PREFIX}/alerts", list_alerts)
    r.add_get(f"{PREFIX}/dead-letters", list_dead_letters)
    r.add_post(f"{PREFIX}/dead-letters/{{id}}/retry", retry_dead_letter)
    r.add_get(f"{PREFIX}/silences", list_silences)
    r.add_post(f"{PREFIX}/silences", create_silence)
    r.add_get(f"{PREFIX}/silences/{{id}}", get_silence)
    r.add_delete(f"{PREFIX}/silences/{{id}}", expire_silence)
    r.add_get(f"{PREFIX}/maintenance", list_windows)
    r.add_post(f"{PREFIX}/maintenance", create_window)
    r.add_get(f"{PREFIX}/maintenance/{{id}}", get_window)
    r.add_delete(f"{PREFIX}/maintenance/{{id}}", delete_window)
    r.add_get("/api/v2/silences", am_list_silences)
    r.add_post("/api/v2/silences", am_post_silence)
    r.add_get("/api/v2/silence/{id}", am_get_silence)
    r.add_delete("/api/v2/silence/{id}", am_delete_silence)
    r.add_get(f"{PREFIX}/schedules", list_schedules)
    r.add_post(f"{PREFIX}/schedules/{{name}}/overrides", create_override)
    r.add_delete(f"{PREFIX}/schedules/{{name}}/overrides/{{id}}", delete_override)
    r.add_get(f"{PREFIX}/links/{{token}}", link_page)
    r.add_post(f"{PREFIX}/links/{{token}}", link_use)
    r.add_post(f"{PREFIX}/slack/actions", slack_actions)
    r.add_get(f"{PREFIX}/report", report)
    r.add_get(f"{PREFIX}/openapi.json", openapi)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _page(request: web.Request) -> tuple[int, int]:
    return (_int_param(request, "limit", 100, 1, _MAX_LIMIT), _int_param(request, "offset", 0, 0, 10**9))


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise PayloadInvalid(name, "must be an integer") from None
    if not low <= value <= high:
        raise PayloadInvalid(name, f"must be between {low} and {high}")
    return value


def _enum_param(request: web.Request, name: str, allowed: list[str]) -> str | None:
    raw = request.query.get(name)
    if raw is not None and raw not in allowed:
        raise PayloadInvalid(name, f"must be one of {', '.join(allowed)}")
    return raw


async def list_incidents(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    status = _enum_param(request, "status", [s.value for s in IncidentStatus])
    priorities = sorted({row for m in runtime.settings.priority.matrix.values() for row in m.values()})
    priority = _enum_param(request, "priority", priorities)
    pool = request.query.get("pool")
    limit, offset = _page(request)
    views = [
        v for engine in runtime.engines() for v in engine.views()
        if (status is None or v.status.value == status)
        and (priority is None or v.priority == priority)
        and (pool is None or v.pool == pool)
    ]
    views.sort(key=lambda v: (v.opened_at, v.id), reverse=True)
    items = []
    for view in views[offset:offset + limit]:
        item = view.to_dict()
        del item["alerts"]
        items.append(item)
    return _json({"total": len(views), "limit": limit, "offset": offset, "items": items})


async def get_incident(request: web.Request) -> web.Response:
    return _json(request.app[RUNTIME].incident_detail(request.match_info["id"]))


async def _actor(request: web.Request) -> str:
    if not request.can_read_body:
        return "api"
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise PayloadInvalid("body", "must be a JSON object like {\"by\": \"alice\"}") from None
    if not isinstance(body, dict):
        raise PayloadInvalid("body", "must be a JSON object")
    unknown = set(body) - {"by"}
    if unknown:
        raise PayloadInvalid(sorted(unknown)[0], "unknown field (only 'by' is accepted)")
    by = body.get("by", "api")
    if not isinstance(by, str) or not by.strip() or len(by) > 200:
        raise PayloadInvalid("by", "must be a non-empty string of at most 200 characters")
    return by.strip()


async def acknowledge(request: web.Request) -> web.Response:
    by = await _actor(request)
    return _json(await request.app[RUNTIME].acknowledge(request.match_info["id"], by))


async def resolve(request: web.Request) -> web.Response:
    by = await _actor(request)
    return _json(await request.app[RUNTIME].resolve(request.match_info["id"], by))


async def list_alerts(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    status = _enum_param(request, "status", [s.value for s in AlertStatus])
    source = request.query.get("source")
    limit, offset = _page(request)
    series = [
        (engine, s) for engine in runtime.engines() for s in engine.series.values()
        if (status is None or s.alert.status.value == status) and (source is None or s.alert.source == source)
    ]
    series.sort(key=lambda pair: (pair[1].alert.starts_at, pair[1].alert.identity), reverse=True)
    items = []
    for engine, s in series[offset:offset + limit]:
        item = s.alert.to_dict()
        item["incidents"] = list(s.incidents)
        item["held_until"] = format_time(s.hold_until) if s.hold_until is not None else None
        item["held_reason"] = s.held_reason if s.hold_until is not None else None
        item["flap"] = engine.flap_state(s.alert, engine.now)
        items.append(item)
    return _json({"total": len(series), "limit": limit, "offset": offset, "items": items})


def _delivery_dict(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "idempotency_key": d.idempotency_key,
        "sink": d.sink,
        "incident_id": d.incident_id,
        "revision": d.revision,
        "kind": d.kind,
        "state": d.state.value if hasattr(d.state, "value") else d.state,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "created_at": format_time(d.created_at),
        "updated_at": format_time(d.updated_at),
    }


async def list_dead_letters(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    limit, offset = _page(request)
    assert runtime.store is not None
    dead = await runtime.store.dead_letters(limit, offset)
    return _json({"limit": limit, "offset": offset, "items": [_delivery_dict(d) for d in dead]})


async def retry_dead_letter(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise PayloadInvalid("id", "must be a delivery id (an integer)")
    assert runtime.store is not None
    delivery = await runtime.store.get_delivery(int(raw))
    if delivery is None:
        raise NotFound(f"no delivery {raw}")
    if not await runtime.store.retry_dead(int(raw), runtime.now()):
        raise PayloadInvalid("id", f"delivery {raw} is {delivery.state}, not dead", status=409)
    if runtime.dispatcher is not None:
        runtime.dispatcher.wake()
    updated = await runtime.store.get_delivery(int(raw))
    assert updated is not None
    return _json(_delivery_dict(updated))


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_document(request.app))


async def _json_body(request: web.Request) -> Any:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as err:
        raise PayloadInvalid("body", f"invalid JSON: {err}") from None


def _invalid(err: ValueError) -> PayloadInvalid:
    """A correlator's `field: reason` ValueError as a 400 naming the field."""
    text = str(err)
    field, sep, reason = text.partition(": ")
    return PayloadInvalid(field if sep and " " not in field else "body", reason if sep else text)


async def list_silences(request: web.Request) -> web.Response:
    state = _enum_param(request, "state", ["pending", "active", "expired"])
    items = request.app[RUNTIME].silences(state)
    return _json({"total": len(items), "items": items})


async def _create(request: web.Request, create: Any) -> web.Response:
    """POST of a new silence or window: 201 with it, or 400 naming the field (nothing journaled)."""
    body = await _json_body(request)
    try:
        created = await create(body)
    except ValueError as err:
        raise _invalid(err) from None
    return _json(created, status=201)


async def create_silence(request: web.Request) -> web.Response:
    return await _create(request, request.app[RUNTIME].create_silence)


async def get_silence(request: web.Request) -> web.Response:
    return _json(request.app[RUNTIME].silence(request.match_info["id"]))


async def expire_silence(request: web.Request) -> web.Response:
    return _json(await request.app[RUNTIME].expire_silence(request.match_info["id"]))


async def list_windows(request: web.Request) -> web.Response:
    items = request.app[RUNTIME].windows()
    return _json({"total": len(items), "items": items})


async def create_window(request: web.Request) -> web.Response:
    return await _create(request, request.app[RUNTIME].create_window)


async def get_window(request: web.Request) -> web.Response:
    return _json(request.app[RUNTIME].window(request.match_info["id"]))


async def delete_window(request: web.Request) -> web.Response:
    await request.app[RUNTIME].delete_window(request.match_info["id"])
    return web.Response(status=204)


# ----------------------------------------------- Alertmanager API v2 silences (amtool, Grafana, ...)


def _am_error(status: int, code: int, field: str, reason: str) -> web.Response:
    message = f"{field}: {reason}" if field else reason
    return _json({"code": code, "message": message, "field": field, "reason": reason}, status=status)


async def am_list_silences(request: web.Request) -> web.Response:
    return _json(request.app[RUNTIME].silences_alertmanager())


async def am_post_silence(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as err:
        return _am_error(400, 400, "body", f"invalid JSON: {err}")
    if isinstance(body, dict) and not body.get("matchers"):
        return _am_error(422, 612, "matchers", "matchers in body should have at least 1 items")
    try:
        silence_id = await request.app[RUNTIME].post_silence_alertmanager(body)
    except ValueError as err:
        invalid = _invalid(err)
        return _am_error(400, 400, invalid.field, invalid.reason)
    return _json({"silenceID": silence_id})


async def am_get_silence(request: web.Request) -> web.Response:
    return _json(request.app[RUNTIME].silence_alertmanager(request.match_info["id"]))


async def am_delete_silence(request: web.Request) -> web.Response:
    await request.app[RUNTIME].expire_silence(request.match_info["id"])
    return web.Response(status=200)


# ------------------------------------------------------------------------------ on-call schedules

async def list_schedules(request: web.Request) -> web.Response:
    return _json({"items": request.app[RUNTIME].schedules()})


async def create_override(request: web.Request) -> web.Response:
    body = await _json_body(request)
    try:
        created = await request.app[RUNTIME].create_override(request.match_info["name"], body)
    except ValueError as err:
        raise _invalid(err) from None
    return _json(created, status=201)


async def delete_override(request: web.Request) -> web.Response:
    await request.app[RUNTIME].delete_override(request.match_info["name"], request.match_info["id"])
    return web.Response(status=204)


# ------------------------------------------------------------------------------ signed links, Slack

def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, headers=PAGE_HEADERS)


def _refused(request: web.Request, err: LinkInvalid) -> web.Response:
    request.app[RUNTIME].metrics.link_refusals.labels(err.reason.value).inc()
    log.info("link refused", reason=err.reason.value)
    return _html(result_page(f"This link cannot be used: {err.reason.value}.", ok=False), 403)


async def link_page(request: web.Request) -> web.Response:
    """GET never acts (mail scanners and chat unfurlers fetch links): it asks to confirm with a POST."""
    runtime = request.app[RUNTIME]
    try:
        claim, incident = runtime.check_link(request.match_info["token"])
    except LinkInvalid as err:
        return _refused(request, err)
    if incident.status is IncidentStatus.RESOLVED or (
            claim.action == "acknowledge" and incident.status is not IncidentStatus.TRIGGERED):
        return _html(result_page(f"Incident {incident.id} is already {incident.status.value}.", ok=False), 409)
    return _html(confirmation_page(claim, incident.view().title, request.path))


async def link_use(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    try:
        claim, detail = await runtime.use_link(request.match_info["token"])
    except LinkInvalid as err:
        return _refused(request, err)
    except Conflict as err:
        return _html(result_page(f"Nothing done: {err.reason}.", ok=False), 409)
    done = "acknowledged" if claim.action == "acknowledge" else "resolved"
    log.info("link used", incident=claim.incident_id, action=claim.action)
    return _html(result_page(f"Incident {detail['id']} {done}: {detail['title']}", ok=True))


async def slack_actions(request: web.Request) -> web.Response:
    body = await request.read()
    return _json(await request.app[RUNTIME].slack_action(request.headers, body))


async def report(request: web.Request) -> web.Response:
    from bridge.plugins import parse_duration
    from bridge.report import build_report

    runtime = request.app[RUNTIME]
    try:
        since = parse_duration(request.query.get("since", "7d"))
    except ValueError as err:
        raise PayloadInvalid("since", str(err)) from None
    until = runtime.now()
    incidents = [i for engine in runtime.engines() for i in engine.incidents.values()]
    return _json(build_report(incidents, until - since, until).to_dict())
