"""Stock and price changes (SPEC §1's sku events) and the sku triggers they fire. The sku
scope holds no customer ids: it sends a signal that the runtime fans out to the customers
holding the sku in a cart, and each of them decides at once (no pending trigger)."""

from __future__ import annotations

from tactful.core.events import PriceChange, StockLevel
from tactful.core.guardrails import Firing
from tactful.core.links import LinkSigner
from tactful.core.messages import SkuSignal
from tactful.core.policy import Policy
from tactful.core.rules.decisions import decide
from tactful.core.rules.delivery import HOLDERS, Outbox, first_time
from tactful.core.rules.triggers import SIGNALLED
from tactful.core.state import CustomerState, SkuState


def on_sku(
    policy: Policy, st: SkuState | None, msg: StockLevel | PriceChange, t: float, out: Outbox
) -> SkuState:
    st = st or SkuState(msg.sku)
    if not first_time(policy, st.seen, msg.event_id, t):
        return st
    if isinstance(msg, StockLevel):
        before, st.available = st.available, msg.available
        signal = None
        threshold = policy.low_stock_threshold
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


def on_signal(
    policy: Policy, links: LinkSigner | None, st: CustomerState, msg: SkuSignal, out: Outbox
) -> None:
    """A holder's side of a signal: one decision per customer and sku."""
    kind = SIGNALLED[msg.signal]
    for cart in st.carts.values():
        line = cart.lines.get(msg.sku)
        if line is None:
            continue
        price = line.price
        if kind == "price_drop":
            assert msg.price is not None
            if msg.price > line.price * (1.0 - policy.price_drop_min) + 1e-9:
                continue
            price = msg.price
        firing = Firing(
            kind, msg.sku, [(msg.sku, line.qty, price, line.categories)], [msg.event_id],
            msg.at, cart.last_activity,
        )
        decide(policy, links, st, firing, msg.at, out)
        return  # one decision per customer and sku, whatever the number of carts
