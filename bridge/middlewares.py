"""HTTP edge: a request id on every log line, and domain errors translated to JSON responses once."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from bridge.errors import BridgeError, StoreUnavailable
from bridge.log import get_logger

__all__ = ["error_middleware", "request_id_middleware"]

log = get_logger("alertbridge.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Request-Id"] = request_id
        raise
    response.headers["X-Request-Id"] = request_id
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BridgeError as err:
        headers = {"Retry-After": "5"} if isinstance(err, StoreUnavailable) else None
        if err.status >= 500:
            log.error("request failed", error=err.code, reason=str(err), path=request.path)
        return web.json_response(err.to_dict(), status=err.status, headers=headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.reason
        if exc.status == 404:
            reason = f"no route for {request.method} {request.path}"
        elif exc.status == 405:
            reason = f"method {request.method} is not allowed on {request.path}"
        elif exc.status == 413:
            reason = "request body is larger than the configured limit"
        return web.json_response({"error": exc.reason.lower().replace(" ", "_"), "field": "",
                                  "reason": reason}, status=exc.status, headers=_keep_headers(exc))
    except Exception:
        log.exception("unhandled error", path=request.path)
        return web.json_response({"error": "internal", "reason": "internal error; see the server log"},
                                 status=500)


def _keep_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
