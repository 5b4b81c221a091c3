"""``make demo``: a real worker on the local Kafka, a short story, the outcome as a table.

The story (``tactful/demo/story.jsonl``): a verified shopper abandons a cart
(email at 4 h); a wife's cart seen only through an IP match to her husband's
account (no contact, ever); two Berlin carts going idle at 3 a.m. (SMS deferred
to 08:00, one cancelled by a purchase); a shopper who says "stop" before a
deferred SMS goes out; a purchase whose week-later follow-up has no email consent.

Then the part that happens today: two shoppers whose carts went idle a few hours ago
(stamped from the wall clock, so that their reminders are still inside their window).
``tactful send`` mails every intent it may to an SMTP inbox on loopback (aiosmtpd, in
this process), with an address directory for the story's customers; one address is
refused (5xx), so the worker is told ``bounced``. The demo ends by printing each
delivered mail's subject and first lines.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import uuid
from email.message import EmailMessage
from importlib import resources
from pathlib import Path
from tempfile import TemporaryDirectory

import orjson
from aiokafka import AIOKafkaConsumer

from tactful.adapters.producer import produce_file
from tactful.adapters.topics import TopicSpec, ensure_topics
from tactful.service.settings import from_env

UNTIL = "2026-06-30T00:00:00Z"
# Where the story's customers are mailed (the directory ``tactful send`` reads).
ADDRESSES = {
    "cust-ana": "ana@example.org", "cust-husband": "husband@example.org",
    "cust-noor": "noor@example.org", "cust-omar": "omar@example.invalid",
}
REFUSED = {"omar@example.invalid": "550 5.1.1 no such mailbox"}
MAIL_WAIT = 60.0  # seconds the demo waits for today's mails


def main() -> int:
    if not os.environ.get("TACTFUL_BOOTSTRAP"):
        print("tactful demo: set TACTFUL_BOOTSTRAP (make demo starts a local Kafka)",
              file=sys.stderr)
        return 2
    # A fresh broker answers the first offset fetches with NotLeaderForPartition; aiokafka
    # retries them and logs each: the demo reports its own outcome.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    run = uuid.uuid4().hex[:6]
    env = dict(os.environ)
    env.update({
        "TACTFUL_TOPIC_PREFIX": f"demo{run}.",
        "TACTFUL_APP_ID": f"tactful-demo-{run}",
        "TACTFUL_TICK_SECONDS": "0.3",
        "TACTFUL_LOG_LEVEL": "warning",
        "TACTFUL_WEB_PORT": env.get("TACTFUL_WEB_PORT", "6067"),
    })
    try:
        from tactful.service.demo_inbox import Inbox
    except ImportError:
        print("tactful demo: the SMTP inbox needs aiosmtpd (pip install -e '.[dev]')",
              file=sys.stderr)
        return 2
    settings = from_env(env)
    story = resources.files("tactful") / "demo" / "story.jsonl"
    now = time.time()
    with TemporaryDirectory() as tmp, resources.as_file(story) as story_path, \
            Inbox(REFUSED) as inbox:
        tmp_path = Path(tmp)
        env["TACTFUL_DATA_DIR"] = str(tmp_path / "data")
        events = tmp_path / "story.jsonl"
        events.write_bytes(story_path.read_bytes()
                           + b"".join(orjson.dumps(e) + b"\n" for e in today(now)))
        directory = tmp_path / "directory.jsonl"
        directory.write_bytes(b"".join(
            orjson.dumps({"customer_id": c, "email": a}) + b"\n" for c, a in ADDRESSES.items()))
        sender_env = {
            **env, "TACTFUL_SMTP_HOST": "127.0.0.1", "TACTFUL_SMTP_PORT": str(inbox.port),
            "TACTFUL_SMTP_TLS": "none", "TACTFUL_SMTP_FROM": "Shop <news@shop.example>",
            "TACTFUL_SENDER_DIRECTORY": str(directory),
            "TACTFUL_SENDER_OUTBOX": str(tmp_path / "outbox.jsonl"),
        }
        print("demo: starting the worker (stream clock) and tactful send ...", file=sys.stderr)
        with open(tmp_path / "worker.log", "wb") as log, \
                open(tmp_path / "sender.log", "wb") as sender_log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "tactful.cli", "worker", "--clock", "stream"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
            sender = subprocess.Popen(
                [sys.executable, "-m", "tactful.cli", "send"],
                env=sender_env, stdout=sender_log, stderr=subprocess.STDOUT,
            )
            try:
                print(f"demo: producing {story_path.name} and today's carts ...",
                      file=sys.stderr)
                # The stream clock then reaches the story's end, and today (the reminders
                # of today's carts are due an hour ago).
                until = max(datetime_ts(UNTIL), now)
                asyncio.run(produce_file(str(events), settings.kafka, settings.topics,
                                         until))
                intents, decisions = asyncio.run(_collect(settings.bootstrap, env))
                print("demo: waiting for tactful send to mail today's reminders ...",
                      file=sys.stderr)
                mails = inbox.wait(len(TODAY), MAIL_WAIT)
            finally:
                for proc in (sender, worker):
                    proc.terminate()
                for proc in (sender, worker):
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            refused = inbox.refused()
    print(render(intents, decisions))
    print(render_mail(mails, refused))
    return 0 if intents and mails else 1


# Today's shoppers: (customer, [(sku, qty, price)]); cust-omar's address is refused.
TODAY = {
    "cust-noor": [("sku-kettle", 1, 45.0), ("sku-mug", 2, 9.5)],
    "cust-omar": [("sku-tent", 1, 120.0)],
}


def today(now: float) -> list[dict[str, object]]:
    """Carts left 5 hours before ``now`` by shoppers with email consent: their 4 h
    reminders are due an hour ago, still well inside their 24 h window."""
    from tactful.core.outputs import iso

    events: list[dict[str, object]] = []
    start = now - 5 * 3600
    for n, (customer, lines) in enumerate(TODAY.items()):
        who = {"session_id": f"sess-{customer}-today", "customer_id": customer,
               "identity": {"method": "login"}}
        events += [
            {"event_id": f"td{n}-1", "type": "consent_granted", "ts": iso(start),
             "customer_id": customer, "channel": "email", "source": "account_signup"},
            {"event_id": f"td{n}-2", "type": "login", "ts": iso(start + 60), **who},
        ]
        for k, (sku, qty, price) in enumerate(lines):
            events.append({
                "event_id": f"td{n}-{3 + k}", "type": "cart_add", "ts": iso(start + 120 + k),
                **who, "sku": sku, "product_id": f"prod-{sku[4:]}", "category": ["home"],
                "price": price, "currency": "USD", "qty": qty,
            })
    return events


def render_mail(mails: list[tuple[str, EmailMessage]], refused: list[str],
                first_lines: int = 4) -> str:
    """Each delivered mail: recipient, subject and the first lines of its text part."""
    lines = ["Mail delivered by tactful send (an SMTP inbox on loopback):", ""]
    for recipient, message in mails:
        lines.append(f"  To: {recipient}")
        lines.append(f"  Subject: {message['Subject']}")
        body = message.get_body(("plain",))
        text = body.get_content() if isinstance(body, EmailMessage) else ""
        lines += [f"  | {line}".rstrip() for line in text.splitlines()[:first_lines]]
        lines.append("")
    if not mails:
        lines += ["  none arrived", ""]
    for recipient in refused:
        lines.append(f"  {recipient}: refused by the server (5xx): the worker was told "
                     f"`bounced`")
    return "\n".join(lines) + "\n"


def datetime_ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def _collect(bootstrap: str, env: dict[str, str]) -> tuple[list[dict[str, object]],
                                                               list[dict[str, object]]]:
    prefix = env["TACTFUL_TOPIC_PREFIX"]
    settings = from_env(env)
    # The worker creates them too; created here first, the reader does not start on
    # topics that do not exist yet.
    await ensure_topics(bootstrap, [
        TopicSpec(f"{prefix}{name}", settings.partitions, settings.replication)
        for name in ("intents", "decisions")
    ])
    consumer = AIOKafkaConsumer(
        f"{prefix}intents", f"{prefix}decisions", bootstrap_servers=bootstrap,
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    intents: list[dict[str, object]] = []
    decisions: list[dict[str, object]] = []
    deadline = time.monotonic() + 120
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                target = intents if tp.topic.endswith("intents") else decisions
                target.extend(orjson.loads(r.value) for r in records)
                last = time.monotonic()
            if decisions and time.monotonic() - last > 5:
                break
    finally:
        await consumer.stop()
    return intents, decisions


def render(intents: list[dict[str, object]], decisions: list[dict[str, object]]) -> str:
    lines = ["", "Contact intents (what senders may deliver, and when):", ""]
    created = {i["intent_id"]: str(i["created_at"]) for i in intents if not i.get("cancelled")}
    intents = sorted(
        intents, key=lambda i: (created.get(str(i["intent_id"]), ""), bool(i.get("cancelled")))
    )
    head = (f"{'customer':<14}{'kind':<16}{'channel':<8}{'created (UTC)':<22}"
            f"{'send after (UTC)':<22}")
    lines.append(head)
    lines.append("-" * len(head))
    for i in intents:
        if i.get("cancelled"):
            lines.append(f"{'':<14}{'  ^ cancelled':<16}{i['channel']!s:<8}"
                         f"{i['at']!s:<22}reason: {i['reason']}")
            continue
        lines.append(f"{i['customer_id']!s:<14}{i['kind']!s:<16}{i['channel']!s:<8}"
                     f"{i['created_at']!s:<22}{i['send_after']!s:<22}")
    lines += ["", "Decisions that did not contact anyone (suppressed, cancelled, deferred):", ""]
    head = f"{'who':<24}{'kind':<16}{'outcome':<12}{'reason':<22}{'at (UTC)':<22}"
    lines.append(head)
    lines.append("-" * len(head))
    for d in sorted(decisions, key=lambda d: str(d["at"])):
        if d["outcome"] == "emitted":
            continue
        who = d["customer_id"] or f"session {d.get('session_id')}"
        lines.append(f"{who!s:<24}{d['kind']!s:<16}{d['outcome']!s:<12}"
                     f"{d['reason'] or '-'!s:<22}{d['at']!s:<22}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
