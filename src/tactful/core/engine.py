"""The decision engine: folds events into per-key state and decides, with time passed in.

Three scopes, each keyed as its worker table is:

- **session** (``session_id``): dedup of storefront events, identity binding,
  and the cart and views of a session not (yet) tied to a verified customer —
  whose triggers are recorded as ``unverified_identity``;
- **customer** (``customer_id``): consent, preferences, carts, views, sent
  intents, pending triggers and every guardrail;
- **sku** (``sku``): stock level, price and which verified customers hold the
  sku in a cart, to fan stock and price changes out.

Every entry point takes the state (or None), the input, the event time ``t``
and an ``Outbox``; it returns the new state, or None when the key must be
deleted. Messages for another scope go to ``Outbox.internal``; the runtime
(in-process for replay, Kafka topics for the worker) delivers them.

``Engine`` is the one door: it holds the policy and keys, and the rules of
``tactful.core.rules`` do the work, one module per part of SPEC.
"""

from __future__ import annotations

from collections.abc import Callable

from tactful.core.events import PriceChange, StockLevel, StorefrontEvents
from tactful.core.links import LinkSigner
from tactful.core.messages import LOCAL_ERASURE_SECRET, EraseSession, ErasureKeys, ErasureMark
from tactful.core.outputs import TriggerKind
from tactful.core.policy import Policy
from tactful.core.rules import customer, session, sku, storefront, triggers
from tactful.core.rules.delivery import (
    CUSTOMER,
    ERASED,
    HOLDERS,
    INDEX,
    SESSION,
    SKU,
    Internal,
    Outbox,
)
from tactful.core.rules.erasure import admits, live_mark, mark_expired
from tactful.core.state import CustomerState, SessionState, SkuState

__all__ = [
    "CUSTOMER", "ERASED", "HOLDERS", "INDEX", "SESSION", "SKU", "Engine", "Internal", "Outbox",
]


class Engine:
    def __init__(self, policy: Policy, links: LinkSigner | None = None,
                 erasure: ErasureKeys | None = None) -> None:
        self.policy = policy
        self.links = links
        self.erasure = erasure or ErasureKeys(LOCAL_ERASURE_SECRET)

    def on_session(
        self, st: SessionState | None, ev: StorefrontEvents | EraseSession, t: float,
        out: Outbox, mark: ErasureMark | None = None,
    ) -> SessionState | None:
        """A storefront event (key: its session_id) or an erasure of the session.

        ``mark`` is the session's erasure mark, looked up by the runtime only when there
        is no state (as for ``on_customer``).
        """
        return session.on_session(self.policy, self.erasure, st, ev, t, out, mark)

    def advance_session(self, st: SessionState, now: float, out: Outbox) -> SessionState | None:
        return session.advance_session(self.policy, st, now, out)

    def on_customer(
        self, st: CustomerState | None, msg: object, t: float, out: Outbox,
        mark: ErasureMark | None = None,
    ) -> CustomerState | None:
        """A consent or feedback event, or a message from the session or sku scope.

        ``mark`` is the customer's erasure mark, which the runtime looks up only when
        there is no state: a customer who comes back keeps it in the new state.
        """
        return customer.on_customer(
            self.policy, self.links, self.erasure, st, msg, t, out, mark)

    def advance_customer(self, st: CustomerState, now: float, out: Outbox) -> CustomerState:
        return customer.advance_customer(self.policy, self.links, st, now, out)

    def on_sku(
        self, st: SkuState | None, msg: StockLevel | PriceChange, t: float, out: Outbox
    ) -> SkuState:
        return sku.on_sku(self.policy, st, msg, t, out)

    def next_due(self, st: SessionState | CustomerState | SkuState) -> float | None:
        """When this key next needs ``advance_*``; None when never (sku keys)."""
        return triggers.next_due(self.policy, st)

    def pending_triggers(
        self, st: SessionState | CustomerState
    ) -> list[tuple[float, TriggerKind, str]]:
        """Every trigger waiting in ``st``: (due, kind, cart session id or product id), in
        the order they would fire."""
        return triggers.due(st, float("inf"))

    def held_skus(self, st: CustomerState) -> set[str]:
        """Every sku the customer holds in some cart (to rebuild a holder index)."""
        return storefront.held_skus(st)

    def live_mark(self, scope: str, key: str, now: float,
                  get: Callable[[str], ErasureMark | None],
                  forget: Callable[[str], None]) -> ErasureMark | None:
        """The erasure mark of ``key`` (a customer id, or a session id for scope
        "session") in a runtime's store (``get`` by stored key), under the current secret
        or the previous one; one past the late-input window is ``forget``-ed on the way."""
        return live_mark(self.policy, self.erasure, scope, key, now, get, forget)

    def mark_expired(self, mark: ErasureMark, now: float) -> bool:
        """Whether ``mark`` is past the window in which a late input can still arrive:
        the runtime then deletes it and treats the key as never erased."""
        return mark_expired(self.policy, mark, now)

    def admits(self, mark: ErasureMark | None, msg: object, t: float) -> bool:
        """Whether a customer input may be applied after an erasure ``mark``: not one
        from before it, nor a repeat of an id seen before it."""
        return admits(self.erasure, mark, msg, t)
