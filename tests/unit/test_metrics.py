"""The worker's Prometheus metrics: SPEC §7's families, Prometheus naming, and labels
that never carry an id."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tactful.adapters.codec import FUTURE
from tactful.service.metrics import Metrics, Tally, count, dead_letter_code


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_unit_s_tally_is_added_once_per_family_and_label_set() -> None:
    metrics = Metrics("1.2.3", "v7+abc")
    tally: Tally = {}
    for _ in range(3):
        count(tally, "e", "storefront", "cart_add")
    count(tally, "e", "consent", "consent_granted")
    count(tally, "d", "abandoned_cart", "email", "emitted", "none")
    count(tally, "d", "abandoned_cart", "none", "suppressed", "no_consent")
    count(tally, "i", "abandoned_cart", "email")
    count(tally, "c", "purchased")
    metrics.add(tally, latency=0.02, lateness=[0.3, 2.0])
    metrics.add({("e", "storefront", "cart_add"): 2})
    got = _samples(metrics)
    assert got[("tactful_events_consumed_total",
                (("topic", "storefront"), ("type", "cart_add")))] == 5
    assert got[("tactful_events_consumed_total",
                (("topic", "consent"), ("type", "consent_granted")))] == 1
    assert got[("tactful_decisions_total", (("channel", "none"), ("kind", "abandoned_cart"),
                                            ("outcome", "suppressed"),
                                            ("reason", "no_consent")))] == 1
    assert got[("tactful_intents_total", (("channel", "email"),
                                          ("kind", "abandoned_cart")))] == 1
    assert got[("tactful_cancellations_total", (("reason", "purchased"),))] == 1
    assert got[("tactful_processing_latency_seconds_count", ())] == 1
    assert got[("tactful_processing_latency_seconds_bucket", (("le", "0.025"),))] == 1
    assert got[("tactful_timer_lateness_seconds_count", ())] == 2
    assert got[("tactful_timer_lateness_seconds_bucket", (("le", "0.5"),))] == 1
    assert got[("tactful_build_info", (("policy_version", "v7+abc"),
                                       ("version", "1.2.3")))] == 1


def test_names_follow_prometheus_conventions_without_created_series() -> None:
    metrics = Metrics("1", "p")
    metrics.add({("e", "inventory", "stock_level"): 1})
    names = {name for name, _ in _samples(metrics)}
    assert all(name.startswith("tactful_") for name in names)
    assert not any(name.endswith("_created") for name in names)
    counters = {n for n in names if "consumed" in n or "decisions" in n}
    assert counters and all(n.endswith("_total") for n in counters)


def test_lag_and_table_sizes_are_read_at_each_scrape() -> None:
    lag = {("storefront", 0): 5}
    sizes = {"customers": 2}
    metrics = Metrics("1", "p", lambda: [(t, p, n) for (t, p), n in lag.items()],
                      lambda: list(sizes.items()))
    assert _samples(metrics)[("tactful_consumer_lag",
                              (("partition", "0"), ("topic", "storefront")))] == 5
    lag[("storefront", 0)] = 0
    sizes["customers"] = 9
    got = _samples(metrics)
    assert got[("tactful_consumer_lag", (("partition", "0"), ("topic", "storefront")))] == 0
    assert got[("tactful_state_keys", (("table", "customers"),))] == 9


def test_dead_letter_reasons_become_codes_that_quote_nothing() -> None:
    assert dead_letter_code("not valid JSON: unexpected character") == "invalid_json"
    assert dead_letter_code("nested deeper than 32 levels") == "too_deep"
    assert dead_letter_code("2000000 bytes; a record holds at most 1048576") == "too_large"
    assert dead_letter_code("header tactful-seq is not ASCII text") == "bad_header"
    assert dead_letter_code("unknown type: Invalid value 'x' - at `$.type`") == "unknown_type"
    assert dead_letter_code(FUTURE) == "future_timestamp"
    assert dead_letter_code("processing_error: KeyError") == "processing_error"
    # A reason that quotes the input (here an id in a time zone field) keeps none of it.
    quoting = "unknown time zone 'cust-42@example.com' - at `$.timezone`"
    assert dead_letter_code(quoting) == "invalid_event"
    metrics = Metrics("1", "p")
    metrics.dead_letters.labels(dead_letter_code(quoting)).inc()
    assert b"cust-42" not in metrics.exposition()


def test_series_the_policy_can_produce_start_at_zero() -> None:
    metrics = Metrics("1", "p")
    metrics.start_at_zero([("abandoned_cart", "email"), ("abandoned_cart", "sms")],
                          [("storefront", "cart_add")])
    got = _samples(metrics)
    assert got[("tactful_intents_total", (("channel", "sms"), ("kind", "abandoned_cart")))] == 0
    assert got[("tactful_events_consumed_total",
                (("topic", "storefront"), ("type", "cart_add")))] == 0
    metrics.add({("i", "abandoned_cart", "sms"): 2})
    got = _samples(metrics)
    assert got[("tactful_intents_total", (("channel", "sms"), ("kind", "abandoned_cart")))] == 2
