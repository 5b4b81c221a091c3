"""Each drill writes what it counted: one JSON file per drill under ``.cache/drills/``
(``TACTFUL_DRILL_RESULTS`` moves it) and one summary line on stdout, for RELIABILITY.md."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]


def results_dir() -> Path:
    path = Path(os.environ.get("TACTFUL_DRILL_RESULTS") or ROOT / ".cache" / "drills")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def record(name: str, counts: dict[str, object]) -> Path:
    """Write ``counts`` (with the commit and the time) as ``NAME.json``; print them."""
    doc = {"drill": name, "commit": _commit(),
           "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **counts}
    path = results_dir() / f"{name}.json"
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    print(f"\ndrill {name}: " + ", ".join(f"{k}={v}" for k, v in counts.items()
                                           if not isinstance(v, (dict, list))))
    return path
