"""Hostile records at the worker on a real broker: each lands in the dead-letter topic with
its reason, the worker stays up, and the good input after them gives replay's intents."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from tactful.service.metrics import dead_letter_code
from tests.integration.harness import deployment, replay

ROOT = Path(__file__).resolve().parents[2]
STORY = ROOT / "tests" / "scenarios" / "verified_abandoned_cart" / "events.jsonl"
UNTIL = "2026-05-10T00:00:00Z"
STOCK = b'{"event_id": "h-%d", "type": "stock_level", "ts": "2026-05-01T00:00:00Z", ' \
        b'"sku": "k", "available": %s}'
HOSTILE: list[tuple[str, bytes, list[tuple[str, bytes]], str]] = [
    ("storefront", b"[" * 100_000 + b"]" * 100_000, [], "nested deeper than 8 levels"),
    ("storefront", STOCK % (1, b"1"), [("tactful-seq", b"\xff\xfe")], "header tactful-seq"),
    ("storefront", b"", [("tactful-clock", b"not a time")], "header tactful-clock"),
    ("inventory", STOCK % (2, b"1" + b"0" * 400), [], "$.available"),
    ("feedback", b"", [("tactful-clock", b"2030-01-01T00:00:00Z")], "future_timestamp"),
    ("consent", b'{"event_id": "h-3", "type": "consent_granted", "ts": "2030-01-01T00:00:00Z",'
                b' "customer_id": "cust-ana", "channel": "email", "source": "x"}', [],
     "future_timestamp"),
    # Another topic's types (found by the atheris fuzzer: the worker stopped on them).
    ("storefront", STOCK % (4, b"1"), [],
     "unknown type for topic storefront: stock_level belongs on topic inventory"),
    ("consent", b'{"event_id": "h-5", "type": "page_view", "ts": "2026-05-01T00:00:00Z",'
                b' "session_id": "sess-h"}', [],
     "unknown type for topic consent: page_view belongs on topic storefront"),
]


async def _send(bootstrap: str, records: list[tuple[str, bytes, list[tuple[str, bytes]]]]
                ) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2**21)
    await producer.start()
    try:
        for topic, value, headers in records:
            await producer.send_and_wait(topic, value, key=b"k", headers=headers)
    finally:
        await producer.stop()


def test_hostile_records_are_dead_lettered_and_the_worker_goes_on(kafka_bootstrap: str,
                                                                  tmp_path: Path) -> None:
    with deployment(kafka_bootstrap, tmp_path) as dep:
        worker = dep.start_worker()
        dep.wait_ready(1)
        asyncio.run(_send(kafka_bootstrap, [(dep.topic(t), v, h) for t, v, h, _ in HOSTILE]))
        dep.cli("produce", str(STORY), "--until", UNTIL)
        expected = replay(dep, STORY, UNTIL)
        intents, _ = dep.outputs(at_least=len(expected))
        assert expected and intents == expected, dep.logs()[-3000:]
        letters = [orjson.loads(v) for _, v in dep.read("deadletter", at_least=len(HOSTILE),
                                                          quiet_seconds=2)]
        for topic, _, _, reason in HOSTILE:
            assert any(d["topic"] == dep.topic(topic) and reason in d["reason"]
                       for d in letters), (reason, letters)
        assert worker.poll() is None, dep.logs()[-3000:]
        rows = [orjson.loads(line) for line in STORY.read_bytes().splitlines() if line]
        ids = {str(r[f]) for r in rows for f in ("customer_id", "session_id", "sku") if f in r}
        logs = dep.logs()
        assert ids and not [i for i in ids if i in logs], "an id reached the logs"
        # Each dead letter is counted once, under its reason's code, and no label of
        # the exposition quotes the hostile input or an id of the story.
        metrics = dep.metrics()
        counted: Counter[str] = Counter()
        for family in text_string_to_metric_families(metrics):
            for sample in family.samples:
                if sample.name == "tactful_dead_letters_total":
                    counted[sample.labels["reason"]] += int(sample.value)
        assert counted == Counter(dead_letter_code(d["reason"]) for d in letters)
        assert not [i for i in ids if i in metrics], "an id reached the metrics"
