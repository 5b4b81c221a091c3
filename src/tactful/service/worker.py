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
import heapq
import itertools
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
from faust.streams import current_event
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
    first_delivery,
    pack,
    unpack,
)
from tactful.core.engine import CUSTOMER, ERASED, HOLDERS, INDEX, SESSION, Engine, Outbox
from tactful.core.errors import AgentFailure, BadEvent
from tactful.core.events import (
    TOPIC_KEY_FIELD,
    CustomerEvent,
    Event,
    PriceChange,
    StockLevel,
    StorefrontEvent,
)
from tactful.core.links import LinkSigner
from tactful.core.messages import (
    CartIndex,
    EraseSession,
    ErasureMark,
    SkuSignal,
)
from tactful.core.policy import Policy
from tactful.core.state import CustomerState, SessionState, SkuState, decode_state, encode_state
from tactful.service.app import TactfulApp, bytes_table, create_app
from tactful.service.gate import forget_uncommitted_state
from tactful.service.settings import Settings, erasure_keys

log = logging.getLogger("tactful.worker")

INPUT_TOPICS = ("storefront", "inventory", "consent", "feedback")
INTERNAL_TOPICS = ("session-events", "customer-events", "sku-events")
OUTPUT_TOPICS = ("intents", "decisions", "deadletter")
# Where an input event that arrived on the wrong partition is forwarded to.
FORWARD_TOPIC = {"storefront": "session-events", "inventory": "sku-events",
                 "consent": "customer-events", "feedback": "customer-events"}
NEG_INF = float("-inf")


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
class Timers:
    """Per-partition due times of the keys of one table (derived; rebuilt on assignment)."""

    heap: list[tuple[float, str]] = field(default_factory=list)
    scheduled: dict[str, float] = field(default_factory=dict)

    def schedule(self, key: str, due: float | None) -> None:
        if due is None:
            return
        known = self.scheduled.get(key)
        if known is None or due < known:
            self.scheduled[key] = due
            heapq.heappush(self.heap, (due, key))

    def pop_due(self, now: float) -> tuple[float, str] | None:
        """The earliest key due by ``now``, or None. Callers loop: firing one key may
        schedule another due time that is also past ``now``."""
        while self.heap and self.heap[0][0] <= now:
            due, key = heapq.heappop(self.heap)
            if self.scheduled.get(key) == due:
                del self.scheduled[key]
                return due, key
        return None


@dataclass
class Pending:
    """A customer-side input waiting for the watermark (stream clock).

    It is also stored in the ``pending`` table under ``key`` until applied, so a crash or
    a rebalance hands it to the partition's next owner; the input itself is acked at once.
    """

    ts: float
    seq: tuple[int, ...]
    order: int
    item: object
    key: bytes = field(compare=False)


@dataclass
class PartitionClock:
    """What a partition of one agent knows about time."""

    clock: float = NEG_INF
    sources: dict[str, float] = field(default_factory=dict)  # customer side: upstream marks
    buffer: list[tuple[float, tuple[int, ...], int, Pending]] = field(default_factory=list)
    buffered: set[bytes] = field(default_factory=set)
    # Internal messages taken: the last position from each origin (``first_delivery``).
    received: dict[str, tuple[int, int]] = field(default_factory=dict)
    loaded: bool = False


class SavedClock(msgspec.Struct, array_like=True):
    """What the ``clocks`` table keeps of a ``PartitionClock``."""

    clock: float
    sources: dict[str, float]
    received: dict[str, tuple[int, int]]


class Worker:
    """Builds the Faust app and holds what the agents share."""

    def __init__(self, settings: Settings, policy: Policy, app: TactfulApp | None = None) -> None:
        self.settings = settings
        self.stream_clock = settings.clock == "stream"
        links = None
        if settings.public_url and settings.link_secret:
            links = LinkSigner(settings.public_url, settings.link_secret.encode())
        self.engine = Engine(policy, links, erasure_keys(settings))
        self.partitions = settings.partitions
        self.app = app or create_app(settings)
        app_ = self.app
        t = settings.topic
        self.topics = {
            name: app_.topic(t(name), partitions=self.partitions, key_type=bytes, value_type=bytes)
            for name in INPUT_TOPICS + INTERNAL_TOPICS + OUTPUT_TOPICS
        }
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
        self.timers: dict[tuple[str, int], Timers] = {}
        self.holders: dict[int, dict[str, dict[str, None]]] = {}
        self.partition_clocks: dict[tuple[str, int], PartitionClock] = {}
        self._order = itertools.count()
        # origin ("topic:partition") -> (offset of the input in hand, next message index)
        self._emits: dict[str, tuple[int, int]] = {}
        self._register()

    # ----------------------------------------------------------------- wiring

    def topic_specs(self) -> list[TopicSpec]:
        """Every topic the worker reads or writes, for creation at start."""
        n, r = self.partitions, self.settings.replication
        specs = [TopicSpec(self.settings.topic(name), n, r) for name in INPUT_TOPICS]
        specs += [TopicSpec(self.settings.topic(name), n, r) for name in INTERNAL_TOPICS]
        specs += [TopicSpec(self.settings.topic(name), n, r) for name in OUTPUT_TOPICS]
        # Changelogs too, compacted: erasure's tombstones then remove the keys for good.
        compact = {"cleanup.policy": "compact"}
        for table in (self.sessions, self.customers, self.skus, self.clocks, self.erasures,
                      self.pending):
            specs.append(TopicSpec(table.changelog_topic.get_topic_name(), n, r, dict(compact)))
        return specs

    def _register(self) -> None:
        app, topics = self.app, self.topics
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

        @app.agent(session_stream, name="tactful.sessions",
                   supervisor_strategy=CrashingSupervisor)
        async def sessions_agent(stream: Any) -> None:
            async for event in stream.events():
                async with self._event("sessions"):
                    await self.on_session_record(event.message)

        @app.agent(sku_stream, name="tactful.skus",
                   supervisor_strategy=CrashingSupervisor)
        async def skus_agent(stream: Any) -> None:
            async for event in stream.events():
                async with self._event("skus"):
                    await self.on_sku_record(event.message)

        @app.agent(customer_stream, name="tactful.customers",
                   supervisor_strategy=CrashingSupervisor)
        async def customers_agent(stream: Any) -> None:
            async for event in stream.events():
                async with self._event("customers"):
                    await self.on_customer_record(event)

        @app.timer(interval=self.settings.tick_seconds)  # type: ignore[untyped-decorator]
        async def tick() -> None:
            await self.send_ticks()

        async def revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
            tps = args[0] if args else kwargs.get("revoked", set())
            await self.on_revoked({tp.partition for tp in tps})

        app.on_partitions_revoked.connect(revoked)  # type: ignore[arg-type]

        self._agents = (sessions_agent, skus_agent, customers_agent, tick, revoked)
        del topics

    @asynccontextmanager
    async def _event(self, agent: str) -> AsyncIterator[None]:
        """One input record's work: failing fast, and (exactly-once) never split by a commit."""
        barrier = self.app.commit_barrier
        if barrier is None:
            with fail_fast(agent):
                yield
            return
        await barrier.enter()
        try:
            with fail_fast(agent):
                yield
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
        for key in [k for k in self.timers if k[1] in partitions]:
            del self.timers[key]
        for key in [k for k in self.partition_clocks if k[1] in partitions]:
            del self.partition_clocks[key]
        for p in partitions:
            self.holders.pop(p, None)
        # An input processed again numbers its messages from 0 again.
        for origin in [o for o in self._emits if int(o.rsplit(":", 1)[1]) in partitions]:
            del self._emits[origin]

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
        value = pack(now, "", Tick(now))
        for tp in sorted(assignment):
            if tp.topic in internal:
                await self.app.producer.send(tp.topic, None, value, tp.partition, None, None)

    # ------------------------------------------------------------ output path

    def _position(self) -> tuple[str, int, int]:
        """Where the next internal message comes from: the input in hand and the
        message's index among those it sent (see ``wire.first_delivery``)."""
        event = current_event()
        if event is None:
            return "", -1, -1
        message = event.message
        origin = f"{message.topic}:{message.partition}"
        offset, index = self._emits.get(origin, (-1, 0))
        if offset != message.offset:
            index = 0
        self._emits[origin] = (message.offset, index + 1)
        return origin, message.offset, index

    def _first_delivery(self, scope: str, p: int, envelope: Envelope) -> bool:
        """False for an internal message this partition has taken already (its sender
        processed an input again after a crash or a rebalance)."""
        if not envelope.origin:
            return True
        clock = self._clock(scope, p)
        if not first_delivery(clock.received, envelope):
            return False
        self._save_clock(scope, p, clock)  # with the state it leads to, in one commit
        return True

    async def flush(self, out: Outbox, ts: float, seq: str, partition: int) -> None:
        for key, intent in out.intents:
            await self.topics["intents"].send(key=key.encode(), value=encode(intent))
        for key, decision in out.decisions:
            await self.topics["decisions"].send(key=key.encode(), value=encode(decision))
        local: list[tuple[str, str, object]] = []
        for scope, key, msg in out.internal:
            if scope in (ERASED, INDEX):
                local.append((scope, key, msg))  # state: written after every send below
            elif scope == CUSTOMER:
                await self.topics["customer-events"].send(
                    key=key.encode(),
                    value=pack(ts, seq, msg, *self._position()),  # type: ignore[arg-type]
                )
            elif scope == SESSION:
                await self.topics["session-events"].send(
                    key=key.encode(),
                    value=pack(ts, seq, msg, *self._position()),  # type: ignore[arg-type]
                )
            elif scope == HOLDERS:
                data = pack(ts, seq, msg, *self._position())  # type: ignore[arg-type]
                for p in range(self.partitions):
                    await self.topics["customer-events"].send(
                        key=key.encode(), value=data, partition=p
                    )
        for scope, key, msg in local:
            if scope == ERASED:
                assert isinstance(msg, ErasureMark)
                self.erasures[key.encode()] = msgspec.msgpack.encode(msg)
            elif scope == INDEX:
                assert isinstance(msg, CartIndex)
                holders = self._holders(partition)
                if msg.holding:
                    holders.setdefault(key, {})[msg.customer_id] = None
                else:
                    held = holders.get(key)
                    if held is not None:
                        held.pop(msg.customer_id, None)
                        if not held:
                            del holders[key]
        out.clear()

    async def _inputs(self, message: Any) -> tuple[float | None, list[tuple[Event, float, str]]]:
        """An input-topic record: its clock marker's time, or its valid events with their
        time and sequence (``LINE`` or ``LINE.INDEX``); bad elements are dead-lettered."""
        value = message.value or b""
        try:
            headers = decode_headers(message.headers)
        except BadEvent as exc:
            await self.dead_letter(message, Rejected(exc.reason, value))
            return None, []
        # Future timestamps are bounded by the wall clock whatever moves the timers: no
        # real event comes from the future, and a backfill's gaps are no sign of one.
        not_after = time.time() + self.engine.policy.max_future_skew
        if headers.clock is not None:
            if headers.clock > not_after:  # a marker too would fire every timer early
                await self.dead_letter(message, Rejected(FUTURE, value))
                return None, []
            return headers.clock, []
        seq = headers.seq
        events: list[tuple[Event, float, str]] = []
        short = message.topic[len(self.settings.topic_prefix):]
        field_name = TOPIC_KEY_FIELD[short]
        key = message.key
        # One hash per record when the producer placed it by its key, as tactful does.
        keyed = None if key is None else partition_of(key, self.partitions)
        for index, item in enumerate(decode_message(value, not_after)):
            if isinstance(item, Rejected):
                await self.dead_letter(message, item)
                continue
            item_seq = f"{seq}.{index}" if seq and index else seq
            t = item.ts.timestamp()
            own: str = getattr(item, field_name)
            own_key = own.encode()
            target = keyed if own_key == key else partition_of(own_key, self.partitions)
            if target != message.partition:
                await self._forward(short, own_key, target, item, t, item_seq)
                continue
            events.append((item, t, item_seq))
        return None, events

    async def _forward(self, short: str, key: bytes, partition: int | None, item: Event,
                       t: float, seq: str) -> None:
        """An event to the partition its id is kept in, through its scope's internal topic:
        in order (one origin, one target partition), never dropped, and a repeat after a
        crash is dropped by the receiver as every internal message is."""
        value = pack(t, seq, Forwarded(msgspec.json.encode(item)), *self._position())
        await self.topics[FORWARD_TOPIC[short]].send(key=key, value=value, partition=partition)

    def _forwarded(self, scope: str, p: int, envelope: Envelope) -> Event | None:
        """The event a ``Forwarded`` message carries, on its first delivery here."""
        assert isinstance(envelope.body, Forwarded)
        if not self._first_delivery(scope, p, envelope):
            return None
        try:
            return decode_event(envelope.body.event)
        except BadEvent:  # it was valid where it came from: a record no worker wrote
            log.warning("dropped an undecodable forwarded event", extra={"scope": scope})
            return None

    async def _poisoned(self, scope: str, item: object, exc: Exception) -> None:
        """An input the engine failed on (a bug met by this input, a poison pill): it is
        dead-lettered as ``processing_error`` and the worker goes on. Its key keeps the
        state it had (the engine's changes live in a copy decoded from the table, and its
        outputs are dropped). The original is the input as decoded: JSON for an event,
        msgpack for a message between scopes; the coordinates are those of the record
        in hand (under the stream clock, the one whose arrival released the input)."""
        _log_engine_error("an input failed in the engine: dead-lettered, the worker goes on",
                          scope, exc)
        original = (msgspec.json.encode(item) if isinstance(item, Event)
                    else msgspec.msgpack.encode(item))
        rejected = Rejected(f"processing_error: {type(exc).__name__}", original)
        event = current_event()
        if event is None:
            await self.topics["deadletter"].send(
                key=None, value=dead_letter(rejected, "", None, None))
            return
        await self.dead_letter(event.message, rejected)

    async def dead_letter(self, message: Any, rejected: Rejected) -> None:
        record = dead_letter(rejected, message.topic, message.partition, message.offset)
        await self.topics["deadletter"].send(key=message.key, value=record)

    async def _watermark(self, source: str, ts: float) -> None:
        data = pack(ts, "", Watermark(source, ts))
        for p in range(self.partitions):
            await self.topics["customer-events"].send(key=None, value=data, partition=p)

    # ---------------------------------------------------------- state access

    def _load(self, table: Any, cls: type[Any], key: str) -> Any:
        raw = table.get(key.encode())
        return None if raw is None else decode_state(cls, raw)

    def _mark(self, scope: str, key: str, now: float) -> ErasureMark | None:
        """The erasure mark of ``key`` (a customer or session id), if any. One past the
        late-input window is deleted: it is read in the event context of its key's
        partition, where it was written, so the tombstone lands in the same changelog
        partition."""

        def get(stored: str) -> ErasureMark | None:
            raw = self.erasures.get(stored.encode())
            return None if raw is None else msgspec.msgpack.decode(raw, type=ErasureMark)

        def forget(stored: str) -> None:
            del self.erasures[stored.encode()]

        return self.engine.live_mark(scope, key, now, get, forget)

    def _store(self, table: Any, key: str, state: Any) -> None:
        if state is None:
            if key.encode() in table:
                del table[key.encode()]  # a tombstone in the changelog
        else:
            table[key.encode()] = encode_state(state)

    def _timers(self, scope: str, partition: int) -> Timers:
        """The partition's timer index, built from the table on first use after assignment."""
        found = self.timers.get((scope, partition))
        if found is None:
            found = self.timers[(scope, partition)] = Timers()
            table = self.sessions if scope == SESSION else self.customers
            holders = self._holders(partition) if scope == CUSTOMER else None
            for raw_key in list(table.keys()):
                if partition_of(raw_key, self.partitions) != partition:
                    continue
                key = raw_key.decode()
                if holders is None:
                    found.schedule(key, self.engine.next_due(
                        decode_state(SessionState, table[raw_key])))
                    continue
                customer = decode_state(CustomerState, table[raw_key])
                found.schedule(key, self.engine.next_due(customer))
                for sku in self.engine.held_skus(customer):
                    holders.setdefault(sku, {})[key] = None
        return found

    def _holders(self, partition: int) -> dict[str, dict[str, None]]:
        found = self.holders.get(partition)
        if found is None:
            found = self.holders[partition] = {}
            self._timers(CUSTOMER, partition)  # fills the index from the table
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

    # ------------------------------------------------------------- sessions

    async def on_session_record(self, message: Any) -> None:
        p = message.partition
        if message.topic == self.settings.topic("storefront"):
            marker, events = await self._inputs(message)
            if marker is not None:
                if self.stream_clock:
                    await self._session_time(p, marker)
                    # Saved at once: a new owner after a rebalance must not lose the marker.
                    self._save_clock(SESSION, p, self._clock(SESSION, p))
                    await self._watermark(f"session:{p}", self._clock(SESSION, p).clock)
                return
            for item, t, item_seq in events:
                assert isinstance(item, StorefrontEvent)
                if self.stream_clock:
                    await self._session_time(p, t)
                await self._apply_session(p, item.session_id, item, t, item_seq)
            return
        try:
            envelope = unpack(message.value)
        except msgspec.DecodeError:
            log.warning("dropped an undecodable internal message", extra={"topic": message.topic})
            return
        body = envelope.body
        if isinstance(body, Tick):
            clock = self._clock(SESSION, p)
            if self.stream_clock:
                await self._watermark(f"session:{p}", clock.clock)
                self._save_clock(SESSION, p, clock)
            else:
                await self._session_time(p, body.now)
        elif isinstance(body, EraseSession) and self._first_delivery(SESSION, p, envelope):
            await self._apply_session(p, body.session_id, body, envelope.ts, envelope.seq)
        elif isinstance(body, Forwarded):
            event = self._forwarded(SESSION, p, envelope)
            if isinstance(event, StorefrontEvent):
                if self.stream_clock:
                    await self._session_time(p, envelope.ts)
                await self._apply_session(p, event.session_id, event, envelope.ts,
                                          envelope.seq)

    async def _session_time(self, p: int, now: float) -> None:
        await self._fire_due(SESSION, p, now)

    async def _fire_due(self, scope: str, p: int, now: float) -> None:
        """Move the partition's clock to ``now`` and advance every key due by then."""
        clock = self._clock(scope, p)
        clock.clock = max(clock.clock, now)
        timers = self._timers(scope, p)
        table = self.sessions if scope == SESSION else self.customers
        out = Outbox()
        while (entry := timers.pop_due(now)) is not None:
            due, key = entry
            state = self._load(table, SessionState if scope == SESSION else CustomerState, key)
            if state is None:
                continue
            actual = self.engine.next_due(state)
            if actual is not None and actual > due:
                timers.schedule(key, actual)  # moved later since it was queued
                continue
            kept: SessionState | CustomerState | None
            try:
                if isinstance(state, SessionState):
                    kept = self.engine.advance_session(state, due, out)
                else:
                    kept = self.engine.advance_customer(state, due, out)
            except Exception as exc:  # the engine is pure: its error is this key's, not ours
                # No input to dead-letter: the key keeps its stored state and waits for
                # its next input (which reschedules it); the other keys go on.
                _log_engine_error("a timer failed: the key's triggers wait for its next "
                                  "input", scope, exc)
                out = Outbox()
                continue
            await self.flush(out, due, "", p)  # outputs before state (see gate)
            self._store(table, key, kept)
            if kept is not None:
                timers.schedule(key, self.engine.next_due(kept))

    async def _apply_session(
        self, p: int, key: str, msg: Any, t: float, seq: str
    ) -> None:
        out = Outbox()
        state = self._load(self.sessions, SessionState, key)
        mark = self._mark("session", key, t) if state is None else None
        try:
            kept = self.engine.on_session(state, msg, t, out, mark)
        except Exception as exc:  # the engine is pure: its error is this input's
            await self._poisoned(SESSION, msg, exc)
            return
        await self.flush(out, t, seq, p)  # outputs before state (see gate)
        self._store(self.sessions, key, kept)
        if kept is not None:
            self._timers(SESSION, p).schedule(key, self.engine.next_due(kept))

    # ----------------------------------------------------------------- skus

    async def on_sku_record(self, message: Any) -> None:
        p = message.partition
        if message.topic == self.settings.topic("inventory"):
            marker, events = await self._inputs(message)
            if marker is not None:
                if self.stream_clock:
                    clock = self._clock("sku", p)
                    clock.clock = max(clock.clock, marker)
                    self._save_clock("sku", p, clock)
                    await self._watermark(f"sku:{p}", clock.clock)
                return
            for item, t, item_seq in events:
                assert isinstance(item, StockLevel | PriceChange)
                await self._apply_sku(p, item, t, item_seq)
            return
        try:
            envelope = unpack(message.value)
        except msgspec.DecodeError:
            return
        if isinstance(envelope.body, Forwarded):
            event = self._forwarded("sku", p, envelope)
            if isinstance(event, StockLevel | PriceChange):
                await self._apply_sku(p, event, envelope.ts, envelope.seq)
        elif isinstance(envelope.body, Tick) and self.stream_clock:
            clock = self._clock("sku", p)
            await self._watermark(f"sku:{p}", clock.clock)
            self._save_clock("sku", p, clock)

    async def _apply_sku(self, p: int, item: StockLevel | PriceChange, t: float,
                         seq: str) -> None:
        clock = self._clock("sku", p)
        clock.clock = max(clock.clock, t)
        out = Outbox()
        state = self._load(self.skus, SkuState, item.sku)
        try:
            kept = self.engine.on_sku(state, item, t, out)
        except Exception as exc:  # the engine is pure: its error is this input's
            await self._poisoned("skus", item, exc)
            return
        await self.flush(out, t, seq, p)  # outputs before state (see gate)
        self._store(self.skus, item.sku, kept)

    # ------------------------------------------------------------ customers

    async def on_customer_record(self, event: Any) -> None:
        message = event.message
        p = message.partition
        customer_topic = message.topic == self.settings.topic("customer-events")
        items: list[tuple[float, str, object]] = []
        raws: list[bytes] = []  # what the pending table keeps of each item
        if not customer_topic:
            marker, events = await self._inputs(message)
            source = f"{message.topic.rsplit('.', 1)[-1]}:{p}"
            if marker is not None:
                if self.stream_clock:
                    clock = self._clock(CUSTOMER, p)
                    clock.sources[source] = max(clock.sources.get(source, NEG_INF), marker)
                    self._save_clock(CUSTOMER, p, clock)
                    await self._release(p)
                return
            for item, t, item_seq in events:
                assert isinstance(item, CustomerEvent)
                items.append((t, item_seq, item))
                raws.append(b"e" + msgspec.json.encode(item))
                if self.stream_clock:
                    clock = self._clock(CUSTOMER, p)
                    clock.sources[source] = max(clock.sources.get(source, NEG_INF), t)
        else:
            try:
                envelope = unpack(message.value)
            except msgspec.DecodeError:
                return
            body = envelope.body
            if isinstance(body, Tick):
                if self.stream_clock:
                    self._save_clock(CUSTOMER, p, self._clock(CUSTOMER, p))
                else:
                    await self._customer_time(p, body.now)
                return
            if isinstance(body, Watermark):
                if self.stream_clock:
                    clock = self._clock(CUSTOMER, p)
                    clock.sources[body.source] = max(clock.sources.get(body.source, NEG_INF),
                                                     body.ts)
                    await self._release(p)
                return
            if isinstance(body, Forwarded):
                event = self._forwarded(CUSTOMER, p, envelope)
                if not isinstance(event, CustomerEvent):
                    return
                items.append((envelope.ts, envelope.seq, event))
                raws.append(b"e" + body.event)
            else:
                if not self._first_delivery(CUSTOMER, p, envelope):
                    return  # a repeat: its first delivery was taken (or is waiting) here
                items.append((envelope.ts, envelope.seq, body))
                raws.append(b"w" + message.value)
        if not self.stream_clock:
            for t, seq, entry in items:
                await self._apply_customer(p, entry, t, seq)
            return
        if not items:
            return
        clock = self._clock(CUSTOMER, p)
        short = message.topic.rsplit(".", 1)[-1]
        for index, ((t, seq, entry), raw) in enumerate(zip(items, raws, strict=True)):
            key = f"{p}/{short}/{message.partition}/{message.offset}/{index}".encode()
            if key in clock.buffered:
                continue  # redelivered while still waiting
            self.pending[key] = msgspec.msgpack.encode((t, seq, raw))
            self._buffer(clock, Pending(t, seq_key(seq), next(self._order), entry, key))
        await self._release(p)

    @staticmethod
    def _buffer(clock: PartitionClock, pending: Pending) -> None:
        clock.buffered.add(pending.key)
        heapq.heappush(clock.buffer, (pending.ts, pending.seq, pending.order, pending))

    def _reload_pending(self, p: int, clock: PartitionClock) -> None:
        """A partition's waiting inputs, as a previous owner left them in the table."""
        prefix = f"{p}/".encode()
        for key in sorted(k for k in self.pending if k.startswith(prefix)):
            t, seq, raw = msgspec.msgpack.decode(self.pending[key], type=tuple[float, str, bytes])
            item: object = decode_event(raw[1:]) if raw[:1] == b"e" else unpack(raw[1:]).body
            self._buffer(clock, Pending(t, seq_key(seq), next(self._order), item, key))

    def _watermark_of(self, p: int, clock: PartitionClock) -> float:
        n = self.partitions
        names = [f"session:{q}" for q in range(n)] + [f"sku:{q}" for q in range(n)]
        names += [f"consent:{p}", f"feedback:{p}"]
        return min(clock.sources.get(name, NEG_INF) for name in names)

    async def _release(self, p: int) -> None:
        """Apply, in (time, sequence) order, every buffered input the watermark has passed."""
        clock = self._clock(CUSTOMER, p)
        mark = self._watermark_of(p, clock)
        while clock.buffer and clock.buffer[0][0] <= mark:
            _, _, _, pending = heapq.heappop(clock.buffer)
            await self._customer_time(p, pending.ts)
            await self._apply_customer(p, pending.item, pending.ts, "")
            clock.buffered.discard(pending.key)
            if pending.key in self.pending:
                del self.pending[pending.key]
        if mark > NEG_INF:
            await self._customer_time(p, mark)

    async def _customer_time(self, p: int, now: float) -> None:
        await self._fire_due(CUSTOMER, p, now)

    async def _apply_customer(self, p: int, item: object, t: float, seq: str) -> None:
        out = Outbox()
        if isinstance(item, SkuSignal):
            for key in list(self._holders(p).get(item.sku, {})):
                await self._customer_message(p, key, item, t, seq, out)
            return
        key = self._customer_key(item)
        await self._customer_message(p, key, item, t, seq, out)

    @staticmethod
    def _customer_key(item: object) -> str:
        key: str = item.customer_id  # type: ignore[attr-defined]
        return key

    async def _customer_message(
        self, p: int, key: str, item: object, t: float, seq: str, out: Outbox
    ) -> None:
        state = self._load(self.customers, CustomerState, key)
        mark = self._mark("customer", key, t) if state is None else None
        try:
            kept = self.engine.on_customer(state, item, t, out, mark)
        except Exception as exc:  # the engine is pure: its error is this input's
            out.clear()
            await self._poisoned(CUSTOMER, item, exc)
            return
        await self.flush(out, t, seq, p)  # outputs before state (see gate)
        self._store(self.customers, key, kept)
        if kept is not None:
            self._timers(CUSTOMER, p).schedule(key, self.engine.next_due(kept))
        else:
            self._timers(CUSTOMER, p).scheduled.pop(key, None)


def build(settings: Settings, policy: Policy) -> Worker:
    return Worker(settings, policy)


def run(settings: Settings, policy: Policy, on_ready: Callable[[], None] | None = None) -> int:
    """Create the topics, then run the Faust worker until it is stopped."""
    from faust.worker import Worker as FaustWorker

    from tactful.adapters.producer import client_options
    from tactful.adapters.topics import ensure_topics
    from tactful.service.local_state import close_local_state, open_local_state
    from tactful.service.logs import logging_config

    worker = build(settings, policy)
    asyncio.run(ensure_topics(settings.bootstrap, worker.topic_specs(),
                              client_options(settings), settings.connect_timeout))
    level = {"debug": "debug", "info": "info", "warning": "warn", "error": "error"}
    faust_worker = FaustWorker(
        worker.app,
        loglevel=level[settings.log_level],
        quiet=True,
        redirect_stdouts=False,
        logging_config=logging_config(settings.log_level),
    )
    rocksdb = settings.store.startswith("rocksdb://")
    tabledir = Path(worker.app.conf.tabledir)
    if rocksdb:
        open_local_state(tabledir)
    if on_ready is not None:
        on_ready()
    try:
        faust_worker.execute_from_commandline()
    except SystemExit as stop:
        if rocksdb and stop.code in (0, None):
            close_local_state(tabledir)
        raise
    return 0
