"""The parts of Faust tactful overrides or reaches into still exist, with the shape it
was written against (tactful/service/faust/). An upgrade of faust-streaming that
removes or reshapes one fails here, by name, before it can fail in production."""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable
from typing import Any

import faust
import faust.streams
import pytest
from faust.sensors.monitor import Monitor
from faust.stores.memory import Store as MemoryStore
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.tables.table import Table
from faust.transport.consumer import TransactionManager
from faust.transport.drivers.aiokafka import (
    AIOKafkaConsumerThread,
    Consumer,
    Producer,
    Transport,
    credentials_to_aiokafka_auth,
    server_list,
)
from mode.utils.queues import FlowControlEvent


def _params(fn: Callable[..., Any]) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


# (what, the callable, the parameters tactful passes or overrides, in order)
SIGNATURES = [
    ("Table.send_changelog", Table.send_changelog,
     ["partition", "key", "value", "key_serializer", "value_serializer"]),
    ("TransactionManager.send", TransactionManager.send,
     ["topic", "key", "value", "partition", "timestamp", "headers", "transactional_id"]),
    ("TransactionManager.on_rebalance", TransactionManager.on_rebalance,
     ["assigned", "revoked", "newly_assigned"]),
    ("TransactionManager.commit", TransactionManager.commit,
     ["offsets", "start_new_transaction"]),
    ("Consumer.on_partitions_revoked", Consumer.on_partitions_revoked, ["revoked"]),
    ("Consumer.on_partitions_assigned", Consumer.on_partitions_assigned,
     ["assigned", "generation_id"]),
    ("Consumer.perform_seek", Consumer.perform_seek, []),
    ("Consumer.force_commit", Consumer.force_commit, ["topics", "start_new_transaction"]),
    ("Consumer._commit_offsets", Consumer._commit_offsets,
     ["offsets", "start_new_transaction"]),
    ("Consumer._commit", Consumer._commit, ["offsets"]),
    ("Consumer._new_consumer_thread", Consumer._new_consumer_thread, []),
    ("AIOKafkaConsumerThread._create_worker_consumer",
     AIOKafkaConsumerThread._create_worker_consumer, ["transport"]),
    ("AIOKafkaConsumerThread.seek_to_committed", AIOKafkaConsumerThread.seek_to_committed, []),
    ("AIOKafkaConsumerThread._ensure_consumer", AIOKafkaConsumerThread._ensure_consumer, []),
    ("AIOKafkaConsumerThread.call_thread", AIOKafkaConsumerThread.call_thread, ["fun"]),
    ("Recovery._build_highwaters", Recovery._build_highwaters,
     ["consumer", "tps", "destination", "title"]),
    ("Producer._settings_default", Producer._settings_default, []),
    ("Producer._settings_auth", Producer._settings_auth, []),
    # the input path (``feed``): Faust's fetch loop replaced, its steps called
    ("Consumer._drain_messages", Consumer._drain_messages, ["fetcher"]),
    ("Consumer._wait_next_records", Consumer._wait_next_records, ["timeout"]),
    ("Consumer._to_message", Consumer._to_message, ["tp", "record"]),
    ("Consumer._add_gap", Consumer._add_gap, ["tp", "offset_from", "offset_to"]),
    ("Consumer.ack", Consumer.ack, ["message"]),
    ("Consumer.commit", Consumer.commit, ["topics", "start_new_transaction"]),
    ("FlowControlEvent.manage_queue", FlowControlEvent.manage_queue, ["queue"]),
    ("Monitor.track_tp_end_offset", Monitor.track_tp_end_offset, ["tp", "offset"]),
    ("Consumer.highwater", Consumer.highwater, ["tp"]),  # the metrics' lag
    ("server_list", server_list, ["urls", "default_port"]),
]


@pytest.mark.parametrize(("what", "fn", "params"), SIGNATURES, ids=[s[0] for s in SIGNATURES])
def test_an_overridden_or_called_method_keeps_its_parameters(
        what: str, fn: Callable[..., Any], params: list[str]) -> None:
    assert _params(fn)[:len(params)] == params, f"{what} changed: {_params(fn)}"


# (class, attributes its methods set on instances, which tactful reads or clears)
INSTANCE_ATTRIBUTES = [
    (Consumer, ["_acked", "_acked_index", "_gap", "_read_offset", "_unacked_messages",
                "_committed_offset",
                "_commit_every", "_n_acked", "_buffered_partitions", "flow_active",
                "suspend_flow", "can_resume_flow"]),
    (MemoryStore, ["data", "_key_partition"]),
    (TableManager, ["_recovery"]),
]


def _source_of(cls: type) -> str:
    return "".join(inspect.getsource(k) for k in cls.__mro__
                   if k.__module__.startswith(("faust", "mode")) and k is not object)


@pytest.mark.parametrize(("cls", "names"), INSTANCE_ATTRIBUTES,
                         ids=[c.__name__ for c, _ in INSTANCE_ATTRIBUTES])
def test_the_private_attributes_tactful_touches_are_still_set(
        cls: type, names: list[str]) -> None:
    source = _source_of(cls)
    missing = [n for n in names if f"self.{n} " not in source and f"self.{n}:" not in source]
    assert not missing, f"{cls.__name__} no longer sets {missing}"


def test_the_current_event_is_a_context_variable_of_weak_references() -> None:
    # event_context() sets it while a batch's records of one partition are processed.
    var = faust.streams._current_event
    assert isinstance(var, contextvars.ContextVar)

    class Event:
        pass

    import weakref

    event = Event()
    token = var.set(weakref.ref(event))
    try:
        assert faust.streams.current_event() is event
    finally:
        var.reset(token)


def test_the_fetch_loop_tactful_replaces_still_does_what_feed_repeats() -> None:
    # feed.drain_in_batches is Faust's Consumer._drain_messages a topic-partition's fetch
    # at a time: the steps it repeats must still be the steps of Faust's loop.
    source = inspect.getsource(Consumer._drain_messages)
    for step in ("self.getmany", "self._read_offset", "self._add_gap(", "self._commit_every",
                 "self._n_acked", "self.commit()", "self.wait_first(", "self.suspend_flow",
                 "consumer_stopped_errors", "CONSUMER_FETCHING"):
        assert step in source, f"Consumer._drain_messages no longer has {step}"
    getmany = inspect.getsource(Consumer.getmany)
    for step in ("self._wait_next_records(", "self.flow_active", "consumer_generation_id",
                 "self._buffered_partitions", "track_tp_end_offset", "self.perform_seek()"):
        assert step in getmany, f"Consumer.getmany no longer has {step}"
    # and the stream iterator skips what the feed's consumer skips, tracking what it takes
    stream = inspect.getsource(faust.streams.Stream._py_aiter)
    for step in ("flow_control.is_active()", "message.generation_id", "message.tracked"):
        assert step in stream, f"Stream iteration no longer checks {step}"


def test_faust_still_seeks_its_stream_partitions_through_the_consumer_thread() -> None:
    # gate.seek_to_committed repairs what aiokafka's seek leaves (a partition without an
    # offset above 0) only if Faust's seek after recovery still goes through the thread.
    assert "self.seek_to_committed()" in inspect.getsource(Consumer.perform_seek)
    thread_seek = inspect.getsource(AIOKafkaConsumerThread.seek_to_committed)
    assert "seek_to_committed" in thread_seek and "call_thread" in thread_seek
    from aiokafka import AIOKafkaConsumer

    assert "offset > 0" in inspect.getsource(AIOKafkaConsumer.seek_to_committed), (
        "aiokafka now seeks every partition: gate.seek_to_committed may be simpler")


def test_a_consumer_message_still_carries_what_feed_reads_and_sets() -> None:
    from faust.types.tuples import ConsumerMessage

    assert {"tracked", "generation_id", "tp", "offset", "acked"} <= set(ConsumerMessage.__slots__)
    assert callable(getattr(faust.App, "FlowControlQueue", None))
    from faust.transport.consumer import CONSUMER_FETCHING
    assert isinstance(CONSUMER_FETCHING, str)
    from faust.transport.conductor import Conductor
    assert callable(getattr(Conductor, "add", None))
    assert callable(getattr(FlowControlEvent, "is_active", None))


def test_the_hooks_tactful_names_are_there() -> None:
    assert callable(getattr(faust.App, "_new_transport", None))
    assert Transport.Consumer is Consumer and Transport.TransactionManager is TransactionManager
    assert callable(getattr(TransactionManager, "_stop_transactions", None))
    assert isinstance(Producer.__dict__.get("_transaction_producers"), dict)
    assert callable(getattr(Table, "_on_changelog_sent", None))
    assert "TableManager" in faust.Settings.__dict__ or hasattr(faust.Settings, "TableManager")
    assert hasattr(TableManager, "recovery")
    assert callable(credentials_to_aiokafka_auth)
    from faust.stores.rocksdb import Store as RocksStore
    assert callable(getattr(RocksStore, "_db_for_partition", None))


def test_the_installed_faust_is_in_the_pinned_range() -> None:
    from importlib.metadata import version

    major, minor, *_ = (int(x) for x in version("faust-streaming").split(".")[:3])
    assert (major, minor) == (0, 15), "faust-streaming outside the tested range: see pyproject"


def test_the_rocksdb_options_of_tactful_tables_reach_faust_rocksdb_store(tmp_path: Any) -> None:
    # Bounded write buffers and block cache per table partition (app.ROCKSDB_OPTIONS): the
    # store Faust builds for a table must be opened with them, not with its defaults.
    from tactful.service.faust.app import ROCKSDB_OPTIONS, bytes_table

    app = faust.App("tactful-contract-rocksdb", store="rocksdb://", datadir=str(tmp_path))
    store = bytes_table(app, "customers", 4)._new_store_by_url("rocksdb://")
    opts = store.rocksdb_options
    assert (opts.write_buffer_size, opts.max_write_buffer_number, opts.block_cache_size,
            opts.block_cache_compressed_size) == (
        16 * 2**20, 2, 32 * 2**20, 8 * 2**20) == tuple(ROCKSDB_OPTIONS.values())
