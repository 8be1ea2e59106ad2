"""No input makes the server answer 5xx: random bodies and headers against every ingest route."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.apptools import base_config, running_app

PATHS = ["/v1/sources/am", "/v1/sources/prom", "/v1/sources/pd", "/api/v2/alerts", "/v2/enqueue",
         "/v1/sources/missing"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
FIELDS = ["alerts", "labels", "status", "startsAt", "endsAt", "fingerprint", "routing_key", "event_action",
          "dedup_key", "payload", "summary", "severity", "source", "annotations", "truncatedAlerts"]
SHAPED = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), children, max_size=6),
    max_leaves=25,
)
BODIES = st.binary(max_size=200) | JSON_VALUES.map(lambda v: json.dumps(v).encode()) | SHAPED.map(
    lambda v: json.dumps(v).encode())
CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", "",
                                 "application/x-www-form-urlencoded", "application/vnd.api+json"])


def test_random_requests_never_get_a_5xx() -> None:
    """Hypothesis-generated bodies, content types and paths get 2xx or 4xx, never 5xx."""
    statuses: list[int] = []

    async def scenario(cases: list[tuple[str, bytes, str]]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            async with running_app(base_config(Path(tmp))) as (client, _, _):
                for path, body, ctype in cases:
                    headers = {"Content-Type": ctype} if ctype else {}
                    resp = await client.post(path, data=body, headers=headers)
                    statuses.append(resp.status)
                    assert resp.status < 500, (path, body, ctype, await resp.text())
                    if resp.status >= 400:
                        payload = await resp.json()
                        assert isinstance(payload, dict) and payload

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.sampled_from(PATHS), BODIES, CONTENT_TYPES), min_size=1, max_size=15))
    def check(cases: list[tuple[str, bytes, str]]) -> None:
        asyncio.run(scenario(cases))

    check()
    assert statuses
