"""The engine driven through ``Pipeline`` (the in-process runtime of ``tactful replay``).

Expectations come from SPEC §1–§5 and docs/semantics.md. Times are hours after T0,
2026-06-10 18:00Z = 14:00 in America/New_York (EDT), the default zone: inside the
08:00–21:00 window, so channels held to quiet hours are not deferred unless a
test says so.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from importlib import resources

import msgspec
import pytest

from tactful.core.engine import Engine, Outbox
from tactful.core.events import (
    Bounced,
    CartAdd,
    CartRemove,
    CheckoutStarted,
    Clicked,
    Complained,
    ConsentGranted,
    ConsentRevoked,
    Delivered,
    DoNotContact,
    EraseRequested,
    Event,
    Identity,
    Item,
    Login,
    Logout,
    Opened,
    PageView,
    PreferencesSet,
    PriceChange,
    ProductView,
    Purchase,
    QuietHours,
    StockLevel,
    Unsubscribed,
)
from tactful.core.links import Expired, LinkClaims, LinkSigner, Verified
from tactful.core.outputs import Cancellation, ContactIntent, Decision
from tactful.core.pipeline import Pipeline
from tactful.core.policy import Policy, load_policy, parse_policy
from tactful.core.state import CustomerState, SessionState, SkuState, decode_state, encode_state

POLICY = load_policy()
DEFAULT_TOML = (resources.files("tactful") / "policy" / "default.toml").read_text()
T0 = datetime(2026, 6, 10, 18, 0, tzinfo=UTC)  # 14:00 EDT
ALL = ("email", "sms", "push", "phone")
FEEDBACK = {
    "delivered": Delivered, "opened": Opened, "clicked": Clicked, "bounced": Bounced,
    "complained": Complained, "unsubscribed": Unsubscribed, "do_not_contact": DoNotContact,
}


def at(h: float) -> datetime:
    return T0 + timedelta(hours=h)


def z(h: float) -> str:
    """The RFC 3339 UTC text of T0 + h hours."""
    return at(h).strftime("%Y-%m-%dT%H:%M:%SZ")


def norm(text: str) -> str:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def variant(*edits: tuple[str, str, str]) -> Policy:
    """The default TOML with ``old`` → ``new`` replaced after ``[section]``."""
    text = DEFAULT_TOML
    for section, old, new in edits:
        start = text.index(f"[{section}]\n")
        i = text.index(old, start)
        text = text[:i] + new + text[i + len(old):]
    return parse_policy(text.encode())


class Story:
    """Feeds events one by one into a fresh pipeline and keeps everything it wrote."""

    def __init__(self, policy: Policy = POLICY, links: LinkSigner | None = None) -> None:
        self.pipeline = Pipeline(Engine(policy, links))
        self.out = Outbox()
        self.n = 0
        self.intent_log: list[tuple[str, ContactIntent | Cancellation]] = []
        self.decision_log: list[tuple[str, Decision]] = []

    # -- plumbing
    def _id(self) -> str:
        self.n += 1
        return f"ev-{self.n:03d}"

    def feed(self, ev: Event) -> Event:
        self.pipeline.feed(ev, self.out)
        self._collect()
        return ev

    def until(self, h: float) -> Story:
        self.pipeline.advance(at(h).timestamp(), self.out)
        self._collect()
        return self

    def _collect(self) -> None:
        self.intent_log += self.out.intents
        self.decision_log += self.out.decisions
        self.out.intents.clear()
        self.out.decisions.clear()

    # -- outputs
    def decisions(self, kind: str | None = None) -> list[Decision]:
        return [d for _, d in self.decision_log if kind is None or d.kind == kind]

    def intents(self, kind: str | None = None) -> list[ContactIntent]:
        return [i for _, i in self.intent_log
                if isinstance(i, ContactIntent) and (kind is None or i.kind == kind)]

    def cancellations(self) -> list[Cancellation]:
        return [i for _, i in self.intent_log if isinstance(i, Cancellation)]

    def one(self, kind: str) -> Decision:
        ds = self.decisions(kind)
        assert len(ds) == 1, [(d.kind, d.outcome, d.reason, d.at) for d in self.decisions()]
        return ds[0]

    # -- consent and feedback
    def consent(self, h: float, *channels: str, cust: str = "cust-1",
                expires: float | None = None) -> None:
        for ch in channels or ALL:
            self.feed(ConsentGranted(
                event_id=self._id(), ts=at(h), customer_id=cust, channel=ch, source="signup",
                expires_at=None if expires is None else at(expires)))

    def revoke(self, h: float, channel: str, cust: str = "cust-1") -> None:
        self.feed(ConsentRevoked(event_id=self._id(), ts=at(h), customer_id=cust,
                                 channel=channel, source="preference_center"))

    def prefs(self, h: float, cust: str = "cust-1", **kw: object) -> None:
        self.feed(PreferencesSet(event_id=self._id(), ts=at(h), customer_id=cust, **kw))

    def feedback(self, h: float, kind: str, channel: str = "email", cust: str = "cust-1") -> None:
        self.feed(FEEDBACK[kind](event_id=self._id(), ts=at(h), customer_id=cust, channel=channel))

    def erase(self, h: float, cust: str = "cust-1") -> None:
        self.feed(EraseRequested(event_id=self._id(), ts=at(h), customer_id=cust))

    # -- storefront
    @staticmethod
    def _who(cust: str | None, method: str) -> dict[str, object]:
        if cust is None:
            return {}
        return {"customer_id": cust, "identity": Identity(method)}

    def login(self, h: float, sess: str = "sess-1", cust: str = "cust-1",
              method: str = "login") -> None:
        self.feed(Login(event_id=self._id(), ts=at(h), session_id=sess, **self._who(cust, method)))

    def logout(self, h: float, sess: str = "sess-1", cust: str | None = "cust-1") -> None:
        self.feed(Logout(event_id=self._id(), ts=at(h), session_id=sess,
                         **self._who(cust, "login")))

    def page(self, h: float, sess: str = "sess-1", cust: str | None = None) -> None:
        self.feed(PageView(event_id=self._id(), ts=at(h), session_id=sess,
                           **self._who(cust, "login")))

    def _product(self, cls: type, h: float, sku: str, sess: str, cust: str | None, method: str,
                 price: float, qty: int, category: tuple[str, ...], product: str | None,
                 event_id: str | None) -> Event:
        return self.feed(cls(
            event_id=event_id or self._id(), ts=at(h), session_id=sess,
            **self._who(cust, method), sku=sku, product_id=product or f"prod-{sku}",
            category=list(category), price=price, currency="USD", qty=qty))

    def add(self, h: float, sku: str = "sku-1", sess: str = "sess-1", cust: str | None = "cust-1",
            method: str = "login", price: float = 20.0, qty: int = 1,
            category: tuple[str, ...] = ("home",), product: str | None = None,
            event_id: str | None = None) -> Event:
        return self._product(CartAdd, h, sku, sess, cust, method, price, qty, category, product,
                             event_id)

    def remove(self, h: float, sku: str = "sku-1", sess: str = "sess-1",
               cust: str | None = "cust-1", qty: int = 1, price: float = 20.0) -> Event:
        return self._product(CartRemove, h, sku, sess, cust, "login", price, qty, ("home",),
                             None, None)

    def view(self, h: float, sku: str = "sku-v", sess: str = "sess-1",
             cust: str | None = "cust-1", method: str = "login", price: float = 30.0,
             category: tuple[str, ...] = ("home",), product: str | None = None) -> Event:
        return self._product(ProductView, h, sku, sess, cust, method, price, 1, category, product,
                             None)

    def checkout(self, h: float, sess: str = "sess-1", cust: str | None = "cust-1") -> None:
        self.feed(CheckoutStarted(event_id=self._id(), ts=at(h), session_id=sess,
                                  **self._who(cust, "login")))

    def purchase(self, h: float, *items: tuple[str, int, float], sess: str = "sess-1",
                 cust: str | None = "cust-1", gift: bool = False) -> None:
        self.feed(Purchase(
            event_id=self._id(), ts=at(h), session_id=sess, **self._who(cust, "login"),
            order_id=f"ord-{self.n}", items=[Item(s, q, p) for s, q, p in items], gift=gift))

    # -- inventory
    def stock(self, h: float, sku: str, available: int, event_id: str | None = None) -> None:
        self.feed(StockLevel(event_id=event_id or self._id(), ts=at(h), sku=sku,
                             available=available))

    def price(self, h: float, sku: str, price: float) -> None:
        self.feed(PriceChange(event_id=self._id(), ts=at(h), sku=sku, price=price, currency="USD"))


def summary(story: Story) -> list[tuple[object, ...]]:
    return [(d.kind, d.channel, d.outcome, d.reason, norm(d.at)) for d in story.decisions()]


# =============================================================== abandoned_cart


def test_abandoned_cart_fires_at_exactly_4h_not_a_second_before() -> None:
    s = Story()
    s.consent(-1, "email")
    s.add(0)
    s.pipeline.advance(at(4).timestamp() - 1, s.out)
    s._collect()
    assert s.decisions() == []
    s.until(4)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.channel, d.reason, norm(d.at)) == ("emitted", "email", None, z(4))
    (i,) = s.intents()
    assert i.customer_id == "cust-1" and i.kind == "abandoned_cart"
    assert norm(i.created_at) == z(4) and norm(i.send_after) == z(4)
    assert norm(i.send_before) == z(28)  # §4.12: 24 h validity
    assert i.topic == "cart_reminders"
    assert [(x.sku, x.qty, x.price) for x in i.items] == [("sku-1", 1, 20.0)]
    # SPEC §2: the trigger, then the code of every guardrail of §4 it passed, in order
    assert i.reasons == [
        "abandoned_cart", "verified_identity", "consent", "topic_preferences",
        "do_not_contact", "quiet_hours", "frequency_cap", "cooldown", "min_lag",
        "conversion_exit", "gift_exclusion", "sensitive_category", "staleness", "erasure",
    ]
    assert i.consent.channel == "email" and i.consent.source == "signup"
    assert norm(i.consent.granted_at) == z(-1)
    assert i.policy_version == POLICY.version
    assert d.intent_id == i.intent_id
    assert d.trigger_event_ids  # the activity that armed it


def test_event_at_exactly_the_due_time_sees_the_trigger_fire_first() -> None:
    s = Story()
    s.consent(-1, "email")
    s.add(0)
    s.add(4, sku="sku-2")  # at the due instant: the trigger fires before this is applied
    d = s.one("abandoned_cart")
    assert norm(d.at) == z(4)
    assert [x.sku for x in s.intents()[0].items] == ["sku-1"]


@pytest.mark.parametrize("activity", ["add", "remove_one", "checkout", "purchase_other"])
def test_new_activity_rearms_the_cart(activity: str) -> None:
    s = Story()
    s.consent(-1, "email")
    s.add(0, qty=2)
    if activity == "add":
        s.add(3, sku="sku-2")
    elif activity == "remove_one":
        s.remove(3, qty=1)
    elif activity == "checkout":
        s.checkout(3)
    else:
        s.purchase(3, ("sku-other", 1, 5.0))
    s.until(6.99)
    assert s.decisions("abandoned_cart") == []
    s.until(7)
    assert norm(s.one("abandoned_cart").at) == z(7)


def test_browsing_is_not_cart_activity() -> None:
    s = Story()
    s.consent(-1, "email")
    s.add(0)
    s.page(2, cust="cust-1")
    s.view(3)
    s.until(4)
    assert norm(s.one("abandoned_cart").at) == z(4)


def test_fires_once_per_idle_period_even_after_consent_arrives() -> None:
    s = Story()
    s.add(0)
    s.until(4)
    assert s.one("abandoned_cart").reason == "no_consent"
    s.consent(5, "email")
    s.until(24 * 10)
    assert len(s.decisions("abandoned_cart")) == 1  # not retried
    s.add(24 * 10 + 1, sku="sku-2")  # new activity: a new idle period
    s.until(24 * 10 + 5)
    assert [d.outcome for d in s.decisions("abandoned_cart")] == ["suppressed", "emitted"]


def test_created_at_is_the_due_time_when_a_later_event_moves_the_clock() -> None:
    s = Story()
    s.consent(-1, "email")
    s.add(0)
    s.page(72, sess="sess-other")  # the next thing the engine hears of, 3 days later
    d = s.one("abandoned_cart")
    assert norm(d.at) == z(4)
    (i,) = s.intents()
    assert norm(i.created_at) == z(4)
    assert norm(i.send_before) == z(28)


def test_unverified_session_cart_is_recorded_by_session() -> None:
    s = Story()
    s.consent(-1, cust="cust-77")
    s.add(0, sess="sess-a01", cust="cust-77", method="ip_match")
    s.until(4)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.reason, d.customer_id, d.session_id) == (
        "suppressed", "unverified_identity", None, "sess-a01")
    assert s.intents() == []
    key, _ = s.decision_log[0]
    assert key == "sess-a01"  # keyed by session, nothing under the guessed customer
    assert not any(k == "cust-77" for k, _ in s.decision_log)
    cust = s.pipeline.customers.get("cust-77")
    assert cust is None or not cust.carts


@pytest.mark.parametrize("method", ["cookie", "ip_match", "device_graph"])
def test_no_unverified_method_binds_a_session(method: str) -> None:
    s = Story()
    s.consent(-1, cust="cust-9")
    s.login(0, cust="cust-9", method=method)
    s.add(0.5, cust="cust-9", method=method)
    s.until(5)
    assert s.one("abandoned_cart").reason == "unverified_identity"
    assert s.intents() == []


@pytest.mark.parametrize("method", ["login", "email_link"])
def test_verified_methods_bind(method: str) -> None:
    s = Story()
    s.consent(-1, "email")
    s.add(0, method=method)
    s.until(4)
    assert s.one("abandoned_cart").outcome == "emitted"


# ================================================================= assist_offer


def _big_cart(s: Story, value_each: float = 250.0) -> None:
    s.consent(-1, "email", "phone")
    s.add(0, sku="sku-a", price=value_each)
    s.add(0, sku="sku-b", price=value_each)


def test_assist_offer_after_reminder_for_a_cart_of_500() -> None:
    s = Story()
    _big_cart(s)  # exactly 500
    s.until(48 + 24)
    assert s.one("abandoned_cart").outcome == "emitted"
    d = s.one("assist_offer")
    assert (d.outcome, d.channel, norm(d.at)) == ("emitted", "phone", z(48))
    (i,) = s.intents("assist_offer")
    assert norm(i.created_at) == z(48)
    assert i.topic == "cart_reminders"
    assert sorted(x.sku for x in i.items) == ["sku-a", "sku-b"]


def test_assist_offer_not_for_a_cart_under_500() -> None:
    s = Story()
    _big_cart(s, value_each=249.99)
    s.until(24 * 7)
    assert s.one("abandoned_cart").outcome == "emitted"
    assert s.decisions("assist_offer") == []


def test_assist_offer_needs_a_reminder_that_went_out() -> None:
    s = Story()
    s.consent(-1, "phone")  # no email, push or sms: the reminder is suppressed
    s.add(0, sku="sku-a", price=600.0)
    s.until(24 * 7)
    assert s.one("abandoned_cart").outcome == "suppressed"
    assert s.decisions("assist_offer") == []
    assert s.intents() == []


def test_a_push_reminder_does_not_open_the_way_to_a_call() -> None:
    # SPEC §3: the ladder is email first; the default policy counts email reminders only.
    s = Story()
    s.consent(-1, "push", "phone")
    s.add(0, sku="sku-a", price=600.0)
    s.until(24 * 7)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.channel) == ("emitted", "push")
    assert s.decisions("assist_offer") == []  # the trigger never fired
    assert [i.channel for i in s.intents()] == ["push"]


def test_an_sms_reminder_does_not_open_the_way_to_a_call() -> None:
    s = Story()
    s.consent(-1, "sms", "phone")
    s.add(0, sku="sku-a", price=600.0)
    s.until(24 * 7)
    assert s.one("abandoned_cart").channel == "sms"
    assert s.decisions("assist_offer") == []


def test_a_cart_reminded_by_push_leaves_no_call_to_cancel() -> None:
    # The pending call could never have fired, so emptying the cart cancels nothing of it.
    s = Story()
    s.consent(-1, "push", "phone")
    s.add(0, sku="sku-a", price=600.0)
    s.until(5)
    s.remove(10, sku="sku-a", price=600.0)
    s.until(24 * 7)
    assert s.decisions("assist_offer") == []


def test_a_policy_may_count_push_reminders_too() -> None:
    p = variant(("triggers.assist_offer", 'reminder_channels = ["email"]',
                 'reminder_channels = ["email", "push"]'))
    s = Story(p)
    s.consent(-1, "push", "phone")
    s.add(0, sku="sku-a", price=600.0)
    s.until(24 * 7)
    assert s.one("abandoned_cart").channel == "push"
    d = s.one("assist_offer")
    assert (d.outcome, d.channel, norm(d.at)) == ("emitted", "phone", z(48))


def test_a_cart_emptied_after_an_email_reminder_cancels_the_pending_call() -> None:
    s = Story()
    s.consent(-1, "email", "phone")
    s.add(0, sku="sku-a", price=600.0)
    s.until(5)
    s.remove(10, sku="sku-a", price=600.0)
    s.until(24 * 7)
    assert s.one("abandoned_cart").outcome == "emitted"
    d = s.one("assist_offer")
    assert (d.outcome, d.reason, d.channel, norm(d.at)) == (
        "cancelled", "cart_emptied", None, z(10))


def test_min_lag_fails_a_call_under_a_policy_that_calls_sooner() -> None:
    # The default policy never reaches §4.8 (the call is due 48 h after the activity, the
    # lag is 48 h). A policy that calls after 30 h still has the email-first ladder met
    # (reminder at +4 h, 26 h before) and meets the minimum lag instead.
    p = variant(("triggers.assist_offer", 'delay = "48h"', 'delay = "30h"'))
    s = Story(p)
    _big_cart(s)
    s.until(24 * 4)
    assert s.one("abandoned_cart").outcome == "emitted"
    d = s.one("assist_offer")
    assert (d.outcome, d.reason, d.channel, norm(d.at)) == ("suppressed", "min_lag", None, z(30))
    assert s.intents("assist_offer") == []


def test_assist_offer_not_after_purchase() -> None:
    s = Story()
    _big_cart(s)
    s.until(5)
    s.purchase(10, ("sku-a", 1, 250.0), ("sku-b", 1, 250.0))
    s.until(24 * 7)
    assert s.intents("assist_offer") == []
    assert all(d.outcome == "cancelled" and d.reason == "converted"
               for d in s.decisions("assist_offer"))


def test_assist_offer_delay_measured_from_last_activity() -> None:
    s = Story()
    _big_cart(s)
    s.checkout(3)
    s.until(50.99)
    assert s.decisions("assist_offer") == []
    s.until(24 * 4)
    assert norm(s.one("abandoned_cart").at) == z(7)
    assert norm(s.one("assist_offer").at) == z(51)


def test_assist_offer_reminder_must_be_old_enough_exact_edge() -> None:
    # after_reminder 44h: the reminder went out at +4h, the call is due at +48h: exactly 44 h.
    p = variant(("triggers.assist_offer", 'after_reminder = "24h"', 'after_reminder = "44h"'))
    s = Story(p)
    _big_cart(s)
    s.until(24 * 4)
    assert s.one("assist_offer").outcome == "emitted"


def test_assist_offer_reminder_too_recent() -> None:
    p = variant(("triggers.assist_offer", 'after_reminder = "24h"', 'after_reminder = "45h"'))
    s = Story(p)
    _big_cart(s)
    s.until(24 * 4)
    assert s.decisions("assist_offer") == []


def test_assist_offer_sensitive_lines_do_not_count_toward_value() -> None:
    s = Story()
    s.consent(-1, "email", "phone")
    s.add(0, sku="sku-a", price=100.0)
    s.add(0, sku="sku-hearing", price=900.0, category=("health", "age_related"))
    s.until(24 * 4)
    assert s.decisions("assist_offer") == []
    assert [x.sku for x in s.intents("abandoned_cart")[0].items] == ["sku-a"]


# =========================================================== browse_abandonment


def test_browse_abandonment_fires_24h_after_the_third_view() -> None:
    s = Story()
    s.consent(-1, "email")
    for h in (0, 1, 2):
        s.view(h, sku="sku-v", price=30.0)
    s.until(25.99)
    assert s.decisions("browse_abandonment") == []
    s.until(26)
    d = s.one("browse_abandonment")
    assert (d.outcome, d.channel, norm(d.at)) == ("emitted", "email", z(26))
    (i,) = s.intents()
    assert i.topic == "recommendations"
    assert [(x.sku, x.price) for x in i.items] == [("sku-v", 30.0)]
    assert len(d.trigger_event_ids) == 3


def test_browse_two_views_do_nothing() -> None:
    s = Story()
    s.consent(-1, "email")
    s.view(0)
    s.view(1)
    s.until(24 * 5)
    assert s.decisions() == []


def test_browse_views_must_fall_within_24h() -> None:
    s = Story()
    s.consent(-1, "email")
    for h in (0, 13, 24.5):
        s.view(h)
    s.until(24 * 5)
    assert s.decisions("browse_abandonment") == []


def test_browse_further_view_moves_due_time() -> None:
    s = Story()
    s.consent(-1, "email")
    for h in (0, 1, 2, 10):
        s.view(h)
    s.until(34)
    assert norm(s.one("browse_abandonment").at) == z(34)


def test_browse_different_products_are_counted_apart() -> None:
    s = Story()
    s.consent(-1, "email")
    s.view(0, sku="sku-x")
    s.view(1, sku="sku-y")
    s.view(2, sku="sku-z")
    s.until(24 * 3)
    assert s.decisions() == []


def test_cart_add_of_the_product_cancels_browse_silently() -> None:
    s = Story()
    s.consent(-1, "email")
    for h in (0, 1, 2):
        s.view(h, sku="sku-v")
    s.add(3, sku="sku-v")
    s.until(24 * 3)
    assert s.decisions("browse_abandonment") == []
    assert s.one("abandoned_cart").outcome == "emitted"


def test_purchase_cancels_browse_as_converted() -> None:
    s = Story()
    s.consent(-1, "email")
    for h in (0, 1, 2):
        s.view(h, sku="sku-v")
    s.purchase(3, ("sku-v", 1, 30.0))
    s.until(24 * 3)
    d = s.one("browse_abandonment")
    assert (d.outcome, d.reason, d.channel, norm(d.at)) == ("cancelled", "converted", None, z(3))


def test_unverified_browse_is_recorded_by_session() -> None:
    s = Story()
    for h in (0, 1, 2):
        s.view(h, sess="sess-anon", cust=None)
    s.until(26)
    d = s.one("browse_abandonment")
    assert (d.outcome, d.reason, d.customer_id, d.session_id) == (
        "suppressed", "unverified_identity", None, "sess-anon")


# ========================================================== low stock / back in stock


def _carted(s: Story, sku: str = "sku-s", price: float = 50.0) -> None:
    s.consent(-2)
    s.add(0, sku=sku, price=price)


def test_low_stock_fires_on_crossing_from_above_3() -> None:
    s = Story()
    s.stock(-1, "sku-s", 10)
    _carted(s)
    s.stock(1, "sku-s", 3)
    d = s.one("low_stock")
    assert (d.outcome, d.channel, norm(d.at)) == ("emitted", "push", z(1))
    (i,) = s.intents("low_stock")
    assert i.topic == "stock_alerts" and [x.sku for x in i.items] == ["sku-s"]
    assert norm(i.created_at) == z(1)


@pytest.mark.parametrize(("before", "after"), [(10, 4), (4, 4), (3, 2), (2, 0), (3, 3)])
def test_low_stock_no_crossing_no_trigger(before: int, after: int) -> None:
    s = Story()
    s.stock(-1, "sku-s", before)
    _carted(s)
    s.stock(1, "sku-s", after)
    assert s.decisions("low_stock") == []


def test_low_stock_first_level_is_no_transition() -> None:
    s = Story()
    _carted(s)
    s.stock(1, "sku-s", 2)
    assert s.decisions() == []


def test_low_stock_from_4_to_0_fires() -> None:
    s = Story()
    s.stock(-1, "sku-s", 4)
    _carted(s)
    s.stock(1, "sku-s", 0)
    assert s.one("low_stock").outcome == "emitted"


def test_low_stock_ignores_skus_not_in_a_cart() -> None:
    s = Story()
    s.stock(-1, "sku-s", 10)
    _carted(s, sku="sku-other")
    s.stock(1, "sku-s", 1)
    assert s.decisions("low_stock") == []


def test_low_stock_ignores_unverified_carts() -> None:
    s = Story()
    s.consent(-2, cust="cust-77")
    s.stock(-1, "sku-s", 10)
    s.add(0, sku="sku-s", cust="cust-77", method="ip_match", sess="sess-anon")
    s.stock(1, "sku-s", 1)
    assert s.decisions("low_stock") == []


def test_back_in_stock_fires_from_0() -> None:
    s = Story()
    s.stock(-1, "sku-s", 0)
    _carted(s)
    s.stock(1, "sku-s", 12)
    d = s.one("back_in_stock")
    assert (d.outcome, d.channel) == ("emitted", "push")
    assert s.decisions("low_stock") == []


@pytest.mark.parametrize(("before", "after"), [(0, 0), (1, 5), (3, 20)])
def test_back_in_stock_only_from_0(before: int, after: int) -> None:
    s = Story()
    s.stock(-1, "sku-s", before)
    _carted(s)
    s.stock(1, "sku-s", after)
    assert s.decisions("back_in_stock") == []


def test_back_in_stock_first_level_is_no_transition() -> None:
    s = Story()
    _carted(s)
    s.stock(1, "sku-s", 12)
    assert s.decisions() == []


def test_stock_trigger_stops_once_the_sku_left_the_cart() -> None:
    s = Story()
    s.stock(-1, "sku-s", 10)
    _carted(s)
    s.add(0, sku="sku-keep")
    s.remove(0.5, sku="sku-s")
    s.stock(1, "sku-s", 1)
    assert s.decisions("low_stock") == []


# =================================================================== price drop


def test_price_drop_of_9_percent_does_nothing_10_percent_fires() -> None:
    s = Story()
    s.price(-1, "sku-p", 100.0)
    _carted(s, sku="sku-p", price=100.0)
    s.price(1, "sku-p", 91.0)
    assert s.decisions("price_drop") == []
    s.price(2, "sku-p", 90.0)
    d = s.one("price_drop")
    assert (d.outcome, d.channel, norm(d.at)) == ("emitted", "email", z(2))
    (i,) = s.intents("price_drop")
    assert i.topic == "deals"
    assert [(x.sku, x.price) for x in i.items] == [("sku-p", 90.0)]


def test_price_drop_measured_against_the_cart_add_price_not_the_last_price() -> None:
    s = Story()
    _carted(s, sku="sku-p", price=100.0)
    s.price(1, "sku-p", 95.0)  # 5 %
    s.price(2, "sku-p", 92.0)  # 3 % below the last price, 8 % below the cart price
    assert s.decisions("price_drop") == []
    s.price(3, "sku-p", 89.0)  # 3 % below the last price, 11 % below the cart price
    assert s.one("price_drop").outcome == "emitted"


def test_price_drop_not_measured_against_an_old_catalog_price() -> None:
    s = Story()
    s.price(-1, "sku-p", 200.0)
    _carted(s, sku="sku-p", price=100.0)  # bought into the cart at 100
    s.price(1, "sku-p", 95.0)  # 52 % below the catalog, 5 % below the cart price
    assert s.decisions("price_drop") == []


def test_price_rise_does_nothing() -> None:
    s = Story()
    _carted(s, sku="sku-p", price=100.0)
    s.price(1, "sku-p", 150.0)
    assert s.decisions() == []


# ================================================== guardrail reasons, from events


def test_reason_no_consent() -> None:
    s = Story()
    s.add(0)
    s.until(4)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.reason, d.channel, d.customer_id) == (
        "suppressed", "no_consent", None, "cust-1")
    assert s.intents() == []


def test_reason_no_consent_after_revocation() -> None:
    s = Story()
    s.consent(-2, "email")
    s.revoke(-1, "email")
    s.add(0)
    s.until(4)
    assert s.one("abandoned_cart").reason == "no_consent"


def test_reason_consent_expired_on_the_last_channel() -> None:
    s = Story()
    s.consent(-1, "sms", expires=3)
    s.add(0)
    s.until(4)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.reason) == ("suppressed", "consent_expired")


def test_consent_expiring_exactly_at_the_due_time_is_expired() -> None:
    s = Story()
    s.consent(-1, "email", "push", "sms", expires=4)
    s.add(0)
    s.until(4)
    assert s.one("abandoned_cart").reason == "consent_expired"


def test_consent_expiring_after_the_due_time_passes() -> None:
    s = Story()
    s.consent(-1, "email", expires=4.001)
    s.add(0)
    s.until(4)
    assert s.one("abandoned_cart").outcome == "emitted"


def test_late_grant_stamped_before_a_revocation_does_not_restore_consent() -> None:
    # semantics.md: consent must be granted and *not revoked after*. The revocation (10:00)
    # is after the grant (09:00) in event time, whatever order they arrive in.
    s = Story()
    s.revoke(-1, "email")
    s.consent(-2, "email")  # arrives late, stamped an hour before the revocation
    s.add(0)
    s.until(4)
    assert s.intents() == []
    assert s.one("abandoned_cart").reason == "no_consent"


def test_reason_frequency_cap_across_carts() -> None:
    s = Story()
    s.consent(-1)
    s.add(0, sess="sess-1")
    s.add(1, sess="sess-2", sku="sku-2")
    s.until(6)
    first, second = s.decisions("abandoned_cart")
    assert first.outcome == "emitted"
    assert (second.outcome, second.reason, norm(second.at)) == ("suppressed", "frequency_cap", z(5))


def test_frequency_cap_exactly_16h_later_passes() -> None:
    s = Story()
    s.consent(-1)
    s.add(0, sess="sess-1")
    s.add(16, sess="sess-2", sku="sku-2")
    s.until(21)
    assert [d.outcome for d in s.decisions("abandoned_cart")] == ["emitted", "emitted"]


def test_frequency_cap_of_3_per_7_days() -> None:
    s = Story()
    s.consent(-1)
    for n in range(4):
        s.add(17 * n, sess=f"sess-{n}", sku=f"sku-{n}")
    s.until(17 * 3 + 5)
    outcomes = [(d.outcome, d.reason) for d in s.decisions("abandoned_cart")]
    assert outcomes == [("emitted", None)] * 3 + [("suppressed", "frequency_cap")]


def test_reason_cooldown_same_cart_within_72h() -> None:
    s = Story()
    s.consent(-1)
    s.add(0)
    s.add(20, sku="sku-2")  # same cart, new idle period; 24 h after the first intent
    s.until(25)
    first, second = s.decisions("abandoned_cart")
    assert first.outcome == "emitted"
    assert (second.outcome, second.reason, norm(second.at)) == ("suppressed", "cooldown", z(24))


def test_cooldown_over_after_72h() -> None:
    s = Story()
    s.consent(-1, "email")
    s.add(0)
    s.add(72, sku="sku-2")  # due at 76: 72 h after the first intent at 4
    s.until(77)
    assert [d.outcome for d in s.decisions("abandoned_cart")] == ["emitted", "emitted"]


def test_reason_min_lag_for_a_phone_reminder() -> None:
    p = variant(("triggers.abandoned_cart", '["email", "push", "sms"]', '["phone"]'))
    s = Story(p)
    s.consent(-1, "phone")
    s.add(0)
    s.until(4)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.reason) == ("suppressed", "min_lag")


def test_reason_converted_cancels_pending() -> None:
    s = Story()
    s.consent(-1)
    s.add(0)
    s.purchase(2, ("sku-1", 1, 20.0))
    s.until(24 * 3)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.reason, d.channel, norm(d.at), d.customer_id) == (
        "cancelled", "converted", None, z(2), "cust-1")
    assert s.intents() == []


def test_purchase_in_another_session_converts_the_cart() -> None:
    s = Story()
    s.consent(-1)
    s.add(0, sess="sess-1")
    s.purchase(2, ("sku-1", 1, 20.0), sess="sess-2")
    s.until(24 * 3)
    assert s.one("abandoned_cart").reason == "converted"


def test_reason_cart_emptied_cancels_pending() -> None:
    s = Story()
    s.consent(-1)
    s.add(0)
    s.remove(1)
    s.until(24 * 3)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.reason, norm(d.at)) == ("cancelled", "cart_emptied", z(1))


def test_reason_topic_opt_out() -> None:
    s = Story()
    s.consent(-1)
    s.prefs(-1, topics_opt_out=["cart_reminders"])
    s.add(0)
    s.until(4)
    assert s.one("abandoned_cart").reason == "topic_opt_out"


def test_opting_out_of_another_topic_changes_nothing() -> None:
    s = Story()
    s.consent(-1, "email")
    s.prefs(-1, topics_opt_out=["deals", "recommendations"])
    s.add(0)
    s.until(4)
    assert s.one("abandoned_cart").outcome == "emitted"


def test_reason_sensitive_category_all_items() -> None:
    s = Story()
    s.consent(-1)
    s.add(0, sku="sku-hearing", category=("health", "age_related"))
    s.until(4)
    assert s.one("abandoned_cart").reason == "sensitive_category"
    assert s.intents() == []


def test_sensitive_items_left_out_of_a_mixed_cart() -> None:
    s = Story()
    s.consent(-1, "email")
    s.add(0, sku="sku-hearing", category=("health",))
    s.add(0, sku="sku-socks", category=("apparel",))
    s.until(4)
    assert [x.sku for x in s.intents()[0].items] == ["sku-socks"]


def test_sensitive_category_opt_in_allows_it() -> None:
    s = Story()
    s.consent(-1, "email")
    s.prefs(-1, topics_opt_in=["health"])
    s.add(0, sku="sku-vit", category=("health",))
    s.until(4)
    assert [x.sku for x in s.intents()[0].items] == ["sku-vit"]


def test_sensitive_browse_triggers_nothing() -> None:
    s = Story()
    s.consent(-1, "email")
    for h in (0, 1, 2):
        s.view(h, sku="sku-preg", category=("pregnancy",))
    s.until(24 * 2)
    assert s.intents() == []
    assert all(d.reason == "sensitive_category" for d in s.decisions())


def test_sensitive_low_stock_triggers_nothing() -> None:
    s = Story()
    s.consent(-2)
    s.stock(-1, "sku-med", 10)
    s.add(0, sku="sku-med", category=("medical",))
    s.stock(1, "sku-med", 1)
    assert s.intents("low_stock") == []
    assert [d.reason for d in s.decisions("low_stock")] in ([], ["sensitive_category"])


def test_reason_do_not_contact_for_every_channel() -> None:
    s = Story()
    s.consent(-2)
    s.feedback(-1, "do_not_contact", channel="phone")  # whatever its channel
    s.add(0)
    s.until(4)
    assert s.one("abandoned_cart").reason == "do_not_contact"


@pytest.mark.parametrize("kind", ["unsubscribed", "complained"])
def test_unsubscribed_or_complained_blocks_only_its_channel(kind: str) -> None:
    s = Story()
    s.consent(-2)
    s.feedback(-1, kind, channel="email")
    s.add(0)
    s.until(4)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.channel) == ("emitted", "push")


def test_do_not_contact_reopened_per_channel_by_a_new_grant() -> None:
    s = Story()
    s.consent(-3)
    s.feedback(-2, "do_not_contact")
    s.consent(-1, "sms")
    s.add(0)
    s.until(4)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.channel) == ("emitted", "sms")


@pytest.mark.parametrize("kind", ["delivered", "opened", "clicked"])
def test_neutral_feedback_changes_nothing(kind: str) -> None:  # bounced: test_core_bounce
    s = Story()
    s.consent(-2, "email")
    s.feedback(-1, kind, channel="email")
    s.add(0)
    s.until(4)
    assert s.one("abandoned_cart").outcome == "emitted"


def test_reason_gift_excluded_for_a_gift_sku() -> None:
    s = Story()
    s.consent(-1, "email")
    s.purchase(0, ("sku-g", 1, 40.0), sess="sess-gift", gift=True)
    for h in (30, 31, 32):
        s.view(h, sku="sku-g", sess="sess-2")
    s.until(24 * 3)
    assert s.one("browse_abandonment").reason == "gift_excluded"
    assert s.intents() == []


def test_reason_gift_excluded_for_views_in_a_gift_session() -> None:
    s = Story()
    s.consent(-1, "email")
    s.view(0, sku="sku-x", sess="sess-gift")
    s.view(0.5, sku="sku-x", sess="sess-gift")
    s.purchase(1, ("sku-g", 1, 40.0), sess="sess-gift", gift=True)
    s.view(1.5, sku="sku-x", sess="sess-gift")
    s.until(24 * 3)
    assert s.one("browse_abandonment").reason == "gift_excluded"


def test_gift_purchase_does_not_stop_browse_of_other_products_elsewhere() -> None:
    s = Story()
    s.consent(-1, "email")
    s.purchase(0, ("sku-g", 1, 40.0), sess="sess-gift", gift=True)
    for h in (30, 31, 32):
        s.view(h, sku="sku-x", sess="sess-2")
    s.until(24 * 3)
    assert s.one("browse_abandonment").outcome == "emitted"


@pytest.mark.parametrize("housekeeping", [False, True], ids=["plain", "tidied-between"])
def test_views_that_left_the_window_no_longer_tie_browse_to_a_gift_session(
        housekeeping: bool) -> None:
    # Two views in what became a gift session, then, a day and a half later, three
    # views elsewhere: only those count, so the gift session does not exclude them.
    # The outcome must not depend on whether housekeeping tidied the old views away
    # in between (a cart reminder firing at 30 h runs it); the worker and replay run
    # housekeeping at different moments.
    s = Story()
    s.consent(-1, "email")
    s.view(0, sku="sku-x", sess="sess-gift")
    s.view(0.5, sku="sku-x", sess="sess-gift")
    s.purchase(1, ("sku-g", 1, 40.0), sess="sess-gift", gift=True)
    if housekeeping:
        s.add(26, sku="sku-c", sess="sess-cart")
        s.until(31)
    fresh = [s.view(h, sku="sku-x", sess="sess-2").event_id for h in (40, 40.5, 41)]
    s.until(24 * 4)
    d = s.one("browse_abandonment")
    assert (d.outcome, d.trigger_event_ids) == ("emitted", fresh)


def test_an_adopted_session_merges_only_views_inside_the_window() -> None:
    s = Story()
    s.consent(-1, "email")
    s.view(0, sku="sku-x", sess="sess-gift")
    s.view(0.5, sku="sku-x", sess="sess-gift")
    s.purchase(1, ("sku-g", 1, 40.0), sess="sess-gift", gift=True)
    fresh = [s.view(h, sku="sku-x", sess="sess-3", cust=None, method="cookie").event_id
             for h in (40, 40.5, 41)]
    s.login(41.5, sess="sess-3")
    s.until(24 * 4)
    d = s.one("browse_abandonment")
    assert (d.outcome, d.trigger_event_ids) == ("emitted", fresh)


def test_adopting_a_session_whose_views_are_all_old_leaves_no_empty_entry() -> None:
    # Old views on both sides (customer and adopted session) are all cut: nothing of
    # the product is left, and later housekeeping has nothing broken to trip on.
    s = Story()
    s.consent(-1, "email")
    s.view(0, sku="sku-x", sess="sess-1")
    s.view(1, sku="sku-x", sess="sess-3", cust=None, method="cookie")
    s.login(40, sess="sess-3")
    s.add(41, sku="sku-c", sess="sess-3")
    s.until(24 * 4)  # the cart reminder fires; housekeeping runs
    assert s.decisions("browse_abandonment") == []
    assert "prod-sku-x" not in s.pipeline.customers["cust-1"].views


def test_reason_stale_when_the_customer_period_never_opens() -> None:
    s = Story()
    s.consent(-1, "push", "sms")
    s.prefs(-1, quiet_hours=QuietHours("07:00", "22:00"))
    s.add(0)
    s.until(4)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.reason) == ("suppressed", "stale")
    assert s.intents() == []


def test_reason_erased_cancels_pending() -> None:
    s = Story()
    s.consent(-1)
    s.add(0)
    s.erase(1)
    s.until(24 * 3)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.reason, norm(d.at)) == ("cancelled", "erased", z(1))
    assert s.intents() == []


def test_reason_no_channel_with_an_empty_channel_list() -> None:
    p = variant(("triggers.abandoned_cart", '["email", "push", "sms"]', "[]"))
    s = Story(p)
    s.consent(-1)
    s.add(0)
    s.until(4)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.reason, d.channel) == ("suppressed", "no_channel", None)


def test_every_reason_code_is_a_spec_code() -> None:
    from tactful.core.outputs import REASON_CODES

    assert set(REASON_CODES) == {
        "no_consent", "consent_expired", "unverified_identity", "quiet_hours", "frequency_cap",
        "cooldown", "min_lag", "converted", "cart_emptied", "topic_opt_out",
        "sensitive_category", "do_not_contact", "gift_excluded", "stale", "erased", "no_channel",
        # not in SPEC §2: a channel held back after a bounce (docs/semantics.md, Bounces)
        "bounced",
    }


# ================================================================ channel ladder


def test_first_channel_that_passes_is_used() -> None:
    s = Story()
    s.consent(-1, "push", "sms")
    s.add(0)
    s.until(4)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.channel) == ("emitted", "push")
    (i,) = s.intents()
    assert i.channel == "push" and i.consent.channel == "push"


def test_ladder_skips_a_blocked_first_channel() -> None:
    s = Story()
    s.consent(-2, "email", "sms")
    s.feedback(-1, "unsubscribed", channel="email")
    s.add(0)
    s.until(4)
    assert s.one("abandoned_cart").channel == "sms"


def test_ladder_stock_order_push_sms_email() -> None:
    s = Story()
    s.consent(-2, "email", "sms")
    s.stock(-1, "sku-s", 9)
    s.add(0, sku="sku-s")
    s.stock(1, "sku-s", 2)
    assert s.one("low_stock").channel == "sms"


def test_suppressed_carries_the_last_channels_reason() -> None:
    s = Story()
    s.consent(-2, "email")
    s.feedback(-1, "unsubscribed", channel="email")  # email: do_not_contact
    s.add(0)  # push: no_consent; sms (last): no_consent
    s.until(4)
    assert s.one("abandoned_cart").reason == "no_consent"


def test_suppressed_reason_from_last_channel_expired() -> None:
    s = Story()
    s.consent(-2, "email")
    s.feedback(-1, "complained", channel="email")
    s.consent(-1, "sms", expires=2)
    s.add(0)
    s.until(4)
    assert s.one("abandoned_cart").reason == "consent_expired"


# ================================================================== quiet hours


def test_push_at_night_is_deferred_to_0800() -> None:
    s = Story()
    s.consent(-1, "push")
    s.add(8)  # 22:00 EDT → due 02:00 EDT
    s.until(12)
    d = s.one("abandoned_cart")
    # SPEC §2: a deferred decision names what moved its send_after
    assert (d.outcome, d.channel, d.reason, norm(d.at)) == (
        "deferred", "push", "quiet_hours", z(12))
    (i,) = s.intents()
    assert i.reasons[0] == "abandoned_cart" and "quiet_hours" in i.reasons  # it passed them
    assert norm(i.created_at) == z(12)
    assert norm(i.send_after) == "2026-06-11T12:00:00Z"  # 08:00 EDT
    assert norm(i.send_before) == z(36)


def test_email_at_night_is_not_deferred() -> None:
    s = Story()
    s.consent(-1, "email")
    s.add(8)
    s.until(12)
    d = s.one("abandoned_cart")
    assert d.outcome == "emitted"
    assert norm(s.intents()[0].send_after) == z(12)


def test_customer_zone_and_quiet_period_apply() -> None:
    s = Story()
    s.consent(-1, "sms")
    s.prefs(-1, timezone="Asia/Kolkata", quiet_hours=QuietHours("20:00", "09:30"))
    s.add(-3)  # due T0+1 = 19:00Z = 00:30 IST
    s.until(2)
    (i,) = s.intents()
    assert norm(i.send_after) == "2026-06-11T04:00:00Z"  # 09:30 IST


# ================================================================= cancellation


def _deferred_push(s: Story) -> ContactIntent:
    s.consent(-1, "push")
    s.add(8)  # due 02:00 EDT, deferred to 08:00 EDT (12:00Z next day = T0+18)
    s.until(12)
    (i,) = s.intents()
    assert s.one("abandoned_cart").outcome == "deferred"
    return i


def _cancelled(s: Story, intent: ContactIntent, reason: str, h: float) -> None:
    (c,) = s.cancellations()
    assert (c.intent_id, c.cancelled, c.reason) == (intent.intent_id, True, reason)
    assert c.customer_id == "cust-1" and c.channel == intent.channel
    cancelled = [d for d in s.decisions() if d.outcome == "cancelled"]
    assert len(cancelled) == 1
    d = cancelled[0]
    assert (d.intent_id, d.reason, d.kind, d.channel, norm(d.at)) == (
        intent.intent_id, reason, "abandoned_cart", intent.channel, z(h))
    wire = msgspec.json.decode(msgspec.json.encode(c))
    assert {"intent_id", "cancelled", "reason"} <= set(wire)


def test_consent_revoked_cancels_a_deferred_intent() -> None:
    s = Story()
    i = _deferred_push(s)
    s.revoke(14, "push")
    _cancelled(s, i, "no_consent", 14)


def test_do_not_contact_cancels_a_deferred_intent() -> None:
    s = Story()
    i = _deferred_push(s)
    s.feedback(14, "do_not_contact", channel="email")
    _cancelled(s, i, "do_not_contact", 14)


def test_unsubscribed_on_its_channel_cancels() -> None:
    s = Story()
    i = _deferred_push(s)
    s.feedback(14, "unsubscribed", channel="push")
    _cancelled(s, i, "do_not_contact", 14)


def test_purchase_cancels_a_deferred_intent() -> None:
    s = Story()
    i = _deferred_push(s)
    s.purchase(14, ("sku-1", 1, 20.0))
    _cancelled(s, i, "converted", 14)


def test_emptied_cart_cancels_a_deferred_intent() -> None:
    s = Story()
    i = _deferred_push(s)
    s.remove(14)
    _cancelled(s, i, "cart_emptied", 14)


def test_erasure_cancels_a_deferred_intent() -> None:
    s = Story()
    i = _deferred_push(s)
    s.erase(14)
    _cancelled(s, i, "erased", 14)


def test_a_late_purchase_cancels_but_never_before_the_intent_existed() -> None:
    # The purchase happened at +10 (before the timer fired at +12) but arrives after it: the
    # intent is cancelled (its send_after, +18, is later than the purchase), dated at its
    # own created_at, not before it (SPEC §2).
    s = Story()
    i = _deferred_push(s)
    s.until(13)
    s.purchase(10, ("sku-1", 1, 20.0))
    _cancelled(s, i, "converted", 12)
    (c,) = s.cancellations()
    assert norm(c.at) == norm(i.created_at)


def test_a_late_revocation_is_dated_at_the_intent_it_cancels() -> None:
    s = Story()
    i = _deferred_push(s)
    s.until(13)
    s.revoke(11, "push")
    _cancelled(s, i, "no_consent", 12)


def test_a_timely_cancellation_keeps_the_time_of_its_event() -> None:
    s = Story()
    i = _deferred_push(s)
    s.purchase(15, ("sku-1", 1, 20.0))
    _cancelled(s, i, "converted", 15)  # later than created_at (+12): the event's own time


def test_revoking_another_channel_cancels_nothing() -> None:
    s = Story()
    _deferred_push(s)
    s.revoke(14, "email")
    s.feedback(14.5, "unsubscribed", channel="sms")
    assert s.cancellations() == []


def test_nothing_cancelled_once_send_after_has_passed() -> None:
    s = Story()
    _deferred_push(s)
    s.revoke(18, "push")  # exactly send_after
    s.purchase(19, ("sku-1", 1, 20.0))
    assert s.cancellations() == []
    assert not [d for d in s.decisions() if d.outcome == "cancelled" and d.intent_id]


def test_cancelled_intent_no_longer_counts_toward_caps() -> None:
    s = Story()
    _deferred_push(s)
    s.revoke(13, "push")
    s.consent(13.5, "email")
    s.add(14, sess="sess-2", sku="sku-2")  # due 18: within 16 h of the cancelled intent
    s.until(19)
    last = s.decisions("abandoned_cart")[-1]
    assert (last.outcome, last.channel) == ("emitted", "email")


# ================================================================== sessions


def test_login_adopts_an_anonymous_cart_from_its_own_timestamp() -> None:
    s = Story()
    s.consent(-1, "email")
    s.add(0, cust=None)
    s.login(1)
    s.until(3.99)
    assert s.decisions() == []
    s.until(4)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.customer_id, norm(d.at)) == ("emitted", "cust-1", z(4))
    assert s.intents()[0].customer_id == "cust-1"


def test_adopted_cart_gets_stock_triggers() -> None:
    s = Story()
    s.consent(-2)
    s.stock(-1, "sku-s", 10)
    s.add(0, sku="sku-s", cust=None)
    s.login(0.5)
    s.stock(1, "sku-s", 2)
    assert s.one("low_stock").outcome == "emitted"


def test_adopted_views_count_toward_browse() -> None:
    s = Story()
    s.consent(-1, "email")
    s.view(0, cust=None)
    s.view(1, cust=None)
    s.login(1.5)
    s.view(2)
    s.until(26)
    d = s.one("browse_abandonment")
    assert (d.outcome, d.customer_id, norm(d.at)) == ("emitted", "cust-1", z(26))


def test_logout_unbinds_the_session() -> None:
    s = Story()
    s.consent(-1)
    s.login(0)
    s.logout(0.5)
    s.add(1, cust=None)  # anonymous activity after logout
    s.until(5)
    d = s.one("abandoned_cart")
    assert (d.reason, d.customer_id, d.session_id) == ("unverified_identity", None, "sess-1")
    assert s.intents() == []


def test_unverified_claim_never_overrides_a_verified_binding() -> None:
    s = Story()
    s.consent(-1, "email")
    s.consent(-1, cust="cust-husband")
    s.login(0)
    s.add(0.5, cust="cust-husband", method="ip_match")
    s.until(5)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.customer_id) == ("emitted", "cust-1")
    assert all(i.customer_id == "cust-1" for i in s.intents())


# ================================================================ dedup, determinism


def test_duplicate_event_id_is_processed_once() -> None:
    s = Story()
    s.consent(-1, "email")
    s.add(0, qty=1, event_id="dup-1")
    s.add(0.5, qty=1, event_id="dup-1")  # redelivered
    s.until(4.5)
    d = s.one("abandoned_cart")
    assert norm(d.at) == z(4)  # the copy did not re-arm the cart
    assert [(x.sku, x.qty) for x in s.intents()[0].items] == [("sku-1", 1)]


def test_a_repeat_of_a_view_from_before_login_counts_once() -> None:
    # The anonymous view reaches the customer inside the adopted session; when it is
    # delivered again after the login (a duplicate, or a redelivery after a crash), the
    # bound session passes it on, and the customer must not count it a second time.
    s = Story()
    s.consent(-1, "email")
    first = s.view(0, sku="sku-x", sess="sess-a", cust=None, method="cookie")
    s.login(0.1, sess="sess-a")
    s.feed(first)  # the same event again
    s.view(0.2, sku="sku-x", sess="sess-a")
    s.until(24 * 3)
    assert s.decisions("browse_abandonment") == []  # two distinct views, not three


def test_a_repeat_of_a_cart_add_from_before_login_does_not_add_up() -> None:
    s = Story()
    s.consent(-1, "email")
    first = s.add(0, qty=2, sess="sess-a", cust=None, method="cookie")
    s.login(0.1, sess="sess-a")
    s.feed(first)
    s.until(5)
    assert [(x.sku, x.qty) for x in s.intents("abandoned_cart")[0].items] == [("sku-1", 2)]


def test_duplicate_stock_event_is_processed_once() -> None:
    s = Story()
    s.stock(-1, "sku-s", 10, event_id="st-1")
    _carted(s)
    s.stock(1, "sku-s", 2, event_id="st-2")
    s.stock(1.5, "sku-s", 10, event_id="st-1")  # a copy of the first level
    s.stock(2, "sku-s", 2, event_id="st-2")  # a copy of the drop
    assert len(s.decisions("low_stock")) == 1


def test_duplicate_consent_event_is_processed_once() -> None:
    s = Story()
    i = _deferred_push(s)
    ev = ConsentRevoked(event_id="rev-1", ts=at(14), customer_id="cust-1", channel="push",
                        source="x")
    s.feed(ev)
    s.feed(ev)
    _cancelled(s, i, "no_consent", 14)


def _mixed_story() -> Story:
    s = Story()
    s.consent(-3)
    s.stock(-2, "sku-s", 10)
    s.price(-2, "sku-p", 100.0)
    s.add(0, sku="sku-s", sess="sess-1")
    s.add(0.2, sku="sku-p", price=100.0, sess="sess-2")
    s.stock(1, "sku-s", 2)
    s.price(20, "sku-p", 80.0)
    for h in (30, 31, 32):
        s.view(h, sku="sku-v", sess="sess-3")
    s.add(40, cust=None, sess="sess-anon")
    s.add(41, sess="sess-night")
    s.revoke(50, "push")
    s.until(24 * 8)
    return s


def test_same_input_same_ids_and_bytes() -> None:
    a, b = _mixed_story(), _mixed_story()
    assert len(a.decisions()) >= 5
    enc = msgspec.json.encode
    assert [enc(x) for _, x in a.intent_log] == [enc(x) for _, x in b.intent_log]
    assert [enc(x) for _, x in a.decision_log] == [enc(x) for _, x in b.decision_log]
    for i in a.intents():
        assert re.fullmatch(r"int-[0-9a-f]{20}", i.intent_id)
    ids = [d.decision_id for d in a.decisions()]
    assert len(set(ids)) == len(ids)
    assert len({i.intent_id for i in a.intents()}) == len(a.intents())


def test_intent_id_does_not_depend_on_unrelated_events() -> None:
    a = Story()
    a.consent(-1, "email")
    a.add(0)
    a.until(4)
    b = Story()
    b.consent(-1, "email")
    b.page(-0.5, sess="sess-x")
    b.add(0, event_id="ev-002")  # same event id as in `a`
    b.until(4)
    assert a.intents()[0].intent_id == b.intents()[0].intent_id


def test_links_are_signed_when_configured() -> None:
    signer = LinkSigner("https://shop.example/t", b"k")
    s = Story(links=signer)
    s.consent(-1, "email")
    s.add(0)
    s.until(4)
    (i,) = s.intents()
    assert i.links is not None
    created = datetime.fromisoformat(i.created_at).timestamp()
    expires = int(created + 60 * 86400)  # the policy's [links] expiry
    for url, purpose in ((i.links.unsubscribe, "unsubscribe"),
                         (i.links.preferences, "preferences")):
        verdict = signer.verify(url.rsplit("/", 1)[1], purpose, created)
        assert verdict == Verified(
            LinkClaims("cust-1", "email", i.intent_id, purpose, expires)), purpose
        assert isinstance(signer.verify(url.rsplit("/", 1)[1], purpose, expires), Expired)


def test_no_links_without_a_public_url() -> None:
    s = Story()
    s.consent(-1, "email")
    s.add(0)
    s.until(4)
    assert s.intents()[0].links is None


# ================================================================== erasure


def _mentions(s: Story, cust: str, sessions: tuple[str, ...]) -> list[str]:
    """Every place in the pipeline's state that still names the customer or its sessions."""
    found = []
    p = s.pipeline
    if cust in p.customers:
        found.append(f"customers[{cust}]")
    for sid in sessions:
        if sid in p.sessions:
            found.append(f"sessions[{sid}]")
    for scope in (p.sessions, p.customers, p.skus):
        for key, st in scope.items():
            blob = encode_state(st)
            for name in (cust, *sessions):
                if name.encode() in blob:
                    found.append(f"{type(st).__name__}[{key}] mentions {name}")
    for sku, holders in p.holders.by_sku.items():
        if cust in holders:
            found.append(f"holders[{sku}] names {cust}")
    return found


def test_erasure_leaves_no_state_for_customer_or_sessions() -> None:
    s = Story()
    s.consent(-2)
    s.prefs(-2, timezone="Europe/Berlin", topics_opt_out=["deals"])
    s.stock(-1, "sku-s", 10)
    s.login(0, sess="sess-1")
    s.add(0.1, sku="sku-s", sess="sess-1")
    s.add(0.2, sku="sku-2", sess="sess-2")
    s.view(0.3, sku="sku-v", sess="sess-2")
    s.erase(1)
    assert _mentions(s, "cust-1", ("sess-1", "sess-2")) == []
    assert "sku-s" in s.pipeline.skus  # stock levels are not personal: they may stay
    s.until(24 * 10)
    assert [d.outcome for d in s.decisions() if d.kind == "abandoned_cart"] == [
        "cancelled", "cancelled"]
    assert s.intents() == []


def test_erasure_after_a_purchase_leaves_no_sku_index_entry() -> None:
    s = Story()
    s.consent(-2)
    s.add(0, sku="sku-s")
    s.purchase(1, ("sku-s", 1, 20.0))
    s.erase(2)
    assert _mentions(s, "cust-1", ("sess-1",)) == []


def test_purchase_of_the_whole_cart_stops_holding_the_sku() -> None:
    s = Story()
    s.consent(-2)
    s.add(0, sku="sku-s")
    s.purchase(1, ("sku-s", 1, 20.0))
    assert "cust-1" not in s.pipeline.holders.holders("sku-s")


def test_erasure_reaches_a_session_the_customer_logged_out_of() -> None:
    s = Story()
    s.consent(-2)
    s.login(0, sess="sess-1")
    s.add(0.1, sess="sess-1")
    s.logout(0.5, sess="sess-1")
    s.erase(1)
    assert _mentions(s, "cust-1", ("sess-1",)) == []


def test_erasure_of_a_customer_with_decided_intents() -> None:
    s = Story()
    s.consent(-2, "email")
    s.add(0)
    s.until(5)
    assert s.one("abandoned_cart").outcome == "emitted"
    s.erase(6)
    assert _mentions(s, "cust-1", ("sess-1",)) == []
    assert s.cancellations() == []  # the email already went at +4 h


def test_erasure_then_new_activity_starts_from_nothing() -> None:
    s = Story()
    s.consent(-2, "email")
    s.add(0)
    s.erase(1)
    s.add(2, sku="sku-new")  # the customer comes back (a new verified session event)
    s.until(7)
    assert s.decisions("abandoned_cart")[-1].reason == "no_consent"  # consent was erased too


def test_a_repeat_from_before_the_erasure_stays_out_after_the_customer_is_back() -> None:
    # The customer returns (a new grant) and then an event id from before the erasure is
    # delivered again, stamped later: the erasure mark travels with the new state, so
    # the repeat is still not applied.
    s = Story()
    old = ConsentGranted(event_id="old-grant", ts=at(-3), customer_id="cust-1",
                         channel="email", source="signup")
    s.feed(old)
    s.erase(-2)
    s.feed(ConsentGranted(event_id="new-grant", ts=at(-1), customer_id="cust-1",
                          channel="sms", source="checkout"))
    s.feed(ConsentGranted(event_id="old-grant", ts=at(-0.5), customer_id="cust-1",
                          channel="email", source="signup"))
    s.add(0)
    s.until(5)
    assert [(i.channel, i.consent.source) for i in s.intents("abandoned_cart")] == [
        ("sms", "checkout")
    ]


def test_an_input_stamped_before_the_erasure_stays_out_after_the_customer_is_back() -> None:
    s = Story()
    s.erase(0)
    s.consent(1, "sms")
    s.consent(-1, "email")  # arrives late, stamped before the erasure
    s.add(2)
    s.until(7)
    assert [i.channel for i in s.intents("abandoned_cart")] == ["sms"]


def test_a_repeat_from_before_the_erasure_does_not_bind_the_session_again() -> None:
    # The erased session forgets everything but what it had seen: the login's cart_add,
    # delivered again, must not tie the session to the customer once more (a later
    # cookie-only cart in it would then count as the customer's).
    s = Story()
    s.login(0, sess="s1")
    first = s.add(0, sess="s1")
    s.erase(0.05)
    s.feed(CartAdd(**{**msgspec.structs.asdict(first), "ts": at(0.1)}))  # type: ignore[arg-type]
    s.view(0.1, sku="sku-v", sess="s2")  # the customer is back, in another session
    s.add(0.15, sku="sku-c", sess="s1", method="cookie")
    s.until(5)
    assert [(d.customer_id, d.outcome, d.reason) for d in s.decisions("abandoned_cart")
            if d.reason != "erased"] == [(None, "suppressed", "unverified_identity")]


def test_erasure_of_an_unknown_customer_is_harmless() -> None:
    s = Story()
    s.erase(0, cust="cust-nobody")
    assert s.decisions() == [] and s.pipeline.customers == {}


# ================================================================= state


def test_state_round_trip_for_every_scope() -> None:
    s = Story()
    s.consent(-2, "email", expires=500)
    s.consent(-2, "push")
    s.prefs(-2, timezone="Pacific/Chatham", topics_opt_out=["deals"], topics_opt_in=["health"],
            quiet_hours=QuietHours("20:00", "09:00"))
    s.stock(-1, "sku-s", 10)
    s.price(-1, "sku-s", 50.0)
    s.add(0, sku="sku-s", price=50.0)
    s.view(0.1, sess="sess-1")
    s.view(0.2, sess="sess-1")
    s.view(0.3, sess="sess-1")
    s.add(0.5, sess="sess-anon", cust=None)
    s.purchase(0.6, ("sku-g", 1, 1.0), sess="sess-g", gift=True)
    s.feedback(0.7, "unsubscribed", channel="sms")
    s.until(5)
    p = s.pipeline
    assert p.sessions and p.customers and p.skus
    for cls, scope in ((SessionState, p.sessions), (CustomerState, p.customers),
                       (SkuState, p.skus)):
        for st in scope.values():
            back = decode_state(cls, encode_state(st))
            assert back == st
            assert encode_state(back) == encode_state(st)


def test_state_from_a_newer_schema_is_refused() -> None:
    st = CustomerState("cust-1", schema_version=99)
    with pytest.raises(ValueError, match="newer"):
        decode_state(CustomerState, encode_state(st))


def test_outputs_encode_as_json() -> None:
    s = _mixed_story()
    for _, rec in s.intent_log + s.decision_log:
        obj = msgspec.json.decode(msgspec.json.encode(rec))
        assert isinstance(obj, dict)
    for d in s.decisions():
        assert d.outcome in ("emitted", "deferred", "suppressed", "cancelled")
        about_an_intent = d.outcome in ("emitted", "deferred") or (
            d.outcome == "cancelled" and d.channel is not None)
        assert (d.intent_id is not None) == about_an_intent
        # SPEC §2: reason is null only for emitted; deferred names quiet_hours
        assert (d.reason is None) == (d.outcome == "emitted"), d
        if d.outcome == "deferred":
            assert d.reason == "quiet_hours"


# ============================================================ more pending-trigger endings


def test_revoking_the_only_consent_cancels_the_pending_trigger() -> None:
    s = Story()
    s.consent(-1, "email")
    s.add(0)
    s.revoke(1, "email")
    s.until(24)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.reason, d.channel, norm(d.at)) == ("cancelled", "no_consent", None, z(1))


def test_revoking_one_of_several_consents_keeps_the_trigger() -> None:
    s = Story()
    s.consent(-1, "email", "push")
    s.add(0)
    s.revoke(1, "email")
    s.until(24)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.channel) == ("emitted", "push")


def test_do_not_contact_cancels_the_pending_trigger() -> None:
    s = Story()
    s.consent(-1)
    s.add(0)
    s.feedback(1, "do_not_contact", channel="sms")
    s.until(24)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.reason, norm(d.at)) == ("cancelled", "do_not_contact", z(1))


def test_anonymous_cart_bought_is_cancelled_by_session() -> None:
    s = Story()
    s.add(0, cust=None, sess="sess-anon")
    s.purchase(1, ("sku-1", 1, 20.0), cust=None, sess="sess-anon")
    s.until(24)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.reason, d.customer_id, d.session_id) == (
        "cancelled", "converted", None, "sess-anon")


def test_low_stock_cooldown_for_the_same_sku() -> None:
    s = Story()
    s.stock(-1, "sku-s", 10)
    _carted(s)
    s.stock(1, "sku-s", 2)
    s.stock(2, "sku-s", 10)
    s.stock(20, "sku-s", 3)  # 19 h later: past the 16 h cap, inside the 72 h cooldown
    outcomes = [(d.outcome, d.reason) for d in s.decisions("low_stock")]
    assert outcomes == [("emitted", None), ("suppressed", "cooldown")]


def test_one_stock_decision_per_customer_whatever_the_number_of_carts() -> None:
    s = Story()
    s.stock(-1, "sku-s", 10)
    s.consent(-2)
    s.add(0, sku="sku-s", sess="sess-1")
    s.add(0.1, sku="sku-s", sess="sess-2")
    s.stock(1, "sku-s", 2)
    assert len(s.decisions("low_stock")) == 1


def test_intents_and_decisions_are_keyed_by_customer() -> None:
    s = Story()
    s.consent(-1, "email")
    s.add(0)
    s.until(4)
    assert [k for k, _ in s.intent_log] == ["cust-1"]
    assert [k for k, _ in s.decision_log] == ["cust-1"]


def test_relogin_after_logout_keeps_the_earlier_cart_lines() -> None:
    # A cart belongs to its session; logging in again must not silently drop what the
    # customer carted before logging out (no decision would ever be made about it).
    s = Story()
    s.consent(-1, "email")
    s.login(0)
    s.add(0.1, sku="sku-a")
    s.logout(1)
    s.add(1.5, sku="sku-b", cust=None)
    s.login(2)
    s.until(24)
    carted = {x.sku for i in s.intents("abandoned_cart") for x in i.items}
    decided = s.decisions("abandoned_cart")
    assert decided, "no abandoned_cart decision at all"
    assert "sku-a" in carted, summary(s)


def _h(iso_utc: str) -> float:
    """Hours from T0 to an absolute UTC instant."""
    return (datetime.fromisoformat(iso_utc.replace("Z", "+00:00")) - T0).total_seconds() / 3600


def test_berlin_spring_forward_deferral() -> None:
    s = Story()
    s.consent(_h("2026-03-01T00:00:00Z"), "push")
    s.prefs(_h("2026-03-01T00:00:00Z"), timezone="Europe/Berlin")
    s.add(_h("2026-03-28T21:00:00Z"))  # 22:00 CET; due 01:00Z = 03:00 CEST, just after the jump
    s.until(_h("2026-03-29T02:00:00Z"))
    d = s.one("abandoned_cart")
    assert (d.outcome, norm(d.at)) == ("deferred", "2026-03-29T01:00:00Z")
    assert norm(s.intents()[0].send_after) == "2026-03-29T06:00:00Z"  # 08:00 CEST


def test_policy_can_hold_email_to_quiet_hours() -> None:
    p = variant(("quiet_hours", '["sms", "push", "phone"]', '["sms", "push", "phone", "email"]'))
    s = Story(p)
    s.consent(-1, "email")
    s.add(8)
    s.until(12)
    d = s.one("abandoned_cart")
    assert (d.outcome, d.channel) == ("deferred", "email")
    assert norm(s.intents()[0].send_after) == "2026-06-11T12:00:00Z"
