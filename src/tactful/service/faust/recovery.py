"""Table recovery that ends on changelogs written in transactions.

Faust restores a changelog partition until it has applied the record at the partition's
end offset minus one. A changelog written in transactions (``state_commit``, or
exactly-once) ends with a transaction marker there, not a record: Faust's recovery
would wait for a record that never comes (exactly-once, it gives up after ten idle
seconds). Here the target is the offset of the last committed record before the end,
found by reading the partition's tail with ``read_committed``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiokafka
from aiokafka.structs import TopicPartition
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth, server_list
from faust.types import TP

TAIL = 64  # records read back from the end first; widened while none is found


async def last_committed_offsets(
    consumer: Any, ends: Mapping[TP, int], *, tail: int = TAIL
) -> dict[TP, int]:
    """For each partition, the offset of its last committed record before ``ends[tp]``
    (its end offset for ``read_committed``), or -1 if it has none. ``consumer`` is a
    started aiokafka consumer with ``read_committed`` and no group."""
    parts = {tp: TopicPartition(tp.topic, tp.partition) for tp in ends}
    consumer.assign(list(parts.values()))
    begins = await consumer.beginning_offsets(list(parts.values()))
    found: dict[TP, int] = {}
    todo = {tp: end for tp, end in ends.items() if end > begins[parts[tp]]}
    found.update({tp: -1 for tp in ends if tp not in todo})
    while todo:
        starts = {tp: max(begins[parts[tp]], end - tail) for tp, end in todo.items()}
        for tp, start in starts.items():
            consumer.seek(parts[tp], start)
        last: dict[TP, int] = {}
        reading = set(todo)
        while reading:
            batch = await consumer.getmany(*(parts[tp] for tp in reading), timeout_ms=200)
            for part, records in batch.items():
                tp = TP(part.topic, part.partition)
                for record in records:
                    if record.offset < todo[tp]:
                        last[tp] = max(last.get(tp, -1), record.offset)
            for tp in list(reading):
                if await consumer.position(parts[tp]) >= todo[tp]:
                    reading.discard(tp)
        widen: dict[TP, int] = {}
        for tp, end in todo.items():
            if tp in last:
                found[tp] = last[tp]
            elif starts[tp] <= begins[parts[tp]]:
                found[tp] = -1  # nothing committed at all
            else:
                widen[tp] = end
        todo = widen
        tail *= 16
    return found


async def committed_highwaters(consumer: Any, tps: set[TP]) -> dict[TP, int]:
    """For each partition, the offset of its last committed record (-1: none), from
    the broker: its end offset for ``read_committed`` (the last stable offset, asked
    with ListOffsets), then ``last_committed_offsets``. ``consumer`` as there."""
    parts = {tp: TopicPartition(tp.topic, tp.partition) for tp in tps}
    ends = await consumer.end_offsets(list(parts.values()))
    return await last_committed_offsets(consumer, {tp: int(ends[parts[tp]]) for tp in tps})


class CommittedRecovery(Recovery):
    """Faust's recovery, with highwaters that are the last committed records.

    Under exactly-once Faust takes a changelog partition's highwater from the last
    stable offset the worker's consumer saw in a fetch response, which it does not
    have for a partition it has not fetched yet (a worker just started): the highwater
    is then -1 and the partition is not recovered at all (the tables start empty, and a
    stream clock starts again from nothing: no timer fires). There every highwater
    comes from the broker; at least once Faust asks the broker for the end offsets
    itself, and only the partitions with records need looking at (no probe at the
    start of a new deployment)."""

    async def _build_highwaters(
        self, consumer: Any, tps: Any, destination: Any, title: str
    ) -> None:
        await super()._build_highwaters(consumer, tps, destination, title)
        if self.app.in_transaction:
            todo = set(destination)
        else:
            todo = {tp for tp, hw in destination.items() if hw is not None and hw >= 0}
        if not todo:
            return
        for tp, offset in (await self._last_committed(todo)).items():
            destination[tp] = offset  # a Counter: update() would add

    async def _last_committed(self, tps: set[TP]) -> dict[TP, int]:
        app = self.app
        conf = app.conf
        transport: Any = app.transport
        probe = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=server_list(transport.url, transport.default_port),
            client_id=f"{conf.broker_client_id}-recovery",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            request_timeout_ms=int(conf.broker_request_timeout * 1000.0),
            **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
        )
        await probe.start()
        try:
            return await asyncio.wait_for(committed_highwaters(probe, tps),
                                          timeout=conf.broker_request_timeout)
        finally:
            await probe.stop()


class CommittedTableManager(TableManager):
    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = CommittedRecovery(
                self.app, self, beacon=self.beacon, loop=self.loop
            )
        return self._recovery
