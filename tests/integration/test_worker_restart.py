"""Stop the worker mid-stream (SIGTERM) and start it again: no intent replay gives is lost
(at least once: a repeat carries the same intent_id).

SIGKILL is not here yet: a drill lost 2 of 353 intents once (known gap, README)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import orjson

from tests.integration.harness import deployment, replay

UNTIL = "2026-06-30T00:00:00Z"


def test_restart_after_sigterm_mid_stream_loses_no_intent(kafka_bootstrap: str,
                                                         tmp_path: Path) -> None:
    events = tmp_path / "workload.jsonl"
    with deployment(kafka_bootstrap, tmp_path) as dep:
        dep.cli("generate", "--customers", "300", "--events", "12000", "--seed", "11",
                "--out", str(events))
        first = dep.start_worker()
        dep.wait_ready(1)
        dep.cli("produce", str(events), "--until", UNTIL)
        time.sleep(2.0)  # mid-stream: the worker is still applying the input
        dep.stop(first, signal.SIGTERM)
        dep.start_worker()
        dep.wait_ready(1)
        expected = {orjson.loads(x)["intent_id"] for x in replay(dep, events, UNTIL)}
        got, _ = dep.outputs(at_least=len(expected))
        ids = {orjson.loads(x)["intent_id"] for x in got}
        missing = expected - ids
        assert not missing, (len(missing), len(expected), dep.logs()[-2000:])
