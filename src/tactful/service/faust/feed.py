"""The worker's input path: a topic-partition's fetched records at a time, not one by one.

Faust hands each fetched record to its conductor, which puts it into a stream's queue,
and the stream turns it into an event; each step costs asyncio tasks and calls per
record (``wait_first`` around every callback, the stream iterator, sensors), about 80 % of
the worker's time when the work per record is a few tens of microseconds (BENCHMARKS.md).
Here the consumer's fetch loop (``drain_in_batches``, in place of Faust's
``Consumer._drain_messages``) puts the records of each topic-partition of a fetch, as one
list, into the :class:`BatchFeed` of the agent that reads that topic; the agent takes
what has arrived, processes it a unit per topic-partition and acks it. Topics without a
feed (the changelogs Faust recovers tables from) keep Faust's path, record by record.

What Faust's path guarantees is kept:

- **Group membership, assignment, commits** stay Faust's: a record taken is tracked as
  unacked (a rebalance or a stop waits for the records in hand, ``stream_wait_empty``),
  acked once processed, and committed by Faust's commit from the acked offsets, gaps
  (transaction markers) included.
- **Rebalances**: the feeds are managed by Faust's flow control, which empties them when
  partitions are revoked; the fetch loop stops putting records once the flow stops (and
  never puts a fetch of an earlier generation), and the agent drops a batch of another
  generation, or taken while the flow is suspended, as Faust's stream skips such events.
- **Back-pressure**: a feed holds a bounded number of batches; the fetch loop waits for
  room (or for the flow to stop) before it fetches more.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING

log = logging.getLogger("tactful.feed")

YIELD_EVERY = 100  # records handed out one by one (Faust's path) between two yields


class Source:
    """What Faust's current event must offer while a unit is processed: the record in
    hand (``message``: its topic, partition and offset pick the table partition, the
    changelog records' origin and, exactly-once, the transaction)."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, message: Any) -> None:
        self.message = message


class BatchFeed:
    """One agent's records: lists of one topic-partition's records, in fetch order.

    Managed by the app's flow control like Faust's stream queues (``clear`` empties it
    when partitions are revoked). At most ``max_batches`` lists wait; the fetch loop
    waits for ``room`` beyond that."""

    def __init__(self, flow_control: Any, max_batches: int = 16) -> None:
        self.batches: deque[list[Any]] = deque()
        self.max_batches = max_batches
        self.ready = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        flow_control.manage_queue(self)  # kept in a WeakSet: the worker holds the feed

    def clear(self) -> None:
        self.batches.clear()
        self.ready.clear()
        self.room.set()

    def full(self) -> bool:
        return len(self.batches) >= self.max_batches

    def put_nowait(self, batch: list[Any]) -> None:
        self.batches.append(batch)
        self.ready.set()
        if len(self.batches) >= self.max_batches:
            self.room.clear()

    async def take(self, max_records: int) -> list[list[Any]]:
        """What has arrived (at least one list; at most about ``max_records`` records),
        merged by topic-partition in order of first arrival, each in offset order."""
        while not self.batches:
            self.ready.clear()
            await self.ready.wait()
        by_tp: dict[Any, list[Any]] = {}
        taken = 0
        batches = self.batches
        while batches and taken < max_records:
            batch = batches.popleft()
            taken += len(batch)
            found = by_tp.get(batch[0].tp)
            if found is None:
                by_tp[batch[0].tp] = batch
            else:
                found.extend(batch)
        if not batches:
            self.ready.clear()
        self.room.set()
        return list(by_tp.values())


def current(app: Any, batch: list[Any]) -> bool:
    """Whether a taken batch is still to be processed: fetched in this generation of the
    group, and the flow is not suspended (Faust's stream skips such events likewise)."""
    return bool(app.flow_control.is_active()
                and batch[0].generation_id == app.consumer_generation_id)


def track(consumer: Any, batch: list[Any]) -> None:
    """The records are in hand: a rebalance or a stop waits for their acks."""
    unacked = consumer._unacked_messages
    for message in batch:
        message.tracked = True
        unacked.add(message)


def ack(consumer: Any, batch: list[Any]) -> None:
    """The records are processed: their offsets may be committed. The consumer's
    ``processed`` (if it keeps one) notes the offset after the last of them: a commit
    takes that, not what Faust's acks add up to (``GatedConsumer.processed``)."""
    consumer_ack = consumer.ack
    for message in batch:
        consumer_ack(message)
    processed: dict[Any, int] | None = getattr(consumer, "processed", None)
    if processed is not None:
        last = batch[-1]
        tp = last.tp
        if last.offset >= processed.get(tp, 0):
            processed[tp] = last.offset + 1


def new_records(fetched: list[Any], last: int | None
                ) -> tuple[list[Any], list[tuple[int, int]], int | None]:
    """The records of a fetch not read yet (offset at or after ``last``, the offset
    read last), the gaps between them and ``last`` (offsets a commit steps over:
    transaction markers, aborted records; ``(start, end)`` as Faust's ``_add_gap``
    takes them) and the offset read last after them.

    Faust's loop registers a gap only after a record at an offset other than 0
    (``if r_offset``): a partition written in transactions whose first transaction
    held one record (offset 0, its marker at 1) then has acks 0, 2, 3 … and its commit
    stops at 1 for a commit interval. Exactly-once, the records sent meanwhile are in
    the transaction that commits offset 1: after a crash, they are written again."""
    unread = []
    gaps = []
    for record in fetched:
        offset = record.offset
        if last is None or offset >= last:
            if last is not None and offset - last > 1:
                gaps.append((last + 1, offset))
            unread.append(record)
            last = offset
    return unread, gaps, last


async def drain_in_batches(consumer: Any, fetcher: Any, feeds: Mapping[str, BatchFeed]) -> None:
    """Faust's fetch loop (``Consumer._drain_messages``), handing a feed's topics over a
    topic-partition's fetch at a time. The checks are Faust's, per list instead of per
    record where they do not depend on the record: the flow and the generation, the
    active partitions, the read offsets and their gaps, ``broker_commit_every``."""
    app = consumer.app
    callback = consumer.callback
    consumer_should_stop = consumer._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    read_offset = consumer._read_offset
    to_message = consumer._to_message
    commit_every = consumer._commit_every
    acks_enabled_for = app.topics.acks_enabled_for
    since_yield = 0
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            consumer.diag.set_flag(CONSUMER_FETCHING)
            records, active = await consumer._wait_next_records(1.0)
            await consumer.sleep(0)
            if records is None or consumer.should_stop:
                continue
            if not consumer.flow_active:
                try:
                    await consumer.perform_seek()
                except Exception as exc:  # as Faust's getmany: logged, the loop goes on
                    log.warning("seek while the flow was stopped failed",
                                extra={"error": type(exc).__name__})
                continue
            generation = app.consumer_generation_id
            for tp, fetched in records.items():
                if not consumer.flow_active or app.consumer_generation_id != generation:
                    break
                if (active is not None and tp not in active
                        and tp not in consumer._buffered_partitions):
                    continue
                app.monitor.track_tp_end_offset(tp, consumer.highwater(tp))
                feed = feeds.get(tp.topic)
                if feed is None:
                    for record in fetched:  # Faust's own path, a record at a time
                        since_yield += 1
                        if since_yield > YIELD_EVERY:
                            await asyncio.sleep(0)
                            since_yield = 0
                        offset = record.offset
                        last = read_offset[tp]
                        if last is None or offset >= last:
                            if last and offset - last > 1 and acks_enabled_for(tp.topic):
                                await consumer._add_gap(tp, last + 1, offset)
                            if commit_every is not None and consumer._n_acked >= commit_every:
                                consumer._n_acked = 0
                                await consumer.commit()
                            await consumer.wait_first(callback(to_message(tp, record)),
                                                      consumer.suspend_flow.wait())
                            read_offset[tp] = offset
                    continue
                unread, gaps, last = new_records(fetched, read_offset[tp])
                if not unread:
                    continue
                for start, end in gaps:
                    await consumer._add_gap(tp, start, end)
                if commit_every is not None and consumer._n_acked >= commit_every:
                    consumer._n_acked = 0
                    await consumer.commit()
                if feed.full():
                    await consumer.wait_first(feed.room.wait(), consumer.suspend_flow.wait())
                # Each await above lets a rebalance in: a fetch of an earlier generation
                # must neither reach the feed nor move the read offset past what the
                # seek to the committed offsets fetches again.
                if (not consumer.flow_active or consumer.should_stop
                        or app.consumer_generation_id != generation):
                    break
                feed.put_nowait([to_message(tp, record) for record in unread])
                read_offset[tp] = last
            consumer.diag.unset_flag(CONSUMER_FETCHING)
    except consumer.consumer_stopped_errors:
        if app.should_stop:
            log.info("broker stopped the consumer, shutting down")
            return
        raise
    except asyncio.CancelledError:
        if app.should_stop:
            return
        raise
    finally:
        consumer.diag.unset_flag(CONSUMER_FETCHING)
