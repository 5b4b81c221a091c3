"""``tactful produce``: a JSON-lines file to the input topics (SPEC §1, §6).

Every line is read and validated before anything is sent: one bad line (not
JSON, unknown ``type``, missing field, impossible value, too large for a Kafka
message) is reported as ``FILE:LINE: reason`` and nothing is produced, not even
the topics. A line is one event or a JSON array of events; each event becomes
its own record, routed by ``type`` to its input topic and keyed as SPEC §1 says
(UTF-8), with the line's original bytes (an array element's own bytes) as the
value. Records with the same key go to the same partition in file order.

Record headers:

``tactful-seq``
    The event's place in the file: the 1-based line number in ASCII digits
    (``12``), or ``LINE.INDEX`` for the elements of an array line (``12.0``,
    ``12.1``). The worker breaks timestamp ties with it, in file order.

``tactful-clock``
    With ``--until TS``, once every event is acknowledged, one *clock marker*
    goes to every partition of each of the four input topics: key ``None``,
    value ``b""`` and this header holding TS as RFC 3339 UTC
    (``2026-05-08T00:00:00Z``). A worker running with ``--clock stream`` reads
    it as "stream time reaches TS on this partition", so every trigger due by TS
    fires even when no later event arrives. A marker is not an event: any other
    consumer of the input topics must skip records carrying this header (they
    are not JSON and must not be dead-lettered).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tactful.adapters.codec import CLOCK_HEADER, SEQ_HEADER, Rejected, decode_message
from tactful.adapters.kafka import KafkaConnection, TopicLayout
from tactful.adapters.topics import TopicSpec, ensure_topics
from tactful.core.errors import TactfulError, TransientError
from tactful.core.events import TOPIC_TYPES, key_of, topic_of

INPUT_TOPICS: tuple[str, ...] = tuple(TOPIC_TYPES)  # short names, SPEC order

MAX_REQUEST_SIZE = 1024 * 1024
# Room left in a request for the record's key, headers and batch framing.
_RECORD_OVERHEAD = 1024
_CHUNK = 5000  # records sent before their acknowledgements are awaited

_elements = msgspec.json.Decoder(list[msgspec.Raw])


class ProduceError(TactfulError):
    """The file cannot be produced (unreadable, or has bad lines): nothing was sent."""


@dataclass(slots=True)
class ProduceStats:
    events: int = 0
    lines: int = 0
    clock_markers: int = 0
    topics: set[str] = field(default_factory=set)
    per_topic: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Record:
    topic: str  # short name
    key: bytes
    value: bytes
    seq: bytes


def rfc3339(ts: float) -> str:
    """``2026-05-08T00:00:00Z``; fractions of a second only when there are any."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def _records(number: int, line: bytes) -> Iterator[_Record | str]:
    """The records of one line (without its line break), or the reasons it is bad."""
    items = list(decode_message(line))
    array = line.lstrip()[:1] == b"["
    raws: list[msgspec.Raw] = []
    whole = len(items) == 1 and isinstance(items[0], Rejected) and items[0].index is None
    if array and not whole:  # a line refused whole (too deep, too large) is not parsed
        with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError):
            raws = _elements.decode(line)
    for index, item in enumerate(items):
        if isinstance(item, Rejected):
            where = f"element {item.index}: " if item.index is not None else ""
            yield f"{where}{item.reason}"
            continue
        value = bytes(raws[index]) if array else line
        key = key_of(item).encode()
        if len(value) + len(key) + _RECORD_OVERHEAD > MAX_REQUEST_SIZE:
            where = f"element {index}: " if array else ""
            yield f"{where}too large for one Kafka message ({len(value)} bytes)"
            continue
        seq = f"{number}.{index}" if array else str(number)
        yield _Record(topic_of(item), key, value, seq.encode())


def _lines(path: str) -> Iterator[tuple[int, bytes]]:
    """Numbered non-blank lines without their line breaks."""
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                line = raw.rstrip(b"\r\n")
                if line.strip():
                    yield number, line
    except OSError as exc:
        raise ProduceError(f"cannot read {path}: {exc.strerror}") from None


def validate_file(path: str, out: TextIO) -> int:
    """Check every line; report each bad one on ``out``; return the number of events."""
    bad = 0
    events = 0
    for number, line in _lines(path):
        reasons = []
        for record in _records(number, line):
            if isinstance(record, str):
                reasons.append(record)
            else:
                events += 1
        if reasons:  # one line per bad line, every bad element of an array named
            bad += 1
            print(f"tactful: {path}:{number}: {'; '.join(reasons)}", file=out)
    if bad:
        noun = "line" if bad == 1 else "lines"
        raise ProduceError(f"{path}: {bad} bad {noun}, nothing was sent")
    return events


async def produce_file(
    path: str, kafka: KafkaConnection, topics: TopicLayout, until: float | None,
    out: TextIO | None = None,
) -> ProduceStats:
    """Validate ``path``, then send its events (and, with ``until``, the clock markers).

    ``out`` (default: stderr) gets one line per bad input line and the summary.
    Raises ``ProduceError`` for an unreadable file or bad lines (nothing is sent)
    and ``TransientError`` when Kafka fails.
    """
    out = sys.stderr if out is None else out
    validate_file(path, out)

    names = {short: topics.name(short) for short in INPUT_TOPICS}
    options = kafka.client_options()
    specs = [TopicSpec(name, topics.partitions, topics.replication) for name in names.values()]
    await ensure_topics(kafka.bootstrap, specs, client_options=options,
                        timeout=kafka.connect_timeout)

    stats = ProduceStats()
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap,
        client_id="tactful-produce",
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=1024 * 1024,
        max_request_size=MAX_REQUEST_SIZE,
        compression_type=None,
        **options,
    )
    try:
        await producer.start()
        try:
            await _send_events(producer, path, names, stats)
            if until is not None:
                await _send_clock_markers(producer, names, until, stats)
        finally:
            await producer.stop()
    except KafkaError as exc:
        sent = f"; {stats.events} events may have been sent" if stats.events else ""
        raise TransientError(f"Kafka at {kafka.bootstrap} failed: {exc!r}{sent}") from exc

    written = len(stats.topics)
    print(
        f"tactful: produced {stats.events} events to {written} "
        f"topic{'' if written == 1 else 's'} ({stats.clock_markers} clock markers)",
        file=out,
    )
    return stats


async def _send_events(
    producer: AIOKafkaProducer, path: str, names: dict[str, str], stats: ProduceStats
) -> None:
    pending: list[asyncio.Future[Any]] = []
    for number, line in _lines(path):
        stats.lines += 1
        for record in _records(number, line):
            if isinstance(record, str):  # the file changed since it was validated
                raise ProduceError(f"{path}:{number}: {record} (file changed while sending)")
            topic = names[record.topic]
            pending.append(await producer.send(
                topic, record.value, key=record.key, headers=[(SEQ_HEADER, record.seq)],
            ))
            stats.events += 1
            stats.topics.add(topic)
            stats.per_topic[topic] = stats.per_topic.get(topic, 0) + 1
        if len(pending) >= _CHUNK:
            await asyncio.gather(*pending)
            pending.clear()
    await producer.flush()
    await asyncio.gather(*pending)


async def _send_clock_markers(
    producer: AIOKafkaProducer, names: dict[str, str], until: float, stats: ProduceStats
) -> None:
    header = [(CLOCK_HEADER, rfc3339(until).encode())]
    pending: list[asyncio.Future[Any]] = []
    for topic in names.values():
        partitions = await producer.partitions_for(topic)
        for partition in sorted(partitions):
            pending.append(await producer.send(
                topic, b"", key=None, partition=partition, headers=header,
            ))
            stats.clock_markers += 1
    await producer.flush()
    await asyncio.gather(*pending)
