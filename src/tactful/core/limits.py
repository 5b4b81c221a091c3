"""How large, deep and far out an input may be: the one table of input limits.

Every Kafka record, replay line and header is held to these bounds before and
while it is decoded (``adapters/codec.py``); the event Structs of ``events.py``
take their field bounds from here, so ``schemas/`` shows the same numbers.
A breach is a ``BadEvent`` naming the limit, never an error of another kind:
nothing a producer sends can stop the worker or make an output unencodable.

The numbers are far above what a storefront sends (an event is a few hundred
bytes, a tracker batches up to 20 of them) and far below what would cost a
worker memory or time it cannot spare.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class InputLimits:
    # A record value: Kafka's default ``max.message.bytes`` is about 1 MiB too.
    max_bytes: int = 1_048_576
    # Nesting of arrays and objects: an array message of purchases is 4 deep.
    max_depth: int = 8
    # Events in one array message (trackers send up to 20).
    max_batch: int = 1_000
    # Ids, skus, sources, categories: printable, not only blanks.
    max_id_length: int = 256
    max_category_length: int = 128
    max_categories: int = 32
    max_items: int = 500
    max_topics_opt_in: int = 64
    max_topics_opt_out: int = 8
    max_qty: int = 1_000_000
    max_money: float = 1e12
    max_available: int = 1_000_000_000
    # Absolute window of every timestamp: 1970-01-01 to 2200-01-01 (UTC).
    earliest_ts: float = datetime(1970, 1, 1, tzinfo=UTC).timestamp()
    latest_ts: float = datetime(2200, 1, 1, tzinfo=UTC).timestamp()
    # tactful's own record headers (``tactful-seq``, ``tactful-clock``).
    max_header_bytes: int = 64


LIMITS = InputLimits()
