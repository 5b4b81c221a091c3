"""A bounce holds its channel back (policy [feedback] bounce_suppress, 30 days by default):
the next channel in a trigger's order is used meanwhile, or the trigger is suppressed as
`bounced`. Times are hours after T0 (2026-06-10 18:00Z, 14:00 in New York), as in
test_core_engine; expectations are written from docs/semantics.md ("Bounces").
"""

from __future__ import annotations

import pytest
from tests.unit.test_core_engine import DEFAULT_TOML, Story, at, norm, summary, variant, z

from tactful.core.errors import PolicyError
from tactful.core.explain import render, timeline
from tactful.core.policy import load_policy, parse_policy


def reminders(s: Story) -> list[tuple[object, ...]]:
    return [x for x in summary(s) if x[0] == "abandoned_cart"]


def cart_left(s: Story, h: float, sess: str) -> None:
    s.login(h, sess=sess)
    s.add(h, sess=sess, sku=f"sku-{sess}")


def test_the_default_hold_is_30_days_and_a_policy_may_set_it() -> None:
    assert load_policy().bounce_suppress == 30 * 86400
    without = DEFAULT_TOML[:DEFAULT_TOML.index("[feedback]")]
    assert parse_policy(without.encode()).bounce_suppress == 30 * 86400  # older files
    assert variant(("feedback", 'bounce_suppress = "30d"',
                    'bounce_suppress = "0s"')).bounce_suppress == 0
    with pytest.raises(PolicyError) as info:
        variant(("feedback", 'bounce_suppress = "30d"', 'bounce_suppress = "a month"'))
    assert info.value.key == "feedback.bounce_suppress"


def test_after_an_email_bounce_the_next_channel_is_used_then_email_again_after_the_hold() -> (
        None):
    s = Story()
    s.consent(-1, "email", "push")
    cart_left(s, 0, "sess-1")
    s.until(4)
    s.feedback(5, "bounced", "email")
    cart_left(s, 24, "sess-2")  # due at 28 h: email held back, push goes out
    cart_left(s, 5 + 30 * 24, "sess-3")  # due 4 h after the hold ended: email again
    s.until(40 * 24)
    assert [(x[1], x[2], x[4]) for x in reminders(s)] == [
        ("email", "emitted", z(4)),
        ("push", "emitted", z(28)),
        ("email", "emitted", z(9 + 30 * 24)),
    ]


def test_with_email_the_only_channel_the_trigger_is_suppressed_as_bounced() -> None:
    # (with the default order email, push, sms the last channel's reason is sms's)
    s = Story(variant(("triggers.abandoned_cart", 'channels = ["email", "push", "sms"]',
                       'channels = ["email"]')))
    s.consent(-1, "email")
    cart_left(s, 0, "sess-1")
    s.until(4)
    s.feedback(5, "bounced", "email")
    cart_left(s, 24, "sess-2")
    s.until(29)
    assert reminders(s)[-1] == ("abandoned_cart", None, "suppressed", "bounced", z(28))
    # the timeline shows the bounce and until when it holds
    t = timeline(s.pipeline.engine, "cust-1", s.pipeline.customers["cust-1"], at(29).timestamp())
    assert t.bounced == {"email": z(5 + 30 * 24)}
    text = render(t)
    assert f"email  bounced, not used until {z(5 + 30 * 24)}" in text
    assert "input     bounced email" in text
    assert "decision  abandoned_cart: suppressed (bounced)" in text


def test_a_later_email_grant_lifts_the_hold() -> None:
    s = Story()
    s.consent(-1, "email")
    s.feedback(1, "bounced", "email")
    s.consent(2, "email")  # the shopper gave an address again
    cart_left(s, 3, "sess-1")
    s.until(8)
    assert reminders(s) == [("abandoned_cart", "email", "emitted", None, z(7))]


def test_a_bounce_on_another_channel_does_not_hold_email() -> None:
    s = Story()
    s.consent(-1, "email", "sms")
    s.feedback(1, "bounced", "sms")
    cart_left(s, 3, "sess-1")
    s.until(8)
    assert reminders(s) == [("abandoned_cart", "email", "emitted", None, z(7))]


def test_a_zero_hold_keeps_the_old_behaviour() -> None:
    s = Story(variant(("feedback", 'bounce_suppress = "30d"', 'bounce_suppress = "0s"')))
    s.consent(-1, "email")
    s.feedback(1, "bounced", "email")
    cart_left(s, 3, "sess-1")
    s.until(8)
    assert reminders(s) == [("abandoned_cart", "email", "emitted", None, z(7))]


def test_a_waiting_intent_on_the_bounced_channel_is_cancelled() -> None:
    # Email held to quiet hours by this policy: a reminder due 02:00 New York waits for 08:00.
    policy = variant(("quiet_hours", 'channels = ["sms", "push", "phone"]',
                      'channels = ["email", "sms", "push", "phone"]'))
    s = Story(policy)
    s.consent(-1, "email")
    cart_left(s, 8, "sess-1")  # carted 22:00 local, due 02:00 local
    s.until(12)
    (intent,) = s.intents()
    assert norm(intent.send_after) == z(18)
    s.feedback(13, "bounced", "email")  # another mail to the address bounced at 03:00
    (cancel,) = s.cancellations()
    assert (cancel.intent_id, cancel.reason, norm(cancel.at)) == (intent.intent_id, "bounced",
                                                                  z(13))
    assert reminders(s)[-1] == ("abandoned_cart", "email", "cancelled", "bounced", z(13))


def test_a_bounce_for_a_customer_tactful_does_not_know_stores_nothing() -> None:
    s = Story()
    s.feedback(1, "bounced", "email", cust="cust-unknown")
    assert "cust-unknown" not in s.pipeline.customers


def test_the_hold_is_forgotten_once_it_ended() -> None:
    s = Story()
    s.consent(-1, "email")
    s.feedback(1, "bounced", "email")
    assert "email" in s.pipeline.customers["cust-1"].bounced
    cart_left(s, 31 * 24, "sess-1")
    s.until(32 * 24)
    assert s.pipeline.customers["cust-1"].bounced == {}
