"""``tactful produce`` against a real broker: routing, keys, order, headers, clock markers."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tactful.adapters.codec import decode_event
from tactful.core.events import key_of, topic_of

EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "spec_examples.jsonl"
INPUT_TOPICS = ("storefront", "inventory", "consent", "feedback")
PARTITIONS = 3
DEADLINE_S = 60.0


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def produce_env(kafka_bootstrap: str, prefix: str) -> dict[str, str]:
    env = dict(os.environ)
    env["TACTFUL_BOOTSTRAP"] = kafka_bootstrap
    env["TACTFUL_TOPIC_PREFIX"] = prefix
    env["TACTFUL_PARTITIONS"] = str(PARTITIONS)
    return env


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    target = tmp_path / "events.jsonl"
    shutil.copyfile(EXAMPLES, target)
    return target


def run_produce(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tactful.cli", "produce", *args],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )


async def read_topics(bootstrap: str, topics: list[str]) -> dict[TopicPartition, list[Any]]:
    """Every record of ``topics``, per partition in offset order."""
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + DEADLINE_S
        while {tp.topic for tp in consumer.assignment()} != set(topics):
            assert time.monotonic() < deadline, f"not every topic of {topics} was assigned"
            await asyncio.sleep(0.2)
        partitions = sorted(consumer.assignment())
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: dict[TopicPartition, list[Any]] = {tp: [] for tp in partitions}
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline and any(
            len(records[tp]) < ends[tp] for tp in partitions
        ):
            for tp, batch in (await consumer.getmany(timeout_ms=500)).items():
                records[tp].extend(batch)
        assert all(len(records[tp]) == ends[tp] for tp in partitions), "did not read everything"
        return records
    finally:
        await consumer.stop()


async def list_topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def header(record: Any, name: str) -> bytes | None:
    values = [value for key, value in (record.headers or ()) if key == name]
    assert len(values) <= 1
    return values[0] if values else None


def expected_records(path: Path) -> list[tuple[str, bytes, bytes, str]]:
    """(short topic, key, value, seq) for each event of a file with one object per line."""
    out = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        event = decode_event(line)
        out.append((topic_of(event), key_of(event).encode(), line, str(number)))
    return out


def check_arrived(
    records: dict[TopicPartition, list[Any]], prefix: str,
    expected: list[tuple[str, bytes, bytes, str]],
) -> None:
    by_seq = {seq: (topic, key, value) for topic, key, value, seq in expected}
    seen: set[str] = set()
    partition_of_key: dict[tuple[str, bytes], int] = {}
    last_seq_of_key: dict[tuple[str, bytes], tuple[int, ...]] = defaultdict(tuple)
    for tp, batch in records.items():
        for record in batch:
            if header(record, "tactful-clock") is not None:
                continue
            raw_seq = header(record, "tactful-seq")
            assert raw_seq is not None, "every event carries tactful-seq"
            seq = raw_seq.decode("ascii")
            assert seq in by_seq and seq not in seen, seq
            seen.add(seq)
            topic, key, value = by_seq[seq]
            assert tp.topic == f"{prefix}{topic}"
            assert record.key == key
            assert record.value == value
            # Same key: one partition, file order.
            assert partition_of_key.setdefault((tp.topic, key), tp.partition) == tp.partition
            order = tuple(int(part) for part in seq.split("."))
            assert order > last_seq_of_key[(tp.topic, key)], f"{key!r} out of order at {seq}"
            last_seq_of_key[(tp.topic, key)] = order
    assert seen == set(by_seq), sorted(set(by_seq) - seen)


async def test_examples_arrive_on_their_topics_with_keys_in_order(
    kafka_bootstrap: str, produce_env: dict[str, str], prefix: str, examples: Path,
) -> None:
    result = run_produce(produce_env, str(examples))
    assert result.returncode == 0, result.stderr
    expected = expected_records(examples)
    assert result.stderr.strip().splitlines()[-1] == (
        f"tactful: produced {len(expected)} events to 4 topics (0 clock markers)"
    )
    topics = [f"{prefix}{name}" for name in INPUT_TOPICS]
    records = await read_topics(kafka_bootstrap, topics)
    assert {tp.topic for tp in records} == set(topics)
    assert len(records) == PARTITIONS * len(topics)
    check_arrived(records, prefix, expected)
    # The storefront session's events share one partition, in file order.
    storefront = [r for tp, batch in records.items() if tp.topic == f"{prefix}storefront"
                  for r in batch if r.key == b"sess-9f2"]
    ids = [json.loads(r.value)["event_id"] for r in storefront]
    assert ids == sorted(ids) and len(ids) > 1


async def test_a_large_file_keeps_per_key_order(
    kafka_bootstrap: str, produce_env: dict[str, str], prefix: str, tmp_path: Path,
) -> None:
    events = tmp_path / "workload.jsonl"
    generated = subprocess.run(
        [sys.executable, "-m", "tactful.cli", "generate", "--customers", "60",
         "--events", "7000", "--seed", "5", "--out", str(events)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert generated.returncode == 0, generated.stderr
    result = run_produce(produce_env, str(events))
    assert result.returncode == 0, result.stderr
    expected = expected_records(events)
    topics = sorted({f"{prefix}{topic}" for topic, *_ in expected})
    check_arrived(await read_topics(kafka_bootstrap, topics), prefix, expected)


async def test_array_lines_become_one_record_per_element(
    kafka_bootstrap: str, produce_env: dict[str, str], prefix: str, tmp_path: Path,
) -> None:
    first = b'{"event_id":"a-1","type":"page_view","ts":"2026-05-03T18:58:00Z","session_id":"s-1"}'
    second = b'{"event_id":"a-2",  "type":"stock_level","ts":"2026-05-03T18:59:00Z",' \
             b'"sku":"sku-1","available":2}'
    single = b'{"event_id":"a-3","type":"page_view","ts":"2026-05-03T19:00:00Z","session_id":"s-1"}'
    events = tmp_path / "batched.jsonl"
    events.write_bytes(b"\n[" + first + b", " + second + b"]\n" + single + b"\n")
    result = run_produce(produce_env, str(events))
    assert result.returncode == 0, result.stderr
    assert "produced 3 events to 2 topics" in result.stderr
    records = await read_topics(
        kafka_bootstrap, [f"{prefix}storefront", f"{prefix}inventory"]
    )
    got = {
        header(r, "tactful-seq"): (tp.topic, r.key, r.value)
        for tp, batch in records.items() for r in batch
    }
    assert got == {
        b"2.0": (f"{prefix}storefront", b"s-1", first),
        b"2.1": (f"{prefix}inventory", b"sku-1", second),
        b"3": (f"{prefix}storefront", b"s-1", single),
    }


async def test_until_ends_every_partition_with_a_clock_marker(
    kafka_bootstrap: str, produce_env: dict[str, str], prefix: str, examples: Path,
) -> None:
    result = run_produce(produce_env, str(examples), "--until", "2026-05-08T00:00:00+00:00")
    assert result.returncode == 0, result.stderr
    markers = PARTITIONS * len(INPUT_TOPICS)
    assert result.stderr.strip().splitlines()[-1].endswith(f"({markers} clock markers)")
    topics = [f"{prefix}{name}" for name in INPUT_TOPICS]
    records = await read_topics(kafka_bootstrap, topics)
    assert len(records) == markers
    for tp, batch in records.items():
        clocks = [r for r in batch if header(r, "tactful-clock") is not None]
        assert len(clocks) == 1, tp
        marker = batch[-1]
        assert marker is clocks[0], f"{tp}: the marker comes after every event"
        assert header(marker, "tactful-clock") == b"2026-05-08T00:00:00Z"
        assert marker.key is None
        assert marker.value in (b"", None)
        assert header(marker, "tactful-seq") is None
    check_arrived(records, prefix, expected_records(examples))


async def test_a_bad_line_sends_nothing(
    kafka_bootstrap: str, produce_env: dict[str, str], prefix: str, examples: Path,
) -> None:
    lines = examples.read_bytes().splitlines(keepends=True)
    lines[2] = b'{"event_id":"bad-3","type":"teleport","ts":"2026-05-01T09:00:00Z"}\n'
    lines[5] = b"not json\n"
    examples.write_bytes(b"".join(lines))
    result = run_produce(produce_env, str(examples), "--until", "2026-05-08T00:00:00Z")
    assert result.returncode == 2
    err = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert err[0].startswith(f"tactful: {examples}:3: ")
    assert "unknown type" in err[0]
    assert err[1].startswith(f"tactful: {examples}:6: ")
    assert len(err) == 3 and "nothing was sent" in err[2]
    # Nothing changed: not even the topics were created.
    assert not {t for t in await list_topics(kafka_bootstrap) if t.startswith(prefix)}


def test_a_missing_file_is_one_line_exit_2(
    produce_env: dict[str, str], tmp_path: Path,
) -> None:
    result = run_produce(produce_env, str(tmp_path / "absent.jsonl"))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tactful: cannot read ")


def test_a_bad_setting_is_one_line_exit_2(
    produce_env: dict[str, str], examples: Path,
) -> None:
    env = dict(produce_env, TACTFUL_PARTITIONS="zero")
    result = run_produce(env, str(examples))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "TACTFUL_PARTITIONS" in lines[0]


def test_an_existing_topic_with_another_partition_count_is_refused_by_name(
    kafka_bootstrap: str, produce_env: dict[str, str], prefix: str, examples: Path,
    tmp_path: Path,
) -> None:
    # Co-partitioning: a topic with another count would send a key's records to a
    # partition whose state is another key's. produce and the worker both refuse it.
    topic = f"{prefix}consent"

    async def create() -> None:
        from aiokafka.admin import NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, PARTITIONS + 1, 1)])
        finally:
            await admin.close()

    asyncio.run(create())
    result = run_produce(produce_env, str(examples))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and topic in lines[0] and "TACTFUL_PARTITIONS" in lines[0], lines
    env = dict(produce_env, TACTFUL_APP_ID=f"tactful-test-{uuid.uuid4().hex[:8]}",
               TACTFUL_DATA_DIR=str(tmp_path / "data"), TACTFUL_WEB_PORT="19950")
    worker = subprocess.run([sys.executable, "-m", "tactful.cli", "worker"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert worker.returncode == 2, worker.stderr[-2000:]
    lines = worker.stderr.strip().splitlines()
    assert len(lines) == 1 and topic in lines[0], lines
