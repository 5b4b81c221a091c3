"""Decoding input (SPEC §1) and dead letters: every kind of bad input says why."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from tactful.adapters.codec import Rejected, dead_letter, decode_event, decode_message
from tactful.core.errors import BadEvent
from tactful.core.events import (
    EVENT_TYPES,
    CartAdd,
    ConsentGranted,
    Event,
    PreferencesSet,
    Purchase,
    StockLevel,
    key_of,
    topic_of,
    type_of,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "spec_examples.jsonl"
EXAMPLE_LINES = [line for line in EXAMPLES.read_bytes().splitlines() if line.strip()]
EXAMPLE = {json.loads(line)["type"]: json.loads(line) for line in EXAMPLE_LINES}
FEEDBACK_TYPES = ("delivered", "opened", "clicked", "bounced", "complained", "unsubscribed",
                  "do_not_contact")

CART_ADD = {
    "event_id": "e-1", "type": "cart_add", "ts": "2026-05-03T19:02:30Z", "session_id": "s-1",
    "customer_id": "c-1", "identity": {"method": "login"}, "sku": "sku-1", "product_id": "p-1",
    "category": ["home"], "price": 10.0, "currency": "USD", "qty": 1,
}


def js(obj: object) -> bytes:
    return json.dumps(obj).encode()


def bad(data: bytes) -> str:
    with pytest.raises(BadEvent) as info:
        decode_event(data)
    reason = info.value.reason
    assert reason and isinstance(reason, str)
    return reason


# ---------------------------------------------------------------- examples


@pytest.mark.parametrize(
    "line", EXAMPLE_LINES, ids=[json.loads(x)["event_id"] for x in EXAMPLE_LINES]
)
def test_every_example_decodes_to_its_type(line: bytes) -> None:
    raw = json.loads(line)
    ev = decode_event(line)
    assert type_of(ev) == raw["type"]
    assert ev.event_id == raw["event_id"]
    assert ev.ts == datetime.fromisoformat(raw["ts"].replace("Z", "+00:00"))
    assert ev.ts.tzinfo is not None


def test_examples_cover_every_spec_type_except_feedback_variants() -> None:
    seen = {json.loads(x)["type"] for x in EXAMPLE_LINES}
    assert seen | set(FEEDBACK_TYPES) == set(EVENT_TYPES)


@pytest.mark.parametrize("kind", FEEDBACK_TYPES)
def test_every_feedback_type_decodes(kind: str) -> None:
    raw = dict(EXAMPLE["delivered"], type=kind)
    ev = decode_event(js(raw))
    assert type_of(ev) == kind
    assert key_of(ev) == raw["customer_id"]
    assert topic_of(ev) == "feedback"


def test_example_fields_are_kept() -> None:
    ev = decode_event(js(EXAMPLE["cart_add"]))
    assert isinstance(ev, CartAdd)
    assert (ev.sku, ev.product_id, ev.category, ev.price, ev.currency, ev.qty) == (
        "sku-778", "prod-linen-duvet", ["home", "bedding"], 149.0, "USD", 1)
    assert ev.identity is not None and ev.identity.method == "login"
    p = decode_event(js(EXAMPLE["purchase"]))
    assert isinstance(p, Purchase)
    assert p.gift is True and p.items[0].sku == "sku-310" and p.items[0].qty == 2
    c = decode_event(js(EXAMPLE["consent_granted"]))
    assert isinstance(c, ConsentGranted)
    pref = decode_event(js(EXAMPLE["preferences_set"]))
    assert isinstance(pref, PreferencesSet)
    assert pref.quiet_hours is not None and pref.quiet_hours.start == "21:30"


@pytest.mark.parametrize(
    ("kind", "topic", "key"),
    [("cart_add", "storefront", "sess-9f2"), ("stock_level", "inventory", "sku-778"),
     ("price_change", "inventory", "sku-778"), ("consent_granted", "consent", "cust-42"),
     ("erase_requested", "consent", "cust-77"), ("unsubscribed", "feedback", "cust-42")],
)
def test_topic_and_key_of_spec_1(kind: str, topic: str, key: str) -> None:
    ev = decode_event(js(EXAMPLE[kind]))
    assert topic_of(ev) == topic
    assert key_of(ev) == key


def test_offset_timestamps_are_the_same_instant() -> None:
    a = decode_event(js(dict(CART_ADD, ts="2026-05-03T15:02:30-04:00")))
    b = decode_event(js(CART_ADD))
    assert a.ts.timestamp() == b.ts.timestamp()


# ------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("data", [b'{"event_id":', b"", b"not json", b"\xff\xfe{}", b"{'a': 1}"])
def test_not_json(data: bytes) -> None:
    assert "JSON" in bad(data)


@pytest.mark.parametrize("field", ["event_id", "ts", "type", "session_id", "sku", "price", "qty"])
def test_missing_required_field_is_named(field: str) -> None:
    raw = {k: v for k, v in CART_ADD.items() if k != field}
    reason = bad(js(raw))
    assert field in reason and "missing" in reason.lower()


def test_missing_field_of_consent_event() -> None:
    raw = {k: v for k, v in EXAMPLE["consent_granted"].items() if k != "channel"}
    assert "channel" in bad(js(raw))


def test_missing_field_of_purchase_item() -> None:
    raw = dict(EXAMPLE["purchase"], items=[{"sku": "x", "qty": 1}])
    assert "price" in bad(js(raw))


def test_unknown_type() -> None:
    reason = bad(js(dict(CART_ADD, type="wishlist_add")))
    assert "type" in reason and "wishlist_add" in reason


def test_not_an_object() -> None:
    assert "object" in bad(b"42")


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (dict(CART_ADD, qty=-1), "qty"),
        (dict(CART_ADD, qty=0), "qty"),
        (dict(CART_ADD, price=-0.01), "price"),
        ({"event_id": "e", "type": "stock_level", "ts": "2026-05-04T08:00:00Z", "sku": "s",
          "available": -1}, "available"),
        ({"event_id": "e", "type": "price_change", "ts": "2026-05-04T08:00:00Z", "sku": "s",
          "price": -5, "currency": "USD"}, "price"),
        (dict(EXAMPLE["purchase"], items=[{"sku": "x", "qty": -2, "price": 1.0}]), "qty"),
        (dict(CART_ADD, currency="dollars"), "currency"),
        (dict(CART_ADD, identity={"method": "psychic"}), "method"),
        (dict(EXAMPLE["preferences_set"], topics_opt_out=["spam"]), "topics_opt_out"),
        (dict(CART_ADD, event_id=""), "event_id"),
        (dict(EXAMPLE["purchase"], items=[]), "items"),
    ],
)
def test_impossible_values(raw: dict[str, object], where: str) -> None:
    assert where in bad(js(raw))


def test_available_bool_is_refused() -> None:
    raw = {"event_id": "e", "type": "stock_level", "ts": "2026-05-04T08:00:00Z", "sku": "s",
           "available": True}
    assert "available" in bad(js(raw))


@pytest.mark.parametrize("ts", ["2026-05-03T19:02:30", "2026-05-03 19:02:30", "2026-05-03",
                                "yesterday", "2026-13-03T19:02:30Z"])
def test_naive_or_malformed_timestamp(ts: str) -> None:
    assert "ts" in bad(js(dict(CART_ADD, ts=ts)))


def test_naive_expires_at() -> None:
    raw = dict(EXAMPLE["consent_granted"], expires_at="2027-05-01T09:00:00")
    assert "expires_at" in bad(js(raw))


@pytest.mark.parametrize("kind", ["consent_granted", "consent_revoked", "unsubscribed"])
def test_unknown_channel(kind: str) -> None:
    base = EXAMPLE.get(kind) or dict(EXAMPLE["delivered"], type=kind)
    reason = bad(js(dict(base, channel="fax")))
    assert "channel" in reason and "fax" in reason


@pytest.mark.parametrize(("start", "end"), [("25:00", "08:00"), ("21:00", "24:00"),
                                            ("9:00", "08:00"), ("21:60", "08:00")])
def test_bad_quiet_hours(start: str, end: str) -> None:
    raw = dict(EXAMPLE["preferences_set"], quiet_hours={"start": start, "end": end})
    assert "quiet_hours" in bad(js(raw))


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "EST5EDT/Nowhere", "../etc/passwd", ""])
def test_unknown_time_zone(tz: str) -> None:
    reason = bad(js(dict(EXAMPLE["preferences_set"], timezone=tz)))
    assert "timezone" in reason or "time zone" in reason


@pytest.mark.parametrize("region", ["ZZ", "US-ZZ", "us-fl", "USA", "US-", "FR_75", "", "F"])
def test_unknown_region(region: str) -> None:
    # SPEC §1: an ISO 3166-1 alpha-2 country or an ISO 3166-2 subdivision, as assigned.
    assert "region" in bad(js(dict(EXAMPLE["preferences_set"], region=region)))


@pytest.mark.parametrize("region", ["FR", "US-FL", "FR-75C", "GB-ENG"])
def test_a_region_is_kept(region: str) -> None:
    ev = decode_event(js(dict(EXAMPLE["preferences_set"], region=region)))
    assert ev.region == region  # type: ignore[attr-defined]


def test_customer_id_without_identity() -> None:
    raw = {k: v for k, v in CART_ADD.items() if k != "identity"}
    reason = bad(js(raw))
    assert "identity" in reason


def test_anonymous_storefront_event_is_fine() -> None:
    raw = {k: v for k, v in CART_ADD.items() if k not in ("identity", "customer_id")}
    ev = decode_event(js(raw))
    assert isinstance(ev, CartAdd) and ev.customer_id is None


@pytest.mark.parametrize("method", ["cookie", "ip_match", "device_graph", "login", "email_link"])
def test_every_identity_method_decodes(method: str) -> None:
    ev = decode_event(js(dict(CART_ADD, identity={"method": method})))
    assert ev.identity.method == method  # type: ignore[attr-defined]


# ------------------------------------------------------------ messages


def test_single_object_message() -> None:
    out = list(decode_message(js(CART_ADD)))
    assert len(out) == 1 and isinstance(out[0], CartAdd)


def test_array_message_in_order() -> None:
    evs = [dict(CART_ADD, event_id=f"e-{i}", qty=i + 1) for i in range(4)]
    out = list(decode_message(js(evs)))
    assert [e.event_id for e in out] == ["e-0", "e-1", "e-2", "e-3"]  # type: ignore[union-attr]
    assert all(isinstance(e, Event) for e in out)


def test_array_message_with_leading_whitespace() -> None:
    out = list(decode_message(b"  \n" + js([CART_ADD])))
    assert len(out) == 1 and isinstance(out[0], CartAdd)


def test_bad_element_is_rejected_alone_with_its_index() -> None:
    good0 = dict(CART_ADD, event_id="e-0")
    bad1 = dict(CART_ADD, event_id="e-1", qty=-3)
    good2 = dict(CART_ADD, event_id="e-2")
    bad3 = dict(CART_ADD, event_id="e-3", type="teleport")
    out = list(decode_message(js([good0, bad1, good2, bad3])))
    assert len(out) == 4
    assert isinstance(out[0], CartAdd) and out[0].event_id == "e-0"
    assert isinstance(out[1], Rejected) and out[1].index == 1 and "qty" in out[1].reason
    assert json.loads(out[1].original) == bad1  # the element's own bytes
    assert isinstance(out[2], CartAdd) and out[2].event_id == "e-2"
    assert isinstance(out[3], Rejected) and out[3].index == 3 and "teleport" in out[3].reason


def test_array_element_that_is_not_an_object() -> None:
    out = list(decode_message(js([CART_ADD, 7, "x"])))
    assert isinstance(out[0], CartAdd)
    assert [getattr(r, "index", None) for r in out[1:]] == [1, 2]


def test_broken_array_is_one_rejection() -> None:
    data = b"[" + js(CART_ADD) + b","
    out = list(decode_message(data))
    assert len(out) == 1 and isinstance(out[0], Rejected)
    assert "JSON" in out[0].reason and out[0].original == data


@pytest.mark.parametrize("data", [b"[]", b"  [ ]", b"[\n]"])
def test_empty_array_is_one_rejection(data: bytes) -> None:
    # Nothing to apply, but a producer sending empty batches is broken: it is told.
    out = list(decode_message(data))
    assert len(out) == 1 and isinstance(out[0], Rejected)
    assert out[0].reason.startswith("an empty array") and out[0].original == data
    assert out[0].index is None


def test_bad_single_message_is_rejected_whole() -> None:
    data = js(dict(CART_ADD, qty=-1))
    out = list(decode_message(data))
    assert len(out) == 1 and isinstance(out[0], Rejected)
    assert out[0].index is None and out[0].original == data


# ------------------------------------------------------------ dead letters


def test_dead_letter_record() -> None:
    data = b'{"event_id": "e-1", "type": "cart_add", \xff'
    (rej,) = list(decode_message(data))
    assert isinstance(rej, Rejected)
    rec = msgspec.json.decode(dead_letter(rej, "tactful.storefront", 3, 1234))
    assert rec["reason"] == rej.reason and "JSON" in rec["reason"]
    assert rec["topic"] == "tactful.storefront"
    assert rec["partition"] == 3
    assert rec["offset"] == 1234
    assert base64.b64decode(rec["original"]) == data


def test_dead_letter_of_a_small_record_carries_it_whole() -> None:
    data = b"x" * 1000
    rec = msgspec.json.decode(dead_letter(Rejected("r", data), "t", 0, 1))
    assert base64.b64decode(rec["original"]) == data
    assert rec["original_size"] is None and rec["original_sha256"] is None


@pytest.mark.parametrize("size", [256 * 1024 + 1, 1_048_576, 1_300_000])
def test_dead_letter_of_a_huge_record_fits_a_kafka_record(size: int) -> None:
    # A value near Kafka's 1 MB limit, in base64, would not fit in the dead-letter record:
    # the letter keeps its first 256 KiB, its length and its hash.
    import hashlib

    data = bytes(range(256)) * (size // 256) + b"y" * (size % 256)
    out = dead_letter(Rejected("too large", data), "tactful.storefront", 1, 2)
    assert len(out) < 400_000
    rec = msgspec.json.decode(out)
    assert base64.b64decode(rec["original"]) == data[: 256 * 1024]
    assert rec["original_size"] == size
    assert rec["original_sha256"] == hashlib.sha256(data).hexdigest()


def test_dead_letter_of_array_element_carries_index() -> None:
    out = list(decode_message(js([CART_ADD, dict(CART_ADD, price=-1)])))
    rej = out[1]
    assert isinstance(rej, Rejected)
    rec = msgspec.json.decode(dead_letter(rej, "tactful.storefront", 0, 7))
    assert rec["index"] == 1
    assert "price" in rec["reason"]
    assert json.loads(base64.b64decode(rec["original"])) == dict(CART_ADD, price=-1)


def test_decoded_timestamps_are_aware() -> None:
    ev = decode_event(js({"event_id": "e", "type": "stock_level", "ts": "2026-05-04T08:00:00+05:30",
                          "sku": "s", "available": 2}))
    assert isinstance(ev, StockLevel)
    assert ev.ts.astimezone(UTC) == datetime(2026, 5, 4, 2, 30, tzinfo=UTC)
