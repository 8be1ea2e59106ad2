"""Signed acknowledge/resolve links: tokens, verification, single use and the HTML pages."""

from __future__ import annotations

import base64
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import BridgeError
from bridge.links import (
    LinkClaim,
    LinkInvalid,
    LinkInvalidReason,
    LinkSigner,
    UsedLinks,
    confirmation_page,
    result_page,
)
from bridge.links import _mac as sign_claim  # private: the only way to sign a claim we would never issue

SECRET = b"s" * 32
OLD_SECRET = b"o" * 32
BASE = "https://alertbridge.example.org"
TTL = 3600.0
T0 = 1_700_000_000.0
INCIDENT = "01HV4K8Z9Q2M7XTA"  # 16 characters, like an incident id


def signer(**kwargs: object) -> LinkSigner:
    args: dict[str, object] = {"secret": SECRET, "base_url": BASE, "ttl": TTL, **kwargs}
    return LinkSigner(**args)  # type: ignore[arg-type]  # a test factory: keyword overrides are untyped


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def reason_of(token: object, now: float = T0, links: LinkSigner | None = None) -> LinkInvalidReason:
    with pytest.raises(LinkInvalid) as caught:
        (links or signer()).verify(token, now)  # type: ignore[arg-type]  # junk input on purpose
    return caught.value.reason


# ------------------------------------------------------------------------------------------ tokens

@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_round_trip(action: str) -> None:
    """A token verifies to a claim carrying its incident, action, expiry and revision."""
    links = signer()
    claim = links.verify(links.token(INCIDENT, action, T0, 7), T0 + 1)  # type: ignore[arg-type]
    assert (claim.incident_id, claim.action, claim.expires, claim.revision) == (INCIDENT, action, int(T0 + TTL), 7)
    assert len(claim.token_id) == 32 and int(claim.token_id, 16) >= 0


def test_token_is_deterministic() -> None:
    """The same arguments always give the same token, so a redelivered notification renders identically."""
    assert signer().token(INCIDENT, "resolve", T0, 3) == signer().token(INCIDENT, "resolve", T0, 3)
    assert signer().token(INCIDENT, "resolve", T0, 3) != signer().token(INCIDENT, "resolve", T0, 4)


def test_token_is_url_safe_and_short() -> None:
    """A token for a 16-character id is under 200 characters of the base64url alphabet plus one dot."""
    token = signer().token(INCIDENT, "acknowledge", T0, 12345)
    assert len(token) < 200
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert token.count(".") == 1


@pytest.mark.parametrize(
    "base_url",
    ["https://alertbridge.example.org", "https://alertbridge.example.org/", "https://alertbridge.example.org//"],
    ids=["bare", "trailing-slash", "two-slashes"],
)
def test_url_normalises_base_url(base_url: str) -> None:
    """The link is `<base_url>/api/v1/links/<token>` with exactly one slash after the base URL."""
    links = signer(base_url=base_url)
    token = links.token(INCIDENT, "acknowledge", T0, 1)
    assert links.url(INCIDENT, "acknowledge", T0, 1) == f"{BASE}/api/v1/links/{token}"


def test_url_keeps_a_path_prefix() -> None:
    """A base URL behind a reverse-proxy path keeps its path."""
    links = signer(base_url="https://ops.example.org/alertbridge/")
    assert links.url(INCIDENT, "resolve", T0, 1).startswith("https://ops.example.org/alertbridge/api/v1/links/")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"secret": b"x" * 31}, ValueError),
        ({"previous_secrets": [b"x" * 31]}, ValueError),
        ({"secret": "s" * 32}, TypeError),
        ({"base_url": "ftp://example.org"}, ValueError),
        ({"base_url": "https://"}, ValueError),
        ({"base_url": "https://example.org/?x=1"}, ValueError),
        ({"ttl": 0}, ValueError),
        ({"ttl": float("nan")}, ValueError),
    ],
    ids=["short-secret", "short-previous-secret", "str-secret", "not-http", "no-host", "query", "zero-ttl", "nan-ttl"],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    """A short or non-bytes secret, a base URL that is not http(s) with a host, or a non-positive ttl is refused."""
    with pytest.raises(error):
        signer(**kwargs)


def test_repr_hides_secrets() -> None:
    """The signer's repr never shows a secret."""
    assert "sss" not in repr(signer()) and "ooo" not in repr(signer(previous_secrets=[OLD_SECRET]))


# ---------------------------------------------------------------------------------------- refusals

@pytest.mark.parametrize(
    ("offset", "valid"),
    [(-1.0, True), (TTL - 0.001, True), (TTL, False), (TTL + 1, False)],
    ids=["before-issue", "just-before-expiry", "exactly-at-expiry", "after-expiry"],
)
def test_expiry(offset: float, valid: bool) -> None:
    """A link is valid until its expiry second; exactly at the expiry it counts as expired."""
    links = signer()
    token = links.token(INCIDENT, "acknowledge", T0, 1)
    if valid:
        assert links.verify(token, T0 + offset).incident_id == INCIDENT
    else:
        assert reason_of(token, T0 + offset) is LinkInvalidReason.EXPIRED


def test_nan_clock_fails_closed() -> None:
    """A NaN `now` makes a valid link count as expired, not as eternal."""
    assert reason_of(signer().token(INCIDENT, "acknowledge", T0, 1), float("nan")) is LinkInvalidReason.EXPIRED


def test_forged_signature_is_refused() -> None:
    """A token signed with another secret, or with a made-up MAC, is refused as a bad signature."""
    forged = signer(secret=b"f" * 32).token(INCIDENT, "acknowledge", T0, 1)
    assert reason_of(forged) is LinkInvalidReason.BAD_SIGNATURE
    claim = signer().token(INCIDENT, "acknowledge", T0, 1).split(".")[0]
    assert reason_of(f"{claim}.{b64(bytes(32))}") is LinkInvalidReason.BAD_SIGNATURE


def test_claim_is_bound_to_its_incident() -> None:
    """The claim names its incident (the caller compares it), and putting another id in the claim breaks the MAC."""
    links = signer()
    token_a = links.token("incident-A", "acknowledge", T0, 1)
    assert links.verify(token_a, T0).incident_id == "incident-A"
    claim, mac = token_a.split(".")
    tampered = orjson.loads(unb64(claim)) | {"i": "incident-B"}
    assert reason_of(f"{b64(orjson.dumps(tampered))}.{mac}") is LinkInvalidReason.BAD_SIGNATURE


@pytest.mark.parametrize(
    "change",
    [{"a": "resolve"}, {"e": int(T0 + 10 * TTL)}, {"r": 99}],
    ids=["action-swap", "longer-expiry", "other-revision"],
)
def test_changing_the_claim_breaks_the_signature(change: dict[str, object]) -> None:
    """Swapping the action (or the expiry or revision) inside a valid token's claim is refused as a bad signature."""
    claim, mac = signer().token(INCIDENT, "acknowledge", T0, 1).split(".")
    tampered = orjson.loads(unb64(claim)) | change
    assert reason_of(f"{b64(orjson.dumps(tampered))}.{mac}") is LinkInvalidReason.BAD_SIGNATURE


def test_acknowledge_and_resolve_tokens_differ() -> None:
    """The acknowledge and resolve links of one incident are different tokens with different ids."""
    links = signer()
    ack = links.verify(links.token(INCIDENT, "acknowledge", T0, 1), T0)
    res = links.verify(links.token(INCIDENT, "resolve", T0, 1), T0)
    assert ack.action == "acknowledge" and res.action == "resolve" and ack.token_id != res.token_id


def test_rotated_secret_still_verifies_and_unknown_secret_fails() -> None:
    """A link signed with a previous secret verifies (same token id); one signed with an unknown secret does not."""
    old = signer(secret=OLD_SECRET)
    new = signer(previous_secrets=[OLD_SECRET])
    by_old = new.verify(old.token(INCIDENT, "resolve", T0, 2), T0)
    by_new = new.verify(new.token(INCIDENT, "resolve", T0, 2), T0)
    assert by_old == by_new  # same claim, same token id: using one uses the other
    assert new.token(INCIDENT, "resolve", T0, 2) != old.token(INCIDENT, "resolve", T0, 2)  # previous never signs
    unknown = signer(secret=b"u" * 32).token(INCIDENT, "resolve", T0, 2)
    assert reason_of(unknown, links=new) is LinkInvalidReason.BAD_SIGNATURE


def test_non_canonical_base64_is_refused() -> None:
    """A MAC spelled with non-zero unused bits decodes to the same bytes but is refused: one token, one spelling."""
    token = signer().token(INCIDENT, "acknowledge", T0, 1)
    claim, mac = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(mac[-1])
    variant = mac[:-1] + alphabet[last ^ 1]  # the last character's 2 low bits are unused: flip one
    assert unb64(variant) == unb64(mac)
    assert reason_of(f"{claim}.{variant}") is LinkInvalidReason.MALFORMED


@pytest.mark.parametrize(
    "claim",
    [
        {"i": INCIDENT, "a": "delete", "e": int(T0 + TTL), "r": 1},
        {"i": "", "a": "resolve", "e": int(T0 + TTL), "r": 1},
        {"i": INCIDENT, "a": "resolve", "e": str(int(T0 + TTL)), "r": 1},
        {"i": INCIDENT, "a": "resolve", "e": int(T0 + TTL), "r": True},
        {"i": INCIDENT, "a": "resolve", "e": int(T0 + TTL)},
        {"i": INCIDENT, "a": "resolve", "e": int(T0 + TTL), "r": 1, "x": 0},
        [INCIDENT, "resolve"],
    ],
    ids=["unknown-action", "empty-id", "string-expiry", "bool-revision", "missing-key", "extra-key", "not-object"],
)
def test_correctly_signed_odd_claims_are_malformed(claim: object) -> None:
    """Even with a valid MAC, a claim that is not exactly the shape we issue is refused as malformed."""
    encoded = b64(json.dumps(claim).encode())
    assert reason_of(f"{encoded}.{b64(sign_claim(SECRET, encoded))}") is LinkInvalidReason.MALFORMED


@pytest.mark.parametrize(
    "token",
    ["", ".", "abc", "abc.def", "a.b.c", "eyJ9." + "A" * 43 + "=", "x" * 5000, "é." + "A" * 43, None, 12, b"abc.def"],
    ids=["empty", "dot", "no-dot", "short-mac", "two-dots", "padding", "huge", "non-ascii", "none", "int", "bytes"],
)
def test_junk_is_malformed(token: object) -> None:
    """Anything that is not `<base64url>.<43 base64url chars>` is refused as malformed."""
    assert reason_of(token) is LinkInvalidReason.MALFORMED


def test_link_invalid_is_a_bridge_error_with_a_reason() -> None:
    """LinkInvalid sits under the error root, carries its reason and maps to a 4xx status."""
    error = LinkInvalid(LinkInvalidReason.EXPIRED)
    assert isinstance(error, BridgeError)
    assert error.to_dict() == {"error": "link_invalid", "reason": "expired"}
    assert {LinkInvalid(r).status for r in LinkInvalidReason} <= set(range(400, 500))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"incident_id": ""}, ValueError),
        ({"action": "delete"}, ValueError),
        ({"revision": -1}, ValueError),
        ({"revision": True}, ValueError),
        ({"issued_at": float("inf")}, ValueError),
    ],
    ids=["empty-id", "unknown-action", "negative-revision", "bool-revision", "infinite-time"],
)
def test_token_refuses_bad_arguments(kwargs: dict[str, object], error: type[Exception]) -> None:
    """Issuing a token for an empty id, an unknown action, a negative revision or a non-finite time is a bug."""
    args: dict[str, object] = {"incident_id": INCIDENT, "action": "resolve", "issued_at": T0, "revision": 1, **kwargs}
    with pytest.raises(error):
        signer().token(**args)  # type: ignore[arg-type]  # bad arguments on purpose


# ------------------------------------------------------------------------------------------- fuzz

def _assert_only_link_invalid(token: object) -> None:
    try:
        signer(previous_secrets=[OLD_SECRET]).verify(token, T0)  # type: ignore[arg-type]  # junk on purpose
    except LinkInvalid as error:
        assert error.reason in LinkInvalidReason


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.from_regex(r"[A-Za-z0-9_-]{0,120}\.[A-Za-z0-9_-]{40,46}", fullmatch=True))
def test_fuzz_random_strings_raise_only_link_invalid(token: str) -> None:
    """Random strings, including ones shaped like tokens, give a claim or LinkInvalid, nothing else."""
    _assert_only_link_invalid(token)


VALID = signer().token(INCIDENT, "acknowledge", T0, 1)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(VALID)))
def test_fuzz_truncated_tokens_are_refused(cut: int) -> None:
    """Every proper prefix of a valid token is refused with LinkInvalid."""
    if cut == len(VALID):
        assert signer().verify(VALID, T0).incident_id == INCIDENT
    else:
        assert reason_of(VALID[:cut]) in LinkInvalidReason


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0, max_value=len(VALID) * 8 - 1))
def test_fuzz_bit_flipped_tokens_are_refused(bit: int) -> None:
    """Flipping any one bit of a valid token's text makes it refused with LinkInvalid, never accepted."""
    raw = bytearray(VALID.encode())
    raw[bit // 8] ^= 1 << (bit % 8)
    flipped = raw.decode("utf-8", "replace")
    assert reason_of(flipped) in LinkInvalidReason


# -------------------------------------------------------------------------------------- single use

def claim(token_id: str = "a" * 32, expires: int = int(T0 + TTL)) -> LinkClaim:
    return LinkClaim(INCIDENT, "acknowledge", expires, 1, token_id)


def test_used_links_are_single_use() -> None:
    """The first use of a link succeeds and every later use of the same token id is refused."""
    used = UsedLinks()
    links = signer()
    first = links.verify(links.token(INCIDENT, "acknowledge", T0, 1), T0)
    again = links.verify(links.token(INCIDENT, "acknowledge", T0, 1), T0 + 5)
    assert used.use(first, T0) is True
    assert used.use(again, T0 + 5) is False
    other = links.verify(links.token(INCIDENT, "resolve", T0, 1), T0)
    assert used.use(other, T0) is True  # the resolve link is a different link


def test_use_refuses_an_expired_claim() -> None:
    """A claim already expired at `now` is neither recorded nor accepted (fail closed)."""
    used = UsedLinks()
    assert used.use(claim(expires=int(T0)), T0) is False
    assert len(used) == 0


def test_prune_drops_only_expired_ids() -> None:
    """Pruning forgets ids whose links have expired (verify refuses those anyway) and keeps the rest."""
    used = UsedLinks()
    used.use(claim("early", int(T0 + 10)), T0)
    used.use(claim("late", int(T0 + 100)), T0)
    assert used.prune(T0 + 9) == 0
    assert used.prune(T0 + 10) == 1  # exactly at expiry counts as expired
    assert "early" not in used and "late" in used
    assert used.prune(T0 + 1000) == 1 and len(used) == 0


def test_used_links_persist_through_json() -> None:
    """`to_list` survives a JSON round trip and `from_list` restores the same single-use state."""
    used = UsedLinks()
    used.use(claim("b" * 32), T0)
    used.use(claim("a" * 32), T0)
    restored = UsedLinks.from_list(json.loads(json.dumps(used.to_list())))
    assert restored.to_list() == used.to_list() == [("a" * 32, int(T0 + TTL)), ("b" * 32, int(T0 + TTL))]
    assert restored.use(claim("a" * 32), T0) is False


@pytest.mark.parametrize("items", [[["id"]], [["id", "soon"]], [[1, 2]], [["id", True]]],
                         ids=["one-item", "string-expiry", "int-id", "bool-expiry"])
def test_from_list_refuses_garbage(items: list[list[object]]) -> None:
    """Persisted entries that are not (token_id, int expiry) pairs are refused with ValueError."""
    with pytest.raises(ValueError):
        UsedLinks.from_list(items)


# ------------------------------------------------------------------------------------------- pages

def test_confirmation_page_escapes_and_posts() -> None:
    """The confirmation page asks the question, escapes the title and URL, and has a POST form to the same URL."""
    links = signer()
    url = links.url(INCIDENT, "acknowledge", T0, 1)
    verified = links.verify(url.rsplit("/", 1)[1], T0)
    page = confirmation_page(verified, '<script>alert("x")</script> & "db"', url + '"><img src=x>')
    assert "Acknowledge incident" in page
    assert "<script>" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp;" in page
    assert '<form method="post" action="' + url + '&quot;&gt;&lt;img src=x&gt;">' in page
    assert '<button type="submit">Acknowledge</button>' in page
    assert "<img" not in page


def test_confirmation_page_for_resolve() -> None:
    """A resolve link's page asks to resolve and shows the incident id and expiry."""
    page = confirmation_page(LinkClaim(INCIDENT, "resolve", int(T0 + TTL), 1, "x"), "Disk full", "/api/v1/links/t")
    assert "Resolve incident \u201cDisk full\u201d?" in page
    assert INCIDENT in page and "2023-11-14T23:13:20.000Z" in page


def test_confirmation_page_refuses_a_script_url() -> None:
    """A post_url that is not http(s) or an absolute path is refused, so the form cannot run a javascript: URL."""
    with pytest.raises(ValueError):
        confirmation_page(claim(), "t", "javascript:alert(1)")


@pytest.mark.parametrize("ok", [True, False], ids=["ok", "refused"])
def test_result_page_escapes(ok: bool) -> None:
    """The result page states success or refusal and escapes its message."""
    page = result_page("<b>done</b> & dusted", ok)
    assert "&lt;b&gt;done&lt;/b&gt; &amp; dusted" in page and "<b>" not in page
    assert ("Done" in page) is ok
