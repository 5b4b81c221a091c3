"""Run every story in this folder through the replay engine and compare with its expectations.

Expectations were written by hand from SPEC.md (see README.md here); this
harness only projects and compares, it never derives expected values.
"""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from tactful.core.engine import Engine
from tactful.core.policy import load_policy
from tactful.service.replay import replay_lines

HERE = Path(__file__).parent
STORIES = sorted(p for p in HERE.iterdir() if (p / "events.jsonl").exists())
DECISION_KEYS = ("kind", "channel", "outcome", "reason", "at", "customer_id", "session_id")
TIME_KEYS = {"at", "created_at", "send_after", "send_before"}


def _utc(value: str) -> str:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def _norm(record: dict[str, object], keys: object) -> dict[str, object]:
    out = {}
    for key in keys:  # type: ignore[attr-defined]
        value = record.get(key)
        if key in TIME_KEYS and isinstance(value, str):
            value = _utc(value)
        out[key] = value
    return out


def _jsonl(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def run_story(story: Path) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    until = None
    if (story / "until").exists():
        until = datetime.fromisoformat(
            (story / "until").read_text().strip().replace("Z", "+00:00")
        ).timestamp()
    intents, decisions = io.BytesIO(), io.BytesIO()
    lines = (story / "events.jsonl").read_bytes().splitlines()
    stats = replay_lines(lines, Engine(load_policy()), intents, decisions, until=until)
    assert stats.rejected == 0, stats.rejected_lines
    parse = lambda b: [orjson.loads(x) for x in b.getvalue().splitlines()]  # noqa: E731
    return parse(intents), parse(decisions)


def _grouped(records: list[dict[str, object]]) -> list[tuple[object, Counter[bytes]]]:
    """Consecutive records with the same `at` form one multiset."""
    groups: list[tuple[object, Counter[bytes]]] = []
    for rec in records:
        blob = orjson.dumps(rec, option=orjson.OPT_SORT_KEYS)
        if groups and groups[-1][0] == rec["at"]:
            groups[-1][1][blob] += 1
        else:
            groups.append((rec["at"], Counter([blob])))
    return groups


@pytest.mark.parametrize("story", STORIES, ids=[s.name for s in STORIES])
def test_story(story: Path) -> None:
    intents, decisions = run_story(story)
    expected = _jsonl(story / "expected_decisions.jsonl")
    expected_decisions = [_norm(d, DECISION_KEYS) for d in expected]
    actual_decisions = [_norm(d, DECISION_KEYS) for d in decisions]
    for rec in expected_decisions + actual_decisions:
        if rec["session_id"] is None:
            rec.pop("session_id")
    assert _grouped(actual_decisions) == _grouped(expected_decisions)

    expected_intents = _jsonl(story / "expected_intents.jsonl")
    assert len(intents) == len(expected_intents), [
        (i.get("kind"), i.get("channel"), i.get("cancelled")) for i in intents
    ]
    for position, (want, got) in enumerate(zip(expected_intents, intents, strict=True)):
        assert _norm(got, want.keys()) == _norm(want, want.keys()), f"intent #{position}"


def test_every_story_has_expectations() -> None:
    assert len(STORIES) >= 15
    for story in STORIES:
        assert (story / "story.md").exists(), story.name
        assert (story / "expected_decisions.jsonl").exists(), story.name
