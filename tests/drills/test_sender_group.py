"""Two ``tactful send`` instances in one group: a second one joins mid-run (the first
gives partitions up while it delivers), then the first is killed (the second takes its
partitions over and reads their state). No intent is mailed twice; at most the one
under way at the kill is lost. Too long for ``make test``: ``make drills`` runs it."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import orjson

from tactful.adapters.topics import TopicSpec, ensure_topics
from tests.integration.harness import deployment
from tests.integration.smtp_inbox import SmtpServer
from tests.integration.test_sender import intent, produce, wait_for

SENDER = [sys.executable, "-m", "tactful.cli", "send"]


def test_a_sender_joining_then_one_killed_mails_each_intent_at_most_once(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    n = 60
    directory = tmp_path / "directory.jsonl"
    directory.write_bytes(b"".join(
        orjson.dumps({"customer_id": f"cust-{i}", "email": f"c{i}@example.org"}) + b"\n"
        for i in range(n)))
    with SmtpServer() as smtp, deployment(kafka_bootstrap, tmp_path, partitions=4) as dep:
        smtp.inbox.data_delay = 0.1
        dep.extra_env.update({
            "TACTFUL_SMTP_HOST": "127.0.0.1", "TACTFUL_SMTP_PORT": str(smtp.port),
            "TACTFUL_SMTP_TLS": "none", "TACTFUL_SMTP_FROM": "news@shop.example",
            "TACTFUL_SENDER_DIRECTORY": str(directory),
            "TACTFUL_SENDER_OUTBOX": str(tmp_path / "outbox.jsonl"),
            "TACTFUL_SESSION_TIMEOUT": "6", "TACTFUL_LOG_LEVEL": "info",
        })
        asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(dep.topic("intents"), 4)]))
        now = time.time()
        first = dep.start_worker(command=SENDER)
        asyncio.run(produce(kafka_bootstrap, dep.topic("intents"), [
            intent(f"g{i:03d}", f"cust-{i}", now - 1, now + 600) for i in range(n)]))
        wait_for(lambda: len(smtp.inbox.mails) >= 5, 60, "first mails", dep.logs)
        dep.start_worker(command=SENDER)  # a rebalance while the first one delivers
        wait_for(lambda: len(smtp.inbox.mails) >= 25, 60, "more mails", dep.logs)
        dep.stop(first, signal.SIGKILL)
        assert len(smtp.inbox.mails) < n, "the kill came after the run"
        wait_for(lambda: len(smtp.inbox.mails) >= n - 1, 90, "every mail", dep.logs)
        time.sleep(3.0)  # nothing more comes
        feedback = [orjson.loads(v) for _, v in dep.read("feedback", quiet_seconds=1.0)]

    mails = smtp.inbox.by_message_id()
    assert all(len(copies) == 1 for copies in mails.values()), "an intent mailed twice"
    assert len(mails) >= n - 1
    delivered = {f["intent_id"] for f in feedback if f["type"] == "delivered"}
    assert len({m[1:].split("@")[0] for m in mails} - delivered) <= 1
