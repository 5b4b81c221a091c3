"""Engine bugs the property tests found, as minimal deterministic stories.

Each test is expected to FAIL until the engine is fixed; the expectation comes from
SPEC.md §1 ("event_id ... unique: a repeated id is processed once") and §4.13 (erasure).
"""

from __future__ import annotations

import io

import orjson
from checker import Run, check_blocks, check_consent, check_verified

from tactful.core.engine import Engine
from tactful.core.policy import load_policy
from tactful.service.replay import replay_lines

GRANT = {
    "event_id": "g1",
    "ts": "2026-06-01T12:00:00Z",
    "type": "consent_granted",
    "customer_id": "c1",
    "channel": "email",
    "source": "signup",
}
ERASE = {
    "event_id": "x1",
    "ts": "2026-06-01T12:01:00Z",
    "type": "erase_requested",
    "customer_id": "c1",
}
LOGIN = {
    "event_id": "l1",
    "ts": "2026-06-01T12:02:00Z",
    "type": "login",
    "session_id": "s1",
    "customer_id": "c1",
    "identity": {"method": "login"},
}
CART = {
    "event_id": "a1",
    "ts": "2026-06-01T12:03:00Z",
    "type": "cart_add",
    "session_id": "s1",
    "customer_id": "c1",
    "identity": {"method": "login"},
    "sku": "k-lamp",
    "product_id": "p-lamp",
    "category": ["home"],
    "price": 40.0,
    "currency": "USD",
    "qty": 1,
}


def replay(events: list[dict[str, object]]) -> Run:
    lines = [orjson.dumps(e) for e in events]
    intents, decisions = io.BytesIO(), io.BytesIO()
    stats = replay_lines(lines, Engine(load_policy()), intents, decisions)
    assert stats.rejected == 0
    return Run.from_bytes(lines, intents.getvalue(), decisions.getvalue())


def test_redelivered_consent_after_erasure_does_not_regrant() -> None:
    """Kafka redelivers g1 (same event_id, at-least-once) after the customer was erased.
    SPEC §1: a repeated id is processed once, so c1 has no consent and gets nothing.
    Engine: the erasure also forgot the dedup memory, g1 is applied again and c1 (who
    asked to be forgotten) gets an abandoned_cart email."""
    redelivered = {**GRANT, "ts": "2026-06-01T12:02:00Z"}
    later = [{**e, "ts": e["ts"].replace("12:0", "12:1")} for e in (LOGIN, CART)]
    run = replay([GRANT, ERASE, redelivered, *later])
    assert run.intents == [], run.intents
    assert check_consent(run) == [] and check_blocks(run) == []


def test_redelivered_storefront_event_after_erasure_is_not_reapplied() -> None:
    """c1 logs in and carts a lamp, then is erased; the tracker redelivers a1 (same
    event_id). The repeat must be dropped (SPEC §1), so nothing more is decided about c1.
    Engine: a1 is applied again, rebuilding the erased customer's cart, and an
    abandoned_cart decision is written under c1's id (no consent, so suppressed)."""
    redelivered = {**CART, "ts": "2026-06-01T13:00:00Z"}
    erase = {**ERASE, "ts": "2026-06-01T12:30:00Z"}
    run = replay([GRANT, LOGIN, CART, erase, redelivered])
    about_c1 = [
        d for d in run.decisions if d["customer_id"] == "c1" and d["outcome"] != "cancelled"
    ]
    assert about_c1 == [], about_c1
    assert check_verified(run) == []


def test_event_id_reused_under_another_key_is_processed_once() -> None:
    """SPEC §1: event_id is unique and a repeated id is processed once. Engine: the dedup
    memory is per Kafka key (session / customer / sku), so the same id under another key
    is applied again - here a second cart line."""
    other = {
        **CART,
        "event_id": "g1",
        "sku": "k-tv",
        "product_id": "p-tv",
        "ts": "2026-06-01T12:04:00Z",
    }
    run = replay([GRANT, LOGIN, CART, other])
    items = [i["sku"] for r in run.intents for i in r["items"]]
    assert items == ["k-lamp"], items


def test_erasure_unbinds_a_session_verified_by_a_page_view() -> None:
    """c1 is verified on device s4 by a page_view (semantics.md: any storefront event with
    login/email_link binds the session), then erased - SPEC §4.13 deletes the customer's
    state "and their sessions". c1 later signs up again (new consent) and someone adds to
    the cart on s4 without any identity. s4 is no longer c1's: the abandoned_cart must be
    suppressed as unverified_identity (customer_id null), and c1 must get nothing.
    Engine: the page_view binding survives the erasure and c1 gets the email. (A `login`,
    `product_view`, `checkout_started` or `logout` in place of the page_view is erased.)"""
    view = {
        "event_id": "v1",
        "ts": "2026-06-01T12:00:00Z",
        "type": "page_view",
        "session_id": "s4",
        "customer_id": "c1",
        "identity": {"method": "login"},
    }
    erase = {**ERASE, "ts": "2026-06-01T12:10:00Z"}
    regrant = {**GRANT, "event_id": "g2", "ts": "2026-06-01T12:20:00Z"}
    anonymous_cart = {k: v for k, v in CART.items() if k not in ("customer_id", "identity")}
    anonymous_cart.update(session_id="s4", ts="2026-06-01T12:30:00Z")
    run = replay([view, erase, regrant, anonymous_cart])
    assert run.intents == [], run.intents
    assert [(d["customer_id"], d["reason"]) for d in run.decisions] == [
        (None, "unverified_identity")
    ]
    assert check_verified(run) == []
