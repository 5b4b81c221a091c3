"""The worker on a real broker: bad input goes to the dead-letter topic and the worker goes
on; the wall clock fires a trigger soon after its due time; erasure leaves tombstones."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from tests.integration.harness import deployment

POLICY = Path(__file__).resolve().parents[2] / "src" / "tactful" / "policy" / "default.toml"


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _write(path: Path, events: list[dict[str, object]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def test_bad_input_is_dead_lettered_and_the_worker_goes_on(kafka_bootstrap: str,
                                                           tmp_path: Path) -> None:
    from aiokafka import AIOKafkaProducer

    bad = [
        (b"storefront", b"s1", b"{not json"),
        (b"storefront", b"s1", b'{"event_id":"b2","type":"teleport","ts":"2026-05-01T00:00:00Z"}'),
        (b"storefront", b"s1", b'{"event_id":"b3","type":"page_view","ts":"2026-05-01T00:00:00Z"}'),
        (b"inventory", b"k1", b'{"event_id":"b4","type":"stock_level","ts":"2026-05-01T00:00:00Z",'
                              b'"sku":"k1","available":-2}'),
        (b"consent", b"c1", b'{"event_id":"b5","type":"consent_granted","ts":"2026-05-01T00:00:00",'
                            b'"customer_id":"c1","channel":"email","source":"x"}'),
        (b"feedback", b"c1", b'{"event_id":"b6","type":"complained","ts":"2026-05-01T00:00:00Z",'
                             b'"customer_id":"c1","channel":"fax"}'),
    ]
    with deployment(kafka_bootstrap, tmp_path, clock="wall") as dep:
        dep.start_worker()
        dep.wait_ready(1)

        async def send() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
            await producer.start()
            try:
                for topic, key, value in bad:
                    await producer.send_and_wait(dep.topic(topic.decode()), key=key, value=value)
                # A good event afterwards still gets through (a cart that will be decided).
                await producer.send_and_wait(dep.topic("consent"), key=b"c1", value=orjson.dumps({
                    "event_id": "ok1", "type": "consent_granted", "ts": "2026-05-01T00:00:00Z",
                    "customer_id": "c1", "channel": "email", "source": "signup"}))
            finally:
                await producer.stop()

        asyncio.run(send())
        letters = [orjson.loads(v) for _, v in dep.read("deadletter", at_least=len(bad))]
        assert len(letters) == len(bad)
        originals = {base64.b64decode(r["original"]) for r in letters}
        assert originals == {value for _, _, value in bad}
        for record in letters:
            assert record["reason"] and record["topic"].startswith(dep.prefix)
            assert record["partition"] is not None and record["offset"] is not None
        for proc in dep.workers:
            assert proc.poll() is None, "the worker must keep running"


def test_wall_clock_fires_soon_after_the_due_time(kafka_bootstrap: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY.read_text().replace('delay = "4h"', 'delay = "6s"', 1))
    now = datetime.now(UTC).replace(microsecond=0)
    events = [
        {"event_id": "w1", "type": "consent_granted", "ts": _ts(now - timedelta(days=1)),
         "customer_id": "c-wall", "channel": "email", "source": "signup"},
        {"event_id": "w2", "type": "login", "ts": _ts(now), "session_id": "s-wall",
         "customer_id": "c-wall", "identity": {"method": "login"}},
        {"event_id": "w3", "type": "cart_add", "ts": _ts(now), "session_id": "s-wall",
         "customer_id": "c-wall", "identity": {"method": "login"}, "sku": "k1",
         "product_id": "p1", "category": ["home"], "price": 20.0, "currency": "USD", "qty": 1},
    ]
    with deployment(kafka_bootstrap, tmp_path, clock="wall",
                    extra_env={"TACTFUL_POLICY": str(policy)}) as dep:
        dep.start_worker()
        dep.wait_ready(1)
        dep.cli("produce", str(_write(tmp_path / "cart.jsonl", events)))
        due = now + timedelta(seconds=6)
        value, seen_at = dep.first_arrival("intents", timeout=60)
        intent = orjson.loads(value)
        assert intent["kind"] == "abandoned_cart" and intent["created_at"] == _ts(due)
        assert intent["customer_id"] == "c-wall" and intent["channel"] == "email"
        # Fires when the wall clock passes the due time: not before, and within 2 s of it.
        late = seen_at - due.timestamp()
        assert 0.0 <= late <= 2.0, late


# The RocksDB store runs here (its files on disk are scanned too); the memory store runs
# in `make drills` (tests/drills/test_restart_variants.py).
def test_erasure_leaves_no_key_of_the_customer(kafka_bootstrap: str, tmp_path: Path) -> None:
    erasure_leaves_no_key(kafka_bootstrap, tmp_path, "rocksdb://")


def erasure_leaves_no_key(kafka_bootstrap: str, tmp_path: Path, store: str) -> None:
    start = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    events = [
        {"event_id": "e1", "type": "consent_granted", "ts": _ts(start), "customer_id": "c-gone",
         "channel": "email", "source": "signup"},
        {"event_id": "e2", "type": "login", "ts": _ts(start + timedelta(minutes=1)),
         "session_id": "s-gone", "customer_id": "c-gone", "identity": {"method": "login"}},
        {"event_id": "e3", "type": "cart_add", "ts": _ts(start + timedelta(minutes=2)),
         "session_id": "s-gone", "customer_id": "c-gone", "identity": {"method": "login"},
         "sku": "k1", "product_id": "p1", "category": ["home"], "price": 20.0,
         "currency": "USD", "qty": 1},
        {"event_id": "e4", "type": "erase_requested", "ts": _ts(start + timedelta(hours=1)),
         "customer_id": "c-gone"},
    ]
    with deployment(kafka_bootstrap, tmp_path, extra_env={"TACTFUL_STORE": store}) as dep:
        worker = dep.start_worker()
        dep.wait_ready(1)
        # The state is committed before the erasure comes: a key made and erased within
        # one batch never reaches the changelog at all (each key is written once a batch).
        dep.cli("produce", str(_write(tmp_path / "before.jsonl", events[:3])), "--until",
                _ts(start + timedelta(minutes=30)))
        deadline = time.monotonic() + 120
        for table, key in (("customers", b"c-gone"), ("sessions", b"s-gone")):
            while key not in {k for k, _ in dep.read_topic(f"{dep.app_id}-{table}-changelog",
                                                            quiet_seconds=1)}:
                assert time.monotonic() < deadline, f"{table} never held {key!r}"
                time.sleep(1)
        dep.cli("produce", str(_write(tmp_path / "erase.jsonl", events[3:])), "--until",
                _ts(start + timedelta(days=1)))
        decisions = dep.read("decisions", at_least=1)
        assert [orjson.loads(v)["reason"] for _, v in decisions] == ["erased"]
        for table, key in (("customers", b"c-gone"), ("sessions", b"s-gone")):
            changelog = f"{dep.app_id}-{table}-changelog"
            records = dep.read_topic(changelog)
            values = [v for k, v in records if k == key]
            assert values, f"{table} never held {key!r}"
            assert values[-1] is None, f"{table}: the last record of {key!r} is not a tombstone"
        # The sku table never names the customer, and the erasure mark is a hash.
        for table in ("skus", "erasures"):
            for k, v in dep.read_topic(f"{dep.app_id}-{table}-changelog"):
                assert b"c-gone" not in (k or b"") + (v or b""), table
        # Inputs that waited for the watermark are all tombstoned once applied.
        last: dict[bytes | None, bytes | None] = {}
        for k, v in dep.read_topic(f"{dep.app_id}-pending-changelog"):
            last[k] = v
        assert last and all(v is None for v in last.values())

        # Compaction then removes the customer's keys from the changelogs altogether.
        changelogs = [f"{dep.app_id}-{t}-changelog" for t in ("customers", "sessions")]
        asyncio.run(_compact_now(kafka_bootstrap, changelogs))
        deadline = time.monotonic() + 120
        while True:
            left = [(t, k) for t in changelogs for k, _ in dep.read_topic(t, quiet_seconds=1)
                    if k in (b"c-gone", b"s-gone")]
            if not left:
                break
            assert time.monotonic() < deadline, f"still in the changelogs: {left}"
            asyncio.run(_roll_segments(kafka_bootstrap, changelogs, dep.partitions))
            time.sleep(2)

        dep.stop(worker)
        if store.startswith("rocksdb"):
            _assert_rocksdb_forgot(tmp_path / "data-0", (b"c-gone", b"s-gone"))


async def _compact_now(bootstrap: str, topics: list[str]) -> None:
    """Let the log cleaner work on these topics at once (test broker only)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([
            ConfigResource(ConfigResourceType.TOPIC, topic, configs={
                "cleanup.policy": "compact", "segment.ms": "500",
                "min.cleanable.dirty.ratio": "0.001", "delete.retention.ms": "500",
                "min.compaction.lag.ms": "0", "max.compaction.lag.ms": "1000",
            })
            for topic in topics
        ])
    finally:
        await admin.close()


async def _roll_segments(bootstrap: str, topics: list[str], partitions: int) -> None:
    """A record on every partition rolls the active segment (older than segment.ms), so the
    cleaner may compact what was written before."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic in topics:
            for p in range(partitions):
                await producer.send_and_wait(topic, key=b"~filler", value=b"", partition=p)
    finally:
        await producer.stop()


def _assert_rocksdb_forgot(data_dir: Path, keys: tuple[bytes, ...]) -> None:
    from rocksdict import AccessType, Options, Rdict

    stores = sorted(data_dir.rglob("*.db"))
    names = {p.name.rsplit("-", 1)[0] for p in stores}
    assert {"customers", "sessions", "erasures"} <= names, stores
    seen = 0
    for path in stores:
        db = Rdict(str(path), options=Options(raw_mode=True),
                   access_type=AccessType.read_only())
        try:
            for key, _ in db.items():
                seen += 1
                assert key not in keys, f"{path.name} still holds {key!r}"
        finally:
            db.close()
    assert seen, "the RocksDB stores were empty: nothing was checked"
