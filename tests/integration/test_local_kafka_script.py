"""deploy/local-kafka/kafka.sh: start is idempotent, stop leaves nothing behind."""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import socket
import subprocess
import time
from typing import Any

import pytest

# ``LocalKafka`` objects come from the ``local_kafka`` fixture (tests/integration/conftest.py).
LocalKafka = Any


def broker_pids_for(local: LocalKafka) -> list[int]:
    """Pids of broker JVMs running with this port's config file."""
    config = str(local.run_dir.resolve() / "server.properties")
    out = subprocess.run(
        ["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True, check=True
    ).stdout
    pids = []
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if "kafka.Kafka" in args and config in args:
            pids.append(int(pid))
    return pids


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie no longer runs; it only waits for its parent to reap it.
    stat = subprocess.run(
        ["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return stat.returncode == 0 and not stat.stdout.strip().startswith("Z")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair(start: int = 19092) -> int:
    """A client port p with p and p+1 free; randomised so parallel sessions differ."""
    first = start + 2 * random.randrange(0, 200)
    for port in range(first, first + 400, 2):
        if port_free(port) and port_free(port + 1):
            return port
    raise RuntimeError("no free port pair for a second broker")


@pytest.fixture
def script_broker(kafka_bootstrap: str, local_kafka: LocalKafka) -> LocalKafka:
    if os.environ.get("TACTFUL_BOOTSTRAP", "").strip():
        pytest.skip("TACTFUL_BOOTSTRAP is set: the broker was not started by kafka.sh")
    assert kafka_bootstrap == local_kafka.address
    return local_kafka


def test_status_reports_running_broker(script_broker: LocalKafka) -> None:
    result = script_broker.run("status", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "running"


def test_second_start_is_a_no_op(script_broker: LocalKafka) -> None:
    pid_before = script_broker.broker_pid()
    assert pid_before is not None and pid_alive(pid_before)

    result = script_broker.run("start", timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == script_broker.address

    assert script_broker.broker_pid() == pid_before
    assert broker_pids_for(script_broker) == [pid_before]


def test_start_then_stop_on_another_port_leaves_nothing_running(
    kafka_bootstrap: str,  # the jars are already fetched by the session broker
    local_kafka: LocalKafka,
) -> None:
    other = dataclasses.replace(local_kafka, port=free_port_pair())
    assert other.address != kafka_bootstrap
    assert other.run_dir != local_kafka.run_dir
    fresh_run_dir = not other.run_dir.exists()
    try:
        assert other.run("status", timeout=30).returncode == 3

        address = other.start()
        assert address == other.address
        pid = other.broker_pid()
        assert pid is not None and pid_alive(pid)
        assert broker_pids_for(other) == [pid]
        status = other.run("status", timeout=30)
        assert (status.returncode, status.stdout.strip()) == (0, "running")

        stop = other.run("stop", timeout=120)
        assert stop.returncode == 0, stop.stderr

        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(pid)
        assert broker_pids_for(other) == []
        assert not other.pid_file.exists()
        status = other.run("status", timeout=30)
        assert (status.returncode, status.stdout.strip()) == (3, "stopped")
        assert port_free(other.port) and port_free(other.port + 1)

        # Stopping a stopped broker is harmless.
        again = other.run("stop", timeout=30)
        assert (again.returncode, again.stdout.strip()) == (0, "stopped")

        # The session broker on the other port is untouched.
        if not os.environ.get("TACTFUL_BOOTSTRAP", "").strip():
            assert local_kafka.run("status", timeout=30).returncode == 0
    finally:
        stopped = other.run("stop", timeout=120).returncode == 0
        if stopped and fresh_run_dir:
            shutil.rmtree(other.run_dir, ignore_errors=True)  # throwaway broker's data
