"""A workload file as Kafka records, and the Kafka plumbing the side-by-side benchmark needs.

Two shapes of the same events (``bench/compare.py``):

``single``
    One event per record, as ``tactful produce`` writes them: routed by ``type`` to its
    input topic, keyed by ``session_id`` / ``sku`` / ``customer_id`` (SPEC §1), the line's
    bytes as the value, header ``tactful-seq`` = the line number.

``batched``
    Storefront trackers' batches: a storefront record's value is a JSON array of up to
    ``BATCH_MAX`` events of one session, keyed by ``session_id`` (SPEC §1 allows it).
    A tracker keeps one open batch per session and sends it when it is full, or when the
    file's clock has moved ``BATCH_FLUSH`` seconds past the batch's first event (a page
    unload), or at the end. The record goes where the batch is sent, so its events are at
    most ``BATCH_FLUSH`` late beside the records around it. Header ``tactful-seq`` is the
    line of the batch's first event; the worker numbers the elements ``LINE.INDEX``. The
    other topics stay one event per record.

With ``markers`` each input partition ends with a clock marker, as ``tactful produce
--until TS`` writes it (empty value, no key, header ``tactful-clock`` = TS).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from tactful.adapters.codec import CLOCK_HEADER, SEQ_HEADER

# SPEC §1: input topic (short name) per event type, and the field that keys each topic.
TOPIC_KEY = {"storefront": "session_id", "inventory": "sku", "consent": "customer_id",
             "feedback": "customer_id"}
INPUTS = tuple(TOPIC_KEY)
STOREFRONT_TYPES = frozenset({"page_view", "product_view", "cart_add", "cart_remove",
                              "checkout_started", "purchase", "login", "logout"})
TYPE_TOPIC = {
    **dict.fromkeys(STOREFRONT_TYPES, "storefront"),
    **dict.fromkeys(("stock_level", "price_change"), "inventory"),
    **dict.fromkeys(("consent_granted", "consent_revoked", "preferences_set",
                     "erase_requested"), "consent"),
    **dict.fromkeys(("delivered", "opened", "clicked", "bounced", "complained",
                     "unsubscribed", "do_not_contact"), "feedback"),
}
OUTPUTS = ("intents", "decisions", "deadletter")
BATCH_MAX = 20
BATCH_FLUSH = 900.0  # seconds of event time a tracker holds a session's batch at most


@dataclass(frozen=True, slots=True)
class Record:
    topic: str  # short name (storefront, inventory, consent, feedback)
    key: bytes
    value: bytes
    seq: bytes
    events: int  # events the value carries (1, or the length of a batch)


@dataclass(frozen=True, slots=True)
class Backlog:
    shape: str  # single | batched
    records: tuple[Record, ...]

    @property
    def events(self) -> int:
        return sum(r.events for r in self.records)


def _events(path: Path) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.rstrip(b"\r\n")
            if line.strip():
                yield number, line, orjson.loads(line)


def _record(number: int, line: bytes, event: dict[str, Any]) -> Record:
    topic = TYPE_TOPIC[event["type"]]
    return Record(topic, event[TOPIC_KEY[topic]].encode(), line, str(number).encode(), 1)


def single(path: Path) -> Backlog:
    return Backlog("single", tuple(_record(n, line, e) for n, line, e in _events(path)))


def batched(path: Path) -> Backlog:
    records: list[Record] = []
    # session: (ts of its first event, line of its first event, the events)
    open_batches: dict[str, tuple[float, int, list[bytes]]] = {}

    def send(session: str) -> None:
        _, first_line, lines = open_batches.pop(session)
        records.append(Record("storefront", session.encode(), b"[" + b",".join(lines) + b"]",
                              str(first_line).encode(), len(lines)))

    for number, line, event in _events(path):
        t = datetime.fromisoformat(event["ts"]).timestamp()
        for session in [s for s, (first, _, _) in open_batches.items() if t - first > BATCH_FLUSH]:
            send(session)
        if event["type"] not in STOREFRONT_TYPES:
            records.append(_record(number, line, event))
            continue
        session = event["session_id"]
        open_batches.setdefault(session, (t, number, []))[2].append(line)
        if len(open_batches[session][2]) >= BATCH_MAX:
            send(session)
    for session in list(open_batches):
        send(session)
    return Backlog("batched", tuple(records))


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


# ------------------------------------------------------------------------------ Kafka


async def create_topics(bootstrap: str, names: Iterable[str], partitions: int,
                        configs: dict[str, str] | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        wanted = list(names)
        response = await admin.create_topics([NewTopic(n, partitions, 1, topic_configs=configs)
                                              for n in wanted])
        for name, code, message in response.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise SystemExit(f"could not create topic {name}: {code} {message}")
        # Until every partition has a leader: clients would retry (and say so) before that.
        deadline = asyncio.get_running_loop().time() + 30
        while not await _led(admin, wanted, partitions):
            if asyncio.get_running_loop().time() > deadline:
                raise SystemExit(f"topics {wanted} have no leaders 30 s after creation")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def _led(admin: AIOKafkaAdminClient, topics: list[str], partitions: int) -> bool:
    if not set(topics) <= set(await admin.list_topics()):
        return False
    for topic in await admin.describe_topics(topics):
        parts = topic["partitions"]
        if topic["error_code"] or len(parts) < partitions or any(
                p["error_code"] or p["leader"] < 0 for p in parts):
            return False
    return True


async def delete_topics(bootstrap: str, containing: str) -> None:
    """Delete every topic whose name contains ``containing`` (a run's tag); best effort:
    it runs after a failed run too, and must not hide what failed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    with contextlib.suppress(KafkaError):
        await admin.start()
        try:
            doomed = [t for t in await admin.list_topics() if containing in t]
            if doomed:
                await admin.delete_topics(doomed)
        finally:
            await admin.close()


async def produce(bootstrap: str, prefix: str, backlog: Backlog, partitions: int,
                  until: float | None) -> float:
    """Create the input topics under ``prefix``, send the backlog (then the clock markers
    when ``until`` is given); returns the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    await create_topics(bootstrap, (prefix + t for t in INPUTS), partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                max_batch_size=1024 * 1024, max_request_size=1024 * 1024)
    await producer.start()
    try:
        pending: list[asyncio.Future[Any]] = []
        for r in backlog.records:
            pending.append(await producer.send(prefix + r.topic, r.value, key=r.key,
                                               headers=[(SEQ_HEADER, r.seq)]))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await producer.flush()
        await asyncio.gather(*pending)
        if until is not None:
            header = [(CLOCK_HEADER, rfc3339(until).encode())]
            markers = [await producer.send(prefix + t, b"", partition=p, headers=header)
                       for t in INPUTS for p in range(partitions)]
            await producer.flush()
            await asyncio.gather(*markers)
    finally:
        await producer.stop()
    return loop.time() - started


async def end_offsets(bootstrap: str, topics: Iterable[str],
                      partitions: int) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()
