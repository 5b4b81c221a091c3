"""An unexpected error while applying valid input stops the worker (fail fast) instead
of skipping the input, which could mean ignoring a "stop": the process exits non-zero,
its logs name the error's type but no customer id, and a healthy worker started after
it applies the input that failed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from tests.integration.harness import deployment

FAULTY = Path(__file__).with_name("faulty_worker.py")
SECRET = "cust-failfast-7731"


def test_a_failing_engine_stops_the_worker_and_the_input_waits(kafka_bootstrap: str,
                                                               tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    rows = [
        {"event_id": "f1", "type": "consent_granted", "ts": "2026-05-01T09:00:00Z",
         "customer_id": SECRET, "channel": "email", "source": "signup"},
        {"event_id": "f2", "type": "login", "ts": "2026-05-01T09:01:00Z",
         "session_id": "sess-ff", "customer_id": SECRET, "identity": {"method": "login"}},
        {"event_id": "f3", "type": "cart_add", "ts": "2026-05-01T09:02:00Z",
         "session_id": "sess-ff", "customer_id": SECRET, "identity": {"method": "login"},
         "sku": "k1", "product_id": "p1", "category": ["home"], "price": 20.0,
         "currency": "USD", "qty": 1},
    ]
    events.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    with deployment(kafka_bootstrap, tmp_path) as dep:
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
