"""Crash, restart and rebalance drills: stop or add a worker mid-stream (stream clock) and
check that the intents topic ends up holding exactly what `tactful replay` gives.

At least once, an intent may be written twice after a crash, always with the same
intent_id and the same bytes; with ``exactly_once`` each is written once.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.integration.harness import Deployment, deployment, replay

UNTIL = "2026-06-30T00:00:00Z"
MID_STREAM = 2.0  # seconds after the input is produced: the worker is still applying it


def _workload(dep: Deployment) -> Path:
    events = dep.tmp / "workload.jsonl"
    dep.cli("generate", "--customers", "300", "--events", "12000", "--seed", "11",
            "--out", str(events))
    return events


def _check(dep: Deployment, events: Path, *, once: bool) -> None:
    expected = replay(dep, events, UNTIL)
    assert len(expected) > 200
    records = [value for _, value in dep.read("intents", at_least=len(expected))]
    got = set(records)
    missing = {orjson.loads(x)["intent_id"] for x in expected - got}
    assert not missing, (len(missing), len(expected), dep.logs()[-3000:])
    # A repeat after a crash is the same intent, byte for byte: nothing replay lacks.
    extra = sorted(got - expected)
    assert not extra, _explain(extra, expected)
    if once:
        # An intent and its cancellation share the intent_id: each is written once.
        ids = Counter((orjson.loads(x)["intent_id"], orjson.loads(x).get("cancelled", False))
                      for x in records)
        assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1][:5]


def _explain(extra: list[bytes], expected: set[bytes]) -> str:
    """For each unexpected record: the replay intent with its id, if any, and the
    fields in which the two differ."""
    by_id = {orjson.loads(x)["intent_id"]: orjson.loads(x) for x in expected}
    lines = []
    for raw in extra[:5]:
        got = orjson.loads(raw)
        want = by_id.get(got["intent_id"])
        if want is None:
            lines.append(f"not in replay: {got}")
        else:
            diff = {k: (got.get(k), want.get(k)) for k in got.keys() | want.keys()
                    if got.get(k) != want.get(k)}
            lines.append(f"{got['intent_id']} differs (worker, replay): {diff}")
    return f"{len(extra)} records replay does not give:\n" + "\n".join(lines)


# Two of the four (signal, store) pairs run here; the other two run in `make drills`
# (tests/drills/test_restart_variants.py), which keeps `make test` under 15 minutes.
RESTARTS = {
    "sigterm": (signal.SIGTERM, "memory://"),
    "sigkill": (signal.SIGKILL, "memory://"),
    # RocksDB keeps the tables on disk across the restart: after a crash they are
    # discarded and restored from the changelogs (local_state).
    "sigterm-rocksdb": (signal.SIGTERM, "rocksdb://"),
    "sigkill-rocksdb": (signal.SIGKILL, "rocksdb://"),
}
QUICK_RESTARTS = ("sigkill", "sigterm-rocksdb")


@pytest.mark.parametrize("variant", QUICK_RESTARTS)
def test_restart_mid_stream_loses_no_intent(kafka_bootstrap: str, tmp_path: Path,
                                            variant: str) -> None:
    restart_mid_stream(kafka_bootstrap, tmp_path, *RESTARTS[variant])


def restart_mid_stream(kafka_bootstrap: str, tmp_path: Path, sig: int, store: str) -> None:
    with deployment(kafka_bootstrap, tmp_path, extra_env={"TACTFUL_STORE": store}) as dep:
        events = _workload(dep)
        first = dep.start_worker()
        dep.wait_ready(1)
        dep.cli("produce", str(events), "--until", UNTIL)
        time.sleep(MID_STREAM)
        dep.stop(first, sig)
        dep.start_worker(slot=0)  # same data directory: local RocksDB state is there
        dep.wait_ready(1)
        _check(dep, events, once=False)
        if store.startswith("rocksdb"):
            discarded = "local table state discarded" in dep.logs()
            assert discarded == (sig == signal.SIGKILL), dep.logs()[-2000:]


def test_worker_joining_mid_stream_loses_no_intent(kafka_bootstrap: str,
                                                   tmp_path: Path) -> None:
    # The first worker hands its held state over before it rejoins the group.
    with deployment(kafka_bootstrap, tmp_path) as dep:
        events = _workload(dep)
        dep.start_worker()
        dep.wait_ready(1)
        dep.cli("produce", str(events), "--until", UNTIL)
        time.sleep(MID_STREAM)
        dep.start_worker()  # the group rebalances while the first worker is busy
        dep.wait_ready(2)
        _check(dep, events, once=False)


def test_worker_killed_in_a_group_loses_no_intent(kafka_bootstrap: str,
                                                  tmp_path: Path) -> None:
    with deployment(kafka_bootstrap, tmp_path) as dep:
        events = _workload(dep)
        dep.start_worker()
        second = dep.start_worker()
        dep.wait_ready(2)
        dep.cli("produce", str(events), "--until", UNTIL)
        time.sleep(MID_STREAM)
        dep.stop(second, signal.SIGKILL)  # the survivor takes its partitions over
        dep.wait_ready(1)
        _check(dep, events, once=False)


def test_exactly_once_restart_after_sigkill_writes_each_intent_once(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    with deployment(kafka_bootstrap, tmp_path,
                    extra_env={"TACTFUL_PROCESSING_GUARANTEE": "exactly_once"}) as dep:
        events = _workload(dep)
        first = dep.start_worker()
        dep.wait_ready(1)
        dep.cli("produce", str(events), "--until", UNTIL)
        time.sleep(MID_STREAM)
        dep.stop(first, signal.SIGKILL)
        second = dep.start_worker()
        dep.wait_ready(1)
        _check(dep, events, once=True)
        # ... and it stops cleanly on SIGTERM (its last commit used to fail, and the stop
        # hung until the harness killed it: exit -9).
        dep.stop(second, signal.SIGTERM)
        assert second.returncode == 0, dep.logs()[-2000:]

