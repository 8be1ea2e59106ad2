"""The aiohttp application: webhook ingest, the incident API, health and metrics.

`create_app(settings)` builds the app; `cleanup_ctx` starts and stops the runtime around it.
Tests call the same factory. Domain errors become HTTP responses in one middleware
(`bridge.middlewares`), never inside the domain.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge import api
from bridge.errors import AuthFailed, PayloadInvalid, PayloadTooLarge, UnsupportedMediaType
from bridge.keys import RUNTIME, SETTINGS
from bridge.log import get_logger
from bridge.middlewares import error_middleware, request_id_middleware
from bridge.plugins import Source
from bridge.runtime import Runtime

__all__ = ["create_app"]

log = get_logger("alertbridge.http")


def create_app(settings: Any, *, clock: Callable[[], float] = time.time, runtime: Runtime | None = None
               ) -> web.Application:
    app = web.Application(
        middlewares=[request_id_middleware, error_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    app[SETTINGS] = settings
    if runtime is None:
        if settings.redis.url:
            from bridge.distributed import DistributedRuntime

            runtime = DistributedRuntime(settings, clock=clock)
        else:
            runtime = Runtime(settings, clock=clock)
    app[RUNTIME] = runtime
    app.cleanup_ctx.append(_runtime_ctx)
    app.router.add_post("/v1/sources/{name}", ingest_named)
    for source in app[RUNTIME].sources.values():
        for path in source.compat_paths:
            app.router.add_post(path, _compat_handler(source))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    api.add_routes(app)
    return app


async def _runtime_ctx(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    await runtime.start()
    yield
    await runtime.stop()


# ------------------------------------------------------------------------------------------ ingest

async def ingest_named(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    name = request.match_info["name"]
    source = runtime.sources.get(name)
    if source is None:
        runtime.metrics.rejected.labels("(unknown)", "unknown_source").inc()
        log.info("request rejected", reason="unknown_source", source=name)
        return web.json_response({"error": "unknown_source", "field": "name",
                                  "reason": f"no source named {name!r} is configured"}, status=404)
    return await _ingest(request, source)


def _compat_handler(source: Source) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _ingest(request, source)

    return handler


async def _ingest(request: web.Request, source: Source) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    started = time.perf_counter()
    try:
        _authenticate(request, source)
        body = await _read_body(request)
        parsed = await runtime.ingest(source, body, request.headers)
    except PayloadInvalid as err:
        return _reject(runtime, source, err.code, *source.error_body(err.field, err.reason, err.status))
    except AuthFailed as err:
        return _reject(runtime, source, err.code, 401, err.to_dict())
    runtime.metrics.requests.labels(source.name, "accepted").inc()
    runtime.metrics.ingest_latency.labels(source.name).observe(time.perf_counter() - started)
    if parsed.response is None:
        return web.Response(status=parsed.status)
    return web.Response(status=parsed.status, body=orjson.dumps(parsed.response), content_type="application/json")


def _reject(runtime: Runtime, source: Source, reason: str, status: int, body: dict[str, Any]) -> web.Response:
    runtime.metrics.requests.labels(source.name, "rejected").inc()
    runtime.metrics.rejected.labels(source.name, reason).inc()
    log.info("request rejected", source=source.name, status=status, reason=reason,
             field=body.get("field"), detail=body.get("reason"))
    headers = {"WWW-Authenticate": 'Bearer realm="alertbridge"'} if status == 401 else None
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def _authenticate(request: web.Request, source: Source) -> None:
    auth = getattr(source, "config", None) and source.config.auth
    if not auth:
        return
    given = request.headers.get("Authorization", "")
    if auth.bearer_token is not None:
        expected = "Bearer " + auth.bearer_token.get_secret_value()
        if hmac.compare_digest(given.encode(), expected.encode()):
            return
    if auth.basic is not None:
        token = f"{auth.basic.username}:{auth.basic.password.get_secret_value()}"
        expected = "Basic " + base64.b64encode(token.encode()).decode()
        if hmac.compare_digest(given.encode(), expected.encode()):
            return
    raise AuthFailed("missing or wrong credentials" if given else "credentials required")


_JSON_TYPES = ("application/json", "text/json")


async def _read_body(request: web.Request) -> bytes:
    ctype = request.headers.get("Content-Type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media not in _JSON_TYPES and not media.endswith("+json"):
        raise UnsupportedMediaType(ctype)
    limit = request.app[SETTINGS].server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(limit)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(limit) from None


# ------------------------------------------------------------------------------------- operations

async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if runtime.ready:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "not ready"}, status=503)


async def metrics(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if runtime.store is not None:
        runtime.queue_depth = await runtime.store.counts()
    body = generate_latest(runtime.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
