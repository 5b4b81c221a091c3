"""Delivery order: a table's changelog never runs ahead of the outputs computed with it.

Faust writes a table change to the changelog as soon as the value is set, while the
intents, decisions and internal messages the same event produced are still in the
producer's buffer. A crash between the two leaves a changelog that says "the cart
intent was sent" and a topic without it: the input is processed again after the
restart (its offset was not committed), the engine sees its own duplicate, and the
intent is gone for good.

At least once, the gate keeps the order ``outputs → (state + offsets)``:

1. the worker sends an event's outputs before it stores the new state;
2. :class:`GatedTable` holds each changelog record back instead of producing it (only
   the last record of a key is produced when several wait: fewer changelog writes),
   noting the input record that caused it;
3. at a commit, :class:`GatedConsumer` flushes the producer (so every output sent so
   far is on the broker), then commits each partition's held changelog records of the
   inputs the offsets cover (an agent may be halfway through the next) together with
   those offsets, in one Kafka transaction per partition (``state_commit``).

A crash at any point then loses only work whose input is processed again, on the state
its first processing started from: the outputs it repeats carry the same deterministic
ids (at least once, never at most once). When a rebalance takes partitions away, the
records still held are dropped and their keys put back, in the local store, to the
value they had when the first of them was held (the gate keeps that value: an undo
log), which is the value the changelog holds. The inputs not yet committed are applied
again by the partitions' next owner (maybe this worker again: Faust does not recover a
partition it keeps) on that state, not on a state that already contains them.

The offsets committed never pass an input whose records wait: a record of a key waits
behind an earlier record of that key, so an input committed in time can still have
its records held (the worker writes one record per key for the records of a batch,
and Faust's commit offset can lag behind its acks). The offset of such a partition
stops before that input (``committable``), and its acks go back to Faust for the next
commit.

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
from contextvars import ContextVar
from typing import Any

from aiokafka.errors import IllegalOperation
from faust.exceptions import ProducerSendError
from faust.streams import _current_event, current_event
from faust.tables.table import Table
from faust.transport.consumer import TransactionManager
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport
from faust.types import TP, FutureMessage

from tactful.service.faust.feed import drain_in_batches
from tactful.service.state_commit import StateTransactions

log = logging.getLogger("tactful.gate")

Publish = Callable[[FutureMessage], Awaitable[Any]]
# (partition, its records, its offsets) -> None, or an exception: not committed
CommitPartition = Callable[[int, list[FutureMessage], dict[TP, int]], Awaitable[None]]
# offsets -> whether they were committed
CommitOffsets = Callable[[dict[TP, int]], Awaitable[bool]]
PLAIN_COMMIT_TIMEOUT = 10.0  # seconds; a commit takes milliseconds


async def publish_message(fut: FutureMessage) -> Any:
    """Hand a held record to the producer (into its accumulator, or its transaction)."""
    return await fut.message.channel.publish_message(fut, wait=False)


# The offset of the first of the records processed as one (``event_context``): a record
# written then carries the state of all of them.
_first_offset: ContextVar[int | None] = ContextVar("tactful_first_offset", default=None)


@contextlib.contextmanager
def event_context(event: Any, first: int | None = None) -> Any:
    """Make ``event`` Faust's current event while a batch's records of one partition,
    from offset ``first`` to ``event``'s, are processed: table writes then go to that
    partition's changelog and are held by the gate under those offsets, and
    (exactly-once) sends join that partition's transaction. Faust sets it per event
    only in its own stream iterator."""
    import weakref

    token = _current_event.set(weakref.ref(event))
    first_token = _first_offset.set(first)
    try:
        yield event
    finally:
        _first_offset.reset(first_token)
        _current_event.reset(token)


ABSENT: Any = object()  # the key had no value (its undo is a delete)

Slot = tuple[int, "int | None", Any]  # (table, partition, key)


class Held:
    """A changelog record waiting at the gate, with the input records that caused it:
    those of ``source`` from ``first`` to ``offset``."""

    __slots__ = ("first", "fut", "offset", "slot", "source", "table")

    def __init__(self, table: Any, fut: FutureMessage, source: TP | None, offset: int,
                 first: int | None = None) -> None:
        self.table, self.fut, self.source, self.offset = table, fut, source, offset
        self.first = offset if first is None else first
        # the key's place: fixed once the record is made (its partition is chosen then)
        self.slot: Slot = (id(table), fut.message.partition, fut.message.key)


def restore_local(table: Any, partition: int | None, key: Any, value: Any) -> None:
    """Put ``key`` back to ``value`` (``ABSENT``: remove it) in the table's local store
    only, without a changelog record. RocksDB keeps one database per partition and
    needs the partition named (there is no current event to pick it)."""
    store = table.data
    db_for_partition = getattr(store, "_db_for_partition", None)
    if db_for_partition is not None and partition is not None:
        db = db_for_partition(partition)
        if value is ABSENT:
            db.delete(key)
        else:
            db.put(key, value)
        return
    if value is ABSENT:
        with contextlib.suppress(KeyError):
            del store[key]
    else:
        store[key] = value


class ChangelogGate:
    """Changelog records waiting until the input that caused them is committed (and
    the outputs sent before them are delivered); for each key held, the value it had
    before, put back if the records are dropped.

    ``flush_outputs=False`` under exactly-once: the outputs are in the same transaction.
    """

    def __init__(self, *, flush_outputs: bool = True) -> None:
        self.flush_outputs = flush_outputs
        self.held: list[Held] = []
        self.before: dict[Slot, Any] = {}  # value in the changelog before the held writes
        self.committed: dict[TP, int] = {}  # offsets committed so far (next to read)
        self.released = 0
        self.coalesced = 0  # records not sent: a later one of the same key replaced them
        # A release hands over every record of an input or none: a rebalance's drop
        # waits for a release under way (``dropping``), never cuts one in two.
        self.releasing = asyncio.Lock()

    def hold(self, table: Any, fut: FutureMessage, before: Any = ABSENT,
             source: TP | None = None, offset: int = -1, first: int | None = None) -> None:
        """Hold ``fut``, written while processing the records from ``first`` (default:
        ``offset``) to ``offset`` of ``source`` (None: outside any input record);
        ``before`` is the key's value in the store as it is written."""
        entry = Held(table, fut, source, offset, first)
        if entry.slot not in self.before:
            self.before[entry.slot] = before
        self.held.append(entry)

    def remembers(self, table: Any, partition: int | None, key: Any) -> bool:
        """Whether the key's value before its held writes is already kept."""
        return (id(table), partition, key) in self.before

    def _covered(self, entry: Held, upto: Mapping[TP, int] | None) -> bool:
        if upto is None or entry.source is None:
            return True
        tp = entry.source
        return entry.offset < max(upto.get(tp, -1), self.committed.get(tp, -1))

    def _releasable(self, upto: Mapping[TP, int] | None) -> list[Held]:
        return self._plan(upto)[0]

    def _plan(self, upto: Mapping[TP, int] | None
              ) -> tuple[list[Held], set[tuple[TP | None, int]]]:
        """The held records that may go out, and the inputs whose records wait: an
        input's records all go, or none of them (its state changes are one), and a
        key's records go in order (a record after one that waits includes what that
        one wrote). An input waits if it is not committed, or if one of its records
        follows a record that waits."""
        waiting: set[tuple[TP | None, int]] = {
            (e.source, e.offset) for e in self.held
            if e.source is not None and not self._covered(e, upto)}
        while True:
            blocked: set[Slot] = set()
            grew = False
            out = []
            for entry in self.held:
                event = (entry.source, entry.offset)
                if entry.slot in blocked or (entry.source is not None and event in waiting):
                    blocked.add(entry.slot)
                    if entry.source is not None and event not in waiting:
                        waiting.add(event)
                        grew = True
                else:
                    out.append(entry)
            if not grew:
                return out, waiting

    def committable(self, upto: Mapping[TP, int]) -> dict[TP, int]:
        """The offsets of ``upto`` that may be committed now. A partition's offset
        stops at the first input whose records wait (its offset is not in ``upto``,
        or one of its records follows, on its key, a record that waits): committing
        past it would commit the input without its state, which a crash then loses.
        Holding an offset back can make more inputs wait, so this runs to a fixpoint."""
        safe = dict(upto)
        while True:
            _, waiting = self._plan(safe)
            first: dict[TP, int] = {}
            for entry in self.held:
                if entry.source is not None and (entry.source, entry.offset) in waiting:
                    first[entry.source] = min(first.get(entry.source, entry.first),
                                              entry.first)
            lower = {tp: first[tp] for tp, offset in safe.items()
                     if tp in first and first[tp] < offset}
            if not lower:
                return safe
            safe.update(lower)

    def _batch(self, upto: Mapping[TP, int] | None) -> dict[Slot, list[Held]]:
        """The releasable records by key, in order: only the last of each is produced
        (Kafka Streams' record cache does the same), as the changelog is compacted to
        that anyway."""
        members: dict[Slot, list[Held]] = {}
        for entry in self._releasable(upto):
            members.setdefault(entry.slot, []).append(entry)
        return members

    def _settle(self, members: Mapping[Slot, list[Held]]) -> None:
        """These records reached the changelog: they are no longer held, and a later
        drop undoes their keys to the value they wrote."""
        handed: set[int] = set()
        for slot, entries in members.items():
            handed.update(id(e) for e in entries)
            self.released += 1
            self.coalesced += len(entries) - 1
            self.before[slot] = _value_of(entries[-1].fut)
        self.held = [entry for entry in self.held if id(entry) not in handed]
        waiting = {entry.slot for entry in self.held}
        self.before = {slot: v for slot, v in self.before.items() if slot in waiting}

    async def release(self, producer: Any, publish: Publish = publish_message,
                      upto: Mapping[TP, int] | None = None) -> int:
        """Exactly-once: hand the held records whose input is committed with ``upto``
        (or was before; None: all of them) to the open transactions, after delivering
        every output sent so far if ``flush_outputs``. Returns the number handed over.

        A release that is cancelled leaves what it had not handed over for the next one
        (a record handed over twice is the same value twice)."""
        if not self.held:
            return 0
        async with self.releasing:
            members = self._batch(upto)
            if upto is not None:
                for tp, offset in upto.items():
                    self.committed[tp] = max(offset, self.committed.get(tp, -1))
            if not members:
                return 0
            if self.flush_outputs:
                await producer.flush()
            done: dict[Slot, list[Held]] = {}
            try:
                for slot, entries in members.items():
                    await publish(entries[-1].fut)
                    done[slot] = entries
            finally:
                self._settle(done)
            return len(done)

    async def commit(self, upto: Mapping[TP, int], commit_partition: CommitPartition,
                     commit_offsets: CommitOffsets) -> bool:
        """At least once: commit ``upto`` (next offsets to read). A partition with held
        records of inputs ``upto`` covers commits them with its offsets in one
        transaction (``commit_partition``, see ``state_commit``); the offsets of the
        others go in one plain commit (``commit_offsets``). The outputs are flushed by
        the caller before. Returns False if any of it failed: a partition whose commit
        failed keeps its records held (a later commit, or the drop at the revocation
        that follows, deals with them)."""
        async with self.releasing:
            members = self._batch(upto)
            records: dict[int, list[Slot]] = {}
            for slot, entries in members.items():
                # A table record's partition is its input's (the tables are co-partitioned).
                partition = entries[-1].fut.message.partition
                if partition is None:
                    partition = entries[-1].source.partition if entries[-1].source else 0
                records.setdefault(partition, []).append(slot)
            offsets: dict[int, dict[TP, int]] = {}
            for tp, offset in upto.items():
                offsets.setdefault(tp.partition, {})[tp] = offset
            partitions = sorted(records)
            plain = {tp: o for p, tps in offsets.items() if p not in records
                     for tp, o in tps.items()}
            calls: list[Awaitable[Any]] = [
                commit_partition(p, [members[s][-1].fut for s in records[p]],
                                 offsets.get(p, {})) for p in partitions]
            if plain:
                calls.append(commit_offsets(plain))
            results: list[Any] = await asyncio.gather(*calls, return_exceptions=True)
            ok = True
            for result in results:
                if isinstance(result, BaseException) and not isinstance(result, Exception):
                    raise result  # cancelled: the stop goes on
            settled: dict[Slot, list[Held]] = {}
            for partition, result in zip(partitions, results, strict=False):
                if isinstance(result, BaseException):
                    ok = False
                    log.warning("state and offsets of a partition not committed",
                                extra={"partition": partition, "error": str(result)})
                    continue
                settled.update((s, members[s]) for s in records[partition])
                self._note_committed(offsets.get(partition, {}))
            # Once for every committed partition: settling walks all that is held.
            self._settle(settled)
            if plain:
                if results[-1] is True:
                    self._note_committed(plain)
                else:
                    ok = False
            return ok

    def _note_committed(self, offsets: Mapping[TP, int]) -> None:
        for tp, offset in offsets.items():
            self.committed[tp] = max(offset, self.committed.get(tp, -1))

    async def dropping(self, partitions: Iterable[int], *, restore: bool = False) -> int:
        """``drop`` once no release is handing records over."""
        async with self.releasing:
            return self.drop(partitions, restore=restore)

    def drop(self, partitions: Iterable[int], *, restore: bool = False) -> int:
        """Forget held records of these partitions: their inputs are applied again by
        the partitions' next owner. ``restore`` (at least once) also puts their keys
        back, in the local store, to the value the changelog holds, so the state is
        not ahead of the committed offsets (re-applied internal messages are not all
        idempotent). Exactly-once empties the tables instead
        (``forget_uncommitted_state``)."""
        lost = set(partitions)
        kept = []
        undone: set[Slot] = set()
        for entry in self.held:
            partition = entry.fut.message.partition
            if partition in lost:
                slot = entry.slot
                if slot not in undone:
                    undone.add(slot)
                    before = self.before.pop(slot, ABSENT)
                    if restore:
                        restore_local(entry.table, partition, entry.fut.message.key, before)
            else:
                kept.append(entry)
        dropped = len(self.held) - len(kept)
        self.held = kept
        for tp in [tp for tp in self.committed if tp.partition in lost]:
            del self.committed[tp]  # the next assignment starts from Kafka's offsets
        return dropped


def _value_of(fut: FutureMessage) -> Any:
    value = fut.message.value
    return ABSENT if value is None else value


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
        event = current_event()
        source, offset = (None, -1) if event is None else (event.message.tp,
                                                            event.message.offset)
        first = None if event is None else _first_offset.get()
        # The value before matters for the first held write of a key only: one store
        # read per key and commit interval, not per write.
        known = gate.remembers(self, fut.message.partition, key)
        gate.hold(self, fut, ABSENT if known else self.data.get(key, ABSENT), source, offset,
                  first)
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failed: dict[str, BaseException] = {}

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
        if isinstance(result, asyncio.Future):
            result.add_done_callback(lambda f: self._sent(f, tid, topic))
        return result

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP]
    ) -> None:
        """Every open transaction ends at a rebalance, not only those of the partitions
        that leave. The worker empties its tables (``forget_uncommitted_state``) and
        processes every uncommitted input again: a transaction kept open across the
        rebalance (Faust keeps those of the partitions that stay) would commit their
        outputs a second time, and hold back the read_committed readers of every topic
        it wrote to meanwhile. A stopped producer's transaction is aborted when the next
        producer with its id starts, here or on the worker that gets its partition."""
        open_ids = sorted(self.producer._transaction_producers)  # type: ignore[attr-defined]
        await self._stop_transactions(open_ids)
        self.failed.clear()  # those transactions are aborted
        await super().on_rebalance(assigned, set(), newly_assigned)

    def _sent(self, fut: asyncio.Future[Any], tid: str, topic: str) -> None:
        """A send that failed poisons its transaction: committing it would make the
        input's offset visible without the record (aiokafka completes a transaction
        whose batch failed). The commit refuses, the worker stops, the transaction is
        aborted, and the next start processes the input again."""
        if fut.cancelled() or fut.exception() is None:
            return
        exc = fut.exception()
        self.failed.setdefault(tid, exc)  # type: ignore[arg-type]
        log.error("a transactional send failed; the transaction will not be committed",
                  extra={"transactional_id": tid, "topic": topic, "error": type(exc).__name__})

    def abandon(self, why: BaseException) -> None:
        """Work was cut off halfway through a batch (the worker stops, or an agent
        failed): some of its records may be in the open transactions without the
        offsets of their inputs. None of those transactions may commit; they are
        aborted when the partitions' producers start again, here or elsewhere."""
        for tid in self.producer._transaction_producers:  # type: ignore[attr-defined]
            self.failed.setdefault(tid, why)
        self.failed.setdefault("*", why)

    async def commit(self, offsets: Mapping[TP, int],
                     start_new_transaction: bool = True) -> bool:
        if self.failed:
            tid, exc = next(iter(self.failed.items()))
            raise ProducerSendError(f"exactly-once: a send in {tid} failed: {exc!r}")
        try:
            done: bool = await super().commit(offsets, start_new_transaction)
        except IllegalOperation:
            # A partition's transaction has already ended (the worker is stopping): its
            # offsets do not commit; the next owner applies the inputs again, on the
            # committed state.
            log.warning("offsets not committed: their transaction had ended")
            return False
        return done


class GatedConsumer(Consumer):
    """Faust's aiokafka consumer: commits between events when the app has a barrier
    (exactly-once), releases the gate before offsets are committed, commits nothing
    of partitions being revoked, and seeks to the committed offsets with the flow
    stopped (``perform_seek``).

    At a revocation Faust forgets the acked offsets of the revoked partitions, then
    waits for the agents to finish the events in hand and commits. The ack of such an
    event, arriving in between, would commit past every offset Faust forgot, whose
    state the gate is about to drop: inputs lost. Their next owner processes them
    again instead.
    """

    revoking: frozenset[TP] = frozenset()
    revocations = 0  # how many rebalances have revoked partitions here

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # topic-partition -> the offset after the last input processed in this
        # assignment (``feed.ack``). A commit takes these (the gate then holds back
        # what may not go yet), whatever Faust's acks add up to: a gap it did not see
        # or an offset acked twice stops its count short. Exactly-once that commits
        # outputs of inputs whose offsets stay behind (the transaction holds all that
        # was sent since the last commit); at least once it keeps their state waiting.
        self.processed: dict[TP, int] = {}

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.revoking = frozenset(revoked)
        self.revocations += 1
        await super().on_partitions_revoked(revoked)
        for tp in revoked:  # acks that came in after Faust forgot the rest
            self._acked.pop(tp, None)
            self._acked_index.pop(tp, None)
            self._gap.pop(tp, None)
            self.processed.pop(tp, None)

    async def perform_seek(self) -> None:
        """Seek the stream partitions to their committed offsets with the flow stopped.

        Faust's recovery resumes the stream partitions, then seeks them, then resumes
        the flow, which empties the stream queues. The consumer flow is already running
        (recovery reads changelogs with it), so records fetched while the seek is under
        way reach the queues, move the read offset past them and are emptied out with
        the queues: inputs never processed, and never fetched again. With the flow
        stopped while seeking, every record from the committed offset on is fetched
        after the seek, and the flow resumes (queues emptied) with nothing fetched yet."""
        self.stop_flow()  # Faust resumes it once the seek is done (its only callers)
        await asyncio.sleep(0)  # the fetch loop lets go of the record in hand
        self.processed.clear()  # from the committed offsets on, again
        await super().perform_seek()

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self.revoking = frozenset()
        txns: StateTransactions | None = getattr(self.app, "state_transactions", None)
        if txns is not None:
            # Before Faust restores the tables: fences the previous owners (state_commit).
            await txns.assign({tp.partition for tp in assigned if tp.topic in txns.sources})
        await super().on_partitions_assigned(assigned, generation_id)

    async def on_stop(self) -> None:
        await super().on_stop()  # waits for the agents, then the last commit
        txns: StateTransactions | None = getattr(self.app, "state_transactions", None)
        if txns is not None:
            await txns.stop()

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        """The fetch loop: the topics the app has a feed for go to it a topic-partition's
        fetch at a time (``feed``); without feeds, Faust's loop, a record at a time."""
        feeds = getattr(self.app, "batch_feeds", None)
        if not feeds:
            await super()._drain_messages(fetcher)
            return
        await drain_in_batches(self, fetcher, feeds)

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
        if self.revoking:
            offsets = {tp: o for tp, o in offsets.items() if tp not in self.revoking}
            if not offsets:
                return False
        if self.processed:
            offsets = self._processed_offsets(offsets)
        gate: ChangelogGate | None = getattr(self.app, "changelog_gate", None)
        held_back: dict[TP, tuple[int, int]] = {}
        revocations = self.revocations
        if gate is not None:
            # No input is committed without its state: an offset stops before the
            # first input whose records wait at the gate.
            safe = gate.committable(offsets)
            held_back = {tp: (safe[tp], offset) for tp, offset in offsets.items()
                         if safe[tp] < offset}
            offsets = safe
            if held_back and self.app.in_transaction:
                # Exactly-once, every acked input's records are releasable (the commit
                # runs between batches): an offset held back commits outputs that are
                # already in its transaction without their input, written again later.
                log.warning("exactly-once: offsets held back behind their outputs",
                            extra={"partitions": len(held_back)})
        if gate is not None and self.app.in_transaction:
            # Faust discards the offsets of partitions no longer assigned: only the
            # state of inputs whose offsets are really committed may go out.
            assignment = self.assignment()
            upto = {tp: offset for tp, offset in offsets.items() if tp in assignment}
            try:
                await gate.release(self.app.producer, upto=upto)
            except IllegalOperation:
                # A partition's transaction has already ended (the worker is stopping):
                # neither its state nor its offsets commit; the next owner applies the
                # inputs again, on the committed state.
                log.warning("state not committed: its transaction had ended")
                return False
        try:
            committed: bool = await super()._commit_offsets(
                offsets, start_new_transaction=start_new_transaction
            )
        finally:
            if self.revocations == revocations:
                # (after a rebalance meanwhile, the partitions start again from their
                # committed offsets: acks of that time would skip inputs)
                self._offer_again(held_back)
        return committed

    def _processed_offsets(self, offsets: Mapping[TP, int]) -> dict[TP, int]:
        """The offsets Faust would commit, raised to the inputs processed
        (``processed``) of the partitions assigned and not being revoked; never lower
        than what was committed."""
        assignment = self.assignment()
        raised = dict(offsets)
        for tp, after in self.processed.items():
            if tp not in assignment or tp in self.revoking:
                continue
            committed = self._committed_offset.get(tp)
            if after > raised.get(tp, -1) and (committed is None or after > committed):
                raised[tp] = after
        return raised

    def _offer_again(self, held_back: Mapping[TP, tuple[int, int]]) -> None:
        """Faust took the acks up to the offsets it wanted to commit: those of the
        inputs held back go back, so that a later commit takes them once their
        records may go out."""
        assigned = self.assignment() if held_back else set()
        for tp, (start, end) in held_back.items():
            if tp not in assigned:
                continue  # revoked meanwhile: the next owner processes them again
            acked, index = self._acked[tp], self._acked_index[tp]
            for offset in range(start, end):
                if offset not in index:
                    index.add(offset)
                    acked.append(offset)
            acked.sort()

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        """At least once (Faust flushed the outputs just before): each partition's
        state and offsets in one transaction (``state_commit``)."""
        gate: ChangelogGate | None = getattr(self.app, "changelog_gate", None)
        txns: StateTransactions | None = getattr(self.app, "state_transactions", None)
        if gate is None or txns is None:
            done: bool = await super()._commit(offsets)
            return done
        await self.app.producer.flush()  # outputs before state, whoever calls this
        return await gate.commit(offsets, txns.commit, self._commit_plain)

    async def _commit_plain(self, offsets: dict[TP, int]) -> bool:
        """Offsets of partitions where no state changed: Faust's own commit, through
        the consumer's thread. A stop can end that thread with the call in its queue,
        never answered: a commit that does not come back in time did not happen."""
        try:
            done: bool = await asyncio.wait_for(super()._commit(offsets),
                                                timeout=PLAIN_COMMIT_TIMEOUT)
        except TimeoutError:
            log.warning("offsets not committed in time", extra={"partitions": len(offsets)})
            return False
        return done


async def seek_to_committed(consumer: Any, inputs: Iterable[str],
                            reset: str = "earliest") -> dict[Any, int | None]:
    """Seek every assigned partition to its committed offset, as aiokafka's
    ``seek_to_committed`` does, and each input partition with no offset above 0 too.

    aiokafka seeks only a partition whose committed offset is above 0: one with none
    (a new group, or a partition no one has committed yet) or with 0 keeps its fetch
    position. Faust seeks after the stream partitions are resumed (end of recovery)
    and a fetch loop drops what it fetched while the flow was stopped, relying on that
    seek to fetch it again: such a partition's first records were dropped and never
    fetched again (seen: the first ~1,000 records of two storefront partitions of a
    worker whose recovery ended after the backlog arrived). Here such an input
    partition goes to offset 0, or to where ``reset`` (the consumer's
    ``auto_offset_reset``) puts a partition without an offset. Other partitions (the
    changelogs, whose positions Faust's recovery sets) are left where they are."""
    committed: dict[Any, int | None] = await consumer.seek_to_committed()
    names = set(inputs)
    for tp, offset in committed.items():
        if tp.topic not in names or (offset is not None and offset > 0):
            continue
        if offset == 0:
            consumer.seek(tp, 0)
        elif reset == "latest":
            await consumer.seek_to_end(tp)
        else:
            await consumer.seek_to_beginning(tp)
    return committed


class ReadCommittedConsumerThread(AIOKafkaConsumerThread):
    """The worker's consumer reads with ``read_committed``: the tables are restored
    from committed state transactions only (an aborted one left by a crash is not).
    Its ``seek_to_committed`` also seeks the input partitions without a committed
    offset (:func:`seek_to_committed`)."""

    async def seek_to_committed(self) -> Mapping[TP, int]:
        app = self.consumer.app
        inputs = getattr(app, "batch_feeds", None) or ()
        reset = app.conf.consumer_auto_offset_reset
        return await self.call_thread(  # type: ignore[no-any-return]
            seek_to_committed, self._ensure_consumer(), tuple(inputs), reset)

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = self.consumer
        saved = consumer.in_transaction
        consumer.in_transaction = True  # what Faust decides the isolation level by
        try:
            return super()._create_worker_consumer(transport)
        finally:
            consumer.in_transaction = saved


class GatedTransport(Transport):
    Consumer = GatedConsumer
    TransactionManager = SourceTransactionManager
