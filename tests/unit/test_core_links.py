"""Sealed unsubscribe / preference link tokens (SPEC §2 links, §7)."""

from __future__ import annotations

import base64
import struct

import pytest

from tactful.core.links import (
    INVALID,
    MAX_TOKEN_LENGTH,
    Expired,
    LinkClaims,
    LinkSigner,
    Verified,
)

SECRET = b"s3cret-key-for-tests"
SIGNER = LinkSigner("https://shop.example/tactful/", SECRET)
EXPIRES = 1_790_000_000  # 2026-09-21
NOW = EXPIRES - 86400
CLAIMS = LinkClaims("cust-42", "email", "int-0123456789abcdef0123", "unsubscribe", EXPIRES)


def raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_genuine_token_verifies_to_its_claims() -> None:
    assert SIGNER.verify(SIGNER.token(CLAIMS), "unsubscribe", NOW) == Verified(CLAIMS)


def test_token_is_deterministic_and_url_safe() -> None:
    t = SIGNER.token(CLAIMS)
    assert t == SIGNER.token(CLAIMS)
    assert all(c.isalnum() or c in "-_" for c in t)


def test_no_id_is_readable_in_the_token() -> None:
    claims = LinkClaims("customer-with-a-long-readable-id", "email", "int-aaaaaaaaaaaaaaaaaaaa",
                        "preferences", EXPIRES)
    token = SIGNER.token(claims)
    decoded = raw(token)
    for text in ("customer-with", "readable", "int-aaaa", "email"):
        assert text.encode() not in decoded
        assert text not in token
    # Two customers' tokens share no ciphertext prefix though their ids do.
    other = LinkClaims("customer-with-a-long-readable-iX", "email", claims.intent_id,
                       "preferences", EXPIRES)
    assert raw(SIGNER.token(other))[26:34] != decoded[26:34]


def test_links_are_under_the_public_url_with_a_token_per_purpose() -> None:
    links = SIGNER.links("cust-42", "email", CLAIMS.intent_id, EXPIRES)
    assert links.unsubscribe.startswith("https://shop.example/tactful/u/")
    assert links.preferences.startswith("https://shop.example/tactful/p/")
    unsub = links.unsubscribe.rsplit("/", 1)[1]
    prefs = links.preferences.rsplit("/", 1)[1]
    assert unsub != prefs
    assert SIGNER.verify(unsub, "unsubscribe", NOW) == Verified(CLAIMS)
    assert SIGNER.verify(prefs, "preferences", NOW) == Verified(
        LinkClaims("cust-42", "email", CLAIMS.intent_id, "preferences", EXPIRES))
    # One purpose's token does not open the other page.
    assert SIGNER.verify(unsub, "preferences", NOW) is INVALID
    assert SIGNER.verify(prefs, "unsubscribe", NOW) is INVALID


def test_an_expired_token_is_told_apart_from_a_forged_one() -> None:
    token = SIGNER.token(CLAIMS)
    assert SIGNER.verify(token, "unsubscribe", EXPIRES - 1) == Verified(CLAIMS)
    assert SIGNER.verify(token, "unsubscribe", EXPIRES) == Expired(CLAIMS)
    forger = LinkSigner(SIGNER.public_url, b"guessed-secret-guessed")
    assert forger.verify(token, "unsubscribe", EXPIRES + 1) is INVALID


def test_the_expiry_cannot_be_pushed_back() -> None:
    token = raw(SIGNER.token(CLAIMS))
    later = token[:2] + struct.pack(">q", EXPIRES + 365 * 86400) + token[10:]
    assert SIGNER.verify(b64(later), "unsubscribe", EXPIRES + 1) is INVALID


def test_the_purpose_byte_cannot_be_swapped() -> None:
    token = raw(SIGNER.token(CLAIMS))
    assert token[1:2] == b"u"
    swapped = token[:1] + b"p" + token[2:]
    assert SIGNER.verify(b64(swapped), "preferences", NOW) is INVALID


def test_token_from_another_secret_is_refused() -> None:
    forger = LinkSigner(SIGNER.public_url, b"guessed-secret")
    assert SIGNER.verify(forger.token(CLAIMS), "unsubscribe", NOW) is INVALID


def test_previous_secret_verifies_during_a_rotation() -> None:
    old = LinkSigner(SIGNER.public_url, b"the-old-secret-0000")
    rotated = LinkSigner(SIGNER.public_url, b"the-new-secret-1111", b"the-old-secret-0000")
    assert rotated.verify(old.token(CLAIMS), "unsubscribe", NOW) == Verified(CLAIMS)
    assert rotated.verify(rotated.token(CLAIMS), "unsubscribe", NOW) == Verified(CLAIMS)
    # New tokens are made with the new secret only.
    assert rotated.token(CLAIMS) != old.token(CLAIMS)
    assert old.verify(rotated.token(CLAIMS), "unsubscribe", NOW) is INVALID
    # Once the previous secret is dropped, the old links stop verifying.
    after = LinkSigner(SIGNER.public_url, b"the-new-secret-1111")
    assert after.verify(old.token(CLAIMS), "unsubscribe", NOW) is INVALID


def test_every_single_character_substitution_is_refused() -> None:
    token = SIGNER.token(CLAIMS)
    for i, ch in enumerate(token):
        for repl in "AQgw_-9z":
            if repl == ch:
                continue
            forged = token[:i] + repl + token[i + 1:]
            assert SIGNER.verify(forged, "unsubscribe", NOW) is INVALID, (i, repl)


def test_every_single_bit_flip_of_the_bytes_is_refused() -> None:
    token = raw(SIGNER.token(CLAIMS))
    for i in range(len(token)):
        for bit in range(8):
            flipped = token[:i] + bytes([token[i] ^ (1 << bit)]) + token[i + 1:]
            assert SIGNER.verify(b64(flipped), "unsubscribe", NOW) is INVALID, (i, bit)


def test_truncated_and_extended_tokens_are_refused() -> None:
    token = SIGNER.token(CLAIMS)
    for cut in (1, 4, 8, len(token) - 12):
        assert SIGNER.verify(token[:-cut], "unsubscribe", NOW) is INVALID
    assert SIGNER.verify(token + "AAAA", "unsubscribe", NOW) is INVALID


@pytest.mark.parametrize(
    "token",
    ["", ".", "no-dot-at-all", "a.b.c", "!!!.???", "Zm9v", "é", "Zm9v.Zm9v", "\x00", " ",
     "A" * (MAX_TOKEN_LENGTH + 4)],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert SIGNER.verify(token, "unsubscribe", NOW) is INVALID


def test_token_with_characters_outside_the_alphabet_is_refused() -> None:
    token = SIGNER.token(CLAIMS)
    for forged in (f"{token[:3]}!!!!{token[3:]}", f"{token}==", f"{token[:8]}=={token[8:]}"):
        assert SIGNER.verify(forged, "unsubscribe", NOW) is INVALID, forged


def test_the_form_token_is_bound_to_its_link() -> None:
    a = SIGNER.token(LinkClaims("cust-1", "email", "int-a", "preferences", EXPIRES))
    b = SIGNER.token(LinkClaims("cust-2", "email", "int-b", "preferences", EXPIRES))
    form = SIGNER.form_token(a)
    assert SIGNER.form_token_ok(a, form)
    assert not SIGNER.form_token_ok(b, form)
    assert not SIGNER.form_token_ok(a, "")
    assert not SIGNER.form_token_ok(a, form[:-1] + ("A" if form[-1] != "A" else "B"))
    other = LinkSigner(SIGNER.public_url, b"another-secret-entirely")
    assert not SIGNER.form_token_ok(a, other.form_token(a))


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        LinkSigner("https://shop.example", b"")
