"""The contenders of ``bench/compare.py`` that are not tactful, each run as its own process.

    python bench/contenders.py raw|faust|quix --bootstrap HOST:PORT --prefix P --events N \\
        --group G --result FILE [--web-port PORT] [--data-dir DIR]

Each reads the four input topics ``P{storefront,inventory,consent,feedback}`` from the
beginning under its own consumer group and, when it has handled the ``N``-th event,
writes ``{"first": t, "done": t}`` (``time.time()`` of its first and ``N``-th event) to
``FILE``; then it idles until the harness, which reads its peak RSS and CPU time from
``/proc``, stops it. Time is counted by the harness from the process's start.

``raw``
    aiokafka ``getmany`` + ``orjson.loads`` of each value, nothing else: the ceiling of a
    Python consumer on this broker.
``faust``
    Idiomatic Faust as its documentation teaches it: one agent per input topic, each
    event stored with ``table[key] = value`` in a changelogged ``Table`` (memory store,
    JSON values), keyed by the record key (``session_id`` / ``sku`` / ``customer_id``).
    Default settings and logging (``worker -l info``); only what a run needs is set:
    broker, memory store, ``topic_partitions`` equal to the input's (tables must be
    co-partitioned with their stream), a data directory and a web port of its own. The
    harness creates its changelog and leader topics before it starts, as tactful creates
    its own: a topic Faust has just created may be missing from the metadata it reads
    next, and the table's agent then crashes (``PartitionsMismatch``) and never recovers.
``quix``
    A Quix Streams application, one dataframe per input topic, each event stored under
    its key with ``state.set`` (Quix's state is scoped to the message key): RocksDB state,
    changelog topics and the default checkpointing (every 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

INPUTS = ("storefront", "inventory", "consent", "feedback")


class Progress:
    """Counts handled events; writes the result file once at the ``target``-th."""

    def __init__(self, target: int, result: Path) -> None:
        self.target, self.result = target, result
        self.count = 0
        self.first = 0.0

    def tick(self, n: int = 1) -> None:
        if self.count == 0:
            self.first = time.time()
        self.count += n
        if self.count >= self.target and self.count - n < self.target:
            tmp = self.result.with_suffix(".tmp")
            tmp.write_text(json.dumps({"first": self.first, "done": time.time(),
                                       "events": self.count}))
            tmp.replace(self.result)


def raw(args: argparse.Namespace, progress: Progress) -> None:
    import orjson
    from aiokafka import AIOKafkaConsumer

    async def go() -> None:
        consumer = AIOKafkaConsumer(*(args.prefix + t for t in INPUTS),
                                    bootstrap_servers=args.bootstrap, group_id=args.group,
                                    auto_offset_reset="earliest")
        await consumer.start()
        loads = orjson.loads
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        loads(record.value)
                    progress.tick(len(records))
        finally:
            await consumer.stop()

    asyncio.run(go())


def faust_app(args: argparse.Namespace, progress: Progress) -> None:
    import faust

    app = faust.App(args.group, broker=f"kafka://{args.bootstrap}", store="memory://",
                    topic_partitions=4, datadir=args.data_dir, web_port=args.web_port)

    def agent_for(name: str) -> None:
        topic = app.topic(args.prefix + name)
        table = app.Table(name, default=dict)

        async def process(stream: Any) -> None:
            async for key, value in stream.items():
                table[key] = value
                progress.tick()

        app.agent(topic, name=f"{args.group}.{name}")(process)  # four agents, four names

    for name in INPUTS:
        agent_for(name)
    sys.argv = ["faust", "worker", "-l", "info"]
    app.main()


def quix(args: argparse.Namespace, progress: Progress) -> None:
    import warnings

    warnings.simplefilter("ignore")  # a dependency's deprecation notice at import
    from quixstreams import Application

    app = Application(broker_address=args.bootstrap, consumer_group=args.group,
                      auto_offset_reset="earliest", state_dir=args.data_dir)

    def store(value: Any, state: Any) -> None:
        state.set("event", value)  # state is the message key's: one entry per key
        progress.tick()

    for name in INPUTS:
        app.dataframe(app.topic(args.prefix + name)).update(store, stateful=True)
    app.run()


CONTENDERS = {"raw": raw, "faust": faust_app, "quix": quix}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("contender", choices=sorted(CONTENDERS))
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--result", type=Path, required=True)
    ap.add_argument("--web-port", type=int, default=6066)
    ap.add_argument("--data-dir", default="./bench-data")
    args = ap.parse_args()
    CONTENDERS[args.contender](args, Progress(args.events, args.result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
