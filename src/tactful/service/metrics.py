"""Prometheus metrics of a worker (SPEC §7), served on its web port at ``/metrics``.

Counting costs a dictionary increment where it happens: a unit of the worker (one
topic-partition's records of a batch) keeps a ``Tally``, and the worker adds it to the
metrics once, at the end of the unit. Lag and state sizes are read when Prometheus
scrapes, not kept up to date.

No label carries an id: topics are named without their prefix, dead-letter reasons
are reduced to a fixed set of codes, and kinds, channels, outcomes and reasons come
from the policy's and the engine's own vocabularies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds from a record's Kafka timestamp to the end of its unit; from a timer's due time to
# its firing (wall clock).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# Dead-letter reasons are sentences that may quote the input; the label is the code.
_DEAD_LETTER_CODES = (
    ("not valid JSON", "invalid_json"),
    ("nested deeper", "too_deep"),
    ("bytes; a record holds", "too_large"),
    ("header", "bad_header"),
    ("unknown type", "unknown_type"),
    ("future_timestamp", "future_timestamp"),
    ("processing_error", "processing_error"),
    ("erased", "erased"),
)

Tally = dict[tuple[str, ...], int]
Lag = Callable[[], Iterable[tuple[str, int, int]]]  # (topic, partition, records behind)
Sizes = Callable[[], Iterable[tuple[str, int]]]  # (table, keys)


def dead_letter_code(reason: str) -> str:
    """The label for a dead-letter reason: one of a fixed set of codes."""
    for marker, code in _DEAD_LETTER_CODES:
        if marker in reason:
            return code
    return "invalid_event"


def count(tally: Tally, *key: str) -> None:
    tally[key] = tally.get(key, 0) + 1


class _Live(Collector):
    """Gauges read at scrape time: consumer lag per partition, keys per table."""

    def __init__(self, lag: Lag, sizes: Sizes) -> None:
        self.lag, self.sizes = lag, sizes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily("tactful_consumer_lag",
                                "Records of an input partition not yet read by this worker.",
                                labels=["topic", "partition"])
        for topic, partition, behind in self.lag():
            lag.add_metric([topic, str(partition)], behind)
        yield lag
        keys = GaugeMetricFamily("tactful_state_keys", "Keys held in a table by this worker.",
                                 labels=["table"])
        for table, n in self.sizes():
            keys.add_metric([table], n)
        yield keys


class Metrics:
    """The families of SPEC §7, in a registry of their own."""

    def __init__(self, version: str, policy_version: str,
                 lag: Lag = lambda: (), sizes: Sizes = lambda: ()) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no ``_created`` series
        self.registry = registry = CollectorRegistry()
        self.events = Counter("tactful_events_consumed", "Input events consumed.",
                              ["topic", "type"], registry=registry)
        self.dead_letters = Counter("tactful_dead_letters", "Records dead-lettered.",
                                    ["reason"], registry=registry)
        self.decisions = Counter("tactful_decisions", "Decisions taken.",
                                 ["kind", "channel", "outcome", "reason"], registry=registry)
        self.intents = Counter("tactful_intents", "Contact intents emitted.",
                               ["kind", "channel"], registry=registry)
        self.cancellations = Counter("tactful_cancellations", "Intents cancelled.",
                                     ["reason"], registry=registry)
        self.latency = Histogram("tactful_processing_latency_seconds",
                                 "From a record's Kafka timestamp to the end of its processing.",
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.lateness = Histogram("tactful_timer_lateness_seconds",
                                  "From a trigger's due time to its firing (wall clock).",
                                  buckets=LATENESS_BUCKETS, registry=registry)
        build = Gauge("tactful_build_info", "The worker's version and its policy's.",
                      ["version", "policy_version"], registry=registry)
        build.labels(version, policy_version).set(1)
        self._live = _Live(lag, sizes)
        registry.register(self._live)
        self._families: dict[str, Any] = {
            "e": self.events, "d": self.decisions, "i": self.intents,
            "c": self.cancellations, "x": self.dead_letters,
        }

    def start_at_zero(self, intents: Iterable[tuple[str, str]],
                      events: Iterable[tuple[str, str]]) -> None:
        """Series that exist from the start, at 0: the intents the policy can emit (kind,
        channel) and the events each input topic takes (topic, type). A series that first
        appears at its first count hides that count from ``rate()`` and ``increase()``
        (and from an alert on "no intents while events flow")."""
        for kind, channel in intents:
            self.intents.labels(kind, channel)
        for topic, type_ in events:
            self.events.labels(topic, type_)

    def watch(self, lag: Lag, sizes: Sizes) -> None:
        """Read consumer lag and state sizes from these at each scrape (the worker's)."""
        self._live.lag, self._live.sizes = lag, sizes

    def add(self, tally: Tally, latency: float | None = None,
            lateness: Iterable[float] = ()) -> None:
        """One unit's counts: ``tally`` maps (family, *labels) to a count, family
        ``e`` events, ``d`` decisions, ``i`` intents, ``c`` cancellations, ``x`` dead
        letters."""
        families = self._families
        for (family, *labels), n in tally.items():
            families[family].labels(*labels).inc(n)
        if latency is not None:
            self.latency.observe(max(latency, 0.0))
        for late in lateness:
            self.lateness.observe(max(late, 0.0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
