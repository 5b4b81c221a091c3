"""The changelog gate: a held table record reaches the producer only after every output
sent before it was flushed, and records of revoked partitions never do."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tactful.service.gate import ChangelogGate


@dataclass
class Msg:
    key: bytes
    partition: int
    value: bytes = b""


@dataclass
class Fut:
    message: Msg


class Producer:
    """Records what happens, in order: sends of outputs, flushes, released records."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.pending: list[str] = []  # sent, not yet on the broker
        self.released: list[Any] = []

    def send(self, what: str) -> None:
        self.pending.append(what)
        self.log.append(f"send {what}")

    async def flush(self) -> None:
        await asyncio.sleep(0)
        self.log.append(f"flushed {','.join(self.pending)}")
        self.pending.clear()

    def send_soon(self, fut: Any) -> None:
        self.log.append(f"changelog {fut.message.key.decode()}")
        self.released.append(fut)


class Table:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def set(self, gate: ChangelogGate, key: bytes, value: bytes, partition: int) -> None:
        self.data[key] = value
        gate.hold(self, Fut(Msg(key, partition, value)))


async def test_held_records_follow_the_flush_of_outputs_sent_before_them() -> None:
    gate, producer, table = ChangelogGate(), Producer(), Table()
    producer.send("intent-1")
    table.set(gate, b"cust-1", b"v1", 0)
    producer.send("intent-2")
    table.set(gate, b"cust-2", b"v2", 1)
    assert producer.log == ["send intent-1", "send intent-2"]  # nothing released yet
    await gate.release(producer)
    assert producer.log == [
        "send intent-1", "send intent-2",
        "flushed intent-1,intent-2",
        "changelog cust-1", "changelog cust-2",
    ]
    assert gate.held == [] and gate.released == 2


async def test_release_with_nothing_held_does_not_flush() -> None:
    gate, producer = ChangelogGate(), Producer()
    producer.send("decision-1")
    await gate.release(producer)
    assert producer.log == ["send decision-1"]


async def test_records_held_during_a_release_wait_for_the_next_one() -> None:
    gate, producer, table = ChangelogGate(), Producer(), Table()
    table.set(gate, b"a", b"1", 0)
    release = asyncio.ensure_future(gate.release(producer))
    await asyncio.sleep(0)  # the release is flushing; the agent goes on meanwhile
    producer.send("intent-b")
    table.set(gate, b"b", b"1", 0)
    await release
    assert "changelog b" not in producer.log
    await gate.release(producer)
    assert producer.log[-1] == "changelog b"
    flushed_b = next(i for i, line in enumerate(producer.log)
                     if line.startswith("flushed") and "intent-b" in line)
    assert flushed_b < len(producer.log) - 1


def test_drop_forgets_revoked_partitions_and_evicts_their_keys() -> None:
    gate, table = ChangelogGate(), Table()
    table.set(gate, b"kept", b"1", 0)
    table.set(gate, b"lost", b"1", 3)
    table.set(gate, b"lost-too", b"1", 3)
    assert gate.drop({3, 5}) == 2
    assert [fut.message.key for _, fut in gate.held] == [b"kept"]
    assert table.data == {b"kept": b"1"}  # the next owner's changelog is the truth


async def test_only_the_last_record_of_a_key_is_released() -> None:
    gate, producer, table, other = ChangelogGate(), Producer(), Table(), Table()
    table.set(gate, b"cust-1", b"v1", 0)
    table.set(gate, b"cust-2", b"v1", 0)
    table.set(gate, b"cust-1", b"v2", 0)
    other.set(gate, b"cust-1", b"x", 0)  # another table: its own record
    await gate.release(producer)
    sent = sorted((f.message.key, f.message.value) for f in producer.released)
    assert sent == [(b"cust-1", b"v2"), (b"cust-1", b"x"), (b"cust-2", b"v1")]
    assert gate.released == 3 and gate.coalesced == 1
