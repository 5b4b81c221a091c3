"""Messages between the three state scopes (session, customer, sku).

In ``tactful replay`` they are routed in-process; in the worker they travel on
internal topics keyed by the receiving scope's key. Either way the engine
sees the same messages in the same per-key order.
"""

from __future__ import annotations

import hashlib

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
    """All that is kept of an erased customer, under ``erasure_key``: when it happened and
    hashes of the event ids it had seen (so a redelivered input is still recognised)."""

    at: float
    seen: frozenset[str] = frozenset()


def event_hash(event_id: str) -> str:
    return hashlib.blake2b(event_id.encode(), digest_size=8, person=b"tactful-seen").hexdigest()


def erasure_key(customer_id: str) -> str:
    """A key that lets the runtime recognise an erased customer without storing the id."""
    digest = hashlib.blake2b(customer_id.encode(), digest_size=16, person=b"tactful-erased")
    return f"erased:{digest.hexdigest()}"


def session_erasure_key(session_id: str) -> str:
    """The same for an erased session (the session scope's own mark)."""
    return erasure_key(f"session\x1f{session_id}")


class EraseSession(Struct, gc=False, frozen=True, tag="erase_session"):
    session_id: str
    customer_id: str
    at: float


CustomerMessage = SessionFact | AdoptSession | SkuSignal
SessionMessage = EraseSession
InternalMessage = SessionFact | AdoptSession | SkuSignal | CartIndex | EraseSession
