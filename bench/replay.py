"""Throughput of ``tactful replay`` (SPEC §6: the pure engine over a JSON-lines file).

One run measures, side by side and interleaved round by round (the development
machines have 2 noisy cores), the median of ``--runs`` runs of:

  0. reading the lines of the file (the floor under everything else);
  a. ``orjson.loads`` of every line (parse only);
  b. ``tactful.adapters.codec.decode_event`` of every line (msgspec decode + validate);
  c. ``tactful.service.replay.replay_lines`` with the packaged policy, outputs to
     /dev/null — in a fresh ``python`` child per run, so its peak RSS is its own
     (the timing covers ``replay_lines`` only, not interpreter start-up);
  d. the ``tactful replay`` CLI as a subprocess, ``--out``/``--decisions`` to
     /dev/null, wall time including start-up.

The workload is ``tactful generate --customers 20000 --events N --seed 7``, cached
under ``.cache/bench/`` (git-ignored) and made when missing. The results replace
the section between ``<!-- bench:replay -->`` and ``<!-- /bench:replay -->`` in
BENCHMARKS.md (``--no-write`` only prints them).

    python bench/replay.py                 # 1,000,000 events, writes BENCHMARKS.md
    python bench/replay.py --events 100000 --no-write   # quick check
    python bench/replay.py --events 200000 --profile    # py-spy: where the time goes
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
BENCHMARKS = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- bench:replay -->", "<!-- /bench:replay -->"
TARGET, GOAL = 100_000, 200_000  # events/s on one core (the issue)


# --------------------------------------------------------------------------- workload


def tactful_cmd() -> list[str]:
    """The ``tactful`` entry point of this interpreter's environment."""
    exe = Path(sys.executable).parent / "tactful"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("tactful")
    return [found] if found else [sys.executable, "-m", "tactful.cli"]


def generate_args(customers: int, events: int, seed: int) -> list[str]:
    return ["generate", "--customers", str(customers), "--events", str(events),
            "--seed", str(seed)]


def workload(customers: int, events: int, seed: int) -> Path:
    """The cached workload file, generated (atomically) when missing."""
    path = CACHE / f"events-c{customers}-e{events}-s{seed}.jsonl"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    cmd = [*tactful_cmd(), *generate_args(customers, events, seed), "--out", str(tmp)]
    print(f"generating {path.relative_to(ROOT)} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    tmp.replace(path)
    print(f"  {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return path


# ------------------------------------------------------------------------ measurements


@dataclass
class Run:
    wall: float
    cpu: float
    lines: int
    extra: dict[str, Any] = field(default_factory=dict)


def _timed(fn: Callable[[], tuple[int, dict[str, Any]]]) -> Run:
    cpu0, t0 = time.process_time(), time.perf_counter()
    lines, extra = fn()
    return Run(time.perf_counter() - t0, time.process_time() - cpu0, lines, extra)


def read_lines(path: Path) -> Run:
    def go() -> tuple[int, dict[str, Any]]:
        n = 0
        with path.open("rb") as f:
            for _ in f:
                n += 1
        return n, {}
    return _timed(go)


def orjson_loads(path: Path) -> Run:
    import orjson

    def go() -> tuple[int, dict[str, Any]]:
        loads = orjson.loads
        n = 0
        with path.open("rb") as f:
            for line in f:
                loads(line)
                n += 1
        return n, {}
    return _timed(go)


def msgspec_decode(path: Path) -> Run:
    from tactful.adapters.codec import decode_event
    from tactful.core.errors import BadEvent

    def go() -> tuple[int, dict[str, Any]]:
        n = bad = 0
        with path.open("rb") as f:
            for line in f:
                n += 1
                try:
                    decode_event(line)
                except BadEvent:
                    bad += 1
        return n, {"rejected": bad}
    return _timed(go)


def child_replay(path: Path) -> dict[str, Any]:
    """Body of (c), run in a fresh interpreter: one replay, numbers as JSON."""
    from tactful.core.engine import Engine
    from tactful.core.policy import load_policy
    from tactful.service.replay import replay_lines

    engine = Engine(load_policy(None))
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with path.open("rb") as source, open(os.devnull, "wb") as sink:
        cpu0, t0 = time.process_time(), time.perf_counter()
        stats = replay_lines(source, engine, sink, sink)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "wall": wall, "cpu": cpu, "events": stats.events, "rejected": stats.rejected,
        "intents": stats.intents, "decisions": stats.decisions,
        "base_rss_kb": base_rss,
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def replay_in_process(path: Path) -> Run:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-replay", str(path)]
    out = subprocess.run(cmd, check=True, capture_output=True).stdout
    r = json.loads(out)
    return Run(r["wall"], r["cpu"], r["events"] + r["rejected"], r)


def replay_cli(path: Path) -> Run:
    cmd = [*tactful_cmd(), "replay", str(path), "--out", os.devnull, "--decisions", os.devnull]
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        complaints = err.read().decode(errors="replace").splitlines()
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} exited {proc.returncode}: {complaints[-1:]}")
    return Run(wall, usage.ru_utime + usage.ru_stime, -1,
               {"peak_rss_kb": usage.ru_maxrss, "stderr_lines": len(complaints)})


MEASURES: list[tuple[str, str, Callable[[Path], Run]]] = [
    ("read", "read lines only (`for line in file`)", read_lines),
    ("orjson", "(a) `orjson.loads` per line", orjson_loads),
    ("msgspec", "(b) `codec.decode_event` per line (msgspec decode + validate)", msgspec_decode),
    ("replay", "(c) `replay_lines(...)` in-process, outputs to /dev/null", replay_in_process),
    ("cli", "(d) `tactful replay` CLI subprocess, wall incl. start-up", replay_cli),
]


# ---------------------------------------------------------------------------- machine


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024**2:.0f} GiB"
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    versions = []
    for mod in ("orjson", "msgspec"):
        with contextlib.suppress(ImportError, AttributeError):
            versions.append(f"{mod} {__import__(mod).__version__}")
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    # Only src/ matters for the numbers (bench/ and docs change while benchmarking).
    src_changed = bool(git("status", "--porcelain", "--", "src"))
    return {
        "cpu": cpu,
        "cores": f"{os.cpu_count()} logical ({usable} usable)",
        "memory": mem,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
        "libs": ", ".join(versions),
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "src": "src/ has local changes" if src_changed else "src/ unmodified",
    }


# ----------------------------------------------------------------------------- report


def fmt_rate(events: int, seconds: float) -> str:
    return f"{events / seconds:,.0f}" if seconds > 0 else "-"


def report(
    n_lines: int, runs: dict[str, list[Run]], info: dict[str, str], commands: dict[str, str],
    date: str,
) -> str:
    rows = []
    for key, label, _ in MEASURES:
        rs = runs[key]
        wall = statistics.median(r.wall for r in rs)
        cpu = statistics.median(r.cpu for r in rs)
        spread = f"{min(r.wall for r in rs):.3f}–{max(r.wall for r in rs):.3f}"
        rss = ""
        if "peak_rss_kb" in rs[0].extra:
            rss = f"{max(r.extra['peak_rss_kb'] for r in rs) / 1024:,.0f} MiB"
        rows.append(
            f"| {label} | **{fmt_rate(n_lines, wall)}** | {fmt_rate(n_lines, cpu)} "
            f"| {wall:.3f} ({spread}) | {1e6 * wall / n_lines:.2f} | {rss} |"
        )
    replay = runs["replay"][0].extra
    base = max(r.extra["base_rss_kb"] for r in runs["replay"]) / 1024
    rate = n_lines / statistics.median(r.wall for r in runs["replay"])
    verdict = (
        "meets the goal" if rate >= GOAL else "meets the target, not the goal" if rate >= TARGET
        else f"**below the target** ({rate / TARGET:.2f}× of {TARGET:,})"
    )
    lines = [
        BEGIN,
        "## `tactful replay` throughput",
        "",
        f"- **Date**: {date}",
        f"- **Command**: `{commands['bench']}`",
        f"- **Workload**: `{commands['generate']}` ({n_lines:,} lines, "
        f"{commands['size']})",
        f"- **CLI measured**: `{commands['cli']}`",
        f"- **Machine**: {info['cpu']}, {info['cores']}, {info['memory']}; {info['os']}",
        f"- **Software**: {info['python']}, {info['libs']}; "
        f"tactful at `{info['commit']}` ({info['src']})",
        f"- Median of {len(runs['replay'])} runs each, interleaved round by round; "
        "single-threaded, so events/s is per core.",
        "",
        "| path | events/s (wall) | events/s (CPU) | wall s, median (min–max) | µs/event "
        "| peak RSS |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Replay produced **{replay['intents']:,} intents/cancellations** and "
        f"**{replay['decisions']:,} decisions** from {replay['events']:,} events "
        f"({replay['rejected']:,} rejected). Peak RSS of (c) is the whole child process; "
        f"{base:,.0f} MiB of it is the interpreter with tactful imported, before the first "
        "event. (d) includes interpreter start-up and policy load.",
        "",
        f"Target ≥ {TARGET:,} events/s on one core for replay, goal {GOAL:,}: (c) runs at "
        f"{rate:,.0f} — {verdict}.",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(section: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the part of BENCHMARKS.md between ``begin`` and ``end`` (or append it)."""
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    BENCHMARKS.write_text(text)


# ---------------------------------------------------------------------------- profile


GC_FRAME = "[cyclic GC: gc_collect_main]"


def profile(path: Path, rate: int, top: int, native: bool) -> None:
    """py-spy the CLI over ``path``; print inclusive and self time per function."""
    spy = Path(sys.executable).parent / "py-spy"
    spy_cmd = str(spy) if spy.exists() else shutil.which("py-spy")
    if spy_cmd is None:
        raise SystemExit("py-spy not found (pip install py-spy)")
    raw = CACHE / f"{path.stem}{'.native' if native else ''}.pyspy.txt"
    cmd = [spy_cmd, "record", "--format", "raw", "--rate", str(rate),
           *(["--native"] if native else []),
           "-o", str(raw), "--", *tactful_cmd(), "replay", str(path),
           "--out", os.devnull, "--decisions", os.devnull]
    print("$", shlex.join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    print(summarise_raw(raw.read_text(), top))


def summarise_raw(text: str, top: int) -> str:
    """Collapsed stacks (``a;b;c count``) to inclusive/self percentages per function."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [f for f in map(_frame, stack.split(";")) if f is not None]
        if not frames:
            continue
        for f in set(frames):
            inclusive[f] += n
        own[frames[-1]] += n
    out = io.StringIO()
    out.write(f"{total:,} samples\n\n| function | inclusive | self |\n|---|---:|---:|\n")
    for name, n in inclusive.most_common(top):
        out.write(f"| `{name}` | {100 * n / total:.1f} % | {100 * own[name] / total:.1f} % |\n")
    out.write("\n| function (by self time) | self | inclusive |\n|---|---:|---:|\n")
    for name, n in own.most_common(top):
        out.write(f"| `{name}` | {100 * n / total:.1f} % "
                  f"| {100 * inclusive[name] / total:.1f} % |\n")
    return out.getvalue()


def _frame(frame: str) -> str | None:
    """``func (path/to/file.py:123)`` -> ``file.py:func`` (line numbers dropped).

    Native frames (``--native``) are dropped, except the cyclic garbage collector's.
    """
    m = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not m:
        return GC_FRAME if "gc_collect" in frame else None
    func, file = m.groups()
    parts = Path(file).parts[:-1]
    if "tactful" in parts:  # tactful/core/engine.py -> core/engine.py
        file = "/".join(Path(file).parts[parts.index("tactful") + 1:])
    else:
        file = Path(file).name
    return f"{file}:{func}"


# ------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, metavar="N")
    parser.add_argument("--customers", type=int, default=20_000, metavar="N")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=3, help="runs per path (median)")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument("--profile", action="store_true",
                        help="instead: py-spy the CLI over the workload, print where time goes")
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples/s (--profile)")
    parser.add_argument("--top", type=int, default=30, help="rows in the profile tables")
    parser.add_argument("--native", action="store_true",
                        help="py-spy --native: also count time in the cyclic GC (slower)")
    parser.add_argument("--child-replay", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_replay:
        print(json.dumps(child_replay(Path(args.child_replay))))
        return 0

    path = workload(args.customers, args.events, args.seed)
    if args.profile:
        profile(path, args.rate, args.top, args.native)
        return 0

    n_lines = sum(1 for _ in path.open("rb"))  # also warms the page cache
    runs: dict[str, list[Run]] = {key: [] for key, _, _ in MEASURES}
    for round_no in range(1, args.runs + 1):
        for key, _, measure in MEASURES:
            r = measure(path)
            if r.lines not in (-1, n_lines):
                raise SystemExit(f"{key}: saw {r.lines} lines, expected {n_lines}")
            runs[key].append(r)
            print(f"round {round_no} {key:>8}: {r.wall:6.2f} s  "
                  f"{fmt_rate(n_lines, r.wall):>11} events/s", file=sys.stderr, flush=True)

    bench_cmd = "python bench/replay.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    commands = {
        "bench": bench_cmd,
        "generate": shlex.join(["tactful", *generate_args(args.customers, args.events,
                                                          args.seed)]),
        "cli": f"tactful replay {path.relative_to(ROOT)} --out /dev/null --decisions /dev/null",
        "size": f"{path.stat().st_size / 1024**2:,.0f} MiB",
    }
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = report(n_lines, runs, machine(), commands, date)
    print(section)
    if not args.no_write:
        write_section(section)
        print(f"updated {BENCHMARKS.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
