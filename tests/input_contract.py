"""SPEC §1's input contract as tables, written from the spec (not read from the code
under test): the topic and key field of each event type, and the fields each type
requires beside ``event_id``, ``type`` and ``ts``. The hostile-input drill
(tests/drills/test_hostile_fuzz.py) builds its bad records from them; the atheris
fuzzer (fuzz/) holds what the codec accepts to them."""

from __future__ import annotations

STOREFRONT = ("page_view", "product_view", "cart_add", "cart_remove", "checkout_started",
              "purchase", "login", "logout")
INVENTORY = ("stock_level", "price_change")
CONSENT = ("consent_granted", "consent_revoked", "preferences_set", "erase_requested")
FEEDBACK = ("delivered", "opened", "clicked", "bounced", "complained", "unsubscribed",
            "do_not_contact")
# Per input topic (short name): its key field and the types it carries.
TOPICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "storefront": ("session_id", STOREFRONT),
    "inventory": ("sku", INVENTORY),
    "consent": ("customer_id", CONSENT),
    "feedback": ("customer_id", FEEDBACK),
}
# Per type: its topic and key field.
TOPIC_KEY = {t: (topic, key) for topic, (key, types) in TOPICS.items() for t in types}
REQUIRED = {
    **{t: ("session_id",) for t in STOREFRONT},
    "cart_add": ("session_id", "sku", "price", "qty"), "purchase": ("session_id", "items"),
    "stock_level": ("sku", "available"), "price_change": ("sku", "price"),
    "consent_granted": ("customer_id", "channel"), "consent_revoked": ("customer_id", "channel"),
    "preferences_set": ("customer_id",), "erase_requested": ("customer_id",),
    **{t: ("customer_id", "channel") for t in FEEDBACK if t != "do_not_contact"},
    "do_not_contact": ("customer_id",),
}
KNOWN_TYPES = set(TOPIC_KEY)
