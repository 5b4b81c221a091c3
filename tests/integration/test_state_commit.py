"""State transactions on a real broker: a partition's changelog records and its input
offsets become visible together or not at all, a new owner aborts what a dead one left
open and fences a live one, and recovery finds the last committed record of a changelog
that ends with transaction markers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faust.types import TP

from tactful.adapters.topics import TopicSpec, ensure_topics
from tactful.service.faust.gate import seek_to_committed
from tactful.service.faust.recovery import committed_highwaters, last_committed_offsets
from tactful.service.state_commit import StateCommitFailed, StateTransactions


@dataclass
class Channel:
    name: str

    def get_topic_name(self) -> str:
        return self.name


@dataclass
class Message:
    channel: Channel
    key: bytes
    value: bytes | None
    partition: int
    timestamp: float | None = None
    headers: Any = None
    callback: Any = None


class Record(asyncio.Future[Any]):
    """What the gate holds: a future with the message to send (Faust's FutureMessage)."""

    def __init__(self, topic: str, key: bytes, value: bytes | None, partition: int = 0,
                 seen: list[tuple[bytes, int]] | None = None) -> None:
        super().__init__()
        callback = None
        if seen is not None:
            def callback(fut: Any) -> None:
                seen.append((fut.message.key, fut.result().offset))
        self.message = Message(Channel(topic), key, value, partition, callback=callback)


@dataclass
class Setup:
    bootstrap: str
    changelog: str
    source: str
    group: str
    app_id: str

    def transactions(self) -> StateTransactions:
        def new(tid: str) -> AIOKafkaProducer:
            return AIOKafkaProducer(bootstrap_servers=self.bootstrap, transactional_id=tid,
                                    enable_idempotence=True, acks="all")
        txns = StateTransactions(new, self.app_id, self.group)
        txns.sources = frozenset({self.source})
        return txns

    async def committed_records(self) -> list[tuple[int, bytes]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap,
                                    isolation_level="read_committed",
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            tp = TopicPartition(self.changelog, 0)
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            consumer.seek(tp, 0)
            out: list[tuple[int, bytes]] = []
            while await consumer.position(tp) < end:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    out += [(r.offset, r.key) for r in records]
            return out
        finally:
            await consumer.stop()

    async def group_offset(self) -> int | None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            offset: int | None = await consumer.committed(TopicPartition(self.source, 0))
            return offset
        finally:
            await consumer.stop()


async def eventually(read: Any, expected: Any, timeout: float = 15.0) -> Any:
    """What ``read()`` gives once it equals ``expected`` (or at the deadline): a
    transaction's markers reach its partitions just after its commit returns."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await read()
        if got == expected or asyncio.get_running_loop().time() > deadline:
            return got
        await asyncio.sleep(0.2)


@pytest.fixture
async def setup(kafka_bootstrap: str) -> AsyncIterator[Setup]:
    run = uuid.uuid4().hex[:8]
    s = Setup(kafka_bootstrap, f"sc-{run}-changelog", f"sc-{run}-in", f"sc-{run}",
              f"sc-{run}")
    await ensure_topics(kafka_bootstrap, [TopicSpec(s.changelog, 1), TopicSpec(s.source, 1)])
    yield s


async def test_state_and_offsets_are_committed_together(setup: Setup) -> None:
    txns = setup.transactions()
    await txns.assign({0})
    seen: list[tuple[bytes, int]] = []
    try:
        records = [Record(setup.changelog, b"cust-1", b"v1", seen=seen),
                   Record(setup.changelog, b"cust-2", None, seen=seen)]  # a tombstone
        await txns.commit(0, records, {TP(setup.source, 0): 17})
    finally:
        await txns.stop()
    want = [(0, b"cust-1"), (1, b"cust-2")]
    assert await eventually(setup.committed_records, want) == want
    assert await eventually(setup.group_offset, 17) == 17
    # The callbacks (RocksDB keeps the changelog offset) ran after the commit.
    assert seen == [(b"cust-1", 0), (b"cust-2", 1)]


async def test_a_transaction_a_dead_owner_left_open_is_aborted_by_the_next(
        setup: Setup) -> None:
    dead = AIOKafkaProducer(bootstrap_servers=setup.bootstrap, enable_idempotence=True,
                            transactional_id=f"{setup.app_id}-state-0", acks="all")
    await dead.start()
    await dead.begin_transaction()
    await dead.send_and_wait(setup.changelog, b"ahead", b"x", partition=0)
    await dead.send_offsets_to_transaction({TopicPartition(setup.source, 0): 99}, setup.group)
    # The worker dies here: no commit, no abort. Its partition's next owner starts.
    txns = setup.transactions()
    await txns.assign({0})
    try:
        await txns.commit(0, [Record(setup.changelog, b"cust-1", b"v1")],
                          {TP(setup.source, 0): 5})
    finally:
        await txns.stop()
        with pytest.raises(Exception):  # noqa: B017 - fenced, in whatever form
            await dead.commit_transaction()
        await dead.stop()
    # Offset 0 went to the aborted transaction, 1 to its abort marker.
    assert await eventually(setup.committed_records, [(2, b"cust-1")]) == [(2, b"cust-1")]
    assert await eventually(setup.group_offset, 5) == 5


async def test_an_owner_that_lost_its_partition_cannot_commit_into_it(setup: Setup) -> None:
    old, new = setup.transactions(), setup.transactions()
    await old.assign({0})
    await new.assign({0})  # a rebalance gave the partition to another worker
    try:
        with pytest.raises(StateCommitFailed):
            await old.commit(0, [Record(setup.changelog, b"stale", b"x")],
                             {TP(setup.source, 0): 50})
        assert 0 not in old.producers  # it gave the partition up
        await new.commit(0, [Record(setup.changelog, b"fresh", b"y")], {TP(setup.source, 0): 7})
    finally:
        await old.stop()
        await new.stop()
    assert await eventually(setup.committed_records, [(0, b"fresh")]) == [(0, b"fresh")]
    assert await eventually(setup.group_offset, 7) == 7


async def test_recovery_ends_on_the_last_committed_record_not_on_a_marker(
        setup: Setup) -> None:
    txns = setup.transactions()
    await txns.assign({0})
    try:
        await txns.commit(0, [Record(setup.changelog, b"a", b"1"),
                              Record(setup.changelog, b"b", b"1")], {})  # 0, 1, marker 2
        producer = txns.producers[0]
        await producer.begin_transaction()
        for i in range(5):  # 3..7, aborted, then the abort marker at 8
            await producer.send_and_wait(setup.changelog, b"gone%d" % i, b"x", partition=0)
        await producer.abort_transaction()
    finally:
        await txns.stop()
    tp = TP(setup.changelog, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=setup.bootstrap,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    try:
        async def end_offset() -> int:
            part = TopicPartition(tp.topic, 0)
            return int((await consumer.end_offsets([part]))[part])

        end = await eventually(end_offset, 9)
        assert end == 9
        # A tail of 2 finds only aborted records and markers: it widens until it finds b.
        assert await last_committed_offsets(consumer, {tp: end}, tail=2) == {tp: 1}
        # A partition with nothing committed in it.
        empty = TP(setup.source, 0)
        assert await last_committed_offsets(consumer, {empty: 0}) == {empty: -1}
    finally:
        await consumer.stop()
    # A consumer that has fetched nothing: the end offsets come from the broker (Faust,
    # exactly-once, takes them from fetch responses and has none for such a partition).
    fresh = AIOKafkaConsumer(bootstrap_servers=setup.bootstrap,
                             isolation_level="read_committed", enable_auto_commit=False)
    await fresh.start()
    try:
        fresh.assign([TopicPartition(tp.topic, 0)])
        assert fresh.last_stable_offset(TopicPartition(tp.topic, 0)) is None  # not fetched
        assert await committed_highwaters(fresh, {tp, TP(setup.source, 0)}) == {
            tp: 1, TP(setup.source, 0): -1}
    finally:
        await fresh.stop()


async def test_a_failed_send_aborts_the_transaction_and_the_next_commit_goes_through(
        setup: Setup) -> None:
    txns = setup.transactions()
    await txns.assign({0})
    try:
        too_big = Record(setup.changelog, b"huge", b"x" * (2 * 1024 * 1024))
        with pytest.raises(StateCommitFailed):
            await txns.commit(0, [Record(setup.changelog, b"first", b"1"), too_big],
                              {TP(setup.source, 0): 30})
        assert not too_big.done()  # still held: nothing of it is visible
        await txns.commit(0, [Record(setup.changelog, b"again", b"2")], {TP(setup.source, 0): 31})
    finally:
        await txns.stop()
    keys = [key for _, key in await eventually(
        setup.committed_records, [(2, b"again")])]
    assert keys == [b"again"]  # "first" went with the aborted transaction
    assert await eventually(setup.group_offset, 31) == 31


async def test_an_input_partition_without_a_committed_offset_is_fetched_again_from_0(
        setup: Setup) -> None:
    # What Faust's seek after recovery must do for records the fetch loop dropped
    # (fetched while the flow was stopped): fetch them again. aiokafka's own
    # ``seek_to_committed`` leaves a partition without an offset above 0 where it is.
    producer = AIOKafkaProducer(bootstrap_servers=setup.bootstrap)
    await producer.start()
    try:
        for topic in (setup.source, setup.changelog):
            for n in range(5):
                await producer.send_and_wait(topic, f"{n}".encode(), partition=0)
    finally:
        await producer.stop()
    source, changelog = TopicPartition(setup.source, 0), TopicPartition(setup.changelog, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=setup.bootstrap, group_id=setup.group,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([source, changelog])
        fetched = 0
        while fetched < 10:  # both partitions read to their end: positions at 5
            batch = await consumer.getmany(timeout_ms=1000)
            fetched += sum(len(records) for records in batch.values())
        assert [await consumer.position(tp) for tp in (source, changelog)] == [5, 5]

        assert await seek_to_committed(consumer, [setup.source]) == {
            source: None, changelog: None}
        # The input from its first record again; the changelog is Faust's to place.
        assert [await consumer.position(tp) for tp in (source, changelog)] == [0, 5]
        again = await consumer.getmany(source, timeout_ms=5000)
        assert [r.value for r in again[source]][:1] == [b"0"]

        await consumer.commit({source: 0})  # committed 0: aiokafka would not seek it
        await consumer.seek_to_end(source)
        await seek_to_committed(consumer, [setup.source])
        assert await consumer.position(source) == 0

        await consumer.commit({source: 3})
        await seek_to_committed(consumer, [setup.source])
        assert await consumer.position(source) == 3
    finally:
        await consumer.stop()
