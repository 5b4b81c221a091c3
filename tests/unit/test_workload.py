"""The synthetic workload: deterministic, well-formed (SPEC §1), and rich enough
that every trigger of SPEC §3 has something to fire on."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import subprocess
import sys
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from tactful.workload import dumps_line, generate

# Required fields per `type`, written from SPEC §1 (not from the generator).
COMMON = {"event_id", "type", "ts"}
PRODUCT = {"sku", "product_id", "category", "price", "currency", "qty"}
REQUIRED: dict[str, set[str]] = {
    "page_view": {"session_id"},
    "product_view": {"session_id", *PRODUCT},
    "cart_add": {"session_id", *PRODUCT},
    "cart_remove": {"session_id", *PRODUCT},
    "checkout_started": {"session_id"},
    "purchase": {"session_id", "order_id", "items", "gift"},
    "login": {"session_id", "customer_id", "identity"},
    "logout": {"session_id"},
    "stock_level": {"sku", "available"},
    "price_change": {"sku", "price", "currency"},
    "consent_granted": {"customer_id", "channel", "source"},
    "consent_revoked": {"customer_id", "channel", "source"},
    "preferences_set": {"customer_id"},
    "erase_requested": {"customer_id"},
    "delivered": {"customer_id", "channel"},
    "opened": {"customer_id", "channel"},
    "clicked": {"customer_id", "channel"},
    "bounced": {"customer_id", "channel"},
    "complained": {"customer_id", "channel"},
    "unsubscribed": {"customer_id", "channel"},
    "do_not_contact": {"customer_id", "channel"},
}
OPTIONAL: dict[str, set[str]] = {
    "consent_granted": {"expires_at"},
    "consent_revoked": {"expires_at"},
    "preferences_set": {"timezone", "topics_opt_out", "topics_opt_in", "quiet_hours", "region"},
}
STOREFRONT = {
    "page_view", "product_view", "cart_add", "cart_remove", "checkout_started",
    "purchase", "login", "logout",
}
FEEDBACK = {"delivered", "opened", "clicked", "bounced", "complained", "unsubscribed",
            "do_not_contact"}
CHANNELS = {"email", "sms", "push", "phone"}
VERIFIED = {"login", "email_link"}
UNVERIFIED = {"cookie", "ip_match", "device_graph"}
TOPICS = {"cart_reminders", "stock_alerts", "deals", "recommendations"}
SENSITIVE = {"health", "medical", "adult", "pregnancy", "age_related"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")

Event = dict[str, object]


def _ts(value: object) -> datetime:
    assert isinstance(value, str) and RFC3339.match(value), value
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None and parsed.utcoffset() is not None
    return parsed


def _blob(customers: int, events: int, seed: int) -> bytes:
    return b"".join(dumps_line(e) for e in generate(customers, events, seed))


@pytest.fixture(scope="module")
def run() -> list[Event]:
    return list(generate(300, 20_000, 20260501))


# -- determinism, count, order -------------------------------------------


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not() -> None:
    a = _blob(40, 3_000, 11)
    assert a == _blob(40, 3_000, 11)
    assert a != _blob(40, 3_000, 12)
    assert a != _blob(41, 3_000, 11)


def test_output_does_not_depend_on_hash_randomisation() -> None:
    code = (
        "import hashlib, sys; from tactful.workload import generate, dumps_line; "
        "h = hashlib.sha256(); "
        "[h.update(dumps_line(e)) for e in generate(60, 4000, 5)]; "
        "sys.stdout.write(h.hexdigest())"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    digests = set()
    for hashseed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed,
               "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                             capture_output=True, text=True)
        digests.add(out.stdout)
    here = hashlib.sha256(_blob(60, 4000, 5)).hexdigest()
    assert digests == {here}


@pytest.mark.parametrize(("customers", "events"), [(0, 0), (0, 50), (1, 1), (5, 7), (300, 1234),
                                                   (2_000, 500)])
def test_yields_exactly_the_requested_number_of_events(customers: int, events: int) -> None:
    assert sum(1 for _ in generate(customers, events, 3)) == events


def test_is_a_lazy_stream() -> None:
    gen = generate(1_000, 10**9, 1)
    assert iter(gen) is gen
    first = list(itertools.islice(gen, 100))  # returns at once: nothing is precomputed
    assert len(first) == 100


def _redelivered(run: list[Event]) -> list[int]:
    """Indexes of lines that repeat an earlier line's event_id."""
    seen: set[object] = set()
    out = []
    for i, e in enumerate(run):
        if e["event_id"] in seen:
            out.append(i)
        seen.add(e["event_id"])
    return out


def test_timestamps_are_rfc3339_tz_aware_and_in_order_but_late_lines(run: list[Event]) -> None:
    instants = [_ts(e["ts"]) for e in run]
    assert instants[0] >= datetime(2026, 5, 1, tzinfo=UTC)
    # In ts order, but for late feedback (a sender's batch) and redelivered lines, both
    # stamped before lines already written, and never more than a few hours before.
    repeats = set(_redelivered(run))
    latest = instants[0]
    late = []
    for i, (e, at) in enumerate(zip(run, instants, strict=True)):
        if at < latest:
            assert i in repeats or e["type"] in {"delivered", "opened", "clicked"}, e
            assert latest - at <= timedelta(hours=6), e
            late.append(e)
        latest = max(latest, at)
    assert sum(1 for e in late if e["type"] in FEEDBACK) >= 20
    assert len(repeats) >= 20
    offsets = {i.utcoffset() for i in instants}
    assert len(offsets) > 1  # not everything is written in UTC
    for e in run:
        if "expires_at" in e:
            assert _ts(e["expires_at"]) > _ts(e["ts"])


def test_start_is_honoured_and_must_be_tz_aware() -> None:
    start = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5)))
    evs = list(generate(20, 200, 9, start=start))
    assert _ts(evs[0]["ts"]) >= start
    with pytest.raises(ValueError, match="timezone"):
        list(generate(1, 1, 1, start=datetime(2030, 1, 1)))
    with pytest.raises(ValueError):
        list(generate(-1, 1, 1))
    with pytest.raises(ValueError):
        list(generate(1, -1, 1))


def test_event_ids_are_unique_but_for_redeliveries_of_the_same_line(run: list[Event]) -> None:
    ids = [e["event_id"] for e in run]
    assert all(isinstance(i, str) and i for i in ids)
    first: dict[object, Event] = {}
    for e in run:
        if e["event_id"] in first:
            assert dumps_line(e) == dumps_line(first[e["event_id"]])  # the same bytes again
        first.setdefault(e["event_id"], e)
    assert len(set(ids)) < len(ids)


# -- shapes (SPEC §1) ------------------------------------------------------


def _check_shape(e: Event) -> None:
    kind = e["type"]
    assert isinstance(kind, str) and kind in REQUIRED, kind
    keys = set(e)
    missing = (COMMON | REQUIRED[kind]) - keys
    assert not missing, (kind, missing, e)
    if kind in STOREFRONT:
        allowed = COMMON | REQUIRED[kind] | {"customer_id", "identity"}
        # customer_id and identity come together: identity says how the id was found
        assert ("customer_id" in e) == ("identity" in e), e
        if "identity" in e:
            identity = e["identity"]
            assert isinstance(identity, dict) and set(identity) == {"method"}
            assert identity["method"] in VERIFIED | UNVERIFIED
        if kind == "login":
            assert e["identity"] == {"method": "login"} or e["identity"] == {
                "method": "email_link"}
    elif kind in FEEDBACK:
        allowed = COMMON | REQUIRED[kind] | {"intent_id"}
    else:
        allowed = COMMON | REQUIRED[kind] | OPTIONAL.get(kind, set())
    assert keys <= allowed, (kind, keys - allowed)
    for key in ("event_id", "session_id", "customer_id", "sku", "product_id", "order_id",
                "source", "currency"):
        if key in e:
            assert isinstance(e[key], str) and e[key], (key, e)
    if "sku" in e:
        assert re.fullmatch(r"sku-\d+", str(e["sku"]))
    if "product_id" in e:
        assert re.fullmatch(r"prod-\d+", str(e["product_id"]))
    if "category" in e:
        cat = e["category"]
        assert isinstance(cat, list) and cat and all(isinstance(c, str) for c in cat)
    if "price" in e:
        assert isinstance(e["price"], float) and e["price"] > 0
    if "qty" in e:
        assert isinstance(e["qty"], int) and e["qty"] >= 1
    if "channel" in e:
        assert e["channel"] in CHANNELS
    if kind == "purchase":
        items = e["items"]
        assert isinstance(items, list) and items
        for item in items:
            assert isinstance(item, dict) and set(item) == {"sku", "qty", "price"}
            assert isinstance(item["qty"], int) and item["qty"] >= 1
            assert isinstance(item["price"], float) and item["price"] > 0
        assert isinstance(e["gift"], bool)
    if kind == "stock_level":
        assert isinstance(e["available"], int) and e["available"] >= 0
    if kind == "preferences_set":
        assert keys & OPTIONAL["preferences_set"], e
        if "timezone" in e:
            tz = e["timezone"]
            assert isinstance(tz, str) and re.fullmatch(r"[A-Z][a-z]+/[A-Za-z_]+", tz)
            if zoneinfo.available_timezones():
                zoneinfo.ZoneInfo(tz)
        if "topics_opt_out" in e:
            out = e["topics_opt_out"]
            assert isinstance(out, list) and out and set(out) <= TOPICS
        if "topics_opt_in" in e:
            opt_in = e["topics_opt_in"]
            assert isinstance(opt_in, list) and opt_in and set(opt_in) <= SENSITIVE
        if "region" in e:
            # SPEC §1: an ISO 3166-1 alpha-2 country or an ISO 3166-2 subdivision
            assert re.fullmatch(r"[A-Z]{2}(-[A-Z0-9]{1,3})?", str(e["region"])), e
        if "quiet_hours" in e:
            qh = e["quiet_hours"]
            assert isinstance(qh, dict) and set(qh) == {"start", "end"}
            assert HHMM.match(str(qh["start"])) and HHMM.match(str(qh["end"]))


def test_every_event_has_the_fields_of_its_type(run: list[Event]) -> None:
    for e in run:
        _check_shape(e)


def test_every_type_appears(run: list[Event]) -> None:
    seen = Counter(str(e["type"]) for e in run)
    assert set(REQUIRED) <= set(seen), set(REQUIRED) - set(seen)
    # storefront traffic dominates, as on a real shop
    assert sum(seen[k] for k in STOREFRONT) > 0.7 * len(run)


def test_dumps_line_is_one_json_line() -> None:
    for e in itertools.islice(generate(10, 200, 4), 200):
        line = dumps_line(e)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert orjson.loads(line) == e


# -- what the triggers need (SPEC §3, §4) ---------------------------------


def _sessions(run: list[Event]) -> Iterator[tuple[str, list[Event]]]:
    by_session: dict[str, list[Event]] = defaultdict(list)
    for e in run:
        if "session_id" in e:
            by_session[str(e["session_id"])].append(e)
    yield from by_session.items()


def test_identities_cover_anonymous_verified_and_guessed(run: list[Event]) -> None:
    methods = Counter(
        e["identity"]["method"]  # type: ignore[index]
        for e in run if "identity" in e
    )
    assert set(methods) == VERIFIED | UNVERIFIED
    anonymous_views = [e for e in run if e["type"] == "product_view" and "customer_id" not in e]
    assert anonymous_views
    # sessions that browse anonymously, then log in
    upgraded = 0
    guessed_only = 0
    for _, evs in _sessions(run):
        kinds = [e["type"] for e in evs]
        if "login" in kinds and "customer_id" not in evs[0]:
            upgraded += 1
        claimed = {e["identity"]["method"] for e in evs if "identity" in e}  # type: ignore[index]
        if claimed and claimed <= UNVERIFIED:
            guessed_only += 1
    assert upgraded > 10
    assert guessed_only > 10


def test_verified_customer_views_one_product_three_times_in_24h(run: list[Event]) -> None:
    views: dict[tuple[object, object], list[datetime]] = defaultdict(list)
    for e in run:
        if e["type"] == "product_view" and e.get("identity") in (
            {"method": "login"}, {"method": "email_link"}
        ):
            views[(e["customer_id"], e["product_id"])].append(_ts(e["ts"]))
    repeated = [
        k for k, times in views.items()
        if any(c - a <= timedelta(hours=24) for a, _, c in zip(times, times[1:], times[2:],
                                                               strict=False))
    ]
    assert len(repeated) > 20


def _carts(run: list[Event]) -> tuple[int, int, int, int]:
    """(carts, never bought, left >= 48 h with value >= 500 by a verified shopper, gifts)."""
    carts = never_bought = big_idle = gifts = 0
    end = _ts(run[-1]["ts"])
    for _, evs in _sessions(run):
        if not any(e["type"] == "cart_add" for e in evs):
            continue
        carts += 1
        if not any(e["type"] == "purchase" for e in evs):
            never_bought += 1
        gifts += sum(1 for e in evs if e["type"] == "purchase" and e["gift"] is True)
        lines: dict[object, tuple[int, float]] = {}
        verified = False
        activity = [e for e in evs if e["type"] in
                    {"cart_add", "cart_remove", "checkout_started", "purchase"}]
        for e, nxt in zip(activity, [*activity[1:], None], strict=True):
            ident = e.get("identity")
            verified = verified or ident in ({"method": "login"}, {"method": "email_link"})
            if e["type"] == "cart_add":
                qty, _ = lines.get(e["sku"], (0, 0.0))
                lines[e["sku"]] = (qty + int(e["qty"]), float(e["price"]))  # type: ignore[call-overload,arg-type]
            elif e["type"] == "cart_remove":
                lines.pop(e["sku"], None)
            elif e["type"] == "purchase":
                lines.clear()
            value = sum(q * p for q, p in lines.values())
            until = end if nxt is None else _ts(nxt["ts"])
            if verified and value >= 500 and until - _ts(e["ts"]) >= timedelta(hours=48):
                big_idle += 1
    return carts, never_bought, big_idle, gifts


def test_carts_are_abandoned_bought_and_some_are_big(run: list[Event]) -> None:
    carts, never_bought, big_idle, gifts = _carts(run)
    assert never_bought > 0.3 * carts
    assert big_idle >= 5
    assert gifts >= 5


def test_customers_come_back_after_hours_and_days(run: list[Event]) -> None:
    last: dict[object, datetime] = {}
    gaps = Counter[str]()
    for e in run:
        if e["type"] in STOREFRONT and "customer_id" in e:
            at = _ts(e["ts"])
            before = last.get(e["customer_id"])
            if before is not None:
                gap = at - before
                if gap >= timedelta(hours=48):
                    gaps["48h"] += 1
                elif gap >= timedelta(hours=4):
                    gaps["4h"] += 1
                elif gap >= timedelta(minutes=30):
                    gaps["short"] += 1
            last[e["customer_id"]] = at
    assert gaps["48h"] > 50 and gaps["4h"] > 50 and gaps["short"] > 20


def test_inventory_moves_under_carted_skus(run: list[Event]) -> None:
    """Low-stock, back-in-stock and >= 10 % price drops happen while a cart holds the sku."""
    level: dict[object, int] = {}
    carted: dict[object, dict[object, float]] = defaultdict(dict)  # sku -> session -> add price
    low = restock = drop = 0
    for e in run:
        kind = e["type"]
        if kind == "cart_add":
            carted[e["sku"]][e["session_id"]] = float(e["price"])  # type: ignore[arg-type]
        elif kind == "cart_remove":
            carted[e["sku"]].pop(e["session_id"], None)
        elif kind == "purchase":
            for item in e["items"]:  # type: ignore[attr-defined]
                carted[item["sku"]].pop(e["session_id"], None)
        elif kind == "stock_level":
            sku, now = e["sku"], int(e["available"])  # type: ignore[call-overload]
            before = level.get(sku)
            if before is not None and carted[sku]:
                low += before > 3 >= now
                restock += before == 0 < now
            level[sku] = now
        elif kind == "price_change" and carted[e["sku"]]:
            price = float(e["price"])  # type: ignore[arg-type]
            drop += any(price <= 0.9 * p for p in carted[e["sku"]].values())
    assert low >= 5 and restock >= 5 and drop >= 5


def test_catalog_has_sensitive_categories(run: list[Event]) -> None:
    cats = {c for e in run if "category" in e for c in e["category"]}  # type: ignore[attr-defined]
    assert len(cats & SENSITIVE) >= 3
    assert len(cats - SENSITIVE) >= 10


def test_consent_and_preferences_are_varied(run: list[Event]) -> None:
    granted = Counter(e["channel"] for e in run if e["type"] == "consent_granted")
    assert set(granted) == CHANNELS
    assert granted["email"] > granted["sms"] > granted["phone"]
    assert granted["push"] > granted["phone"]
    assert any("expires_at" in e for e in run if e["type"] == "consent_granted")
    prefs = [e for e in run if e["type"] == "preferences_set"]
    regions = {str(e["timezone"]).split("/")[0] for e in prefs if "timezone" in e}
    assert {"America", "Europe", "Asia", "Australia"} <= regions
    quiet = [e["quiet_hours"] for e in prefs if "quiet_hours" in e]
    assert any(q["start"] > q["end"] for q in quiet)  # type: ignore[index]  # wraps midnight
    assert any(q["start"] < q["end"] for q in quiet)  # type: ignore[index]
    assert any("topics_opt_out" in e for e in prefs)
    assert any("topics_opt_in" in e for e in prefs)


def test_regions_cover_the_calling_rules_and_fail_closed_zones(run: list[Event]) -> None:
    prefs = [e for e in run if e["type"] == "preferences_set"]
    regions = Counter(str(e["region"]) for e in prefs if "region" in e)
    # SPEC §4.5's shipped rules, a state and a department without one, the US as a whole
    assert {"US", "US-FL", "US-OK", "US-MD", "FR", "FR-57", "US-CA", "FR-75C"} <= set(regions)
    assert any(not k.startswith(("US", "FR")) for k in regions)
    region_only = [e for e in prefs if "region" in e and "timezone" not in e]
    assert len(region_only) >= 10  # the zone is unknown: every zone of the region decides


def test_consents_lapse_inside_the_workload(run: list[Event]) -> None:
    end = _ts(run[-1]["ts"])
    lapsing = [e for e in run if e["type"] == "consent_granted" and "expires_at" in e
               and _ts(e["expires_at"]) < end]
    assert len(lapsing) >= 20
