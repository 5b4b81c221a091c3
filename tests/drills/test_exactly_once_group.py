"""The exactly_once group drill (``make drills``): a second worker joins a busy
exactly_once group and leaves it. It failed (stalled) until the commits took the
offsets of every input processed (RELIABILITY.md, failure 7); one passing run is not
yet proof enough for README to drop the gap ("Known gaps (worker)")."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.integration.harness import deployment
from tests.integration.test_worker_restart import MID_STREAM, UNTIL, _check, _workload

__all__ = ["UNTIL"]


def test_exactly_once_worker_joining_then_leaving_writes_each_intent_once(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    # Two rebalances of a busy exactly_once group: every open transaction ends at each,
    # the tables are recovered from what was committed, and the inputs since are applied
    # again, by whoever owns them then: each intent once, and exactly replay's.
    with deployment(kafka_bootstrap, tmp_path,
                    extra_env={"TACTFUL_PROCESSING_GUARANTEE": "exactly_once"}) as dep:
        events = _workload(dep)
        dep.start_worker()
        dep.wait_ready(1)
        dep.cli("produce", str(events), "--until", UNTIL)
        time.sleep(MID_STREAM)
        second = dep.start_worker()
        dep.wait_ready(2)
        time.sleep(MID_STREAM)
        dep.stop(second, signal.SIGTERM)  # leaves the group cleanly
        dep.wait_ready(1)
        _check(dep, events, once=True)
