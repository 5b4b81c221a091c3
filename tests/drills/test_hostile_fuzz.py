"""Hostile input at every input topic, from a fuzzer, on a real broker.

Hypothesis builds the bad records (derandomized: the same records every run): truncated
JSON, non-UTF-8, wrong and unknown types, good events on an input topic that does not
carry their type, missing fields, values over 1 MiB, deep nesting, huge numbers, NaN and
infinities, timestamps far in the past and the future, bad headers, empty arrays and
arrays mixing good events with bad elements. They are sent between the
events of a generated workload, and good events are also sent under wrong keys. Counted:
every bad record (or bad array element) is dead-lettered once, with a reason, its source
topic and its original bytes; no good event is; the worker runs throughout; and the
intents are exactly those ``tactful replay`` gives for the good events alone. A story of
its own checks that an event stamped in the future fires no pending timer early.

Size: ``TACTFUL_DRILL_FUZZ_RECORDS`` bad records (default 400) among
``TACTFUL_DRILL_FUZZ_EVENTS`` good events (default 3000).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tests.drills.pii import ids_of, leaks, metric_labels
from tests.drills.results import record
from tests.input_contract import KNOWN_TYPES, REQUIRED, TOPIC_KEY, TOPICS
from tests.integration.harness import deployment, replay

UNTIL = "2026-06-30T00:00:00Z"
RECORDS = int(os.environ.get("TACTFUL_DRILL_FUZZ_RECORDS", "400"))
EVENTS = int(os.environ.get("TACTFUL_DRILL_FUZZ_EVENTS", "3000"))
ADMIN_TOKEN = "drill-admin-token-0123456789"



@dataclass
class Hostile:
    kind: str  # what is wrong, for the counts
    topic: str  # short name
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    # For an array: how many of its elements are bad (each is dead-lettered alone), and
    # its good elements (applied, and in the oracle's input). 0 bad: the record is bad whole.
    bad_elements: int = 0
    good_elements: list[dict[str, object]] = field(default_factory=list)

    @property
    def letters(self) -> int:
        return self.bad_elements or 1


def _js(event: dict[str, object]) -> bytes:
    return orjson.dumps(event)


def _where(event: dict[str, object]) -> tuple[str, bytes]:
    topic, key_field = TOPIC_KEY[str(event["type"])]
    return topic, str(event[key_field]).encode()


def _wrong_typed(value: object) -> st.SearchStrategy[object]:
    if isinstance(value, bool):
        return st.sampled_from(["yes", 1, [], {}])
    if isinstance(value, int | float):
        return st.one_of(st.text(max_size=5), st.just([value]), st.just({"v": value}),
                         st.booleans())
    if isinstance(value, str):
        return st.one_of(st.integers(-2**63, 2**63 - 1),
                         st.floats(allow_nan=False, allow_infinity=False), st.just([value]),
                         st.just({"v": value}), st.booleans())
    return st.one_of(st.text(max_size=5), st.integers(-2**63, 2**63 - 1))


class Samples(list[dict[str, object]]):
    """The good events bad records are made from (a short repr for Hypothesis)."""

    def __repr__(self) -> str:
        return f"<{len(self)} workload events>"


@st.composite
def hostile(draw: st.DrawFn, samples: Samples) -> Hostile:
    event = dict(draw(st.sampled_from(samples)))
    topic, key = _where(event)
    raw = _js(event)
    kind = draw(st.sampled_from([
        "truncated", "non_utf8", "wrong_type", "unknown_type", "missing_field", "too_large",
        "deep", "huge_number", "nan", "far_past", "far_future", "bad_header", "not_object",
        "empty_array", "mixed_array", "wrong_topic",
    ]))
    if kind == "truncated":
        return Hostile(kind, topic, key, raw[:draw(st.integers(1, len(raw) - 1))])
    if kind == "non_utf8":
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80abc"]))
        return Hostile(kind, topic, key, raw.replace(b'"event_id":"', b'"event_id":"' + bad, 1))
    if kind == "wrong_type":
        name = draw(st.sampled_from(sorted(("event_id", "ts", *REQUIRED[str(event["type"])]))))
        event[name] = draw(_wrong_typed(event[name]))
        return Hostile(kind, topic, key, _js(event))
    if kind == "unknown_type":
        event["type"] = draw(st.one_of(
            st.text(min_size=0, max_size=12).filter(lambda t: t not in KNOWN_TYPES),
            st.sampled_from(["PAGE_VIEW", "page-view", " cart_add", "cart_add\u200b"])))
        return Hostile(kind, topic, key, _js(event))
    if kind == "missing_field":
        name = draw(st.sampled_from(sorted(("event_id", "type", "ts",
                                            *REQUIRED[str(event["type"])]))))
        del event[name]
        return Hostile(kind, topic, key, _js(event))
    if kind == "too_large":
        size = draw(st.integers(1_048_577, 1_300_000))
        event["note"] = "x" * size
        return Hostile(kind, topic, key, _js(event))
    if kind == "deep":
        depth = draw(st.integers(9, 20_000))
        open_, close = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        return Hostile(kind, topic, key,
                       raw[:-1] + b',"extra":' + open_ * depth + b"1" + close * depth + b"}")
    if kind == "huge_number":
        numeric = {"qty": 1, "available": 1, "price": 1.0}
        name = next((n for n in numeric if n in event), None)
        if name is None:
            event["available"] = 1
            event["type"], event["sku"] = "stock_level", "sku-fuzz"
            topic, key, name = "inventory", b"sku-fuzz", "available"
            event.pop("session_id", None)
        digits = draw(st.sampled_from([b"1" + b"0" * draw(st.integers(13, 400)),
                                       b"1e400", b"-1e400", b"1e13", b"-5", b"1.5e308"]))
        body = _js({**event, name: 0}).replace(f'"{name}":0'.encode(), f'"{name}":'.encode()
                                               + digits, 1)
        return Hostile(kind, topic, key, body)
    if kind == "nan":
        token = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"nan"]))
        body = _js({**event, "ts": "@"}).replace(b'"ts":"@"', b'"ts":' + token, 1) \
            if draw(st.booleans()) else raw[:-1] + b',"price":' + token + b"}"
        return Hostile(kind, topic, key, body)
    if kind == "far_past":
        event["ts"] = draw(st.sampled_from(["1969-07-20T20:17:40Z", "0001-01-01T00:00:00Z",
                                            "1900-01-01T00:00:00+01:00", "1969-12-31T23:59:59Z"]))
        return Hostile(kind, topic, key, _js(event))
    if kind == "far_future":
        # Past the 15 min skew bound of the wall clock, and past the 2200 limit.
        event["ts"] = draw(st.sampled_from(["2030-01-01T00:00:00Z", "2199-12-31T23:59:59Z",
                                            "2200-01-02T00:00:00Z", "9999-12-31T23:59:59Z",
                                            "2027-06-01T00:00:00+14:00"]))
        return Hostile(kind, topic, key, _js(event))
    if kind == "bad_header":
        name, value = draw(st.sampled_from([
            ("tactful-seq", b"\xff\xfe"), ("tactful-seq", b"-1"), ("tactful-seq", b"1" * 80),
            ("tactful-clock", b"not a time"), ("tactful-clock", b"2026-05-01T00:00:00"),
        ]))
        return Hostile(kind, topic, key, raw, [(name, value)])
    if kind == "not_object":
        return Hostile(kind, topic, key, draw(st.sampled_from(
            [b"5", b'"page_view"', b"null", b"true", b"{}", b"", b" ", b"\x00"])))
    if kind == "wrong_topic":  # a good event on an input topic that does not carry its type
        other = draw(st.sampled_from(sorted(t for t in TOPICS if t != topic)))
        return Hostile(kind, other, key, raw)
    if kind == "empty_array":
        return Hostile(kind, topic, key, draw(st.sampled_from([b"[]", b" [ ] ", b"[\n]"])))
    # mixed_array: bad elements, and possibly good ones (the caller numbers them)
    bad = draw(st.lists(st.sampled_from([b"5", b'"x"', b"null", b"[]", b"{}", b"true",
                                          _js({**event, "type": "teleport"}),
                                          _js({k: v for k, v in event.items() if k != "ts"})]),
                        min_size=1, max_size=4))
    return Hostile(kind, topic, key, b"[" + b",".join(bad) + b"]", bad_elements=len(bad))


def hostile_records(samples: list[dict[str, object]], n: int) -> list[Hostile]:
    found: list[Hostile] = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(hostile(Samples(samples)))
    def collect(item: Hostile) -> None:
        found.append(item)

    collect()
    return found


def future_story() -> tuple[list[dict[str, object]], list[Hostile]]:
    """A cart whose reminder is due at 13:00 and is emptied at 11:00; a record stamped 2030
    for the customer and another for the session arrive between, at each input topic.
    Were they let through, the clock would jump and the reminder fire before the cart is
    emptied (an intent replay does not give)."""
    login = {"session_id": "sess-future", "customer_id": "cust-future",
             "identity": {"method": "login"}}
    line = {"sku": "sku-f", "product_id": "prod-f", "category": ["home"], "price": 50.0,
            "currency": "USD", "qty": 1}
    good = [
        {"event_id": "fut-1", "type": "consent_granted", "ts": "2026-05-02T08:00:00Z",
         "customer_id": "cust-future", "channel": "email", "source": "signup"},
        {"event_id": "fut-2", "type": "login", "ts": "2026-05-02T08:59:00Z", **login},
        {"event_id": "fut-3", "type": "cart_add", "ts": "2026-05-02T09:00:00Z", **login, **line},
        {"event_id": "fut-4", "type": "cart_remove", "ts": "2026-05-02T11:00:00Z", **login,
         **line},
    ]
    future = "2030-01-01T00:00:00Z"
    bad = [
        Hostile("future_story", "storefront", b"sess-future", _js(
            {"event_id": "fut-x1", "type": "page_view", "ts": future, **login})),
        Hostile("future_story", "consent", b"cust-future", _js(
            {"event_id": "fut-x2", "type": "consent_granted", "ts": future,
             "customer_id": "cust-future", "channel": "sms", "source": "x"})),
        Hostile("future_story", "feedback", b"cust-future", _js(
            {"event_id": "fut-x3", "type": "opened", "ts": future,
             "customer_id": "cust-future", "channel": "email"})),
        Hostile("future_story", "inventory", b"sku-f", _js(
            {"event_id": "fut-x4", "type": "stock_level", "ts": future, "sku": "sku-f",
             "available": 0})),
    ]
    return good, bad


async def _raise_size_limits(bootstrap: str, topics: list[str]) -> None:
    """Let records over 1 MiB onto the input topics, so the worker's own bound meets them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs={
            "max.message.bytes": "4194304"}) for t in topics])
    finally:
        await admin.close()


async def _send(bootstrap: str, plan: list[tuple[str, bytes | None, bytes,
                                                 list[tuple[str, bytes]]]]) -> None:
    # aiokafka's default partitioner is murmur2, as Java's: a good event with its own key
    # arrives where its id belongs.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * 2**20,
                                linger_ms=5, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        pending = [await producer.send(topic, value, key=key, headers=headers)
                   for topic, key, value, headers in plan]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def test_fuzzed_hostile_input_is_dead_lettered_and_good_input_gives_replays_intents(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    fuzz_drill(kafka_bootstrap, tmp_path, RECORDS, EVENTS)


def fuzz_drill(kafka_bootstrap: str, tmp_path: Path, records: int, events: int,
               name: str = "hostile_fuzz") -> None:
    with deployment(kafka_bootstrap, tmp_path,
                    extra_env={"TACTFUL_ADMIN_TOKEN": ADMIN_TOKEN,
                               "TACTFUL_LOG_LEVEL": "info"}) as dep:
        workload = tmp_path / "workload.jsonl"
        dep.cli("generate", "--customers", str(max(50, events // 15)), "--events",
                str(events), "--seed", "23", "--out", str(workload))
        good = [orjson.loads(line) for line in workload.read_bytes().splitlines()]
        story, future_bad = future_story()
        bad = hostile_records(good[:500], records)
        assert len(bad) >= records * 0.9, len(bad)

        # The plan: the good events in event-time order (the workload with the story
        # merged in: worker and replay agree on input in time order), a bad record after
        # every few good ones, the story's future records right after its cart_add.
        # Consent grants of customers of their own head the mixed arrays and are sent
        # under wrong keys, stamped like the event before them.
        plan: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []
        oracle: list[dict[str, object]] = []
        pool = iter(range(10**6))

        def extra_customer(prefix: str, ts: object) -> dict[str, object]:
            n = next(pool)
            return {"event_id": f"{prefix}-{n}", "type": "consent_granted", "ts": ts,
                    "customer_id": f"cust-{prefix}-{n}", "channel": "push", "source": "fuzz"}

        def send_good(event: dict[str, object], key: bytes | str | None = "own") -> None:
            oracle.append(event)
            topic, own_key = _where(event)
            plan.append((dep.topic(topic), own_key if key == "own" else key,  # type: ignore[arg-type]
                         _js(event), [("tactful-seq", str(len(oracle)).encode())]))

        def send_bad(item: Hostile, ts: object) -> None:
            if item.kind == "mixed_array":  # a good event at the head, applied as any other
                head = extra_customer("array", ts)
                oracle.append(head)
                item.topic, item.key = _where(head)
                item.value = b"[" + _js(head) + b"," + item.value[1:]
                item.good_elements = [head]
                item.headers = [("tactful-seq", str(len(oracle)).encode())]
            plan.append((dep.topic(item.topic), item.key, item.value, item.headers))

        merged = sorted([*good, *story], key=lambda e: _epoch(str(e["ts"])))
        every = max(1, len(merged) // max(1, len(bad)))
        queue = list(bad)
        wrong_keys: list[str] = []
        for n, event in enumerate(merged):
            send_good(event)
            if event["event_id"] == "fut-3":
                for item in future_bad:
                    send_bad(item, event["ts"])
            if n % every == 0 and queue:
                send_bad(queue.pop(0), event["ts"])
            if n % max(1, len(merged) // 20) == 0 and len(wrong_keys) < 20:
                wrong = extra_customer("wrongkey", event["ts"])
                wrong_keys.append(str(wrong["customer_id"]))
                send_good(wrong, key=(None, b"", b"not-the-customer")[len(wrong_keys) % 3])
        last_ts = merged[-1]["ts"]
        for item in queue:
            send_bad(item, last_ts)
        while len(wrong_keys) < 20:
            wrong = extra_customer("wrongkey", last_ts)
            wrong_keys.append(str(wrong["customer_id"]))
            send_good(wrong, key=b"not-the-customer")

        worker = dep.start_worker()
        dep.wait_ready(1)
        inputs = [dep.topic(t) for t in ("storefront", "inventory", "consent", "feedback")]
        asyncio.run(_raise_size_limits(kafka_bootstrap, inputs))
        asyncio.run(_send(kafka_bootstrap, plan))
        dep.cli("produce", str(_empty(tmp_path)), "--until", UNTIL)  # clock markers only

        oracle_file = tmp_path / "oracle.jsonl"
        oracle_file.write_bytes(b"".join(_js(e) + b"\n" for e in oracle))
        expected = replay(dep, oracle_file, UNTIL)
        all_bad = [*future_bad, *bad]
        want_letters = sum(item.letters for item in all_bad)
        intents, _ = dep.outputs(at_least=len(expected))
        letters = [orjson.loads(v) for _, v in dep.read("deadletter", at_least=want_letters,
                                                          quiet_seconds=3)]
        metrics = dep.metrics()
        alive = worker.poll() is None
        wrong_key_known = [
            orjson.loads(dep.get(0, f"/customers/{c}/decisions",
                                 {"Authorization": f"Bearer {ADMIN_TOKEN}"})[1]).get("known")
            for c in wrong_keys]
    logs = dep.logs()

    # Which dead letter belongs to which bad record: the hash of its original bytes (of
    # the whole, when the letter carries only the first 256 KiB), in its topic.
    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    kinds = {(dep.topic(i.topic), digest(i.value)): i.kind for i in all_bad}
    sent = Counter((dep.topic(i.topic), digest(i.value)) for i in all_bad if not i.bad_elements)
    got: Counter[tuple[str, str]] = Counter()
    cut = 0
    for d in letters:
        if d.get("index") is not None:
            continue
        original = base64.b64decode(d["original"])
        if d.get("original_size") is not None:
            cut += 1
            assert len(original) == 256 * 1024 < d["original_size"], d["original_size"]
            got[(d["topic"], d["original_sha256"])] += 1
        else:
            got[(d["topic"], digest(original))] += 1
    elements = Counter(d["topic"] for d in letters if d.get("index") is not None)
    want_elements = Counter(dep.topic(i.topic) for i in all_bad for _ in range(i.bad_elements))
    good_digests = {(dep.topic(_where(e)[0]), digest(_js(e))) for e in oracle}
    lettered_good = [k for k in got - sent if k in good_digests]
    counted: Counter[str] = Counter()
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "tactful_dead_letters_total":
                counted[sample.labels["reason"]] += int(sample.value)
    ids = ids_of([oracle_file])
    found_logs, found_labels = leaks(logs, ids), leaks(metric_labels(metrics), ids)
    missing = expected - intents
    extra = intents - expected
    record(name, {
        "good_events": len(oracle), "bad_records": len(all_bad),
        "bad_by_kind": dict(Counter(i.kind for i in all_bad)),
        "dead_letters_expected": want_letters, "dead_letters": len(letters),
        "dead_letters_by_reason_code": dict(counted),
        "bad_records_not_dead_lettered": sum((sent - got).values()),
        "dead_letters_of_no_bad_record": sum((got - sent).values()),
        "bad_array_elements": sum(want_elements.values()),
        "array_elements_dead_lettered": sum(elements.values()),
        "good_events_dead_lettered": len(lettered_good), "dead_letters_cut_at_256k": cut,
        "intents_replay": len(expected), "intents_worker": len(intents),
        "intents_lost": len(missing), "intents_not_in_replay": len(extra),
        "wrong_key_events_placed": sum(1 for k in wrong_key_known if k),
        "worker_alive": alive, "ids_in_logs": len(found_logs["ids"]),
        "ids_in_metric_labels": len(found_labels["ids"]),
    })
    assert alive, logs[-3000:]
    assert not sent - got, [kinds[k] for k in sent - got]
    assert not got - sent, len(got - sent)
    assert elements == want_elements
    assert not lettered_good, lettered_good[:3]
    assert all(d["reason"] and d["partition"] is not None and d["offset"] is not None
               for d in letters)
    assert sum(counted.values()) == len(letters) == want_letters
    assert not missing and not extra, (len(missing), len(extra), logs[-2000:])
    assert wrong_key_known == [True] * 20, wrong_key_known
    assert not any(found_logs.values()) and not any(found_labels.values()), (found_logs,
                                                                              found_labels)


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _empty(tmp: Path) -> Path:
    path = tmp / "empty.jsonl"
    path.write_bytes(b"")
    return path
