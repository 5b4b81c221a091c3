"""``tactful send``: the reference sender. It reads ``tactful.intents`` and delivers
each intent inside its window, at most once, unless it is cancelled first; after each
attempt it writes ``delivered`` or ``bounced`` to ``tactful.feedback``.

Durable state: a compacted topic ``tactful.sender-state``, keyed by intent id, with
as many partitions as ``tactful.intents``; the state of an intent goes to the
partition number of the intent's own record. When the group hands this instance a
partition of the intents, it first reads that partition of the state to its end, so
that an instance taking over a partition knows what its previous owner did (the state
moves with the partition, as a Kafka Streams changelog does; no disk of its own is
needed). Before an attempt the intent is claimed (``sending``, acknowledged by the
broker); an intent found claimed after a crash is never attempted again: at most once.

Commits: an intent's offset is committed only once it is settled (delivered, bounced,
stale, cancelled, without an address); a waiting intent holds its partition's commit
back (``core.sending.CommitLedger``). At most ``max_waiting`` intents wait at once
(those due now included, until their partition is read to its end); at the bound the
sender stops reading (the next record is read again later) until one is due.

Logs and counters carry channels and outcomes, never an id or an address.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any, cast

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import TopicPartition

from tactful.adapters.directory import Directory, DirectoryError
from tactful.adapters.kafka import KafkaConnection, TopicLayout
from tactful.adapters.provider import Provider
from tactful.adapters.smtp import SmtpTransport
from tactful.adapters.topics import TopicSpec, ensure_topics
from tactful.core.events import CHANNELS
from tactful.core.mail import render_email
from tactful.core.outputs import ConsentRef, ContactIntent, IntentItem, Links, iso
from tactful.core.sending import (
    STATES,
    CommitLedger,
    Deliver,
    RetryAt,
    RetryPolicy,
    Skip,
    Stale,
    State,
    Wait,
    Window,
    after_attempt,
    cancel_effect,
    decide,
    feedback,
    parse_time,
)

log = logging.getLogger("tactful.sender")

STATE_TOPIC = "sender-state"
# A cancellation read before its intent is kept this long after its ``at``; entries
# of the state are removed (tombstoned) this long after their ``send_before``.
AHEAD_KEEP = 7 * 86_400.0
STATE_KEEP = 86_400.0


# --- what is read and written -------------------------------------------------


class _WireItem(msgspec.Struct, forbid_unknown_fields=False):
    sku: str
    qty: int
    price: float


class _WireLinks(msgspec.Struct, forbid_unknown_fields=False):
    unsubscribe: str
    preferences: str


class _WireConsent(msgspec.Struct, forbid_unknown_fields=False):
    channel: str = ""
    granted_at: str = ""
    source: str = ""


class _Wire(msgspec.Struct, forbid_unknown_fields=False):
    """An intent or a cancellation as the sender reads it: leniently, so that a code the
    worker adds to ``reasons`` in a later version does not stop delivery."""

    intent_id: str
    customer_id: str
    channel: str
    cancelled: bool = False
    at: str = ""
    kind: str = ""
    items: list[_WireItem] = []
    created_at: str = ""
    send_after: str = ""
    send_before: str = ""
    topic: str = ""
    reasons: list[str] = []
    consent: _WireConsent | None = None
    policy_version: str = ""
    links: _WireLinks | None = None


_wire = msgspec.json.Decoder(_Wire)


class StateRecord(msgspec.Struct, omit_defaults=True):
    """A value of ``tactful.sender-state`` (key: the intent id)."""

    state: str
    keep_until: float  # POSIX seconds: after this the entry may be removed
    at: str
    cancelled_after: bool = False  # a cancellation came after the attempt


_state_decode = msgspec.json.Decoder(StateRecord)
_encode = msgspec.json.Encoder()


def _intent(w: _Wire) -> ContactIntent:
    consent = w.consent or _WireConsent()
    return ContactIntent(
        intent_id=w.intent_id, customer_id=w.customer_id, channel=w.channel, kind=w.kind,
        items=[IntentItem(i.sku, i.qty, i.price) for i in w.items],
        created_at=w.created_at, send_after=w.send_after, send_before=w.send_before,
        topic=w.topic, reasons=cast(Any, w.reasons),
        consent=ConsentRef(consent.channel, consent.granted_at, consent.source),
        policy_version=w.policy_version,
        links=Links(w.links.unsubscribe, w.links.preferences) if w.links else None,
    )


@dataclass(slots=True)
class Pending:
    intent: ContactIntent
    window: Window
    tp: TopicPartition
    offset: int
    due: float
    attempt: int = 0
    # The partition's end when the intent was read: it is delivered once the partition
    # is read that far, so that a cancellation written before it was read is seen first.
    horizon: int | None = None


@dataclass(frozen=True, slots=True)
class SenderConfig:
    app_id: str
    smtp_from: str
    max_waiting: int = 10_000
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    session_timeout: float = 30.0


class Sender:
    def __init__(self, kafka: KafkaConnection, topics: TopicLayout, config: SenderConfig,
                 directory: Directory, transport: SmtpTransport, provider: Provider,
                 clock: Callable[[], float] = time.time) -> None:
        self.kafka = kafka
        self.topics = topics
        self.config = config
        self.directory = directory
        self.transport = transport
        self.provider = provider
        self.clock = clock
        self.intents_topic = topics.name("intents")
        self.state_topic = topics.name(STATE_TOPIC)
        self.feedback_topic = topics.name("feedback")
        self.envelope_from = parseaddr(config.smtp_from)[1] or config.smtp_from
        self.held: dict[str, StateRecord] = {}
        self.where: dict[str, int] = {}  # intent id -> the partition of its state
        self.pending: dict[str, Pending] = {}
        self.due: list[tuple[float, str]] = []  # heap of (due, intent id); lazy removal
        self.ledgers: dict[TopicPartition, CommitLedger] = {}
        self.counts: Counter[tuple[str, str]] = Counter()  # (channel, outcome)
        self.lock = asyncio.Lock()
        self.paused = False
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self.on_delivered: Callable[[str, float], None] = lambda channel, late: None

    # --- lifecycle ---------------------------------------------------------------

    async def run(self, stop: asyncio.Event, ready: Callable[[], None] | None = None) -> None:
        kafka, options = self.kafka, self.kafka.client_options()
        await ensure_topics(kafka.bootstrap, [
            TopicSpec(self.intents_topic, self.topics.partitions, self.topics.replication,
                      copartitioned=False),
            TopicSpec(self.feedback_topic, self.topics.partitions, self.topics.replication),
        ], options, kafka.connect_timeout)
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap, client_id=f"{self.config.app_id}-sender",
            acks="all", enable_idempotence=True, linger_ms=0, **options)
        await producer.start()
        self._producer = producer
        try:
            partitions = len(await producer.partitions_for(self.intents_topic))
            # The state is co-partitioned with the intents: an existing state topic with
            # another count is refused by name.
            await ensure_topics(kafka.bootstrap, [TopicSpec(
                self.state_topic, partitions, self.topics.replication,
                configs={"cleanup.policy": "compact", "segment.ms": "3600000"},
            )], options, kafka.connect_timeout)
            session_ms = int(self.config.session_timeout * 1000)
            consumer = AIOKafkaConsumer(
                bootstrap_servers=kafka.bootstrap, group_id=f"{self.config.app_id}-sender",
                client_id=f"{self.config.app_id}-sender", enable_auto_commit=False,
                auto_offset_reset="earliest", isolation_level="read_committed",
                session_timeout_ms=session_ms, heartbeat_interval_ms=max(1000, session_ms // 3),
                max_poll_records=500, **options)
            await consumer.start()
            self._consumer = consumer
            consumer.subscribe([self.intents_topic], listener=_Rebalance(self))
            if ready is not None:
                ready()
            try:
                await self._loop(stop)
            finally:
                async with self.lock:
                    await self._commit()
                await consumer.stop()
        finally:
            await self.transport.close()
            await producer.stop()
            self._report()

    async def _loop(self, stop: asyncio.Event) -> None:
        consumer = self._consumer
        assert consumer is not None
        last_report = last_refresh = time.monotonic()
        while not stop.is_set():
            await self._deliver_due()
            self._flow_control(consumer)
            wait_ms = 200
            if self.due:
                wait_ms = max(1, min(wait_ms, int((self.due[0][0] - self.clock()) * 1000)))
            batches = await consumer.getmany(timeout_ms=wait_ms)
            for tp, records in batches.items():
                for record in records:
                    # One record at a time under the lock: a rebalance may come between.
                    async with self.lock:
                        if tp not in self.ledgers:  # revoked while it was fetched
                            break
                        if len(self.pending) >= self.config.max_waiting:
                            # Full: this record is read again once a waiting one is due.
                            consumer.seek(tp, record.offset)
                            break
                        await self._handle(tp, record.offset, record.value)
            async with self.lock:
                await self._commit()
            if time.monotonic() - last_refresh > 5.0:
                last_refresh = time.monotonic()
                try:
                    self.directory.refresh()
                except DirectoryError as exc:  # the previous version is kept
                    log.error("directory not read again: %s", exc)
            if time.monotonic() - last_report > 30.0:
                last_report = time.monotonic()
                async with self.lock:
                    await self.prune()
                self._report()

    def _flow_control(self, consumer: AIOKafkaConsumer) -> None:
        """Stop reading while ``max_waiting`` intents wait; read again below it."""
        full = len(self.pending) >= self.config.max_waiting
        if full and not self.paused:
            consumer.pause(*consumer.assignment())
            self.paused = True
            log.warning("sender holds its limit of waiting intents; reading paused",
                        extra={"waiting": len(self.pending)})
        elif not full and self.paused:
            consumer.resume(*consumer.assignment())
            self.paused = False

    def _report(self) -> None:
        counts = {f"{c}.{o}": n for (c, o), n in sorted(self.counts.items())}
        log.info("sender progress", extra={"counts": counts, "waiting": len(self.pending)})

    # --- records -----------------------------------------------------------------

    async def _handle(self, tp: TopicPartition, offset: int, value: bytes | None) -> None:
        ledger = self.ledgers[tp]
        ledger.read(offset)
        try:
            wire = _wire.decode(value or b"")
            if wire.channel not in CHANNELS:
                raise ValueError("unknown channel")
            window = None if wire.cancelled else Window(
                parse_time(wire.send_after), parse_time(wire.send_before))
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError):
            self.counts["-", "invalid"] += 1
            ledger.settle(offset)
            return
        if window is None:
            await self._cancel(wire, tp)
            ledger.settle(offset)
            return
        intent = _intent(wire)
        if intent.intent_id in self.pending:  # a repeat of a waiting intent
            ledger.settle(offset)
            self.counts[intent.channel, "repeat"] += 1
            return
        held = self.held.get(intent.intent_id)
        verdict = decide(window, _state(held), self.clock())
        if isinstance(verdict, Skip):
            self.counts[intent.channel, "repeat" if verdict.state != "cancelled"
                        else "cancelled"] += 1
            ledger.settle(offset)
            return
        if isinstance(verdict, Stale):
            await self._write_state(intent.intent_id, tp.partition, "stale", window.send_before)
            self.counts[intent.channel, "stale"] += 1
            ledger.settle(offset)
            return
        pending = Pending(intent, window, tp, offset, self.clock())
        if self._consumer is not None:
            pending.horizon = self._consumer.last_stable_offset(tp)
        if isinstance(verdict, Wait):
            self._wait(pending, verdict.until)
            return
        assert isinstance(verdict, Deliver)
        # Due now, delivered once the partition is read to where it ended when the
        # intent was read: a cancellation written behind it in a backlog, before its
        # send_after, then prevents it.
        self._wait(pending, pending.due)

    async def _cancel(self, wire: _Wire, tp: TopicPartition) -> None:
        intent_id = wire.intent_id
        pending = self.pending.pop(intent_id, None)
        if pending is not None:  # waiting: it is never delivered
            await self._write_state(intent_id, tp.partition, "cancelled",
                                    pending.window.send_before)
            self.ledgers[pending.tp].settle(pending.offset)
            self.counts[wire.channel, "cancelled"] += 1
            return
        held = self.held.get(intent_id)
        effect = cancel_effect(_state(held))
        if effect == "ahead_of_intent":
            try:
                keep = parse_time(wire.at) + AHEAD_KEEP
            except ValueError:
                keep = self.clock() + AHEAD_KEEP
            await self._write_state(intent_id, tp.partition, "cancelled", keep)
            self.counts[wire.channel, "cancelled_ahead"] += 1
        elif effect == "after_delivery" and held is not None and not held.cancelled_after:
            await self._write_state(intent_id, tp.partition, cast(State, held.state),
                                    held.keep_until, cancelled_after=True)
            self.counts[wire.channel, "cancelled_after_attempt"] += 1
        elif effect == "prevented" and held is not None:  # between retries
            await self._write_state(intent_id, tp.partition, "cancelled", held.keep_until)
            self.counts[wire.channel, "cancelled"] += 1

    def _wait(self, pending: Pending, until: float) -> None:
        pending.due = until
        self.pending[pending.intent.intent_id] = pending
        heapq.heappush(self.due, (until, pending.intent.intent_id))

    def _behind(self, pending: Pending) -> bool:
        """Whether records that were in the intent's partition when it was read remain
        to be read (a cancellation among them)."""
        ledger = self.ledgers.get(pending.tp)
        if ledger is None or ledger.next_offset is None or pending.horizon is None:
            return False
        return ledger.next_offset < pending.horizon

    async def _deliver_due(self) -> None:
        """Attempt the intents that are due, each under the lock on its own: a rebalance
        waits for the attempt under way, not for every due one."""
        now = self.clock()
        held_back: list[tuple[float, str]] = []
        while self.due and self.due[0][0] <= now:
            async with self.lock:
                if self.due and self.due[0][0] <= now:
                    await self._due(*heapq.heappop(self.due), now, held_back)
            now = self.clock()
        for entry in held_back:
            heapq.heappush(self.due, entry)

    async def _due(self, due: float, intent_id: str, now: float,
                   held_back: list[tuple[float, str]]) -> None:
        pending = self.pending.get(intent_id)
        if pending is None or pending.due != due:
            return  # cancelled, rescheduled, or its partition was given up
        if not self.paused and self._behind(pending):
            held_back.append((due, intent_id))
            return
        verdict = decide(pending.window, _state(self.held.get(intent_id)), now)
        if isinstance(verdict, Deliver):
            del self.pending[intent_id]
            await self._attempt(pending)
        elif isinstance(verdict, Wait):
            heapq.heappush(self.due, (verdict.until, intent_id))
            pending.due = verdict.until
        else:
            del self.pending[intent_id]
            if isinstance(verdict, Stale):
                await self._write_state(intent_id, pending.tp.partition, "stale",
                                        pending.window.send_before)
            self.counts[pending.intent.channel, "stale" if isinstance(verdict, Stale)
                        else "repeat"] += 1
            self.ledgers[pending.tp].settle(pending.offset)

    async def _attempt(self, pending: Pending) -> None:
        intent, partition = pending.intent, pending.tp.partition
        address = self.directory.address(intent.customer_id, intent.channel)
        if address is None and intent.channel == "email":
            await self._write_state(intent.intent_id, partition, "no_address",
                                    pending.window.send_before)
            self.counts[intent.channel, "no_address"] += 1
            self.ledgers[pending.tp].settle(pending.offset)
            return
        # The claim: acknowledged before anything is sent, so that a crash during the
        # attempt never leads to a second one.
        await self._write_state(intent.intent_id, partition, "sending",
                                pending.window.send_before)
        now = self.clock()
        if intent.channel == "email":
            assert address is not None
            message = render_email(intent, self.config.smtp_from, address, now)
            outcome = await self.transport.send(self.envelope_from, address, message.as_bytes())
            result = outcome.result
        else:
            result = await self.provider.send(intent, address, now)
        pending.attempt += 1
        now = self.clock()
        step = after_attempt(result, pending.attempt, pending.window, now, self.config.retry)
        if isinstance(step, RetryAt):
            await self._write_state(intent.intent_id, partition, "retry",
                                    pending.window.send_before)
            self.counts[intent.channel, f"{result}_retry"] += 1
            self._wait(pending, step.at)
            return
        # The feedback and the outcome are written side by side (one round trip): a
        # crash before the outcome is acknowledged leaves the claim, so the intent is
        # not attempted again; one before the feedback is, loses that intent's feedback.
        writes = []
        event = feedback(intent, step.state, now)
        if event is not None:
            writes.append(self._produce(self.feedback_topic, intent.customer_id.encode(),
                                        _encode.encode(event)))
        if step.state != "sending":
            writes.append(self._write_state(intent.intent_id, partition, step.state,
                                            pending.window.send_before))
        await asyncio.gather(*writes)
        self.counts[intent.channel, step.state if step.state != "sending" else "unknown"] += 1
        if step.state == "delivered":
            self.on_delivered(intent.channel, max(0.0, now - pending.window.send_after))
        self.ledgers[pending.tp].settle(pending.offset)

    # --- Kafka -------------------------------------------------------------------

    async def _write_state(self, intent_id: str, partition: int, state: State,
                           send_before: float, cancelled_after: bool = False) -> None:
        record = StateRecord(state, send_before + STATE_KEEP, iso(self.clock()),
                             cancelled_after)
        self.held[intent_id] = record
        self.where[intent_id] = partition
        await self._produce(self.state_topic, intent_id.encode(), _encode.encode(record),
                            partition)

    async def _produce(self, topic: str, key: bytes, value: bytes | None,
                       partition: int | None = None) -> None:
        assert self._producer is not None
        await (await self._producer.send(topic, value, key=key, partition=partition))

    async def _commit(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        offsets = {}
        for tp, ledger in self.ledgers.items():
            target = ledger.committable()
            if target is not None:
                offsets[tp] = target
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:  # a rebalance: committed next time
            log.warning("commit failed; retried", extra={"error": type(exc).__name__})
            return
        for tp, target in offsets.items():
            self.ledgers[tp].mark(target)

    async def prune(self) -> None:
        """Forget the entries whose time has passed, and tombstone them in the topic (a
        repeat of their intent would be stale by now)."""
        now = self.clock()
        for key in [k for k, record in self.held.items() if record.keep_until < now]:
            del self.held[key]
            partition = self.where.pop(key, None)
            if partition is not None:
                await self._produce(self.state_topic, key.encode(), None, partition)

    async def load_state(self, partitions: list[int]) -> None:
        """Read these partitions of the state topic to their end; remove the entries
        whose time has passed."""
        if not partitions:
            return
        kafka = self.kafka
        reader = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, group_id=None,
                                  enable_auto_commit=False, **kafka.client_options())
        await reader.start()
        where = self.where
        loaded = 0
        try:
            tps = [TopicPartition(self.state_topic, p) for p in partitions]
            reader.assign(tps)
            await reader.seek_to_beginning(*tps)
            ends = await reader.end_offsets(tps)
            remaining = {tp for tp in tps if ends[tp] > 0}
            while remaining:
                batches = await reader.getmany(*remaining, timeout_ms=500)
                for tp, records in batches.items():
                    for r in records:
                        key = (r.key or b"").decode("utf-8", "replace")
                        if r.value is None:
                            self.held.pop(key, None)
                            where.pop(key, None)
                            continue
                        try:
                            record = _state_decode.decode(r.value)
                        except (msgspec.ValidationError, msgspec.DecodeError):
                            continue
                        if record.state in STATES:
                            self.held[key] = record
                            where[key] = tp.partition
                            loaded += 1
                for tp in list(remaining):
                    if await reader.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await reader.stop()
        await self.prune()
        log.info("sender state read", extra={"partitions": len(partitions), "records": loaded})


# Seconds from an intent's send_after to its delivery.
LATENESS_BUCKETS = (0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)


class SenderMetrics:
    """``tactful_sender_intents_total{channel, outcome}``, ``tactful_sender_waiting`` and
    ``tactful_sender_lateness_seconds``, read from the sender when scraped. Channels and
    outcomes come from fixed vocabularies: no id is ever a label."""

    def __init__(self, sender: Sender) -> None:
        from prometheus_client import CollectorRegistry, Histogram

        self.sender = sender
        self.registry = CollectorRegistry(auto_describe=True)
        self.lateness = Histogram("tactful_sender_lateness_seconds",
                                  "From an intent's send_after to its delivery.",
                                  ["channel"], buckets=LATENESS_BUCKETS,
                                  registry=self.registry)
        self.registry.register(self)
        sender.on_delivered = lambda channel, late: self.lateness.labels(channel).observe(late)

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        intents = CounterMetricFamily("tactful_sender_intents",
                                      "Intents read, by channel and what became of them.",
                                      labels=["channel", "outcome"])
        for (channel, outcome), n in sorted(self.sender.counts.items()):
            intents.add_metric([channel, outcome], n)
        waiting = GaugeMetricFamily("tactful_sender_waiting",
                                    "Intents held waiting for their send_after.")
        waiting.add_metric([], len(self.sender.pending))
        return [intents, waiting]

    def serve(self, host: str, port: int) -> None:
        from prometheus_client import start_http_server

        start_http_server(port, addr=host, registry=self.registry)


def _state(record: StateRecord | None) -> State | None:
    return None if record is None else cast(State, record.state)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        sender = self.sender
        async with sender.lock:  # an attempt under way ends first
            await sender._commit()
            for tp in revoked:
                sender.ledgers.pop(tp, None)
            for intent_id, pending in list(sender.pending.items()):
                if pending.tp in revoked:  # read again by the partition's next owner
                    del sender.pending[intent_id]

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        sender = self.sender
        async with sender.lock:
            await sender.load_state(sorted(tp.partition for tp in assigned))
            for tp in assigned:
                sender.ledgers[tp] = CommitLedger()
        if sender.paused and sender._consumer is not None:
            sender._consumer.pause(*assigned)


def main() -> int:
    """Run the sender until SIGTERM or SIGINT (``tactful send``). A bad setting or
    directory: one line on stderr, exit 2; Kafka unreachable: one line, exit 1."""
    import logging.config
    import signal
    import sys

    from tactful.adapters.directory import JsonLinesDirectory
    from tactful.adapters.provider import OutboxProvider
    from tactful.adapters.smtp import SmtpConfig
    from tactful.core.errors import KafkaRefused, PolicyError, TopicMismatch, TransientError
    from tactful.service.bootstrap import configure
    from tactful.service.logs import logging_config
    from tactful.service.settings import SettingsError, sender_from_env

    try:
        parts = configure()
        settings = sender_from_env()
        directory = JsonLinesDirectory(settings.directory)
    except (SettingsError, DirectoryError, PolicyError) as exc:
        print(f"tactful: {exc}", file=sys.stderr)
        return 2
    logging.config.dictConfig(logging_config(parts.settings.log_level))
    smtp = SmtpConfig(settings.smtp_host, settings.smtp_port,
                      cast(Any, settings.smtp_tls), settings.smtp_username,
                      settings.smtp_password, settings.smtp_timeout, settings.smtp_cafile)
    sender = Sender(
        parts.kafka, parts.topics,
        SenderConfig(parts.settings.app_id, settings.smtp_from, settings.max_waiting,
                     RetryPolicy(settings.retry_seconds, attempts=settings.smtp_attempts),
                     parts.settings.session_timeout),
        directory, SmtpTransport(smtp), OutboxProvider(settings.outbox),
    )
    if settings.metrics_port:
        SenderMetrics(sender).serve(parts.settings.web_host, settings.metrics_port)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await sender.run(stop, lambda: log.info("sender started"))

    try:
        asyncio.run(run())
    except (TopicMismatch, KafkaRefused) as exc:
        print(f"tactful: {exc}", file=sys.stderr)
        return 2
    except (TransientError, KafkaError) as exc:
        print(f"tactful: {exc if isinstance(exc, TransientError) else repr(exc)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
