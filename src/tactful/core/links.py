"""Signed one-click unsubscribe and preference links (RFC 8058 style).

A token names the customer, channel, topic and intent, and carries an HMAC
so a link cannot be forged or edited. Pure: the secret is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from tactful.core.outputs import Links


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_ALPHABET = re.compile(r"^[A-Za-z0-9_-]+$")


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
    topic: str
    intent_id: str


@dataclass(frozen=True, slots=True)
class LinkSigner:
    public_url: str
    secret: bytes

    def token(self, claims: LinkClaims) -> str:
        payload = "\x1f".join((claims.customer_id, claims.channel, claims.topic, claims.intent_id))
        raw = payload.encode()
        mac = hmac.new(self.secret, raw, hashlib.sha256).digest()[:16]
        return f"{_b64(raw)}.{_b64(mac)}"

    def verify(self, token: str) -> LinkClaims | None:
        """The claims of a genuine token; None for anything forged, edited or malformed."""
        try:
            body, mac = token.split(".", 1)
            raw = _unb64(body)
            given = _unb64(mac)
        except (ValueError, TypeError):
            return None
        want = hmac.new(self.secret, raw, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(want, given):
            return None
        parts = raw.decode("utf-8", errors="replace").split("\x1f")
        if len(parts) != 4:
            return None
        return LinkClaims(*parts)

    def links(self, claims: LinkClaims) -> Links:
        base = self.public_url.rstrip("/")
        token = self.token(claims)
        return Links(unsubscribe=f"{base}/u/{token}", preferences=f"{base}/p/{token}")
