"""The worker (stream clock) writes exactly the intents `tactful replay` writes, same input.

`tactful produce --until` ends every input partition with a clock marker; the worker then
has passed the same moment replay's clock runs out at. The workers' group is stable before
the input is produced; rebalances and crashes mid-stream are drilled in
test_worker_restart.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
