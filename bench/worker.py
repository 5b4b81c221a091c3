"""End-to-end throughput of ``tactful worker`` on a real broker (stream clock).

One run: ``tactful generate`` a workload (default 200,000 events), start one worker
(memory store, stream clock, ``--partitions`` partitions) on the local Kafka of
``deploy/local-kafka`` (or ``TACTFUL_BOOTSTRAP``), ``tactful produce --until`` the file,
and time from the start of ``produce`` until the intents and decisions topics hold as
many records as ``tactful replay`` writes for the same file (the worker is then done:
the stream-clock worker gives exactly replay's outputs). ``tactful replay`` of the same
file is timed in the same run, for comparison.

    python bench/worker.py                       # 200,000 events, writes BENCHMARKS.md
    python bench/worker.py --events 50000 --no-write

The results replace the section between ``<!-- bench:worker -->`` and
``<!-- /bench:worker -->`` in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from replay import machine  # bench/replay.py: the same machine description

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"
KAFKA = ROOT / "deploy" / "local-kafka" / "kafka.sh"
BEGIN, END = "<!-- bench:worker -->", "<!-- /bench:worker -->"
UNTIL = "2026-11-30T00:00:00Z"
PORT = "39292"


def tactful(*args: str, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tactful.cli", *args], check=True, env=env)
    return time.perf_counter() - start


def lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


async def wait_for(bootstrap: str, want: dict[str, int], timeout: float) -> float:
    """Until every topic holds its count; returns the monotonic time it happened."""
    consumer = AIOKafkaConsumer(*want, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen = dict.fromkeys(want, 0)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for tp, records in batches.items():
                seen[tp.topic] += len(records)
            if all(seen[t] >= n for t, n in want.items()):
                return time.monotonic()
    finally:
        await consumer.stop()
    raise SystemExit(f"worker did not finish within {timeout:.0f}s: {seen} of {want}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--customers", type=int, default=4_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--backlog", action="store_true",
                    help="produce everything first, then start the worker (time from its start)")
    ap.add_argument("--clock", choices=("wall", "stream"), default="stream")
    ap.add_argument("--profile", metavar="FILE",
                    help="run the worker under py-spy, collapsed stacks to FILE (no write)")
    args = ap.parse_args()

    own_kafka = "TACTFUL_BOOTSTRAP" not in os.environ
    if own_kafka:
        out = subprocess.run(["bash", str(KAFKA), "start"], check=True, capture_output=True,
                             text=True, env={**os.environ, "KAFKA_PORT": PORT})
        bootstrap = out.stdout.strip().splitlines()[-1]
    else:
        bootstrap = os.environ["TACTFUL_BOOTSTRAP"]
    tmp = Path(tempfile.mkdtemp(prefix="tactful-bench-"))
    worker = None
    try:
        events = tmp / "events.jsonl"
        tactful("generate", "--customers", str(args.customers), "--events", str(args.events),
                "--seed", "7", "--out", str(events))
        intents, decisions = tmp / "intents.jsonl", tmp / "decisions.jsonl"
        replay_s = tactful("replay", str(events), "--until", UNTIL, "--out", str(intents),
                           "--decisions", str(decisions))
        want_intents, want_decisions = lines(intents), lines(decisions)

        tag = uuid.uuid4().hex[:8]
        env = {**os.environ, "TACTFUL_BOOTSTRAP": bootstrap, "TACTFUL_TOPIC_PREFIX": f"b{tag}.",
               "TACTFUL_APP_ID": f"tactful-bench-{tag}", "TACTFUL_PARTITIONS": str(args.partitions),
               "TACTFUL_CLOCK": args.clock, "TACTFUL_LOG_LEVEL": "warning",
               "TACTFUL_DATA_DIR": str(tmp / "data"), "TACTFUL_WEB_PORT": "17990"}
        log = (tmp / "worker.log").open("wb")
        command = [sys.executable, "-m", "tactful.cli", "worker"]
        if args.profile:
            spy = str(Path(sys.executable).with_name("py-spy"))
            command = [spy, "record", "--rate", "200", "--format", "raw", "--nonblocking",
                       "-o", str(Path(args.profile).resolve()), "--", *command]
        if args.backlog:
            produce_s = tactful("produce", str(events), "--until", UNTIL, env=env)
            start = time.monotonic()
            worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        else:
            worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            time.sleep(15)  # the worker joins its group and creates its topics
            start = time.monotonic()
            produce_s = tactful("produce", str(events), "--until", UNTIL, env=env)
        done = asyncio.run(wait_for(bootstrap, {
            f"b{tag}.intents": want_intents, f"b{tag}.decisions": want_decisions,
        }, args.timeout))
        total = done - start
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)
            worker.wait(timeout=120)
        if own_kafka:
            subprocess.run(["bash", str(KAFKA), "stop"], check=False, capture_output=True,
                           env={**os.environ, "KAFKA_PORT": PORT})
        shutil.rmtree(tmp, ignore_errors=True)

    n = args.events
    host = machine()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False,
                            capture_output=True, text=True, cwd=ROOT).stdout.strip()
    section = f"""{BEGIN}
## `tactful worker` end to end (stream clock, one worker)

- **Date**: {stamp}
- **Command**: `python bench/worker.py --events {n}`
- **Workload**: `tactful generate --customers {args.customers} --events {n} --seed 7`
- **Set-up**: one `tactful worker --clock stream`, memory store, {args.partitions} partitions,
  single-node local Kafka (KRaft) on the same machine; tactful at `{commit}`
- **Machine**: {host['cpu']}, {host['cores']}, {host['memory']}; {host['os']}; {host['python']}

| step | seconds | events/s |
|---|---:|---:|
| `tactful produce --until` (input onto Kafka) | {produce_s:.1f} | {n / produce_s:,.0f} |
| worker: start of produce → every intent and decision out | {total:.1f} | **{n / total:,.0f}** |
| `tactful replay` of the same file (for comparison) | {replay_s:.1f} | {n / replay_s:,.0f} |

The worker wrote {want_intents:,} intents/cancellations and {want_decisions:,} decisions,
the same counts as replay. Worker and broker share the machine's cores.
{END}"""
    print(section)
    if not args.no_write and not args.profile:
        text = BENCHMARKS.read_text()
        if BEGIN in text:
            text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        BENCHMARKS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
