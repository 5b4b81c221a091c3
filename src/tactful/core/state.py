"""Per-key state: plain records that serialize compactly (msgpack) and carry a schema version.

Three scopes, each the value of one changelogged table in the worker:
``SessionState`` (key: session_id), ``CustomerState`` (key: customer_id) and
``SkuState`` (key: sku). Pending triggers are data here (``*_due`` fields), so
they survive restarts and move with their partition.

The engine mutates the state object it is handed and returns it (or None
when the key must be deleted); callers own the object and persist it after.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from msgspec import Struct

SCHEMA_VERSION = 1


class CartLine(Struct, gc=False, omit_defaults=True):
    sku: str
    product_id: str
    qty: int
    price: float  # the price on the line's (latest) cart_add: price drops compare with it
    currency: str
    categories: list[str]


class Cart(Struct, gc=False, omit_defaults=True):
    lines: dict[str, CartLine]
    last_activity: float
    last_event_id: str
    abandoned_due: float | None = None  # pending abandoned_cart
    assist_due: float | None = None  # pending assist_offer


class Views(Struct, gc=False, omit_defaults=True):
    """Views of one product that may become a browse_abandonment trigger."""

    sku: str
    price: float
    currency: str
    categories: list[str]
    times: list[float]
    event_ids: list[str]
    sessions: list[str]  # the session of each view (parallel to times and event_ids)
    due: float | None = None


class PurchaseLine(Struct, gc=False, omit_defaults=True):
    """A line bought for oneself, that a post_purchase follow-up may build on."""

    sku: str
    qty: int
    price: float
    # From the buyer's cart or views at the purchase; None when tactful never saw the
    # sku's categories there: it cannot tell the line is not sensitive, so it never counts.
    categories: list[str] | None = None


class FollowUp(Struct, gc=False, omit_defaults=True):
    """A pending post_purchase: due ``delay`` after the latest purchase it builds on (a
    newer purchase before it fires supersedes it: one follow-up, the lines of both)."""

    order_id: str  # of the latest purchase: the trigger's target
    lines: list[PurchaseLine]
    event_ids: list[str]
    last_purchase: float
    due: float


class Consent(Struct, gc=False, omit_defaults=True):
    granted: bool
    at: float
    source: str
    expires_at: float | None = None


class Sent(Struct, gc=False, omit_defaults=True):
    """An intent this customer was sent: for caps, cooldowns, the ladder and cancellation."""

    intent_id: str
    kind: str
    channel: str
    created_at: float
    send_after: float
    target: str  # the cart (session id) or sku the cooldown is keyed by
    skus: list[str]
    cancelled: bool = False


class SessionState(Struct, gc=False, omit_defaults=True):
    session_id: str
    schema_version: int = SCHEMA_VERSION
    customer_id: str | None = None  # bound verified customer, never a guessed one
    last_seen: float = 0.0
    bound: list[str] = []  # every verified customer this session was bound to, for erasure
    seen: dict[str, float] = {}
    carts: dict[str, Cart] = {}
    views: dict[str, Views] = {}
    follow_up: FollowUp | None = None  # a purchase made before the session was bound
    # The events the last adoption handed to the customer (in its carts and views): a
    # repeat of one is not passed on, the customer has it already.
    absorbed: list[str] = []
    # Back after an erasure (as CustomerState): earlier inputs and repeats stay out.
    erased_at: float | None = None
    erased_seen: frozenset[str] = frozenset()


class Noted(Struct, gc=False, array_like=True):
    """An input the customer's timeline keeps (explain): its type and the channel or sku
    it was about."""

    at: float
    type: str
    detail: str | None = None


class Decided(Struct, gc=False, array_like=True):
    """A decision the customer's timeline keeps (explain); the full record is on the
    decisions topic."""

    at: float
    kind: str
    channel: str | None
    outcome: str
    reason: str | None
    intent_id: str | None = None


class CustomerState(Struct, gc=False, omit_defaults=True):
    customer_id: str
    schema_version: int = SCHEMA_VERSION
    seen: dict[str, float] = {}
    consents: dict[str, Consent] = {}
    blocked: dict[str, float] = {}  # channel -> when a sender said stop
    # channel -> (when a sender reported a bounce, until when the channel is not used)
    bounced: dict[str, tuple[float, float]] = {}
    timezone: str | None = None
    quiet: tuple[int, int] | None = None  # the customer's own no-contact period, minutes
    region: str | None = None  # ISO 3166 code: the calling rules of SPEC §4.5
    opt_out: list[str] = []
    opt_in: list[str] = []
    carts: dict[str, Cart] = {}  # keyed by session id
    views: dict[str, Views] = {}  # keyed by product id
    follow_up: FollowUp | None = None  # pending post_purchase
    gift_skus: list[str] = []
    gift_sessions: list[str] = []
    sent: list[Sent] = []
    sessions: list[str] = []  # sessions bound to this customer, for erasure
    # The latest inputs and decisions, as many as the policy keeps ([explain]).
    inputs: list[Noted] = []
    decisions: list[Decided] = []
    # Back after an erasure: inputs stamped before it, and repeats of the event ids it
    # had seen (hashes, kept for the dedup window), are still not applied.
    erased_at: float | None = None
    erased_seen: frozenset[str] = frozenset()


class SkuState(Struct, gc=False, omit_defaults=True):
    sku: str
    schema_version: int = SCHEMA_VERSION
    seen: dict[str, float] = {}
    available: int | None = None
    price: float | None = None


AnyState = SessionState | CustomerState | SkuState

_encoder = msgspec.msgpack.Encoder()
_decoders: dict[type[Any], msgspec.msgpack.Decoder[Any]] = {
    cls: msgspec.msgpack.Decoder(cls) for cls in (SessionState, CustomerState, SkuState)
}


def encode_state(state: AnyState) -> bytes:
    return _encoder.encode(state)


S = TypeVar("S", SessionState, CustomerState, SkuState)


def decode_state(cls: type[S], data: bytes) -> S:
    """Decode stored state, lifting older schema versions first (none exist yet)."""
    state: S = _decoders[cls].decode(data)
    if state.schema_version > SCHEMA_VERSION:
        raise ValueError(f"state written by a newer tactful (schema {state.schema_version})")
    return state
