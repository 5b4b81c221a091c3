"""The exactly_once group drill (``make drills``): a second worker joins a busy
exactly_once group and leaves it, stopped or killed. It stalled until the commits
took the offsets of every input processed (RELIABILITY.md, failure 7)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.integration.harness import deployment
from tests.integration.test_worker_restart import MID_STREAM, UNTIL, _check, _workload

__all__ = ["UNTIL"]


@pytest.mark.parametrize("leaving", ["sigterm", "sigkill"])
def test_exactly_once_worker_joining_then_leaving_writes_each_intent_once(
        kafka_bootstrap: str, tmp_path: Path, leaving: str) -> None:
    # Two rebalances of a busy exactly_once group: every open transaction ends at each,
    # the tables are recovered from what was committed, and the inputs since are applied
    # again, by whoever owns them then: each intent once, and exactly replay's. Killed,
    # the second worker leaves its transactions open and its partitions held until its
    # session times out; the survivor fences and aborts them.
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
        # SIGTERM: it leaves the group cleanly
        dep.stop(second, signal.SIGTERM if leaving == "sigterm" else signal.SIGKILL)
        dep.wait_ready(1)
        _check(dep, events, once=True)
