"""When a tactful worker has finished a backlog, seen from outside (``bench/compare.py``).

The harness polls, every ``POLL`` seconds, the consumer group's committed offsets on every
input partition (Kafka admin API), the end offsets of ``<prefix>intents`` and
``<prefix>decisions``, and counts their records (``read_committed``, so under
``exactly_once`` only committed intents count).

- **Stream clock, replay's counts** (``expected`` given): done when both output topics
  hold as many records as ``tactful replay`` writes for the same events. The stream-
  clock worker gives exactly replay's outputs, so this is "every output written" (for
  storefront batches as well: the worker applies inputs in event-time order, and the
  batches' events are late by at most the tracker's flush interval).
- **Wall clock** (``expected`` None): the outputs depend on when the wall clock passes
  each due time, so there is no count to wait for. Done when the group's lag is 0 on
  every input partition, and neither the committed offsets nor the output topics' end
  offsets have moved for ``QUIET`` seconds; the moment of done is the *last* change seen
  (the final commit or the final output), not the end of the quiet period. The worker
  commits every second, so this moment is up to a commit interval after the last input
  was processed.
- A stream-clock run whose counts never reach replay's falls back to the wall-clock rule
  with ``FALLBACK_QUIET`` seconds of quiet, and says so (``rule`` = ``lag, counts differ``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from procs import Proc, RunFailed

POLL = 0.25
QUIET = 2.0
FALLBACK_QUIET = 10.0


@dataclass
class Done:
    at: float  # time.time() of done
    first_progress: float  # first committed input offset or first output record
    rule: str
    outputs: dict[str, int] = field(default_factory=dict)  # records per output topic


async def wait_done(bootstrap: str, group: str, prefix: str, inputs: dict[TopicPartition, int],
                    partitions: int, expected: dict[str, int] | None, procs: list[Proc],
                    timeout: float, on_progress: Callable[[], None] | None = None) -> Done:
    """``inputs``: end offset of every input partition (the backlog is all there);
    ``on_progress`` is called once, at the first progress seen."""
    names = {f"{prefix}intents": "intents", f"{prefix}decisions": "decisions"}
    outs = [TopicPartition(t, p) for t in names for p in range(partitions)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                              isolation_level="read_committed")
    await admin.start()
    await reader.start()
    try:
        reader.assign(outs)
        await reader.seek_to_beginning(*outs)
        counts = dict.fromkeys(names.values(), 0)
        deadline = time.monotonic() + timeout
        last_state: object = None
        last_change = first_progress = 0.0
        while True:
            for p in procs:
                p.check()
            if time.monotonic() > deadline:
                raise RunFailed(f"not done within {timeout:.0f} s: outputs {counts}"
                                f"{f' of {expected}' if expected else ''}")
            polled = time.monotonic()
            batches = await reader.getmany(timeout_ms=int(POLL * 1000), max_records=100_000)
            for tp, records in batches.items():
                counts[names[tp.topic]] += len(records)
            if batches and not first_progress:
                first_progress = time.time()
                if on_progress:
                    on_progress()
            if expected and all(counts[k] >= n for k, n in expected.items()):
                rule = "replay counts" if counts == expected else "more than replay"
                return Done(time.time(), first_progress, rule, dict(counts))
            await asyncio.sleep(max(0.0, polled + POLL - time.monotonic()))  # light on the CPU
            try:
                committed = await admin.list_consumer_group_offsets(group,
                                                                    partitions=list(inputs))
                ends = await reader.end_offsets(outs)
            except KafkaError:  # e.g. the group's coordinator is not elected yet
                continue
            positions = {tp: max(0, m.offset) for tp, m in committed.items()}
            lag = sum(max(0, end - positions.get(tp, 0)) for tp, end in inputs.items())
            now = time.time()
            state = (sorted(positions.items()), sorted(ends.items()))
            if state != last_state:
                last_state, last_change = state, now
            if not first_progress and any(positions.values()):
                first_progress = now
                if on_progress:
                    on_progress()
            quiet = QUIET if expected is None else FALLBACK_QUIET
            if lag == 0 and now - last_change >= quiet:
                rule = "lag" if expected is None else "lag, counts differ"
                return Done(last_change, first_progress, rule, dict(counts))
    finally:
        await reader.stop()
        await admin.close()
