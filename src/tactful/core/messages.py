"""Messages between the three state scopes (session, customer, sku).

In ``tactful replay`` they are routed in-process; in the worker they travel on
internal topics keyed by the receiving scope's key. Either way the engine
sees the same messages in the same per-key order.
"""

from __future__ import annotations

import hashlib
import hmac

from msgspec import Struct

from tactful.core.events import StorefrontEvents
from tactful.core.state import Cart, Views


class SessionFact(Struct, gc=False, frozen=True, tag="session_fact"):
    """A storefront event of a session bound to a verified customer."""

    customer_id: str
    session_id: str
    event: StorefrontEvents


class AdoptSession(Struct, gc=False, frozen=True, tag="adopt_session"):
    """A session just became verified: its cart and views become the customer's."""

    customer_id: str
    session_id: str
    carts: dict[str, Cart]
    views: dict[str, Views]
    at: float
    # Events the session took in before it was bound (their effects are in carts and
    # views): the customer counts them as seen, so that a repeat forwarded later by the
    # now bound session is not applied a second time.
    absorbed: list[str] = []


class SkuSignal(Struct, gc=False, frozen=True, tag="sku_signal"):
    """A stock or price change, for every customer holding the sku in a cart.

    The sku scope does not know who holds what: the runtime delivers the
    signal to each holder it indexed from ``CartIndex`` (in the worker, to
    every customer partition, which looks up its own holders).
    """

    sku: str
    signal: str  # low_stock | back_in_stock | price_change
    price: float | None
    event_id: str
    at: float


class CartIndex(Struct, gc=False, frozen=True, tag="cart_index"):
    """The customer started (holding=True) or stopped holding the sku in any cart.

    Kept by the runtime beside the customer's state (same key, same partition),
    never in the sku's state: the sku scope holds no customer ids.
    """

    sku: str
    customer_id: str
    holding: bool
    at: float


class ErasureMark(Struct, gc=False, frozen=True, tag="erasure_mark"):
    """All that is kept of an erased customer, under ``ErasureKeys.customer``: when it
    happened and keyed hashes of the event ids it had seen (so a redelivered input is
    still recognised). It expires after the policy's ``late_input_window``."""

    at: float
    seen: frozenset[str] = frozenset()


LOCAL_ERASURE_SECRET = b"tactful-local-erasure-key"  # replay and loopback-only workers


class ErasureKeys:
    """The keyed hashes (HMAC-SHA256) under which erasure marks are kept (SPEC §4.13).

    Without the secret, a mark cannot be tied to an id by hashing guesses. ``previous``
    is the secret before a rotation: marks written under it are still found (and
    ``lookups`` tries it second) until the late-input window has passed.
    """

    __slots__ = ("_secrets",)

    def __init__(self, secret: bytes, previous: bytes | None = None) -> None:
        if not secret:
            raise ValueError("the erasure secret must not be empty")
        self._secrets = (secret,) if not previous else (secret, previous)

    def _macs(self, label: bytes, value: str, size: int) -> tuple[str, ...]:
        data = label + b"\x1f" + value.encode()
        return tuple(hmac.new(s, data, hashlib.sha256).hexdigest()[:size] for s in self._secrets)

    def marks(self, scope: str, key: str) -> tuple[str, ...]:
        """The keys a mark of ``key`` (a customer id, or a session id for ``scope``
        "session") is stored under: the current secret's first, where new marks go."""
        return tuple("erased:" + m for m in self._macs(scope.encode(), key, 32))

    def mark(self, scope: str, key: str) -> str:
        return self.marks(scope, key)[0]

    def events(self, event_id: str) -> tuple[str, ...]:
        """A seen event id as a mark keeps it (ids may embed customer ids), current first."""
        return self._macs(b"seen", event_id, 16)


class EraseSession(Struct, gc=False, frozen=True, tag="erase_session"):
    session_id: str
    customer_id: str
    at: float


CustomerMessage = SessionFact | AdoptSession | SkuSignal
SessionMessage = EraseSession
InternalMessage = SessionFact | AdoptSession | SkuSignal | CartIndex | EraseSession
