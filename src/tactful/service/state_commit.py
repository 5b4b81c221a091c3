"""At least once: a partition's state and its input offsets are committed together.

The gate (``gate``) keeps a table's changelog behind the outputs. That alone still left
one window: the changelog records of a commit interval reached the broker, then the
worker died before its offsets did. The next owner of the partition restored a state
that already contained inputs it was about to process again, and an input applied
twice on such a state is not always a repeat the engine can recognise (a session bound
by a later login forwards its earlier cart events instead of handing them over with
the login): intents that replay does not give.

So each partition's changelog records and the offsets of the inputs that caused them
go into one Kafka transaction (Kafka Streams' exactly-once, applied to the state only):
the outputs are sent and flushed first, outside any transaction, and may repeat after
a crash, with the same ids; the state and the offsets never part. A partition's
transactional id is ``<app id>-state-<partition>``: the worker that is assigned the
partition starts its producer before it restores the tables, which fences the previous
owner and aborts the transaction it left open, so a worker that lost the partition
without noticing cannot commit into it any more. The tables are read back with
``read_committed``, so an aborted transaction's records are never restored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka.errors import InvalidProducerEpoch, KafkaError, ProducerFenced
from aiokafka.structs import TopicPartition
from faust.types import TP, FutureMessage

log = logging.getLogger("tactful.state_commit")

NewProducer = Callable[[str], Any]  # transactional id -> an unstarted AIOKafkaProducer
# A newer producer with the partition's transactional id started elsewhere.
FENCED = (ProducerFenced, InvalidProducerEpoch)


class StateCommitFailed(Exception):
    """A partition's transaction did not commit: neither its state nor its offsets did."""


class StateTransactions:
    """One transactional producer per assigned partition number; ``commit`` writes a
    partition's changelog records and its input offsets in one transaction."""

    def __init__(self, new_producer: NewProducer, app_id: str, group_id: str) -> None:
        self.new_producer = new_producer
        self.app_id = app_id
        self.group_id = group_id
        self.producers: dict[int, Any] = {}
        # The topics whose partitions the worker processes (set by the worker): their
        # partition numbers are the transactions it owns.
        self.sources: frozenset[str] = frozenset()
        self.committed = 0  # transactions committed, for the tests and the logs

    def transactional_id(self, partition: int) -> str:
        return f"{self.app_id}-state-{partition}"

    async def assign(self, partitions: Iterable[int]) -> None:
        """Producers for exactly these partitions. A new one fences the partition's
        previous owner and aborts the transaction it left open (``init_transactions``),
        which must happen before the tables are restored."""
        wanted = set(partitions)
        for partition in sorted(set(self.producers) - wanted):
            await self._stop(partition)
        await asyncio.gather(*(self._start(p) for p in sorted(wanted - set(self.producers))))

    async def _start(self, partition: int) -> None:
        producer = self.new_producer(self.transactional_id(partition))
        await producer.start()
        self.producers[partition] = producer

    async def _stop(self, partition: int) -> None:
        producer = self.producers.pop(partition, None)
        if producer is not None:
            try:
                await producer.stop()
            except KafkaError as exc:
                log.warning("a state producer did not stop cleanly",
                            extra={"partition": partition, "error": type(exc).__name__})

    async def stop(self) -> None:
        for partition in sorted(self.producers):
            await self._stop(partition)

    async def commit(self, partition: int, records: Sequence[FutureMessage],
                     offsets: Mapping[TP, int]) -> None:
        """Send ``records`` and commit ``offsets`` (next offsets to read) in one
        transaction. On success each record's future gets its metadata (RocksDB keeps
        the changelog offset from it); on failure nothing of it is visible and
        ``StateCommitFailed`` is raised."""
        producer = self.producers.get(partition)
        if producer is None:
            raise StateCommitFailed(f"partition {partition} is not assigned here")
        try:
            await producer.begin_transaction()
            sent = []
            for fut in records:
                message = fut.message
                topic = message.channel.get_topic_name()
                sent.append(await producer.send(
                    topic, message.value, message.key, partition=message.partition,
                    timestamp_ms=None if message.timestamp is None
                    else int(message.timestamp * 1000),
                    headers=_headers(message.headers),
                ))
            # Every record acknowledged before the commit: aiokafka would commit a
            # transaction one of whose batches failed, offsets without the state.
            await asyncio.gather(*sent)
            if offsets:
                await producer.send_offsets_to_transaction(
                    {TopicPartition(tp.topic, tp.partition): offset
                     for tp, offset in offsets.items()},
                    self.group_id,
                )
            await producer.commit_transaction()
        except FENCED as exc:
            # Another worker owns the partition now: this one is about to lose it. Its
            # producer is not started again (that would fence the new owner in turn).
            await self._stop(partition)
            raise StateCommitFailed(f"partition {partition}: fenced by its new owner") from exc
        except (TimeoutError, KafkaError, OSError) as exc:
            await self._abort(partition)
            raise StateCommitFailed(f"partition {partition}: {type(exc).__name__}") from exc
        self.committed += 1
        for fut, done in zip(records, sent, strict=True):
            if not fut.done():
                fut.set_result(done.result())
                if fut.message.callback is not None:
                    fut.message.callback(fut)

    async def _abort(self, partition: int) -> None:
        """End a failed transaction; a producer that cannot is replaced (starting the
        new one aborts it)."""
        producer = self.producers.get(partition)
        if producer is None:
            return
        try:
            await producer.abort_transaction()
        except FENCED:
            await self._stop(partition)  # as above: the partition has a new owner
        except Exception as exc:
            log.warning("a state transaction could not be aborted: its producer restarts",
                        extra={"partition": partition, "error": type(exc).__name__})
            await self._stop(partition)
            await self._start(partition)


def _headers(headers: Any) -> list[tuple[str, bytes]] | None:
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in items]
