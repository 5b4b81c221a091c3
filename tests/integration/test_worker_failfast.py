"""An input the engine fails on (a poison pill) is dead-lettered and the worker goes on;
an error outside the engine (the state store) still stops it (fail fast), since going on
could mean ignoring a "stop". Neither logs the customer id the error carries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from tests.integration.harness import deployment

FAULTY = Path(__file__).with_name("faulty_worker.py")
SECRET = "cust-failfast-7731"
OTHER = "cust-healthy-2208"


def _story(path: Path, customer: str, n: int) -> Path:
    login = {"identity": {"method": "login"}, "customer_id": customer}
    rows = [
        {"event_id": f"f{n}1", "type": "consent_granted", "ts": "2026-05-01T09:00:00Z",
         "customer_id": customer, "channel": "email", "source": "signup"},
        {"event_id": f"f{n}2", "type": "login", "ts": "2026-05-01T09:01:00Z",
         "session_id": f"sess-{n}", **login},
        {"event_id": f"f{n}3", "type": "cart_add", "ts": "2026-05-01T09:02:00Z",
         "session_id": f"sess-{n}", **login, "sku": "k1", "product_id": "p1",
         "category": ["home"], "price": 20.0, "currency": "USD", "qty": 1},
    ]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def test_a_poison_input_is_dead_lettered_and_the_worker_goes_on(kafka_bootstrap: str,
                                                                tmp_path: Path) -> None:
    poison = _story(tmp_path / "poison.jsonl", SECRET, 1)
    healthy = _story(tmp_path / "healthy.jsonl", OTHER, 2)
    env = {"TACTFUL_TEST_FAULT": "engine", "TACTFUL_TEST_POISON": SECRET}
    with deployment(kafka_bootstrap, tmp_path, extra_env=env) as dep:
        faulty = dep.start_worker(command=[sys.executable, str(FAULTY)])
        dep.wait_ready(1)
        dep.cli("produce", str(poison))
        dep.cli("produce", str(healthy), "--until", "2026-05-03T00:00:00Z")
        intents = [orjson.loads(v) for _, v in dep.read("intents", at_least=1)]
        assert [(i["customer_id"], i["kind"]) for i in intents] == [(OTHER, "abandoned_cart")]
        letters = [orjson.loads(v) for _, v in dep.read("deadletter", at_least=3,
                                                          quiet_seconds=2)]
        reasons = {d["reason"] for d in letters}
        assert reasons == {"processing_error: KeyError"}, letters
        assert faulty.poll() is None, "the worker stopped"
        logs = dep.logs()
        assert "an input failed in the engine" in logs and "KeyError" in logs, logs[-2000:]
        assert SECRET not in logs, "a customer id reached the logs"


def test_a_failing_store_stops_the_worker_and_the_input_waits(kafka_bootstrap: str,
                                                              tmp_path: Path) -> None:
    events = _story(tmp_path / "events.jsonl", SECRET, 1)
    env = {"TACTFUL_TEST_FAULT": "store", "TACTFUL_TEST_POISON": SECRET}
    with deployment(kafka_bootstrap, tmp_path, extra_env=env) as dep:
        faulty = dep.start_worker(command=[sys.executable, str(FAULTY)])
        dep.wait_ready(1)
        dep.cli("produce", str(events), "--until", "2026-05-03T00:00:00Z")
        try:
            code = faulty.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the worker kept running: {dep.logs()[-2000:]}") from None
        assert code != 0
        logs = dep.logs()
        assert "agent failed" in logs and "KeyError" in logs, logs[-2000:]
        assert SECRET not in logs, "a customer id reached the logs"
        dep.stopped.append(faulty)

        dep.start_worker()
        dep.wait_ready(1)
        intents = [orjson.loads(v) for _, v in dep.read("intents", at_least=1)]
        assert [(i["customer_id"], i["kind"]) for i in intents] == [(SECRET, "abandoned_cart")]
