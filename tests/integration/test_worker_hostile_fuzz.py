"""The quick run of the hostile-input fuzzer drill (tests/drills/test_hostile_fuzz.py):
60 fuzzed bad records among 500 generated events; `make drills` runs the full size."""

from __future__ import annotations

from pathlib import Path

from tests.drills.test_hostile_fuzz import fuzz_drill


def test_fuzzed_hostile_input_quick(kafka_bootstrap: str, tmp_path: Path) -> None:
    fuzz_drill(kafka_bootstrap, tmp_path, records=60, events=500, name="hostile_fuzz_quick")
