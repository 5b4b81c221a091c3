"""Produce/consume round trips against a real broker with aiokafka."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

PARTITIONS = 3
MESSAGES = 100
DEADLINE_S = 60.0


async def create_topic(
    bootstrap: str, topic: str, partitions: int, configs: dict[str, str] | None = None
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=partitions,
                    replication_factor=1,
                    topic_configs=configs or {},
                )
            ]
        )
    finally:
        await admin.close()
    errors = [(name, code, msg) for name, code, msg in response.topic_errors if code != 0]
    assert not errors, errors


async def read_all(bootstrap: str, topic: str, expected: int, group_id: str | None) -> list:
    """Reads ``expected`` records from the start of ``topic`` (all partitions)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records = []
    try:
        deadline = time.monotonic() + DEADLINE_S
        while len(records) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
        if group_id is not None:
            await consumer.commit()
            assignment = consumer.assignment()
            committed = {tp: await consumer.committed(tp) for tp in assignment}
            positions = {tp: await consumer.position(tp) for tp in assignment}
            assert committed == positions
    finally:
        await consumer.stop()
    return records


async def test_keyed_messages_round_trip_in_order(kafka_bootstrap: str, unique_topic: str) -> None:
    await create_topic(kafka_bootstrap, unique_topic, PARTITIONS)

    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        futures = []
        for i in range(MESSAGES):
            key = f"customer-{i % 7}".encode()
            value = f'{{"seq": {i}}}'.encode()
            futures.append((key, value, await producer.send(unique_topic, value, key=key)))
        await producer.flush()
        sent: dict[int, list[tuple[bytes, bytes, int]]] = defaultdict(list)
        for key, value, future in futures:
            meta = await future
            sent[meta.partition].append((key, value, meta.offset))
    finally:
        await producer.stop()

    # The same key always lands on the same partition.
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for partition, records in sent.items():
        for key, _, _ in records:
            partitions_of_key[key].add(partition)
    assert all(len(p) == 1 for p in partitions_of_key.values())
    assert len(sent) > 1, "7 keys over 3 partitions should use more than one partition"

    received = await read_all(
        kafka_bootstrap, unique_topic, MESSAGES, group_id=f"{unique_topic}.group"
    )
    assert len(received) == MESSAGES

    got: dict[int, list[tuple[bytes, bytes, int]]] = defaultdict(list)
    for record in received:
        assert record.topic == unique_topic
        got[record.partition].append((record.key, record.value, record.offset))

    # Per partition: same keys and values, in the order they were produced.
    assert dict(got) == dict(sent)
    for records in got.values():
        offsets = [offset for _, _, offset in records]
        assert offsets == sorted(offsets)
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))


async def test_compacted_topic_keeps_latest_value_per_key(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    """The local broker's log cleaner compacts tables/changelogs within seconds."""
    await create_topic(
        kafka_bootstrap,
        unique_topic,
        1,
        {
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.01",
            "min.compaction.lag.ms": "0",
            "delete.retention.ms": "100",
        },
    )
    tp = TopicPartition(unique_topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(50):
            await producer.send_and_wait(unique_topic, str(i).encode(), key=f"k{i % 5}".encode())
        latest = {f"k{i}".encode(): str(45 + i).encode() for i in range(5)}

        deadline = time.monotonic() + DEADLINE_S
        while True:
            # Appending after segment.ms rolls the segment, making it cleanable.
            await asyncio.sleep(0.5)
            await producer.send_and_wait(unique_topic, b"tick", key=b"tick")
            consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
            await consumer.start()
            try:
                consumer.assign([tp])
                await consumer.seek_to_beginning(tp)
                end = (await consumer.end_offsets([tp]))[tp]
                values: dict[bytes, bytes] = {}
                count = 0
                while await consumer.position(tp) < end and time.monotonic() < deadline:
                    batch = (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
                    for record in batch:
                        values[record.key] = record.value
                        count += 1
            finally:
                await consumer.stop()
            data = {k: v for k, v in values.items() if k != b"tick"}
            assert data == latest
            if count < 20:
                break
            assert time.monotonic() < deadline, f"topic not compacted: {count} records remain"
    finally:
        await producer.stop()
