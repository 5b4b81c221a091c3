"""Signed unsubscribe and preference links (SPEC §2 ``links``, §7; RFC 8058).

A token names a customer, a channel, an intent, a purpose (``unsubscribe`` or
``preferences``) and an expiry. It is sealed rather than merely signed, so that a link
copied into a mail log, a proxy's access log or a browser history shows no customer id:

    token = base64url( header | tag | ciphertext )
    header = version (1 byte) | purpose (1 byte, "u" or "p") | expires (8 bytes, seconds)
    tag = HMAC-SHA256(mac key, header | claims)[:16]
    ciphertext = claims XOR HMAC-SHA256(encryption key, tag | counter) ...

This is a synthetic-IV construction (the tag is the IV of the keystream): the same
claims always give the same token, so the worker and ``tactful replay`` write the same
bytes, and any change to a byte of the token changes the claims it decrypts to and so
fails the tag. Both keys are derived from the link secret with HMAC-SHA256 under fixed
labels. The purpose and expiry are readable but covered by the tag: neither names
anyone. The tag is compared in constant time; a previous secret is tried after the
current one, so links sent before a rotation still open.

Pure: the secrets and the clock are passed in.
"""

from __future__ import annotations

import base64
import hmac
import re
import struct
from dataclasses import dataclass
from typing import Literal

from tactful.core.outputs import Links

Purpose = Literal["unsubscribe", "preferences"]
_PURPOSE_BYTE: dict[str, bytes] = {"unsubscribe": b"u", "preferences": b"p"}
_BYTE_PURPOSE: dict[bytes, Purpose] = {b"u": "unsubscribe", b"p": "preferences"}
_VERSION = b"\x01"
_HEADER = struct.Struct(">cc q")
_TAG = 16
_SEP = "\x1f"  # ids are printable (README, "Dead letter"): a unit separator never occurs
MAX_TOKEN_LENGTH = 2048  # characters: longer is refused before any decoding
_ALPHABET = re.compile(r"^[A-Za-z0-9_-]+$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Strict: one spelling per token (no padding, no stray characters)."""
    if not _ALPHABET.match(text):
        raise ValueError("not unpadded base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(raw) != text:
        raise ValueError("not canonical base64url")
    return raw


@dataclass(frozen=True, slots=True)
class LinkClaims:
    customer_id: str
    channel: str
    intent_id: str
    purpose: Purpose
    expires_at: int  # seconds since the epoch, UTC


@dataclass(frozen=True, slots=True)
class Verified:
    claims: LinkClaims


@dataclass(frozen=True, slots=True)
class Expired:
    claims: LinkClaims


@dataclass(frozen=True, slots=True)
class Invalid:
    pass


INVALID = Invalid()
Verdict = Verified | Expired | Invalid


@dataclass(frozen=True, slots=True)
class _Keys:
    mac: bytes
    enc: bytes
    csrf: bytes

    @classmethod
    def of(cls, secret: bytes) -> _Keys:
        def derive(label: bytes) -> bytes:
            return _mac(secret, label)
        return cls(derive(b"tactful link mac v1"), derive(b"tactful link enc v1"),
                   derive(b"tactful link csrf v1"))


def _mac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")  # the one-shot C path of HMAC-SHA256


def _keystream(key: bytes, tag: bytes, n: int) -> bytes:
    blocks = (n + 31) // 32
    return b"".join(_mac(key, tag + struct.pack(">I", i)) for i in range(blocks))[:n]


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


class LinkSigner:
    """Makes and opens the tokens of one deployment. ``previous`` is the secret before a
    rotation: tokens made with it still verify, new ones use ``secret``."""

    __slots__ = ("_keys", "_previous", "public_url")

    def __init__(self, public_url: str, secret: bytes, previous: bytes | None = None) -> None:
        if not secret:
            raise ValueError("a link secret is needed")
        self.public_url = public_url.rstrip("/")
        self._keys = _Keys.of(secret)
        self._previous = _Keys.of(previous) if previous else None

    def token(self, claims: LinkClaims) -> str:
        keys = self._keys
        header = _HEADER.pack(_VERSION, _PURPOSE_BYTE[claims.purpose], claims.expires_at)
        plain = _SEP.join((claims.customer_id, claims.channel, claims.intent_id)).encode()
        tag = _mac(keys.mac, header + plain)[:_TAG]
        return _b64(header + tag + _xor(plain, _keystream(keys.enc, tag, len(plain))))

    def links(self, customer_id: str, channel: str, intent_id: str, expires_at: float) -> Links:
        """An intent's two links, each with a token of its own purpose, valid until
        ``expires_at`` (the engine passes the intent's ``created_at`` plus the policy's
        ``[links] expiry``: event time, so the worker and replay write the same links)."""
        expires = int(expires_at)
        unsub = self.token(LinkClaims(customer_id, channel, intent_id, "unsubscribe", expires))
        prefs = self.token(LinkClaims(customer_id, channel, intent_id, "preferences", expires))
        return Links(unsubscribe=f"{self.public_url}/u/{unsub}",
                     preferences=f"{self.public_url}/p/{prefs}")

    def verify(self, token: str, purpose: Purpose, now: float) -> Verdict:
        """``Verified`` for a genuine token of ``purpose`` not expired at ``now``;
        ``Expired`` for a genuine one past its time; ``Invalid`` for anything forged,
        edited, malformed or made for the other purpose."""
        if len(token) > MAX_TOKEN_LENGTH:
            return INVALID
        try:
            raw = _unb64(token)
        except (ValueError, TypeError):
            return INVALID
        if len(raw) < _HEADER.size + _TAG + 1:
            return INVALID
        header, tag, sealed = raw[:_HEADER.size], raw[_HEADER.size:_HEADER.size + _TAG], \
            raw[_HEADER.size + _TAG:]
        version, kind, expires = _HEADER.unpack(header)
        if version != _VERSION:
            return INVALID
        for keys in (self._keys, self._previous):
            if keys is None:
                continue
            plain = _xor(sealed, _keystream(keys.enc, tag, len(sealed)))
            want = _mac(keys.mac, header + plain)[:_TAG]
            if hmac.compare_digest(want, tag):
                break
        else:
            return INVALID
        made_for = _BYTE_PURPOSE.get(kind)
        parts = plain.decode("utf-8", errors="replace").split(_SEP)
        if made_for != purpose or len(parts) != 3:
            return INVALID
        claims = LinkClaims(parts[0], parts[1], parts[2], made_for, expires)
        if now >= expires:
            return Expired(claims)
        return Verified(claims)

    def form_token(self, token: str) -> str:
        """The CSRF token of the preference form opened by ``token``: bound to that link
        (a form of another link, or none, is refused), stateless and cookie-free."""
        return _b64(_mac(self._keys.csrf, token.encode())[:_TAG])

    def form_token_ok(self, token: str, given: str) -> bool:
        for keys in (self._keys, self._previous):
            if keys is None:
                continue
            want = _b64(_mac(keys.csrf, token.encode())[:_TAG])
            if hmac.compare_digest(want.encode(), given.encode()):
                return True
        return False


def link_signer(public_url: str | None, secret: str | None,
                previous: str | None) -> LinkSigner | None:
    """Links are signed when both a public URL and a secret are given (worker, replay)."""
    if not (public_url and secret):
        return None
    return LinkSigner(public_url, secret.encode(), previous.encode() if previous else None)
