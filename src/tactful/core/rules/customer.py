"""Everything keyed by a verified customer (SPEC §1): consent, preferences, sender
feedback and erasure requests, the facts of their bound sessions, sku signals for what
they hold, and their timers. Only here do triggers meet the guardrails."""

from __future__ import annotations

from datetime import datetime

from tactful.core.events import (
    CHANNELS,
    Bounced,
    Clicked,
    Complained,
    ConsentGranted,
    ConsentRevoked,
    Delivered,
    DoNotContact,
    EraseRequested,
    Event,
    Login,
    Opened,
    PreferencesSet,
    Unsubscribed,
    type_of,
)
from tactful.core.links import LinkSigner
from tactful.core.messages import AdoptSession, ErasureKeys, ErasureMark, SessionFact, SkuSignal
from tactful.core.outputs import Reason
from tactful.core.policy import Policy
from tactful.core.quiet_hours import hhmm_minutes
from tactful.core.rules.decisions import cancel_pending, decide, withdraw_sent
from tactful.core.rules.delivery import ERASED, Outbox, first_time
from tactful.core.rules.erasure import admits, admitted, erase_customer, revived
from tactful.core.rules.sku import on_signal
from tactful.core.rules.storefront import activity, holds, index
from tactful.core.rules.triggers import (
    TRIGGERS,
    armed_by,
    could_fire,
    disarm,
    due,
    pending,
    prune_views,
    take_firing,
    tidy_views,
    touch,
)
from tactful.core.state import Consent, CustomerState, Decided, Noted

_NO_EFFECT = (Delivered, Opened, Clicked, Bounced)  # nothing to do for an unknown customer


def on_customer(
    policy: Policy, links: LinkSigner | None, keys: ErasureKeys, st: CustomerState | None,
    msg: object, t: float, out: Outbox, mark: ErasureMark | None,
) -> CustomerState | None:
    if st is None:
        if mark is not None and not admits(keys, mark, msg, t):
            return None
        if isinstance(msg, EraseRequested):
            # Nothing is held: only the mark is written, so that inputs stamped before
            # the request (arriving late) stay out all the same.
            seen = mark.seen if mark is not None else frozenset()
            out.internal.append(
                (ERASED, keys.mark("customer", msg.customer_id), ErasureMark(t, seen))
            )
            return None
    if not admitted(keys, st, mark, msg, t):
        return st
    before = len(out.decisions)
    kept = revived(_on_customer(policy, links, keys, st, msg, t, out), st, mark)
    if kept is not None:
        _note_decisions(policy, kept, out, before)
    return kept


def _on_customer(
    policy: Policy, links: LinkSigner | None, keys: ErasureKeys, st: CustomerState | None,
    msg: object, t: float, out: Outbox,
) -> CustomerState | None:
    # Messages from other scopes are deduplicated too: the worker delivers at least once.
    if isinstance(msg, SessionFact):
        st = st or CustomerState(msg.customer_id)
        if not first_time(policy, st.seen, msg.event.event_id, t):
            return st
        _note(policy, st, t, type_of(msg.event), getattr(msg.event, "sku", None))
        _note_session(st, msg.session_id)
        if not isinstance(msg.event, Login):
            activity(policy, st, st, msg.session_id, msg.event, t, out)
        return st
    if isinstance(msg, SkuSignal):
        if st is not None and first_time(policy, st.seen, f"{msg.event_id}\x1f{msg.sku}", t):
            _note(policy, st, t, msg.signal, msg.sku)
            on_signal(policy, links, st, msg, out)
        return st
    if isinstance(msg, AdoptSession):
        st = st or CustomerState(msg.customer_id)
        if first_time(policy, st.seen, f"adopt\x1f{msg.session_id}\x1f{msg.at}", t):
            _adopt(policy, st, msg, out)
        return st
    assert isinstance(msg, Event)
    customer_id: str = msg.customer_id  # type: ignore[attr-defined]
    if st is None:
        if isinstance(msg, (EraseRequested, *_NO_EFFECT)):
            return None  # nothing stored, nothing to erase or note
        st = CustomerState(customer_id)
    if not first_time(policy, st.seen, msg.event_id, t):
        return st
    _note(policy, st, t, type_of(msg), getattr(msg, "channel", None))
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
            _withdraw(policy, st, {msg.channel}, "no_consent", t, msg.event_id, out)
    elif isinstance(msg, PreferencesSet):
        _preferences(st, msg)
    elif isinstance(msg, Complained | Unsubscribed):
        st.blocked[msg.channel] = max(t, st.blocked.get(msg.channel, t))
        _withdraw(policy, st, {msg.channel}, "do_not_contact", t, msg.event_id, out)
    elif isinstance(msg, Bounced):
        _bounce(policy, st, msg, t, out)
    elif isinstance(msg, DoNotContact):
        for channel in CHANNELS:
            st.blocked[channel] = max(t, st.blocked.get(channel, t))
        _withdraw(policy, st, set(CHANNELS), "do_not_contact", t, msg.event_id, out)
    elif isinstance(msg, EraseRequested):
        erase_customer(policy, keys, st, t, msg.event_id, out)
        return None
    return st


def advance_customer(
    policy: Policy, links: LinkSigner | None, st: CustomerState, now: float, out: Outbox
) -> CustomerState:
    before = len(out.decisions)
    for at, kind, target in due(st, now):
        firing = take_firing(policy, st, kind, target, at)
        if firing is not None:
            decide(policy, links, st, firing, max(now, at) if at < now else at, out)
    _tidy(policy, st, now, out)
    _note_decisions(policy, st, out, before)
    return st


# ------------------------------------------------------------ consent and feedback

def _preferences(st: CustomerState, ev: PreferencesSet) -> None:
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


def _bounce(policy: Policy, st: CustomerState, msg: Bounced, t: float, out: Outbox) -> None:
    """A sender could not deliver on ``msg.channel``: the channel is not used for the
    policy's ``bounce_suppress`` (the next channel in a trigger's order may be), and the
    intents waiting on it that would come due before then are cancelled (they would
    bounce too). Pending triggers stay: they are judged when due, when the hold may
    have ended."""
    hold = policy.bounce_suppress
    if hold <= 0:
        return
    until = t + hold
    known = st.bounced.get(msg.channel)
    if known is not None:
        until = max(until, known[1])
    st.bounced[msg.channel] = (t if known is None else max(t, known[0]), until)
    withdraw_sent(
        st, lambda s: s.channel == msg.channel and s.send_after < until, "bounced", t,
        msg.event_id, out,
    )


def _usable(st: CustomerState, channel: str, t: float) -> bool:
    grant = st.consents.get(channel)
    return (
        grant is not None and grant.granted
        and (grant.expires_at is None or grant.expires_at > t)
        and channel not in st.blocked
    )


def _withdraw(
    policy: Policy, st: CustomerState, channels: set[str], reason: Reason, t: float,
    event_id: str, out: Outbox,
) -> None:
    """Consent ended or a sender said stop: cancel waiting intents and hopeless triggers."""
    withdraw_sent(st, lambda s: s.channel in channels, reason, t, event_id, out)
    for _, kind, target in sorted(pending(st)):
        if any(_usable(st, ch, t) for ch in TRIGGERS[kind].channels(policy)):
            continue
        ids = armed_by(st, kind, target)
        disarm(st, kind, target)
        if could_fire(policy, st, kind, target):
            cancel_pending(st, st, kind, ids, reason, t, event_id, out)


# ---------------------------------------------------------- sessions joining

def _note_session(st: CustomerState, sid: str) -> None:
    """Every session bound to the customer: where an erasure must reach."""
    if sid not in st.sessions:
        st.sessions.append(sid)


def _adopt(policy: Policy, st: CustomerState, msg: AdoptSession, out: Outbox) -> None:
    """A session just bound to the customer hands over its carts and views."""
    _note_session(st, msg.session_id)
    for event_id in msg.absorbed:
        first_time(policy, st.seen, event_id, msg.at)
    assist_delay = TRIGGERS["assist_offer"].delay(policy)
    for sid, cart in msg.carts.items():
        for sku in cart.lines:
            if not holds(st, sku):
                index(st, sku, True, msg.at, out)
        mine = st.carts.get(sid)
        if mine is None:
            st.carts[sid] = cart
            if cart.abandoned_due is not None:
                cart.assist_due = cart.last_activity + assist_delay
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
        touch(policy, mine, True, mine.last_event_id, mine.last_activity)
    browse_delay = TRIGGERS["browse_abandonment"].delay(policy)
    cutoff = msg.at - policy.browse_view_window
    for pid, views in msg.views.items():
        prior = st.views.get(pid)
        if prior is not None and prior.due is None:
            prune_views(prior, cutoff)  # what housekeeping may already have done
            if not prior.times:
                del st.views[pid]
                prior = None
        if views.due is None:
            prune_views(views, cutoff)
            if not views.times:
                continue
        if prior is None:
            st.views[pid] = views
            continue
        # A view the customer has already (a repeat the bound session passed on, which
        # the worker may apply before the adoption: it carries the view's own time)
        # counts once.
        known = set(prior.event_ids)
        merged = sorted([
            *zip(prior.times, prior.event_ids, prior.sessions, strict=True),
            *((t, e, s) for t, e, s in zip(views.times, views.event_ids, views.sessions,
                                           strict=True) if e not in known),
        ])
        prior.times = [m[0] for m in merged]
        prior.event_ids = [m[1] for m in merged]
        prior.sessions = [m[2] for m in merged]
        if prior.due is not None or views.due is not None:
            prior.due = max(prior.times) + browse_delay
        elif len(prior.times) >= policy.browse_min_views:
            last = prior.times[-1]
            recent = sum(1 for x in prior.times if x > last - policy.browse_view_window)
            if recent >= policy.browse_min_views:
                prior.due = last + browse_delay


# ----------------------------------------------------------- bounded memory

def _tidy(policy: Policy, st: CustomerState, now: float, out: Outbox) -> None:
    """Forget what no rule can need any more: bounded state per customer."""
    if st.erased_seen and now > (st.erased_at or 0.0) + policy.dedup_window:
        st.erased_seen = frozenset()  # no redelivery is that late
    if st.bounced:
        for channel in [ch for ch, (_, until) in st.bounced.items() if until <= now]:
            del st.bounced[channel]
    horizon = now - policy.longest_memory
    if st.sent and st.sent[0].created_at < horizon:
        st.sent = [s for s in st.sent if s.created_at >= horizon]
    ttl = policy.session_ttl
    idle = [
        sid for sid, c in st.carts.items()
        if c.last_activity + ttl <= now and c.abandoned_due is None and c.assist_due is None
    ]
    for sid in idle:
        cart = st.carts.pop(sid)
        for sku in cart.lines:
            if not holds(st, sku):
                index(st, sku, False, now, out)
    tidy_views(policy, st, now)


def _note(policy: Policy, st: CustomerState, t: float, type_: str, detail: str | None) -> None:
    """Keep an input in the customer's timeline (explain), the latest few only."""
    keep = policy.explain_inputs
    if keep:
        st.inputs.append(Noted(t, type_, detail))
        if len(st.inputs) > keep:
            del st.inputs[:-keep]


def _note_decisions(policy: Policy, st: CustomerState, out: Outbox, start: int) -> None:
    """Keep the decisions about this customer that a step made since ``start``."""
    keep = policy.explain_decisions
    if not keep or len(out.decisions) == start:
        return
    for key, d in out.decisions[start:]:
        if key == st.customer_id:
            at = datetime.fromisoformat(d.at).timestamp()  # decisions are few
            st.decisions.append(
                Decided(at, d.kind, d.channel, d.outcome, d.reason, d.intent_id))
    if len(st.decisions) > keep:
        del st.decisions[:-keep]
