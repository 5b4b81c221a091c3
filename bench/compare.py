"""The tactful worker beside raw aiokafka, idiomatic Faust and Quix Streams, on the local Kafka.

    make bench-compare                                  # 200,000 events, writes BENCHMARKS.md
    BENCH_QUICK=1 make bench-compare                    # 30,000 events, 5 variants (≤ 10 min)
    .venv/bin/python bench/compare.py --events 20000 --quick --no-write  # a check, prints only
    .venv/bin/python bench/compare.py --profile         # also py-spy the worker for 30 s

One workload, ``tactful generate --customers N/50 --events N --seed 7`` (cached under
``.cache/bench/``), is put on fresh 4-partition topics and every contender reads it from the
beginning. Rounds are interleaved (A B C … A B C …, ``--rounds``, at least 3); each figure is
events (not Kafka messages) over the seconds from the contender's process start to done,
production excluded: the backlog is all on the broker before the contender starts. The
table gives min/median/max over the rounds and each median's ratio to idiomatic Faust.

Contenders:

1. **raw** — aiokafka ``getmany`` + ``orjson.loads`` of the four input topics: the ceiling
   of a Python consumer here. Done at its N-th event.
2. **faust** — idiomatic Faust: one agent per input topic, ``table[key] = value`` per event
   in a changelogged Table (memory store), keyed by the record key; default settings and
   logging. Done at its N-th event.
3. **quix** — a Quix Streams application, one dataframe per input topic storing each event
   under its key (RocksDB state, changelog topics, default 5 s checkpoints). Done at its
   N-th event. (2 and 3 are in ``bench/contenders.py``.)
4. **tactful** — ``python -m tactful.cli worker`` configured by ``TACTFUL_*`` variables, memory
   store, in variants: wall or stream clock; at least once or exactly once; one event per
   message (as ``tactful produce`` writes them) or storefront trackers' batches (a JSON
   array of up to 20 events of one session per message, ``bench/backlog.py``); one or two
   workers in one group. Every input partition ends with a clock marker, as ``tactful
   produce --until 2026-11-30T00:00:00Z`` writes it. Each run gets its own topic prefix
   and app id, and its topics are deleted after it.

Done for tactful means every input consumed and every output written (``bench/done_rule.py``):
with the stream clock, when ``<prefix>intents`` and ``<prefix>decisions`` hold as many
records as ``tactful replay --until`` writes for the workload (for the batches too: the
stream-clock worker applies its inputs in event-time order); with the wall clock
(whose outputs depend on when it runs), when the group's lag is 0 on every input
partition and the committed offsets and the output topics' end offsets have not moved for
2 s; done is then the moment of the last change.

Latency (``bench/latency.py``, one wall-clock worker): from producing a stock drop to the
``low_stock`` intent on the topic, and from an ``abandoned_cart`` timer's due time (a policy
with a 30 s delay) to its intent; p50/p99 of 200 samples each at 20/s, once on an idle
worker and once while other inputs arrive at half the median rate the one-event-per-message
wall-clock worker reached in the same run (``--latency-load`` to set it).

Peak RSS is ``VmHWM`` of each process, CPU its user + system time, both read from ``/proc``
at done. Results: ``bench/results/compare-<date>-<commit>.json`` (every round) and the
section between ``<!-- bench:compare -->`` and ``<!-- /bench:compare -->`` of BENCHMARKS.md.
Without ``TACTFUL_BOOTSTRAP`` the script starts (and stops) a broker of its own on
``BENCH_KAFKA_PORT`` (default 39492).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import backlog
import latency
import procs
from backlog import INPUTS, OUTPUTS, Backlog
from done_rule import wait_done
from procs import RunFailed
from replay import CACHE, machine, summarise_raw, tactful_cmd, workload, write_section

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
BENCHMARKS = ROOT / "BENCHMARKS.md"
KAFKA = ROOT / "deploy" / "local-kafka" / "kafka.sh"
BEGIN, END = "<!-- bench:compare -->", "<!-- /bench:compare -->"
UNTIL = "2026-11-30T00:00:00Z"
PARTITIONS = 4
SEED = 7


# ------------------------------------------------------------------------- contenders


@dataclass(frozen=True)
class Variant:
    """One configuration of the tactful worker."""

    clock: str  # wall | stream
    guarantee: str  # at_least_once | exactly_once
    shape: str  # single | batched
    workers: int
    against: str = ""  # another checkout's src/ (``--against``): that commit's worker
    partitions: int = 0  # of every topic; 0: the run's (PARTITIONS)

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``wall-alo-single-1``: clock, alo|eos, single|batched, workers; ``-p32`` after
        it: on 32 partitions instead of the run's 4."""
        m = re.fullmatch(r"(wall|stream)-(alo|eos)-(single|batched)-([12])(?:-p([1-9]\d*))?",
                         text)
        if not m:
            raise argparse.ArgumentTypeError(
                f"{text!r}: a variant is CLOCK-GUARANTEE-SHAPE-WORKERS[-pPARTITIONS], e.g. "
                "wall-alo-single-1 or wall-eos-single-1-p32")
        clock, g, shape, n, parts = m.groups()
        return cls(clock, "at_least_once" if g == "alo" else "exactly_once", shape, int(n),
                   partitions=int(parts or 0))

    @property
    def topic_partitions(self) -> int:
        return self.partitions or PARTITIONS

    @property
    def key(self) -> str:
        g = "alo" if self.guarantee == "at_least_once" else "eos"
        base = f"tactful-{self.clock}-{g}-{self.shape}-{self.workers}"
        if self.partitions:
            base += f"-p{self.partitions}"
        return f"{base}-before" if self.against else base

    @property
    def label(self) -> str:
        g = "at least once" if self.guarantee == "at_least_once" else "exactly once"
        shape = "one event per message" if self.shape == "single" else "storefront batches"
        workers = "1 worker" if self.workers == 1 else f"{self.workers} workers"
        label = f"tactful worker: {self.clock} clock, {g}, {shape}, {workers}"
        if self.partitions:
            label += f", {self.partitions} partitions"
        return f"{label}, at `{_commit_of(self.against)}` (before)" if self.against else label


def _commit_of(src: str) -> str:
    """The short commit of the checkout whose ``src/`` is ``src``."""
    found = subprocess.run(["git", "-C", src, "rev-parse", "--short", "HEAD"], text=True,
                           capture_output=True, check=False).stdout.strip()
    return found or src


OTHERS = {
    "raw": "raw aiokafka `getmany` + orjson (the Python ceiling)",
    "faust": "idiomatic Faust: agent per topic, `table[key] = value`",
    "quix": "Quix Streams: dataframe per topic, `state.set` (RocksDB)",
}
FULL = ["wall-alo-single-1", "stream-alo-single-1", "wall-eos-single-1", "stream-eos-single-1",
        "wall-alo-batched-1", "stream-alo-batched-1", "wall-eos-batched-1",
        "wall-alo-single-2", "wall-alo-batched-2"]
QUICK = ["wall-alo-single-1", "wall-alo-batched-1", "stream-alo-single-1",
         "wall-eos-single-1", "wall-alo-batched-2"]
PROFILED = Variant("wall", "at_least_once", "single", 1)
LOAD_VARIANT = "tactful-wall-alo-single-1"  # the latency's load: half its median rate


@dataclass
class Round:
    round: int
    events: int
    messages: int
    seconds: float | None = None  # process start → done
    startup_s: float | None = None  # process start → first progress
    produce_s: float | None = None  # putting the backlog on Kafka (not timed in `seconds`)
    peak_rss_mib: list[float] = field(default_factory=list)  # per process
    cpu_s: list[float] = field(default_factory=list)  # per process, at done
    outputs: dict[str, int] = field(default_factory=dict)
    rule: str = ""
    error: str | None = None
    killed: list[str] = field(default_factory=list)  # not stopped 10 s after SIGTERM

    @property
    def rate(self) -> float | None:
        return self.events / self.seconds if self.seconds else None

    @property
    def steady_rate(self) -> float | None:
        if self.seconds is None or self.startup_s is None or self.seconds <= self.startup_s:
            return None
        return self.events / (self.seconds - self.startup_s)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "events_per_s": self.rate,
                "after_startup_events_per_s": self.steady_rate}


# --------------------------------------------------------------------------------- runs


def run_other(kind: str, bootstrap: str, prefix: str, b: Backlog, work: Path, number: int,
              timeout: float) -> Round:
    """raw, faust or quix (bench/contenders.py) over the round's shared backlog."""
    run = procs.tag()
    result = work / f"{kind}-{run}.json"
    args = [sys.executable, str(BENCH / "contenders.py"), kind, "--bootstrap", bootstrap,
            "--prefix", prefix, "--events", str(b.events), "--group", f"bench-{kind}-{run}",
            "--result", str(result), "--web-port", str(procs.free_port()),
            "--data-dir", str(work / f"data-{run}")]
    r = Round(number, b.events, len(b.records))
    if kind == "faust":  # its topics first, as tactful does (see bench/contenders.py)
        group = f"bench-{kind}-{run}"
        asyncio.run(backlog.create_topics(bootstrap, [f"{group}-{t}-changelog" for t in INPUTS],
                                          PARTITIONS, {"cleanup.policy": "compact"}))
        asyncio.run(backlog.create_topics(bootstrap, [f"{group}-__assignor-__leader"], 1))
    started = time.time()
    p = procs.start(kind, args, dict(os.environ), work / f"{kind}-{run}.log")
    try:
        deadline = time.monotonic() + timeout
        while not result.exists():
            p.check()
            if time.monotonic() > deadline:
                raise RunFailed(f"{kind} not done within {timeout:.0f} s")
            time.sleep(0.05)
        r.peak_rss_mib, r.cpu_s = [p.peak_rss_mib()], [p.cpu_seconds()]
        seen = json.loads(result.read_text())
        r.seconds, r.startup_s = seen["done"] - started, seen["first"] - started
        r.rule = f"{b.events:,}th event handled"
    finally:
        r.killed = procs.stop([p])
        asyncio.run(backlog.delete_topics(bootstrap, run))
    return r


async def run_tactful(v: Variant, bootstrap: str, b: Backlog, expected: dict[str, int] | None,
                      work: Path, number: int, timeout: float,
                      profile: Path | None = None) -> Round:
    """One run of the worker(s) over a fresh copy of the backlog under a prefix of its own."""
    run = procs.tag()
    prefix, app = f"b{run}.", f"bench-{run}"
    r = Round(number, b.events, len(b.records))
    partitions = v.topic_partitions
    spy: subprocess.Popen[bytes] | None = None
    workers: list[procs.Proc] = []
    try:
        until = datetime.fromisoformat(UNTIL).timestamp()
        r.produce_s = await backlog.produce(bootstrap, prefix, b, partitions, until)
        await backlog.create_topics(bootstrap, [prefix + t for t in OUTPUTS], partitions)
        inputs = await backlog.end_offsets(bootstrap, [prefix + t for t in INPUTS], partitions)
        env = {**os.environ, "TACTFUL_BOOTSTRAP": bootstrap, "TACTFUL_APP_ID": app,
               "TACTFUL_TOPIC_PREFIX": prefix, "TACTFUL_PARTITIONS": str(partitions),
               "TACTFUL_CLOCK": v.clock, "TACTFUL_PROCESSING_GUARANTEE": v.guarantee,
               "TACTFUL_STORE": "memory://", "TACTFUL_LOG_LEVEL": "warning"}
        if v.against:  # that checkout's tactful first on the path (editable installs)
            env["PYTHONPATH"] = v.against
        started = time.time()
        for i in range(v.workers):
            workers.append(procs.tactful_worker(
                {**env, "TACTFUL_DATA_DIR": str(work / f"data-{run}-{i}"),
                 "TACTFUL_WEB_PORT": str(procs.free_port())},
                work / f"tactful-{run}-{i}.log", f"tactful worker {i + 1} ({v.key})"))

        def record() -> None:  # from the first progress on: start-up is not what we look for
            nonlocal spy
            if profile is not None:
                spy = subprocess.Popen([py_spy(), "record", "--pid", str(workers[0].pid),
                                        "--rate", "100", "--duration", "30", "--format", "raw",
                                        "--nonblocking", "-o", str(profile)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

        done = await wait_done(bootstrap, app, prefix, inputs, partitions,
                               expected if v.clock == "stream" else None, workers, timeout,
                               on_progress=record)
        r.peak_rss_mib = [w.peak_rss_mib() for w in workers]
        r.cpu_s = [w.cpu_seconds() for w in workers]
        r.seconds, r.startup_s = done.at - started, done.first_progress - started
        r.outputs, r.rule = done.outputs, done.rule
    finally:
        if spy is not None:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
            spy.wait(timeout=60)
        r.killed = procs.stop(workers)
        await backlog.delete_topics(bootstrap, run)
    return r


def py_spy() -> str:
    found = Path(sys.executable).with_name("py-spy")
    if found.exists():
        return str(found)
    which = shutil.which("py-spy")
    if which is None:
        raise SystemExit("py-spy not found: pip install -e '.[bench]' (make bench-compare does)")
    return which


def replay_counts(path: Path) -> dict[str, int]:
    """Records ``tactful replay --until`` writes to the intents and decisions topics."""
    with tempfile.TemporaryDirectory(prefix="tactful-compare-") as tmp:
        out, dec = Path(tmp) / "intents.jsonl", Path(tmp) / "decisions.jsonl"
        subprocess.run([*tactful_cmd(), "replay", str(path), "--until", UNTIL,
                        "--out", str(out), "--decisions", str(dec)], check=True)
        return {"intents": _lines(out), "decisions": _lines(dec)}


def _lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


# ------------------------------------------------------------------------------- report


def summary(rounds: list[Round], faust_median: float | None) -> dict[str, Any]:
    rates = [r.rate for r in rounds if r.rate is not None]
    if not rates:
        return {"rounds_done": 0}
    med = statistics.median(rates)
    steady = [s for r in rounds if (s := r.steady_rate) is not None]
    cpu = [sum(r.cpu_s) / r.events * 100_000 for r in rounds if r.rate is not None]
    return {
        "rounds_done": len(rates), "min": min(rates), "median": med, "max": max(rates),
        "ratio_to_faust": med / faust_median if faust_median else None,
        "startup_s_median": statistics.median(r.startup_s for r in rounds
                                              if r.startup_s is not None),
        "after_startup_median": statistics.median(steady) if steady else None,
        "peak_rss_mib_max": max(max(r.peak_rss_mib) for r in rounds if r.peak_rss_mib),
        "cpu_s_per_100k_median": statistics.median(cpu),
    }


def table(contenders: dict[str, str], results: dict[str, list[Round]],
          stats: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| contender | events/s, median | min – max | × idiomatic Faust | start-up s "
             "| events/s after start-up | peak RSS / process | CPU s per 100k events |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, label in contenders.items():
        s = stats[key]
        failed = sum(1 for r in results[key] if r.error)
        note = f" ({failed} of {len(results[key])} rounds failed)" if failed else ""
        if not s["rounds_done"]:
            lines.append(f"| {label}{note} | – | – | – | – | – | – | – |")
            continue
        ratio = f"{s['ratio_to_faust']:.2f}" if s["ratio_to_faust"] else "–"
        after = f"{s['after_startup_median']:,.0f}" if s["after_startup_median"] else "–"
        lines.append(
            f"| {label}{note} | **{s['median']:,.0f}** | {s['min']:,.0f} – {s['max']:,.0f} "
            f"| {ratio} | {s['startup_s_median']:.1f} | {after} "
            f"| {s['peak_rss_mib_max']:,.0f} MiB | {s['cpu_s_per_100k_median']:.1f} |")
    return lines


def latency_lines(runs: list[dict[str, Any]]) -> list[str]:
    """One table for the latency runs: idle, then under a background load."""
    rows = []
    for lat in runs:
        load = lat.get("load_per_s", 0.0)
        where = "idle" if not load else (
            f"{lat.get('load_reached_per_s', 0.0):,.0f} other events/s (asked {load:,.0f})")
        if "error" in lat:
            rows.append(f"| – | {where} | run failed: {lat['error']} | | | |")
            continue
        for key, label in (("immediate_low_stock", "stock drop → `low_stock` intent"),
                           ("timer_abandoned_cart", "`abandoned_cart` due time → intent")):
            s = lat[key]
            if not s["samples"]:
                rows.append(f"| {label} | {where} | 0 | – | – | – |")
                continue
            rows.append(f"| {label} | {where} | {s['samples']} ({s['missing']} missing) | "
                        f"{s['p50_ms']:,.0f} | {s['p99_ms']:,.0f} | {s['max_ms']:,.0f} |")
    first = next((r for r in runs if "error" not in r), None)
    if first is None:
        return ["Latency runs failed:", "", *rows]
    return [
        f"Latency, one worker (wall clock, at least once): samples at {first['rate_per_s']:g} "
        f"inputs/s, `TACTFUL_TICK_SECONDS` {first['tick_s']:g}, `abandoned_cart` delay "
        f"{first['timer_delay_s']} s; under load, other inputs (verified product views) at "
        "half the median rate of the one-event-per-message wall-clock variant of this run:", "",
        "| path | background | samples | p50 ms | p99 ms | max ms |",
        "|---|---|---:|---:|---:|---:|", *rows]


def section(doc: dict[str, Any], contenders: dict[str, str],
            results: dict[str, list[Round]]) -> str:
    host = doc["machine"]
    title = "## Side by side on the local Kafka: tactful, raw aiokafka, Faust, Quix Streams"
    lines = [BEGIN, title, ""]
    if doc["kind"] == "smoke":
        lines += [f"**Smoke run, not a measurement**: {doc['events']:,} events, a check that "
                  "every contender runs and the report is written; start-up weighs too much "
                  "at this size, and the machine was shared. The measurement is `make "
                  "bench-compare` (200,000 events, every variant) on a quiet machine.", ""]
    w = doc["workload"]
    lines += [
        f"- **Date**: {doc['date']}",
        f"- **Command**: `{doc['command']}`",
        f"- **Commit**: `{host['commit']}` ({host['src']})",
        f"- **Machine**: {host['cpu']}, {host['cores']}, {host['memory']}; {host['os']}; "
        f"{host['python']}; broker: single-node Apache Kafka 4 (KRaft) on the same machine",
        f"- **Workload**: `{w['generate']}`; {PARTITIONS} partitions; storefront batches: "
        f"{w['batched_messages']:,} messages for the same events "
        f"({w['storefront_events_per_batch']:.1f} storefront events per batch)",
        f"- {doc['rounds']} rounds interleaved; events/s = events ÷ (process start → done), "
        "production excluded; start-up = process start → first progress. Done: raw, Faust, "
        "Quix at their last event; tactful stream clock when the outputs equal `tactful "
        "replay`'s counts, wall clock when input lag is 0 and offsets are quiet for 2 s "
        "(see `bench/compare.py`).",
        "",
        *table(contenders, results, doc["stats"]),
        "",
    ]
    exp = doc["expected"]
    if exp:
        lines += [f"`tactful replay` of the workload writes {exp['intents']:,} intents and "
                  f"cancellations and {exp['decisions']:,} decisions: the stream clock's "
                  "target, for both message shapes.", ""]
    if doc.get("latency"):
        lines += [*latency_lines(doc["latency"]), ""]
    errors = [f"- {key} round {r.round}: {r.error.splitlines()[0]}"
              for key, rs in results.items() for r in rs if r.error]
    if errors:
        lines += ["Failed rounds:", *errors, ""]
    killed = [f"{key} ({n} of {len(rs)} rounds)" for key, rs in results.items()
              if (n := sum(1 for r in rs if r.killed))]
    if killed:
        lines += ["Not stopped 10 s after SIGTERM (killed; after the measurement): "
                  + ", ".join(killed) + ".", ""]
    lines += [f"Every round: `{doc['json']}`." if doc["json"] else "(--no-write: no JSON.)",
              END]
    return "\n".join(_wrap(line) for line in lines) + "\n"


def _wrap(line: str, width: int = 92) -> str:
    """Prose and bullets wrapped as the rest of BENCHMARKS.md is; table rows left whole."""
    if line.startswith(("|", "<!--", "#")) or len(line) <= width:
        return line
    indent = "  " if line.startswith("- ") else ""
    return textwrap.fill(line, width, subsequent_indent=indent, break_on_hyphens=False,
                         break_long_words=False)


# --------------------------------------------------------------------------------- main


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    quick = env_flag("BENCH_QUICK")
    ap.add_argument("--quick", action="store_true", default=quick,
                    help="30,000 events, the variants of QUICK (also BENCH_QUICK=1)")
    ap.add_argument("--events", type=int, default=None, metavar="N",
                    help="events in the workload (BENCH_EVENTS; 200,000, quick 30,000)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (at least 3)")
    ap.add_argument("--variants", nargs="+", type=Variant.parse, metavar="V",
                    help="tactful variants, e.g. wall-alo-single-1 stream-eos-batched-1")
    ap.add_argument("--skip", nargs="+", default=[], choices=sorted(OTHERS),
                    help="leave out some of the other contenders")
    ap.add_argument("--no-latency", action="store_true", help="skip the latency runs")
    ap.add_argument("--latency-load", type=float, nargs="+", default=None,
                    metavar="EVENTS_PER_S",
                    help="background loads of the latency runs after the idle one (default: "
                         f"half the median of {LOAD_VARIANT} in this run; 0: idle only)")
    ap.add_argument("--profile", nargs="?", type=Variant.parse, const=PROFILED,
                    default=None, metavar="V",
                    help="also py-spy the worker for 30 s: variant V (default "
                         "wall-alo-single-1)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds a run may take at most (default: 300 + 1 per 200 events)")
    ap.add_argument("--against", metavar="DIR", default=None,
                    help="also run every tactful variant from another checkout (e.g. a "
                    "`git worktree add` of the commit before), interleaved, as VARIANT-before")
    ap.add_argument("--no-write", action="store_true",
                    help="print only (no JSON, BENCHMARKS.md untouched)")
    args = ap.parse_args(argv)
    if args.events is None:
        args.events = int(os.environ.get("BENCH_EVENTS") or (30_000 if args.quick else 200_000))
    if args.timeout is None:  # a hung contender fails its round instead of the whole run
        args.timeout = 300 + args.events / 200
    if args.variants is None:
        args.variants = [Variant.parse(v) for v in (QUICK if args.quick else FULL)]
    if args.rounds < 3:
        ap.error("--rounds must be at least 3 (the median of fewer says little on 2 noisy cores)")
    return args


@contextlib.contextmanager
def broker() -> Any:
    """``TACTFUL_BOOTSTRAP``, or a broker of our own on ``BENCH_KAFKA_PORT``, stopped after."""
    if os.environ.get("TACTFUL_BOOTSTRAP"):
        yield os.environ["TACTFUL_BOOTSTRAP"]
        return
    env = {**os.environ, "KAFKA_PORT": os.environ.get("BENCH_KAFKA_PORT", "39492")}
    out = subprocess.run(["bash", str(KAFKA), "start"], check=True, stdout=subprocess.PIPE,
                         text=True, env=env)
    try:
        yield out.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(KAFKA), "stop"], check=False, env=env)


_STARTED = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _STARTED:4.0f} s] {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A stopped run (make interrupted, a kill) still stops its processes and its broker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.basicConfig(level=logging.ERROR)  # aiokafka's retry warnings after topic creation
    host = machine()  # before the run: the commit and src/ it measures
    customers = max(10, args.events // 50)
    path = workload(customers, args.events, SEED)
    single, batches = backlog.single(path), backlog.batched(path)
    storefront = [r for r in batches.records if r.topic == "storefront"]
    variants: list[Variant] = list(dict.fromkeys(args.variants))
    if args.against:
        src = str(Path(args.against).resolve() / "src")
        variants = [w for v in variants for w in (v, dataclasses.replace(v, against=src))]
    contenders = {k: v for k, v in OTHERS.items() if k not in args.skip}
    contenders |= {v.key: v.label for v in variants}
    shapes = {"single": single, "batched": batches}
    expected: dict[str, int] | None = None
    if any(v.clock == "stream" for v in variants):
        say("tactful replay of the workload (the stream clock's target) ...")
        expected = replay_counts(path)

    results: dict[str, list[Round]] = {k: [] for k in contenders}
    work = Path(tempfile.mkdtemp(prefix="tactful-compare-"))
    lat: list[dict[str, Any]] = []
    profile_text = None
    try:
        with broker() as bootstrap:
            for number in range(1, args.rounds + 1):
                shared = procs.tag()
                prefix = f"b{shared}."
                if any(k in contenders for k in OTHERS):
                    asyncio.run(backlog.produce(bootstrap, prefix, single, PARTITIONS, None))
                for key in contenders:
                    variant = next((v for v in variants if v.key == key), None)
                    try:
                        if variant is None:
                            r = run_other(key, bootstrap, prefix, single, work, number,
                                          args.timeout)
                        else:
                            r = asyncio.run(run_tactful(
                                variant, bootstrap, shapes[variant.shape], expected, work,
                                number, args.timeout))
                    except RunFailed as exc:
                        r = Round(number, args.events, 0, error=str(exc))
                    results[key].append(r)
                    say(f"round {number} {key:<28} " + (
                        f"{r.seconds:7.1f} s {r.rate:9,.0f} events/s  start-up "
                        f"{r.startup_s:5.1f} s  {r.rule}" if r.rate else f"FAILED: {r.error}"))
                asyncio.run(backlog.delete_topics(bootstrap, shared))
            if not args.no_latency:
                loads = args.latency_load
                if loads is None:  # half the maximum this run measured
                    rates = [r.rate for r in results.get(LOAD_VARIANT, []) if r.rate]
                    loads = [statistics.median(rates) / 2] if rates else []
                for background in [0.0, *(x for x in loads if x > 0)]:
                    say(f"latency (wall clock, one worker, {background:,.0f} other events/s)")
                    try:
                        one = asyncio.run(latency.measure(bootstrap, work, load=background))
                    except RunFailed as exc:
                        one = {"error": str(exc).splitlines()[0], "load_per_s": background}
                    say(json.dumps(one))
                    lat.append(one)
            if args.profile:
                spied: Variant = args.profile
                raw = CACHE / f"compare-{path.stem}-{spied.key}.pyspy.txt"
                say(f"py-spy on the worker ({spied.key}), 30 s at most ...")
                asyncio.run(run_tactful(spied, bootstrap, shapes[spied.shape], None, work, 0,
                                        args.timeout, profile=raw))
                profile_text = summarise_raw(raw.read_text(), 30)
                print(f"py-spy of {spied.label}, from its first progress (raw stacks: "
                      f"{raw.relative_to(ROOT)}):\n{profile_text}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    now = datetime.now(UTC)
    faust = summary(results["faust"], None).get("median") if "faust" in results else None
    stats = {k: summary(rs, faust) for k, rs in results.items()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"compare-{now:%Y-%m-%d}-{host['commit']}.json"
    command = "make bench-compare" if os.environ.get("MAKELEVEL") else shlex.join(
        ["python", "bench/compare.py", *(argv if argv is not None else sys.argv[1:])])
    for name in ("BENCH_QUICK", "BENCH_EVENTS"):
        if os.environ.get(name):
            command = f"{name}={os.environ[name]} {command}"
    doc: dict[str, Any] = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"), "command": command, "quick": args.quick,
        "kind": "smoke" if args.quick or args.events < 100_000 else "measurement",
        "commit": host["commit"], "machine": host, "rounds": args.rounds,
        "events": args.events, "partitions": PARTITIONS, "until": UNTIL,
        "workload": {
            "generate": shlex.join(["tactful", "generate", "--customers", str(customers),
                                    "--events", str(args.events), "--seed", str(SEED)]),
            "messages": len(single.records), "batched_messages": len(batches.records),
            "storefront_events_per_batch": (sum(r.events for r in storefront)
                                            / max(1, len(storefront))),
            "batch_max": backlog.BATCH_MAX, "batch_flush_s": backlog.BATCH_FLUSH,
        },
        "expected": expected,
        "contenders": {k: {"label": contenders[k], **stats[k],
                           "rounds": [r.as_json() for r in results[k]]} for k in contenders},
        "stats": stats, "latency": lat, "profile": profile_text,
        "json": None if args.no_write else str(out.relative_to(ROOT)),
    }
    text = section(doc, contenders, results)
    print(text)
    if not args.no_write:
        out.write_text(json.dumps({k: v for k, v in doc.items() if k != "stats"}, indent=2)
                       + "\n")
        write_section(text, BEGIN, END)
        say(f"wrote {out.relative_to(ROOT)}, updated {BENCHMARKS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
