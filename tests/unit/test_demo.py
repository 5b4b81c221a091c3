"""make demo's parts without Kafka: today's carts and the mail it prints."""

from __future__ import annotations

import io
from datetime import datetime

import orjson

from tactful.core.engine import Engine
from tactful.core.mail import render_email
from tactful.core.outputs import ConsentRef, ContactIntent, IntentItem
from tactful.core.policy import load_policy
from tactful.service.demo import ADDRESSES, TODAY, render_mail, today
from tactful.service.replay import replay_lines

NOW = 1_800_000_000.0


def test_todays_carts_give_each_shopper_an_email_reminder_still_inside_its_window() -> None:
    intents, decisions = io.BytesIO(), io.BytesIO()
    lines = [orjson.dumps(e) for e in today(NOW)]
    replay_lines(lines, Engine(load_policy()), intents, decisions, until=NOW)
    got = [orjson.loads(x) for x in intents.getvalue().splitlines()]
    assert sorted(i["customer_id"] for i in got) == sorted(TODAY)
    for i in got:
        assert (i["kind"], i["channel"]) == ("abandoned_cart", "email")
        assert i["customer_id"] in ADDRESSES  # the directory knows where to mail them
        # an hour ago, and valid for the next 23 hours: the sender delivers it at once
        assert i["created_at"] == i["send_after"]
        assert NOW - 2 * 3600 < _ts(i["created_at"]) < NOW < _ts(i["send_before"])


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_the_mail_part_shows_recipient_subject_and_first_lines() -> None:
    intent = ContactIntent(
        intent_id="int-1", customer_id="cust-noor", channel="email", kind="abandoned_cart",
        items=[IntentItem("sku-kettle", 1, 45.0)], created_at="2026-12-03T10:00:00Z",
        send_after="2026-12-03T10:00:00Z", send_before="2026-12-04T10:00:00Z",
        topic="cart_reminders", reasons=[], policy_version="v",
        consent=ConsentRef("email", "2026-12-01T00:00:00Z", "signup"))
    mail = render_email(intent, "Shop <news@shop.example>", "noor@example.org", NOW)
    text = render_mail([("noor@example.org", mail)], ["omar@example.invalid"])
    assert "  To: noor@example.org\n  Subject: You left something in your cart\n" in text
    assert "  | Your cart is still waiting for you:\n  |\n  | - 1 x sku-kettle at 45.00\n" in text
    assert "omar@example.invalid: refused by the server (5xx)" in text
    assert "none arrived" in render_mail([], [])
