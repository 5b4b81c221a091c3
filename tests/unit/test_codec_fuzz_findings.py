"""What the atheris fuzzer (fuzz/input_records.py) found, held as unit tests: each input
it crashed on is now rejected with a reason, and its reproducer stays in fuzz/corpus/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.input_contract import TOPIC_KEY, TOPICS

from tactful.adapters.codec import Rejected, dead_letter, decode_message
from tactful.core.events import Event, key_of
from tactful.service.metrics import dead_letter_code

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [line for line in (ROOT / "tests" / "fixtures" / "spec_examples.jsonl")
            .read_bytes().splitlines() if line.strip()]


def _value(record: Path) -> bytes:
    """A corpus file's value (after its key and header lines)."""
    return record.read_bytes().split(b"\n", 2)[2]


def test_a_price_change_in_a_storefront_array_is_rejected_alone() -> None:
    # The fuzzer's input: a storefront batch whose first element became a price_change.
    # The worker read its session_id to place it (AttributeError) and stopped.
    value = _value(ROOT / "fuzz" / "corpus" / "storefront" / "crash-price_change-on-storefront.rec")
    first, *rest = decode_message(value, topic="storefront")
    assert isinstance(first, Rejected) and first.index == 0
    assert first.reason == ("unknown type for topic storefront: price_change belongs on "
                            "topic inventory - at `$.type`")
    assert dead_letter_code(first.reason) == "unknown_type"
    assert json.loads(dead_letter(first, "tactful.storefront", 0, 7))["reason"] == first.reason
    assert [type(e).__name__ for e in rest] == ["CartRemove", "CheckoutStarted", "Logout"]


@pytest.mark.parametrize("topic", sorted(TOPICS))
@pytest.mark.parametrize("line", EXAMPLES, ids=lambda b: json.loads(b)["type"])
def test_an_event_is_taken_on_its_own_topic_only(line: bytes, topic: str) -> None:
    kind = json.loads(line)["type"]
    own_topic, key_field = TOPIC_KEY[kind]
    (item,) = decode_message(line, topic=topic)
    if topic == own_topic:
        assert isinstance(item, Event) and key_of(item) == json.loads(line)[key_field]
    else:
        assert isinstance(item, Rejected) and item.index is None and item.original == line
        assert item.reason == (f"unknown type for topic {topic}: {kind} belongs on topic "
                               f"{own_topic} - at `$.type`")


def test_without_a_topic_every_type_is_taken() -> None:
    # tactful replay and produce read files of every type, in one stream.
    assert all(isinstance(item, Event) for line in EXAMPLES for item in decode_message(line))
