"""The bounded decoder (adapters/codec.py, limits in core/limits.py): every hostile record
a producer can send is a ``Rejected`` with a reason, never another error (issue: no input
can stop the worker)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tactful.adapters.codec import (
    FUTURE,
    Rejected,
    decode_event,
    decode_headers,
    decode_message,
    nesting_depth,
)
from tactful.core.errors import BadEvent
from tactful.core.events import StockLevel
from tactful.core.limits import LIMITS

STOCK = {"event_id": "s-1", "type": "stock_level", "ts": "2026-05-03T19:02:30Z",
         "sku": "sku-1", "available": 5}
PREFS = {"event_id": "p-1", "type": "preferences_set", "ts": "2026-05-03T19:02:30Z",
         "customer_id": "c-1"}
VIEW = {"event_id": "v-1", "type": "product_view", "ts": "2026-05-03T19:02:30Z",
        "session_id": "s-1", "sku": "sku-1", "product_id": "p-1", "category": ["home"],
        "price": 10.0, "currency": "USD", "qty": 1}


def js(obj: object) -> bytes:
    return json.dumps(obj).encode()


def rejected(data: bytes) -> Rejected:
    items = list(decode_message(data))
    assert len(items) == 1 and isinstance(items[0], Rejected), items
    return items[0]


def test_an_array_nested_100000_deep_is_rejected_not_a_recursion_error() -> None:
    data = b"[" * 100_000 + b"]" * 100_000
    assert "nested deeper than 8" in rejected(data).reason
    with pytest.raises(BadEvent):
        decode_event(data)


def test_deep_nesting_inside_an_unknown_field_is_rejected() -> None:
    data = js(STOCK)[:-1] + b', "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    assert len(data) < 4000
    assert "nested deeper" in rejected(data).reason


def test_unbalanced_opening_brackets_are_rejected_before_parsing() -> None:
    assert "nested deeper" in rejected(b"[" * 50_000).reason


def test_nesting_depth_counts_levels_not_brackets_and_ignores_strings() -> None:
    assert nesting_depth(b"[]") == 1
    assert nesting_depth(b'{"a": [1, {"b": []}]}') == 4
    assert nesting_depth(b"{[]{[]}}") == 3  # siblings do not add up
    assert nesting_depth(b'"[[[[[[[[[[[[[[[["') == 0
    assert nesting_depth(b'{"a": "\\"[[[[[[[[[[[[["}') == 1


def test_a_tracker_batch_of_purchases_is_within_the_depth_limit() -> None:
    purchase = {"event_id": "b-1", "type": "purchase", "ts": "2026-05-03T19:02:30Z",
                "session_id": "s-1", "order_id": "o-1", "gift": False,
                "items": [{"sku": f"k{i}", "qty": 1, "price": 1.0} for i in range(3)]}
    batch = js([dict(purchase, event_id=f"b-{i}") for i in range(20)])
    assert not any(isinstance(x, Rejected) for x in decode_message(batch))


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00Z", "9999-12-31T23:00:00Z",
                                "1969-12-31T23:59:59Z", "2200-01-01T00:00:00Z"])
def test_timestamps_outside_1970_to_2200_are_rejected(ts: str) -> None:
    assert "outside 1970-01-01 to 2200-01-01" in rejected(js(dict(STOCK, ts=ts))).reason


def test_an_expiry_outside_the_window_is_rejected() -> None:
    grant = {"event_id": "g", "type": "consent_granted", "ts": "2026-05-01T00:00:00Z",
             "customer_id": "c", "channel": "email", "source": "x",
             "expires_at": "9999-01-01T00:00:00Z"}
    assert "expires_at" in rejected(js(grant)).reason


@pytest.mark.parametrize("raw", [b"1" + b"0" * 400, b"1e300", b"1e400", b"1000000001"])
def test_stock_levels_beyond_the_limit_are_rejected(raw: bytes) -> None:
    data = js(STOCK).replace(b'"available": 5', b'"available": ' + raw)
    assert b"available" in data and rejected(data).reason


def test_a_stock_level_at_the_limit_is_accepted() -> None:
    event = decode_event(js(dict(STOCK, available=LIMITS.max_available)))
    assert isinstance(event, StockLevel)


@pytest.mark.parametrize("bad_id", ["   ", "\t", "sku\x00one", "a\x1fb", "\u0085x"])
def test_ids_must_be_printable_and_not_only_blanks(bad_id: str) -> None:
    data = json.dumps(dict(STOCK, sku=bad_id)).encode()
    assert "$.sku" in rejected(data).reason


def test_a_lone_surrogate_has_no_utf8_form_and_is_rejected() -> None:
    assert "surrogate" in rejected(json.dumps(dict(STOCK, sku="\ud800")).encode()).reason


def test_ids_in_other_scripts_are_accepted() -> None:
    event = decode_event(json.dumps(dict(STOCK, sku="sku-日本-ü")).encode())
    assert isinstance(event, StockLevel) and event.sku == "sku-日本-ü"


def test_lists_are_bounded() -> None:
    many = dict(VIEW, category=[f"c{i}" for i in range(LIMITS.max_categories + 1)])
    assert "$.category" in rejected(js(many)).reason
    opt_in = dict(PREFS, topics_opt_in=[f"c{i}" for i in range(LIMITS.max_topics_opt_in + 1)])
    assert "$.topics_opt_in" in rejected(js(opt_in)).reason


def test_a_record_over_the_size_limit_is_rejected_before_parsing() -> None:
    huge = dict(VIEW, category=["c"] * 600_000)  # a 6.5M-entry list is larger still
    data = js(huge)
    assert len(data) > LIMITS.max_bytes
    assert "at most 1048576" in rejected(data).reason


def test_an_array_message_over_the_batch_limit_is_rejected_whole() -> None:
    data = js([dict(STOCK, event_id=f"s-{i}") for i in range(LIMITS.max_batch + 1)])
    assert "at most 1000" in rejected(data).reason


def test_future_events_are_rejected_alone_in_a_batch() -> None:
    t = datetime(2026, 5, 3, 19, 2, 30, tzinfo=UTC).timestamp()
    later = dict(STOCK, event_id="s-2", ts="2026-05-03T20:00:00Z")
    items = list(decode_message(js([STOCK, later]), not_after=t + 60))
    assert isinstance(items[0], StockLevel)
    assert isinstance(items[1], Rejected) and items[1].reason == FUTURE
    assert items[1].index == 1 and json.loads(items[1].original)["event_id"] == "s-2"


# ------------------------------------------------------------------ headers


def test_tactful_headers_are_read() -> None:
    headers = [("other", b"\xff"), ("tactful-seq", b"12.3")]
    assert decode_headers(headers).seq == "12.3"
    marker = decode_headers([("tactful-clock", b"2026-05-08T00:00:00Z")])
    assert marker.clock == datetime(2026, 5, 8, tzinfo=UTC).timestamp()
    assert decode_headers(None).clock is None and decode_headers([]).seq == ""


@pytest.mark.parametrize("headers", [
    [("tactful-seq", b"\xff\xfe")],  # not UTF-8
    [("tactful-seq", b"twelve")],
    [("tactful-seq", b"1" * 100)],
    [("tactful-clock", b"garbage")],
    [("tactful-clock", b"2026-05-08T00:00:00")],  # no offset: the host's zone is no answer
    [("tactful-clock", b"9999-01-01T00:00:00Z")],
    [("tactful-clock", b"\x80")],
    [("tactful-seq", "12")],  # not bytes
    [("tactful-seq",)],
    42,
])
def test_bad_tactful_headers_are_bad_events(headers: object) -> None:
    with pytest.raises(BadEvent):
        decode_headers(headers)
