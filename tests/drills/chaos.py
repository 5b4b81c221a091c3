"""What the crash, broker and rebalance drills share: a generated workload produced in
chunks while the drill hurts the deployment, and the counts of what the intents topic
holds against ``tactful replay`` of the same input (the oracle)."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from datetime import datetime
from pathlib import Path

import orjson

from tests.integration.harness import Deployment, replay


def workload(dep: Deployment, customers: int, events: int, seed: int) -> Path:
    path = dep.tmp / "workload.jsonl"
    dep.cli("generate", "--customers", str(customers), "--events", str(events),
            "--seed", str(seed), "--out", str(path))
    return path


def _epoch(line: bytes) -> float:
    ts = str(orjson.loads(line)["ts"])
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def chunks(events: Path, n: int) -> list[Path]:
    """The file in ``n`` pieces, cut only where the time moves on (the worker breaks
    timestamp ties by the line number ``tactful produce`` stamps, which restarts with
    each file: ties must not straddle two pieces)."""
    lines = [line for line in events.read_bytes().splitlines() if line.strip()]
    times = [_epoch(line) for line in lines]
    cuts, size = [0], max(1, len(lines) // n)
    for i in range(1, n):
        at = max(cuts[-1] + 1, i * size)
        while at < len(lines) and times[at] == times[at - 1]:
            at += 1
        if at < len(lines):
            cuts.append(at)
    cuts.append(len(lines))
    paths = []
    for k, (a, b) in enumerate(itertools.pairwise(cuts)):
        path = events.with_name(f"{events.stem}-{k:02d}.jsonl")
        path.write_bytes(b"".join(line + b"\n" for line in lines[a:b]))
        paths.append(path)
    return paths


class Producer(threading.Thread):
    """``tactful produce`` of each piece in turn, the last with ``--until``; a piece whose
    produce fails (the broker is down) is produced again (its repeats are deduplicated
    by ``event_id``)."""

    def __init__(self, dep: Deployment, pieces: list[Path], until: str) -> None:
        super().__init__(daemon=True)
        self.dep, self.pieces, self.until = dep, pieces, until
        self.done = threading.Event()
        self.retries = 0
        self.error: str | None = None

    def run(self) -> None:
        try:
            for k, piece in enumerate(self.pieces):
                args = ["produce", str(piece)]
                if k == len(self.pieces) - 1:
                    args += ["--until", self.until]
                for _ in range(20):
                    if self.dep.cli(*args, check=False).returncode == 0:
                        break
                    self.retries += 1
                else:
                    self.error = f"piece {k} could not be produced"
                    return
        finally:
            self.done.set()


def counts(dep: Deployment, events: Path, until: str) -> dict[str, object]:
    """The intents topic against replay: intents and cancellations lost, records replay
    does not give, and repeats (same bytes written again: at least once after a crash);
    decisions written more than once likewise."""
    expected = replay(dep, events, until)
    records = [value for _, value in dep.read("intents", at_least=len(expected))]
    got = set(records)

    def cancelled(raw: bytes) -> bool:
        return bool(orjson.loads(raw).get("cancelled"))

    lost = expected - got
    ids = Counter(orjson.loads(r)["intent_id"] for r in records if not cancelled(r))
    decisions = [v for _, v in dep.read("decisions", quiet_seconds=2.0)]
    expected_decisions = {line for line in (dep.tmp / "replay-decisions.jsonl")
                          .read_bytes().splitlines() if line}
    return {
        "events": sum(1 for line in events.read_bytes().splitlines() if line.strip()),
        "intents_replay": sum(1 for r in expected if not cancelled(r)),
        "cancellations_replay": sum(1 for r in expected if cancelled(r)),
        "intents_lost": sum(1 for r in lost if not cancelled(r)),
        "cancellations_lost": sum(1 for r in lost if cancelled(r)),
        "records_not_in_replay": len(got - expected),
        "intent_records_written": sum(1 for r in records if not cancelled(r)),
        "intent_duplicates": sum(n - 1 for n in ids.values()),
        "cancellation_duplicates": sum(1 for r in records if cancelled(r))
        - sum(1 for r in got if cancelled(r)),
        "decisions_lost": len(expected_decisions - set(decisions)),
        "decisions_not_in_replay": len(set(decisions) - expected_decisions),
        "decision_duplicates": len(decisions) - len(set(decisions)),
        # a few of each difference, to tell a decision late from one that differs
        "samples": {
            "intents_lost": sorted(x.decode() for x in lost)[:3],
            "records_not_in_replay": sorted(x.decode() for x in got - expected)[:3],
            "decisions_lost": sorted(x.decode() for x in expected_decisions - set(decisions))[:3],
            "decisions_not_in_replay": sorted(
                x.decode() for x in set(decisions) - expected_decisions)[:3],
        },
    }


def assert_exact(found: dict[str, object], *, once: bool, logs: str) -> None:
    """Nothing lost, nothing replay lacks; with ``once``, nothing written twice."""
    for name in ("intents_lost", "cancellations_lost", "records_not_in_replay",
                 "decisions_lost", "decisions_not_in_replay"):
        assert found[name] == 0, (name, found, logs[-3000:])
    assert int(str(found["intents_replay"])) > 0, found
    if once:
        for name in ("intent_duplicates", "cancellation_duplicates", "decision_duplicates"):
            assert found[name] == 0, (name, found)
