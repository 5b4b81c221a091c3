"""Compile the engine's hot modules with mypyc, into a directory of their own.

    python -m tactful.compile build/compiled      # then PYTHONPATH=build/compiled

The compiled modules are the pure core's decision path (``COMPILED``): the engine and its
rules, the guardrails and quiet hours, and the replay runtime. The modules that define msgspec
Structs (events, state, messages, outputs) stay Python: compiled, a Struct loses what
msgspec reads from its class (``omit_defaults`` would write ``"links": null``), and the
outputs would no longer be byte-identical. tests/e2e/test_compiled_core.py checks that
they are, on a generated workload; BENCHMARKS.md has the speed-up.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

COMPILED = ("core/engine.py", "core/rules/customer.py", "core/rules/decisions.py",
            "core/rules/delivery.py", "core/rules/erasure.py", "core/rules/session.py",
            "core/rules/sku.py", "core/rules/storefront.py", "core/rules/triggers.py",
            "core/guardrails.py", "core/quiet_hours.py", "core/pipeline.py", "core/runtime.py")


def compile_core(target: Path) -> Path:
    """A copy of the package under ``target`` with ``COMPILED`` built as extensions."""
    package = Path(__file__).resolve().parent
    target.mkdir(parents=True, exist_ok=True)
    copy = target / "tactful"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    mypyc = Path(sys.executable).with_name("mypyc")
    sources = [str(Path("tactful") / name) for name in COMPILED]
    subprocess.run([str(mypyc), *sources], cwd=target, check=True,
                   stdout=subprocess.DEVNULL)
    for name in COMPILED:  # the extension, not the source, is what gets imported
        (copy / name).unlink()
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tactful.compile DIR", file=sys.stderr)
        return 2
    compile_core(Path(args[0]))
    print(f"compiled core in {args[0]}: run with PYTHONPATH={args[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
