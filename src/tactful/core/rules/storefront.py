"""Cart and browse activity (SPEC §1's storefront events), the same for a session not yet
tied to a verified customer and for a customer: it arms triggers, and a purchase or an
emptied cart ends them (SPEC §4.9). Only a customer holds skus for the sku triggers."""

from __future__ import annotations

from tactful.core.events import (
    CartAdd,
    CartRemove,
    CheckoutStarted,
    ProductView,
    Purchase,
    StorefrontEvent,
)
from tactful.core.messages import CartIndex
from tactful.core.outputs import Reason
from tactful.core.policy import Policy
from tactful.core.rules.decisions import cancel_pending, withdraw_sent
from tactful.core.rules.delivery import INDEX, Outbox
from tactful.core.rules.triggers import (
    CART_KINDS,
    SKU_KINDS,
    Holder,
    arm_follow_up,
    ladder_pending,
    touch,
    view,
)
from tactful.core.state import Cart, CartLine, CustomerState, Sent


def activity(
    policy: Policy,
    st: Holder,
    customer: CustomerState | None,
    sid: str,
    ev: StorefrontEvent,
    t: float,
    out: Outbox,
) -> None:
    """Cart and browse activity, shared by unbound sessions and customers."""
    if isinstance(ev, ProductView):
        view(policy, st, ev, sid, t)
    elif isinstance(ev, CartAdd):
        cart = st.carts.get(sid)
        if cart is None:
            cart = st.carts[sid] = Cart({}, t, ev.event_id)
        line = cart.lines.get(ev.sku)
        if line is None:
            newly_held = customer is not None and not holds(customer, ev.sku)
            cart.lines[ev.sku] = CartLine(
                ev.sku, ev.product_id, ev.qty, ev.price, ev.currency, list(ev.category)
            )
            if newly_held and customer is not None:
                index(customer, ev.sku, True, t, out)
        else:
            line.qty += ev.qty
            line.price = ev.price
            line.currency = ev.currency
        st.views.pop(ev.product_id, None)  # carted: the browse trigger has no point
        touch(policy, cart, customer is not None, ev.event_id, t)
    elif isinstance(ev, CartRemove):
        cart = st.carts.get(sid)
        if cart is None:
            return
        ladder = ladder_pending(policy, customer, sid, cart)
        line = cart.lines.get(ev.sku)
        if line is not None:
            line.qty -= ev.qty
            if line.qty <= 0:
                del cart.lines[ev.sku]
                if customer is not None and not holds(customer, ev.sku):
                    index(customer, ev.sku, False, t, out)
        if cart.lines:
            touch(policy, cart, customer is not None, ev.event_id, t)
        else:
            _end_cart(st, customer, sid, "cart_emptied", t, ev.event_id, out, ladder)
    elif isinstance(ev, CheckoutStarted):
        cart = st.carts.get(sid)
        if cart is not None:
            touch(policy, cart, customer is not None, ev.event_id, t)
    elif isinstance(ev, Purchase):
        _purchase(policy, st, customer, sid, ev, t, out)


def _purchase(
    policy: Policy,
    st: Holder,
    customer: CustomerState | None,
    sid: str,
    ev: Purchase,
    t: float,
    out: Outbox,
) -> None:
    bought = {item.sku for item in ev.items}
    held = {sku for sku in bought if customer is not None and holds(customer, sku)}
    if not ev.gift and ev.items:
        arm_follow_up(policy, st, ev, t)
    for cart_sid in list(st.carts):
        cart = st.carts[cart_sid]
        hit = bought.intersection(cart.lines)
        ladder = ladder_pending(policy, customer, cart_sid, cart)
        for sku in hit:
            del cart.lines[sku]
        if hit and not cart.lines:
            _end_cart(st, customer, cart_sid, "converted", t, ev.event_id, out, ladder)
        elif cart_sid == sid:
            touch(policy, cart, customer is not None, ev.event_id, t)
    for pid in [pid for pid, v in st.views.items() if v.sku in bought]:
        views = st.views.pop(pid)
        if views.due is not None:
            cancel_pending(
                st, customer, "browse_abandonment", views.event_ids, "converted", t,
                ev.event_id, out,
            )
    if customer is None:
        return
    # A follow-up is about an earlier purchase: buying again is no reason to withdraw it.
    withdraw_sent(
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
        if not holds(customer, sku):
            index(customer, sku, False, t, out)


def _end_cart(
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
        cancel_pending(
            st, customer, "abandoned_cart", [cart.last_event_id], reason, t, event_id, out
        )
    if customer is not None:
        if ladder:
            cancel_pending(
                st, customer, "assist_offer", [cart.last_event_id], reason, t, event_id, out
            )
        withdraw_sent(
            customer, lambda s: _ended_with_cart(customer, s, sid), reason, t, event_id, out,
        )


def _ended_with_cart(st: CustomerState, sent: Sent, sid: str) -> bool:
    """Whether a waiting intent lost its point when cart ``sid`` ended."""
    if sent.kind in CART_KINDS:
        return sent.target == sid
    if sent.kind in SKU_KINDS:
        return not any(holds(st, sku) for sku in sent.skus)
    return False


def holds(st: CustomerState, sku: str) -> bool:
    return any(sku in cart.lines for cart in st.carts.values())


def held_skus(st: CustomerState) -> set[str]:
    """Every sku the customer holds in some cart (to rebuild a holder index)."""
    return {sku for cart in st.carts.values() for sku in cart.lines}


def index(st: CustomerState, sku: str, holding: bool, t: float, out: Outbox) -> None:
    """Tell the holder index the customer started or stopped holding ``sku``."""
    out.internal.append((INDEX, sku, CartIndex(sku, st.customer_id, holding, t)))
