"""``tactful send`` delivery rate against an SMTP server on loopback.

    python bench/sender.py                   # 2,000 intents, writes BENCHMARKS.md
    python bench/sender.py --intents 500 --no-write

A backlog of email intents (due now) is written to a fresh ``intents`` topic first;
then the sender (in-process, the same ``Sender`` as ``tactful send``) starts and the
clock runs from its start until the last mail is in the inbox of an aiosmtpd server
on loopback that accepts everything. Each mail costs the sender three acknowledged
Kafka writes (the claim, the feedback, the outcome) and one SMTP transaction over the
reused connection. Uses ``TACTFUL_BOOTSTRAP`` when set, else starts the local broker.

The results replace the section between ``<!-- bench:sender -->`` and
``<!-- /bench:sender -->`` in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from replay import machine  # bench/replay.py: the same machine description

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.smtp_inbox import free_port  # noqa: E402

from tactful.adapters.directory import JsonLinesDirectory  # noqa: E402
from tactful.adapters.kafka import KafkaConnection, TopicLayout  # noqa: E402
from tactful.adapters.provider import OutboxProvider  # noqa: E402
from tactful.adapters.smtp import SmtpConfig, SmtpTransport  # noqa: E402
from tactful.adapters.topics import TopicSpec, ensure_topics  # noqa: E402
from tactful.core.outputs import iso  # noqa: E402
from tactful.service.sender import Sender, SenderConfig  # noqa: E402

BENCHMARKS = ROOT / "BENCHMARKS.md"
KAFKA = ROOT / "deploy" / "local-kafka" / "kafka.sh"
BEGIN, END = "<!-- bench:sender -->", "<!-- /bench:sender -->"
PORT = "39592"


def intent(n: int, now: float) -> dict[str, object]:
    return {
        "intent_id": f"int-bench{n:08d}", "customer_id": f"cust-{n % 500}", "channel": "email",
        "kind": "abandoned_cart", "items": [{"sku": "sku-1", "qty": 1, "price": 10.0}],
        "created_at": iso(now - 1), "send_after": iso(now - 1), "send_before": iso(now + 3600),
        "topic": "cart_reminders", "reasons": ["abandoned_cart"],
        "consent": {"channel": "email", "granted_at": "2026-01-01T00:00:00Z", "source": "s"},
        "policy_version": "bench",
        "links": {"unsubscribe": "https://shop.example/u/t",
                  "preferences": "https://shop.example/p/t"},
    }


async def run(bootstrap: str, n: int, partitions: int,
              tmp: Path) -> tuple[float, float, int]:
    prefix = f"b{uuid.uuid4().hex[:8]}."
    topics = TopicLayout(prefix, partitions, 1)
    await ensure_topics(bootstrap, [TopicSpec(topics.name("intents"), partitions)])
    now = time.time()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for i in range(n):
            r = intent(i, now)
            await producer.send(topics.name("intents"), orjson.dumps(r),
                                key=str(r["customer_id"]).encode())
        await producer.flush()
    finally:
        await producer.stop()
    directory = tmp / "directory.jsonl"
    directory.write_bytes(b"".join(
        orjson.dumps({"customer_id": f"cust-{c}", "email": f"c{c}@example.org"}) + b"\n"
        for c in range(500)))
    port = free_port()
    # The SMTP server in a process of its own, as a real one is: it accepts and discards.
    server = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l",
                               f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"])
    try:
        await asyncio.sleep(1.0)
        sender = Sender(
            KafkaConnection(bootstrap), topics,
            SenderConfig(f"bench-{uuid.uuid4().hex[:8]}", "news@shop.example"),
            JsonLinesDirectory(str(directory)),
            SmtpTransport(SmtpConfig("127.0.0.1", port, "none")),
            OutboxProvider(str(tmp / "outbox.jsonl")))
        stop = asyncio.Event()
        start = time.monotonic()
        first = None
        task = asyncio.create_task(sender.run(stop))
        while (delivered := sender.counts["email", "delivered"]) < n:
            if task.done():
                task.result()
            if first is None and delivered:
                first = time.monotonic()
            await asyncio.sleep(0.01)
        end = time.monotonic()
        stop.set()
        await task
    finally:
        server.terminate()
        server.wait()
    assert first is not None
    return end - start, end - first, sender.counts["email", "delivered"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--intents", type=int, default=2_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    own_kafka = "TACTFUL_BOOTSTRAP" not in os.environ
    if own_kafka:
        out = subprocess.run(["bash", str(KAFKA), "start"], check=True, capture_output=True,
                             text=True, env={**os.environ, "KAFKA_PORT": PORT})
        bootstrap = out.stdout.strip().splitlines()[-1]
    else:
        bootstrap = os.environ["TACTFUL_BOOTSTRAP"]
    try:
        with tempfile.TemporaryDirectory(prefix="tactful-bench-sender-") as tmp:
            total, steady, mails = asyncio.run(
                run(bootstrap, args.intents, args.partitions, Path(tmp)))
    finally:
        if own_kafka:
            subprocess.run(["bash", str(KAFKA), "stop"], check=False, capture_output=True,
                           env={**os.environ, "KAFKA_PORT": PORT})
    host = machine()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False,
                            capture_output=True, text=True, cwd=ROOT).stdout.strip()
    section = f"""{BEGIN}
## `tactful send` delivery rate (local SMTP)

- **Date**: {stamp}
- **Command**: `python bench/sender.py --intents {args.intents}`
- **Set-up**: a backlog of {args.intents:,} email intents due now on {args.partitions} partitions;
  one sender (in-process, as `tactful send` runs it), an aiosmtpd server on loopback in a
  process of its own that accepts every mail, single-node local Kafka (KRaft), all on the
  same machine; tactful at `{commit}`
- **Machine**: {host['cpu']}, {host['cores']}, {host['memory']}; {host['os']}; {host['python']}

| measured | mails | seconds | mails/s |
|---|---:|---:|---:|
| sender start (group join, state read) → last mail accepted | {mails:,} | {total:.1f} \
| {mails / total:,.0f} |
| first mail accepted → last | {mails - 1:,} | {steady:.1f} \
| **{(mails - 1) / steady:,.0f}** |

One mail at a time: each waits for its claim to be acknowledged by the broker
(`acks=all`), for the SMTP server's answer, then for its feedback and outcome (written
side by side). The two cores are shared by the broker, the SMTP server and the sender;
rendering the mail with the standard library's `email` package is the largest part of
the sender's own CPU per mail. A remote SMTP server's round trips add to each mail.
{END}"""
    print(section)
    if not args.no_write:
        text = BENCHMARKS.read_text()
        if BEGIN in text:
            text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        BENCHMARKS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
