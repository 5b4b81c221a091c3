"""Fixtures for tests that talk to a real Kafka broker.

``kafka_bootstrap`` uses ``TACTFUL_BOOTSTRAP`` when it is set; otherwise it
starts the local single-node broker with ``deploy/local-kafka/kafka.sh`` (port
from ``KAFKA_PORT``, default 9092) and stops it again when the last test session
using it ends. A broker that was already running and was not started by a test
session (e.g. one a developer started by hand) is used and left running.

Every test under ``tests/integration`` is marked ``integration``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO_ROOT / "deploy" / "local-kafka" / "kafka.sh"
INTEGRATION_DIR = Path(__file__).resolve().parent

# The first start downloads the broker jars, so allow it plenty of time.
START_TIMEOUT_S = 900
STOP_TIMEOUT_S = 120


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class LocalKafka:
    """Drives ``kafka.sh`` for one client port."""

    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def cache_dir(self) -> Path:
        home = os.environ.get("TACTFUL_KAFKA_HOME")
        return Path(home) if home else KAFKA_SH.parent / ".kafka"

    @property
    def run_dir(self) -> Path:
        return self.cache_dir / f"run-{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "kafka.pid"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KAFKA_PORT"] = str(self.port)
        env.pop("KAFKA_CONTROLLER_PORT", None)  # always KAFKA_PORT + 1
        return env

    def run(
        self, command: str, timeout: float = START_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(KAFKA_SH), command],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self) -> str:
        result = self.run("start")
        lines = result.stdout.strip().splitlines()
        if result.returncode != 0 or not lines:
            raise RuntimeError(
                f"kafka.sh start failed (exit {result.returncode}):\n{result.stderr.strip()}"
            )
        return lines[-1]

    def stop(self) -> None:
        result = self.run("stop", timeout=STOP_TIMEOUT_S)
        if result.returncode != 0:
            raise RuntimeError(
                f"kafka.sh stop failed (exit {result.returncode}):\n{result.stderr.strip()}"
            )

    def is_running(self) -> bool:
        return self.run("status", timeout=30).returncode == 0

    def broker_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _default_port() -> int:
    raw = os.environ.get("KAFKA_PORT", "9092")
    try:
        return int(raw)
    except ValueError:
        raise pytest.UsageError(f"KAFKA_PORT must be a port number, got {raw!r}") from None


@pytest.fixture(scope="session")
def local_kafka() -> LocalKafka:
    """The local broker ``kafka_bootstrap`` uses when TACTFUL_BOOTSTRAP is not set."""
    return LocalKafka(_default_port())


@pytest.fixture(scope="session")
def kafka_bootstrap(local_kafka: LocalKafka) -> Iterator[str]:
    """Bootstrap address of a running Kafka broker for this test session."""
    external = os.environ.get("TACTFUL_BOOTSTRAP", "").strip()
    if external:
        yield external
        return

    # Concurrent test sessions (other terminals, xdist workers) share one
    # broker: each holds a lease file while it runs. The broker is stopped by
    # the last session to finish, and only if a test session started it.
    leases = local_kafka.run_dir / "pytest-sessions"
    lock = leases / ".lock"
    owner_marker = leases / "started-by-tests"
    my_lease = leases / str(os.getpid())

    with _locked(lock):
        was_running = local_kafka.is_running()
        try:
            bootstrap = local_kafka.start()
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        if not was_running:
            owner_marker.write_text(f"{local_kafka.broker_pid()}\n")
        my_lease.touch()

    try:
        yield bootstrap
    finally:
        with _locked(lock):
            my_lease.unlink(missing_ok=True)
            others = []
            for lease in leases.iterdir():
                if not lease.name.isdigit():
                    continue
                if _pid_alive(int(lease.name)):
                    others.append(lease)
                else:
                    lease.unlink(missing_ok=True)
            try:
                started_pid = int(owner_marker.read_text().strip())
            except (OSError, ValueError):
                started_pid = None
            if not others and started_pid is not None:
                if started_pid == local_kafka.broker_pid():
                    local_kafka.stop()
                owner_marker.unlink(missing_ok=True)


@pytest.fixture
def unique_topic() -> str:
    """A topic name no other test (or earlier run) has used."""
    return f"tactful.test.{uuid.uuid4().hex}"
