"""Erasure (SPEC §4.13) across the scopes: what an erase_requested does, and the mark that
keeps inputs from before it out afterwards. The mark is keyed by a secret (HMAC): it can
refuse a late input of the customer without naming them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tactful.core.events import Event
from tactful.core.messages import (
    CartIndex,
    EraseSession,
    ErasureKeys,
    ErasureMark,
    SessionFact,
    SkuSignal,
)
from tactful.core.policy import Policy
from tactful.core.rules.decisions import cancel_pending, record, withdraw_sent
from tactful.core.rules.delivery import ERASED, INDEX, SESSION, Outbox
from tactful.core.rules.triggers import armed_by, could_fire, pending
from tactful.core.state import CustomerState, SessionState

_S = TypeVar("_S", SessionState, CustomerState)


def erase_customer(
    policy: Policy, keys: ErasureKeys, st: CustomerState, t: float, event_id: str, out: Outbox
) -> None:
    """Cancel what is pending, then tell every other scope to forget the customer."""
    for _, kind, target in sorted(pending(st)):
        if not could_fire(policy, st, kind, target):
            continue
        cancel_pending(st, st, kind, armed_by(st, kind, target), "erased", t, event_id, out)
    withdraw_sent(st, lambda s: True, "erased", t, event_id, out)
    held = sorted({sku for cart in st.carts.values() for sku in cart.lines})
    for sku in held:
        out.internal.append((INDEX, sku, CartIndex(sku, st.customer_id, False, t)))
    for sid in st.sessions:
        out.internal.append((SESSION, sid, EraseSession(sid, st.customer_id, t)))
    seen = seen_hashes(keys, st.seen) | st.erased_seen
    out.internal.append((ERASED, keys.mark("customer", st.customer_id), ErasureMark(t, seen)))


def erase_session(
    keys: ErasureKeys, st: SessionState | None, ev: EraseSession, t: float, out: Outbox
) -> SessionState | None:
    """The customer's erasure reaching one of their sessions."""
    if st is None or ev.customer_id not in st.bound:
        return st
    # Forget the session, but not what it had seen: a redelivered event of
    # the erased customer must not bind the session again.
    seen = seen_hashes(keys, st.seen) | st.erased_seen
    if st.follow_up is not None:
        # A purchase made before the session was bound: its follow-up ends too.
        record(
            out, None, st.session_id, "post_purchase", None, "cancelled", "erased",
            t, st.follow_up.event_ids,
        )
    out.internal.append((ERASED, keys.mark("session", st.session_id), ErasureMark(t, seen)))
    return None


def seen_hashes(keys: ErasureKeys, seen: dict[str, float]) -> frozenset[str]:
    return frozenset(keys.events(event_id)[0] for event_id in seen)


def admits(keys: ErasureKeys, mark: ErasureMark | None, msg: object, t: float) -> bool:
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
    return not any(h in mark.seen for h in keys.events(event_id))


def admitted(
    keys: ErasureKeys, st: SessionState | CustomerState | None, mark: ErasureMark | None,
    msg: object, t: float,
) -> bool:
    """Whether an input may be applied after an erasure: checked against the stored mark
    when there is no state, and against the mark a revived state carries."""
    if st is None:
        return mark is None or admits(keys, mark, msg, t)
    if st.erased_at is None:
        return True
    return admits(keys, ErasureMark(st.erased_at, st.erased_seen), msg, t)


def revived(kept: _S | None, st: object, mark: ErasureMark | None) -> _S | None:
    """A state created after an erasure carries its mark."""
    if st is None and mark is not None and kept is not None:
        kept.erased_at, kept.erased_seen = mark.at, mark.seen
    return kept


def mark_expired(policy: Policy, mark: ErasureMark, now: float) -> bool:
    """Whether ``mark`` is past the window in which a late input can still arrive:
    the runtime then deletes it and treats the key as never erased."""
    return now > mark.at + policy.late_input_window


def live_mark(policy: Policy, keys: ErasureKeys, scope: str, key: str, now: float,
              get: Callable[[str], ErasureMark | None],
              forget: Callable[[str], None]) -> ErasureMark | None:
    """The erasure mark of ``key`` (a customer id, or a session id for scope
    "session") in a runtime's store (``get`` by stored key), under the current secret
    or the previous one; one past the late-input window is ``forget``-ed on the way."""
    for stored in keys.marks(scope, key):
        mark = get(stored)
        if mark is None:
            continue
        if not mark_expired(policy, mark, now):
            return mark
        forget(stored)
    return None
