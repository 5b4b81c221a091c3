"""The guardrails of SPEC §4, in the spec's order, one small function each.

Each takes the ``Check`` for one (trigger, channel) and returns None when it
passes or a reason code when it fails; the first failure is the channel's
reason. Quiet hours never fail: they move ``send_after`` to the next allowed
minute (a *deferred* intent), and staleness then judges that moment.

Customer-wide guardrails (1, 4 for do_not_contact, 9–11, 13) give the same
answer for every channel; they sit in spec order all the same, so a reader
finds every rule here by its number.

``GUARDRAILS`` pairs each function with its code: what an intent's ``reasons``
lists when it passed (SPEC §2). The codes are part of the contract, so renaming
a function never changes an output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tactful.core.jurisdictions import cap_reached, next_contact, rule_for
from tactful.core.outputs import GuardrailCode, Reason, TriggerKind
from tactful.core.policy import FrequencyCap, Policy
from tactful.core.state import CustomerState, Sent


@dataclass(slots=True)
class Firing:
    """A trigger that is due now, before the guardrails judge it."""

    kind: TriggerKind
    target: str  # cart (session id) or sku: the cooldown key
    items: list[tuple[str, int, float, list[str]]]  # (sku, qty, price, categories)
    event_ids: list[str]
    created_at: float  # due time: the intent's created_at
    activity_at: float  # the activity that triggered it (min lag)
    sessions: tuple[str, ...] = ()  # where the activity happened (gift exclusion)
    still_wanted: bool = True  # False once conversion ended it (guardrail 9)


@dataclass(slots=True)
class Check:
    policy: Policy
    customer: CustomerState
    firing: Firing
    now: float
    items: list[tuple[str, int, float, list[str]]]  # non-sensitive items only
    channel: str = ""
    send_after: float = 0.0
    passed: list[GuardrailCode] = field(default_factory=list)


Guardrail = Callable[[Check], Reason | None]


def verified_identity(c: Check) -> Reason | None:
    # 1. Customer state exists only for verified customers: sessions known
    # through cookie/ip_match/device_graph never reach it (see rules/session.py).
    return None


def consent(c: Check) -> Reason | None:
    # 2. Granted, not revoked, not expired at decision time.
    grant = c.customer.consents.get(c.channel)
    if grant is None or not grant.granted:
        return "no_consent"
    if grant.expires_at is not None and grant.expires_at <= c.now:
        return "consent_expired"
    return None


def topic_preferences(c: Check) -> Reason | None:
    # 3. An opted-out topic is never used.
    if c.policy.triggers[c.firing.kind].topic in c.customer.opt_out:
        return "topic_opt_out"
    return None


def do_not_contact(c: Check) -> Reason | None:
    # 4. complained / unsubscribed (their channel) and do_not_contact (every channel) from
    # senders suppress at once; so does a bounce, on its channel, for the policy's
    # [feedback] bounce_suppress (its own code: the shopper asked for nothing).
    if c.channel in c.customer.blocked:
        return "do_not_contact"
    bounce = c.customer.bounced.get(c.channel)
    if bounce is not None and bounce[1] > c.now:
        return "bounced"
    return None


def quiet_hours(c: Check) -> Reason | None:
    # 5. sms/push/phone only inside the allowed window in the customer's zone (every
    # zone of the region when it is unknown); the customer's own quiet period and the
    # region's calling rules (§4.5, core/jurisdictions.py) narrow it. Defers, never
    # fails: a window that never opens leaves send_after unbounded and staleness fails it.
    # The search stops a week past the trigger's validity: by then it is stale whatever
    # the answer, and a week covers every weekend and holiday bridge a rule can close.
    until = c.firing.created_at + c.policy.validity + 7 * 86400.0
    allowed = next_contact(c.policy, c.customer, c.channel, c.send_after, until)
    c.send_after = float("inf") if allowed is None else allowed
    return None


def frequency_caps(c: Check) -> Reason | None:
    # 6. Emitted, not cancelled, intents counted by created_at in (now - window, now].
    for cap in c.policy.frequency_caps:
        if cap.channel is not None and cap.channel != c.channel:
            continue
        if cap_usage(cap, c.customer.sent, c.firing.created_at) >= cap.max:
            return "frequency_cap"
    # §4.5: the region's caps per channel group (and topic) suppress like these.
    rule = rule_for(c.customer.region, c.policy.jurisdictions.rules)
    if rule is not None and rule.caps:
        topic = c.policy.triggers[c.firing.kind].topic
        topics = {kind: t.topic for kind, t in c.policy.triggers.items()}
        if cap_reached(rule, c.channel, topic, c.customer.sent, c.firing.created_at, topics):
            return "frequency_cap"
    return None


def cap_usage(cap: FrequencyCap, sent: list[Sent], now: float) -> int:
    """How many of the intents a customer was sent count against ``cap`` at ``now``."""
    since = now - cap.window
    count = 0
    for s in sent:
        if s.cancelled or s.created_at <= since:
            continue
        if cap.channel is None or s.channel == cap.channel:
            count += 1
    return count


def cooldown(c: Check) -> Reason | None:
    # 7. The same kind for the same sku or cart is not repeated within the window.
    since = c.firing.created_at - c.policy.cooldown
    for sent in c.customer.sent:
        if (
            not sent.cancelled
            and sent.kind == c.firing.kind
            and sent.target == c.firing.target
            and sent.created_at > since
        ):
            return "cooldown"
    return None


def min_lag(c: Check) -> Reason | None:
    # 8. A call only long enough after the activity that triggered it.
    lag = c.firing.created_at - c.firing.activity_at
    if c.channel in c.policy.min_lag_channels and lag < c.policy.min_lag:
        return "min_lag"
    return None


def conversion(c: Check) -> Reason | None:
    # 9. A purchase or an emptied cart ends pending triggers (the engine
    # cancels them at once); a firing that was ended meanwhile stops here.
    return None if c.firing.still_wanted else "converted"


def gifts(c: Check) -> Reason | None:
    # 10. Gift purchases never feed browse or recommendation triggers; post_purchase is
    # one whatever topic a policy gives it (the engine left its gifted lines out, so one
    # is here only when every line was a gift).
    topic = c.policy.triggers[c.firing.kind].topic
    if topic != "recommendations" and c.firing.kind != "post_purchase":
        return None
    if any(item[0] in c.customer.gift_skus for item in c.firing.items):
        return "gift_excluded"
    if any(s in c.customer.gift_sessions for s in c.firing.sessions):
        return "gift_excluded"
    return None


def sensitive_category(c: Check) -> Reason | None:
    # 11. Sensitive items are left out of every trigger; nothing left, no trigger.
    return None if c.items else "sensitive_category"


def staleness(c: Check) -> Reason | None:
    # 12. Not deliverable within the trigger's validity: stale. Also when the
    # clock is already past it (a timer fired late, e.g. after a long outage).
    valid_until = c.firing.created_at + c.policy.validity
    if c.send_after > valid_until or c.now > valid_until:
        return "stale"
    return None


def erasure(c: Check) -> Reason | None:
    # 13. Erasure deletes the customer's state; nothing erased can reach here.
    return None


# Spec order (§4): the first that fails gives the reason. Each code is what an intent's
# ``reasons`` lists when the guardrail passed.
GUARDRAILS: tuple[tuple[GuardrailCode, Guardrail], ...] = (
    # 1, 9 and 13 cannot fail here (identity, conversion and erasure are settled before
    # a firing is judged, each noted below); they stay because every intent's reasons
    # list them (SPEC §2): moving one would change the outputs.
    # 1: an unbound session's firings never come here (rules/session.py).
    ("verified_identity", verified_identity),    # 1
    ("consent", consent),                        # 2
    ("topic_preferences", topic_preferences),    # 3
    ("do_not_contact", do_not_contact),          # 4
    ("quiet_hours", quiet_hours),                # 5 defers, never fails: 12 judges it
    ("frequency_cap", frequency_caps),           # 6
    ("cooldown", cooldown),                      # 7
    # 8 stays though the default policy never fails it: the email-first ladder times an
    # assist_offer from the reminder, and its 48 h delay happens to equal the lag. A policy
    # that shortens that delay, or puts phone on another trigger, meets this rule, which
    # bounds every call (SPEC §4.8), whatever trigger asked for it.
    ("min_lag", min_lag),                        # 8
    # 9: a purchase or an emptied cart cancels the pending triggers at once (storefront.py).
    ("conversion_exit", conversion),             # 9
    ("gift_exclusion", gifts),                   # 10
    ("sensitive_category", sensitive_category),  # 11
    ("staleness", staleness),                    # 12
    # 13: erasure deletes the customer's state, so no firing is left to judge.
    ("erasure", erasure),                        # 13
)


def judge(c: Check) -> Reason | None:
    """Run every guardrail for ``c.channel``; None when the channel may be used."""
    c.passed.clear()
    for code, guardrail in GUARDRAILS:
        reason = guardrail(c)
        if reason is not None:
            return reason
        c.passed.append(code)
    return None
