"""What every HTTP sink shares: one POST, one status → Outcome table, one lazily created session.

`post_json` never raises for an expected failure: the receiver's answer, a timeout or a broken
connection all come back as an `Outcome` (cancellation still propagates). The table:

| answer                                  | Outcome                                             |
| --------------------------------------- | --------------------------------------------------- |
| 2xx                                     | delivered                                           |
| 408, 429, 5xx                           | retry, `retry_after` from `Retry-After` when sent   |
| 3xx                                     | failed: redirects are not followed (a signed POST   |
|                                         | must not wander to another host)                    |
| other 4xx                               | failed, with the status and ≤200 chars of the body  |
| 1xx, < 100, ≥ 600                       | failed: not a final HTTP status                     |
| timeout                                 | retry "timeout"                                     |
| connection error (ClientError, OSError) | retry, reason is the error class name               |
| anything else                           | failed with the exception text (a bug; logged)      |

`Retry-After` is delta-seconds or an HTTP-date. An HTTP-date is turned into seconds from now, and
that is the only place a sink reads the wall clock (`now` is injectable for tests).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from importlib import metadata
from urllib.parse import urlsplit

import aiohttp
import structlog
from pydantic import SecretStr

from bridge.plugins import Outcome

__all__ = ["BODY_EXCERPT", "USER_AGENT", "LazySession", "outcome_for", "post_json", "retry_after_seconds"]

log = structlog.get_logger(__name__)


def _version() -> str:
    try:
        return metadata.version("alertbridge")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


USER_AGENT = f"alertbridge/{_version()}"
#: How many characters of a receiver's error body go into an Outcome reason.
BODY_EXCERPT = 200
#: How many bytes of a response body are read at most (enough for an excerpt or Slack's "ok").
_READ_LIMIT = 4096

_RETRY_STATUSES = frozenset({408, 429})


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a `Retry-After` value (delta-seconds or HTTP-date); None if absent/invalid.

    An HTTP-date in the past gives 0.0. `now` is read only for an HTTP-date.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are always GMT
        return None
    return max(0.0, when.timestamp() - now())


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that also works on a plain dict."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, val in headers.items():
        if key.lower() == lowered:
            return val
    return None


def _describe(status: int, body: str) -> str:
    """`HTTP 404 Not Found: channel_not_found`: the status, its phrase and a short body excerpt."""
    try:
        text = f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        text = f"HTTP {status}"
    excerpt = " ".join(body.split())
    if len(excerpt) > BODY_EXCERPT:
        excerpt = excerpt[: BODY_EXCERPT - 1] + "…"
    return f"{text}: {excerpt}" if excerpt else text


def outcome_for(
    status: int,
    headers: Mapping[str, str],
    body: str = "",
    *,
    now: Callable[[], float] = time.time,
) -> Outcome:
    """The Outcome of one HTTP answer, per the table in this module's docstring."""
    if 200 <= status <= 299:
        return Outcome.delivered(status)
    reason = _describe(status, body)
    if status in _RETRY_STATUSES or 500 <= status <= 599:
        return Outcome.retry(reason, retry_after_seconds(_header(headers, "Retry-After"), now), status)
    if 300 <= status <= 399:
        location = _header(headers, "Location")
        where = f" to {location[:BODY_EXCERPT]}" if location else ""
        return Outcome.failed(f"HTTP {status}: redirect{where} not followed", status)
    if 400 <= status <= 499:
        return Outcome.failed(reason, status)
    return Outcome.failed(f"HTTP {status}: not a final HTTP status", status)


async def _read_prefix(response: aiohttp.ClientResponse, limit: int = _READ_LIMIT) -> str:
    """At most `limit` bytes of the body, decoded leniently; never the whole of a huge body."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
    *,
    check_body: Callable[[str], str | None] | None = None,
) -> Outcome:
    """POST `body` to `url` once and return its Outcome; never raises except on cancellation.

    `check_body` lets a sink reject a 2xx whose body means failure (it returns a reason, or None
    when the body is fine); such an answer is failed, not retried. The URL never appears in a
    reason, because for some sinks (Slack) the URL is the secret.
    """
    try:
        async with session.post(
            url,
            data=body,
            headers=dict(headers),
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            text = await _read_prefix(response)
            outcome = outcome_for(response.status, response.headers, text)
            if check_body is not None and 200 <= response.status <= 299:
                problem = check_body(text)
                if problem is not None:
                    return Outcome.failed(problem, response.status)
            return outcome
    except TimeoutError:  # before OSError: TimeoutError is an OSError, and aiohttp's are ClientErrors too
        return Outcome.retry("timeout")
    except (aiohttp.ClientError, OSError) as exc:
        return Outcome.retry(type(exc).__name__)
    except Exception as exc:  # a sink never raises: an unexpected error is a failed delivery, and a bug
        reason = (str(exc) or type(exc).__name__).replace(url, "<url>")
        log.error("sink post crashed", error=type(exc).__name__, reason=reason)
        return Outcome.failed(f"unexpected error: {reason}")


class LazySession:
    """One aiohttp ClientSession per sink, created on first use inside the running loop.

    If the sink is used from a new event loop (each RQ job runs its own), a fresh session is made
    for that loop: a session cannot cross loops.
    """

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
            self._loop = loop
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        loop, self._loop = self._loop, None
        if session is None or session.closed:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if loop is running:  # a session from a finished loop cannot be closed from this one
            await session.close()


#: Hosts a sink may reach over plain http (a local relay or a test receiver).
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def secret_https_url(value: SecretStr) -> SecretStr:
    """Validate a webhook URL that is itself the credential: https, or http to a loopback host.

    The error never echoes the URL (it is the secret).
    """
    parts = urlsplit(value.get_secret_value())
    if not parts.hostname:
        raise ValueError("must be an https URL with a host")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        return value
    raise ValueError(f"must be https (http only for a loopback host), got scheme {parts.scheme or 'none'!r}")
