"""The worker (stream clock) writes exactly the intents `tactful replay` writes, same input.

`tactful produce --until` ends every input partition with a clock marker; the worker then
has passed the same moment replay's clock runs out at. The workers' group is stable before
the input is produced; rebalances and crashes mid-stream are drilled in
test_worker_restart.py.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import deployment, merge_stories, replay

ROOT = Path(__file__).resolve().parents[2]
STORIES = sorted(p for p in (ROOT / "tests" / "scenarios").iterdir()
                 if (p / "events.jsonl").exists())
UNTIL = "2026-11-30T00:00:00Z"


@pytest.mark.parametrize("workers", [1, 2])
def test_scenario_stories(kafka_bootstrap: str, tmp_path: Path, workers: int) -> None:
    events = merge_stories(STORIES, tmp_path / "stories.jsonl")
    with deployment(kafka_bootstrap, tmp_path) as dep:
        for _ in range(workers):
            dep.start_worker()
        dep.wait_ready(workers)
        dep.cli("produce", str(events), "--until", UNTIL)
        expected = replay(dep, events, UNTIL)
        assert expected, "the stories must produce intents"
        intents, _ = dep.outputs(at_least=len(expected))
        assert intents == expected, dep.logs()[-3000:]


@pytest.mark.parametrize("workers", [1, 2])
def test_generated_workload(kafka_bootstrap: str, tmp_path: Path, workers: int) -> None:
    events = tmp_path / "workload.jsonl"
    with deployment(kafka_bootstrap, tmp_path) as dep:
        dep.cli("generate", "--customers", "500", "--events", "20000", "--seed", "5",
                "--out", str(events))
        for _ in range(workers):
            dep.start_worker()
        dep.wait_ready(workers)
        dep.cli("produce", str(events), "--until", "2026-06-30T00:00:00Z")
        expected = replay(dep, events, "2026-06-30T00:00:00Z")
        assert len(expected) > 300
        intents, decisions = dep.outputs(at_least=len(expected))
        assert intents == expected, dep.logs()[-3000:]
        assert decisions, "decisions are written too"
        _check_metrics(dep.metrics(), events, intents, dep.tmp / "replay-decisions.jsonl")


def _check_metrics(text: str, events: Path, intents: set[bytes], decisions: Path) -> None:
    """The workers' counters add up to what they wrote and read, and no label carries
    an id of the workload."""
    totals: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    names = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.add(sample.name)
            labels = tuple(sorted(sample.labels.items()))
            totals[(sample.name, labels)] = totals.get((sample.name, labels), 0.0) + sample.value
    for name in ("tactful_events_consumed_total", "tactful_decisions_total",
                 "tactful_intents_total", "tactful_processing_latency_seconds_bucket",
                 "tactful_timer_lateness_seconds_count", "tactful_consumer_lag",
                 "tactful_state_keys", "tactful_build_info"):
        assert name in names, name

    def by(name: str, *keys: str) -> Counter[tuple[str, ...]]:
        got: Counter[tuple[str, ...]] = Counter()
        for (sample, labels), value in totals.items():
            if sample == name:
                got[tuple(dict(labels)[k] for k in keys)] += int(value)
        return +got

    lines = [orjson.loads(line) for line in events.read_bytes().splitlines() if line]
    consumed = [e for line in lines for e in (line if isinstance(line, list) else [line])]
    assert by("tactful_events_consumed_total", "type") == Counter(
        (e["type"],) for e in consumed)
    written = [orjson.loads(raw) for raw in intents]
    assert by("tactful_intents_total", "kind", "channel") == Counter(
        (i["kind"], i["channel"]) for i in written if "cancelled" not in i)
    assert by("tactful_cancellations_total", "reason") == Counter(
        (i["reason"],) for i in written if "cancelled" in i)
    assert by("tactful_decisions_total", "kind", "channel", "outcome", "reason") == Counter(
        (d["kind"], d["channel"] or "none", d["outcome"], d["reason"] or "none")
        for d in (orjson.loads(raw) for raw in decisions.read_bytes().splitlines()))
    ids = re.findall(r"\b(?:cust|sess|sku|prod)-\d+|\b(?:int|dec)-[0-9a-f]{8}|[^\s\"]+@[^\s\"]+",
                     text)
    assert not ids, ids[:5]
