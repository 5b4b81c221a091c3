"""Storefront events by session (SPEC §1): dedup, binding to a verified customer, and
forwarding to the customer once bound. Until then the session keeps its own cart and
views, and its triggers end as ``unverified_identity`` (guardrail 1): nothing is ever
decided under a guessed customer's id."""

from __future__ import annotations

from tactful.core.events import Logout, PageView, StorefrontEvents, verified_customer
from tactful.core.messages import AdoptSession, EraseSession, ErasureKeys, ErasureMark, SessionFact
from tactful.core.outputs import Reason, TriggerKind
from tactful.core.policy import Policy
from tactful.core.rules.decisions import record
from tactful.core.rules.delivery import CUSTOMER, Outbox, first_time
from tactful.core.rules.erasure import admitted, erase_session, revived
from tactful.core.rules.storefront import activity
from tactful.core.rules.triggers import TRIGGERS, due, pending, take_firing, tidy_views
from tactful.core.state import SessionState

_NOT_FORWARDED = (PageView, Logout)


def on_session(
    policy: Policy, keys: ErasureKeys, st: SessionState | None,
    ev: StorefrontEvents | EraseSession, t: float, out: Outbox, mark: ErasureMark | None,
) -> SessionState | None:
    if isinstance(ev, EraseSession):
        return erase_session(keys, st, ev, t, out)
    if not admitted(keys, st, mark, ev, t):
        return st
    return revived(_on_session(policy, st, ev, t, out), st, mark)


def _on_session(
    policy: Policy, st: SessionState | None, ev: StorefrontEvents, t: float, out: Outbox
) -> SessionState | None:
    if st is None:
        st = SessionState(ev.session_id)
    if not first_time(policy, st.seen, ev.event_id, t):
        # A repeat changes nothing here, but a bound session passes it on again: after a
        # crash the first forward may be the part that was lost, and the customer side
        # drops it if it did arrive (it deduplicates by event_id too). Not a repeat of
        # an event the adoption carried: the worker orders a customer's inputs by time,
        # the repeat has the original's, and it would count before the adoption and
        # again with it.
        if (st.customer_id is not None and not isinstance(ev, _NOT_FORWARDED)
                and ev.event_id not in st.absorbed):
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
            st.absorbed = absorbed
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
    activity(policy, st, None, st.session_id, ev, t, out)
    return st


def advance_session(
    policy: Policy, st: SessionState, now: float, out: Outbox
) -> SessionState | None:
    if st.erased_seen and now > (st.erased_at or 0.0) + policy.dedup_window:
        st.erased_seen = frozenset()  # no redelivery is that late
    for at, kind, target in due(st, now):
        _fire_unverified(policy, st, kind, target, at, out)
    tidy_views(policy, st, now)
    if st.absorbed:
        st.absorbed = [e for e in st.absorbed if e in st.seen]  # a later repeat is new
    if now >= st.last_seen + policy.session_ttl and not pending(st):
        return None
    return st


def _fire_unverified(
    policy: Policy, st: SessionState, kind: TriggerKind, target: str, at: float, out: Outbox
) -> None:
    firing = take_firing(policy, st, kind, target, at)
    if firing is None:
        return
    reason: Reason = "unverified_identity" if TRIGGERS[kind].channels(policy) else "no_channel"
    record(out, None, st.session_id, kind, None, "suppressed", reason, at, firing.event_ids)
