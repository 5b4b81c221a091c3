"""Signed one-click unsubscribe / preference links (SPEC §2, §6)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from tactful.core.links import LinkClaims, LinkSigner

SIGNER = LinkSigner("https://shop.example/tactful/", b"s3cret-key-for-tests")
CLAIMS = LinkClaims("cust-42", "email", "cart_reminders", "int-0123456789abcdef0123")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_genuine_token_verifies_to_its_claims() -> None:
    assert SIGNER.verify(SIGNER.token(CLAIMS)) == CLAIMS


def test_token_is_deterministic_and_url_safe() -> None:
    t = SIGNER.token(CLAIMS)
    assert t == SIGNER.token(CLAIMS)
    assert all(c.isalnum() or c in "-_." for c in t)


def test_links_are_under_the_public_url_and_verify() -> None:
    links = SIGNER.links(CLAIMS)
    assert links.unsubscribe.startswith("https://shop.example/tactful/u/")
    assert links.preferences.startswith("https://shop.example/tactful/p/")
    assert "//u/" not in links.unsubscribe
    for url in (links.unsubscribe, links.preferences):
        assert SIGNER.verify(url.rsplit("/", 1)[1]) == CLAIMS


def test_different_claims_give_different_tokens() -> None:
    other = LinkClaims("cust-43", "email", "cart_reminders", CLAIMS.intent_id)
    assert SIGNER.token(other) != SIGNER.token(CLAIMS)


def test_token_from_another_secret_is_refused() -> None:
    forger = LinkSigner(SIGNER.public_url, b"guessed-secret")
    assert SIGNER.verify(forger.token(CLAIMS)) is None


def test_edited_claims_with_the_old_mac_are_refused() -> None:
    body, mac = SIGNER.token(CLAIMS).split(".")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    edited = raw.replace(b"cust-42", b"cust-99")
    assert SIGNER.verify(f"{b64(edited)}.{mac}") is None


def test_channel_swap_is_refused() -> None:
    # An email unsubscribe link must not be turned into an sms one.
    body, mac = SIGNER.token(CLAIMS).split(".")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert SIGNER.verify(f"{b64(raw.replace(b'email', b'sms'))}.{mac}") is None


def test_every_single_character_substitution_that_changes_the_bytes_is_refused() -> None:
    token = SIGNER.token(CLAIMS)
    for i, ch in enumerate(token):
        if ch == ".":
            continue
        for repl in "AQgw_-9z":
            if repl == ch:
                continue
            forged = token[:i] + repl + token[i + 1:]
            body, mac = forged.split(".")
            same = (
                base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
                == base64.urlsafe_b64decode(token.split(".")[0] + "=" * (-len(body) % 4))
                and base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
                == base64.urlsafe_b64decode(token.split(".")[1] + "=" * (-len(mac) % 4))
            )
            if not same:
                assert SIGNER.verify(forged) is None, (i, repl)


def test_truncated_mac_is_refused() -> None:
    body, mac = SIGNER.token(CLAIMS).split(".")
    assert SIGNER.verify(f"{body}.{mac[:-4]}") is None
    assert SIGNER.verify(f"{body}.") is None


def test_mac_over_other_payload_shape_is_refused() -> None:
    # A correctly MACed payload that does not have four fields is still refused.
    raw = b"cust-42\x1femail"
    mac = hmac.new(SIGNER.secret, raw, hashlib.sha256).digest()[:16]
    assert SIGNER.verify(f"{b64(raw)}.{b64(mac)}") is None


@pytest.mark.parametrize(
    "token",
    ["", ".", "no-dot-at-all", "a.b.c", "!!!.???", "Zm9v", "é.é", "Zm9v.Zm9v", "\x00.\x00", " . "],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert SIGNER.verify(token) is None


def test_token_with_characters_outside_the_alphabet_is_refused() -> None:
    # A token is either exactly what was issued or refused: junk characters spliced into
    # it must not be silently dropped by a lenient base64 decoder.
    token = SIGNER.token(CLAIMS)
    body, mac = token.split(".")
    # (Groups of four keep the padding arithmetic intact, so only strict decoding catches them.)
    for forged in (f"{body[:3]}!!!!{body[3:]}.{mac}", f"{body}.{mac[:5]}*!!!{mac[5:]}",
                   f"{body}.{mac}==", f"{body}=.{mac}"):
        assert SIGNER.verify(forged) is None, forged
