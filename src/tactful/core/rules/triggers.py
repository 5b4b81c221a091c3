"""SPEC §3's trigger table, and the pending triggers it leaves in state.

A timed trigger is data (a due time on a cart, a product's views or a follow-up), so it
survives restarts; the sku triggers fire at once, on the signal of the sku scope. One
row per kind says what arms it and what fires it; the code below it arms, lists and
takes the pending ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tactful.core.events import ProductView, Purchase
from tactful.core.guardrails import Firing
from tactful.core.outputs import TriggerKind
from tactful.core.policy import KINDS, Policy
from tactful.core.state import (
    Cart,
    CartLine,
    CustomerState,
    FollowUp,
    PurchaseLine,
    Sent,
    SessionState,
    SkuState,
    Views,
)

# What holds carts, views and pending triggers: a session not tied to a verified customer,
# or a customer.
Holder = SessionState | CustomerState
# What a trigger's target names (and its cooldown is keyed by): a cart (its session id), a
# viewed product (product id), a purchase (order id) or a carted sku.
About = Literal["cart", "product", "order", "sku"]


@dataclass(frozen=True, slots=True)
class Trigger:
    """One row of SPEC §3. Its channels, in order, and its topic are the policy's
    ``[triggers.<kind>]`` (defaults in policy/default.toml), read through ``channels``
    and ``topic``; so are its delay and thresholds."""

    kind: TriggerKind
    about: About
    arms: str
    fires: str
    signal: str | None = None  # the SkuSignal that fires a sku trigger

    def channels(self, policy: Policy) -> tuple[str, ...]:
        return policy.triggers[self.kind].channels

    def topic(self, policy: Policy) -> str:
        return policy.triggers[self.kind].topic

    def delay(self, policy: Policy) -> float:
        """How long after the activity that armed it a timed trigger is due."""
        return policy.triggers[self.kind].delay


_CART_ACTIVITY = "cart_add, cart_remove, checkout_started or purchase in the cart's session"

TRIGGERS: dict[TriggerKind, Trigger] = {
    "abandoned_cart": Trigger(
        "abandoned_cart", "cart",
        arms=f"{_CART_ACTIVITY}, the cart not empty (touch)",
        fires="the timer, delay after the cart's last activity"),
    "assist_offer": Trigger(
        "assist_offer", "cart",
        arms=f"{_CART_ACTIVITY}, for a verified customer only (touch, adopt)",
        fires="the timer, delay after the last activity, when the cart is worth "
              "min_cart_value and an abandoned_cart reminder on a reminder channel went "
              "out after_reminder before (ladder_ready)"),
    "browse_abandonment": Trigger(
        "browse_abandonment", "product",
        arms="min_views product_view of one product within view_window, no cart_add of "
             "it (view)",
        fires="the timer, delay after the product's last view"),
    "low_stock": Trigger(
        "low_stock", "sku",
        arms="a cart_add: the customer holds the sku in a cart",
        fires="stock_level: available falls to threshold or below from above it",
        signal="low_stock"),
    "back_in_stock": Trigger(
        "back_in_stock", "sku",
        arms="a cart_add: the customer holds the sku in a cart",
        fires="stock_level: available goes from 0 to more", signal="back_in_stock"),
    "price_drop": Trigger(
        "price_drop", "sku",
        arms="a cart_add: the customer holds the sku in a cart, at the line's price",
        fires="price_change: below the sku's last price and min_drop below the line's",
        signal="price_change"),
    "post_purchase": Trigger(
        "post_purchase", "order",
        arms="a purchase that is not a gift (arm_follow_up); a later one supersedes it",
        fires="the timer, delay after the latest purchase"),
}
assert tuple(TRIGGERS) == KINDS, "one row per trigger kind, in the order of KINDS"

# The sku triggers by the signal that fires them.
SIGNALLED: dict[str, TriggerKind] = {
    t.signal: kind for kind, t in TRIGGERS.items() if t.signal is not None
}
# Kinds whose intents lose their point when their cart ends, or when no cart holds their
# sku any more.
CART_KINDS = frozenset(kind for kind, t in TRIGGERS.items() if t.about == "cart")
SKU_KINDS = frozenset(kind for kind, t in TRIGGERS.items() if t.about == "sku")
# Triggers due at the same moment fire in the table's order.
_KIND_ORDER = {kind: i for i, kind in enumerate(KINDS)}


# ------------------------------------------------------------------ arming

def touch(policy: Policy, cart: Cart, verified: bool, event_id: str, t: float) -> None:
    """New cart activity: a new idle period, so the cart's triggers are re-armed."""
    if t >= cart.last_activity:
        cart.last_activity = t
        cart.last_event_id = event_id
    cart.abandoned_due = cart.last_activity + TRIGGERS["abandoned_cart"].delay(policy)
    cart.assist_due = (
        cart.last_activity + TRIGGERS["assist_offer"].delay(policy) if verified else None
    )


def view(policy: Policy, st: Holder, ev: ProductView, sid: str, t: float) -> None:
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
        prune_views(views, t - policy.browse_view_window)
        if len(views.times) < policy.browse_min_views:
            return
    views.due = max(views.times) + TRIGGERS["browse_abandonment"].delay(policy)


def prune_views(views: Views, cutoff: float) -> None:
    """Forget an unarmed entry's views at or before ``cutoff`` (with their sessions:
    a view that no longer counts does not taint the trigger either). The same cut
    whether or not housekeeping (``tidy_views``) ran first."""
    keep = [i for i, x in enumerate(views.times) if x > cutoff]
    if len(keep) != len(views.times):
        views.times = [views.times[i] for i in keep]
        views.event_ids = [views.event_ids[i] for i in keep]
        views.sessions = [views.sessions[i] for i in keep]


def tidy_views(policy: Policy, st: Holder, now: float) -> None:
    cutoff = now - policy.browse_view_window
    stale = [pid for pid, v in st.views.items() if v.due is None and v.times[-1] <= cutoff]
    for pid in stale:
        del st.views[pid]


def arm_follow_up(policy: Policy, st: Holder, ev: Purchase, t: float) -> None:
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
    follow_up.due = follow_up.last_purchase + TRIGGERS["post_purchase"].delay(policy)


# ------------------------------------------------------------------ pending

def next_due(policy: Policy, st: SessionState | CustomerState | SkuState) -> float | None:
    """When this key next needs ``advance_*``; None when never (sku keys)."""
    if isinstance(st, SkuState):
        return None
    # One pass, no lists: this runs after every event (see BENCHMARKS.md).
    ttl = policy.session_ttl
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


def pending(st: Holder) -> list[tuple[float, TriggerKind, str]]:
    """Every timed trigger waiting in ``st``: (due, kind, target), in no particular order."""
    found: list[tuple[float, TriggerKind, str]] = []
    for sid, cart in st.carts.items():
        if cart.abandoned_due is not None:
            found.append((cart.abandoned_due, "abandoned_cart", sid))
        if cart.assist_due is not None:
            found.append((cart.assist_due, "assist_offer", sid))
    for pid, views in st.views.items():
        if views.due is not None:
            found.append((views.due, "browse_abandonment", pid))
    if st.follow_up is not None:
        found.append((st.follow_up.due, "post_purchase", st.follow_up.order_id))
    return found


def due(st: Holder, now: float) -> list[tuple[float, TriggerKind, str]]:
    """The pending triggers due by ``now``, in the order they fire."""
    found = [p for p in pending(st) if p[0] <= now]
    found.sort(key=lambda p: (p[0], _KIND_ORDER[p[1]], p[2]))
    return found


def armed_by(st: Holder, kind: TriggerKind, target: str) -> list[str]:
    """The events behind a pending trigger: what its decision names."""
    about = TRIGGERS[kind].about
    if about == "order":
        assert st.follow_up is not None
        return st.follow_up.event_ids
    if about == "product":
        return st.views[target].event_ids
    return [st.carts[target].last_event_id]


def disarm(st: Holder, kind: TriggerKind, target: str) -> None:
    """Forget a pending trigger without firing it."""
    about = TRIGGERS[kind].about
    if about == "order":
        st.follow_up = None
    elif about == "product":
        del st.views[target]
    elif kind == "abandoned_cart":
        st.carts[target].abandoned_due = None
    else:
        st.carts[target].assist_due = None


def could_fire(policy: Policy, st: CustomerState, kind: TriggerKind, target: str) -> bool:
    """Whether ending a pending trigger is worth a decision: an assist_offer whose ladder
    has not begun was never on its way."""
    return kind != "assist_offer" or reminded(policy, st, target, st.carts[target])


def take_firing(
    policy: Policy, st: Holder, kind: TriggerKind, target: str, at: float
) -> Firing | None:
    """Clear the pending trigger and describe it; None when it does not fire after all."""
    if kind == "post_purchase":
        return _take_follow_up(st, at)
    if kind == "browse_abandonment":
        views = st.views.pop(target)
        item = (views.sku, 1, views.price, views.categories)
        return Firing(
            kind, views.sku, [item], list(views.event_ids), at, views.times[-1],
            tuple(dict.fromkeys(views.sessions)),
        )
    cart = st.carts[target]
    items = [(ln.sku, ln.qty, ln.price, ln.categories) for ln in cart.lines.values()]
    firing = Firing(kind, target, items, [cart.last_event_id], at, cart.last_activity,
                    (target,))
    if kind == "abandoned_cart":
        cart.abandoned_due = None
        return firing
    cart.assist_due = None
    if not isinstance(st, CustomerState) or not _ladder_ready(policy, st, cart, target, at):
        return None
    return firing


def _take_follow_up(st: Holder, at: float) -> Firing:
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
                  at, follow_up.last_purchase)


# ------------------------------------------------------- the email-first ladder

def _ladder_ready(policy: Policy, st: CustomerState, cart: Cart, target: str, at: float) -> bool:
    """assist_offer fires only for a big cart after a cart reminder went out long enough
    ago on a channel that counts (the email-first ladder, SPEC §3)."""
    latest = at - policy.assist_after_reminder
    return any(s.send_after <= latest for s in _reminders(policy, st, target, cart))


def _reminders(policy: Policy, st: CustomerState, target: str, cart: Cart) -> list[Sent]:
    """The live cart reminders that can lead to a call: this idle period's abandoned_cart
    intents for the cart, not cancelled, on a channel of ``reminder_channels``; none
    when the cart is too small to call about."""
    if _cart_value(policy, st, cart) < policy.assist_min_cart_value:
        return []
    channels = policy.assist_reminder_channels
    return [
        s for s in st.sent
        if s.kind == "abandoned_cart" and s.target == target and not s.cancelled
        and s.channel in channels and s.created_at >= cart.last_activity
    ]


def reminded(policy: Policy, st: CustomerState, sid: str, cart: Cart) -> bool:
    """Whether a pending assist_offer could still fire: a big cart already reminded on a
    channel that counts."""
    return bool(_reminders(policy, st, sid, cart))


def ladder_pending(policy: Policy, customer: CustomerState | None, sid: str, cart: Cart) -> bool:
    return (
        customer is not None and cart.assist_due is not None
        and reminded(policy, customer, sid, cart)
    )


def _cart_value(policy: Policy, st: CustomerState, cart: Cart) -> float:
    """What the cart is worth, sensitive lines left out (they never drive contact)."""
    return sum(
        ln.price * ln.qty for ln in cart.lines.values() if not _is_sensitive(policy, st, ln)
    )


def _is_sensitive(policy: Policy, st: CustomerState, line: CartLine) -> bool:
    return sensitive(policy, st, line.categories)


def sensitive(policy: Policy, st: CustomerState, categories: list[str]) -> bool:
    """Whether items of ``categories`` are left out of a trigger (SPEC §4.11)."""
    return any(c in policy.sensitive and c not in st.opt_in for c in categories)
