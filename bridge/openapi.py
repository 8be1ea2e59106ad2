"""The OpenAPI 3.1 document served at /api/v1/openapi.json.

Written by hand next to the routes it describes; a test checks that every route the app serves is
documented here and that every documented operation is served.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

__all__ = ["openapi_document"]

_ERROR = {"$ref": "#/components/schemas/Error"}


def _resp(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema}}
    return out


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Bad input; the body names the field and the reason.", 401: "Missing or wrong credentials.",
            404: "Not found.", 409: "Conflicts with the current state.", 413: "Body over the size limit.",
            415: "Content-Type is not JSON.", 422: "Alertmanager-compatible validation error.",
            503: "The store is unavailable; retry later (Retry-After)."}
    return {str(c): _resp(text[c], _ERROR) for c in codes}


def _param(name: str, where: str, schema: dict[str, Any], description: str, required: bool = False
           ) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path", "schema": schema,
            "description": description}


_LIMIT = _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "Page size.")
_OFFSET = _param("offset", "query", {"type": "integer", "minimum": 0, "default": 0}, "Items to skip.")
_ID = _param("id", "path", {"type": "string"}, "Incident id.")
_SID = _param("id", "path", {"type": "string"}, "Silence id.")
_WID = _param("id", "path", {"type": "string"}, "Maintenance window id.")
_ACTOR_BODY = {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": False,
    "properties": {"by": {"type": "string", "maxLength": 200, "description": "Who did it."}}}}}}

_INGEST_BODY = {"required": True, "content": {"application/json": {"schema": {
    "description": "The monitoring tool's own webhook payload."}}}}


def _ingest_op(summary: str, ok: str, codes: tuple[int, ...]) -> dict[str, Any]:
    return {"post": {"summary": summary, "tags": ["ingest"], "requestBody": _INGEST_BODY,
                     "responses": {ok: _resp("Accepted: journaled and applied."), **_errors(*codes)}}}


_COMPAT: dict[str, dict[str, Any]] = {
    "/api/v2/alerts": _ingest_op("Alertmanager API v2 compatible alert list (Prometheus can post here).",
                                 "200", (400, 401, 413, 415, 422, 503)),
    "/v2/enqueue": _ingest_op("PagerDuty Events API v2 compatible event.", "202", (400, 401, 413, 415, 503)),
}

_PATHS: dict[str, dict[str, Any]] = {
    "/v1/sources/{name}": {"post": {
        "summary": "Post a monitoring tool's webhook to the source configured under `name`.",
        "tags": ["ingest"],
        "parameters": [_param("name", "path", {"type": "string"}, "Source name from the config.")],
        "requestBody": _INGEST_BODY,
        "responses": {"200": _resp("Accepted: journaled and applied."),
                      "202": _resp("Accepted (sources whose vendor answers 202)."),
                      **_errors(400, 401, 404, 413, 415, 503)}}},
    "/api/v1/incidents": {"get": {
        "summary": "List incidents, newest first.", "tags": ["incidents"],
        "parameters": [
            _param("status", "query", {"type": "string", "enum": ["triggered", "acknowledged", "resolved"]},
                   "Only this status."),
            _param("priority", "query", {"type": "string"}, "Only this priority (P1..P5)."),
            _param("pool", "query", {"type": "string"}, "Only this resolver pool."),
            _LIMIT, _OFFSET],
        "responses": {"200": _resp("A page of incidents (without their alerts).",
                                   {"$ref": "#/components/schemas/IncidentPage"}), **_errors(400)}}},
    "/api/v1/incidents/{id}": {"get": {
        "summary": "One incident with its alerts and timeline.", "tags": ["incidents"], "parameters": [_ID],
        "responses": {"200": _resp("The incident.", {"$ref": "#/components/schemas/Incident"}),
                      **_errors(404)}}},
    "/api/v1/incidents/{id}/acknowledge": {"post": {
        "summary": "Acknowledge an incident (reaches the sinks).", "tags": ["incidents"], "parameters": [_ID],
        "requestBody": _ACTOR_BODY,
        "responses": {"200": _resp("The incident after the acknowledge.",
                                   {"$ref": "#/components/schemas/Incident"}), **_errors(400, 404, 409, 503)}}},
    "/api/v1/incidents/{id}/resolve": {"post": {
        "summary": "Resolve an incident by hand (reaches the sinks).", "tags": ["incidents"],
        "parameters": [_ID], "requestBody": _ACTOR_BODY,
        "responses": {"200": _resp("The incident after the resolve.",
                                   {"$ref": "#/components/schemas/Incident"}), **_errors(400, 404, 503)}}},
    "/api/v1/alerts": {"get": {
        "summary": "List alert series the engine holds.", "tags": ["alerts"],
        "parameters": [
            _param("status", "query", {"type": "string", "enum": ["firing", "resolved"]}, "Only this status."),
            _param("source", "query", {"type": "string"}, "Only this source."), _LIMIT, _OFFSET],
        "responses": {"200": _resp("A page of alerts.", {"type": "object"}), **_errors(400)}}},
    "/api/v1/dead-letters": {"get": {
        "summary": "Deliveries that failed for good, newest first.", "tags": ["deliveries"],
        "parameters": [_LIMIT, _OFFSET],
        "responses": {"200": _resp("A page of dead letters.", {"type": "object"}), **_errors(400)}}},
    "/api/v1/dead-letters/{id}/retry": {"post": {
        "summary": "Put a dead letter back in the outbox, due now.", "tags": ["deliveries"],
        "parameters": [_param("id", "path", {"type": "integer"}, "Delivery id.")],
        "responses": {"200": _resp("The delivery, pending again.", {"type": "object"}),
                      **_errors(400, 404, 409)}}},
    "/api/v1/silences": {
        "get": {"summary": "Silences with their state, use, and whether they matched nothing for long.",
                "tags": ["silences"],
                "parameters": [_param("state", "query", {"type": "string", "enum": ["pending", "active", "expired"]},
                                      "Only this state.")],
                "responses": {"200": _resp("The silences.", {"type": "object"}), **_errors(400)}},
        "post": {"summary": "Create a silence: matchers, starts_at, ends_at or duration, created_by, comment.",
                 "tags": ["silences"],
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "$ref": "#/components/schemas/SilenceRequest"}}}},
                 "responses": {"201": _resp("The silence.", {"type": "object"}), **_errors(400, 503)}}},
    "/api/v1/silences/{id}": {
        "get": {"summary": "One silence.", "tags": ["silences"], "parameters": [_SID],
                "responses": {"200": _resp("The silence.", {"type": "object"}), **_errors(404)}},
        "delete": {"summary": "Expire a silence now (it stays listed as expired).", "tags": ["silences"],
                   "parameters": [_SID],
                   "responses": {"200": _resp("The expired silence.", {"type": "object"}), **_errors(404, 503)}}},
    "/api/v1/maintenance": {
        "get": {"summary": "Maintenance windows (config, catalog and API), with current and next occurrence.",
                "tags": ["maintenance"], "responses": {"200": _resp("The windows.", {"type": "object"})}},
        "post": {"summary": "Declare a maintenance window: services | hosts | matchers, start and end, or rrule | "
                            "cron with duration and timezone.", "tags": ["maintenance"],
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                 "responses": {"201": _resp("The window.", {"type": "object"}), **_errors(400, 409, 503)}}},
    "/api/v1/maintenance/{id}": {
        "get": {"summary": "One maintenance window.", "tags": ["maintenance"], "parameters": [_WID],
                "responses": {"200": _resp("The window.", {"type": "object"}), **_errors(404)}},
        "delete": {"summary": "Remove a maintenance window.", "tags": ["maintenance"], "parameters": [_WID],
                   "responses": {"204": _resp("Removed."), **_errors(404, 503)}}},
    "/api/v2/silences": {
        "get": {"summary": "Alertmanager API v2: list silences (GettableSilence; amtool works).",
                "tags": ["alertmanager-compatible"], "responses": {"200": _resp("Silences.", {"type": "array"})}},
        "post": {"summary": "Alertmanager API v2: create or update a silence (PostableSilence).",
                 "tags": ["alertmanager-compatible"],
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                 "responses": {"200": _resp("{silenceID}.", {"type": "object"}), **_errors(400, 404, 422)}}},
    "/api/v2/silence/{id}": {
        "get": {"summary": "Alertmanager API v2: one silence.", "tags": ["alertmanager-compatible"],
                "parameters": [_SID], "responses": {"200": _resp("The silence.", {"type": "object"}),
                                                    **_errors(404)}},
        "delete": {"summary": "Alertmanager API v2: expire a silence.", "tags": ["alertmanager-compatible"],
                   "parameters": [_SID], "responses": {"200": _resp("Expired."), **_errors(404)}}},
    "/api/v1/schedules": {"get": {
        "summary": "On-call schedules: who is on call now, and the overrides added through the API.",
        "tags": ["pools"], "responses": {"200": _resp("The schedules.", {"type": "object"})}}},
    "/api/v1/schedules/{name}/overrides": {"post": {
        "summary": "Cover a shift or swap one (journaled; assignment and escalation follow it).", "tags": ["pools"],
        "parameters": [_param("name", "path", {"type": "string"}, "Schedule name.")],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False,
            "required": ["member", "start", "end", "created_by", "comment"],
            "properties": {"member": {"type": "string"}, "start": {"type": "string", "format": "date-time"},
                           "end": {"type": "string", "format": "date-time"},
                           "replaces": {"type": "string", "description": "Only this member's time (a swap)."},
                           "created_by": {"type": "string"}, "comment": {"type": "string"}}}}}},
        "responses": {"201": _resp("The override.", {"type": "object"}), **_errors(400, 404, 503)}}},
    "/api/v1/schedules/{name}/overrides/{id}": {"delete": {
        "summary": "Remove an override added through the API.", "tags": ["pools"],
        "parameters": [_param("name", "path", {"type": "string"}, "Schedule name."),
                       _param("id", "path", {"type": "string"}, "Override id.")],
        "responses": {"204": {"description": "Removed."}, **_errors(404, 503)}}},
    "/api/v1/links/{token}": {
        "get": {
            "summary": "A signed acknowledge/resolve link from a notification: shows a confirmation page (GET never "
                       "acts: mail scanners and unfurlers fetch links).", "tags": ["links"],
            "parameters": [_param("token", "path", {"type": "string"}, "The signed token.")],
            "responses": {"200": {"description": "Confirmation page (HTML) with a form that POSTs back."},
                          "403": {"description": "Forged, expired or already used link (HTML)."},
                          "409": {"description": "The incident is already acknowledged or resolved (HTML)."}}},
        "post": {
            "summary": "Use a signed link: acknowledge or resolve its incident, once, without a login.",
            "tags": ["links"],
            "parameters": [_param("token", "path", {"type": "string"}, "The signed token.")],
            "responses": {"200": {"description": "Done (HTML result page)."},
                          "403": {"description": "Forged, expired or already used link: nothing changed (HTML)."},
                          "409": {"description": "The incident is already acknowledged or resolved (HTML)."},
                          "503": _resp("The store is unavailable; retry later.", _ERROR)}}},
    "/api/v1/slack/actions": {"post": {
        "summary": "Slack interactivity Request URL: Acknowledge/Resolve button clicks (Slack-signed).",
        "tags": ["links"],
        "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "properties": {"payload": {"type": "string", "description": "block_actions JSON"}},
            "required": ["payload"]}}}},
        "responses": {"200": _resp("An ephemeral message for the user who clicked.", {"type": "object"}),
                      **_errors(400, 401, 404, 503)}}},
    "/api/v1/report": {"get": {
        "summary": "The on-call report: per pool and priority MTTA, MTTR, SLA compliance, escalations, repeat "
                   "rate; pages per person per day.", "tags": ["pools"],
        "parameters": [_param("since", "query", {"type": "string", "default": "7d"}, "Period, back from now.")],
        "responses": {"200": _resp("The report.", {"type": "object"}), **_errors(400)}}},
    "/api/v1/openapi.json": {"get": {"summary": "This document.", "tags": ["meta"],
                                     "responses": {"200": _resp("OpenAPI 3.1 document.", {"type": "object"})}}},
    "/healthz": {"get": {"summary": "Liveness.", "tags": ["meta"], "responses": {"200": _resp("Alive.")}}},
    "/readyz": {"get": {"summary": "Readiness: the store is open and state is rebuilt.", "tags": ["meta"],
                        "responses": {"200": _resp("Ready."), "503": _resp("Not ready.")}}},
    "/metrics": {"get": {"summary": "Prometheus metrics.", "tags": ["meta"],
                         "responses": {"200": _resp("Prometheus text format.")}}},
}

_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string"}, "field": {"type": "string", "description": "Path of the bad field."},
        "reason": {"type": "string"}}},
    "Alert": {"type": "object", "properties": {
        "source": {"type": "string"}, "fingerprint": {"type": "string"}, "key": {"type": "string"},
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "severity": {"type": "string", "enum": ["critical", "warning", "info", "none"]},
        "summary": {"type": "string"}, "description": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "service": {"type": ["string", "null"]}, "resource": {"type": ["string", "null"]},
        "starts_at": {"type": "number"}, "ends_at": {"type": ["number", "null"]},
        "links": {"type": "array", "items": {"type": "object"}}}},
    "TimelineEntry": {"type": "object", "properties": {
        "at": {"type": "string", "format": "date-time"}, "event": {"type": "string"},
        "by": {"type": "string", "description": "The stage, rule or person that did it."},
        "reason": {"type": "string"}, "detail": {"type": "object"}}},
    "Incident": {"type": "object", "properties": {
        "id": {"type": "string"}, "key": {"type": "string"}, "route": {"type": "string"},
        "status": {"type": "string", "enum": ["triggered", "acknowledged", "resolved"]},
        "priority": {"type": "string"}, "priority_reason": {"type": "string"},
        "pool": {"type": ["string", "null"]}, "title": {"type": "string"}, "revision": {"type": "integer"},
        "opened_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "resolved_at": {"type": ["string", "null"], "format": "date-time"},
        "acknowledged_by": {"type": ["string", "null"]},
        "group_labels": {"type": "object"}, "alerts_firing": {"type": "integer"},
        "alerts": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}},
        "timeline": {"type": "array", "items": {"$ref": "#/components/schemas/TimelineEntry"}}}},
    "SilenceRequest": {"type": "object", "required": ["matchers", "created_by", "comment"],
                       "additionalProperties": False, "properties": {
        "matchers": {"type": "array", "minItems": 1, "items": {"oneOf": [
            {"type": "string", "description": "name=value, name!=value, name=~regex, name!~regex"},
            {"type": "object", "properties": {"name": {"type": "string"}, "op": {"type": "string"},
                                              "value": {"type": "string"}}}]}},
        "starts_at": {"type": "string", "format": "date-time"},
        "ends_at": {"type": "string", "format": "date-time"},
        "duration": {"type": "string", "description": "e.g. 2h (instead of ends_at)"},
        "created_by": {"type": "string"}, "comment": {"type": "string"}}},
    "IncidentPage": {"type": "object", "properties": {
        "total": {"type": "integer"}, "limit": {"type": "integer"}, "offset": {"type": "integer"},
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Incident"}}}},
}


def openapi_document(app: web.Application | None = None) -> dict[str, Any]:
    """The document for this app: the fixed routes plus the compatibility paths it mounts."""
    from bridge import __version__

    paths = dict(_PATHS)
    if app is not None:
        served = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
        paths.update({p: op for p, op in _COMPAT.items() if p in served})
    else:
        paths.update(_COMPAT)
    return {
        "openapi": "3.1.0",
        "info": {"title": "alertbridge", "version": __version__,
                 "description": "Observability-to-incident event bridge."},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": _SCHEMAS},
    }
