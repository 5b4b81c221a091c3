"""Judging a firing and recording the outcome (SPEC §2, §4): the one way a trigger ends,
whichever input or timer made it fire, emit or end."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tactful.core.guardrails import Check, Firing, judge
from tactful.core.links import LinkSigner
from tactful.core.outputs import (
    DEFERRED_REASON,
    Cancellation,
    ConsentRef,
    ContactIntent,
    Decision,
    IntentItem,
    Outcome,
    Reason,
    TriggerKind,
    iso,
    stable_id,
)
from tactful.core.policy import Policy
from tactful.core.rules.delivery import Outbox
from tactful.core.rules.triggers import TRIGGERS, Holder, sensitive
from tactful.core.state import CustomerState, Sent


def decide(
    policy: Policy, links: LinkSigner | None, st: CustomerState, firing: Firing, now: float,
    out: Outbox,
) -> None:
    """Run the guardrails channel by channel; emit on the first that passes."""
    trigger = TRIGGERS[firing.kind]
    items = [i for i in firing.items if not sensitive(policy, st, i[3])]
    check = Check(policy, st, firing, now, items)
    start = max(firing.created_at, now)
    reason: Reason = "no_channel"
    for channel in trigger.channels(policy):
        check.channel = channel
        check.send_after = start
        failed = judge(check)
        if failed is None:
            _emit(policy, links, st, check, start, out)
            return
        reason = failed
    record(
        out, st.customer_id, None, firing.kind, None, "suppressed", reason,
        firing.created_at, firing.event_ids,
    )


def _emit(
    policy: Policy, links: LinkSigner | None, st: CustomerState, check: Check, start: float,
    out: Outbox,
) -> None:
    firing = check.firing
    channel = check.channel
    intent_id = stable_id(
        "int", firing.kind, st.customer_id, firing.target, firing.created_at, channel,
        *firing.event_ids,
    )
    grant = st.consents[channel]
    created = iso(firing.created_at)
    signed = None
    if links is not None:
        signed = links.links(st.customer_id, channel, intent_id,
                             firing.created_at + policy.link_expiry)
    intent = ContactIntent(
        intent_id=intent_id,
        customer_id=st.customer_id,
        channel=channel,
        kind=firing.kind,
        items=[IntentItem(sku, qty, price) for sku, qty, price, _ in check.items],
        created_at=created,
        send_after=iso(check.send_after),
        send_before=iso(firing.created_at + policy.validity),
        topic=TRIGGERS[firing.kind].topic(policy),
        reasons=[firing.kind, *check.passed],
        consent=ConsentRef(channel, iso(grant.at), grant.source),
        policy_version=policy.version,
        links=signed,
    )
    out.intents.append((st.customer_id, intent))
    st.sent.append(Sent(
        intent_id, firing.kind, channel, firing.created_at, check.send_after,
        firing.target, [i[0] for i in check.items],
    ))
    deferred = check.send_after > start
    record(
        out, st.customer_id, None, firing.kind, channel,
        "deferred" if deferred else "emitted", DEFERRED_REASON if deferred else None,
        firing.created_at, firing.event_ids, intent_id,
    )


def record(
    out: Outbox,
    customer_id: str | None,
    session_id: str | None,
    kind: TriggerKind,
    channel: str | None,
    outcome: Outcome,
    reason: Reason | None,
    at: float,
    event_ids: list[str],
    intent_id: str | None = None,
) -> None:
    """One decision, keyed by the customer, or by the session when none is verified."""
    subject = customer_id if customer_id is not None else f"session:{session_id}"
    decision = Decision(
        decision_id=stable_id("dec", kind, subject, outcome, reason, at, *event_ids),
        customer_id=customer_id,
        kind=kind,
        channel=channel,
        outcome=outcome,
        reason=reason,
        at=iso(at),
        trigger_event_ids=list(event_ids),
        intent_id=intent_id,
        session_id=session_id,
    )
    key = customer_id if customer_id is not None else str(session_id)
    out.decisions.append((key, decision))


def cancel_pending(
    st: Holder,
    customer: CustomerState | None,
    kind: TriggerKind,
    trigger_ids: Iterable[str],
    reason: Reason,
    t: float,
    event_id: str,
    out: Outbox,
) -> None:
    """A pending trigger that ``event_id`` ended before it fired (SPEC §3)."""
    customer_id = customer.customer_id if customer is not None else None
    session_id = None if customer is not None else st.session_id  # type: ignore[union-attr]
    ids = [*trigger_ids, event_id]
    record(out, customer_id, session_id, kind, None, "cancelled", reason, t, ids)


def withdraw_sent(
    st: CustomerState,
    which: Callable[[Sent], bool],
    reason: Reason,
    t: float,
    event_id: str,
    out: Outbox,
) -> None:
    """Cancel the intents ``which`` picks that are still waiting for their send_after."""
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
