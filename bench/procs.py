"""Processes of a benchmark run: start them with a log each, read their peak RSS and CPU
time from ``/proc`` while they live, stop them (SIGTERM, then SIGKILL after a deadline)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")


def tag() -> str:
    """A fresh run tag: every topic, group and app id of one run contains it."""
    return uuid.uuid4().hex[:8]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def peak_rss_mib(self) -> float:
        """VmHWM: the process's peak resident set so far."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """User + system CPU time so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check(self) -> None:
        if not self.alive():
            raise RunFailed(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")


class RunFailed(Exception):
    """A contender's process died or did not finish in time."""


def start(name: str, args: list[str], env: dict[str, str], log: Path) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        popen = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=ROOT)
    return Proc(name, popen, log)


def tactful_worker(env: dict[str, str], log: Path, name: str = "tactful worker") -> Proc:
    return start(name, [sys.executable, "-m", "tactful.cli", "worker"], env, log)


def stop(procs: list[Proc], timeout: float = 10.0) -> list[str]:
    """SIGTERM every process, wait up to ``timeout`` for all, SIGKILL what is left (a run
    is over once measured: its clean shutdown is not what the benchmark looks at). Returns
    the names of the processes that had to be killed."""
    for p in procs:
        if p.alive():
            p.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    killed = []
    for p in procs:
        try:
            p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.popen.kill()
            p.popen.wait()
            killed.append(p.name)
    return killed
