"""Typed application state keys (aiohttp `web.AppKey`), all in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from bridge.runtime import Runtime

__all__ = ["RUNTIME", "SETTINGS"]

SETTINGS: web.AppKey[Any] = web.AppKey("settings", object)
RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", object)  # type: ignore[arg-type]
