"""The engine compiled with mypyc (``tactful.compile``) gives the same bytes as Python."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tactful.compile import COMPILED, compile_core


def _replay(events: Path, out: Path, pythonpath: str | None) -> tuple[bytes, bytes, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TACTFUL_")}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    intents, decisions = out / "intents.jsonl", out / "decisions.jsonl"
    out.mkdir()
    probe = ("import tactful.core.engine as e, sys; print(e.__file__, file=sys.stderr); "
             "from tactful.cli import main; sys.exit(main())")
    result = subprocess.run(
        [sys.executable, "-c", probe, "replay", str(events), "--until", "2026-11-30T00:00:00Z",
         "--out", str(intents), "--decisions", str(decisions)],
        env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    return intents.read_bytes(), decisions.read_bytes(), result.stderr.splitlines()[0]


def test_the_compiled_engine_writes_byte_identical_outputs(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    subprocess.run([sys.executable, "-m", "tactful.cli", "generate", "--customers", "400",
                    "--events", "20000", "--seed", "5", "--out", str(events)],
                   check=True, timeout=120)
    build = compile_core(tmp_path / "compiled")
    for name in COMPILED:
        stem = Path(name).with_suffix("").as_posix()
        assert list((build / "tactful").glob(f"{stem}.*.so")), f"{name} was not compiled"
    plain = _replay(events, tmp_path / "plain", None)
    compiled = _replay(events, tmp_path / "fast", str(build))
    assert compiled[2].endswith(".so") and not plain[2].endswith(".so")  # what ran
    assert plain[0].count(b"\n") > 50  # a workload that decides things
    assert compiled[:2] == plain[:2]
