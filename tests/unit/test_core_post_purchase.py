"""post_purchase (SPEC §3): the follow-up a week after a purchase, through the in-process
pipeline. Expectations come from SPEC §3–§4 and docs/semantics.md ("post_purchase");
times are hours after T0 (2026-06-10 18:00Z, 14:00 in New York), as in test_core_engine.
"""

from __future__ import annotations

from tests.unit.test_core_engine import Story, at, norm, summary, variant, z

from tactful.core.explain import PendingTrigger, timeline
from tactful.core.state import CustomerState, decode_state, encode_state

WEEK = 7 * 24.0
GUARDRAIL_CODES = [
    "verified_identity", "consent", "topic_preferences", "do_not_contact", "quiet_hours",
    "frequency_cap", "cooldown", "min_lag", "conversion_exit", "gift_exclusion",
    "sensitive_category", "staleness", "erasure",
]


def bought(s: Story, h: float, *lines: tuple[str, int, float, tuple[str, ...]],
           gift: bool = False, sess: str = "sess-1", cust: str | None = "cust-1") -> None:
    """Cart each line, then buy them all (the usual way to a purchase)."""
    for sku, qty, price, cats in lines:
        s.add(h, sku=sku, qty=qty, price=price, category=cats, sess=sess, cust=cust)
    s.purchase(h + 0.1, *[(sku, qty, price) for sku, qty, price, _ in lines], gift=gift,
               sess=sess, cust=cust)


def follow_ups(s: Story) -> list[tuple[object, ...]]:
    return [x for x in summary(s) if x[0] == "post_purchase"]


def test_fires_seven_days_after_the_purchase_by_email_with_its_lines() -> None:
    s = Story()
    s.consent(-1, "email")
    bought(s, 0, ("sku-kettle", 1, 45.0, ("kitchen",)), ("sku-mug", 2, 9.5, ("kitchen",)))
    purchase_id = f"ev-{s.n:03d}"
    s.pipeline.advance(at(0.1 + WEEK).timestamp() - 1, s.out)
    s._collect()
    assert follow_ups(s) == []
    s.until(0.1 + WEEK)
    d = s.one("post_purchase")
    assert (d.outcome, d.channel, d.reason, norm(d.at)) == ("emitted", "email", None,
                                                            z(0.1 + WEEK))
    assert d.trigger_event_ids == [purchase_id]
    (i,) = s.intents("post_purchase")
    assert i.topic == "recommendations"
    assert norm(i.created_at) == norm(i.send_after) == z(0.1 + WEEK)
    assert norm(i.send_before) == z(0.1 + WEEK + 24)
    assert [(x.sku, x.qty, x.price) for x in i.items] == [("sku-kettle", 1, 45.0),
                                                          ("sku-mug", 2, 9.5)]
    assert i.reasons == ["post_purchase", *GUARDRAIL_CODES]


def test_a_gift_purchase_arms_nothing() -> None:
    s = Story()
    s.consent(-1, "email")
    bought(s, 0, ("sku-scarf", 1, 30.0, ("apparel",)), gift=True)
    st = s.pipeline.customers["cust-1"]
    assert st.follow_up is None
    s.until(2 * WEEK)
    assert follow_ups(s) == []


def test_sensitive_lines_are_left_out_and_an_all_sensitive_purchase_is_suppressed() -> None:
    s = Story()
    s.consent(-1, "email", cust="cust-1")
    s.consent(-1, "email", cust="cust-2")
    s.login(-0.5, sess="sess-2", cust="cust-2")
    bought(s, 0, ("sku-vit", 1, 20.0, ("health",)), ("sku-towel", 2, 15.0, ("home",)))
    bought(s, 1, ("sku-kit", 1, 25.0, ("medical",)), sess="sess-2", cust="cust-2")
    s.until(2 * WEEK)
    (i,) = s.intents("post_purchase")
    assert i.customer_id == "cust-1"
    assert [(x.sku, x.qty) for x in i.items] == [("sku-towel", 2)]
    assert follow_ups(s)[1] == ("post_purchase", None, "suppressed", "sensitive_category",
                                z(1.1 + WEEK))


def test_an_opt_in_lets_a_sensitive_line_count() -> None:
    s = Story()
    s.consent(-1, "email")
    s.prefs(-1, topics_opt_in=["health"])
    bought(s, 0, ("sku-vit", 1, 20.0, ("health",)))
    s.until(2 * WEEK)
    (i,) = s.intents("post_purchase")
    assert [x.sku for x in i.items] == ["sku-vit"]


def test_a_line_whose_categories_tactful_never_saw_never_counts() -> None:
    # Bought without a cart_add or product_view tactful holds: it cannot tell the line is
    # not sensitive (fail closed). A viewed sku's categories come from the view.
    s = Story()
    s.consent(-1, "email")
    s.view(0, sku="sku-seen", category=("garden",))
    s.purchase(0.5, ("sku-unseen", 1, 10.0), ("sku-seen", 1, 12.0))
    s.until(2 * WEEK)
    (i,) = s.intents("post_purchase")
    assert [x.sku for x in i.items] == ["sku-seen"]
    t = Story()
    t.consent(-1, "email")
    t.purchase(0.5, ("sku-unseen", 1, 10.0))
    t.until(2 * WEEK)
    assert follow_ups(t) == [("post_purchase", None, "suppressed", "sensitive_category",
                              z(0.5 + WEEK))]


def test_a_sku_ever_bought_as_a_gift_is_left_out_and_all_gifted_is_gift_excluded() -> None:
    s = Story()
    s.consent(-1, "email")
    bought(s, 0, ("sku-watch", 1, 180.0, ("watches",)), gift=True)
    bought(s, 1, ("sku-watch", 1, 180.0, ("watches",)), ("sku-strap", 1, 20.0, ("watches",)))
    s.until(2 * WEEK)
    (i,) = s.intents("post_purchase")
    assert [x.sku for x in i.items] == ["sku-strap"]  # SPEC §4.10: the gifted sku never feeds it
    t = Story()
    t.consent(-1, "email")
    bought(t, 0, ("sku-watch", 1, 180.0, ("watches",)), gift=True)
    bought(t, 1, ("sku-watch", 1, 180.0, ("watches",)))
    t.until(2 * WEEK)
    assert follow_ups(t) == [("post_purchase", None, "suppressed", "gift_excluded",
                              z(1.1 + WEEK))]


def test_a_newer_purchase_supersedes_the_pending_follow_up() -> None:
    s = Story()
    s.consent(-1, "email")
    bought(s, 0, ("sku-tent", 1, 120.0, ("outdoor",)))
    first = f"ev-{s.n:03d}"
    bought(s, 72, ("sku-lantern", 1, 25.0, ("outdoor",)), ("sku-tent", 1, 110.0, ("outdoor",)))
    second = f"ev-{s.n:03d}"
    s.until(0.1 + WEEK + 1)  # the first purchase's due time has passed: nothing fired
    assert follow_ups(s) == []
    s.until(72.1 + WEEK)
    d = s.one("post_purchase")
    assert (d.outcome, norm(d.at)) == ("emitted", z(72.1 + WEEK))
    assert d.trigger_event_ids == [first, second]
    (i,) = s.intents("post_purchase")
    # one line per sku, quantities added, the latest price
    assert [(x.sku, x.qty, x.price) for x in i.items] == [("sku-tent", 2, 110.0),
                                                          ("sku-lantern", 1, 25.0)]


def test_a_late_purchase_stamped_earlier_does_not_bring_the_follow_up_forward() -> None:
    s = Story()
    s.consent(-1, "email")
    bought(s, 10, ("sku-a", 1, 10.0, ("home",)))
    bought(s, 2, ("sku-b", 1, 10.0, ("home",)))  # arrives after, stamped 8 h before
    s.until(2 * WEEK)
    (d,) = s.decisions("post_purchase")
    assert norm(d.at) == z(10.1 + WEEK)


def test_a_purchase_in_an_unverified_session_is_suppressed_under_the_session() -> None:
    s = Story()
    s.consent(-1, "email")
    s.add(0, sku="sku-a", sess="sess-x", method="ip_match")
    s.purchase(0.1, ("sku-a", 1, 20.0), sess="sess-x", cust=None)
    s.login(1, sess="sess-x")  # a later login does not adopt a purchase made unverified
    s.until(2 * WEEK)
    (d,) = s.decisions("post_purchase")
    assert (d.outcome, d.reason, d.customer_id, d.session_id) == (
        "suppressed", "unverified_identity", None, "sess-x")
    assert norm(d.at) == z(0.1 + WEEK)
    assert s.intents("post_purchase") == []


def test_a_revoked_email_consent_cancels_it_and_another_channel_does_not() -> None:
    s = Story()
    s.consent(-1, "email", "sms")
    bought(s, 0, ("sku-a", 1, 20.0, ("home",)))
    s.revoke(24, "sms")  # not a channel of post_purchase
    assert follow_ups(s) == []
    s.revoke(48, "email")
    s.until(2 * WEEK)
    assert follow_ups(s) == [("post_purchase", None, "cancelled", "no_consent", z(48))]


def test_do_not_contact_cancels_it() -> None:
    s = Story()
    s.consent(-1, "email")
    bought(s, 0, ("sku-a", 1, 20.0, ("home",)))
    s.feedback(30, "do_not_contact")
    s.until(2 * WEEK)
    assert follow_ups(s) == [("post_purchase", None, "cancelled", "do_not_contact", z(30))]


def test_an_opt_out_of_recommendations_while_pending_suppresses_it_when_due() -> None:
    s = Story()
    s.consent(-1, "email")
    bought(s, 0, ("sku-a", 1, 20.0, ("home",)))
    s.prefs(30, topics_opt_out=["recommendations"])
    s.until(2 * WEEK)
    assert follow_ups(s) == [("post_purchase", None, "suppressed", "topic_opt_out",
                              z(0.1 + WEEK))]


def test_erasure_cancels_it_also_for_a_purchase_made_before_the_session_was_bound() -> None:
    s = Story()
    s.consent(-1, "email")
    bought(s, 0, ("sku-a", 1, 20.0, ("home",)))
    s.purchase(1, ("sku-b", 1, 5.0), sess="sess-g", cust=None)  # as a guest
    s.login(2, sess="sess-g")
    s.erase(50)
    s.until(2 * WEEK)
    got = sorted((d.reason, d.customer_id or "-", d.session_id or "-", norm(d.at))
                 for d in s.decisions("post_purchase"))
    assert got == [("erased", "-", "sess-g", z(50)), ("erased", "cust-1", "-", z(50))]
    assert all(d.outcome == "cancelled" for d in s.decisions("post_purchase"))


def test_a_deferred_follow_up_is_not_withdrawn_by_buying_the_same_sku_again() -> None:
    # A policy that holds email to quiet hours: due 02:00 New York, deferred to 08:00.
    policy = variant(("quiet_hours", 'channels = ["sms", "push", "phone"]',
                      'channels = ["email", "sms", "push", "phone"]'))
    s = Story(policy)
    s.consent(-1, "email")
    bought(s, 11.9, ("sku-a", 1, 20.0, ("home",)))  # 01:54 + 6 min → due 02:00 local
    s.until(12 + WEEK)
    (d,) = s.decisions("post_purchase")
    assert (d.outcome, d.reason) == ("deferred", "quiet_hours")
    bought(s, 13 + WEEK, ("sku-a", 1, 20.0, ("home",)))  # 03:00 local, before send_after
    assert s.cancellations() == []


def test_the_pending_follow_up_is_in_the_state_timers_and_the_timeline() -> None:
    s = Story()
    s.consent(-1, "email")
    bought(s, 0, ("sku-a", 1, 20.0, ("home",)))
    st = s.pipeline.customers["cust-1"]
    engine = s.pipeline.engine
    due = at(0.1 + WEEK).timestamp()
    assert engine.next_due(st) == due
    order = st.follow_up.order_id if st.follow_up else None
    t = timeline(engine, "cust-1", st, at(1).timestamp())
    assert t.pending == [PendingTrigger("post_purchase", z(0.1 + WEEK), str(order))]
    again = decode_state(CustomerState, encode_state(st))  # survives a restart
    assert again.follow_up == st.follow_up
