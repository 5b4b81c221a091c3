"""The shopper's pages (SPEC §7) over HTTP, with an in-memory store of choices and a
producer that keeps what it is given (the real listener on Kafka and in a browser:
tests/integration/test_shopper_pages.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from tactful.core.errors import TransientError
from tactful.core.links import LinkClaims, LinkSigner
from tactful.core.preferences import Choices
from tactful.service.public import MAX_BODY, PublicPages, Unavailable

NOW = 1_780_000_000.0
SIGNER = LinkSigner("http://shop.test", b"pages-test-secret-0123")
OLD = LinkSigner("http://shop.test", b"the-previous-secret-99")
ROTATED = LinkSigner("http://shop.test", b"pages-test-secret-0123", b"the-previous-secret-99")
CURRENT = Choices((("email", "on"), ("sms", "on"), ("push", "never"), ("phone", "off")),
                  frozenset({"deals"}), ("21:00", "08:00"), "Europe/Paris", "FR")


def token(purpose: str, signer: LinkSigner = SIGNER, expires: float = NOW + 3600,
          customer: str = "cust-7", channel: str = "email") -> str:
    return signer.token(LinkClaims(customer, channel, "int-00112233445566778899",
                                   purpose, int(expires)))  # type: ignore[arg-type]


@dataclass
class Fakes:
    held: dict[str, Choices | None] = field(default_factory=lambda: {"cust-7": CURRENT})
    sent: list[tuple[bytes, dict[str, object]]] = field(default_factory=list)
    broker_down: bool = False
    moving: bool = False

    async def choices(self, claims: LinkClaims, _token: str) -> Choices | None:
        if self.moving:
            raise Unavailable
        return self.held.get(claims.customer_id)

    async def produce(self, records: list[tuple[bytes, bytes]]) -> None:
        if self.broker_down:
            raise TransientError("down")
        self.sent += [(k, orjson.loads(v)) for k, v in records]


@pytest_asyncio.fixture(loop_scope="function")
async def site() -> AsyncIterator[tuple[TestClient, Fakes]]:
    fakes = Fakes()
    pages = PublicPages(ROTATED, fakes.choices, fakes.produce, "tactful.consent",
                        clock=lambda: NOW)
    async with TestClient(TestServer(pages.app())) as client:
        yield client, fakes


ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


async def test_one_click_post_revokes_that_channel_and_answers_200(site) -> None:  # type: ignore[no-untyped-def]
    client, fakes = site
    r = await client.post(f"/u/{token('unsubscribe')}", data=b"List-Unsubscribe=One-Click",
                          headers=ONE_CLICK)
    assert r.status == 200
    assert "Set-Cookie" not in r.headers
    (key, event), = fakes.sent
    assert key == b"cust-7"
    assert {k: event[k] for k in ("type", "customer_id", "channel", "source", "ts")} == {
        "type": "consent_revoked", "customer_id": "cust-7", "channel": "email",
        "source": "one_click_unsubscribe", "ts": "2026-05-28T20:26:40Z"}
    # A mailbox provider's retry: the same event again (same id: applied once).
    r = await client.post(f"/u/{token('unsubscribe')}", data=b"List-Unsubscribe=One-Click",
                          headers=ONE_CLICK)
    assert r.status == 200
    assert fakes.sent[1] == fakes.sent[0]


async def test_a_retry_across_a_minute_boundary_is_the_same_event() -> None:
    fakes = Fakes()
    start = (NOW // 60 + 1) * 60 - 1  # one second before a minute ends
    now = [start]
    pages = PublicPages(ROTATED, fakes.choices, fakes.produce, "tactful.consent",
                        clock=lambda: now[0])
    path = f"/u/{token('unsubscribe')}"
    async with TestClient(TestServer(pages.app())) as client:
        for offset in (0.0, 2.0, 59.5, 61.0):
            now[0] = start + offset
            r = await client.post(path, data=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
            assert r.status == 200
    ids = [event["event_id"] for _key, event in fakes.sent]
    # Within 60 s of the first, across the minute's end: one event, with the first's time.
    assert ids[0] == ids[1] == ids[2]
    assert fakes.sent[0] == fakes.sent[1] == fakes.sent[2]
    # 61 s after the first: another revocation (of a revoked channel: harmless).
    assert ids[3] != ids[0]


async def test_one_click_as_multipart_form_data_is_taken_too(site) -> None:  # type: ignore[no-untyped-def]
    import aiohttp

    client, fakes = site
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("List-Unsubscribe", "One-Click")
    r = await client.post(f"/u/{token('unsubscribe', channel='sms')}", data=form)
    assert r.status == 200
    assert fakes.sent[0][1]["channel"] == "sms"


async def test_get_of_the_unsubscribe_link_changes_nothing(site) -> None:  # type: ignore[no-untyped-def]
    client, fakes = site
    t = token("unsubscribe")
    r = await client.get(f"/u/{t}")
    body = await r.text()
    assert r.status == 200
    assert fakes.sent == []
    # One form, one button, posting the one-click body to the same URL.
    assert body.count("<button") == 1
    assert f'action="http://shop.test/u/{t}"' in body
    assert 'name="List-Unsubscribe" value="One-Click"' in body
    assert (await client.head(f"/u/{t}")).status == 200
    assert fakes.sent == []


async def test_a_post_without_the_one_click_body_is_refused(site) -> None:  # type: ignore[no-untyped-def]
    client, fakes = site
    twice = b"List-Unsubscribe=One-Click&List-Unsubscribe=One-Click"
    for body in (b"", b"List-Unsubscribe=Yes", twice):
        r = await client.post(f"/u/{token('unsubscribe')}", data=body, headers=ONE_CLICK)
        assert r.status == 400, body
    assert fakes.sent == []


async def test_forged_altered_expired_and_cross_purpose_links(site) -> None:  # type: ignore[no-untyped-def]
    client, fakes = site
    forged = token("unsubscribe", LinkSigner("http://shop.test", b"a-guessed-secret-000"))
    good = token("unsubscribe")
    altered = good[:-3] + ("AAA" if good[-3:] != "AAA" else "BBB")
    for path in (f"/u/{forged}", f"/u/{altered}", f"/u/{token('preferences')}",
                 f"/p/{token('unsubscribe')}", "/u/not-a-token", f"/p/{'A' * 3000}"):
        for method in ("GET", "POST"):
            r = await client.request(method, path, data=b"List-Unsubscribe=One-Click",
                                     headers=ONE_CLICK)
            assert r.status == 403, (path, method)
            assert "not valid" in await r.text()
    for path in (f"/u/{token('unsubscribe', expires=NOW)}",
                 f"/p/{token('preferences', expires=NOW - 1)}"):
        r = await client.post(path, data=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert r.status == 410
        text = await r.text()
        assert "expired" in text and "<form" not in text
    assert fakes.sent == []


async def test_a_link_of_the_previous_secret_still_works(site) -> None:  # type: ignore[no-untyped-def]
    client, fakes = site
    r = await client.post(f"/u/{token('unsubscribe', OLD)}", data=b"List-Unsubscribe=One-Click",
                          headers=ONE_CLICK)
    assert r.status == 200
    assert len(fakes.sent) == 1


async def test_other_methods_paths_and_sizes(site) -> None:  # type: ignore[no-untyped-def]
    client, fakes = site
    for method in ("PUT", "DELETE", "PATCH"):
        r = await client.request(method, f"/u/{token('unsubscribe')}")
        assert r.status == 405
        assert r.headers["Allow"] == "GET, HEAD, POST"
    assert (await client.get("/metrics")).status == 404
    assert (await client.get("/customers/cust-7/decisions")).status == 404
    r = await client.post(f"/p/{token('preferences')}", data=b"x=" + b"a" * MAX_BODY,
                          headers=ONE_CLICK)
    assert r.status == 413
    assert fakes.sent == []


def form_of(body: str) -> str:
    m = re.search(r'name="form_token" value="([^"]+)"', body)
    assert m
    return m.group(1)


async def test_preference_center_shows_the_current_choices(site) -> None:  # type: ignore[no-untyped-def]
    client, fakes = site
    r = await client.get(f"/p/{token('preferences')}")
    body = await r.text()
    assert r.status == 200
    assert '<html lang="en">' in body
    assert re.search(r'id="ch-email" name="channel" value="email" checked', body)
    assert re.search(r'id="ch-sms" name="channel" value="sms" checked', body)
    assert re.search(r'id="ch-phone" name="channel" value="phone">', body)
    assert 'id="ch-push"' not in body  # never consented: no switch
    assert re.search(r'id="tp-deals" name="topic" value="deals">', body)
    assert re.search(r'id="tp-recommendations" name="topic" value="recommendations" checked',
                     body)
    assert 'name="quiet_start" value="21:00"' in body
    assert '<option value="Europe/Paris" selected>' in body
    assert 'id="region" name="region" value="FR"' in body
    # Every control has a label; nothing is fetched from elsewhere; no script.
    for control in re.findall(r'<(?:input|select)[^>]*\bid="([^"]+)"', body):
        assert f'<label for="{control}">' in body, control
    assert "<script" not in body and " src=" not in body and "<link" not in body
    assert body.count("http") == 1 and 'action="http://shop.test/p/' in body
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert "Set-Cookie" not in r.headers
    assert fakes.sent == []


async def test_saving_produces_exactly_the_changes(site) -> None:  # type: ignore[no-untyped-def]
    client, fakes = site
    t = token("preferences")
    form = form_of(await (await client.get(f"/p/{t}")).text())
    # SMS off, phone back on, recommendations off (deals stays off), quiet hours and
    # time zone as they were.
    data = [("form_token", form), ("channel", "email"), ("channel", "phone"),
            ("topic", "cart_reminders"), ("topic", "stock_alerts"),
            ("quiet_start", "21:00"), ("quiet_end", "08:00"), ("timezone", "Europe/Paris")]
    r = await client.post(f"/p/{t}", data=data)
    body = await r.text()
    assert r.status == 200 and "saved" in body
    got = [(e["type"], e.get("channel"), e.get("source"), e.get("topics_opt_out"),
            e.get("quiet_hours"), e.get("timezone")) for _, e in fakes.sent]
    assert got == [
        ("consent_revoked", "sms", "preference_center", None, None, None),
        ("consent_granted", "phone", "preference_center", None, None, None),
        ("preferences_set", None, None, ["deals", "recommendations"], None, None),
    ]
    assert {k for k, _ in fakes.sent} == {b"cust-7"}
    assert len({e["event_id"] for _, e in fakes.sent}) == 3
    # The page shows the saved choices.
    assert re.search(r'value="sms">', body) and re.search(r'value="phone" checked', body)


async def test_saving_nothing_changed_produces_nothing(site) -> None:  # type: ignore[no-untyped-def]
    client, fakes = site
    t = token("preferences")
    form = form_of(await (await client.get(f"/p/{t}")).text())
    data = [("form_token", form), ("channel", "email"), ("channel", "sms"),
            ("topic", "cart_reminders"), ("topic", "stock_alerts"), ("topic", "recommendations"),
            ("quiet_start", ""), ("quiet_end", ""), ("timezone", "")]
    r = await client.post(f"/p/{t}", data=data)
    assert r.status == 200
    assert fakes.sent == []
    # Only quiet hours changed: one preferences_set carrying them alone.
    data[-3:] = [("quiet_start", "22:00"), ("quiet_end", "07:30"), ("timezone", "Europe/Paris")]
    await client.post(f"/p/{t}", data=data)
    (_, event), = fakes.sent
    assert event["type"] == "preferences_set"
    assert event["quiet_hours"] == {"start": "22:00", "end": "07:30"}
    assert "topics_opt_out" not in event and "timezone" not in event


async def test_the_form_needs_its_own_csrf_token(site) -> None:  # type: ignore[no-untyped-def]
    client, fakes = site
    t = token("preferences")
    other = token("preferences", customer="cust-8")
    for given in ("", SIGNER.form_token(other), "forged"):
        r = await client.post(f"/p/{t}", data=[("form_token", given), ("channel", "email")])
        assert r.status == 403, given
    r = await client.post(f"/p/{t}", data=[("form_token", SIGNER.form_token(t))],
                          headers={"Origin": "https://evil.example"})
    assert r.status == 403
    assert fakes.sent == []


async def test_bad_fields_save_nothing_and_say_why(site) -> None:  # type: ignore[no-untyped-def]
    client, fakes = site
    t = token("preferences")
    form = SIGNER.form_token(t)
    for fields, why in (
        ([("channel", "fax")], "unknown channel"),
        ([("topic", "spam")], "unknown topic"),
        ([("quiet_start", "21:00")], "both"),
        ([("quiet_start", "25:00"), ("quiet_end", "08:00")], "times such as"),
        ([("timezone", "Mars/Olympus")], "time zone"),
        ([("region", "XX-99")], "such as FR or US-FL"),
        ([("region", "France")], "such as FR or US-FL"),
    ):
        r = await client.post(f"/p/{t}", data=[("form_token", form), *fields])
        assert r.status == 400, fields
        assert why in await r.text(), fields
    assert fakes.sent == []


async def test_unknown_customer_moving_partitions_and_a_broker_down(site) -> None:  # type: ignore[no-untyped-def]
    client, fakes = site
    r = await client.get(f"/p/{token('preferences', customer='cust-gone')}")
    assert r.status == 200 and "<form" not in await r.text()
    fakes.moving = True
    r = await client.get(f"/p/{token('preferences')}")
    assert r.status == 503 and r.headers["Retry-After"] == "1"
    fakes.moving = False
    fakes.broker_down = True
    r = await client.post(f"/u/{token('unsubscribe')}", data=b"List-Unsubscribe=One-Click",
                          headers=ONE_CLICK)
    assert r.status == 503


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_text_contrast_is_at_least_7_to_1_and_focus_is_visible() -> None:
    from tactful.core.pages import STYLE

    # (rule, text colour, background) as the style sheet pairs them.
    pairs = [("body", "#1a1a1a", "#f4f4f2"), ("body", "#1a1a1a", "#ffffff"),
             (".hint", "#3d3d3a", "#ffffff"), (".off", "#3d3d3a", "#ffffff"),
             ("button", "#ffffff", "#0b4f9c"), ("button:hover", "#ffffff", "#083b75"),
             (".notice", "#1a1a1a", "#eaf5ec"), (".error", "#1a1a1a", "#fbeaea")]
    for rule, text, background in pairs:
        assert background.lower() in STYLE or background == "#ffffff", rule
        assert text in STYLE or text == "#ffffff", rule
        assert _contrast(text, background) >= 7.0, rule
    # The focus ring: at least 3:1 against the card and the page (WCAG 1.4.11).
    assert ":focus-visible{outline:3px solid #b35c00" in STYLE
    assert min(_contrast("#b35c00", "#ffffff"), _contrast("#b35c00", "#f4f4f2")) >= 3.0


async def test_the_pages_answer_under_the_public_urls_path_too() -> None:
    fakes = Fakes()
    signer = LinkSigner("https://shop.test/account/contact", b"pages-test-secret-0123")
    pages = PublicPages(signer, fakes.choices, fakes.produce, "tactful.consent",
                        clock=lambda: NOW)
    async with TestClient(TestServer(pages.app())) as client:
        t = token("unsubscribe", signer)
        for path in (f"/u/{t}", f"/account/contact/u/{t}"):
            r = await client.post(path, data=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
            assert r.status == 200, path
        r = await client.get(f"/account/contact/u/{t}")
        assert f'action="https://shop.test/account/contact/u/{t}"' in await r.text()
        assert (await client.get(f"/account/u/{t}")).status == 404
    assert len(fakes.sent) == 2


async def test_the_region_is_set_from_its_code(site) -> None:  # type: ignore[no-untyped-def]
    client, fakes = site
    t = token("preferences")
    base = [("form_token", SIGNER.form_token(t)), ("channel", "email"), ("channel", "sms"),
            ("topic", "cart_reminders"), ("topic", "stock_alerts"), ("topic", "recommendations")]
    await client.post(f"/p/{t}", data=[*base, ("region", "FR")])
    assert fakes.sent == []  # unchanged
    r = await client.post(f"/p/{t}", data=[*base, ("region", "us-fl")])
    assert r.status == 200
    (_, event), = fakes.sent
    assert (event["type"], event["region"]) == ("preferences_set", "US-FL")
    assert set(event) == {"type", "event_id", "ts", "customer_id", "region"}
    assert 'name="region" value="US-FL"' in await r.text()
