"""schemas/ is the formal form of the contract: it must match the decoder exactly."""

from __future__ import annotations

import copy
import functools
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from tactful.adapters.codec import decode_event
from tactful.adapters.schemas import documents, main
from tactful.core.engine import Engine
from tactful.core.errors import BadEvent
from tactful.core.policy import load_policy
from tactful.service.replay import replay_lines
from tactful.workload import dumps_line, generate

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
EXAMPLES = ROOT / "tests" / "fixtures" / "spec_examples.jsonl"


@functools.cache
def _validator(rel: str) -> Draft202012Validator:
    doc = orjson.loads((SCHEMAS / rel).read_bytes())
    Draft202012Validator.check_schema(doc)
    return Draft202012Validator(doc, format_checker=FormatChecker())


ANY = _validator("events/any.json")


def _examples() -> list[dict[str, Any]]:
    lines = list(generate(30, 3000, seed=11))
    lines += [orjson.loads(x) for x in EXAMPLES.read_bytes().splitlines() if x.strip()]
    return lines


SAMPLES = _examples()


def _decoder_accepts(event: object) -> bool:
    try:
        decode_event(orjson.dumps(event))
    except BadEvent:
        return False
    return True


def test_checked_in_schemas_equal_the_generated_ones() -> None:
    assert main(["--check", str(SCHEMAS)]) == 0
    on_disk = {p.relative_to(SCHEMAS).as_posix() for p in SCHEMAS.rglob("*.json")}
    assert on_disk == set(documents())


def test_every_document_is_a_valid_2020_12_schema() -> None:
    for rel in documents():
        doc = orjson.loads((SCHEMAS / rel).read_bytes())
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(doc)


def test_valid_events_pass_both_the_schema_and_the_decoder() -> None:
    for event in SAMPLES:
        assert ANY.is_valid(event), event
        assert _validator(f"events/{event['type']}.json").is_valid(event), event
        assert _decoder_accepts(event), event


BAD = [
    ("missing event_id", lambda e: e.pop("event_id")),
    ("unknown type", lambda e: e.update(type="teleport")),
    ("naive timestamp", lambda e: e.update(ts="2026-05-01T09:00:00")),
    ("not a timestamp", lambda e: e.update(ts="yesterday")),
    ("empty event_id", lambda e: e.update(event_id="")),
    ("numeric event_id", lambda e: e.update(event_id=7)),
]
BAD_BY_TYPE = {
    "cart_add": [
        ("negative qty", lambda e: e.update(qty=-1)),
        ("zero qty", lambda e: e.update(qty=0)),
        ("negative price", lambda e: e.update(price=-0.01)),
        ("lowercase currency", lambda e: e.update(currency="usd")),
        ("category not a list", lambda e: e.update(category="home")),
        ("customer_id without identity", lambda e: e.pop("identity")),
        ("unknown identity method", lambda e: e.update(identity={"method": "guess"})),
    ],
    "stock_level": [("negative stock", lambda e: e.update(available=-3))],
    "consent_granted": [
        ("unknown channel", lambda e: e.update(channel="pigeon")),
        ("missing source", lambda e: e.pop("source")),
    ],
    "preferences_set": [
        ("bad quiet hours", lambda e: e.update(quiet_hours={"start": "25:00", "end": "08:00"})),
        ("unknown topic", lambda e: e.update(topics_opt_out=["spam"])),
    ],
    "purchase": [
        ("no items", lambda e: e.update(items=[])),
        ("gift not a bool", lambda e: e.update(gift="yes")),
    ],
}


def _first(type_name: str) -> dict[str, Any]:
    return copy.deepcopy(next(e for e in SAMPLES if e["type"] == type_name and (
        type_name != "cart_add" or "customer_id" in e)))


@pytest.mark.parametrize("type_name", sorted({e["type"] for e in SAMPLES}))
def test_bad_events_are_refused_by_both(type_name: str) -> None:
    cases = BAD + BAD_BY_TYPE.get(type_name, [])
    for label, mutate in cases:
        event = _first(type_name)
        mutate(event)
        assert not ANY.is_valid(event), (type_name, label)
        assert not _decoder_accepts(event), (type_name, label)


def test_an_unknown_time_zone_is_refused_by_the_decoder_beyond_the_schema() -> None:
    # JSON Schema cannot know the IANA database; the decoder checks it (README: validation).
    event = {"event_id": "p1", "type": "preferences_set", "ts": "2026-05-01T09:00:00Z",
             "customer_id": "c1", "timezone": "Mars/Olympus_Mons"}
    assert ANY.is_valid(event)
    assert not _decoder_accepts(event)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-10, 10, allow_nan=False)
    | st.sampled_from(["", "x", "email", "sms", "login", "2026-05-01T09:00:00Z", "08:00", "USD"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=2),
    max_leaves=4,
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(0, len(SAMPLES) - 1),
    field=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
    value=JSON_VALUES,
    drop=st.booleans(),
    pick_existing=st.booleans(),
    which=st.integers(0, 63),
)
def test_schema_and_decoder_agree_on_mutated_events(
    index: int, field: str, value: object, drop: bool, pick_existing: bool, which: int
) -> None:
    event = copy.deepcopy(SAMPLES[index])
    if pick_existing:
        keys = sorted(event)
        field = keys[which % len(keys)]
    if drop:
        event.pop(field, None)
    else:
        event[field] = value
    assert ANY.is_valid(event) == _decoder_accepts(event), event


def test_replay_outputs_match_the_output_schemas() -> None:
    intents, decisions = io.BytesIO(), io.BytesIO()
    lines = [dumps_line(e) for e in generate(200, 6000, seed=3)]
    replay_lines(lines, Engine(load_policy()), intents, decisions)
    intent = _validator("outputs/intent.json")
    cancellation = _validator("outputs/cancellation.json")
    decision = _validator("outputs/decision.json")
    records = [orjson.loads(x) for x in intents.getvalue().splitlines()]
    assert any("cancelled" not in r for r in records)
    for rec in records:
        schema = cancellation if rec.get("cancelled") else intent
        assert schema.is_valid(rec), rec
    decided = [orjson.loads(x) for x in decisions.getvalue().splitlines()]
    assert decided
    for rec in decided:
        assert decision.is_valid(rec), rec


def test_an_integral_float_counts_as_an_integer_for_both() -> None:
    event = _first("cart_add")
    event["qty"] = 2.0
    assert ANY.is_valid(event)
    assert _decoder_accepts(event)
    event["qty"] = 2.5
    assert not ANY.is_valid(event)
    assert not _decoder_accepts(event)


@pytest.mark.parametrize(("outcome", "reason", "valid"), [
    ("emitted", None, True),
    ("emitted", "quiet_hours", False),  # SPEC §2: reason is null only for emitted ...
    ("deferred", "quiet_hours", True),
    ("deferred", None, False),  # ... and a deferred decision names what moved send_after
    ("deferred", "stale", False),
    ("suppressed", "frequency_cap", True),
    ("suppressed", None, False),
    ("suppressed", "too_many", False),  # only the codes of SPEC §2
    ("cancelled", "converted", True),
])
def test_the_decision_schema_holds_reason_to_outcome(
    outcome: str, reason: str | None, valid: bool
) -> None:
    record = {"decision_id": "dec-1", "customer_id": "c1", "kind": "abandoned_cart",
              "channel": "sms", "outcome": outcome, "reason": reason,
              "at": "2026-05-01T09:00:00Z", "trigger_event_ids": ["e1"]}
    assert _validator("outputs/decision.json").is_valid(record) == valid


def test_the_intent_schema_lists_the_reason_codes() -> None:
    doc = orjson.loads((SCHEMAS / "outputs" / "intent.json").read_bytes())
    items = doc["$defs"]["ContactIntent"]["properties"]["reasons"]["items"]
    codes = {c for part in items.get("anyOf", [items]) for c in part["enum"]}
    assert codes == {
        "abandoned_cart", "assist_offer", "browse_abandonment", "low_stock", "back_in_stock",
        "price_drop", "post_purchase",
        "verified_identity", "consent", "topic_preferences", "do_not_contact", "quiet_hours",
        "frequency_cap", "cooldown", "min_lag", "conversion_exit", "gift_exclusion",
        "sensitive_category", "staleness", "erasure",
    }
