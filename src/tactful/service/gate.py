"""At-least-once without lost intents: a table's changelog never runs ahead of its outputs.

Faust writes a table change to the changelog as soon as the value is set, while the
intents, decisions and internal messages the same event produced are still in the
producer's buffer. A crash between the two leaves a changelog that says "the cart
intent was sent" and a topic without it: the input is processed again after the
restart (its offset was not committed), the engine sees its own duplicate, and the
intent is gone for good.

The gate keeps the order ``outputs → state → offsets``:

1. the worker sends an event's outputs before it stores the new state;
2. :class:`GatedTable` holds each changelog record back instead of producing it (only
   the last record of a key is produced when several wait: fewer changelog writes);
3. before offsets are committed, :class:`GatedConsumer` flushes the producer (so every
   output sent so far is on the broker), then releases the held changelog records,
   and Faust's own commit flushes them before it writes the offsets.

A crash at any point then loses only work whose input is processed again: the outputs
it repeats carry the same deterministic ids (at least once, never at most once).
Records of partitions this worker loses in a rebalance are dropped, and their keys
evicted from the local store, so a later owner's changelog is the only truth.

With ``processing_guarantee=exactly_once`` the gate is off: Kafka transactions commit
outputs, changelog and offsets atomically.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from faust.tables.table import Table
from faust.transport.drivers.aiokafka import Consumer, Transport
from faust.types import TP, FutureMessage

log = logging.getLogger("tactful.gate")


class ChangelogGate:
    """Changelog records waiting for the outputs sent before them to be delivered."""

    def __init__(self) -> None:
        self.held: list[tuple[Any, FutureMessage]] = []
        self.released = 0
        self.coalesced = 0  # records not sent: a later one of the same key replaced them

    def hold(self, table: Any, fut: FutureMessage) -> None:
        self.held.append((table, fut))

    async def release(self, producer: Any) -> None:
        """Deliver every output sent so far, then hand the held records to the producer:
        the last one of each key only (Kafka Streams' record cache does the same), as the
        changelog is compacted to that anyway."""
        if not self.held:
            return
        batch, self.held = self.held, []
        latest: dict[tuple[int, int | None, Any], FutureMessage] = {}
        for table, fut in batch:
            latest[(id(table), fut.message.partition, fut.message.key)] = fut
        await producer.flush()
        for fut in latest.values():
            producer.send_soon(fut)
        self.released += len(latest)
        self.coalesced += len(batch) - len(latest)

    def drop(self, partitions: Iterable[int]) -> int:
        """Forget held records of partitions this worker no longer owns; evict their keys
        from the local store so that only the changelog speaks for them."""
        lost = set(partitions)
        kept: list[tuple[Any, FutureMessage]] = []
        dropped = 0
        for table, fut in self.held:
            if fut.message.partition in lost:
                dropped += 1
                with contextlib.suppress(KeyError):
                    del table.data[fut.message.key]
            else:
                kept.append((table, fut))
        self.held = kept
        if dropped:
            log.info("dropped held changelog records of revoked partitions",
                     extra={"records": dropped})
        return dropped


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


class GatedConsumer(Consumer):
    """Faust's aiokafka consumer, releasing the gate before offsets are committed."""

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
