"""Nothing an input contains raises anything out of the decoder but ``BadEvent`` (as a
``Rejected`` from ``decode_message``): arbitrary bytes, arbitrary JSON, and events with
hostile values in every field, and arbitrary headers."""

from __future__ import annotations

import contextlib
import json

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tactful.adapters.codec import Rejected, decode_headers, decode_message
from tactful.core.errors import BadEvent
from tactful.core.events import Event

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=30,
)
hostile = (st.integers(min_value=-(10**30), max_value=10**30) | st.floats() | st.text()
           | st.just("0001-01-01T00:00:00Z") | st.just("9999-12-31T23:59:59+14:00")
           | st.just("\ud800") | st.lists(st.text(max_size=3), max_size=50) | json_values)
TYPES = ["page_view", "product_view", "cart_add", "purchase", "login", "stock_level",
         "price_change", "consent_granted", "preferences_set", "erase_requested",
         "do_not_contact", "nope"]
FIELDS = ["event_id", "ts", "session_id", "customer_id", "identity", "sku", "product_id",
          "category", "price", "currency", "qty", "items", "gift", "order_id", "available",
          "channel", "source", "expires_at", "timezone", "topics_opt_out", "topics_opt_in",
          "quiet_hours", "intent_id"]


def _only_events_or_rejections(data: bytes) -> None:
    for item in decode_message(data):
        assert isinstance(item, Event | Rejected)
        if isinstance(item, Event):
            orjson.dumps(item.ts.isoformat())  # an accepted event can be written back out


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes(data: bytes) -> None:
    _only_events_or_rejections(data)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json(value: object) -> None:
    _only_events_or_rejections(json.dumps(value).encode())


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(TYPES), st.dictionaries(st.sampled_from(FIELDS), hostile, max_size=12),
       st.booleans())
def test_events_with_hostile_fields(type_: str, fields: dict[str, object], batch: bool) -> None:
    body = {"event_id": "e", "type": type_, "ts": "2026-05-01T00:00:00Z", **fields}
    try:
        data = json.dumps([body, body] if batch else body).encode("utf-8", "surrogatepass")
    except (ValueError, OverflowError):
        return
    _only_events_or_rejections(data)


header_values = st.none() | st.binary(max_size=80) | st.text(max_size=10) | st.integers()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["tactful-seq", "tactful-clock", "x"]),
                          header_values), max_size=4)
       | st.lists(st.lists(header_values, max_size=3), max_size=3) | header_values)
def test_any_headers(headers: object) -> None:
    with contextlib.suppress(BadEvent):
        decode_headers(headers)
