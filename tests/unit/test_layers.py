"""The package's layers (CONVENTIONS §1): a pure core, adapters handed what they need,
one composition root. Read from the source's import statements."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "tactful"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    found = sorted((SRC / package).rglob("*.py"))
    assert found, package
    return found


@pytest.mark.parametrize("path", _modules("core"), ids=lambda p: p.name)
def test_the_core_imports_no_io_framework_or_outer_layer(path: Path) -> None:
    forbidden = ("tactful.adapters", "tactful.service", "tactful.cli", "faust", "aiokafka",
                 "mode", "os", "socket", "asyncio", "prometheus_client", "time")
    bad = sorted(n for n in _imports(path) if n.split(".")[0] in forbidden
                 or any(n == f or n.startswith(f + ".") for f in forbidden))
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", _modules("adapters"), ids=lambda p: p.name)
def test_adapters_do_not_reach_into_the_service(path: Path) -> None:
    bad = sorted(n for n in _imports(path) if n.startswith(("tactful.service", "tactful.cli")))
    assert not bad, f"{path.name} imports {bad}"


def test_the_environment_is_read_by_the_settings_alone() -> None:
    readers = sorted(
        p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")
        if "os.environ" in p.read_text() or "getenv(" in p.read_text()
    )
    # The settings, the command line (TACTFUL_ADMIN_TOKEN and TACTFUL_ERASURE_KEY of
    # explain and replay, which have no settings of their own), and the demo's workers.
    assert readers == ["cli.py", "service/demo.py", "service/settings.py"]
