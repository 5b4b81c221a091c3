"""Input events of SPEC §1 as typed, immutable records.

These Structs are the single definition of the input contract: the decoder
validates against them in one pass, and ``schemas/`` is generated from them
(a test keeps the checked-in files equal to the generated ones).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from operator import attrgetter
from typing import Annotated, Literal, cast

import msgspec
from msgspec import Meta, Struct

from tactful.core.limits import LIMITS

Channel = Literal["email", "sms", "push", "phone"]
CHANNELS: tuple[Channel, ...] = ("email", "sms", "push", "phone")
Topic = Literal["cart_reminders", "stock_alerts", "deals", "recommendations"]
IdentityMethod = Literal["login", "email_link", "cookie", "ip_match", "device_graph"]
VERIFIED_METHODS = frozenset({"login", "email_link"})

# Every bound comes from the one table of input limits (core/limits.py).
Ts = Annotated[datetime, Meta(tz=True, description="RFC 3339 timestamp with offset")]
# Ids and categories must also be printable and not only blanks: checked by the decoder
# (adapters/codec.py) with str.isprintable, far cheaper per field than a pattern.
Id = Annotated[str, Meta(min_length=1, max_length=LIMITS.max_id_length,
                         description="printable, not only blanks")]
Sku = Id
Qty = Annotated[int, Meta(ge=1, le=LIMITS.max_qty)]
Money = Annotated[float, Meta(ge=0, le=LIMITS.max_money)]
Currency = Annotated[str, Meta(pattern="^[A-Z]{3}$")]
HhMm = Annotated[str, Meta(pattern="^([01][0-9]|2[0-3]):[0-5][0-9]$")]
Region = Annotated[
    str, Meta(pattern="^[A-Z]{2}(-[A-Z0-9]{1,3})?$",
              description="ISO 3166-1 alpha-2 country or ISO 3166-2 subdivision, e.g. FR, US-FL")
]
Category = Annotated[
    str, Meta(min_length=1, max_length=LIMITS.max_category_length,
              description="printable, not only blanks")
]


class Identity(Struct, gc=False, frozen=True, forbid_unknown_fields=False):
    method: IdentityMethod


class Item(Struct, gc=False, frozen=True):
    sku: Sku
    qty: Qty
    price: Money


class QuietHours(Struct, gc=False, frozen=True):
    start: HhMm
    end: HhMm


class Event(Struct, gc=False, frozen=True, tag_field="type", kw_only=True):
    event_id: Id
    ts: Ts


# --- tactful.storefront (key: session_id) -----------------------------------


class StorefrontEvent(Event, frozen=True, kw_only=True):
    session_id: Id
    customer_id: Id | None = None
    identity: Identity | None = None


class ProductEvent(StorefrontEvent, frozen=True, kw_only=True):
    sku: Sku
    product_id: Id
    category: Annotated[list[Category], Meta(max_length=LIMITS.max_categories)]
    price: Money
    currency: Currency
    qty: Qty


class PageView(StorefrontEvent, frozen=True, kw_only=True, tag="page_view"):
    pass


class ProductView(ProductEvent, frozen=True, kw_only=True, tag="product_view"):
    pass


class CartAdd(ProductEvent, frozen=True, kw_only=True, tag="cart_add"):
    pass


class CartRemove(ProductEvent, frozen=True, kw_only=True, tag="cart_remove"):
    pass


class CheckoutStarted(StorefrontEvent, frozen=True, kw_only=True, tag="checkout_started"):
    pass


class Purchase(StorefrontEvent, frozen=True, kw_only=True, tag="purchase"):
    order_id: Id
    items: Annotated[list[Item], Meta(min_length=1, max_length=LIMITS.max_items)]
    gift: bool


class Login(StorefrontEvent, frozen=True, kw_only=True, tag="login"):
    pass


class Logout(StorefrontEvent, frozen=True, kw_only=True, tag="logout"):
    pass


# --- tactful.inventory (key: sku) --------------------------------------------


class StockLevel(Event, frozen=True, kw_only=True, tag="stock_level"):
    sku: Sku
    available: Annotated[int, Meta(ge=0, le=LIMITS.max_available)]


class PriceChange(Event, frozen=True, kw_only=True, tag="price_change"):
    sku: Sku
    price: Money
    currency: Currency


# --- tactful.consent (key: customer_id) ---------------------------------------


class CustomerEvent(Event, frozen=True, kw_only=True):
    customer_id: Id


class ConsentGranted(CustomerEvent, frozen=True, kw_only=True, tag="consent_granted"):
    channel: Channel
    source: Id
    expires_at: Ts | None = None


class ConsentRevoked(CustomerEvent, frozen=True, kw_only=True, tag="consent_revoked"):
    channel: Channel
    source: Id
    expires_at: Ts | None = None


class PreferencesSet(CustomerEvent, frozen=True, kw_only=True, tag="preferences_set"):
    timezone: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    topics_opt_out: Annotated[list[Topic], Meta(max_length=LIMITS.max_topics_opt_out)] | None = (
        None
    )
    topics_opt_in: Annotated[list[Category], Meta(max_length=LIMITS.max_topics_opt_in)] | None = (
        None
    )
    quiet_hours: QuietHours | None = None
    # Where the shopper lives, for the calling rules of SPEC §4.5: an assigned ISO 3166-1
    # alpha-2 country or ISO 3166-2 subdivision (checked by the decoder).
    region: Region | None = None


class EraseRequested(CustomerEvent, frozen=True, kw_only=True, tag="erase_requested"):
    pass


# --- tactful.feedback (key: customer_id) --------------------------------------


class FeedbackEvent(CustomerEvent, frozen=True, kw_only=True):
    channel: Channel
    intent_id: Id | None = None


class Delivered(FeedbackEvent, frozen=True, kw_only=True, tag="delivered"):
    pass


class Opened(FeedbackEvent, frozen=True, kw_only=True, tag="opened"):
    pass


class Clicked(FeedbackEvent, frozen=True, kw_only=True, tag="clicked"):
    pass


class Bounced(FeedbackEvent, frozen=True, kw_only=True, tag="bounced"):
    pass


class Complained(FeedbackEvent, frozen=True, kw_only=True, tag="complained"):
    pass


class Unsubscribed(FeedbackEvent, frozen=True, kw_only=True, tag="unsubscribed"):
    pass


class DoNotContact(FeedbackEvent, frozen=True, kw_only=True, tag="do_not_contact"):
    pass


StorefrontEvents = (
    PageView | ProductView | CartAdd | CartRemove | CheckoutStarted | Purchase | Login | Logout
)
InventoryEvents = StockLevel | PriceChange
ConsentEvents = ConsentGranted | ConsentRevoked | PreferencesSet | EraseRequested
FeedbackEvents = Delivered | Opened | Clicked | Bounced | Complained | Unsubscribed | DoNotContact
AnyEvent = StorefrontEvents | InventoryEvents | ConsentEvents | FeedbackEvents

# Input topics (default names) and the event types each carries, in SPEC order.
TOPIC_TYPES: dict[str, tuple[type[Event], ...]] = {
    "storefront": (
        PageView, ProductView, CartAdd, CartRemove, CheckoutStarted, Purchase, Login, Logout,
    ),
    "inventory": (StockLevel, PriceChange),
    "consent": (ConsentGranted, ConsentRevoked, PreferencesSet, EraseRequested),
    "feedback": (Delivered, Opened, Clicked, Bounced, Complained, Unsubscribed, DoNotContact),
}
# Which field of an event is its Kafka key, per input topic.
TOPIC_KEY_FIELD: dict[str, str] = {
    "storefront": "session_id",
    "inventory": "sku",
    "consent": "customer_id",
    "feedback": "customer_id",
}
TYPE_TOPIC: dict[str, str] = {
    msgspec.inspect.type_info(cls).tag: topic  # type: ignore[attr-defined]
    for topic, classes in TOPIC_TYPES.items()
    for cls in classes
}
EVENT_TYPES: dict[str, type[Event]] = {
    msgspec.inspect.type_info(cls).tag: cls  # type: ignore[attr-defined]
    for classes in TOPIC_TYPES.values()
    for cls in classes
}


def topic_of(event: Event) -> str:
    """The input topic (short name) an event belongs to."""
    return TYPE_TOPIC[type_of(event)]


def type_of(event: Event) -> str:
    return event.__struct_config__.tag  # type: ignore[return-value]


def key_of(event: Event) -> str:
    """The Kafka key SPEC §1 gives the event."""
    value: str = getattr(event, TOPIC_KEY_FIELD[topic_of(event)])
    return value


def verified_customer(event: StorefrontEvent) -> str | None:
    """The customer id of a storefront event when its identity is verified, else None."""
    identity = event.identity
    if event.customer_id is not None and identity is not None:
        return event.customer_id if identity.method in VERIFIED_METHODS else None
    return None


# The free-text fields of each event type (ids, sources, categories), for the decoder's
# printable check; list fields hold strings, ``items`` holds Items.
TEXT_SINGLE_FIELDS = (
    "event_id", "session_id", "customer_id", "sku", "product_id", "order_id", "source",
    "intent_id",
)
_TEXT_LISTS = ("category", "topics_opt_in")


def _getter(names: tuple[str, ...]) -> Callable[[Event], tuple[str | None, ...]]:
    """The named attributes as a tuple, in one C call."""
    get = attrgetter(*names)
    if len(names) == 1:
        def one(event: Event) -> tuple[str | None, ...]:
            return (cast(str | None, get(event)),)
        return one
    return cast(Callable[[Event], tuple[str | None, ...]], get)


TEXT_FIELDS: dict[type[Event], tuple[Callable[[Event], tuple[str | None, ...]], tuple[str, ...]]]
TEXT_FIELDS = {
    cls: (_getter(tuple(f for f in TEXT_SINGLE_FIELDS if f in cls.__struct_fields__)),
          tuple(f for f in _TEXT_LISTS if f in cls.__struct_fields__))
    for cls in EVENT_TYPES.values()
}
