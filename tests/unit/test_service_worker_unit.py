"""The worker's unit of work: one topic-partition's records of a batch, whose state is
read and written once per key, and whose messages go out in bundles."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from tactful.adapters.wire import Tick, envelope, unpack_all
from tactful.core.state import SkuState, encode_state
from tactful.service.faust.feed import BatchFeed, ack, new_records
from tactful.service.faust.gate import GatedConsumer
from tactful.service.worker import MAX_BUNDLE_BYTES, StateCache, Unit


def _writes() -> tuple[dict[bytes, bytes], list[tuple[bytes, bytes | None]], Any]:
    table: dict[bytes, bytes] = {}
    log: list[tuple[bytes, bytes | None]] = []

    def write(t: dict[bytes, bytes], key: bytes, value: bytes | None) -> None:
        log.append((key, value))
        if value is None:
            t.pop(key, None)
        else:
            t[key] = value
    return table, log, write


def _sku(sku: str, stock: int) -> SkuState:
    return SkuState(sku=sku, available=stock)


def test_each_changed_key_is_written_once_with_its_last_value() -> None:
    table, log, write = _writes()
    table[b"k1"] = encode_state(_sku("k1", 1))
    cache = StateCache(table, SkuState, write)
    first = cache.load("k1")
    assert first is not None and first.available == 1
    for stock in (2, 3, 4):
        state = cache.load("k1")
        state.available = stock
        cache.save("k1", state)
    assert cache.load("k2") is None
    cache.save("k2", _sku("k2", 7))
    cache.load("k3")  # read, never changed: never written
    assert log == []  # nothing reaches the table before the end of the unit
    assert cache.write() == 2
    assert log == [(b"k1", encode_state(_sku("k1", 4))), (b"k2", encode_state(_sku("k2", 7)))]


def test_a_failed_step_goes_back_to_the_last_good_value() -> None:
    table, log, write = _writes()
    cache = StateCache(table, SkuState, write)
    cache.load("k")
    cache.save("k", _sku("k", 5))
    live = cache.load("k")
    live.available = 99  # the engine changed it, then failed
    cache.rollback("k")
    assert cache.load("k") == _sku("k", 5)
    cache.write()
    assert log == [(b"k", encode_state(_sku("k", 5)))]


def test_a_key_deleted_in_the_unit_is_written_as_a_delete() -> None:
    table, log, write = _writes()
    table[b"k"] = encode_state(_sku("k", 1))
    cache = StateCache(table, SkuState, write)
    cache.load("k")
    cache.save("k", None)
    cache.write()
    assert log == [(b"k", None)] and table == {}


def _record(topic: str, partition: int, offset: int) -> Any:
    return SimpleNamespace(topic=topic, partition=partition, offset=offset,
                           tp=(topic, partition), timestamp=1_780_000_000.0 + offset)


class _FlowControl:
    def __init__(self) -> None:
        self.managed: list[Any] = []

    def manage_queue(self, queue: Any) -> None:
        self.managed.append(queue)


def test_a_feed_gives_what_arrived_by_topic_partition_keeping_each_ones_order() -> None:
    flow = _FlowControl()
    feed = BatchFeed(flow, max_batches=3)
    assert flow.managed == [feed]  # emptied by Faust's flow control at a revocation
    feed.put_nowait([_record("a", 0, 1)])
    feed.put_nowait([_record("b", 0, 7), _record("b", 0, 8)])
    assert not feed.full() and feed.room.is_set()
    feed.put_nowait([_record("a", 0, 2)])
    assert feed.full() and not feed.room.is_set()  # the fetch loop waits for room
    groups = asyncio.run(feed.take(100))
    assert [[(r.topic, r.partition, r.offset) for r in g] for g in groups] == [
        [("a", 0, 1), ("a", 0, 2)], [("b", 0, 7), ("b", 0, 8)]]
    assert feed.room.is_set() and not feed.batches


def test_a_feed_hands_out_about_max_records_and_keeps_the_rest() -> None:
    feed = BatchFeed(_FlowControl(), max_batches=8)
    for offset in range(5):
        feed.put_nowait([_record("a", 1, 2 * offset), _record("a", 1, 2 * offset + 1)])
    first = asyncio.run(feed.take(3))
    assert [r.offset for g in first for r in g] == [0, 1, 2, 3]
    rest = asyncio.run(feed.take(100))
    assert [r.offset for g in rest for r in g] == [4, 5, 6, 7, 8, 9]


def test_a_cleared_feed_drops_what_waited() -> None:
    feed = BatchFeed(_FlowControl(), max_batches=1)
    feed.put_nowait([_record("a", 0, 1)])
    feed.clear()  # a revocation: those records are fetched again after the seek
    assert not feed.batches and feed.room.is_set() and not feed.ready.is_set()


def test_messages_are_numbered_per_record_and_bundled_per_destination() -> None:
    unit = Unit([_record("tactful.consent", 2, 40)])
    unit.begin(_record("tactful.consent", 2, 40))
    first = [unit.position() for _ in range(2)]
    unit.begin(_record("tactful.consent", 2, 41))
    assert [*first, unit.position()] == [("tactful.consent:2", 40, 0),
                                         ("tactful.consent:2", 40, 1),
                                         ("tactful.consent:2", 41, 0)]
    big = envelope(1.0, "", Tick(1.0), "x" * (MAX_BUNDLE_BYTES // 3))
    for _ in range(4):
        unit.send("t", 0, big)
    unit.send("t", 1, big)
    assert [len(chunk) for chunk in unit.bundles[("t", 0)]] == [2, 2]  # each under the bound
    assert [len(chunk) for chunk in unit.bundles[("t", 1)]] == [1]
    assert all(sum(map(len, chunk)) <= MAX_BUNDLE_BYTES
               for chunks in unit.bundles.values() for chunk in chunks)
    from tactful.adapters.wire import bundle
    assert len(unpack_all(bundle(unit.bundles[("t", 0)][0]))) == 2


def test_a_fetch_notes_the_gap_after_a_record_at_offset_0() -> None:
    # A partition written in transactions: one record at 0, its commit marker at 1.
    # Without the gap the commit would stop at 1 while 2 and 3 are processed (and,
    # exactly-once, committed in the transaction with their outputs).
    unread, gaps, last = new_records([_record("a", 0, 0), _record("a", 0, 2)], None)
    assert [r.offset for r in unread] == [0, 2] and gaps == [(1, 2)] and last == 2
    unread, gaps, last = new_records([_record("a", 0, 4), _record("a", 0, 5)], 2)
    assert [r.offset for r in unread] == [4, 5] and gaps == [(3, 4)] and last == 5


def test_a_fetch_skips_what_was_read_and_a_seek_position_is_no_gap() -> None:
    # After a seek Faust's read offset is the committed one, the next to read.
    unread, gaps, last = new_records([_record("a", 0, o) for o in (6, 7, 8)], 7)
    assert [r.offset for r in unread] == [7, 8] and gaps == [] and last == 8
    unread, gaps, last = new_records([_record("a", 0, 8)], 7)  # 7: a marker
    assert [r.offset for r in unread] == [8] and gaps == [] and last == 8
    assert new_records([_record("a", 0, 3)], 5) == ([], [], 5)


def test_acking_a_batch_notes_the_offset_after_its_last_record() -> None:
    acked: list[int] = []
    consumer = SimpleNamespace(ack=lambda m: acked.append(m.offset), processed={})
    ack(consumer, [_record("a", 0, 4), _record("a", 0, 5)])
    assert acked == [4, 5] and consumer.processed == {("a", 0): 6}
    ack(consumer, [_record("a", 0, 2)])  # an earlier one (never lowers it)
    assert consumer.processed == {("a", 0): 6}


def test_a_commit_takes_what_was_processed_of_the_partitions_kept() -> None:
    kept, leaving, gone = TP("a", 0), TP("a", 1), TP("a", 2)
    consumer = SimpleNamespace(
        assignment=lambda: {kept, leaving}, revoking=frozenset({leaving}),
        processed={kept: 10, leaving: 5, gone: 7, TP("b", 0): 3},
        _committed_offset={kept: 3, TP("b", 0): 3})
    # Faust's acks stopped at 4 (a gap it did not see, a repeated ack): 10 is committed;
    # nothing of a partition being revoked or no longer assigned; never back, nor again.
    assert GatedConsumer._processed_offsets(consumer, {kept: 4}) == {kept: 10}
    assert GatedConsumer._processed_offsets(consumer, {}) == {kept: 10}
    consumer._committed_offset[kept] = 10
    assert GatedConsumer._processed_offsets(consumer, {}) == {}
