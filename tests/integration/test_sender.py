"""``tactful send`` on the real Kafka, delivering to an SMTP server on loopback: each
intent once, inside its window, a cancelled or stale one never, feedback for every
attempt, and no intent twice when the sender is killed and started again mid-run."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from tactful.adapters.codec import decode_event
from tactful.adapters.topics import TopicSpec, ensure_topics
from tactful.core.outputs import iso
from tactful.core.sending import parse_time
from tests.integration.harness import deployment
from tests.integration.smtp_inbox import SmtpServer, free_port

SENDER = [sys.executable, "-m", "tactful.cli", "send"]


def intent(n: str, customer: str, send_after: float, send_before: float,
           channel: str = "email", kind: str = "abandoned_cart") -> dict[str, object]:
    return {
        "intent_id": f"int-{n}", "customer_id": customer, "channel": channel, "kind": kind,
        "items": [{"sku": f"sku-{n}", "qty": 1, "price": 10.0}],
        "created_at": iso(send_after), "send_after": iso(send_after),
        "send_before": iso(send_before), "topic": "cart_reminders",
        "reasons": ["abandoned_cart", "consent", "a_code_of_a_later_version"],
        "consent": {"channel": channel, "granted_at": "2026-01-01T00:00:00Z",
                    "source": "signup"},
        "policy_version": "test+0",
        "links": {"unsubscribe": f"https://shop.example/u/tok-{n}",
                  "preferences": f"https://shop.example/p/tok-{n}"},
    }


async def produce(bootstrap: str, topic: str, records: list[dict[str, object]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for r in records:
            await producer.send(topic, orjson.dumps(r), key=str(r["customer_id"]).encode())
        await producer.flush()
    finally:
        await producer.stop()


def wait_for(condition: object, timeout: float, what: str, logs: object) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout}s: {logs()[-3000:]}")  # type: ignore[operator]


def test_each_intent_is_mailed_once_in_its_window_with_feedback_across_a_kill(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    customers = [f"cust-{i}" for i in range(16)]
    directory = tmp_path / "directory.jsonl"
    directory.write_bytes(b"".join(
        orjson.dumps({"customer_id": c, "email": f"{c}@example.org"}) + b"\n"
        for c in [*customers, "cust-late", "cust-cancel", "cust-stale", "cust-gone"]))
    outbox = tmp_path / "outbox.jsonl"
    metrics_port = free_port()
    with SmtpServer() as smtp, deployment(kafka_bootstrap, tmp_path, partitions=2) as dep:
        smtp.inbox.data_delay = 0.15  # a slow server, so that the kill lands mid-run
        smtp.inbox.refuse["cust-gone@example.org"] = "550 5.1.1 no such user"
        dep.extra_env.update({
            "TACTFUL_SMTP_HOST": "127.0.0.1", "TACTFUL_SMTP_PORT": str(smtp.port),
            "TACTFUL_SMTP_TLS": "none", "TACTFUL_SMTP_FROM": "Shop <news@shop.example>",
            "TACTFUL_SENDER_DIRECTORY": str(directory), "TACTFUL_SENDER_OUTBOX": str(outbox),
            "TACTFUL_SESSION_TIMEOUT": "6", "TACTFUL_LOG_LEVEL": "info",
            "TACTFUL_SENDER_METRICS_PORT": str(metrics_port),
        })
        now = time.time()
        later = now + 5.0
        now_records = [intent(f"now{i:02d}", c, now - 1, now + 600)
                       for i, c in enumerate(customers)]
        records = [
            *now_records,
            now_records[3],  # a repeat (at least once upstream): mailed once
            intent("late", "cust-late", later, now + 600),
            intent("cancel", "cust-cancel", later, now + 600),
            {"intent_id": "int-cancel", "cancelled": True, "reason": "converted",
             "customer_id": "cust-cancel", "channel": "email", "at": iso(now)},
            intent("stale", "cust-stale", now - 7200, now - 60),
            intent("gone", "cust-gone", now - 1, now + 600),
            intent("sms", "cust-0", now - 1, now + 600, channel="sms", kind="low_stock"),
        ]
        # as a worker would have made it, with two partitions
        asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(dep.topic("intents"), 2)]))
        sender = dep.start_worker(command=SENDER)
        asyncio.run(produce(kafka_bootstrap, dep.topic("intents"), records))
        wait_for(lambda: len(smtp.inbox.mails) >= 5, 60, "first mails", dep.logs)
        dep.stop(sender, signal.SIGKILL)
        killed_at = len(smtp.inbox.mails)
        assert killed_at < len(customers), "the kill came after the run"
        dep.start_worker(command=SENDER)

        expected = {f"<int-now{i:02d}@shop.example>" for i in range(len(customers))}
        expected.add("<int-late@shop.example>")
        wait_for(lambda: len(set(smtp.inbox.by_message_id()) & expected) >= len(expected) - 1
                 and "<int-late@shop.example>" in smtp.inbox.by_message_id(),
                 60, "every mail", dep.logs)
        time.sleep(1.0)  # nothing more comes
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as r:
            metrics = r.read().decode()
        feedback = [decode_event(v) for _, v in dep.read("feedback", quiet_seconds=1.0)]

    logs = dep.logs()  # the sender was stopped (SIGTERM): its last line is written
    assert "sender progress" in logs
    # the restarted sender's counts (what the killed one did is counted as repeats)
    assert re.search(r'^tactful_sender_intents_total\{channel="email",outcome="delivered"\} '
                     r"[1-9]\d*\.0$", metrics, re.M)
    assert re.search(r'^tactful_sender_intents_total\{channel="email",outcome="repeat"\} '
                     r"[1-9]\d*\.0$", metrics, re.M)
    assert "\ntactful_sender_waiting 0.0\n" in metrics
    assert not re.search(r"cust-|int-|sku-|example\.org|tok-", metrics)
    assert not re.search(r"cust-|int-|sku-|example\.org|tok-", logs), "an id in the logs"

    mails = smtp.inbox.by_message_id()
    assert all(len(copies) == 1 for copies in mails.values()), "an intent mailed twice"
    # at most one (the one under way when the sender was killed) may be missing
    assert set(mails) <= expected
    assert len(expected - set(mails)) <= 1
    late = mails["<int-late@shop.example>"][0]
    assert late.at >= later
    mail = mails["<int-now03@shop.example>"][0]
    assert mail.recipients == ["cust-3@example.org"]
    assert mail.message["List-Unsubscribe"] == "<https://shop.example/u/tok-now03>"
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.message["Subject"] == "You left something in your cart"

    by_type: dict[str, set[str]] = {}
    for event in feedback:
        by_type.setdefault(type(event).__name__, set()).add(event.intent_id)  # type: ignore[attr-defined]
        assert abs(parse_time(event.ts.isoformat()) - time.time()) < 120
    delivered = by_type.get("Delivered", set())
    mailed_ids = {m[1:].split("@")[0] for m in mails}
    # feedback for every mail but, at most, the one under way at the kill
    assert len(mailed_ids - delivered) <= 1
    assert "int-sms" in delivered
    assert by_type.get("Bounced") == {"int-gone"}
    assert not {"int-cancel", "int-stale"} & (delivered | by_type.get("Bounced", set()))
    assert len({e.event_id for e in feedback}) == len({(type(e), e.intent_id) for e in feedback})  # type: ignore[attr-defined]
    lines = [orjson.loads(line) for line in outbox.read_bytes().splitlines()]
    assert [(x["channel"], x["intent_id"], x["text"]) for x in lines] == [
        ("sms", "int-sms", "Only a few left of: 1 x sku-sms at 10.00")]
