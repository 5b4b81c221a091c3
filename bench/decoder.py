"""Per-record cost of the input path, side by side with another commit.

Measures, for every line of a generated workload, what the worker does to a record
before the engine sees it: ``decode_message`` (bounded: size and depth checks, then
msgspec decode and validation) and, at this commit, the partition check of each event
(one murmur2 hash of the record key). ``--against REV`` runs the same loop on REV's
``src/`` (a git worktree) in alternating child processes, rounds interleaved, and prints
both medians. It writes nothing: copy the figures into BENCHMARKS.md with the command.

    python bench/decoder.py --events 200000 --against HEAD~1
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from tactful.adapters.codec import decode_message
try:
    from tactful.service.worker import partition_of
except ImportError:
    partition_of = None
lines = open(sys.argv[2], 'rb').read().splitlines()
import orjson
keys = []
for line in lines:
    event = orjson.loads(line)
    own = event.get("session_id") or event.get("sku") or event.get("customer_id")
    keys.append(own.encode())
start = time.process_time()
for line, key in zip(lines, keys):
    for item in decode_message(line):
        pass
    if partition_of is not None and sys.argv[3] == "route":
        partition_of(key, 4)
print(time.process_time() - start)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--against", metavar="REV", required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "events.jsonl"
        subprocess.run([sys.executable, "-m", "tactful.cli", "generate", "--customers", "4000",
                        "--events", str(args.events), "--out", str(events)], check=True)
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old),
                        args.against], check=True, capture_output=True)
        try:
            paths = {"this commit": (ROOT / "src", "route"), args.against: (old / "src", "-")}
            times: dict[str, list[float]] = {name: [] for name in paths}
            for _ in range(args.rounds):
                for name, (src, mode) in paths.items():
                    out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(events),
                                          mode], check=True, capture_output=True, text=True)
                    times[name].append(float(out.stdout))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                           check=True)
    print(f"{args.events} events, {args.rounds} rounds interleaved, CPU seconds")
    for name, runs in times.items():
        med = statistics.median(runs)
        print(f"{name:>12}: median {med:.3f} s (min {min(runs):.3f}, max {max(runs):.3f}), "
              f"{med / args.events * 1e6:.2f} µs/record, {args.events / med:,.0f} records/s")


if __name__ == "__main__":
    main()
