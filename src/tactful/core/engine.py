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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeVar, cast

from tactful.core.events import (
    CHANNELS,
    Bounced,
    CartAdd,
    CartRemove,
    CheckoutStarted,
    Clicked,
    Complained,
    ConsentGranted,
    ConsentRevoked,
    Delivered,
    DoNotContact,
    EraseRequested,
    Event,
    Login,
    Logout,
    Opened,
    PageView,
    PreferencesSet,
    PriceChange,
    ProductView,
    Purchase,
    StockLevel,
    StorefrontEvent,
    StorefrontEvents,
    Unsubscribed,
    type_of,
    verified_customer,
)
from tactful.core.guardrails import Check, Firing, judge
from tactful.core.links import LinkSigner
from tactful.core.messages import (
    LOCAL_ERASURE_SECRET,
    AdoptSession,
    CartIndex,
    EraseSession,
    ErasureKeys,
    ErasureMark,
    SessionFact,
    SkuSignal,
)
from tactful.core.outputs import (
    DEFERRED_REASON,
    Cancellation,
    ConsentRef,
    ContactIntent,
    Decision,
    IntentItem,
    Reason,
    TriggerKind,
    iso,
    stable_id,
)
from tactful.core.policy import KINDS, Policy
from tactful.core.quiet_hours import hhmm_minutes
from tactful.core.state import (
    Cart,
    CartLine,
    Consent,
    CustomerState,
    Decided,
    FollowUp,
    Noted,
    PurchaseLine,
    Sent,
    SessionState,
    SkuState,
    Views,
)

SESSION, CUSTOMER, SKU = "session", "customer", "sku"
# ERASED stores an ErasureMark under ErasureKeys.mark(...): no id, only a keyed hash.
ERASED = "erased"
# Not scopes with state: HOLDERS delivers a SkuSignal to every customer holding the sku;
# INDEX updates that holder index (key: sku, message: CartIndex).
HOLDERS, INDEX = "holders", "index"
_KIND_ORDER = {kind: i for i, kind in enumerate(KINDS)}
_CART_EVENTS = (CartAdd, CartRemove, CheckoutStarted, Purchase)
_S = TypeVar("_S", SessionState, CustomerState)
_NOT_FORWARDED = (PageView, Logout)
_NO_EFFECT = (Delivered, Opened, Clicked, Bounced)  # nothing to do for an unknown customer
_CART_KINDS = frozenset({"abandoned_cart", "assist_offer"})
_SKU_KINDS = frozenset({"low_stock", "back_in_stock", "price_drop"})

Internal = tuple[str, str, object]  # (scope, key, message)
Holder = SessionState | CustomerState


class Outbox:
    """What one step produced, in emission order."""

    __slots__ = ("decisions", "intents", "internal")

    def __init__(self) -> None:
        self.intents: list[tuple[str, ContactIntent | Cancellation]] = []
        self.decisions: list[tuple[str, Decision]] = []
        self.internal: list[Internal] = []

    def clear(self) -> None:
        """Drop everything: after it is sent, or when the step that made it failed."""
        self.intents.clear()
        self.decisions.clear()
        self.internal.clear()


class Engine:
    def __init__(self, policy: Policy, links: LinkSigner | None = None,
                 erasure: ErasureKeys | None = None) -> None:
        self.policy = policy
        self.links = links
        self.erasure = erasure or ErasureKeys(LOCAL_ERASURE_SECRET)
        self._abandoned = policy.triggers["abandoned_cart"]
        self._assist = policy.triggers["assist_offer"]
        self._browse = policy.triggers["browse_abandonment"]
        self._post = policy.triggers["post_purchase"]

    # ------------------------------------------------------------------ session

    def on_session(
        self, st: SessionState | None, ev: StorefrontEvents | EraseSession, t: float,
        out: Outbox, mark: ErasureMark | None = None,
    ) -> SessionState | None:
        """A storefront event (key: its session_id) or an erasure of the session.

        ``mark`` is the session's erasure mark, looked up by the runtime only when there
        is no state (as for ``on_customer``).
        """
        if isinstance(ev, EraseSession):
            if st is not None and ev.customer_id in st.bound:
                # Forget the session, but not what it had seen: a redelivered event of
                # the erased customer must not bind the session again.
                seen = self._seen_hashes(st.seen) | st.erased_seen
                if st.follow_up is not None:
                    # A purchase made before the session was bound: its follow-up ends too.
                    self._decide_record(
                        out, None, st.session_id, "post_purchase", None, "cancelled", "erased",
                        t, st.follow_up.event_ids,
                    )
                out.internal.append(
                    (ERASED, self.erasure.mark("session", st.session_id), ErasureMark(t, seen))
                )
                return None
            return st
        if not self._admitted(st, mark, ev, t):
            return st
        return self._revived(self._on_session(st, ev, t, out), st, mark)

    def _on_session(
        self, st: SessionState | None, ev: StorefrontEvents, t: float, out: Outbox
    ) -> SessionState | None:
        if st is None:
            st = SessionState(ev.session_id)
        if not self._first_time(st.seen, ev.event_id, t):
            # A repeat changes nothing here, but a bound session passes it on again: after a
            # crash the first forward may be the part that was lost. The customer side
            # drops it if it did arrive (it deduplicates by event_id too).
            if st.customer_id is not None and not isinstance(ev, _NOT_FORWARDED):
                fact = SessionFact(st.customer_id, st.session_id, ev)
                out.internal.append((CUSTOMER, st.customer_id, fact))
            return st
        st.last_seen = max(st.last_seen, t)
        if isinstance(ev, Logout):
            st.customer_id = None
            return st
        verified = verified_customer(ev)
        binding = verified is not None and verified != st.customer_id
        if verified is not None and binding:
            st.customer_id = verified
            if verified not in st.bound:
                st.bound.append(verified)
            if st.carts or st.views:
                absorbed = [e for e in st.seen if e != ev.event_id]
                adopt = AdoptSession(verified, st.session_id, st.carts, st.views, t, absorbed)
                out.internal.append((CUSTOMER, verified, adopt))
                st.carts = {}
                st.views = {}
        if st.customer_id is not None:
            # The event that binds the session always goes: the customer must know every
            # session tied to it, so that erasure reaches them all.
            if binding or not isinstance(ev, _NOT_FORWARDED):
                fact = SessionFact(st.customer_id, st.session_id, ev)
                out.internal.append((CUSTOMER, st.customer_id, fact))
            return st
        self._activity(st, None, st.session_id, ev, t, out)
        return st

    def advance_session(self, st: SessionState, now: float, out: Outbox) -> SessionState | None:
        if st.erased_seen and now > (st.erased_at or 0.0) + self.policy.dedup_window:
            st.erased_seen = frozenset()  # no redelivery is that late
        for due, kind, target in self._due(st, now):
            self._fire_unverified(st, kind, target, due, out)
        self._tidy_views(st, now)
        if now >= st.last_seen + self.policy.session_ttl and not self._pending(st):
            return None
        return st

    def _fire_unverified(
        self, st: SessionState, kind: str, target: str, due: float, out: Outbox
    ) -> None:
        firing = self._take_firing(st, kind, target, due)
        if firing is None:
            return
        reason: Reason = (
            "unverified_identity" if self.policy.triggers[kind].channels else "no_channel"
        )
        self._decide_record(
            out, None, st.session_id, kind, None, "suppressed", reason, due, firing.event_ids
        )

    # ----------------------------------------------------------------- customer

    def on_customer(
        self, st: CustomerState | None, msg: object, t: float, out: Outbox,
        mark: ErasureMark | None = None,
    ) -> CustomerState | None:
        """A consent or feedback event, or a message from the session or sku scope.

        ``mark`` is the customer's erasure mark, which the runtime looks up only when
        there is no state: a customer who comes back keeps it in the new state.
        """
        if st is None:
            if mark is not None and not self.admits(mark, msg, t):
                return None
            if isinstance(msg, EraseRequested):
                # Nothing is held: only the mark is written, so that inputs stamped before
                # the request (arriving late) stay out all the same.
                seen = mark.seen if mark is not None else frozenset()
                out.internal.append(
                    (ERASED, self.erasure.mark("customer", msg.customer_id), ErasureMark(t, seen))
                )
                return None
        if not self._admitted(st, mark, msg, t):
            return st
        before = len(out.decisions)
        kept = self._revived(self._on_customer(st, msg, t, out), st, mark)
        if kept is not None:
            self._note_decisions(kept, out, before)
        return kept

    def _admitted(
        self, st: SessionState | CustomerState | None, mark: ErasureMark | None,
        msg: object, t: float,
    ) -> bool:
        """Whether an input may be applied after an erasure: checked against the stored mark
        when there is no state, and against the mark a revived state carries."""
        if st is None:
            return mark is None or self.admits(mark, msg, t)
        if st.erased_at is None:
            return True
        return self.admits(ErasureMark(st.erased_at, st.erased_seen), msg, t)

    @staticmethod
    def _revived(kept: _S | None, st: object, mark: ErasureMark | None) -> _S | None:
        """A state created after an erasure carries its mark."""
        if st is None and mark is not None and kept is not None:
            kept.erased_at, kept.erased_seen = mark.at, mark.seen
        return kept

    def _on_customer(
        self, st: CustomerState | None, msg: object, t: float, out: Outbox
    ) -> CustomerState | None:
        # Messages from other scopes are deduplicated too: the worker delivers at least once.
        if isinstance(msg, SessionFact):
            st = st or CustomerState(msg.customer_id)
            if not self._first_time(st.seen, msg.event.event_id, t):
                return st
            self._note(st, t, type_of(msg.event), getattr(msg.event, "sku", None))
            self._note_session(st, msg.session_id, t)
            if not isinstance(msg.event, Login):
                self._activity(st, st, msg.session_id, msg.event, t, out)
            return st
        if isinstance(msg, SkuSignal):
            if st is not None and self._first_time(st.seen, f"{msg.event_id}\x1f{msg.sku}", t):
                self._note(st, t, msg.signal, msg.sku)
                self._sku_signal(st, msg, out)
            return st
        if isinstance(msg, AdoptSession):
            st = st or CustomerState(msg.customer_id)
            if self._first_time(st.seen, f"adopt\x1f{msg.session_id}\x1f{msg.at}", t):
                self._adopt(st, msg, out)
            return st
        assert isinstance(msg, Event)
        customer_id: str = msg.customer_id  # type: ignore[attr-defined]
        if st is None:
            if isinstance(msg, (EraseRequested, *_NO_EFFECT)):
                return None  # nothing stored, nothing to erase or note
            st = CustomerState(customer_id)
        if not self._first_time(st.seen, msg.event_id, t):
            return st
        self._note(st, t, type_of(msg), getattr(msg, "channel", None))
        if isinstance(msg, ConsentGranted | ConsentRevoked):
            known = st.consents.get(msg.channel)
            if isinstance(msg, ConsentGranted):
                # A late grant stamped before what is known changes nothing.
                if known is not None and known.at > t:
                    return st
                expires = msg.expires_at.timestamp() if msg.expires_at is not None else None
                st.consents[msg.channel] = Consent(True, t, msg.source, expires)
                if st.blocked.get(msg.channel, t) <= t:
                    st.blocked.pop(msg.channel, None)
                # The shopper gave the address again (or a corrected one): a bounce before
                # the grant no longer holds the channel back.
                bounce = st.bounced.get(msg.channel)
                if bounce is not None and bounce[0] <= t:
                    del st.bounced[msg.channel]
            else:
                # A "stop" always applies when it arrives, whatever its stamp says (a grant
                # from a system with a clock ahead must not outrank it); it counts from the
                # latest moment known, so no grant stamped before it revives the channel.
                at = t if known is None else max(t, known.at)
                st.consents[msg.channel] = Consent(False, at, msg.source)
                self._withdraw(st, {msg.channel}, "no_consent", t, msg.event_id, out)
        elif isinstance(msg, PreferencesSet):
            self._preferences(st, msg)
        elif isinstance(msg, Complained | Unsubscribed):
            st.blocked[msg.channel] = max(t, st.blocked.get(msg.channel, t))
            self._withdraw(st, {msg.channel}, "do_not_contact", t, msg.event_id, out)
        elif isinstance(msg, Bounced):
            self._bounce(st, msg, t, out)
        elif isinstance(msg, DoNotContact):
            for channel in CHANNELS:
                st.blocked[channel] = max(t, st.blocked.get(channel, t))
            self._withdraw(st, set(CHANNELS), "do_not_contact", t, msg.event_id, out)
        elif isinstance(msg, EraseRequested):
            self._erase(st, t, msg.event_id, out)
            return None
        return st

    def advance_customer(self, st: CustomerState, now: float, out: Outbox) -> CustomerState:
        before = len(out.decisions)
        for due, kind, target in self._due(st, now):
            firing = self._take_firing(st, kind, target, due)
            if firing is not None:
                self._decide(st, firing, max(now, due) if due < now else due, out)
        self._tidy(st, now, out)
        self._note_decisions(st, out, before)
        return st

    # ---------------------------------------------------------------- timeline

    def _note(self, st: CustomerState, t: float, type_: str, detail: str | None) -> None:
        """Keep an input in the customer's timeline (explain), the latest few only."""
        keep = self.policy.explain_inputs
        if keep:
            st.inputs.append(Noted(t, type_, detail))
            if len(st.inputs) > keep:
                del st.inputs[:-keep]

    def _note_decisions(self, st: CustomerState, out: Outbox, start: int) -> None:
        """Keep the decisions about this customer that a step made since ``start``."""
        keep = self.policy.explain_decisions
        if not keep or len(out.decisions) == start:
            return
        for key, d in out.decisions[start:]:
            if key == st.customer_id:
                at = datetime.fromisoformat(d.at).timestamp()  # decisions are few
                st.decisions.append(
                    Decided(at, d.kind, d.channel, d.outcome, d.reason, d.intent_id))
        if len(st.decisions) > keep:
            del st.decisions[:-keep]

    # --------------------------------------------------------------------- sku

    def on_sku(
        self, st: SkuState | None, msg: StockLevel | PriceChange, t: float, out: Outbox
    ) -> SkuState:
        st = st or SkuState(msg.sku)
        if not self._first_time(st.seen, msg.event_id, t):
            return st
        if isinstance(msg, StockLevel):
            before, st.available = st.available, msg.available
            signal = None
            threshold = self.policy.low_stock_threshold
            if before is not None and before > threshold >= msg.available:
                signal = "low_stock"
            elif before == 0 and msg.available > 0:
                signal = "back_in_stock"
            if signal is not None:
                sig = SkuSignal(st.sku, signal, None, msg.event_id, t)
                out.internal.append((HOLDERS, st.sku, sig))
        else:
            before_price, st.price = st.price, msg.price
            if before_price is None or msg.price < before_price:
                sig = SkuSignal(st.sku, "price_change", msg.price, msg.event_id, t)
                out.internal.append((HOLDERS, st.sku, sig))
        return st

    # ------------------------------------------------------------------ timers

    def next_due(self, st: SessionState | CustomerState | SkuState) -> float | None:
        """When this key next needs ``advance_*``; None when never (sku keys)."""
        if isinstance(st, SkuState):
            return None
        # One pass, no lists: this runs after every event (see BENCHMARKS.md).
        ttl = self.policy.session_ttl
        best = st.last_seen + ttl if isinstance(st, SessionState) else float("inf")
        forgets_carts = isinstance(st, CustomerState)  # a session forgets them with itself
        for cart in st.carts.values():
            due = cart.abandoned_due
            if due is not None and due < best:
                best = due
            due = cart.assist_due
            if due is not None and due < best:
                best = due
            if forgets_carts and cart.abandoned_due is None and cart.assist_due is None:
                best = min(best, cart.last_activity + ttl)
        for views in st.views.values():
            due = views.due
            if due is not None and due < best:
                best = due
        if st.follow_up is not None and st.follow_up.due < best:
            best = st.follow_up.due
        return None if best == float("inf") else best

    def pending_triggers(self, st: Holder) -> list[tuple[float, str, str]]:
        """Every trigger waiting in ``st``: (due, kind, cart session id or product id), in
        the order they would fire."""
        return self._due(st, float("inf"))

    def _pending_list(self, st: Holder) -> list[tuple[float, str, str]]:
        pending: list[tuple[float, str, str]] = []
        for sid, cart in st.carts.items():
            if cart.abandoned_due is not None:
                pending.append((cart.abandoned_due, "abandoned_cart", sid))
            if cart.assist_due is not None:
                pending.append((cart.assist_due, "assist_offer", sid))
        for pid, views in st.views.items():
            if views.due is not None:
                pending.append((views.due, "browse_abandonment", pid))
        if st.follow_up is not None:
            pending.append((st.follow_up.due, "post_purchase", st.follow_up.order_id))
        return pending

    def _pending(self, st: Holder) -> bool:
        return bool(self._pending_list(st))

    def _due(self, st: Holder, now: float) -> list[tuple[float, str, str]]:
        due = [p for p in self._pending_list(st) if p[0] <= now]
        due.sort(key=lambda p: (p[0], _KIND_ORDER[p[1]], p[2]))
        return due

    def _take_firing(self, st: Holder, kind: str, target: str, due: float) -> Firing | None:
        """Clear the pending trigger and describe it; None when it does not fire after all."""
        if kind == "post_purchase":
            return self._take_follow_up(st, due)
        if kind == "browse_abandonment":
            views = st.views.pop(target)
            item = (views.sku, 1, views.price, views.categories)
            return Firing(
                kind, views.sku, [item], list(views.event_ids), due, views.times[-1],
                tuple(dict.fromkeys(views.sessions)),
            )
        cart = st.carts[target]
        items = [(ln.sku, ln.qty, ln.price, ln.categories) for ln in cart.lines.values()]
        firing = Firing(kind, target, items, [cart.last_event_id], due, cart.last_activity,
                        (target,))
        if kind == "abandoned_cart":
            cart.abandoned_due = None
            return firing
        cart.assist_due = None
        if not isinstance(st, CustomerState) or not self._ladder_ready(st, cart, target, due):
            return None
        return firing

    def _take_follow_up(self, st: Holder, due: float) -> Firing:
        """The post_purchase due now. Its items are the lines it may build on: a line whose
        categories tactful never saw is left out (it cannot tell the line is not sensitive),
        and so is a sku the customer ever bought as a gift (SPEC §4.10). When every known
        line was a gift they stay, so that guardrail 10 names the reason (gift_excluded);
        sensitive lines are left out by the guardrails as for every trigger."""
        follow_up = st.follow_up
        assert follow_up is not None
        st.follow_up = None
        gifted = st.gift_skus if isinstance(st, CustomerState) else []
        known = [ln for ln in follow_up.lines if ln.categories is not None]
        lines = [ln for ln in known if ln.sku not in gifted] or known
        items = [(ln.sku, ln.qty, ln.price, ln.categories or []) for ln in lines]
        # No sessions: a purchase marked as not a gift is the shopper's own, wherever it was.
        return Firing("post_purchase", follow_up.order_id, items, list(follow_up.event_ids),
                      due, follow_up.last_purchase)

    def _ladder_ready(self, st: CustomerState, cart: Cart, target: str, due: float) -> bool:
        """assist_offer fires only for a big cart after a cart reminder went out long enough
        ago on a channel that counts (the email-first ladder, SPEC §3)."""
        latest = due - self.policy.assist_after_reminder
        return any(s.send_after <= latest for s in self._reminders(st, target, cart))

    def _reminders(self, st: CustomerState, target: str, cart: Cart) -> list[Sent]:
        """The live cart reminders that can lead to a call: this idle period's abandoned_cart
        intents for the cart, not cancelled, on a channel of ``reminder_channels``; none
        when the cart is too small to call about."""
        if self._cart_value(st, cart) < self.policy.assist_min_cart_value:
            return []
        channels = self.policy.assist_reminder_channels
        return [
            s for s in st.sent
            if s.kind == "abandoned_cart" and s.target == target and not s.cancelled
            and s.channel in channels and s.created_at >= cart.last_activity
        ]

    # ----------------------------------------------------------- shopper activity

    def _activity(
        self,
        st: Holder,
        customer: CustomerState | None,
        sid: str,
        ev: StorefrontEvent,
        t: float,
        out: Outbox,
    ) -> None:
        """Cart and browse activity, shared by unbound sessions and customers."""
        if isinstance(ev, ProductView):
            self._view(st, ev, sid, t)
        elif isinstance(ev, CartAdd):
            cart = st.carts.get(sid)
            if cart is None:
                cart = st.carts[sid] = Cart({}, t, ev.event_id)
            line = cart.lines.get(ev.sku)
            if line is None:
                newly_held = customer is not None and not self._holds(customer, ev.sku)
                cart.lines[ev.sku] = CartLine(
                    ev.sku, ev.product_id, ev.qty, ev.price, ev.currency, list(ev.category)
                )
                if newly_held and customer is not None:
                    self._index(customer, ev.sku, True, t, out)
            else:
                line.qty += ev.qty
                line.price = ev.price
                line.currency = ev.currency
            st.views.pop(ev.product_id, None)  # carted: the browse trigger has no point
            self._touch(cart, customer is not None, ev.event_id, t)
        elif isinstance(ev, CartRemove):
            cart = st.carts.get(sid)
            if cart is None:
                return
            ladder = self._ladder_pending(customer, sid, cart)
            line = cart.lines.get(ev.sku)
            if line is not None:
                line.qty -= ev.qty
                if line.qty <= 0:
                    del cart.lines[ev.sku]
                    if customer is not None and not self._holds(customer, ev.sku):
                        self._index(customer, ev.sku, False, t, out)
            if cart.lines:
                self._touch(cart, customer is not None, ev.event_id, t)
            else:
                self._end_cart(st, customer, sid, "cart_emptied", t, ev.event_id, out, ladder)
        elif isinstance(ev, CheckoutStarted):
            cart = st.carts.get(sid)
            if cart is not None:
                self._touch(cart, customer is not None, ev.event_id, t)
        elif isinstance(ev, Purchase):
            self._purchase(st, customer, sid, ev, t, out)

    def _touch(self, cart: Cart, verified: bool, event_id: str, t: float) -> None:
        """New cart activity: a new idle period, so the cart's triggers are re-armed."""
        if t >= cart.last_activity:
            cart.last_activity = t
            cart.last_event_id = event_id
        cart.abandoned_due = cart.last_activity + self._abandoned.delay
        cart.assist_due = cart.last_activity + self._assist.delay if verified else None

    def _view(self, st: Holder, ev: ProductView, sid: str, t: float) -> None:
        views = st.views.get(ev.product_id)
        if views is None:
            views = st.views[ev.product_id] = Views(
                ev.sku, ev.price, ev.currency, list(ev.category), [], [], []
            )
        # The last variant viewed is the one the trigger is about (and no leftover of an
        # older, unarmed entry may decide it: housekeeping timing must not matter).
        views.sku = ev.sku
        views.price = ev.price
        views.currency = ev.currency
        views.categories = list(ev.category)
        views.times.append(t)
        views.event_ids.append(ev.event_id)
        views.sessions.append(sid)
        if views.due is None:
            # Not armed yet: count only the views inside the window.
            self._prune_views(views, t - self.policy.browse_view_window)
            if len(views.times) < self.policy.browse_min_views:
                return
        views.due = max(views.times) + self._browse.delay

    @staticmethod
    def _prune_views(views: Views, cutoff: float) -> None:
        """Forget an unarmed entry's views at or before ``cutoff`` (with their sessions:
        a view that no longer counts does not taint the trigger either). The same cut
        whether or not housekeeping (``_tidy_views``) ran first."""
        keep = [i for i, x in enumerate(views.times) if x > cutoff]
        if len(keep) != len(views.times):
            views.times = [views.times[i] for i in keep]
            views.event_ids = [views.event_ids[i] for i in keep]
            views.sessions = [views.sessions[i] for i in keep]

    def _purchase(
        self,
        st: Holder,
        customer: CustomerState | None,
        sid: str,
        ev: Purchase,
        t: float,
        out: Outbox,
    ) -> None:
        bought = {item.sku for item in ev.items}
        held = {sku for sku in bought if customer is not None and self._holds(customer, sku)}
        if not ev.gift and ev.items:
            self._arm_follow_up(st, ev, t)
        for cart_sid in list(st.carts):
            cart = st.carts[cart_sid]
            hit = bought.intersection(cart.lines)
            ladder = self._ladder_pending(customer, cart_sid, cart)
            for sku in hit:
                del cart.lines[sku]
            if hit and not cart.lines:
                self._end_cart(st, customer, cart_sid, "converted", t, ev.event_id, out, ladder)
            elif cart_sid == sid:
                self._touch(cart, customer is not None, ev.event_id, t)
        for pid in [pid for pid, v in st.views.items() if v.sku in bought]:
            views = st.views.pop(pid)
            if views.due is not None:
                self._cancel_pending(
                    st, customer, "browse_abandonment", views.event_ids, "converted", t,
                    ev.event_id, out,
                )
        if customer is None:
            return
        # A follow-up is about an earlier purchase: buying again is no reason to withdraw it.
        self._withdraw_sent(
            customer, lambda s: s.kind != "post_purchase" and not bought.isdisjoint(s.skus),
            "converted", t, ev.event_id, out,
        )
        if ev.gift:
            for sku in sorted(bought):
                if sku not in customer.gift_skus:
                    customer.gift_skus.append(sku)
            if sid not in customer.gift_sessions:
                customer.gift_sessions.append(sid)
        for sku in sorted(held):
            if not self._holds(customer, sku):
                self._index(customer, sku, False, t, out)

    def _arm_follow_up(self, st: Holder, ev: Purchase, t: float) -> None:
        """A purchase (not a gift) arms post_purchase ``delay`` after it. A newer purchase
        before it fires supersedes it: one follow-up, due after the latest purchase, that
        builds on the lines of both (a shopping spree gets one note, not one per order).
        Called before the bought lines leave the carts: their categories come from there,
        or from the views of the same sku."""
        cats: dict[str, list[str]] = {}
        for cart in st.carts.values():
            for ln in cart.lines.values():
                cats.setdefault(ln.sku, ln.categories)
        for views in st.views.values():
            cats.setdefault(views.sku, views.categories)
        follow_up = st.follow_up
        if follow_up is None:
            follow_up = st.follow_up = FollowUp(ev.order_id, [], [], t, t)
        elif t >= follow_up.last_purchase:
            follow_up.order_id = ev.order_id
        for item in ev.items:
            known = cats.get(item.sku)
            line = next((ln for ln in follow_up.lines if ln.sku == item.sku), None)
            if line is None:
                follow_up.lines.append(PurchaseLine(
                    item.sku, item.qty, item.price, list(known) if known is not None else None))
                continue
            line.qty += item.qty
            line.price = item.price
            if line.categories is None and known is not None:
                line.categories = list(known)
        follow_up.event_ids.append(ev.event_id)
        follow_up.last_purchase = max(follow_up.last_purchase, t)
        follow_up.due = follow_up.last_purchase + self._post.delay

    def _end_cart(
        self,
        st: Holder,
        customer: CustomerState | None,
        sid: str,
        reason: Reason,
        t: float,
        event_id: str,
        out: Outbox,
        ladder: bool,
    ) -> None:
        """The cart was emptied or bought: its pending triggers and waiting intents end.

        ``ladder``: an assist_offer was pending and could still have fired (judged
        by the caller before the cart lost its lines).
        """
        cart = st.carts.pop(sid)
        if cart.abandoned_due is not None:
            self._cancel_pending(
                st, customer, "abandoned_cart", [cart.last_event_id], reason, t, event_id, out
            )
        if customer is not None:
            if ladder:
                self._cancel_pending(
                    st, customer, "assist_offer", [cart.last_event_id], reason, t, event_id, out
                )
            self._withdraw_sent(
                customer, lambda s: self._ended_with_cart(customer, s, sid), reason, t,
                event_id, out,
            )

    def _ended_with_cart(self, st: CustomerState, sent: Sent, sid: str) -> bool:
        """Whether a waiting intent lost its point when cart ``sid`` ended."""
        if sent.kind in _CART_KINDS:
            return sent.target == sid
        if sent.kind in _SKU_KINDS:
            return not any(self._holds(st, sku) for sku in sent.skus)
        return False

    def _ladder_pending(self, customer: CustomerState | None, sid: str, cart: Cart) -> bool:
        return (
            customer is not None and cart.assist_due is not None
            and self._reminded(customer, sid, cart)
        )

    def _reminded(self, st: CustomerState, sid: str, cart: Cart) -> bool:
        """Whether a pending assist_offer could still fire: a big cart already reminded on a
        channel that counts."""
        return bool(self._reminders(st, sid, cart))

    # --------------------------------------------------------- customer helpers

    def _note_session(self, st: CustomerState, sid: str, t: float) -> None:
        if sid not in st.sessions:
            st.sessions.append(sid)

    def _adopt(self, st: CustomerState, msg: AdoptSession, out: Outbox) -> None:
        self._note_session(st, msg.session_id, msg.at)
        for event_id in msg.absorbed:
            self._first_time(st.seen, event_id, msg.at)
        for sid, cart in msg.carts.items():
            for sku in cart.lines:
                if not self._holds(st, sku):
                    self._index(st, sku, True, msg.at, out)
            mine = st.carts.get(sid)
            if mine is None:
                st.carts[sid] = cart
                if cart.abandoned_due is not None:
                    cart.assist_due = cart.last_activity + self._assist.delay
                continue
            # The same session came back after a logout: one cart, lines added up.
            for sku, line in cart.lines.items():
                have = mine.lines.get(sku)
                if have is None:
                    mine.lines[sku] = line
                else:
                    have.qty += line.qty
                    have.price = line.price
            if cart.last_activity >= mine.last_activity:
                mine.last_activity = cart.last_activity
                mine.last_event_id = cart.last_event_id
            self._touch(mine, True, mine.last_event_id, mine.last_activity)
        cutoff = msg.at - self.policy.browse_view_window
        for pid, views in msg.views.items():
            prior = st.views.get(pid)
            if prior is not None and prior.due is None:
                self._prune_views(prior, cutoff)  # what housekeeping may already have done
                if not prior.times:
                    del st.views[pid]
                    prior = None
            if views.due is None:
                self._prune_views(views, cutoff)
                if not views.times:
                    continue
            if prior is None:
                st.views[pid] = views
                continue
            merged = sorted(zip(
                prior.times + views.times, prior.event_ids + views.event_ids,
                prior.sessions + views.sessions, strict=True,
            ))
            prior.times = [m[0] for m in merged]
            prior.event_ids = [m[1] for m in merged]
            prior.sessions = [m[2] for m in merged]
            if prior.due is not None or views.due is not None:
                prior.due = max(prior.times) + self._browse.delay
            elif len(prior.times) >= self.policy.browse_min_views:
                last = prior.times[-1]
                recent = sum(1 for x in prior.times if x > last - self.policy.browse_view_window)
                if recent >= self.policy.browse_min_views:
                    prior.due = last + self._browse.delay

    def _sku_signal(self, st: CustomerState, msg: SkuSignal, out: Outbox) -> None:
        for cart in st.carts.values():
            line = cart.lines.get(msg.sku)
            if line is None:
                continue
            if msg.signal == "price_change":
                assert msg.price is not None
                if msg.price > line.price * (1.0 - self.policy.price_drop_min) + 1e-9:
                    continue
                kind, price = "price_drop", msg.price
            else:
                kind, price = msg.signal, line.price
            firing = Firing(
                kind, msg.sku, [(msg.sku, line.qty, price, line.categories)], [msg.event_id],
                msg.at, cart.last_activity,
            )
            self._decide(st, firing, msg.at, out)
            return  # one decision per customer and sku, whatever the number of carts

    def _preferences(self, st: CustomerState, ev: PreferencesSet) -> None:
        if ev.timezone is not None:
            st.timezone = ev.timezone
        if ev.topics_opt_out is not None:
            st.opt_out = list(ev.topics_opt_out)
        if ev.topics_opt_in is not None:
            st.opt_in = list(ev.topics_opt_in)
        if ev.quiet_hours is not None:
            st.quiet = (hhmm_minutes(ev.quiet_hours.start), hhmm_minutes(ev.quiet_hours.end))
        if ev.region is not None:
            st.region = ev.region

    def _bounce(self, st: CustomerState, msg: Bounced, t: float, out: Outbox) -> None:
        """A sender could not deliver on ``msg.channel``: the channel is not used for the
        policy's ``bounce_suppress`` (the next channel in a trigger's order may be), and the
        intents waiting on it that would come due before then are cancelled (they would
        bounce too). Pending triggers stay: they are judged when due, when the hold may
        have ended."""
        hold = self.policy.bounce_suppress
        if hold <= 0:
            return
        until = t + hold
        known = st.bounced.get(msg.channel)
        if known is not None:
            until = max(until, known[1])
        st.bounced[msg.channel] = (t if known is None else max(t, known[0]), until)
        self._withdraw_sent(
            st, lambda s: s.channel == msg.channel and s.send_after < until, "bounced", t,
            msg.event_id, out,
        )

    def _usable(self, st: CustomerState, channel: str, t: float) -> bool:
        grant = st.consents.get(channel)
        return (
            grant is not None and grant.granted
            and (grant.expires_at is None or grant.expires_at > t)
            and channel not in st.blocked
        )

    def _withdraw(
        self, st: CustomerState, channels: set[str], reason: Reason, t: float, event_id: str,
        out: Outbox,
    ) -> None:
        """Consent ended or a sender said stop: cancel waiting intents and hopeless triggers."""
        self._withdraw_sent(st, lambda s: s.channel in channels, reason, t, event_id, out)
        for _, kind, target in sorted(self._pending_list(st)):
            channels_of_kind = self.policy.triggers[kind].channels
            if any(self._usable(st, ch, t) for ch in channels_of_kind):
                continue
            if kind == "post_purchase":
                assert st.follow_up is not None
                ids = st.follow_up.event_ids
                st.follow_up = None
            elif kind == "browse_abandonment":
                views = st.views.pop(target)
                ids = views.event_ids
            else:
                cart = st.carts[target]
                ids = [cart.last_event_id]
                if kind == "abandoned_cart":
                    cart.abandoned_due = None
                else:
                    cart.assist_due = None
                    if not self._reminded(st, target, cart):
                        continue
            self._cancel_pending(st, st, kind, ids, reason, t, event_id, out)

    def _withdraw_sent(
        self,
        st: CustomerState,
        which: Callable[[Sent], bool],
        reason: Reason,
        t: float,
        event_id: str,
        out: Outbox,
    ) -> None:
        for sent in st.sent:
            if sent.cancelled or sent.send_after <= t or not which(sent):
                continue
            sent.cancelled = True
            # A late event (stamped before the intent was made) cancels it all the same, but
            # never before it existed (SPEC §2): the audit trail stays in order.
            at = iso(max(t, sent.created_at))
            out.intents.append((
                st.customer_id,
                Cancellation(sent.intent_id, True, reason, st.customer_id, sent.channel, at),
            ))
            out.decisions.append((
                st.customer_id,
                Decision(
                    stable_id("dec", sent.intent_id, "cancelled", reason, event_id),
                    st.customer_id, sent.kind, sent.channel, "cancelled", reason, at,
                    [event_id], intent_id=sent.intent_id,
                ),
            ))

    def _cancel_pending(
        self,
        st: Holder,
        customer: CustomerState | None,
        kind: str,
        trigger_ids: Iterable[str],
        reason: Reason,
        t: float,
        event_id: str,
        out: Outbox,
    ) -> None:
        customer_id = customer.customer_id if customer is not None else None
        session_id = None if customer is not None else st.session_id  # type: ignore[union-attr]
        ids = [*trigger_ids, event_id]
        self._decide_record(out, customer_id, session_id, kind, None, "cancelled", reason, t, ids)

    def _erase(self, st: CustomerState, t: float, event_id: str, out: Outbox) -> None:
        """Cancel what is pending, then tell every other scope to forget the customer."""
        for _, kind, target in sorted(self._pending_list(st)):
            if kind == "post_purchase":
                assert st.follow_up is not None
                ids = st.follow_up.event_ids
            elif kind == "browse_abandonment":
                ids = st.views[target].event_ids
            else:
                cart = st.carts[target]
                if kind == "assist_offer" and not self._reminded(st, target, cart):
                    continue
                ids = [cart.last_event_id]
            self._cancel_pending(st, st, kind, ids, "erased", t, event_id, out)
        self._withdraw_sent(st, lambda s: True, "erased", t, event_id, out)
        held = sorted({sku for cart in st.carts.values() for sku in cart.lines})
        for sku in held:
            out.internal.append((INDEX, sku, CartIndex(sku, st.customer_id, False, t)))
        for sid in st.sessions:
            out.internal.append((SESSION, sid, EraseSession(sid, st.customer_id, t)))
        seen = self._seen_hashes(st.seen) | st.erased_seen
        out.internal.append((ERASED, self.erasure.mark("customer", st.customer_id),
                             ErasureMark(t, seen)))

    def _seen_hashes(self, seen: dict[str, float]) -> frozenset[str]:
        return frozenset(self.erasure.events(event_id)[0] for event_id in seen)

    def live_mark(self, scope: str, key: str, now: float,
                  get: Callable[[str], ErasureMark | None],
                  forget: Callable[[str], None]) -> ErasureMark | None:
        """The erasure mark of ``key`` (a customer id, or a session id for scope
        "session") in a runtime's store (``get`` by stored key), under the current secret
        or the previous one; one past the late-input window is ``forget``-ed on the way."""
        for stored in self.erasure.marks(scope, key):
            mark = get(stored)
            if mark is None:
                continue
            if not self.mark_expired(mark, now):
                return mark
            forget(stored)
        return None

    def mark_expired(self, mark: ErasureMark, now: float) -> bool:
        """Whether ``mark`` is past the window in which a late input can still arrive:
        the runtime then deletes it and treats the key as never erased."""
        return now > mark.at + self.policy.late_input_window

    def admits(self, mark: ErasureMark | None, msg: object, t: float) -> bool:
        """Whether a customer input may be applied after an erasure ``mark``.

        Inputs from before the erasure, and repeats of ids seen before it (a redelivery
        after a crash), are dropped: erasing the dedup memory must not let them in again.
        """
        if mark is None:
            return True
        if t <= mark.at:
            return False
        if isinstance(msg, SessionFact):
            event_id = msg.event.event_id
        elif isinstance(msg, Event | SkuSignal):
            event_id = msg.event_id
        else:
            return True
        return not any(h in mark.seen for h in self.erasure.events(event_id))

    def _tidy(self, st: CustomerState, now: float, out: Outbox) -> None:
        """Forget what no rule can need any more: bounded state per customer."""
        if st.erased_seen and now > (st.erased_at or 0.0) + self.policy.dedup_window:
            st.erased_seen = frozenset()  # no redelivery is that late
        if st.bounced:
            for channel in [ch for ch, (_, until) in st.bounced.items() if until <= now]:
                del st.bounced[channel]
        horizon = now - self.policy.longest_memory
        if st.sent and st.sent[0].created_at < horizon:
            st.sent = [s for s in st.sent if s.created_at >= horizon]
        ttl = self.policy.session_ttl
        idle = [
            sid for sid, c in st.carts.items()
            if c.last_activity + ttl <= now and c.abandoned_due is None and c.assist_due is None
        ]
        for sid in idle:
            cart = st.carts.pop(sid)
            for sku in cart.lines:
                if not self._holds(st, sku):
                    self._index(st, sku, False, now, out)
        self._tidy_views(st, now)

    def _tidy_views(self, st: Holder, now: float) -> None:
        cutoff = now - self.policy.browse_view_window
        stale = [pid for pid, v in st.views.items() if v.due is None and v.times[-1] <= cutoff]
        for pid in stale:
            del st.views[pid]

    def _cart_value(self, st: CustomerState, cart: Cart) -> float:
        """What the cart is worth, sensitive lines left out (they never drive contact)."""
        return sum(
            ln.price * ln.qty for ln in cart.lines.values() if not self._is_sensitive(st, ln)
        )

    def held_skus(self, st: CustomerState) -> set[str]:
        """Every sku the customer holds in some cart (to rebuild a holder index)."""
        return {sku for cart in st.carts.values() for sku in cart.lines}

    def _holds(self, st: CustomerState, sku: str) -> bool:
        return any(sku in cart.lines for cart in st.carts.values())

    def _index(self, st: CustomerState, sku: str, holding: bool, t: float, out: Outbox) -> None:
        out.internal.append((INDEX, sku, CartIndex(sku, st.customer_id, holding, t)))

    def _is_sensitive(self, st: CustomerState, line: CartLine) -> bool:
        return self._sensitive_categories(st, line.categories)

    def _sensitive_categories(self, st: CustomerState, categories: list[str]) -> bool:
        sensitive = self.policy.sensitive
        return any(c in sensitive and c not in st.opt_in for c in categories)

    # ---------------------------------------------------------------- decide

    def _decide(self, st: CustomerState, firing: Firing, now: float, out: Outbox) -> None:
        """Run the guardrails channel by channel; emit on the first that passes."""
        trigger = self.policy.triggers[firing.kind]
        items = [i for i in firing.items if not self._sensitive_categories(st, i[3])]
        check = Check(self.policy, st, firing, now, items)
        start = max(firing.created_at, now)
        reason: Reason = "no_channel"
        for channel in trigger.channels:
            check.channel = channel
            check.send_after = start
            failed = judge(check)
            if failed is None:
                self._emit(st, check, start, out)
                return
            reason = failed
        self._decide_record(
            out, st.customer_id, None, firing.kind, None, "suppressed", reason,
            firing.created_at, firing.event_ids,
        )

    def _emit(self, st: CustomerState, check: Check, start: float, out: Outbox) -> None:
        firing = check.firing
        trigger = self.policy.triggers[firing.kind]
        channel = check.channel
        intent_id = stable_id(
            "int", firing.kind, st.customer_id, firing.target, firing.created_at, channel,
            *firing.event_ids,
        )
        grant = st.consents[channel]
        created = iso(firing.created_at)
        links = None
        if self.links is not None:
            links = self.links.links(st.customer_id, channel, intent_id,
                                     firing.created_at + self.policy.link_expiry)
        intent = ContactIntent(
            intent_id=intent_id,
            customer_id=st.customer_id,
            channel=channel,
            kind=firing.kind,
            items=[IntentItem(sku, qty, price) for sku, qty, price, _ in check.items],
            created_at=created,
            send_after=iso(check.send_after),
            send_before=iso(firing.created_at + self.policy.validity),
            topic=trigger.topic,
            reasons=[cast(TriggerKind, firing.kind), *check.passed],  # a kind of KINDS
            consent=ConsentRef(channel, iso(grant.at), grant.source),
            policy_version=self.policy.version,
            links=links,
        )
        out.intents.append((st.customer_id, intent))
        st.sent.append(Sent(
            intent_id, firing.kind, channel, firing.created_at, check.send_after,
            firing.target, [i[0] for i in check.items],
        ))
        deferred = check.send_after > start
        self._decide_record(
            out, st.customer_id, None, firing.kind, channel,
            "deferred" if deferred else "emitted", DEFERRED_REASON if deferred else None,
            firing.created_at, firing.event_ids, intent_id,
        )

    def _decide_record(
        self,
        out: Outbox,
        customer_id: str | None,
        session_id: str | None,
        kind: str,
        channel: str | None,
        outcome: str,
        reason: Reason | None,
        at: float,
        event_ids: list[str],
        intent_id: str | None = None,
    ) -> None:
        subject = customer_id if customer_id is not None else f"session:{session_id}"
        decision = Decision(
            decision_id=stable_id("dec", kind, subject, outcome, reason, at, *event_ids),
            customer_id=customer_id,
            kind=kind,
            channel=channel,
            outcome=outcome,  # type: ignore[arg-type]
            reason=reason,
            at=iso(at),
            trigger_event_ids=list(event_ids),
            intent_id=intent_id,
            session_id=session_id,
        )
        key = customer_id if customer_id is not None else str(session_id)
        out.decisions.append((key, decision))

    # ------------------------------------------------------------------ misc

    def _first_time(self, seen: dict[str, float], event_id: str, t: float) -> bool:
        """Record ``event_id``; False when it was seen within the dedup window."""
        if event_id in seen:
            return False
        seen[event_id] = t
        cutoff = t - self.policy.dedup_window
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] > cutoff:
                break
            del seen[oldest]
        return True
