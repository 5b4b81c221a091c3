"""The customer's timeline (SPEC §7, explain), built from the state replay and the worker
keep. Times are hours after T0 (2026-06-10 18:00Z, 14:00 in New York), as in
test_core_engine.py; expectations are written from SPEC §3–§4 and the default policy.
"""

from __future__ import annotations

import msgspec
import pytest
from tests.unit.test_core_engine import DEFAULT_TOML, Story, at, variant, z

from tactful.core.errors import PolicyError
from tactful.core.explain import (
    CapLine,
    ConsentLine,
    DecisionLine,
    Input,
    PendingTrigger,
    RegionCapLine,
    Timeline,
    render,
    timeline,
)
from tactful.core.policy import parse_policy


def _timeline(s: Story, h: float, cust: str = "cust-1") -> Timeline:
    return timeline(s.pipeline.engine, cust, s.pipeline.customers.get(cust), at(h).timestamp())


def _cart_story(policy_edits: tuple[tuple[str, str, str], ...] = ()) -> Story:
    s = Story(variant(*policy_edits)) if policy_edits else Story()
    s.consent(0, "email")
    s.login(0.1)
    s.add(0.2, sku="sku-1", price=20.0)
    return s


def test_before_the_trigger_fires_the_pending_trigger_and_the_inputs_are_shown() -> None:
    s = _cart_story()
    t = _timeline(s.until(1), 1)
    assert t.known and t.as_of == z(1)
    assert t.inputs == [
        Input(z(0), "consent_granted", "email"),
        Input(z(0.1), "login"),
        Input(z(0.2), "cart_add", "sku-1"),
    ]
    assert t.decisions == []
    # abandoned_cart 4h after the last cart activity; the assist offer is checked 48h after
    # it (its cart value is judged when it comes due).
    assert t.pending == [
        PendingTrigger("abandoned_cart", z(4.2), "sess-1"),
        PendingTrigger("assist_offer", z(48.2), "sess-1"),
    ]
    assert t.consent == {"email": ConsentLine(True, z(0), "signup")}
    assert t.caps == [
        CapLine(None, 16 * 3600.0, 1, 0),
        CapLine(None, 7 * 86400.0, 3, 0),
        CapLine("sms", 86400.0, 3, 0),
    ]
    assert t.sent == []


def test_a_fired_trigger_shows_its_decision_and_counts_against_the_caps() -> None:
    s = _cart_story()
    t = _timeline(s.until(5), 5)
    intent = s.intents("abandoned_cart")[0]
    assert t.decisions == [DecisionLine(z(4.2), "abandoned_cart", "emitted", "email", None,
                                        intent.intent_id)]
    assert [p.kind for p in t.pending] == ["assist_offer"]
    assert [c.used for c in t.caps] == [1, 1, 0]
    assert [(x.intent_id, x.channel, x.cancelled) for x in t.sent] == [
        (intent.intent_id, "email", False)]
    # 16h later the first cap has let go of the intent; the 7-day one still counts it.
    assert [c.used for c in _timeline(s.until(21), 21).caps] == [0, 1, 0]


def test_a_suppressed_decision_names_its_reason() -> None:
    s = Story()
    s.login(0.1)  # no consent on any channel
    s.add(0.2)
    t = _timeline(s.until(5), 5)
    assert t.decisions == [DecisionLine(z(4.2), "abandoned_cart", "suppressed", None,
                                        "no_consent")]
    assert t.consent == {}


def test_revocation_and_do_not_contact_are_shown_per_channel() -> None:
    s = _cart_story()
    s.revoke(2, "email")
    s.feedback(3, "complained", channel="sms")
    t = _timeline(s, 3)
    assert t.consent == {"email": ConsentLine(False, z(2), "preference_center")}
    assert t.do_not_contact == {"sms": z(3)}
    assert t.inputs[-2:] == [Input(z(2), "consent_revoked", "email"),
                             Input(z(3), "complained", "sms")]


def test_an_erased_customer_is_not_known_any_more() -> None:
    s = _cart_story()
    s.until(5)
    s.erase(6)
    t = _timeline(s, 7)
    assert t == Timeline("cust-1", z(7), False)
    assert "holds nothing" in render(t)


def test_the_policy_bounds_what_the_state_keeps() -> None:
    s = _cart_story((("explain", "inputs = 20", "inputs = 2"),
                     ("explain", "decisions = 50", "decisions = 1")))
    s.add(0.3, sku="sku-2")
    s.until(5)
    t = _timeline(s, 5)
    assert t.inputs == [Input(z(0.2), "cart_add", "sku-1"), Input(z(0.3), "cart_add", "sku-2")]
    assert len(t.decisions) == 1
    nothing = _cart_story((("explain", "inputs = 20", "inputs = 0"),))
    assert _timeline(nothing, 1).inputs == []


@pytest.mark.parametrize("bad", ["inputs = 2.5", "inputs = -1", "inputs = 5000", "kept = 3"])
def test_explain_limits_are_checked(bad: str) -> None:
    text = DEFAULT_TOML.replace("inputs = 20", bad)
    with pytest.raises(PolicyError, match="explain"):
        parse_policy(text.encode())


def test_the_timeline_is_plain_json() -> None:
    s = _cart_story()
    doc = msgspec.json.decode(msgspec.json.encode(_timeline(s.until(5), 5)))
    # Every key, always (an empty list rather than a missing key).
    assert set(doc) == {"customer_id", "as_of", "known", "inputs", "decisions", "pending",
                        "consent", "do_not_contact", "bounced", "preferences", "caps",
                        "region_caps", "sent"}
    assert doc["decisions"][0]["outcome"] == "emitted"


def test_render_reads_as_a_timeline() -> None:
    s = _cart_story()
    text = render(_timeline(s.until(5), 5))
    lines = text.splitlines()
    assert lines[0] == f"customer cust-1, as of {z(5)}"
    assert f"  email  granted {z(0)} (signup)" in lines
    i = lines.index(f"  {z(0.2)}  input     cart_add sku-1")
    decided = f"  {z(4.2)}  decision  abandoned_cart on email: emitted -> int-"
    assert lines[i + 1].startswith(decided)
    assert f"  {z(48.2)}  assist_offer (sess-1)" in lines
    assert "  1/1 in 16h (all channels)" in lines


def test_the_caps_of_the_customers_region_are_shown_with_what_counts_against_them() -> None:
    # Florida (default policy): sms and phone together, at most 3 in 24 h on one topic.
    s = Story()
    s.prefs(0, region="US-FL", timezone="America/New_York")
    s.consent(0, "sms")
    s.login(0.1)
    s.add(0.2, sku="sku-1", price=20.0)
    s.until(5)
    [cart] = s.intents("abandoned_cart")
    assert cart.channel == "sms"
    caps = _timeline(s, 5).region_caps
    topics = sorted({t.topic for t in s.pipeline.engine.policy.triggers.values()
                     if {"sms", "phone"} & set(t.channels)})
    assert [c.topic for c in caps] == topics  # one line per topic the cap counts apart
    counted = {c.topic: c.used for c in caps}
    assert counted.pop(cart.topic) == 1 and set(counted.values()) == {0}
    assert caps[0] == RegionCapLine("US-FL", ["phone", "sms"], 86400.0, 3, caps[0].topic,
                                    caps[0].used)
    assert f"  1/3 in 1d (phone, sms, topic {cart.topic})" in render(_timeline(s, 5))
    assert "region caps (US-FL):" in render(_timeline(s, 5))
    assert _timeline(s.until(30), 30).region_caps[topics.index(cart.topic)].used == 0


def test_no_region_no_region_caps() -> None:
    t = _timeline(_cart_story().until(5), 5)
    assert t.region_caps == [] and "region caps" not in render(t)
