"""An intent as an email (core/mail.py): the expected texts are written by hand."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest

from tactful.core.mail import TEMPLATES, message_id, render_email, render_html, render_text
from tactful.core.outputs import ConsentRef, ContactIntent, IntentItem, Links

UNSUB = "https://shop.example/t/u/abc.def"
PREFS = "https://shop.example/t/p/abc.def"
NOW = datetime(2026, 5, 4, 12, 0, 30, tzinfo=UTC).timestamp()


def intent(kind: str = "abandoned_cart", links: Links | None = None,
           items: list[IntentItem] | None = None) -> ContactIntent:
    return ContactIntent(
        intent_id="int-0123456789abcdef0123", customer_id="cust-42", channel="email",
        kind=kind,
        items=[IntentItem("sku-1", 2, 19.99), IntentItem("sku-<b>", 1, 5.0)]
        if items is None else items,
        created_at="2026-05-04T12:00:00Z", send_after="2026-05-04T12:00:00Z",
        send_before="2026-05-05T12:00:00Z", topic="cart_reminders", reasons=[],
        consent=ConsentRef("email", "2026-01-01T00:00:00Z", "signup"), policy_version="v1",
        links=links,
    )


def test_plain_text_lists_the_items_and_the_links() -> None:
    assert render_text(intent(links=Links(UNSUB, PREFS))) == (
        "Your cart is still waiting for you:\n"
        "\n"
        "- 2 x sku-1 at 19.99\n"
        "- 1 x sku-<b> at 5.00\n"
        "\n"
        "Your preferences: https://shop.example/t/p/abc.def\n"
        "Unsubscribe: https://shop.example/t/u/abc.def\n"
    )


def test_plain_text_without_links_or_items() -> None:
    assert render_text(intent("back_in_stock", items=[])) == (
        "Good news, these are available again:\n\n")


def test_html_escapes_the_items() -> None:
    assert render_html(intent(links=Links(UNSUB, PREFS))) == (
        "<html><body><p>Your cart is still waiting for you:</p>"
        "<ul><li>2 x sku-1 at 19.99</li><li>1 x sku-&lt;b&gt; at 5.00</li></ul>"
        '<p><a href="https://shop.example/t/p/abc.def">Your preferences</a> | '
        '<a href="https://shop.example/t/u/abc.def">Unsubscribe</a></p>'
        "</body></html>\n"
    )


def test_every_kind_of_the_policy_has_its_own_template() -> None:
    assert set(TEMPLATES) == {"abandoned_cart", "assist_offer", "browse_abandonment",
                              "low_stock", "back_in_stock", "price_drop", "post_purchase"}
    assert len({t.subject for t in TEMPLATES.values()}) == len(TEMPLATES)


def test_message_id_derives_from_the_intent_id() -> None:
    assert message_id("int-0123456789abcdef0123", "shop.example") == (
        "<int-0123456789abcdef0123@shop.example>")
    odd = message_id("a b@c", "shop.example")
    assert odd == message_id("a b@c", "shop.example")
    assert odd.startswith("<i-") and odd.endswith("@shop.example>") and " " not in odd


def test_email_headers_and_parts() -> None:
    msg = render_email(intent(links=Links(UNSUB, PREFS)), "Shop <news@shop.example>",
                       "ana@example.org", NOW)
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed["From"] == "Shop <news@shop.example>"
    assert parsed["To"] == "ana@example.org"
    assert parsed["Subject"] == "You left something in your cart"
    assert parsed["Date"] == "Mon, 04 May 2026 12:00:30 +0000"
    assert parsed["Message-ID"] == "<int-0123456789abcdef0123@shop.example>"
    assert parsed["List-Unsubscribe"] == "<https://shop.example/t/u/abc.def>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed.get_content_type() == "multipart/alternative"
    text = parsed.get_body(("plain",))
    page = parsed.get_body(("html",))
    assert text is not None and page is not None
    assert "- 2 x sku-1 at 19.99\n" in text.get_content()
    assert "<li>2 x sku-1 at 19.99</li>" in page.get_content()


@pytest.mark.parametrize("kind", ["price_drop", "no_such_kind"])
def test_without_links_there_is_no_list_unsubscribe(kind: str) -> None:
    msg = render_email(intent(kind), "news@shop.example", "ana@example.org", NOW)
    assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None
    assert msg["Subject"] == ("A price dropped" if kind == "price_drop"
                              else "A note from the shop")
