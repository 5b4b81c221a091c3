"""The changelog gate: a held table record reaches the producer only after every output
sent before it was flushed, and records of revoked partitions never do; the commit
barrier: a commit happens between events only."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.types import TP

from tactful.service.faust.app import bytes_table, create_app
from tactful.service.faust.gate import (
    ABSENT,
    ChangelogGate,
    CommitBarrier,
    forget_uncommitted_state,
)
from tactful.service.settings import from_env


class Channel:
    """Where the gate hands a record over by default (a Faust topic)."""

    def __init__(self) -> None:
        self.published: list[Any] = []

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        self.published.append(fut)


@dataclass
class Msg:
    key: bytes
    partition: int
    value: bytes = b""
    channel: Channel = field(default_factory=Channel)


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

    async def publish(self, fut: Any) -> None:
        """The gate hands a record over (into the producer's accumulator)."""
        self.log.append(f"changelog {fut.message.key.decode()}")
        self.released.append(fut)


class Table:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.records: list[Fut] = []

    def set(self, gate: ChangelogGate, key: bytes, value: bytes, partition: int,
            source: TP | None = None, offset: int = -1, first: int | None = None) -> None:
        # As Faust does: the changelog record first, then the store.
        fut = Fut(Msg(key, partition, value))
        self.records.append(fut)
        gate.hold(self, fut, self.data.get(key, ABSENT), source, offset, first)
        self.data[key] = value


async def test_held_records_follow_the_flush_of_outputs_sent_before_them() -> None:
    gate, producer, table = ChangelogGate(), Producer(), Table()
    producer.send("intent-1")
    table.set(gate, b"cust-1", b"v1", 0)
    producer.send("intent-2")
    table.set(gate, b"cust-2", b"v2", 1)
    assert producer.log == ["send intent-1", "send intent-2"]  # nothing released yet
    await gate.release(producer, producer.publish)
    assert producer.log == [
        "send intent-1", "send intent-2",
        "flushed intent-1,intent-2",
        "changelog cust-1", "changelog cust-2",
    ]
    assert gate.held == [] and gate.released == 2


async def test_release_with_nothing_held_does_not_flush() -> None:
    gate, producer = ChangelogGate(), Producer()
    producer.send("decision-1")
    await gate.release(producer, producer.publish)
    assert producer.log == ["send decision-1"]


async def test_records_held_during_a_release_wait_for_the_next_one() -> None:
    gate, producer, table = ChangelogGate(), Producer(), Table()
    table.set(gate, b"a", b"1", 0)
    release = asyncio.ensure_future(gate.release(producer, producer.publish))
    await asyncio.sleep(0)  # the release is flushing; the agent goes on meanwhile
    producer.send("intent-b")
    table.set(gate, b"b", b"1", 0)
    await release
    assert "changelog b" not in producer.log
    await gate.release(producer, producer.publish)
    assert producer.log[-1] == "changelog b"
    flushed_b = next(i for i, line in enumerate(producer.log)
                     if line.startswith("flushed") and "intent-b" in line)
    assert flushed_b < len(producer.log) - 1


async def test_only_the_state_of_committed_inputs_goes_out() -> None:
    # An agent may be halfway through an input when offsets are committed: what it
    # wrote waits for the commit that covers its input (the next offset to read).
    gate, producer, table = ChangelogGate(), Producer(), Table()
    consent, internal = TP("consent", 0), TP("customer-events", 0)
    table.set(gate, b"k1", b"1", 0, consent, 10)
    table.set(gate, b"k2", b"1", 0, internal, 5)
    table.set(gate, b"k2", b"2", 0, consent, 11)  # includes the uncommitted input at 5
    table.set(gate, b"k3", b"1", 0, consent, 12)
    await gate.release(producer, producer.publish, upto={consent: 12, internal: 5})
    assert [(f.message.key, f.message.value) for f in producer.released] == [(b"k1", b"1")]
    # consent@11 was committed before: k2's last record goes once internal@5 is.
    await gate.release(producer, producer.publish, upto={internal: 6})
    assert [(f.message.key, f.message.value) for f in producer.released][1:] == [
        (b"k2", b"2")]
    assert [entry.fut.message.key for entry in gate.held] == [b"k3"]


async def test_an_input_s_records_go_out_together_or_not_at_all() -> None:
    # "apply" (customer-events@7, committed) writes the customer, who waits behind an
    # uncommitted consent@3, and deletes a pending entry: if the delete went out alone,
    # a rebalance would lose the entry and the customer's update both.
    gate, producer, table = ChangelogGate(), Producer(), Table()
    consent, internal = TP("consent", 0), TP("customer-events", 0)
    table.set(gate, b"cust", b"v1", 0, consent, 3)
    table.set(gate, b"cust", b"v2", 0, internal, 7)
    table.set(gate, b"pending/5", b"", 0, internal, 7)
    table.set(gate, b"other", b"x", 0, internal, 6)
    await gate.release(producer, producer.publish, upto={internal: 8})
    assert [f.message.key for f in producer.released] == [b"other"]
    await gate.release(producer, producer.publish, upto={consent: 4})
    assert [f.message.key for f in producer.released][1:] == [b"cust", b"pending/5"]


def test_no_offset_is_committed_past_an_input_whose_records_wait() -> None:
    # The batch of customer-events@5..7 wrote the partition's clock; Faust's commit
    # offset lags (7: the batch's last input is not in it), so that record waits. The
    # consent@3 after it wrote the same clock: it waits behind it, and committing
    # consent's offset 4 would commit the consent without its state (a crash then loses
    # it: the next owner starts after it, on a state without it).
    gate, table = ChangelogGate(), Table()
    consent, internal = TP("consent", 0), TP("customer-events", 0)
    table.set(gate, b"clock", b"1", 0, internal, 7, first=5)
    table.set(gate, b"clock", b"2", 0, consent, 3)
    table.set(gate, b"pending/3", b"e", 0, consent, 3)
    assert gate.committable({internal: 7, consent: 4}) == {internal: 5, consent: 3}
    assert gate.committable({internal: 8, consent: 4}) == {internal: 8, consent: 4}


def test_holding_an_offset_back_can_make_more_inputs_wait() -> None:
    # Three input topics of partition 0, whose records share the partition's keys.
    gate, table = ChangelogGate(), Table()
    a, b, c = TP("a", 0), TP("b", 0), TP("c", 0)
    table.set(gate, b"x", b"1", 0, a, 5)  # not committed with a: 5
    table.set(gate, b"x", b"2", 0, b, 9)  # behind it: b stops at 9 ...
    table.set(gate, b"y", b"1", 0, b, 10)  # ... so this input waits too ...
    table.set(gate, b"y", b"2", 0, c, 4)  # ... and this one behind it
    assert gate.committable({a: 5, b: 11, c: 5}) == {a: 5, b: 9, c: 4}


async def test_a_commit_holds_an_offset_back_and_offers_its_acks_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    committed: list[dict[TP, int]] = []
    consumer = _consumer(monkeypatch, committed)
    first, second = TP("in", 0), TP("other", 0)
    consumer.assignment = lambda: {first, second}
    table = Table()
    gate = consumer.app.changelog_gate
    table.set(gate, b"k", b"1", 0, first, 12, first=10)  # its inputs 10..12 not acked yet
    table.set(gate, b"k", b"2", 0, second, 30)  # acked and wanted: waits behind it
    await consumer._commit_offsets({first: 10, second: 31})
    assert committed == [{first: 10, second: 30}]
    assert consumer._acked[second] == [30]  # taken by Faust, given back
    await consumer._commit_offsets({first: 13, second: 31})
    assert committed[-1] == {first: 13, second: 31}
    assert gate.held == []


async def test_acks_held_back_are_not_offered_again_after_a_rebalance_meanwhile(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The partitions start again from their committed offsets after a rebalance: acks
    # given back then would make a later commit skip inputs not yet processed again.
    import faust.transport.consumer as base

    committed: list[dict[TP, int]] = []
    consumer = _consumer(monkeypatch, committed)
    first, second = TP("in", 0), TP("other", 0)
    consumer.assignment = lambda: {first, second}
    table = Table()
    table.set(consumer.app.changelog_gate, b"k", b"1", 0, first, 12, first=10)
    table.set(consumer.app.changelog_gate, b"k", b"2", 0, second, 30)

    async def rebalanced(self: Any, offsets: Any, start_new_transaction: bool = True
                         ) -> bool:
        committed.append(dict(offsets))
        self.revocations += 1  # a revocation while the commit was under way
        return True

    monkeypatch.setattr(base.Consumer, "_commit_offsets", rebalanced)
    await consumer._commit_offsets({first: 10, second: 31})
    assert committed == [{first: 10, second: 30}]
    assert consumer._acked[second] == []


async def test_a_drop_after_a_partial_release_undoes_to_what_went_out() -> None:
    gate, producer, table = ChangelogGate(), Producer(), Table()
    source = TP("consent", 0)
    table.set(gate, b"k", b"1", 0, source, 1)
    table.set(gate, b"k", b"2", 0, source, 2)
    await gate.release(producer, producer.publish, upto={source: 2})
    gate.drop({0}, restore=True)
    assert table.data == {b"k": b"1"}


def test_drop_forgets_held_records_of_revoked_partitions() -> None:
    gate, table = ChangelogGate(flush_outputs=False), Table()
    table.set(gate, b"kept", b"1", 0)
    table.set(gate, b"lost", b"1", 3)
    table.set(gate, b"lost-too", b"1", 3)
    assert gate.drop({3, 5}) == 2
    assert [entry.fut.message.key for entry in gate.held] == [b"kept"]
    assert table.data == {b"kept": b"1", b"lost": b"1", b"lost-too": b"1"}


def test_at_least_once_drop_puts_dropped_keys_back_to_their_changelog_value() -> None:
    gate, table = ChangelogGate(), Table()
    table.data[b"known"] = b"0"  # recovered from the changelog earlier
    table.set(gate, b"kept", b"1", 0)
    table.set(gate, b"known", b"1", 3)
    table.set(gate, b"known", b"2", 3)
    table.set(gate, b"new", b"1", 3)
    assert gate.drop({3}, restore=True) == 3
    # A partition this worker gets back is not recovered again: its store must hold
    # what the changelog holds, the value before the first dropped write.
    assert table.data == {b"kept": b"1", b"known": b"0"}
    assert [entry.fut.message.key for entry in gate.held] == [b"kept"]


async def test_after_a_release_a_drop_undoes_to_the_released_value() -> None:
    gate, producer, table = ChangelogGate(), Producer(), Table()
    table.set(gate, b"cust-1", b"v1", 0)
    await gate.release(producer, producer.publish)
    table.set(gate, b"cust-1", b"v2", 0)
    gate.drop({0}, restore=True)
    assert table.data == {b"cust-1": b"v1"}


async def test_a_write_during_a_release_undoes_to_the_value_that_release_hands_over() -> None:
    gate, producer, table = ChangelogGate(), Producer(), Table()
    table.set(gate, b"cust-1", b"v1", 0)
    release = asyncio.ensure_future(gate.release(producer, producer.publish))
    await asyncio.sleep(0)  # flushing outputs: the agent writes the key again
    table.set(gate, b"cust-1", b"v2", 0)
    await release
    assert [f.message.value for f in producer.released] == [b"v1"]
    gate.drop({0}, restore=True)
    assert table.data == {b"cust-1": b"v1"}


def test_restore_names_the_partition_to_a_store_with_one_database_per_partition() -> None:
    class Rocks:
        """Faust's RocksDB store picks its database from the current event, of which a
        rebalance has none."""

        def __init__(self) -> None:
            self.dbs: dict[int, dict[bytes, bytes]] = {2: {b"a": b"new", b"b": b"new"}}

        def _db_for_partition(self, partition: int) -> Any:
            db = self.dbs.setdefault(partition, {})

            class DB:
                put = db.__setitem__

                @staticmethod
                def delete(key: bytes) -> None:
                    db.pop(key, None)

            return DB

    gate, table = ChangelogGate(), Table()
    table.data = Rocks()  # type: ignore[assignment]
    gate.hold(table, Fut(Msg(b"a", 2, b"new")), b"old")
    gate.hold(table, Fut(Msg(b"b", 2, b"new")), ABSENT)
    gate.drop({2}, restore=True)
    assert table.data.dbs == {2: {b"a": b"old"}}  # type: ignore[attr-defined]


def test_exactly_once_tables_are_emptied_and_recovered_from_the_start() -> None:
    # Writes of a transaction that a rebalance aborts must not survive in memory:
    # the tables start again from the committed changelog.
    app = create_app(from_env({"TACTFUL_PROCESSING_GUARANTEE": "exactly_once"}),
                     app_id="unit")
    customers = bytes_table(app, "customers", 4)
    sessions = bytes_table(app, "sessions", 4)
    customers.data[b"cust-1"] = b"uncommitted"
    sessions.data[b"sess-1"] = b"uncommitted"
    recovery = app.tables.recovery
    changelog = customers.changelog_topic.get_topic_name()
    recovery.active_offsets[TP(changelog, 0)] = 41  # where recovery would resume
    recovery.standby_offsets[TP(changelog, 1)] = 7
    recovery.active_offsets[TP("another-topic", 0)] = 5
    assert forget_uncommitted_state(app) == 2
    assert dict(customers.data.items()) == {} and dict(sessions.data.items()) == {}
    assert dict(recovery.active_offsets) == {TP("another-topic", 0): 5}
    assert dict(recovery.standby_offsets) == {}


async def test_only_the_last_record_of_a_key_is_released() -> None:
    gate, producer, table, other = ChangelogGate(), Producer(), Table(), Table()
    table.set(gate, b"cust-1", b"v1", 0)
    table.set(gate, b"cust-2", b"v1", 0)
    table.set(gate, b"cust-1", b"v2", 0)
    other.set(gate, b"cust-1", b"x", 0)  # another table: its own record
    await gate.release(producer, producer.publish)
    sent = sorted((f.message.key, f.message.value) for f in producer.released)
    assert sent == [(b"cust-1", b"v2"), (b"cust-1", b"x"), (b"cust-2", b"v1")]
    assert gate.released == 3 and gate.coalesced == 1


async def test_a_release_cancelled_while_flushing_keeps_its_records_for_the_next() -> None:
    # A stop cancels the commit task wherever it is: the records it had taken must not
    # vanish, or the offsets committed next would cover state that never reached Kafka.
    gate, producer, table = ChangelogGate(), Producer(), Table()
    table.set(gate, b"cust-1", b"v1", 0)
    release = asyncio.ensure_future(gate.release(producer, producer.publish))
    await asyncio.sleep(0)  # inside the flush
    release.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await release
    assert producer.released == [] and len(gate.held) == 1
    await gate.release(producer, producer.publish)
    assert [f.message.key for f in producer.released] == [b"cust-1"]
    assert gate.held == []


async def test_a_release_cancelled_while_handing_over_hands_the_rest_over_next_time() -> None:
    gate, producer, table = ChangelogGate(), Producer(), Table()
    table.set(gate, b"a", b"1", 0)
    table.set(gate, b"b", b"1", 0)
    calls = 0

    async def publish_then_stop(fut: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise asyncio.CancelledError
        await producer.publish(fut)

    with contextlib.suppress(asyncio.CancelledError):
        await gate.release(producer, publish_then_stop)
    assert [f.message.key for f in producer.released] == [b"a"]
    await gate.release(producer, producer.publish)
    assert [f.message.key for f in producer.released] == [b"a", b"b"]
    assert gate.held == []


async def test_under_transactions_the_gate_hands_over_without_flushing() -> None:
    gate, producer, table = ChangelogGate(flush_outputs=False), Producer(), Table()
    producer.send("intent-1")
    table.set(gate, b"cust-1", b"v1", 0)
    await gate.release(producer, producer.publish)
    assert producer.log == ["send intent-1", "changelog cust-1"]


async def test_a_commit_waits_for_the_event_in_progress_and_holds_the_next_back() -> None:
    barrier, log = CommitBarrier(), []

    async def agent(name: str, steps: int) -> None:
        await barrier.enter()
        try:
            for step in range(steps):
                log.append(f"{name} {step}")
                await asyncio.sleep(0)
        finally:
            barrier.leave()

    async def commit() -> None:
        async with barrier.closed():
            log.append("commit")

    first = asyncio.ensure_future(agent("e1", 3))
    await asyncio.sleep(0)  # e1 is inside its event
    committing = asyncio.ensure_future(commit())
    await asyncio.sleep(0)
    second = asyncio.ensure_future(agent("e2", 1))  # arrives while the commit waits
    await asyncio.gather(first, committing, second)
    assert log == ["e1 0", "e1 1", "e1 2", "commit", "e2 0"]


async def test_an_agent_cancelled_inside_an_event_does_not_block_commits() -> None:
    barrier = CommitBarrier()
    entered = asyncio.Event()

    async def stuck() -> None:
        await barrier.enter()
        try:
            entered.set()
            await asyncio.Event().wait()
        finally:
            barrier.leave()

    task = asyncio.ensure_future(stuck())
    await entered.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    async with barrier.closed():
        assert barrier.busy == 0


class _Assignor:
    def group_for_topic(self, topic: str) -> int:
        return {"in.storefront": 1, "app-customers-changelog": 1}[topic]

    def is_standby(self, tp: TP) -> bool:
        return False


class _TxnProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int | None, str | None]] = []

    async def send(self, topic: str, key: Any, value: Any, partition: int | None,
                   timestamp: Any, headers: Any, *, transactional_id: str | None) -> None:
        self.sent.append((topic, partition, transactional_id))


def _manager() -> tuple[Any, _TxnProducer]:
    from types import SimpleNamespace

    from tactful.service.faust.gate import SourceTransactionManager

    manager: Any = SourceTransactionManager.__new__(SourceTransactionManager)
    producer = _TxnProducer()
    manager.app = SimpleNamespace(assignor=_Assignor(), conf=SimpleNamespace(id="app"))
    manager.producer = producer
    manager.failed = {}
    return manager, producer


async def test_an_event_s_sends_go_into_its_source_partition_s_transaction() -> None:
    import weakref
    from types import SimpleNamespace

    from faust.streams import _current_event

    class Event:  # what Faust's stream sets while an agent works on a record
        message = SimpleNamespace(topic="in.storefront", partition=2)

    manager, producer = _manager()
    event = Event()
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        # an intent keyed to another partition, a message to a customer partition
        await manager.send("out.intents", b"cust-9", b"{}", None, None, None)
        await manager.send("in.customer-events", b"cust-9", b"x", 3, None, None)
    finally:
        _current_event.reset(token)
    assert producer.sent == [("out.intents", None, "app-1-2"),
                             ("in.customer-events", 3, "app-1-2")]


async def test_outside_an_event_a_record_goes_into_its_own_partition_s_transaction() -> None:
    from faust.exceptions import ProducerSendError

    manager, producer = _manager()
    await manager.send("app-customers-changelog", b"cust-9", b"v", 1, None, None)
    assert producer.sent == [("app-customers-changelog", 1, "app-1-1")]
    with pytest.raises(ProducerSendError):  # never silently outside a transaction
        await manager.send("out.intents", b"cust-9", b"{}", None, None, None)
    with pytest.raises(ProducerSendError):
        await manager.send("not-assigned", b"k", b"v", 0, None, None)


def _consumer(monkeypatch: pytest.MonkeyPatch, committed: list[dict[TP, int]]) -> Any:
    """A GatedConsumer whose Faust base class only records what it would commit."""
    from collections import defaultdict
    from types import SimpleNamespace

    import faust.transport.consumer as base
    import faust.transport.drivers.aiokafka as driver

    from tactful.service.faust.gate import GatedConsumer

    async def commit_offsets(self: Any, offsets: Any, start_new_transaction: bool = True
                             ) -> bool:
        committed.append(dict(offsets))
        return bool(await self._commit(offsets))  # as Faust does, at least once

    class Transactions:
        sources = frozenset({"in"})

        def __init__(self) -> None:
            self.commits: list[tuple[int, list[bytes], dict[TP, int]]] = []

        async def assign(self, partitions: Any) -> None:
            return None

        async def commit(self, partition: int, records: list[Any],
                         offsets: dict[TP, int]) -> None:
            self.commits.append((partition, [f.message.key for f in records], offsets))

    async def plain_commit(self: Any, offsets: Any) -> bool:
        self.app.plain_commits.append(dict(offsets))
        return True

    monkeypatch.setattr(base.Consumer, "_commit_offsets", commit_offsets)
    monkeypatch.setattr(driver.Consumer, "_commit", plain_commit)
    consumer: Any = GatedConsumer.__new__(GatedConsumer)
    consumer.app = SimpleNamespace(changelog_gate=ChangelogGate(), producer=Producer(),
                                   commit_barrier=None, in_transaction=False,
                                   state_transactions=Transactions(), plain_commits=[])
    consumer._acked, consumer._acked_index = defaultdict(list), defaultdict(set)
    consumer._gap = defaultdict(list)
    consumer.processed = {}
    consumer.assignment = lambda: {TP("in", 0), TP("in", 1)}
    return consumer


async def test_a_late_ack_during_a_revocation_commits_nothing_of_the_revoked_partition(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import faust.transport.consumer as base

    committed: list[dict[TP, int]] = []
    consumer = _consumer(monkeypatch, committed)
    lost, kept = TP("in", 0), TP("in", 1)
    table = Table()
    table.set(consumer.app.changelog_gate, b"k", b"v", 0, lost, 991)

    async def faust_revocation(self: Any, revoked: set[TP]) -> None:
        for tp in revoked:  # Faust forgets the acked offsets 934..991 ...
            self._acked.pop(tp, None)
        self._acked[lost].append(992)  # ... the event in hand is acked afterwards ...
        await self._commit_offsets({lost: 993, kept: 50})  # ... and wait_empty commits

    monkeypatch.setattr(base.Consumer, "on_partitions_revoked", faust_revocation)
    await consumer.on_partitions_revoked({lost})
    assert committed == [{kept: 50}]  # 993 would skip inputs whose state is dropped
    assert consumer.app.plain_commits == [{kept: 50}]  # no state of partition 1 waits
    assert [e.fut.message.key for e in consumer.app.changelog_gate.held] == [b"k"]
    assert lost not in consumer._acked  # the stale ack is not committed later either

    async def faust_assignment(self: Any, assigned: set[TP], generation_id: int = 0) -> None:
        return None

    monkeypatch.setattr(base.Consumer, "on_partitions_assigned", faust_assignment)
    await consumer.on_partitions_assigned({lost})  # assigned again: commits resume
    await consumer._commit_offsets({lost: 992})
    assert committed[-1] == {lost: 992}
    assert consumer.app.changelog_gate.held == []  # its input committed: state goes out
    # ... with the offset, in the partition's transaction.
    assert consumer.app.state_transactions.commits == [(0, [b"k"], {lost: 992})]


async def test_a_failed_transactional_send_stops_its_transaction_from_committing() -> None:
    from faust.exceptions import ProducerSendError

    manager, _ = _manager()
    failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    failed.set_exception(RuntimeError("batch failed"))
    manager._sent(failed, "app-1-0", "app-customers-changelog")
    with pytest.raises(ProducerSendError, match="app-1-0"):
        await manager.commit({TP("in.storefront", 0): 10})


async def test_a_commit_into_a_transaction_that_has_ended_commits_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A stop: the last commit finds the partition's transaction already ended. It
    # reports that nothing was committed instead of failing the stop (which then hung).
    import faust.transport.consumer as base
    from aiokafka.errors import IllegalOperation

    async def ended(self: Any, offsets: Any, start_new_transaction: bool = True) -> bool:
        raise IllegalOperation("Not in the middle of a transaction")

    monkeypatch.setattr(base.TransactionManager, "commit", ended)
    manager, _ = _manager()
    assert await manager.commit({TP("in.storefront", 0): 10}) is False


async def test_the_seek_to_committed_offsets_happens_with_the_flow_stopped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Records fetched while Faust's recovery seeks would reach the stream queues and be
    # emptied out with them when it resumes the flow: inputs never processed.
    import faust.transport.consumer as base

    consumer = _consumer(monkeypatch, [])
    consumer.flow_active = True
    consumer.can_resume_flow, consumer.suspend_flow = asyncio.Event(), asyncio.Event()
    seen: list[bool] = []

    async def faust_seek(self: Any) -> None:
        seen.append(self.flow_active)

    monkeypatch.setattr(base.Consumer, "perform_seek", faust_seek)
    await consumer.perform_seek()
    assert seen == [False]
    assert not consumer.flow_active  # recovery resumes it once the seek is done


async def test_a_rebalance_ends_every_open_transaction_not_only_the_revoked_ones() -> None:
    # The tables are emptied and every uncommitted input is processed again: a kept open
    # transaction would commit their outputs twice.
    manager, producer = _manager()
    calls: list[str] = []

    async def stop_transaction(tid: str) -> None:
        calls.append(f"stop {tid}")
        producer._transaction_producers.pop(tid, None)

    async def maybe_begin_transaction(tid: str) -> None:
        calls.append(f"begin {tid}")

    producer._transaction_producers = {"app-1-0": object(), "app-1-1": object()}
    producer.stop_transaction = stop_transaction  # type: ignore[attr-defined]
    producer.maybe_begin_transaction = maybe_begin_transaction  # type: ignore[attr-defined]
    manager.failed = {"app-1-0": RuntimeError("aborted with its transaction")}
    manager.log = __import__("logging").getLogger("test")
    storefront_0 = TP("in.storefront", 0)
    await manager.on_rebalance({storefront_0}, set(), set())  # partition 0 stays
    assert calls == ["stop app-1-0", "stop app-1-1", "begin app-1-0"]
    assert manager.failed == {}


class ChangelogTable(Table):
    """A table whose changelog topic builds the records the gate writes back."""

    key_serializer = value_serializer = "raw"

    def __init__(self, channel: Channel) -> None:
        super().__init__()

        class Topic:
            @staticmethod
            def as_future_message(*, key: bytes, value: bytes | None, partition: int,
                                  **_: Any) -> Fut:
                return Fut(Msg(key, partition, value, channel))  # type: ignore[arg-type]

        self.changelog_topic = Topic()


class Commits:
    """Stands for the per-partition state transactions: records what each got."""

    def __init__(self, failing: set[int] | None = None) -> None:
        self.failing = failing or set()
        self.got: dict[int, tuple[list[tuple[bytes, bytes]], dict[TP, int]]] = {}
        self.plain_commits: list[dict[TP, int]] = []

    async def __call__(self, partition: int, records: list[Any], offsets: dict[TP, int]) -> None:
        await asyncio.sleep(0)
        if partition in self.failing:
            raise RuntimeError("not committed")
        self.got[partition] = ([(f.message.key, f.message.value) for f in records], offsets)

    async def plain(self, offsets: dict[TP, int]) -> bool:
        """Offsets of partitions with no state: one plain commit."""
        await asyncio.sleep(0)
        self.plain_commits.append(offsets)
        return True


async def test_a_commit_puts_each_partition_s_state_and_offsets_in_one_call() -> None:
    gate, table = ChangelogGate(), Table()
    s0, s1, c1 = TP("storefront", 0), TP("storefront", 1), TP("consent", 1)
    table.set(gate, b"a", b"1", 0, s0, 4)
    table.set(gate, b"a", b"2", 0, s0, 5)
    table.set(gate, b"b", b"1", 1, s1, 7)
    table.set(gate, b"c", b"1", 1, s1, 9)  # not covered: waits
    commits = Commits()
    assert await gate.commit({s0: 6, s1: 8, c1: 3}, commits, commits.plain)
    assert commits.plain_commits == []
    assert commits.got == {
        0: ([(b"a", b"2")], {s0: 6}),  # only the last record of a key
        1: ([(b"b", b"1")], {s1: 8, c1: 3}),
    }
    assert [e.fut.message.key for e in gate.held] == [b"c"]
    assert gate.committed == {s0: 6, s1: 8, c1: 3}
    # What went out is what a drop now undoes to.
    table.set(gate, b"a", b"3", 0, s0, 10)
    gate.drop({0, 1}, restore=True)
    assert table.data == {b"a": b"2", b"b": b"1"}


async def test_a_partition_whose_commit_fails_keeps_its_state_held_for_the_drop() -> None:
    gate, table = ChangelogGate(), Table()
    s0, s1 = TP("storefront", 0), TP("storefront", 1)
    table.set(gate, b"kept", b"1", 0, s0, 1)
    table.set(gate, b"lost", b"1", 1, s1, 1)
    commits = Commits(failing={1})
    assert not await gate.commit({s0: 2, s1: 2}, commits, commits.plain)
    assert list(commits.got) == [0]
    assert [e.fut.message.key for e in gate.held] == [b"lost"]
    assert gate.committed == {s0: 2}
    # Neither its state nor its offsets were committed: the revocation that follows
    # puts the key back to what the changelog holds (nothing).
    await gate.dropping({1}, restore=True)
    assert table.data == {b"kept": b"1"}


async def test_offsets_of_partitions_with_no_state_go_in_one_plain_commit() -> None:
    gate, commits, table = ChangelogGate(), Commits(), Table()
    s0, tick2, tick3 = TP("storefront", 0), TP("session-events", 2), TP("session-events", 3)
    table.set(gate, b"a", b"1", 0, s0, 4)
    assert await gate.commit({s0: 5, tick2: 40, tick3: 7}, commits, commits.plain)
    assert commits.got == {0: ([(b"a", b"1")], {s0: 5})}
    assert commits.plain_commits == [{tick2: 40, tick3: 7}]
    assert gate.committed == {s0: 5, tick2: 40, tick3: 7}


async def test_a_failed_plain_commit_fails_the_commit() -> None:
    gate = ChangelogGate()

    async def refused(offsets: dict[TP, int]) -> bool:
        return False  # Faust's answer when the group rebalanced meanwhile

    assert not await gate.commit({TP("session-events", 1): 9}, Commits(), refused)
    assert gate.committed == {}


async def test_a_rebalance_waits_for_a_commit_under_way() -> None:
    gate, table = ChangelogGate(), Table()
    source = TP("consent", 0)
    table.set(gate, b"cust", b"v", 0, source, 3)
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow(partition: int, records: list[Any], offsets: dict[TP, int]) -> None:
        entered.set()
        await release.wait()

    commit = asyncio.ensure_future(gate.commit({source: 4}, slow, Commits().plain))
    await entered.wait()
    drop = asyncio.ensure_future(gate.dropping({0}, restore=True))
    await asyncio.sleep(0.01)
    assert not drop.done()  # the drop waits: the transaction may still commit
    release.set()
    assert await commit
    assert await drop == 0 and table.data == {b"cust": b"v"}


async def test_a_rebalance_waits_for_a_release_under_way_instead_of_cutting_it_in_two() -> None:
    # An input's records go out together: a drop between two of them would leave the
    # changelog with one (say, the "applied up to" mark) and not the other.
    gate, producer, table = ChangelogGate(), Producer(), Table()
    source = TP("consent", 0)
    table.set(gate, b"applied", b"213", 0, source, 213)
    table.set(gate, b"pending/213", b"e", 0, source, 213)

    async def slow_publish(fut: Any) -> None:
        await producer.publish(fut)
        await asyncio.sleep(0)

    release = asyncio.ensure_future(gate.release(producer, slow_publish, upto={source: 214}))
    while not producer.released:
        await asyncio.sleep(0)
    dropped = await gate.dropping({0}, restore=True)  # the rebalance comes in
    await release
    assert [f.message.key for f in producer.released] == [b"applied", b"pending/213"]
    assert dropped == 0 and table.data == {b"applied": b"213", b"pending/213": b"e"}
