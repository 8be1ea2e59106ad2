"""Signed, expiring, single-use links that acknowledge or resolve an incident without a login.

Notifications (e-mail, Slack, Teams) carry one link per action, `Action.links["acknowledge"]` and
`Action.links["resolve"]`, of the form `<base_url>/api/v1/links/<token>`. A link is unforgeable
(HMAC-SHA256), expires, is bound to one incident and one action, and works once.

Token: `<claim>.<mac>`, both unpadded base64url (RFC 4648 §5), so the token is URL-safe as is:

    claim = b64url(orjson({"i": incident id, "a": "acknowledge" | "resolve", "e": expiry, "r": revision}))
    mac   = b64url(HMAC-SHA256(secret, b"alertbridge-link-v1." + claim))

`e` is `int(issued_at + ttl)` in epoch seconds; a link is expired from that second on (`now >= e`).
`r` is the incident revision the notification was rendered from, so a caller may refuse a link from
a notification older than the incident's current state. The domain-separation prefix keeps a MAC
made for a link from ever being valid for any other use of the same secret. The token is a pure
function of its arguments: a redelivered notification renders byte-identically (the webhook sink's
signature and idempotency depend on that). For a 16-character incident id it is about 130 characters.

Verification checks, in this order, the token's shape (`malformed`), the MAC against the current
and every previous secret, in constant time (`bad signature`), the claim's fields (`malformed`) and
the expiry (`expired`); nothing from the claim is parsed before the MAC has been checked. Any
problem raises `LinkInvalid` with a reason from the closed set `LinkInvalidReason`; no input makes
`LinkSigner.verify` raise anything else. Key rotation: sign with the new secret and keep the old one
in `previous_secrets` for one `ttl`, after which no link signed with it is still unexpired.

Single use: `LinkClaim.token_id` is a digest of the signed claim (canonical encodings only, so one
claim has exactly one token id, whichever of the rotated secrets signed it). `UsedLinks` records the
ids of used links until they expire; after expiry `verify` rejects the token anyway, so `prune` can
forget it and the record stays bounded by the links issued within one `ttl`. `UsedLinks` is the
in-process form; with several processes the check must be one atomic write to the shared store
(e.g. Redis `SET <token_id> 1 NX EXAT <expires>`).

GET never acts. E-mail security scanners (Microsoft Defender Safe Links, Mimecast, Proofpoint),
chat unfurlers (Slack, Teams) and browser prefetchers fetch every GET link in a message before a
person sees it, so a link that acted on GET would acknowledge incidents nobody looked at. The HTTP
edge therefore serves:

    GET  /api/v1/links/<token>  verify -> confirmation_page(claim, title, post_url=<same URL>)
                                (or result_page(reason, ok=False)); changes nothing, uses nothing
    POST /api/v1/links/<token>  verify -> UsedLinks.use(claim, now) -> acknowledge/resolve
                                -> result_page(message, ok=True)

The confirmation page has no script (a scanner that runs scripts must not be able to auto-submit
it); the edge should send it with `PAGE_HEADERS` (no caching, no referrer carrying the token, no
framing).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final, Literal, get_args
from urllib.parse import urlsplit

import orjson

from bridge.errors import BridgeError
from bridge.model import Action, IncidentStatus, format_time

__all__ = [
    "LINK_ACTIONS",
    "MIN_SECRET_BYTES",
    "PAGE_HEADERS",
    "LinkAction",
    "LinkClaim",
    "LinkInvalid",
    "LinkInvalidReason",
    "LinkSigner",
    "UsedLinks",
    "confirmation_page",
    "result_page",
]

LinkAction = Literal["acknowledge", "resolve"]
#: The actions a link can carry, in display order.
LINK_ACTIONS: Final[tuple[LinkAction, ...]] = get_args(LinkAction)
#: Shortest accepted HMAC key: the SHA-256 output size (RFC 2104 §3 recommends at least that).
MIN_SECRET_BYTES: Final = 32
#: Path under `base_url` that links point to; the token is the last segment.
LINK_PATH: Final = "/api/v1/links/"
#: Headers the HTTP edge should send with `confirmation_page` and `result_page`.
PAGE_HEADERS: Final = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
}

_DOMAIN: Final = b"alertbridge-link-v1."
_ID_DOMAIN: Final = b"alertbridge-link-id-v1."
_MAC_CHARS: Final = 43  # unpadded base64 of the 32-byte SHA-256 MAC
_MAX_TOKEN_CHARS: Final = 2048  # far above any token we issue; bounds the work done on junk
_TOKEN_RE: Final = re.compile(rf"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{{{_MAC_CHARS}}})", re.ASCII)
_CLAIM_KEYS: Final = frozenset({"i", "a", "e", "r"})


class LinkInvalidReason(StrEnum):
    """Why a link was refused; the value is the user-facing reason and a metric label."""

    MALFORMED = "malformed"  # not a token we could have issued
    BAD_SIGNATURE = "bad signature"  # forged, altered, or signed with a secret no longer configured
    EXPIRED = "expired"  # valid, but `now >= expires`
    USED = "already used"  # valid, but `UsedLinks.use` said it was used before (raised by the caller)


#: Every refusal is a 403: a link that is forged, expired or used before is simply not a permission
#: (and one status tells a prober nothing about which check failed).
_STATUS: Final = {
    LinkInvalidReason.MALFORMED: 403,
    LinkInvalidReason.BAD_SIGNATURE: 403,
    LinkInvalidReason.EXPIRED: 403,
    LinkInvalidReason.USED: 403,
}


class LinkInvalid(BridgeError):
    """A link token was refused; `reason` is one of `LinkInvalidReason`."""

    code = "link_invalid"

    def __init__(self, reason: LinkInvalidReason) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.status = _STATUS[reason]

    def to_dict(self) -> dict[str, object]:
        return {"error": self.code, "reason": self.reason.value}


@dataclass(frozen=True, slots=True)
class LinkClaim:
    """What a verified token grants: `action` on `incident_id`, until `expires` (epoch seconds).

    `token_id` identifies the claim for single use (32 hex digits); `revision` is the incident
    revision the notification was rendered from.
    """

    incident_id: str
    action: LinkAction
    expires: int
    revision: int
    token_id: str


class LinkSigner:
    """Issues and verifies link tokens with one signing secret and any number of verify-only ones."""

    def __init__(
        self, secret: bytes, base_url: str, ttl: float, previous_secrets: Sequence[bytes] = ()
    ) -> None:
        for key in (secret, *previous_secrets):
            if not isinstance(key, bytes):
                raise TypeError("link secrets must be bytes")
            if len(key) < MIN_SECRET_BYTES:
                raise ValueError(f"link secrets must be at least {MIN_SECRET_BYTES} bytes, got {len(key)}")
        if not math.isfinite(ttl) or ttl <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        self._secret = secret
        self._keys: tuple[bytes, ...] = (secret, *previous_secrets)
        self.base_url = _normalise_base_url(base_url)
        self.ttl = ttl

    def __repr__(self) -> str:  # never show the secrets
        return f"LinkSigner(base_url={self.base_url!r}, ttl={self.ttl!r}, keys={len(self._keys)})"

    def token(self, incident_id: str, action: LinkAction, issued_at: float, revision: int) -> str:
        """The token for `action` on `incident_id`; the same arguments always give the same token."""
        if not isinstance(incident_id, str) or not incident_id:
            raise ValueError("incident_id must be a non-empty string")
        if action not in LINK_ACTIONS:
            raise ValueError(f"action must be one of {', '.join(LINK_ACTIONS)}, got {action!r}")
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise ValueError(f"revision must be a non-negative integer, got {revision!r}")
        if not math.isfinite(issued_at):
            raise ValueError(f"issued_at must be a finite time, got {issued_at!r}")
        claim = {"i": incident_id, "a": action, "e": int(issued_at + self.ttl), "r": revision}
        encoded = _b64encode(orjson.dumps(claim))
        return f"{encoded}.{_b64encode(_mac(self._secret, encoded))}"

    def url(self, incident_id: str, action: LinkAction, issued_at: float, revision: int) -> str:
        """`<base_url>/api/v1/links/<token>`: the link a notification carries."""
        return f"{self.base_url}{LINK_PATH}{self.token(incident_id, action, issued_at, revision)}"

    def verify(self, token: str, now: float) -> LinkClaim:
        """The claim of a valid, unexpired token; `LinkInvalid` (and nothing else) for any other input.

        Single use is not checked here: pass the claim to `UsedLinks.use` when acting (POST).
        """
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS:
            raise LinkInvalid(LinkInvalidReason.MALFORMED)
        match = _TOKEN_RE.fullmatch(token)
        if match is None:
            raise LinkInvalid(LinkInvalidReason.MALFORMED)
        encoded, mac_text = match.groups()
        mac = _b64decode(mac_text)
        if mac is None:
            raise LinkInvalid(LinkInvalidReason.MALFORMED)
        valid = False
        for key in self._keys:  # no early exit: the time taken does not depend on which key matched
            valid |= hmac.compare_digest(_mac(key, encoded), mac)
        if not valid:
            raise LinkInvalid(LinkInvalidReason.BAD_SIGNATURE)
        claim = _parse_claim(encoded)
        if claim is None:
            raise LinkInvalid(LinkInvalidReason.MALFORMED)
        if not now < claim.expires:  # written so that a NaN clock fails closed
            raise LinkInvalid(LinkInvalidReason.EXPIRED)
        return claim


class UsedLinks:
    """The token ids of links already used, each kept until its link expires.

    `use` is the check-and-record of a single-use link; `prune` drops ids whose links have expired
    (`verify` rejects those anyway), which bounds the record by the links issued within one ttl.
    """

    def __init__(self) -> None:
        self._used: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._used)

    def __contains__(self, token_id: object) -> bool:
        return token_id in self._used

    def use(self, claim: LinkClaim, now: float) -> bool:
        """Record `claim` as used; False when it was used before (the caller then refuses to act).

        Fails closed: a claim already expired at `now` is not recorded and gives False too (it cannot
        happen after `verify` with the same `now`, which refuses expired links first).
        """
        if claim.token_id in self._used or not now < claim.expires:
            return False
        self._used[claim.token_id] = claim.expires
        return True

    def prune(self, now: float) -> int:
        """Forget the ids of links expired at `now`; returns how many were dropped."""
        expired = [token_id for token_id, expires in self._used.items() if not now < expires]
        for token_id in expired:
            del self._used[token_id]
        return len(expired)

    def to_list(self) -> list[tuple[str, int]]:
        """`[(token_id, expires), ...]`, sorted: JSON-ready for persistence; `from_list` reads it back."""
        return sorted(self._used.items())

    @classmethod
    def from_list(cls, items: Iterable[Sequence[object]]) -> UsedLinks:
        """Rebuild from `to_list()` output (tuples or, after a JSON round trip, two-item lists)."""
        used = cls()
        for item in items:
            if len(item) != 2:
                raise ValueError(f"expected (token_id, expires), got {item!r}")
            token_id, expires = item
            if not isinstance(token_id, str) or isinstance(expires, bool) or not isinstance(expires, int):
                raise ValueError(f"expected (token_id: str, expires: int), got {item!r}")
            used._used[token_id] = max(expires, used._used.get(token_id, expires))
        return used


_VERBS: Final[dict[LinkAction, str]] = {"acknowledge": "Acknowledge", "resolve": "Resolve"}

_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<meta name="referrer" content="no-referrer">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5}}
button{{font-size:1rem;padding:.5rem 1.25rem}}</style>
</head>
<body>
{body}
</body>
</html>
"""


def confirmation_page(claim: LinkClaim, incident_title: str, post_url: str) -> str:
    """An HTML page asking to confirm the link's action, with a form that POSTs to `post_url`.

    Everything interpolated is HTML-escaped; the page has no script and loads nothing. Serving it
    changes nothing: only the POST acts (see the module docstring).
    """
    if urlsplit(post_url).scheme not in ("http", "https") and not post_url.startswith("/"):
        raise ValueError("post_url must be an http(s) URL or an absolute path")
    verb = _VERBS[claim.action]
    question = f"{verb} incident \u201c{html.escape(incident_title)}\u201d?"
    body = (
        f"<h1>{question}</h1>\n"
        f"<p>Incident <code>{html.escape(claim.incident_id)}</code>. This link works once and expires "
        f"at {html.escape(format_time(claim.expires))}.</p>\n"
        f'<form method="post" action="{html.escape(post_url, quote=True)}">\n'
        f'<button type="submit">{verb}</button>\n'
        "</form>"
    )
    return _PAGE.format(title=f"{verb} incident?", body=body)


def result_page(message: str, ok: bool) -> str:
    """An HTML page reporting the outcome of a link (`ok`) or why it was refused; `message` is escaped."""
    heading = "Done" if ok else "This link cannot be used"
    body = f"<h1>{heading}</h1>\n<p>{html.escape(message)}</p>"
    return _PAGE.format(title=heading, body=body)


# ---------------------------------------------------------------------------------------- helpers

def _normalise_base_url(base_url: str) -> str:
    """`base_url` without trailing slashes; it must be an http(s) URL with a host and no query."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"base_url must not have a query or fragment, got {base_url!r}")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _mac(key: bytes, encoded_claim: str) -> bytes:
    return hmac.new(key, _DOMAIN + encoded_claim.encode("ascii"), hashlib.sha256).digest()


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Unpadded base64url `text` (already checked to be of that alphabet), or None.

    Only the canonical encoding is accepted (unused trailing bits zero), so one value has exactly
    one spelling and a token cannot be varied without changing what it decodes to.
    """
    if len(text) % 4 == 1:
        return None
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return data if _b64encode(data) == text else None


def _parse_claim(encoded: str) -> LinkClaim | None:
    """The claim in a MAC-checked claim segment, or None when its content is not a claim we issue."""
    raw = _b64decode(encoded)
    if raw is None:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.keys() != _CLAIM_KEYS:
        return None
    incident_id, action, expires, revision = data["i"], data["a"], data["e"], data["r"]
    if not isinstance(incident_id, str) or not incident_id or action not in LINK_ACTIONS:
        return None
    for number in (expires, revision):
        if isinstance(number, bool) or not isinstance(number, int):
            return None
    token_id = hashlib.sha256(_ID_DOMAIN + encoded.encode("ascii")).hexdigest()[:32]
    return LinkClaim(incident_id, action, expires, revision, token_id)


def link_signer(settings: Any) -> LinkSigner | None:
    """The signer the settings describe (`links:` and `server.public_url`); None when links are off."""
    links = settings.links
    if links.secret is None or not settings.server.public_url:
        return None
    return LinkSigner(links.secret.get_secret_value().encode(), settings.server.public_url, links.ttl,
                      previous_secrets=[s.get_secret_value().encode() for s in links.previous_secrets])


def with_links(signer: LinkSigner | None, action: Action) -> Action:
    """`action` with its signed links while its incident is open: acknowledge (while triggered) and
    resolve. Deterministic: a redelivery, by any process, renders the same links."""
    incident = action.incident
    if signer is None or incident.status is IncidentStatus.RESOLVED:
        return action
    kinds: tuple[LinkAction, ...] = ("acknowledge", "resolve") \
        if incident.status is IncidentStatus.TRIGGERED else ("resolve",)
    return replace(action, links={kind: signer.url(incident.id, kind, action.at, incident.revision) for kind in kinds})
