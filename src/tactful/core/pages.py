"""The shopper's pages (SPEC §7): the unsubscribe confirmation, the preference center and
the pages that refuse a link. Plain HTML in one file each: no JavaScript, no resource
from anywhere (the style sheet is inline and allowed by its hash in the
Content-Security-Policy), labels on every control, the document's language set, a layout
that fits a phone, colours with a contrast of at least 7:1 for text.

Pure: every value is escaped here; the service shell only sends the bytes.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape

from tactful.core.preferences import NEVER, ON, TIMEZONES, TOPICS, Choices

CHANNEL_NAMES = {"email": "Email", "sms": "Text messages (SMS)", "push": "Push notifications",
                 "phone": "Phone calls"}
TOPIC_NAMES = {"cart_reminders": "Reminders about items left in your cart",
               "stock_alerts": "Stock alerts for items in your cart",
               "deals": "Price drops and deals",
               "recommendations": "Recommendations based on what you viewed or bought"}

STYLE = """
:root{color-scheme:light}
*{box-sizing:border-box}
body{margin:0;font:1.0625rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1a1a1a;background:#f4f4f2}
main{max-width:38rem;margin:0 auto;padding:1.5rem 1rem 3rem}
h1{font-size:1.6rem;line-height:1.25;margin:.5rem 0 1rem}
p{margin:.5rem 0 1rem}
.card{background:#fff;border:1px solid #c8c8c4;border-radius:.5rem;padding:1rem 1.25rem;
margin:0 0 1rem}
fieldset{border:0;margin:0;padding:0}
legend{font-weight:600;font-size:1.15rem;padding:0;margin:0 0 .5rem}
.row{display:flex;gap:.75rem;align-items:flex-start;padding:.45rem 0}
.row input[type=checkbox]{width:1.35rem;height:1.35rem;margin:.15rem 0 0;flex:none}
.hint{color:#3d3d3a;font-size:.95rem;margin:.25rem 0 .5rem}
.times{display:flex;gap:1rem;flex-wrap:wrap}
.times label,.tz label{display:block;font-weight:500;margin:.25rem 0}
input[type=time],input[type=text],select{font:inherit;padding:.4rem .5rem;border:1px solid #5c5c58;
border-radius:.3rem;background:#fff;color:#1a1a1a;min-width:9rem;max-width:100%}
button{font:inherit;font-weight:600;color:#fff;background:#0b4f9c;border:0;border-radius:.4rem;
padding:.7rem 1.4rem;cursor:pointer}
button:hover{background:#083b75}
:focus-visible{outline:3px solid #b35c00;outline-offset:2px}
.notice{border-left:.35rem solid #1f6b35;background:#eaf5ec;padding:.75rem 1rem;
border-radius:.3rem}
.error{border-left:.35rem solid #a61b1b;background:#fbeaea;padding:.75rem 1rem;
border-radius:.3rem}
.off{color:#3d3d3a}
"""
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (f"default-src 'none'; style-src '{STYLE_HASH}'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


def _page(title: str, body: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="robots" content="noindex, nofollow">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<main>\n{body}\n</main>\n</body>\n</html>\n"
    ).encode()


def unsubscribe_confirm(channel: str, action: str) -> bytes:
    """GET /u/{token}: one button; nothing changes until it is pressed (mail scanners
    fetch links)."""
    name = CHANNEL_NAMES.get(channel, channel)
    return _page("Unsubscribe", (
        "<h1>Unsubscribe</h1>\n"
        f'<div class="card"><p>Stop receiving <strong>{escape(name.lower())}</strong> from us? '
        "You can switch it back on from the preference page of a later message.</p>\n"
        f'<form method="post" action="{escape(action, quote=True)}">\n'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">\n'
        f"<button type=\"submit\">Unsubscribe from {escape(name.lower())}</button>\n"
        "</form></div>"))


def unsubscribed(channel: str) -> bytes:
    name = CHANNEL_NAMES.get(channel, channel)
    return _page("Unsubscribed", (
        "<h1>You are unsubscribed</h1>\n"
        f'<p class="notice" role="status">We will not contact you by '
        f"<strong>{escape(name.lower())}</strong> any more.</p>"))


def preference_center(choices: Choices, action: str, form_token: str, *,
                      saved: bool = False, error: str | None = None) -> bytes:
    """GET /p/{token}: the customer's current choices in one form (POST to the same URL)."""
    parts = ["<h1>Your contact preferences</h1>"]
    if saved:
        parts.append('<p class="notice" role="status">Your choices are saved.</p>')
    if error:
        parts.append(f'<p class="error" role="alert">Nothing was saved: {escape(error)}.</p>')
    parts.append(f'<form method="post" action="{escape(action, quote=True)}">')
    token = escape(form_token, quote=True)
    parts.append(f'<input type="hidden" name="form_token" value="{token}">')

    rows = []
    for channel, state in choices.channels:
        name = escape(CHANNEL_NAMES[channel])
        if state == NEVER:
            rows.append(f'<div class="row off"><span>{name}: you have not signed up for '
                        "these.</span></div>")
            continue
        checked = " checked" if state == ON else ""
        rows.append(f'<div class="row"><input type="checkbox" id="ch-{channel}" name="channel" '
                    f'value="{channel}"{checked}><label for="ch-{channel}">{name}</label></div>')
    parts.append('<div class="card"><fieldset><legend>How we may contact you</legend>'
                 '<p class="hint">Unticked: we never contact you that way.</p>'
                 + "".join(rows) + "</fieldset></div>")

    rows = []
    for topic in TOPICS:
        checked = "" if topic in choices.topics_off else " checked"
        rows.append(f'<div class="row"><input type="checkbox" id="tp-{topic}" name="topic" '
                    f'value="{topic}"{checked}><label for="tp-{topic}">'
                    f"{escape(TOPIC_NAMES[topic])}</label></div>")
    parts.append('<div class="card"><fieldset><legend>What we may write to you about</legend>'
                 + "".join(rows) + "</fieldset></div>")

    start, end = choices.quiet or ("", "")
    parts.append(
        '<div class="card"><fieldset><legend>Quiet hours</legend>'
        '<p class="hint" id="quiet-hint">No text messages, push notifications or calls between '
        "these times, in your time zone (nor outside the hours the shop keeps for everyone)."
        "</p>"
        '<div class="times">'
        f'<div><label for="quiet_start">From</label><input type="time" id="quiet_start" '
        f'name="quiet_start" value="{escape(start, quote=True)}" aria-describedby="quiet-hint">'
        "</div>"
        f'<div><label for="quiet_end">Until</label><input type="time" id="quiet_end" '
        f'name="quiet_end" value="{escape(end, quote=True)}" aria-describedby="quiet-hint">'
        "</div></div></fieldset></div>")

    region = escape(choices.region or "", quote=True)
    parts.append(
        '<div class="card tz"><label for="region"><strong>Where you live</strong></label>'
        '<p class="hint" id="region-hint">Your country, or your state or province, as a code '
        "such as FR, DE or US-FL: the rules of where you live about calls and texts apply."
        "</p>"
        f'<input type="text" id="region" name="region" value="{region}" maxlength="6" '
        'autocomplete="off" spellcheck="false" aria-describedby="region-hint"></div>')
    options = ['<option value="">Not set: the shop\'s time zone</option>']
    for zone in sorted(TIMEZONES):
        selected = " selected" if zone == choices.timezone else ""
        options.append(f'<option value="{escape(zone, quote=True)}"{selected}>'
                       f"{escape(zone.replace('_', ' '))}</option>")
    parts.append('<div class="card tz"><label for="timezone"><strong>Your time zone'
                 '</strong></label><select id="timezone" name="timezone">'
                 + "".join(options) + "</select></div>")
    parts.append('<button type="submit">Save my choices</button>\n</form>')
    return _page("Your contact preferences", "\n".join(parts))


def nothing_held() -> bytes:
    return _page("Your contact preferences", (
        "<h1>Your contact preferences</h1>\n"
        "<p>We hold no contact choices for you: there is nothing to change.</p>"))


def refused() -> bytes:
    """403: a link that was not made by us, or was altered."""
    return _page("Link not valid", (
        "<h1>This link is not valid</h1>\n"
        '<p>It may have been cut off or changed when it was copied. Open the link from the '
        "message itself; nothing has been changed.</p>"))


def expired() -> bytes:
    return _page("Link expired", (
        "<h1>This link has expired</h1>\n"
        "<p>Links in our messages work for a limited time. Use the link in a more recent "
        "message; nothing has been changed.</p>"))


def unavailable() -> bytes:
    return _page("Try again shortly", (
        "<h1>Please try again in a moment</h1>\n"
        "<p>We could not reach your preferences just now; nothing has been changed.</p>"))


def plain(title: str, text: str) -> bytes:
    """A page for the HTTP errors (404, 405, 413): a title and a sentence."""
    return _page(title, f"<h1>{escape(title)}</h1>\n<p>{escape(text)}</p>")
