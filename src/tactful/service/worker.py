"""``tactful worker``: the engine as Faust agents over changelogged tables.

Topology (README, "Worker topology"):

- **session agent** — ``tactful.storefront`` + ``tactful.session-events``, table
  ``sessions``: dedup, identity binding, unverified sessions' triggers; forwards
  a verified session's facts to the customer side.
- **sku agent** — ``tactful.inventory`` + ``tactful.sku-events``, table ``skus``:
  stock/price transitions, broadcast to every customer partition.
- **customer agent** — ``tactful.consent`` + ``tactful.feedback`` +
  ``tactful.customer-events``, table ``customers``: every guardrail, pending
  triggers, intents and decisions. It keeps, per partition, an index of which
  of its customers hold which sku (derived from the table, rebuilt on assignment).

Timers are state (``*_due`` in the tables). A timer task sends a ``Tick`` to each
internal-topic partition this worker owns, and the owning agent fires what is
due there, inside the stream's event context, so changelog writes land in the
right partition and move with it on rebalance.

Clocks: ``wall`` fires triggers as the wall clock passes them, applying events
as they arrive. ``stream`` runs on event time: sessions and skus advance with
their partition's events; the customer side buffers its inputs and applies them
in (event time, input sequence) order once every upstream partition's watermark
has passed them, which makes the worker give exactly the intents of ``tactful
replay`` for the same input (``tactful produce --until`` ends every input
partition with a clock marker).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from aiokafka.partitioner import murmur2
from mode import CrashingSupervisor

from tactful.adapters.codec import (
    FUTURE,
    Rejected,
    dead_letter,
    decode_event,
    decode_headers,
    decode_message,
    encode,
)
from tactful.adapters.topics import TopicSpec
from tactful.adapters.wire import (
    Envelope,
    Forwarded,
    Tick,
    Watermark,
    bundle,
    envelope,
    first_delivery,
    unpack,
    unpack_all,
)
from tactful.core.engine import CUSTOMER, ERASED, HOLDERS, INDEX, SESSION, SKU, Engine, Outbox
from tactful.core.errors import AgentFailure, BadEvent
from tactful.core.events import (
    TOPIC_KEY_FIELD,
    CustomerEvent,
    Event,
    PriceChange,
    StockLevel,
    StorefrontEvent,
)
from tactful.core.explain import timeline
from tactful.core.messages import EraseSession, ErasureMark, SkuSignal
from tactful.core.outputs import Cancellation
from tactful.core.runtime import (
    EventTimeMerger,
    HolderIndex,
    Scope,
    SkuScope,
    TimerIndex,
    keep_local,
)
from tactful.core.state import CustomerState, SessionState, SkuState, decode_state, encode_state
from tactful.service.faust.app import TactfulApp, bytes_table
from tactful.service.faust.feed import BatchFeed, Source, ack, current, track
from tactful.service.faust.gate import (
    SourceTransactionManager,
    event_context,
    forget_uncommitted_state,
)
from tactful.service.metrics import Metrics, Tally, count, dead_letter_code
from tactful.service.settings import Settings

log = logging.getLogger("tactful.worker")

INPUT_TOPICS = ("storefront", "inventory", "consent", "feedback")
INTERNAL_TOPICS = ("session-events", "customer-events", "sku-events")
OUTPUT_TOPICS = ("intents", "decisions", "deadletter")
# Where an input event that arrived on the wrong partition is forwarded to.
FORWARD_TOPIC = {"storefront": "session-events", "inventory": "sku-events",
                 "consent": "customer-events", "feedback": "customer-events"}
NEG_INF = float("-inf")
DUE_CHECK_SECONDS = 0.05  # wall clock: how often the timer indexes are looked at
AGENT_SCOPE = {"sessions": SESSION, "customers": CUSTOMER, "skus": SKU}  # the store of each


@contextmanager
def fail_fast(agent: str) -> Iterator[None]:
    """Stop the worker on an unexpected error, logging where it happened but no data.

    The exception's message may carry input (a customer id in a KeyError, say), so
    neither it nor the original exception reaches the logs: only its type and frames.
    The offset of the input is not committed; a restarted worker applies it again.
    """
    try:
        yield
    except (asyncio.CancelledError, AgentFailure):
        raise
    except Exception as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        where = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in frames[-8:]]
        log.critical(
            "agent failed: the worker stops, the input is applied again after a restart",
            extra={"agent": agent, "error": type(exc).__name__, "where": where},
        )
        raise AgentFailure(f"{type(exc).__name__} in the {agent} agent") from None


def _log_engine_error(what: str, scope: str, exc: Exception) -> None:
    """The error's type and where it was raised; never its message (it may hold ids)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in frames[-8:]]
    log.error(what, extra={"scope": scope, "error": type(exc).__name__, "where": where})


_HASHES: dict[bytes, int] = {}  # key -> murmur2: keys repeat (a session's events)
_HASHES_MAX = 200_000


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2, as Java clients).
    aiokafka's murmur2 is pure Python (~3 µs), so hashes are remembered for a while."""
    hashed = _HASHES.get(key)
    if hashed is None:
        if len(_HASHES) >= _HASHES_MAX:
            _HASHES.clear()
        hashed = _HASHES[key] = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


def seq_key(seq: str) -> tuple[int, ...]:
    """Order of an input within equal timestamps: its line (and element) in the source file."""
    try:
        return tuple(int(part) for part in seq.split(".")) if seq else ()
    except ValueError:
        return ()


@dataclass
class PartitionClock:
    """What a partition of one agent knows about time."""

    clock: float = NEG_INF
    sources: dict[str, float] = field(default_factory=dict)  # customer side: upstream marks
    # Stream clock, customer side: the inputs waiting for the watermark (over ``sources``).
    # Each is also in the ``pending`` table until applied, so a crash or a rebalance hands
    # it to the partition's next owner; the input itself is acked at once.
    merger: EventTimeMerger[bytes] | None = None
    # Internal messages taken: the last position from each origin (``first_delivery``).
    received: dict[str, tuple[int, int]] = field(default_factory=dict)
    loaded: bool = False


class SavedClock(msgspec.Struct, array_like=True):
    """What the ``clocks`` table keeps of a ``PartitionClock``."""

    clock: float
    sources: dict[str, float]
    received: dict[str, tuple[int, int]]


class StateCache:
    """One table's keys as a unit of work sees them: each read from the table and
    decoded once, each written back once at the end (Kafka Streams' record cache).

    After every successful step the key's new value is encoded at once (``save``): that
    encoding is what ``write`` stores, and what ``rollback`` goes back to when the engine
    fails on the next input of the same key (its changes were made to the live object).
    """

    __slots__ = ("cls", "entries", "table", "write_value")

    def __init__(self, table: Any, cls: type[Any],
                 write_value: Callable[[Any, bytes, bytes | None], None]) -> None:
        self.table, self.cls, self.write_value = table, cls, write_value
        # key -> [live state or None, its encoding or None (absent), changed?]
        self.entries: dict[str, list[Any]] = {}

    def clear(self) -> None:
        """Forget what a unit cut off before its end (a stop) read and changed."""
        self.entries.clear()

    def load(self, key: str) -> Any:
        entry = self.entries.get(key)
        if entry is not None:
            return entry[0]
        raw: bytes | None = self.table.get(key.encode())
        state = None if raw is None else decode_state(self.cls, raw)
        self.entries[key] = [state, raw, False]
        return state

    def save(self, key: str, state: Any) -> None:
        """The key's state after a successful step (None: delete it). Loaded first."""
        entry = self.entries[key]
        entry[0] = state
        entry[1] = None if state is None else encode_state(state)
        entry[2] = True

    def rollback(self, key: str) -> None:
        """Back to the value of the last successful step (or of the table)."""
        entry = self.entries.get(key)
        if entry is not None:
            raw = entry[1]
            entry[0] = None if raw is None else decode_state(self.cls, raw)

    def write(self) -> int:
        """Every changed key to the table, once; returns how many."""
        written = 0
        for key, (_, raw, changed) in self.entries.items():
            if changed:
                self.write_value(self.table, key.encode(), raw)
                written += 1
        self.entries.clear()
        return written


class TableMarks:
    """The erasure marks in the ``erasures`` table (``core.runtime.Marks``). A mark is
    read and written in the event context of its key's partition, where it belongs, so a
    tombstone lands in the same changelog partition as the mark."""

    __slots__ = ("table",)

    def __init__(self, table: Any) -> None:
        self.table = table

    def may_hold(self) -> bool:
        return True  # counting the keys of a RocksDB table means reading them all

    def get(self, stored: str) -> ErasureMark | None:
        raw = self.table.get(stored.encode())
        return None if raw is None else msgspec.msgpack.decode(raw, type=ErasureMark)

    def put(self, stored: str, mark: ErasureMark) -> None:
        self.table[stored.encode()] = msgspec.msgpack.encode(mark)

    def forget(self, stored: str) -> None:
        del self.table[stored.encode()]


MAX_BUNDLE_BYTES = 512 * 1024  # well under Kafka's default 1 MiB record limit


class Waiting:
    """A stream-clock input that waits for the watermark, as the ``pending`` table keeps
    it: msgpack ``(t, seq, kind + raw)``, where kind ``e`` is a storefront event (its
    JSON) and ``w`` an internal message (its envelope). Encoded only if it still waits
    when its unit ends, so that one released within its unit costs no encoding."""

    __slots__ = ("entry", "kind", "raw", "seq", "t")

    def __init__(self, t: float, seq: str, kind: bytes, raw: bytes | None,
                 entry: object) -> None:
        self.t, self.seq, self.kind, self.raw, self.entry = t, seq, kind, raw, entry

    def encode(self) -> bytes:
        raw = self.raw
        if raw is None:
            raw = (msgspec.json.encode(self.entry) if self.kind == b"e"
                   else envelope(self.t, self.seq, self.entry))  # type: ignore[arg-type]
        return msgspec.msgpack.encode((self.t, self.seq, self.kind + raw))

    @staticmethod
    def decode(value: bytes) -> tuple[float, str, object]:
        """``encode``'s bytes back to (t, seq, the input)."""
        t, seq, raw = msgspec.msgpack.decode(value, type=tuple[float, str, bytes])
        return t, seq, (decode_event(raw[1:]) if raw[:1] == b"e" else unpack(raw[1:]).body)


class Unit:
    """The records of one topic-partition in a batch, processed as one: what they send
    goes out at the end in one record per destination partition (``wire.bundle``), what
    they change is written once per key, and they are acked together."""

    __slots__ = ("appended", "bundles", "caches", "clocks", "dead", "decisions", "filled",
                 "index", "intents", "lateness", "offset", "origin", "out", "partition",
                 "pending", "record", "tally", "topic")

    def __init__(self, records: list[Any]) -> None:
        message = records[0]
        self.topic: str = message.topic
        self.partition: int = message.partition
        self.origin = f"{self.topic}:{self.partition}"
        self.record: Any = message  # the record in hand
        self.offset = -1
        self.index = 0
        self.intents: list[tuple[bytes, bytes]] = []
        self.decisions: list[tuple[bytes, bytes]] = []
        self.dead: list[tuple[bytes | None, bytes]] = []  # dead letters, sent with the rest
        # (topic, partition) -> envelopes, each list a bundle of at most MAX_BUNDLE_BYTES
        self.bundles: dict[tuple[str, int], list[list[bytes]]] = {}
        self.filled: dict[tuple[str, int], int] = {}  # bytes in each one's last bundle
        self.caches: dict[str, StateCache] = {}  # the stores the unit touched
        self.out = Outbox()  # each step's outputs, taken (``Worker._collect``) after it
        self.clocks: dict[tuple[str, int], PartitionClock] = {}  # changed: saved at the end
        # stream clock: the inputs left waiting (encoded at the end, ``Worker._finish``,
        # so that one released within the unit costs no encoding) and the deletions
        self.pending: dict[bytes, Waiting | None] = {}
        self.tally: Tally = {}  # metrics, added at the end (``Metrics.add``)
        self.lateness: list[float] = []  # wall clock: seconds each timer fired late
        self.appended: float | None = message.timestamp  # the first record's Kafka timestamp

    def begin(self, record: Any) -> None:
        self.record = record
        self.offset = record.offset
        self.index = 0

    def position(self) -> tuple[str, int, int]:
        """Where the next internal message comes from: the record in hand and the
        message's index among those it sent (see ``wire.first_delivery``)."""
        index = self.index
        self.index = index + 1
        return self.origin, self.offset, index

    def send(self, topic: str, partition: int, data: bytes) -> None:
        where = (topic, partition)
        chunks = self.bundles.get(where)
        if chunks is None:
            chunks = self.bundles[where] = [[]]
            self.filled[where] = 0
        chunk = chunks[-1]
        if chunk and self.filled[where] + len(data) > MAX_BUNDLE_BYTES:
            chunk = []
            chunks.append(chunk)
            self.filled[where] = 0
        chunk.append(data)
        self.filled[where] += len(data)


class Worker:
    """Builds the Faust app and holds what the agents share."""

    # A batch: what has arrived for the agent, up to about this many records.
    batch_max = 2000

    def __init__(self, settings: Settings, engine: Engine, app: TactfulApp,
                 metrics: Metrics) -> None:
        self.settings = settings
        self.stream_clock = settings.clock == "stream"
        self.engine = engine
        self.partitions = settings.partitions
        self.app = app_ = app
        t = settings.topic
        self.topics = {
            name: app_.topic(t(name), partitions=self.partitions, key_type=bytes, value_type=bytes)
            for name in INPUT_TOPICS + INTERNAL_TOPICS + OUTPUT_TOPICS
        }
        self.names = {name: t(name) for name in INPUT_TOPICS + INTERNAL_TOPICS + OUTPUT_TOPICS}
        if app_.state_transactions is not None:
            app_.state_transactions.sources = frozenset(
                t(name) for name in INPUT_TOPICS + INTERNAL_TOPICS)
        self.sessions = bytes_table(app_, "sessions", self.partitions)
        self.customers = bytes_table(app_, "customers", self.partitions)
        self.skus = bytes_table(app_, "skus", self.partitions)
        self.clocks = bytes_table(app_, "clocks", self.partitions)
        # erasure_key -> ErasureMark: written in the erased customer's partition.
        self.erasures = bytes_table(app_, "erasures", self.partitions)
        # Stream clock: customer-side inputs waiting for the watermark, by partition.
        self.pending = bytes_table(app_, "pending", self.partitions)
        # One store per table, used by one agent at a time: a unit reads and writes its
        # keys through it, and it is written back at the unit's end (``_finish``).
        self.stores = {SESSION: StateCache(self.sessions, SessionState, self._write),
                       CUSTOMER: StateCache(self.customers, CustomerState, self._write),
                       SKU: StateCache(self.skus, SkuState, self._write)}
        self.marks = TableMarks(self.erasures)
        # The engine's scopes (core.runtime), one per partition this worker owns.
        self.scopes: dict[tuple[str, int], Scope[Any]] = {}
        self.sku_scope = SkuScope(engine, self.stores[SKU], self._step_failed)
        self._unit: Unit | None = None  # the unit in hand, for a step that fails
        self.partition_clocks: dict[tuple[str, int], PartitionClock] = {}
        self.metrics = metrics
        metrics.watch(self._lag, self._sizes)
        self._register()

    # ---------------------------------------------------------------- metrics

    def _lag(self) -> Iterator[tuple[str, int, int]]:
        """Records behind the end of each input and internal partition this worker
        reads (a partition written in transactions ends with a marker: 1 when caught
        up)."""
        consumer: Any = self.app.consumer
        prefix = len(self.settings.topic_prefix)
        sources = {self.names[name] for name in INPUT_TOPICS + INTERNAL_TOPICS}
        try:
            assigned = consumer.assignment()
        except (AttributeError, RuntimeError):
            return
        for tp in sorted(assigned):
            if tp.topic not in sources:
                continue
            try:
                end = consumer.highwater(tp)
            except (AttributeError, KeyError, RuntimeError):
                continue
            if end is None:
                continue
            read = consumer._read_offset.get(tp)  # the last offset handed to a stream
            yield tp.topic[prefix:], tp.partition, max(end - (read + 1 if read is not None
                                                               else 0), 0)

    def _sizes(self) -> Iterator[tuple[str, int]]:
        """Keys per table, for the memory store (counting RocksDB's means reading every
        key: not at each scrape)."""
        from faust.stores.memory import Store as MemoryStore

        for name in ("sessions", "customers", "skus", "clocks", "erasures", "pending"):
            store = getattr(self, name).data
            if isinstance(store, MemoryStore):
                yield name, len(store.data)

    # ----------------------------------------------------------------- wiring

    def topic_specs(self) -> list[TopicSpec]:
        """Every topic the worker reads or writes, for creation at start."""
        n, r = self.partitions, self.settings.replication
        specs = [TopicSpec(self.settings.topic(name), n, r) for name in INPUT_TOPICS]
        specs += [TopicSpec(self.settings.topic(name), n, r) for name in INTERNAL_TOPICS]
        specs += [TopicSpec(self.settings.topic(name), n, r, copartitioned=False)
                  for name in OUTPUT_TOPICS]
        # Changelogs too, compacted: erasure's tombstones then remove the keys for good.
        compact = {"cleanup.policy": "compact"}
        for table in (self.sessions, self.customers, self.skus, self.clocks, self.erasures,
                      self.pending):
            specs.append(TopicSpec(table.changelog_topic.get_topic_name(), n, r, dict(compact)))
        return specs

    def _register(self) -> None:
        app = self.app
        session_stream = app.topic(
            self.settings.topic("storefront"), self.settings.topic("session-events"),
            key_type=bytes, value_type=bytes,
        )
        sku_stream = app.topic(
            self.settings.topic("inventory"), self.settings.topic("sku-events"),
            key_type=bytes, value_type=bytes,
        )
        customer_stream = app.topic(
            self.settings.topic("consent"), self.settings.topic("feedback"),
            self.settings.topic("customer-events"), key_type=bytes, value_type=bytes,
        )

        # Each agent reads its topics from a feed, a topic-partition's fetch at a time
        # (``service.faust.feed``), not through Faust's stream; the topics are still
        # subscribed through Faust's conductor (what iterating the stream would do), so
        # that the group, its co-partitioned assignment and the commits stay Faust's.
        feeds = {}
        for agent, topics in (("sessions", session_stream), ("skus", sku_stream),
                              ("customers", customer_stream)):
            feed = feeds[agent] = BatchFeed(app.flow_control)
            for name in topics.topics:
                app.batch_feeds[name] = feed
            app.topics.add(topics.clone(is_iterator=True))  # type: ignore[arg-type]
        self.feeds = feeds

        @app.agent(session_stream, name="tactful.sessions",
                   supervisor_strategy=CrashingSupervisor)
        async def sessions_agent(stream: Any) -> None:
            await self._batches(feeds["sessions"], "sessions", self.on_session_record)

        @app.agent(sku_stream, name="tactful.skus",
                   supervisor_strategy=CrashingSupervisor)
        async def skus_agent(stream: Any) -> None:
            await self._batches(feeds["skus"], "skus", self.on_sku_record)

        @app.agent(customer_stream, name="tactful.customers",
                   supervisor_strategy=CrashingSupervisor)
        async def customers_agent(stream: Any) -> None:
            await self._batches(feeds["customers"], "customers", self.on_customer_record)

        @app.timer(interval=self.settings.tick_seconds)  # type: ignore[untyped-decorator]
        async def tick() -> None:
            await self.send_ticks()

        if not self.stream_clock:
            @app.timer(interval=DUE_CHECK_SECONDS)  # type: ignore[untyped-decorator]
            async def due_tick() -> None:
                await self.send_due_ticks()

        async def revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
            tps = args[0] if args else kwargs.get("revoked", set())
            await self.on_revoked({tp.partition for tp in tps})

        app.on_partitions_revoked.connect(revoked)  # type: ignore[arg-type]

        self._agents = (sessions_agent, skus_agent, customers_agent, tick, revoked)

    def explain(self, customer_id: str, partition: int) -> bytes:
        """The customer's timeline as JSON, from this worker's table (the admin API asks
        the owner of ``partition``). Its time is the partition's event time with the stream
        clock, the wall clock otherwise."""
        raw = self.customers.get(customer_id.encode())
        st = decode_state(CustomerState, raw) if raw is not None else None
        now = time.time()
        clock = self.partition_clocks.get((CUSTOMER, partition))
        if self.stream_clock and clock is not None and clock.clock != NEG_INF:
            now = clock.clock
        return msgspec.json.encode(timeline(self.engine, customer_id, st, now))

    async def _batches(self, feed: BatchFeed, agent: str,
                       handle: Callable[[Unit, Any], None]) -> None:
        """The agent's loop: what has arrived at a time, one unit per topic-partition."""
        app = self.app
        while True:
            groups = [g for g in await feed.take(self.batch_max) if current(app, g)]
            if not groups:
                continue
            consumer = app.consumer
            for group in groups:
                track(consumer, group)
            async with self._batch(agent):
                for group in groups:
                    unit = self._unit = Unit(group)
                    self.stores[AGENT_SCOPE[agent]].clear()
                    source = Source(group[-1])
                    with event_context(source, group[0].offset):
                        for message in group:
                            unit.begin(message)
                            handle(unit, message)
                        await self._finish(unit)
                for group in groups:  # inside the barrier: a commit takes all or none
                    ack(consumer, group)

    @asynccontextmanager
    async def _batch(self, agent: str) -> AsyncIterator[None]:
        """One batch's work: failing fast, and (exactly-once) never split by a commit."""
        barrier = self.app.commit_barrier
        if barrier is None:
            with fail_fast(agent):
                yield
            return
        await barrier.enter()
        try:
            with fail_fast(agent):
                yield
        except BaseException as exc:
            # Cut off mid-batch (a stop cancels the agent): what it sent so far must not
            # commit without the offsets of its inputs.
            transactions = self.app.consumer.transactions
            if isinstance(transactions, SourceTransactionManager):
                transactions.abandon(exc)
            raise
        finally:
            barrier.leave()

    async def on_revoked(self, partitions: set[int]) -> None:
        """A rebalance: every agent is idle and the outputs are flushed (Faust did both).

        At least once, held state is dropped and its keys put back to the value the
        changelog holds: the uncommitted inputs are applied again, on that.
        Exactly-once, the open transactions are aborted, so the tables start again
        from what was committed.
        """
        if not partitions:
            return
        gate = self.app.changelog_gate
        if self.app.commit_barrier is None:
            if gate is not None:
                await gate.dropping(partitions, restore=True)
        else:
            if gate is not None:
                await gate.dropping(partitions)
            forget_uncommitted_state(self.app)
        self.forget_partitions(partitions)

    def forget_partitions(self, partitions: set[int]) -> None:
        """Derived per-partition state is rebuilt by whoever owns the partition next."""
        for key in [k for k in self.scopes if k[1] in partitions]:
            del self.scopes[key]
        for key in [k for k in self.partition_clocks if k[1] in partitions]:
            del self.partition_clocks[key]

    async def send_ticks(self) -> None:
        """A ``Tick`` to each internal partition this worker owns. Ticks are not state:
        they go out on the plain producer, never inside a transaction (under
        exactly-once they would wait, unseen, for the partition's next commit)."""
        now = time.time()
        internal = {self.settings.topic(n) for n in INTERNAL_TOPICS}
        try:
            assignment = self.app.consumer.assignment()
        except (AttributeError, RuntimeError):
            return
        value = bundle([envelope(now, "", Tick(now))])
        for tp in sorted(assignment):
            if tp.topic in internal:
                await self.app.producer.send(tp.topic, None, value, tp.partition, None, None)

    async def send_due_ticks(self) -> None:
        """Wall clock: a ``Tick`` to each partition of this worker with a timer due now,
        between the regular ticks, so that an intent follows its due time by tens of
        milliseconds rather than by up to a tick interval. A partition is sent one only
        when its timer index says something is due (maybe a stale entry, which the tick
        clears), so an idle worker sends nothing."""
        now = time.time()
        names = {SESSION: self.names["session-events"], CUSTOMER: self.names["customer-events"]}
        due = [(name, p) for (name, p), scope in self.scopes.items()
               if (first := scope.timers.next_time()) is not None and first <= now]
        if not due:
            return
        value = bundle([envelope(now, "", Tick(now))])
        for scope, p in sorted(due):
            await self.app.producer.send(names[scope], None, value, p, None, None)

    # ------------------------------------------------------------ output path

    def _first_delivery(self, scope: str, p: int, envelope_: Envelope, u: Unit) -> bool:
        """False for an internal message this partition has taken already (its sender
        processed an input again after a crash or a rebalance)."""
        if not envelope_.origin:
            return True
        clock = self._clock(scope, p)
        if not first_delivery(clock.received, envelope_):
            return False
        u.clocks[(scope, p)] = clock  # saved with the state it leads to, in one commit
        return True

    def _collect(self, out: Outbox, ts: float, seq: str, u: Unit) -> None:
        """A successful step's outputs into the unit; its local messages applied now."""
        tally = u.tally
        for key, intent in out.intents:
            u.intents.append((key.encode(), encode(intent)))
            if isinstance(intent, Cancellation):
                count(tally, "c", intent.reason)
            else:
                count(tally, "i", intent.kind, intent.channel)
        for key, decision in out.decisions:
            u.decisions.append((key.encode(), encode(decision)))
            count(tally, "d", decision.kind, decision.channel or "none", decision.outcome,
                  decision.reason or "none")
        n = self.partitions
        for scope, key, msg in out.internal:
            if scope in (ERASED, INDEX):  # kept here: the key's own partition
                holders = self._scope(CUSTOMER, u.partition).holders if scope == INDEX else None
                keep_local(scope, key, msg, self.marks, holders)
            elif scope == HOLDERS:
                data = envelope(ts, seq, msg, *u.position())  # type: ignore[arg-type]
                name = self.names["customer-events"]
                for p in range(n):
                    u.send(name, p, data)
            else:
                name = self.names["customer-events" if scope == CUSTOMER else "session-events"]
                data = envelope(ts, seq, msg, *u.position())  # type: ignore[arg-type]
                u.send(name, partition_of(key.encode(), n), data)
        out.clear()

    async def _finish(self, u: Unit) -> None:
        """The unit's state, then its outputs and bundles. The state's changelog records
        wait at the gate until the outputs are delivered (at least once) or go in the
        same transaction (exactly-once), so writing it first costs no guarantee, and a
        store that fails stops the worker before anything of the unit is sent."""
        for cache in u.caches.values():
            cache.write()
        for waiting, held in u.pending.items():
            if held is not None:
                self.pending[waiting] = held.encode()
            elif waiting in self.pending:
                del self.pending[waiting]
        for (scope, p), clock in u.clocks.items():
            self._save_clock(scope, p, clock)
        intents, decisions = self.topics["intents"], self.topics["decisions"]
        for key, value in u.dead:
            await self.topics["deadletter"].send(key=key, value=value)
        for key, value in u.intents:
            await intents.send(key=key, value=value)
        for key, value in u.decisions:
            await decisions.send(key=key, value=value)
        for (name, p), chunks in u.bundles.items():
            topic = self.topics[name[len(self.settings.topic_prefix):]]
            for chunk in chunks:
                await topic.send(key=None, value=bundle(chunk), partition=p)
        latency = None if u.appended is None else time.time() - u.appended
        self.metrics.add(u.tally, latency, u.lateness)

    def _inputs(self, message: Any, u: Unit
                      ) -> tuple[float | None, list[tuple[Event, float, str]]]:
        """An input-topic record: its clock marker's time, or its valid events with their
        time and sequence (``LINE`` or ``LINE.INDEX``); bad elements are dead-lettered."""
        value = message.value or b""
        try:
            headers = decode_headers(message.headers)
        except BadEvent as exc:
            self.dead_letter(u, message, Rejected(exc.reason, value))
            return None, []
        # Future timestamps are bounded by the wall clock whatever moves the timers: no
        # real event comes from the future, and a backfill's gaps are no sign of one.
        not_after = time.time() + self.engine.policy.max_future_skew
        if headers.clock is not None:
            if headers.clock > not_after:  # a marker too would fire every timer early
                self.dead_letter(u, message, Rejected(FUTURE, value))
                return None, []
            return headers.clock, []
        seq = headers.seq
        events: list[tuple[Event, float, str]] = []
        short = message.topic[len(self.settings.topic_prefix):]
        field_name = TOPIC_KEY_FIELD[short]
        key = message.key
        # One hash per record when the producer placed it by its key, as tactful does.
        keyed = None if key is None else partition_of(key, self.partitions)
        for index, item in enumerate(decode_message(value, not_after, short)):
            if isinstance(item, Rejected):
                self.dead_letter(u, message, item)
                continue
            item_seq = f"{seq}.{index}" if seq and index else seq
            t = item.ts.timestamp()
            own: str = getattr(item, field_name)
            own_key = own.encode()
            target = keyed if own_key == key else partition_of(own_key, self.partitions)
            if target != message.partition:
                self._forward(short, target, item, t, item_seq, u)
                continue
            events.append((item, t, item_seq))
            count(u.tally, "e", short, type(item).__struct_config__.tag)  # type: ignore[arg-type]
        return None, events

    def _forward(self, short: str, partition: int | None, item: Event, t: float, seq: str,
                 u: Unit) -> None:
        """An event to the partition its id is kept in, through its scope's internal topic:
        in order (one origin, one target partition), never dropped, and a repeat after a
        crash is dropped by the receiver as every internal message is."""
        data = envelope(t, seq, Forwarded(msgspec.json.encode(item)), *u.position())
        if partition is None:  # a keyless record: placed by the event's own id
            partition = partition_of(getattr(item, TOPIC_KEY_FIELD[short]).encode(),
                                     self.partitions)
        u.send(self.names[FORWARD_TOPIC[short]], partition, data)

    def _forwarded(self, scope: str, p: int, envelope_: Envelope, u: Unit) -> Event | None:
        """The event a ``Forwarded`` message carries, on its first delivery here."""
        assert isinstance(envelope_.body, Forwarded)
        if not self._first_delivery(scope, p, envelope_, u):
            return None
        try:
            return decode_event(envelope_.body.event)
        except BadEvent:  # it was valid where it came from: a record no worker wrote
            log.warning("dropped an undecodable forwarded event", extra={"scope": scope})
            return None

    def _envelopes(self, message: Any) -> list[Envelope]:
        try:
            return unpack_all(message.value)
        except msgspec.DecodeError:
            log.warning("dropped an undecodable internal message", extra={"topic": message.topic})
            return []

    def _poisoned(self, scope: str, item: object, exc: Exception, u: Unit) -> None:
        """An input the engine failed on (a bug met by this input, a poison pill): it is
        dead-lettered as ``processing_error`` and the worker goes on. Its key keeps the
        state of its last good step (``StateCache.rollback``), and the step's outputs are
        dropped. The original is the input as decoded: JSON for an event, msgpack for a
        message between scopes; the coordinates are those of the record in hand (under
        the stream clock, the one whose arrival released the input)."""
        _log_engine_error("an input failed in the engine: dead-lettered, the worker goes on",
                          scope, exc)
        original = (msgspec.json.encode(item) if isinstance(item, Event)
                    else msgspec.msgpack.encode(item))
        rejected = Rejected(f"processing_error: {type(exc).__name__}", original)
        self.dead_letter(u, u.record, rejected)

    def dead_letter(self, u: Unit, message: Any, rejected: Rejected) -> None:
        """Dead-lettered with the unit's outputs (``_finish``), so before its offsets."""
        self.metrics.dead_letters.labels(dead_letter_code(rejected.reason)).inc()
        record = dead_letter(rejected, message.topic, message.partition, message.offset)
        u.dead.append((message.key, record))

    def _watermark(self, source: str, ts: float, u: Unit) -> None:
        """To every customer partition, behind what the unit sent there before it."""
        data = envelope(ts, "", Watermark(source, ts))
        name = self.names["customer-events"]
        for p in range(self.partitions):
            u.send(name, p, data)

    # ---------------------------------------------------------- state access

    def _step_failed(self, scope: str, key: str, item: object | None, exc: Exception) -> None:
        """A step the engine failed on (``core.runtime.OnError``): the key is back at its
        last good state and the step's outputs are dropped. An input is dead-lettered; a
        timer leaves its key waiting for its next input (which reschedules it)."""
        if item is None:
            _log_engine_error("a timer failed: the key's triggers wait for its next input",
                              scope, exc)
            return
        assert self._unit is not None
        self._poisoned(scope, item, exc, self._unit)

    @staticmethod
    def _write(table: Any, key: bytes, value: bytes | None) -> None:
        if value is None:
            if key in table:
                del table[key]  # a tombstone in the changelog
        else:
            table[key] = value

    def _scope(self, name: str, partition: int) -> Scope[Any]:
        """The partition's scope, its timer (and holder) index rebuilt from the table on
        first use after assignment (before the unit that uses it changes any of its keys)."""
        found = self.scopes.get((name, partition))
        if found is None:
            customer = name == CUSTOMER
            store = self.stores[name]
            found = self.scopes[(name, partition)] = Scope(
                self.engine, name, store, TimerIndex(), self.marks,
                HolderIndex() if customer else None, on_error=self._step_failed)
            table, cls = store.table, store.cls
            for raw_key in list(table.keys()):
                if partition_of(raw_key, self.partitions) == partition:
                    found.restore(raw_key.decode(), decode_state(cls, table[raw_key]))
        return found

    def _clock(self, scope: str, partition: int) -> PartitionClock:
        found = self.partition_clocks.get((scope, partition))
        if found is None:
            found = self.partition_clocks[(scope, partition)] = PartitionClock()
        if not found.loaded:
            found.loaded = True
            raw = self.clocks.get(f"{scope}:{partition}".encode())
            if raw is not None:
                try:
                    saved = msgspec.msgpack.decode(raw, type=SavedClock)
                except msgspec.ValidationError:  # written before ``received`` was kept
                    older = msgspec.msgpack.decode(raw, type=dict[str, float])
                    saved = SavedClock(older.pop("", NEG_INF), older, {})
                found.clock = saved.clock
                found.sources.update(saved.sources)
                found.received.update(saved.received)
            if scope == CUSTOMER and self.stream_clock:
                self._reload_pending(partition, found)
        return found

    def _save_clock(self, scope: str, partition: int, clock: PartitionClock) -> None:
        saved = SavedClock(clock.clock, clock.sources, clock.received)
        self.clocks[f"{scope}:{partition}".encode()] = msgspec.msgpack.encode(saved)

    # --------------------------------------------------------------- timers

    def _fire_due(self, name: str, p: int, now: float, u: Unit) -> None:
        """Move the partition's clock to ``now`` and advance every key due by then."""
        clock = self._clock(name, p)
        clock.clock = max(clock.clock, now)
        scope = self._scope(name, p)
        first = scope.timers.next_time()
        if first is None or first > now:
            return
        self._touch(u, name)
        wall = None if self.stream_clock else time.time()  # for the timers' lateness
        out = u.out
        for due in scope.fire(now, out):
            if wall is not None:
                u.lateness.append(wall - due)
            self._collect(out, due, "", u)

    def _touch(self, u: Unit, name: str) -> None:
        """The unit changes keys of this store: it is written at the unit's end."""
        if name not in u.caches:
            u.caches[name] = self.stores[name]

    # ------------------------------------------------------------- sessions

    def on_session_record(self, u: Unit, message: Any) -> None:
        p = message.partition
        if message.topic == self.names["storefront"]:
            marker, events = self._inputs(message, u)
            if marker is not None:
                if self.stream_clock:
                    self._fire_due(SESSION, p, marker, u)
                    # Saved with the unit: a new owner after a rebalance must not lose it.
                    clock = u.clocks[(SESSION, p)] = self._clock(SESSION, p)
                    self._watermark(f"session:{p}", clock.clock, u)
                return
            for item, t, item_seq in events:
                assert isinstance(item, StorefrontEvent)
                if self.stream_clock:
                    self._fire_due(SESSION, p, t, u)
                self._apply_session(p, item.session_id, item, t, item_seq, u)
            return
        for env in self._envelopes(message):
            body = env.body
            if isinstance(body, Tick):
                clock = self._clock(SESSION, p)
                if self.stream_clock:
                    self._watermark(f"session:{p}", clock.clock, u)
                    u.clocks[(SESSION, p)] = clock
                else:
                    self._fire_due(SESSION, p, body.now, u)
            elif isinstance(body, EraseSession) and self._first_delivery(SESSION, p, env, u):
                self._apply_session(p, body.session_id, body, env.ts, env.seq, u)
            elif isinstance(body, Forwarded):
                event = self._forwarded(SESSION, p, env, u)
                if isinstance(event, StorefrontEvent):
                    if self.stream_clock:
                        self._fire_due(SESSION, p, env.ts, u)
                    self._apply_session(p, event.session_id, event, env.ts, env.seq, u)

    def _apply_session(self, p: int, key: str, msg: Any, t: float, seq: str,
                       u: Unit) -> None:
        self._touch(u, SESSION)
        self._scope(SESSION, p).apply(key, msg, t, u.out)
        self._collect(u.out, t, seq, u)

    # ----------------------------------------------------------------- skus

    def on_sku_record(self, u: Unit, message: Any) -> None:
        p = message.partition
        if message.topic == self.names["inventory"]:
            marker, events = self._inputs(message, u)
            if marker is not None:
                if self.stream_clock:
                    clock = u.clocks[(SKU, p)] = self._clock(SKU, p)
                    clock.clock = max(clock.clock, marker)
                    self._watermark(f"sku:{p}", clock.clock, u)
                return
            for item, t, item_seq in events:
                assert isinstance(item, StockLevel | PriceChange)
                self._apply_sku(p, item, t, item_seq, u)
            return
        for env in self._envelopes(message):
            if isinstance(env.body, Forwarded):
                event = self._forwarded(SKU, p, env, u)
                if isinstance(event, StockLevel | PriceChange):
                    self._apply_sku(p, event, env.ts, env.seq, u)
            elif isinstance(env.body, Tick) and self.stream_clock:
                clock = u.clocks[(SKU, p)] = self._clock(SKU, p)
                self._watermark(f"sku:{p}", clock.clock, u)

    def _apply_sku(self, p: int, item: StockLevel | PriceChange, t: float,
                   seq: str, u: Unit) -> None:
        clock = self._clock(SKU, p)
        clock.clock = max(clock.clock, t)
        self._touch(u, SKU)
        self.sku_scope.apply(item, t, u.out)
        self._collect(u.out, t, seq, u)

    # ------------------------------------------------------------ customers

    def on_customer_record(self, u: Unit, message: Any) -> None:
        p = message.partition
        items: list[tuple[float, str, object]] = []
        if message.topic != self.names["customer-events"]:
            marker, events = self._inputs(message, u)
            source = f"{message.topic.rsplit('.', 1)[-1]}:{p}"
            if marker is not None:
                if self.stream_clock:
                    clock = u.clocks[(CUSTOMER, p)] = self._clock(CUSTOMER, p)
                    self._merger(p, clock).note(source, marker)
                    self._release(p, u)
                return
            for item, t, item_seq in events:
                assert isinstance(item, CustomerEvent)
                items.append((t, item_seq, item))
                if self.stream_clock:
                    clock = self._clock(CUSTOMER, p)
                    self._merger(p, clock).note(source, t)
        else:
            for index, env in enumerate(self._envelopes(message)):
                body = env.body
                if isinstance(body, Tick):
                    if self.stream_clock:
                        u.clocks[(CUSTOMER, p)] = self._clock(CUSTOMER, p)
                    else:
                        self._customer_time(p, body.now, u)
                elif isinstance(body, Watermark):
                    if self.stream_clock:
                        clock = self._clock(CUSTOMER, p)
                        self._merger(p, clock).note(body.source, body.ts)
                        self._release(p, u)
                elif isinstance(body, Forwarded):
                    event = self._forwarded(CUSTOMER, p, env, u)
                    if isinstance(event, CustomerEvent):
                        self._customer_input(p, env.ts, env.seq, event, b"e",
                                             body.event, index, u)
                elif self._first_delivery(CUSTOMER, p, env, u):
                    # (a repeat is dropped: its first delivery was taken, or waits, here)
                    self._customer_input(p, env.ts, env.seq, body, b"w", None, index, u)
            return
        for index, (t, seq, entry) in enumerate(items):
            self._customer_input(p, t, seq, entry, b"e", None, index, u, release=False)
        if self.stream_clock and items:
            self._release(p, u)  # once every item of the record waits

    def _customer_input(self, p: int, t: float, seq: str, entry: object, kind: bytes,
                        raw: bytes | None, index: int, u: Unit, *,
                        release: bool = True) -> None:
        """Apply a customer-side input now (wall clock), or once the watermark has
        passed it (stream clock: kept until then in ``pending``, under its record's
        coordinates, so a redelivery while it waits is not kept twice). ``kind`` says
        how ``pending`` keeps it (``Waiting``); ``raw`` is its encoding when the record
        already carries one."""
        if not self.stream_clock:
            self._apply_customer(p, entry, t, seq, u)
            return
        clock = self._clock(CUSTOMER, p)
        short = u.topic.rsplit(".", 1)[-1]
        key = f"{p}/{short}/{u.partition}/{u.offset}/{index}".encode()
        if not self._merger(p, clock).hold(key, t, seq_key(seq), entry):
            return  # redelivered while still waiting
        u.pending[key] = Waiting(t, seq, kind, raw, entry)
        if release:
            self._release(p, u)

    def _reload_pending(self, p: int, clock: PartitionClock) -> None:
        """A partition's waiting inputs, as a previous owner left them in the table."""
        prefix = f"{p}/".encode()
        for key in sorted(k for k in self.pending if k.startswith(prefix)):
            t, seq, item = Waiting.decode(self.pending[key])
            self._merger(p, clock).hold(key, t, seq_key(seq), item)

    def _merger(self, p: int, clock: PartitionClock) -> EventTimeMerger[bytes]:
        """The customer partition's merger: its watermark is the earliest clock of every
        session and sku partition, and of its own consent and feedback partitions."""
        merger = clock.merger
        if merger is None:
            n = self.partitions
            names = (*(f"session:{q}" for q in range(n)), *(f"sku:{q}" for q in range(n)),
                     f"consent:{p}", f"feedback:{p}")
            merger = EventTimeMerger(names, clock.sources)
            clock.merger = merger
        return merger

    def _release(self, p: int, u: Unit) -> None:
        """Apply, in (time, sequence) order, every buffered input the watermark has passed."""
        clock = self._clock(CUSTOMER, p)
        u.clocks[(CUSTOMER, p)] = clock
        merger = self._merger(p, clock)
        mark = merger.watermark()
        for ts, key, item in merger.release():
            self._customer_time(p, ts, u)
            self._apply_customer(p, item, ts, "", u)
            if u.pending.pop(key, None) is None:
                u.pending[key] = None  # an earlier unit's: delete it
        if mark > NEG_INF:
            self._customer_time(p, mark, u)

    def _customer_time(self, p: int, now: float, u: Unit) -> None:
        self._fire_due(CUSTOMER, p, now, u)

    def _apply_customer(self, p: int, item: object, t: float, seq: str, u: Unit) -> None:
        self._touch(u, CUSTOMER)
        scope = self._scope(CUSTOMER, p)
        if isinstance(item, SkuSignal):
            scope.signal(item, t, u.out)
        else:
            scope.apply(item.customer_id, item, t, u.out)  # type: ignore[attr-defined]
        self._collect(u.out, t, seq, u)
