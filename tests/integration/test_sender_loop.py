"""The sender's loop in-process on the real Kafka with a clock the test moves: waiting
intents hold the commit back and the bound on waiting intents pauses reading; a 4xx is
retried with backoff; a cancellation read before its intent prevents it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tactful.adapters.directory import JsonLinesDirectory
from tactful.adapters.kafka import KafkaConnection, TopicLayout
from tactful.adapters.provider import OutboxProvider
from tactful.adapters.smtp import SmtpConfig, SmtpTransport
from tactful.adapters.topics import TopicSpec, ensure_topics
from tactful.core.outputs import iso
from tactful.core.sending import RetryPolicy
from tactful.service.sender import Sender, SenderConfig, SenderMetrics
from tests.integration.smtp_inbox import SmtpServer
from tests.integration.test_sender import intent

T = 1_900_000_000.0  # the test's clock; intents' windows are set from it


class Clock:
    def __init__(self) -> None:
        self.now = T

    def __call__(self) -> float:
        return self.now


async def eventually(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running(bootstrap: str, tmp: Path, smtp: SmtpServer, clock: Clock,
                  max_waiting: int = 100,
                  before: list[dict[str, object]] | None = None,
                  names: tuple[str, str] | None = None) -> AsyncIterator[Sender]:
    """A sender on fresh topics, or on the topic prefix and app id of ``names``."""
    prefix, app_id = names or (f"s{uuid.uuid4().hex[:8]}.", f"app-{uuid.uuid4().hex[:8]}")
    directory = tmp / "directory.jsonl"
    directory.write_bytes(b"".join(
        orjson.dumps({"customer_id": f"cust-{n}", "email": f"cust-{n}@example.org"}) + b"\n"
        for n in range(10)))
    topics = TopicLayout(prefix, 1, 1)
    await ensure_topics(bootstrap, [TopicSpec(topics.name("intents"), 1)])
    await produce(bootstrap, topics.name("intents"), before or [])  # a backlog
    sender = Sender(
        KafkaConnection(bootstrap), topics,
        SenderConfig(app_id, "news@shop.example", max_waiting,
                     RetryPolicy(base=5.0, attempts=5), session_timeout=6.0),
        JsonLinesDirectory(str(directory)),
        SmtpTransport(SmtpConfig("127.0.0.1", smtp.port, "none", timeout=5.0)),
        OutboxProvider(str(tmp / "outbox.jsonl")), clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        yield sender
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def produce(bootstrap: str, topic: str, records: list[dict[str, object]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for r in records:
            await producer.send_and_wait(topic, orjson.dumps(r),
                                         key=str(r["customer_id"]).encode())
    finally:
        await producer.stop()


async def committed(bootstrap: str, sender: Sender) -> int | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(f"{sender.config.app_id}-sender")
    finally:
        await admin.close()
    for tp, meta in offsets.items():
        if tp.topic == sender.intents_topic:
            return int(meta.offset)
    return None


def subjects(smtp: SmtpServer) -> list[str]:
    return [str(m.message["Message-ID"]).split("@")[0][1:] for m in smtp.inbox.mails]


async def test_waiting_intents_hold_the_commit_and_their_bound_pauses_reading(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    clock = Clock()
    with SmtpServer() as smtp:
        async with running(kafka_bootstrap, tmp_path, smtp, clock, max_waiting=2) as sender:
            await produce(kafka_bootstrap, sender.intents_topic, [
                intent("w1", "cust-1", T + 100, T + 1000),  # offset 0: waits
                intent("w2", "cust-2", T + 100, T + 1000),  # 1: waits, the bound is reached
                intent("n1", "cust-3", T - 1, T + 1000),    # 2: not read while two wait
                intent("w3", "cust-4", T + 200, T + 1000),  # 3
                intent("n2", "cust-5", T - 1, T + 1000),    # 4
                intent("old", "cust-6", T - 900, T - 1),    # 5: stale
            ])
            await eventually(lambda: len(sender.pending) == 2 and sender.paused)
            await asyncio.sleep(1.0)
            assert smtp.inbox.mails == []
            assert sorted(sender.pending) == ["int-w1", "int-w2"]
            assert await committed(kafka_bootstrap, sender) in (None, 0)

            clock.now = T + 100
            await eventually(lambda: len(smtp.inbox.mails) == 4
                             and set(sender.pending) == {"int-w3"})
            assert subjects(smtp) == ["int-w1", "int-w2", "int-n1", "int-n2"]
            await eventually(lambda: sender.counts["email", "stale"] == 1)
            # w3 (offset 3) waits: the commit stops at it
            assert await committed(kafka_bootstrap, sender) == 3

            metrics = SenderMetrics(sender)
            clock.now = T + 200.7
            await eventually(lambda: len(smtp.inbox.mails) == 5 and not sender.pending)
            await asyncio.sleep(0.5)
            assert await committed(kafka_bootstrap, sender) == 6

    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert 'tactful_sender_intents_total{channel="email",outcome="delivered"} 5.0' in lines
    assert 'tactful_sender_intents_total{channel="email",outcome="stale"} 1.0' in lines
    assert "tactful_sender_waiting 0.0" in lines
    # w3 (send_after T+200) went out when the clock read T+200.7: one observation
    assert 'tactful_sender_lateness_seconds_bucket{channel="email",le="0.5"} 0.0' in lines
    assert 'tactful_sender_lateness_seconds_bucket{channel="email",le="1.0"} 1.0' in lines
    assert 'tactful_sender_lateness_seconds_count{channel="email"} 1.0' in lines
    assert not any(marker in text for marker in ("int-", "cust-", "sku-", "example.org"))


async def test_a_4xx_is_retried_with_backoff_and_a_cancellation_ahead_of_its_intent_wins(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    clock = Clock()
    backlog = [  # due when read, but cancelled further on in the backlog
        intent("b", "cust-3", T - 1, T + 1000),
        *[intent(f"x{n}", "cust-9", T - 900, T - 1) for n in range(600)],  # stale; > a fetch
        {"intent_id": "int-b", "cancelled": True, "reason": "cart_emptied",
         "customer_id": "cust-3", "channel": "email", "at": iso(T - 1)},
    ]
    with SmtpServer() as smtp:
        smtp.inbox.later_times["cust-1@example.org"] = 2
        async with running(kafka_bootstrap, tmp_path, smtp, clock, before=backlog) as sender:
            await produce(kafka_bootstrap, sender.intents_topic, [
                {"intent_id": "int-c", "cancelled": True, "reason": "converted",
                 "customer_id": "cust-2", "channel": "email", "at": iso(T)},
                intent("c", "cust-2", T - 1, T + 1000),
                intent("r", "cust-1", T - 1, T + 1000),
            ])
            await eventually(lambda: sender.counts["email", "temporary_retry"] == 1)
            assert sender.pending["int-r"].due == T + 5  # the first backoff
            clock.now = T + 5
            await eventually(lambda: sender.counts["email", "temporary_retry"] == 2)
            assert sender.pending["int-r"].due == T + 15  # doubled
            clock.now = T + 15
            await eventually(lambda: sender.counts["email", "delivered"] == 1)
            assert subjects(smtp) == ["int-r"]
            assert sender.counts["email", "cancelled_ahead"] == 1
            assert sender.counts["email", "cancelled"] == 2  # int-b and int-c
            assert sender.counts["email", "stale"] == 600
            assert sender.held["int-b"].state == "cancelled"
            assert sender.held["int-r"].state == "delivered"
            assert sender.held["int-c"].state == "cancelled"


async def test_the_state_outlives_a_restart_and_is_removed_a_day_after_send_before(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    from aiokafka import AIOKafkaConsumer

    clock = Clock()
    with SmtpServer() as smtp:
        async with running(kafka_bootstrap, tmp_path, smtp, clock) as sender:
            await produce(kafka_bootstrap, sender.intents_topic, [
                intent("short", "cust-1", T - 1, T + 10),
                intent("long", "cust-2", T - 1, T + 200_000)])
            await eventually(lambda: sender.counts["email", "delivered"] == 2)
            names = (sender.topics.prefix, sender.config.app_id)
            state_topic = sender.state_topic
            # A day and a bit after the first one's send_before it is forgotten (a
            # repeat of it would be stale anyway), the other is still held.
            clock.now = T + 10 + 86_400 + 1
            async with sender.lock:
                await sender.prune()
            assert set(sender.held) == {"int-long"}
        # and so after a restart, from the topic
        async with running(kafka_bootstrap, tmp_path, smtp, clock, names=names) as again:
            await eventually(lambda: "int-long" in again.held)
            assert again.held["int-long"].state == "delivered"
            assert "int-short" not in again.held
    assert len(smtp.inbox.mails) == 2

    from aiokafka.structs import TopicPartition

    reader = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await reader.start()
    records = []
    try:
        tp = TopicPartition(state_topic, 0)
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        end = (await reader.end_offsets([tp]))[tp]
        while await reader.position(tp) < end:
            batch = await reader.getmany(tp, timeout_ms=1000)
            records += [(r.key, r.value) for rs in batch.values() for r in rs]
    finally:
        await reader.stop()
    last = {key: value for key, value in records}
    assert last[b"int-short"] is None  # a tombstone: compaction removes it
    assert last[b"int-long"] is not None
