"""Records reach their state whatever the producer's partitioner (SPEC §1).

A storefront team using confluent-kafka (librdkafka's default partitioner hashes keys
with CRC32, not Java's murmur2) sends consents, logins, carts and then revocations to a
group of two wall-clock workers; some records even carry a key that is not the event's
id. Every revocation is honoured before the reminder falls due, and the shoppers who did
not revoke get their reminder: each record was forwarded to the partition its id is kept
in."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import orjson
from confluent_kafka import Producer

from tests.integration.harness import deployment

REVOKING = [f"cust-crc-{n:02d}" for n in range(12)]
KEEPING = [f"cust-keep-{n:02d}" for n in range(2)]


def _policy(tmp: Path) -> Path:
    text = (resources.files("tactful") / "policy" / "default.toml").read_text()
    path = tmp / "policy.toml"
    path.write_text(text.replace('[triggers.abandoned_cart]\ndelay = "4h"',
                                 '[triggers.abandoned_cart]\ndelay = "25s"'))
    return path


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def test_revocations_sent_with_crc32_partitioning_are_all_honoured(kafka_bootstrap: str,
                                                                   tmp_path: Path) -> None:
    env = {"TACTFUL_POLICY": str(_policy(tmp_path))}
    with deployment(kafka_bootstrap, tmp_path, clock="wall", extra_env=env) as dep:
        dep.start_worker()
        dep.start_worker()
        dep.wait_ready(2)
        producer = Producer({"bootstrap.servers": kafka_bootstrap})  # default partitioner

        def send(topic: str, event: dict[str, object], key: str) -> None:
            producer.produce(dep.topic(topic), orjson.dumps(event), key=key.encode())

        now = time.time()
        for n, cust in enumerate(REVOKING + KEEPING):
            sess = f"sess-{cust}"
            # Every third record is keyed by something that is not the event's id.
            wrong = n % 3 == 0
            who = {"customer_id": cust, "identity": {"method": "login"}, "session_id": sess}
            send("consent", {"event_id": f"g-{cust}", "type": "consent_granted",
                             "ts": _iso(now), "customer_id": cust, "channel": "email",
                             "source": "signup"}, "misc" if wrong else cust)
            send("storefront", {"event_id": f"l-{cust}", "type": "login", "ts": _iso(now),
                                **who}, "misc" if wrong else sess)
            send("storefront", {"event_id": f"a-{cust}", "type": "cart_add",
                                "ts": _iso(now + 1), **who, "sku": "sku-lamp",
                                "product_id": "p-lamp", "category": ["home"], "price": 40.0,
                                "currency": "USD", "qty": 1}, sess)
        producer.flush(30)
        time.sleep(max(0.0, now + 8 - time.time()))
        for n, cust in enumerate(REVOKING):
            send("consent", {"event_id": f"r-{cust}", "type": "consent_revoked",
                             "ts": _iso(time.time()), "customer_id": cust, "channel": "email",
                             "source": "preference_center"}, "misc" if n % 4 == 0 else cust)
        producer.flush(30)

        decisions = [orjson.loads(v) for _, v in dep.read("decisions", at_least=14,
                                                            quiet_seconds=8)]
        intents = [orjson.loads(v) for _, v in dep.read("intents", quiet_seconds=1)]
        emailed = sorted({i["customer_id"] for i in intents if "customer_id" in i})
        assert emailed == KEEPING, (emailed, dep.logs()[-3000:])
        for cust in REVOKING:
            mine = [d for d in decisions if d["customer_id"] == cust]
            assert [(d["kind"], d["reason"]) for d in mine] == [("abandoned_cart", "no_consent")]
