"""The whole loop on the local Kafka: storefront events → worker → intent → ``tactful
send`` → a mail in an SMTP inbox on loopback → feedback → the worker: the mail's one-click
unsubscribe revokes the consent, and a bounced address is not mailed again."""

from __future__ import annotations

import re
import sys
import time
import urllib.request
from pathlib import Path

import orjson

from tactful.core.outputs import iso
from tests.integration.harness import deployment
from tests.integration.smtp_inbox import SmtpServer

ADMIN_TOKEN = "loop-admin-token-0123456789"


def story(now: float) -> list[dict[str, object]]:
    start = now - 5 * 3600  # the abandoned cart's 4 h have passed by ``now``
    events: list[dict[str, object]] = []
    for n, customer in enumerate(("cust-ana", "cust-bo")):
        session = f"sess-{customer}"
        login = {"session_id": session, "customer_id": customer,
                 "identity": {"method": "login"}}
        events += [
            {"event_id": f"d{n}-1", "type": "consent_granted", "ts": iso(start),
             "customer_id": customer, "channel": "email", "source": "account_signup"},
            {"event_id": f"d{n}-2", "type": "login", "ts": iso(start + 60), **login},
            {"event_id": f"d{n}-3", "type": "cart_add", "ts": iso(start + 120), **login,
             "sku": f"sku-lamp-{n}", "product_id": "prod-lamp", "category": ["home"],
             "price": 120.0, "currency": "USD", "qty": 1},
        ]
    return events


def test_events_to_a_mail_in_the_inbox_and_its_feedback_back_to_the_worker(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    directory = tmp_path / "directory.jsonl"
    directory.write_text('{"customer_id": "cust-ana", "email": "ana@example.org"}\n'
                         '{"customer_id": "cust-bo", "email": "bo@example.org"}\n')
    with SmtpServer() as smtp, deployment(kafka_bootstrap, tmp_path, partitions=2,
                                             clock="wall") as dep:
        smtp.inbox.refuse["bo@example.org"] = "550 5.1.1 no such user"
        dep.extra_env.update({
            # The links lead to the worker's own public listener (harness: {port}).
            "TACTFUL_PUBLIC_URL": "http://127.0.0.1:{port}/tactful",
            "TACTFUL_LINK_SECRET": "loop-link-secret-0123456789",
            "TACTFUL_ADMIN_TOKEN": ADMIN_TOKEN,
            "TACTFUL_SMTP_HOST": "127.0.0.1", "TACTFUL_SMTP_PORT": str(smtp.port),
            "TACTFUL_SMTP_TLS": "none", "TACTFUL_SMTP_FROM": "Shop <news@shop.example>",
            "TACTFUL_SENDER_DIRECTORY": str(directory),
            "TACTFUL_SENDER_OUTBOX": str(tmp_path / "outbox.jsonl"),
            "TACTFUL_LOG_LEVEL": "info",
        })
        now = time.time()
        events = tmp_path / "events.jsonl"
        events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in story(now)))
        dep.start_worker()
        dep.wait_ready(1)
        dep.start_worker(command=[sys.executable, "-m", "tactful.cli", "send"])
        # the wall clock fires the cart's timer at once
        dep.cli("produce", str(events), env={"TACTFUL_PUBLIC_URL": ""})

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not smtp.inbox.mails:
            time.sleep(0.2)
        assert smtp.inbox.mails, dep.logs()[-3000:]

        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        deadline = time.monotonic() + 60
        timelines: dict[str, bytes] = {}
        while time.monotonic() < deadline:
            timelines = {c: dep.get(0, f"/customers/{c}/decisions", auth)[1]
                         for c in ("cust-ana", "cust-bo")}
            if b"delivered" in timelines["cust-ana"] and b"bounced" in timelines["cust-bo"]:
                break
            time.sleep(0.5)
        # The worker holds the bounced address back (policy [feedback] bounce_suppress): a
        # stock alert for Bo's carted lamp, whose only consented channel is email, is
        # suppressed as `bounced`, and no second mail reaches the inbox.
        stock = tmp_path / "stock.jsonl"
        stock.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in (
            {"event_id": "d9-1", "type": "stock_level", "ts": iso(time.time()),
             "sku": "sku-lamp-1", "available": 10},
            {"event_id": "d9-2", "type": "stock_level", "ts": iso(time.time() + 1),
             "sku": "sku-lamp-1", "available": 2},
        )))
        dep.cli("produce", str(stock), env={"TACTFUL_PUBLIC_URL": ""})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            timelines["cust-bo"] = dep.get(0, "/customers/cust-bo/decisions", auth)[1]
            if b"low_stock" in timelines["cust-bo"]:
                break
            time.sleep(0.5)
        time.sleep(2)  # time for a mail that should not come
        metrics = dep.get(0, "/metrics")[1].decode()

        # The mail's List-Unsubscribe URL, POSTed as a mailbox provider does (RFC 8058).
        mail = smtp.inbox.mails[0].message
        found = re.fullmatch(r"<(http://127\.0\.0\.1:(\d+)/tactful/u/[A-Za-z0-9_-]+)>",
                             str(mail["List-Unsubscribe"]))
        assert found and int(found.group(2)) == dep.public_ports[0], mail["List-Unsubscribe"]
        request = urllib.request.Request(
            found.group(1), data=b"List-Unsubscribe=One-Click", method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
        revoked = [orjson.loads(v) for _, v in dep.read("consent", quiet_seconds=1.0)
                   if b"one_click_unsubscribe" in v]

    assert [m.recipients for m in smtp.inbox.mails] == [["ana@example.org"]]
    mail = smtp.inbox.mails[0].message
    assert mail["Subject"] == "You left something in your cart"
    assert [(e["type"], e["customer_id"], e["channel"]) for e in revoked] == [
        ("consent_revoked", "cust-ana", "email")]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.fullmatch(r"<int-[0-9a-f]{20}@shop\.example>", str(mail["Message-ID"]))
    text = mail.get_body(("plain",))
    assert text is not None and "- 1 x sku-lamp-0 at 120.00" in text.get_content()
    # the worker took the sender's feedback in: validated and counted, in the timelines
    assert re.search(r'^tactful_events_consumed_total\{topic="feedback",type="delivered"\} '
                     r"1\.0$", metrics, re.M), metrics
    assert re.search(r'^tactful_events_consumed_total\{topic="feedback",type="bounced"\} '
                     r"1\.0$", metrics, re.M), metrics
    assert b"delivered" in timelines["cust-ana"], timelines
    assert b"bounced" in timelines["cust-bo"], timelines
    bo = orjson.loads(timelines["cust-bo"])
    low = [d for d in bo["decisions"] if d["kind"] == "low_stock"]
    assert [(d["outcome"], d.get("reason")) for d in low] == [("suppressed", "bounced")], bo
    assert "email" in bo["bounced"], bo
    assert len(smtp.inbox.mails) == 1  # still only Ana's
    assert dep.read("deadletter", quiet_seconds=1.0) == []
