"""Delivery order: a table's changelog never runs ahead of the outputs computed with it.

Faust writes a table change to the changelog as soon as the value is set, while the
intents, decisions and internal messages the same event produced are still in the
producer's buffer. A crash between the two leaves a changelog that says "the cart
intent was sent" and a topic without it: the input is processed again after the
restart (its offset was not committed), the engine sees its own duplicate, and the
intent is gone for good.

At least once, the gate keeps the order ``outputs → state → offsets``:

1. the worker sends an event's outputs before it stores the new state;
2. :class:`GatedTable` holds each changelog record back instead of producing it (only
   the last record of a key is produced when several wait: fewer changelog writes);
3. before offsets are committed, :class:`GatedConsumer` flushes the producer (so every
   output sent so far is on the broker), then hands the held changelog records to the
   producer itself (not to Faust's send-soon buffer, whose flush gives up after 0.1 s
   and whose contents are dropped at shutdown), and Faust's own commit flushes them
   before it writes the offsets. A release cut short (a stop cancels the commit task)
   keeps what it had not handed over for the next one.

A crash at any point then loses only work whose input is processed again: the outputs
it repeats carry the same deterministic ids (at least once, never at most once).
When a rebalance takes partitions away, the records still held are dropped and their
keys evicted from the local store: the inputs not yet committed are applied again by
the partitions' next owner, on the state the changelog holds.

With ``processing_guarantee=exactly_once`` Kafka transactions make outputs, changelog
and offsets visible together, provided everything an input caused goes into the
transaction that commits the input's offset. Faust picks the transaction by the
*destination* partition (and sends to topics the worker does not consume, such as
the intents, outside any transaction), so :class:`SourceTransactionManager` picks it
by the partition of the event being processed; the gate still holds the changelog
records, releasing them into their partition's transaction just before it commits;
and a :class:`CommitBarrier` lets a commit happen only between events, never halfway
through one. At a rebalance, the uncommitted transaction is aborted: the tables are
emptied and recovered from the committed changelogs (``forget_uncommitted_state``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

from faust.exceptions import ProducerSendError
from faust.streams import current_event
from faust.tables.table import Table
from faust.transport.consumer import TransactionManager
from faust.transport.drivers.aiokafka import Consumer, Transport
from faust.types import TP, FutureMessage

log = logging.getLogger("tactful.gate")

Publish = Callable[[FutureMessage], Awaitable[Any]]


async def publish_message(fut: FutureMessage) -> Any:
    """Hand a held record to the producer (into its accumulator, or its transaction)."""
    return await fut.message.channel.publish_message(fut, wait=False)


class ChangelogGate:
    """Changelog records waiting for the outputs sent before them to be delivered.

    ``flush_outputs=False`` under exactly-once: the outputs are in the same transaction.
    """

    def __init__(self, *, flush_outputs: bool = True) -> None:
        self.flush_outputs = flush_outputs
        self.held: list[tuple[Any, FutureMessage]] = []
        self.released = 0
        self.coalesced = 0  # records not sent: a later one of the same key replaced them

    def hold(self, table: Any, fut: FutureMessage) -> None:
        self.held.append((table, fut))

    async def release(self, producer: Any, publish: Publish = publish_message) -> None:
        """Deliver every output sent so far, then hand the held records to the producer:
        the last one of each key only (Kafka Streams' record cache does the same), as the
        changelog is compacted to that anyway. Records stay held until handed over, so a
        release that is cancelled leaves them for the next one (a record handed over
        twice is the same value twice)."""
        if not self.held:
            return
        batch = list(self.held)
        if self.flush_outputs:
            await producer.flush()
        still = {id(entry) for entry in self.held}  # drop() may have run meanwhile
        batch = [entry for entry in batch if id(entry) in still]
        latest: dict[tuple[int, int | None, Any], FutureMessage] = {}
        for table, fut in batch:
            latest[(id(table), fut.message.partition, fut.message.key)] = fut
        for fut in latest.values():
            await publish(fut)
        handed = {id(entry) for entry in batch}
        self.held = [entry for entry in self.held if id(entry) not in handed]
        self.released += len(latest)
        self.coalesced += len(batch) - len(latest)

    def drop(self, partitions: Iterable[int], *, evict: bool = False) -> int:
        """Forget held records of these partitions: their inputs are applied again by
        the partitions' next owner. ``evict`` (at least once) also removes their keys
        from the local store, so the state is not ahead of the committed offsets
        (re-applied internal messages are not all idempotent). Exactly-once empties
        the tables instead (``forget_uncommitted_state``)."""
        lost = set(partitions)
        kept = []
        for entry in self.held:
            table, fut = entry
            if fut.message.partition in lost:
                if evict:
                    with contextlib.suppress(KeyError):
                        del table.data[fut.message.key]
            else:
                kept.append(entry)
        dropped = len(self.held) - len(kept)
        self.held = kept
        return dropped


def forget_uncommitted_state(app: Any) -> int:
    """Exactly-once, at a rebalance: empty the in-memory tables and make Faust recover
    every changelog partition it is assigned next from the start.

    The tables hold writes of work whose transaction is about to be aborted (Kafka
    Streams wipes a task's state for the same reason); reading the changelogs again
    with ``read_committed`` keeps only what was committed, so the inputs processed
    again find the state they were first applied to. Faust's eager rebalancing revokes
    every partition, so everything goes. Returns the number of keys dropped.
    """
    from faust.stores.memory import Store as MemoryStore

    recovery = app.tables.recovery
    dropped = 0
    for table in app.tables.values():
        store = table.data
        if not isinstance(store, MemoryStore):
            raise TypeError("exactly-once needs the memory store")
        dropped += len(store.data)
        store.data.clear()
        store._key_partition.clear()
        changelog = table.changelog_topic.get_topic_name()
        for offsets in (recovery.active_offsets, recovery.standby_offsets):
            for tp in [tp for tp in offsets if tp.topic == changelog]:
                del offsets[tp]
    if dropped:
        log.info("tables emptied for recovery from committed changelogs",
                 extra={"keys": dropped})
    return dropped


class CommitBarrier:
    """Commits between events only: a commit waits until no agent is inside an event
    and holds new events back until it is done (exactly-once)."""

    def __init__(self) -> None:
        self.busy = 0
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()

    async def enter(self) -> None:
        """An agent starts on an event."""
        while not self._open.is_set():
            await self._open.wait()
        self.busy += 1
        self._idle.clear()

    def leave(self) -> None:
        """The agent is done with it (or was cancelled)."""
        self.busy -= 1
        if self.busy == 0:
            self._idle.set()

    @contextlib.asynccontextmanager
    async def closed(self) -> AsyncIterator[None]:
        self._open.clear()
        try:
            await self._idle.wait()
            yield
        finally:
            self._open.set()


class GatedTable(Table[Any, Any]):
    """A Faust table whose changelog records wait at the app's gate (if it has one)."""

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> FutureMessage:
        gate: ChangelogGate | None = getattr(self.app, "changelog_gate", None)
        if gate is None:
            return super().send_changelog(partition, key, value, key_serializer,
                                          value_serializer)
        fut = self.changelog_topic.as_future_message(
            key=key,
            value=value,
            partition=partition,
            key_serializer=key_serializer or self.key_serializer,
            value_serializer=value_serializer or self.value_serializer,
            callback=self._on_changelog_sent,
            eager_partitioning=True,
        )
        gate.hold(self, fut)
        return fut


class SourceTransactionManager(TransactionManager):
    """Exactly-once: whatever an event causes goes into the transaction of the partition
    the event came from, the one that commits its offset. Outside an event (the gate's
    release at commit) a record goes into the transaction of its own partition: a
    changelog partition is its table's input partition, tables being co-partitioned.

    Faust would look the partition up in the consumer's metadata and, for a topic it
    does not find there, send outside any transaction; here a send that cannot name its
    transaction fails instead (ticks, which carry no state, use the plain producer).
    """

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> Awaitable[Any]:
        event = current_event()
        if event is not None:
            source, number = event.message.topic, event.message.partition
        elif partition is not None:
            source, number = topic, partition
        else:
            raise ProducerSendError(f"exactly-once: no transaction for a send to {topic}")
        try:
            group = self.app.assignor.group_for_topic(source)
        except KeyError:
            raise ProducerSendError(f"exactly-once: {source} is not assigned here") from None
        tid = f"{self.app.conf.id}-{group}-{number}"
        result: Awaitable[Any] = await self.producer.send(
            topic, key, value, partition, timestamp, headers, transactional_id=tid
        )
        return result


class GatedConsumer(Consumer):
    """Faust's aiokafka consumer: commits between events when the app has a barrier
    (exactly-once), and releases the gate before offsets are committed."""

    async def force_commit(
        self, topics: Any = None, start_new_transaction: bool = True
    ) -> bool:
        barrier: CommitBarrier | None = getattr(self.app, "commit_barrier", None)
        if barrier is None:
            done: bool = await super().force_commit(topics, start_new_transaction)
            return done
        async with barrier.closed():  # the offsets to commit are read once agents rest
            done = await super().force_commit(topics, start_new_transaction)
        return done

    async def _commit_offsets(
        self, offsets: Mapping[TP, int], start_new_transaction: bool = True
    ) -> bool:
        gate: ChangelogGate | None = getattr(self.app, "changelog_gate", None)
        if gate is not None:
            await gate.release(self.app.producer)
        committed: bool = await super()._commit_offsets(
            offsets, start_new_transaction=start_new_transaction
        )
        return committed


class GatedTransport(Transport):
    Consumer = GatedConsumer
    TransactionManager = SourceTransactionManager
