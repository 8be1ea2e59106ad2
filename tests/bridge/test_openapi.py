"""The OpenAPI document matches the routes the app serves."""

from __future__ import annotations

from pathlib import Path

from bridge.app import create_app
from bridge.openapi import openapi_document
from bridge.settings import validate_settings
from tests.apptools import base_config, run, running_app


def _served(config: dict) -> set[tuple[str, str]]:
    app = create_app(validate_settings(config))
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


def test_every_route_is_documented_and_every_operation_served(tmp_path: Path) -> None:
    """Each (method, path) the app serves is in the document, and nothing documented is missing."""
    config = base_config(tmp_path)
    app = create_app(validate_settings(config))
    document = openapi_document(app)
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert _served(config) == documented


def test_compat_paths_only_when_their_source_is_configured(tmp_path: Path) -> None:
    """/api/v2/alerts and /v2/enqueue are documented only when a source mounts them."""
    config = base_config(tmp_path, sources=[{"name": "am", "type": "alertmanager"}])
    app = create_app(validate_settings(config))
    paths = openapi_document(app)["paths"]
    assert "/api/v2/alerts" not in paths and "/v2/enqueue" not in paths
    assert {p for _, p in _served(config)} == set(paths)


def test_document_is_served(tmp_path: Path) -> None:
    """GET /api/v1/openapi.json returns an OpenAPI 3.1 document with every $ref resolvable."""

    async def scenario() -> None:
        async with running_app(base_config(tmp_path)) as (client, _, _):
            document = await (await client.get("/api/v1/openapi.json")).json()
            assert document["openapi"].startswith("3.1")
            schemas = document["components"]["schemas"]
            text = str(document)
            for name in schemas:
                assert f"#/components/schemas/{name}" in text or name == "Error" or name == "Alert"
            refs = {part.split("'")[0] for part in text.split("#/components/schemas/")[1:]}
            assert refs <= set(schemas)

    run(scenario())
