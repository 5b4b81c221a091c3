"""An intent as an email and as a short text (SMS, push, phone script): pure.

One small template per intent kind (a subject and an opening line); the items are
listed (tactful never puts a sensitive line in an intent). An email has a plain text
and an HTML part, ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` (RFC 8058) when
the intent has links, the preference link in the body, and a ``Message-ID`` derived
from the intent id, so the same intent always gives the same Message-ID.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from tactful.core.outputs import ContactIntent, IntentItem


@dataclass(frozen=True, slots=True)
class Template:
    subject: str
    opening: str


TEMPLATES: dict[str, Template] = {
    "abandoned_cart": Template(
        "You left something in your cart",
        "Your cart is still waiting for you:"),
    "assist_offer": Template(
        "Can we help with your order?",
        "One of our team can help you complete your order:"),
    "browse_abandonment": Template(
        "Still thinking it over?",
        "You were looking at:"),
    "low_stock": Template(
        "Almost gone",
        "Only a few left of:"),
    "back_in_stock": Template(
        "Back in stock",
        "Good news, these are available again:"),
    "price_drop": Template(
        "A price dropped",
        "A lower price on:"),
    # The items are what was bought; the sender adds what goes with them.
    "post_purchase": Template(
        "Something to go with your order",
        "Thank you for your order. A few ideas to go with:"),
}
_FALLBACK = Template("A note from the shop", "About:")


def template(kind: str) -> Template:
    return TEMPLATES.get(kind, _FALLBACK)


def item_line(item: IntentItem) -> str:
    return f"{item.qty} x {item.sku} at {item.price:.2f}"


def message_id(intent_id: str, domain: str) -> str:
    """``<intent id>@<domain>`` in angle brackets; an id with characters a Message-ID
    cannot hold is replaced by a digest of it."""
    local = intent_id
    if not local or any(not (c.isascii() and (c.isalnum() or c in "-_.")) for c in local):
        local = "i-" + hashlib.blake2b(intent_id.encode(), digest_size=12).hexdigest()
    return f"<{local}@{domain}>"


def render_text(intent: ContactIntent) -> str:
    """The plain text of an intent (its email's text part, an SMS or push body)."""
    t = template(intent.kind)
    lines = [t.opening, ""]
    lines += [f"- {item_line(i)}" for i in intent.items]
    if intent.links is not None:
        lines += ["", f"Your preferences: {intent.links.preferences}",
                  f"Unsubscribe: {intent.links.unsubscribe}"]
    return "\n".join(lines) + "\n"


def render_html(intent: ContactIntent) -> str:
    t = template(intent.kind)
    parts = [f"<p>{html.escape(t.opening)}</p>"]
    if intent.items:
        parts.append("<ul>" + "".join(
            f"<li>{html.escape(item_line(i))}</li>" for i in intent.items) + "</ul>")
    if intent.links is not None:
        prefs = html.escape(intent.links.preferences, quote=True)
        unsub = html.escape(intent.links.unsubscribe, quote=True)
        parts.append(f'<p><a href="{prefs}">Your preferences</a> | '
                     f'<a href="{unsub}">Unsubscribe</a></p>')
    return "<html><body>" + "".join(parts) + "</body></html>\n"


def render_email(intent: ContactIntent, sender: str, recipient: str,
                 now: float) -> EmailMessage:
    """The email of an intent, from ``sender`` to ``recipient``, dated ``now``."""
    domain = sender.rpartition("@")[2] or "localhost"
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = template(intent.kind).subject
    msg["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    msg["Message-ID"] = message_id(intent.intent_id, domain)
    if intent.links is not None:
        msg["List-Unsubscribe"] = f"<{intent.links.unsubscribe}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(render_text(intent))
    msg.add_alternative(render_html(intent), subtype="html")
    return msg
