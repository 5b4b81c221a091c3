"""Memory of one ``tactful worker`` per live customer, memory store and RocksDB.

One workload with many customers and few events each (default ``tactful generate
--customers 100000 --events 1000000 --seed 7``), produced once per store to fresh topics
(one event per message, 4 partitions); one worker (wall clock, at least once) reads it
to the end (input lag 0, offsets quiet: ``done_rule``). Then: the worker's peak RSS
(``VmHWM``), its RSS at the end, and the keys its tables hold (``tactful_state_keys`` on
``/metrics``), with RSS per 100,000 customer keys. The store's own files (RocksDB's
directory) are measured too: RocksDB keeps its tables on disk and in its block cache,
so its RSS is not the whole of its state.

    python bench/memory.py                        # writes BENCHMARKS.md
    python bench/memory.py --customers 20000 --events 80000 --no-write

Without ``TACTFUL_BOOTSTRAP`` it starts (and stops) a broker of its own on
``BENCH_KAFKA_PORT`` (default 39492). Results: ``bench/results/memory-<date>-<commit>.json``
and the section between ``<!-- bench:memory -->`` and ``<!-- /bench:memory -->``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import backlog
import procs
from backlog import INPUTS, OUTPUTS
from compare import RESULTS, broker
from done_rule import wait_done
from prometheus_client.parser import text_string_to_metric_families
from replay import CACHE, machine, write_section

ROOT = procs.ROOT
BEGIN, END = "<!-- bench:memory -->", "<!-- /bench:memory -->"
PARTITIONS = 4
UNTIL = "2026-11-30T00:00:00Z"
STORES = {"memory": "memory://", "rocksdb": "rocksdb://"}


def state_keys(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    keys: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "tactful_state_keys":
            for sample in family.samples:
                keys[sample.labels["table"]] = int(sample.value)
    return keys


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def du_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


async def run_store(store: str, bootstrap: str, b: backlog.Backlog, work: Path,
                    timeout: float) -> dict[str, Any]:
    run = procs.tag()
    prefix, app = f"m{run}.", f"bench-mem-{run}"
    data = work / f"data-{run}"
    port = procs.free_port()
    until = datetime.fromisoformat(UNTIL).timestamp()
    await backlog.create_topics(bootstrap, [prefix + t for t in (*INPUTS, *OUTPUTS)],
                                PARTITIONS)
    env = {**os.environ, "TACTFUL_BOOTSTRAP": bootstrap, "TACTFUL_APP_ID": app,
           "TACTFUL_TOPIC_PREFIX": prefix, "TACTFUL_PARTITIONS": str(PARTITIONS),
           "TACTFUL_CLOCK": "wall", "TACTFUL_PROCESSING_GUARANTEE": "at_least_once",
           "TACTFUL_STORE": STORES[store], "TACTFUL_LOG_LEVEL": "warning",
           "TACTFUL_DATA_DIR": str(data), "TACTFUL_WEB_PORT": str(port)}
    worker = procs.tactful_worker(env, work / f"worker-{run}.log", f"tactful worker ({store})")
    try:
        baseline = await idle_rss(worker, port)  # before the first event
        started = time.time()
        produce_s = await backlog.produce(bootstrap, prefix, b, PARTITIONS, until)
        inputs = await backlog.end_offsets(bootstrap, [prefix + t for t in INPUTS], PARTITIONS)
        done = await wait_done(bootstrap, app, prefix, inputs, PARTITIONS, None, [worker],
                               timeout)
        keys = state_keys(port)
        result: dict[str, Any] = {
            "store": store, "produce_s": produce_s, "seconds": done.at - started,
            "rss_before_mib": baseline,
            "peak_rss_mib": worker.peak_rss_mib(), "rss_at_end_mib": rss_mib(worker.pid),
            "cpu_s": worker.cpu_seconds(), "keys": keys,
            "store_files_mib": du_mib(data) if data.exists() else 0.0,
        }
    finally:
        procs.stop([worker])
        await backlog.delete_topics(bootstrap, run)
    return result


async def idle_rss(worker: procs.Proc, port: int) -> float:
    """The worker's RSS once it serves ``/metrics`` and has settled (2 s), no input yet."""
    deadline = time.monotonic() + 120
    while True:
        worker.check()
        try:
            state_keys(port)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    await asyncio.sleep(2.0)
    return rss_mib(worker.pid)


def per_100k(r: dict[str, Any], customers: int) -> float | None:
    """Peak RSS above the idle worker's, per 100,000 customer keys."""
    return (r["peak_rss_mib"] - r["rss_before_mib"]) / customers * 100_000 if customers else None



def section(doc: dict[str, Any]) -> str:
    host = doc["machine"]
    rows = []
    # RocksDB's tables are not counted on /metrics (a scan): the same workload leaves the
    # same keys, so the memory store's counts stand for both.
    counted: dict[str, int] = next((r["keys"] for r in doc["stores"] if r["keys"]), {})
    for r in doc["stores"]:
        keys = r["keys"] or counted
        per = per_100k(r, keys.get("customers", 0))
        rows.append(
            f"| {r['store']} | {keys.get('customers', 0):,} | {keys.get('skus', 0):,} | "
            f"{r['rss_before_mib']:,.0f} MiB | {r['peak_rss_mib']:,.0f} MiB | "
            f"{'–' if per is None else f'{per:,.0f} MiB'} | {r['store_files_mib']:,.0f} MiB |")
    return "\n".join([
        BEGIN,
        "## Memory per live customer (`bench/memory.py`)",
        "",
        f"- **Date**: {doc['date']}",
        f"- **Command**: `{doc['command']}`",
        f"- **Commit**: `{host['commit']}`",
        f"- **Machine**: {host['cpu']}, {host['cores']}; {host['python']}",
        f"- **Workload**: `{doc['generate']}`, one event per message, {PARTITIONS} "
        "partitions; one worker, wall clock, at least once, read to the end",
        "",
        "| store | customer keys | sku keys | RSS idle | peak RSS | (peak − idle) per "
        "100,000 customer keys | store files on disk |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "RSS idle is the worker's `VmRSS` once it serves `/metrics`, before the first "
        "event; peak RSS its `VmHWM` after the last; keys are `tactful_state_keys` at the "
        "end (sessions expire: none are left). The store's files are its data directory "
        f"(RocksDB). Every figure: `{doc['json']}`.",
        END,
    ]) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--stores", nargs="+", choices=sorted(STORES), default=sorted(STORES))
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--no-write", action="store_true", help="print, write no file")
    args = ap.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"events-c{args.customers}-e{args.events}-s7.jsonl"
    generate = ["tactful", "generate", "--customers", str(args.customers),
                "--events", str(args.events), "--seed", "7"]
    if not path.exists():
        print(f"generating {path.relative_to(ROOT)} ...", flush=True)
        with path.open("wb") as lines:
            subprocess.run([sys.executable, "-m", "tactful.cli", *generate[1:]], stdout=lines,
                           check=True)
    b = backlog.single(path)
    host = machine()
    results = []
    work = Path(tempfile.mkdtemp(prefix="tactful-memory-"))
    with broker() as bootstrap:
        for store in args.stores:
            print(f"{store}: {args.events:,} events ...", flush=True)
            r = asyncio.run(run_store(store, bootstrap, b, work, args.timeout))
            print(json.dumps(r), flush=True)
            results.append(r)
    now = datetime.now(UTC)
    out = RESULTS / f"memory-{now:%Y-%m-%d}-{host['commit']}.json"
    command = shlex.join(["python", "bench/memory.py", *(argv if argv is not None
                                                          else sys.argv[1:])])
    doc = {"date": now.strftime("%Y-%m-%d %H:%M UTC"), "command": command,
           "machine": host, "generate": shlex.join(generate), "stores": results,
           "json": str(out.relative_to(ROOT))}
    text = section(doc)
    print(text)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2) + "\n")
        write_section(text, BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
