"""The shopper's pages (SPEC §7) of a real worker on the local Kafka, in headless Chromium
(Debian's chromium and chromedriver, `make browser-tools`) and from an HTTP client posting
exactly what a mailbox provider posts (RFC 8058).

One worker on the wall clock, with a policy of two-second triggers and no caps or quiet
hours, so that a trigger, a save and the next trigger take seconds. The link secret is
rotated: the worker signs with the new secret and still takes links of the previous one.

Screenshots of every page at desktop and phone width go to ``TACTFUL_SCREENSHOTS`` when it
is set (``docs/pages`` in the repository holds those README shows).
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from tactful.core.links import LinkClaims, LinkSigner
from tests.integration.harness import Deployment, deployment

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SECRET = "shopper-pages-new-secret-0123"
PREVIOUS = "shopper-pages-old-secret-4567"
CUSTOMER = "cust-web-1"

POLICY = """
version = "test-pages"
default_timezone = "Europe/Paris"
validity = "24h"
dedup_window = "7d"
session_ttl = "30d"
frequency_caps = []

[triggers.abandoned_cart]
delay = "2s"
channels = ["sms", "email"]
topic = "cart_reminders"

[triggers.assist_offer]
delay = "48h"
min_cart_value = 500
after_reminder = "24h"
channels = ["phone"]
topic = "cart_reminders"

[triggers.browse_abandonment]
delay = "2s"
min_views = 1
view_window = "24h"
channels = ["email"]
topic = "recommendations"

[triggers.low_stock]
threshold = 3
channels = ["push", "sms", "email"]
topic = "stock_alerts"

[triggers.back_in_stock]
channels = ["push", "email", "sms"]
topic = "stock_alerts"

[triggers.price_drop]
min_drop = 0.10
channels = ["email", "push"]
topic = "deals"

[triggers.post_purchase]
delay = "7d"
channels = ["email"]
topic = "recommendations"

[quiet_hours]
allowed_from = "08:00"
allowed_until = "21:00"
channels = []

[cooldown]
window = "72h"

[min_lag]
channels = ["phone"]
lag = "48h"

[sensitive]
categories = ["health"]
"""

def stamp(offset: float = 0.0) -> str:
    return datetime.fromtimestamp(time.time() + offset, UTC).isoformat().replace("+00:00", "Z")


def produce(dep: Deployment, events: list[dict[str, Any]], name: str) -> None:
    path = dep.tmp / name
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    dep.cli("produce", str(path), env={"TACTFUL_PUBLIC_URL": ""})


def wait_for(dep: Deployment, topic: str, match: Callable[[dict[str, Any]], bool],
             count: int = 1, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Every record of the topic that ``match`` takes, once there are ``count``."""
    async def run() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(dep.topic(topic), bootstrap_servers=dep.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=300)).values():
                    for record in batch:
                        value = orjson.loads(record.value)
                        if match(value):
                            found.append(value)
                if len(found) >= count:
                    await asyncio.sleep(1.0)  # anything more that should not be there
                    for batch in (await consumer.getmany(timeout_ms=500)).values():
                        found += [v for v in (orjson.loads(r.value) for r in batch) if match(v)]
                    return found
        finally:
            await consumer.stop()
        raise AssertionError(f"{len(found)} of {count} on {topic}: {dep.logs()[-3000:]}")
    return asyncio.run(run())


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            assert "Set-Cookie" not in r.headers
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), (
        "needs Debian's chromium and chromium-driver: make browser-tools")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--force-device-scale-factor=1", "--window-size=1280,900", "--lang=en-US"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


SHOTS = os.environ.get("TACTFUL_SCREENSHOTS")


def shoot(driver: Any, url: str, name: str) -> None:
    """The page at desktop and phone width: it fits a phone without scrolling sideways;
    saved under TACTFUL_SCREENSHOTS when set."""
    for width, label in ((1280, "desktop"), (390, "phone")):
        driver.set_window_size(width, 900)
        driver.get(url)
        assert driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"), (name, label)
        assert driver.find_element("css selector", "html").get_attribute("lang") == "en"
        if SHOTS:
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(width, min(max(height + 140, 500), 2400))
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(Path(SHOTS) / f"{name}-{label}.png"))
    driver.set_window_size(1280, 900)


def test_pages_in_a_browser_and_one_click_from_a_mailbox(
        kafka_bootstrap: str, tmp_path: Path, browser: Any) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    env = {"TACTFUL_POLICY": str(policy), "TACTFUL_PUBLIC_URL": "http://127.0.0.1:{port}",
           "TACTFUL_LINK_SECRET": SECRET, "TACTFUL_LINK_SECRET_PREVIOUS": PREVIOUS}
    with deployment(kafka_bootstrap, tmp_path, clock="wall", partitions=2,
                    extra_env=env) as dep:
        dep.start_worker()
        dep.wait_ready(1)
        base = f"http://127.0.0.1:{dep.public_ports[0]}"

        def login(session: str, offset: float) -> dict[str, Any]:
            return {"event_id": f"{session}-login", "type": "login", "ts": stamp(offset),
                    "session_id": session, "customer_id": CUSTOMER,
                    "identity": {"method": "login"}}

        def product(kind: str, session: str, sku: str, offset: float) -> dict[str, Any]:
            return {"event_id": f"{session}-{kind}-{sku}", "type": kind, "ts": stamp(offset),
                    "session_id": session, "customer_id": CUSTOMER,
                    "identity": {"method": "login"}, "sku": sku, "product_id": f"prod-{sku}",
                    "category": ["home"], "price": 40.0, "currency": "EUR", "qty": 1}

        consents = [{"event_id": f"grant-{c}", "type": "consent_granted", "ts": stamp(-60),
                     "customer_id": CUSTOMER, "channel": c, "source": "account_signup"}
                    for c in ("email", "sms")]
        produce(dep, [*consents, login("s-1", -2), product("cart_add", "s-1", "lamp", -1)],
                "first.jsonl")
        # The cart's reminder goes out by SMS, the first channel of the policy.
        (first,) = wait_for(dep, "intents", lambda i: i.get("customer_id") == CUSTOMER)
        assert first["channel"] == "sms" and first["kind"] == "abandoned_cart"
        prefs, unsub = first["links"]["preferences"], first["links"]["unsubscribe"]
        assert prefs.startswith(f"{base}/p/") and unsub.startswith(f"{base}/u/")
        assert CUSTOMER not in prefs + unsub

        # --- the preference center, in the browser: SMS off, recommendations off.
        shoot(browser, prefs, "preferences")
        browser.get(prefs)
        assert browser.title == "Your contact preferences"
        box = browser.find_element("id", "ch-sms")
        recommendations = browser.find_element("id", "tp-recommendations")
        assert box.is_selected() and recommendations.is_selected()
        assert browser.find_element("id", "ch-email").is_selected()
        assert not browser.find_elements("id", "ch-push")  # never consented: no switch
        # Keyboard order follows the page: channels, topics, quiet hours, zone, save.
        order = tab_order(browser)
        assert order[:2] == ["ch-email", "ch-sms"], order
        assert order[2:6] == ["tp-cart_reminders", "tp-stock_alerts", "tp-deals",
                              "tp-recommendations"], order
        assert order[6:] == ["quiet_start", "quiet_end", "region", "timezone", "save"], order
        box.click()
        recommendations.click()
        browser.find_element("id", "region").send_keys("fr")  # where the shopper lives
        browser.find_element("css selector", "button[type=submit]").click()
        wait_page(browser, "Your choices are saved.")
        if SHOTS:
            shoot_current(browser, "preferences-saved")
        changed = wait_for(dep, "consent", lambda e: e["event_id"].startswith("pc-"), count=2)
        assert [(e["type"], e.get("channel"), e.get("source"), e.get("topics_opt_out"),
                 e.get("region")) for e in changed] == [
            ("consent_revoked", "sms", "preference_center", None, None),
            ("preferences_set", None, None, ["recommendations"], "FR"),
        ]
        assert all(e["customer_id"] == CUSTOMER for e in changed)
        # The page read again shows what the worker now holds.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            browser.get(prefs)
            if not browser.find_element("id", "ch-sms").is_selected():
                break
            time.sleep(0.5)
        assert not browser.find_element("id", "tp-recommendations").is_selected()
        assert browser.find_element("id", "region").get_attribute("value") == "FR"
        assert browser.find_element("id", "ch-email").is_selected()

        # --- the next triggers avoid SMS and recommendations.
        produce(dep, [login("s-2", -2), product("product_view", "s-2", "vase", -2),
                      product("cart_add", "s-2", "rug", -1)], "second.jsonl")
        decisions = wait_for(dep, "decisions", lambda d: d.get("customer_id") == CUSTOMER,
                             count=3)
        outcome = {(d["kind"], d["channel"], d["outcome"], d["reason"]) for d in decisions}
        assert outcome == {("abandoned_cart", "sms", "emitted", None),
                           ("abandoned_cart", "email", "emitted", None),
                           ("browse_abandonment", None, "suppressed", "topic_opt_out")}, outcome
        second = [i for i in wait_for(dep, "intents", lambda i: i.get("customer_id") == CUSTOMER,
                                      count=2) if i["intent_id"] != first["intent_id"]]
        assert [i["channel"] for i in second] == ["email"]

        # --- one-click: GET changes nothing; the mailbox provider's POST revokes email.
        email_unsub = second[0]["links"]["unsubscribe"]
        shoot(browser, email_unsub, "unsubscribe")
        status, body = post(
            email_unsub, b"List-Unsubscribe=One-Click",
            {"Content-Type": "application/x-www-form-urlencoded",
             "User-Agent": "Mozilla/5.0 (compatible; mailbox-unsubscribe)"})
        assert status == 200, body
        revoked = wait_for(dep, "consent", lambda e: e.get("source") == "one_click_unsubscribe")
        assert [(e["type"], e["customer_id"], e["channel"]) for e in revoked] == [
            ("consent_revoked", CUSTOMER, "email")]
        # A retry: 200 again, and the same event (one id, applied once).
        assert post(email_unsub, b"List-Unsubscribe=One-Click",
                    {"Content-Type": "application/x-www-form-urlencoded"})[0] == 200
        again = wait_for(dep, "consent", lambda e: e.get("source") == "one_click_unsubscribe")
        assert {e["event_id"] for e in again} == {revoked[0]["event_id"]}
        if SHOTS:
            browser.get(email_unsub)
            browser.find_element("css selector", "button[type=submit]").click()
            wait_page(browser, "You are unsubscribed")
            shoot_current(browser, "unsubscribed")

        # --- forged, altered, expired and rotated-secret links.
        token = prefs.rsplit("/", 1)[1]
        altered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
        forged = LinkSigner(base, b"a-secret-nobody-configured").token(
            LinkClaims(CUSTOMER, "sms", first["intent_id"], "preferences", 4_000_000_000))
        old = LinkSigner(base, PREVIOUS.encode())
        expired = LinkSigner(base, SECRET.encode()).token(
            LinkClaims(CUSTOMER, "sms", first["intent_id"], "preferences", int(time.time()) - 1))
        rotated = old.token(
            LinkClaims(CUSTOMER, "sms", first["intent_id"], "preferences", 4_000_000_000))
        rotated_unsub = old.token(
            LinkClaims(CUSTOMER, "sms", first["intent_id"], "unsubscribe", 4_000_000_000))
        for path in (f"/p/{altered}", f"/p/{forged}", f"/u/{token}"):
            status, body = get(base + path)
            assert status == 403 and b"This link is not valid" in body, path
        status, body = get(f"{base}/p/{expired}")
        assert status == 410 and b"This link has expired" in body and b"<form" not in body
        status, body = get(f"{base}/p/{rotated}")
        assert status == 200 and b'name="form_token"' in body
        assert post(f"{base}/u/{rotated_unsub}", b"List-Unsubscribe=One-Click",
                    {"Content-Type": "application/x-www-form-urlencoded"})[0] == 200
        shoot(browser, f"{base}/p/{forged}", "refused")
        shoot(browser, f"{base}/p/{expired}", "expired")
        # Only the public pages are on this listener.
        for path in ("/metrics", "/healthz", f"/customers/{CUSTOMER}/decisions"):
            assert get(base + path)[0] == 404, path
        assert dep.get(0, "/healthz")[0] == 200


def wait_page(driver: Any, text: str) -> None:
    """Until the page the browser went to says ``text``."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    def shows(d: Any) -> bool:
        try:
            return text in d.find_element("css selector", "main").text
        except StaleElementReferenceException:
            return False

    WebDriverWait(driver, 20).until(shows)


def tab_order(driver: Any) -> list[str]:
    """The ids focused by pressing Tab from the top of the page (a time field's parts are
    one control)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver.execute_script("document.activeElement && document.activeElement.blur()")
    seen: list[str] = []
    for _ in range(30):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        element = driver.switch_to.active_element
        ident = element.get_attribute("id") or (
            "save" if element.tag_name == "button" else element.tag_name)
        if not seen or seen[-1] != ident:
            seen.append(ident)
        if ident == "save":
            break
    return seen


def shoot_current(driver: Any, name: str) -> None:
    assert SHOTS
    for width, label in ((1280, "desktop"), (390, "phone")):
        driver.set_window_size(width, 900)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(max(height + 140, 500), 2400))
        driver.save_screenshot(str(Path(SHOTS) / f"{name}-{label}.png"))
    driver.set_window_size(1280, 900)
