"""Run real `tactful worker` processes against the test broker and read what they write.

Each test gets its own topic prefix and app id, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

# Web ports of the workers a test process starts; two test processes side by side (a
# drill beside the suite) need different ranges.
_PORT_BASE = int(os.environ.get("TACTFUL_TEST_WEB_PORTS", "17000"))
_ports = iter(range(_PORT_BASE, _PORT_BASE + 1000))


@dataclass
class Deployment:
    bootstrap: str
    tmp: Path
    partitions: int = 4
    clock: str = "stream"
    extra_env: dict[str, str] = field(default_factory=dict)
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}.")
    app_id: str = field(default_factory=lambda: f"tactful-test-{uuid.uuid4().hex[:8]}")
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    web_ports: list[int] = field(default_factory=list)  # each worker's, in start order
    public_ports: list[int] = field(default_factory=list)  # each worker's shopper pages
    stopped: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # aiokafka options of the test's own clients (TLS, SASL), as the workers get them
    # from the TACTFUL_* settings of ``extra_env``.
    kafka_options: dict[str, Any] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "TACTFUL_BOOTSTRAP": self.bootstrap,
            "TACTFUL_TOPIC_PREFIX": self.prefix,
            "TACTFUL_APP_ID": self.app_id,
            "TACTFUL_PARTITIONS": str(self.partitions),
            "TACTFUL_TICK_SECONDS": "0.3",
            "TACTFUL_SESSION_TIMEOUT": "8",
            "TACTFUL_LOG_LEVEL": "warning",
        })
        env.update(self.extra_env)
        return env

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def start_worker(self, slot: int | None = None,
                     command: list[str] | None = None) -> subprocess.Popen[bytes]:
        """A new worker process; ``slot`` reuses an earlier worker's data directory (a
        restart on the same machine), by default each worker has its own. ``command``
        replaces ``tactful worker`` (a test's own entry point)."""
        n = len(self.workers) if slot is None else slot
        env = self.env()
        port = next(_ports)
        env["TACTFUL_WEB_PORT"] = str(port)
        public = next(_ports)  # used only by a worker that signs links
        env.setdefault("TACTFUL_PUBLIC_PORT", str(public))
        if "{port}" in env.get("TACTFUL_PUBLIC_URL", ""):  # the pages of this very worker
            env["TACTFUL_PUBLIC_URL"] = env["TACTFUL_PUBLIC_URL"].replace("{port}", str(public))
        env["TACTFUL_DATA_DIR"] = str(self.tmp / f"data-{n}")
        env["TACTFUL_CLOCK"] = self.clock
        log = open(self.tmp / f"worker-{n}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            command or [sys.executable, "-m", "tactful.cli", "worker", "--clock", self.clock],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp,
        )
        self.workers.append(proc)
        self.web_ports.append(port)
        self.public_ports.append(public)
        return proc

    def metrics(self) -> str:
        """Every running worker's ``/metrics`` exposition, one after the other."""
        import urllib.request

        texts = []
        for proc, port in zip(self.workers, self.web_ports, strict=True):
            if proc in self.stopped:
                continue
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                texts.append(r.read().decode())
        return "\n".join(texts)

    def get(self, slot: int, path: str, headers: dict[str, str] | None = None,
            method: str = "GET") -> tuple[int, bytes]:
        """One request to the web server of the worker started ``slot``-th: status, body."""
        import urllib.error
        import urllib.request

        url = f"http://127.0.0.1:{self.web_ports[slot]}{path}"
        request = urllib.request.Request(url, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, members: int, timeout: float = 120.0) -> None:
        """Until the worker group is stable with ``members`` workers (assignment settled)."""
        asyncio.run(self._wait_ready(members, timeout))

    async def _wait_ready(self, members: int, timeout: float) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.kafka_options)
        await admin.start()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                for proc in self.workers:
                    if proc not in self.stopped:
                        assert proc.poll() is None, f"a worker exited: {self.logs()[-2000:]}"
                try:
                    described = await admin.describe_consumer_groups([self.app_id])
                except GroupCoordinatorNotAvailableError:  # a broker just started
                    await asyncio.sleep(0.5)
                    continue
                group = described[0].groups[0]
                if group[2] == "Stable" and len(group[5]) == members:
                    await asyncio.sleep(2.0)  # let the agents start on their partitions
                    return
                await asyncio.sleep(0.5)
        finally:
            await admin.close()
        raise AssertionError(f"workers not ready: {self.logs()[-2000:]}")

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        self.stopped.append(proc)
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for proc in self.workers:
            self.stop(proc)

    def cli(self, *args: str, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(  # noqa: PLW1510 - checked below, with stderr
            [sys.executable, "-m", "tactful.cli", *args], env={**self.env(), **(env or {})},
            cwd=self.tmp,
            capture_output=True, timeout=300,
        )
        if check and result.returncode != 0:
            raise AssertionError(result.stderr.decode())
        return result

    def read(self, name: str, quiet_seconds: float = 6.0, timeout: float = 240.0,
             at_least: int = 0) -> list[tuple[bytes | None, bytes]]:
        """Everything committed on the topic, once it has been quiet for ``quiet_seconds``
        and holds ``at_least`` distinct values (read_committed: records of aborted
        transactions are not there)."""
        return asyncio.run(self._read(self.topic(name), quiet_seconds, timeout, at_least))

    def read_topic(
        self, topic: str, quiet_seconds: float = 3.0
    ) -> list[tuple[bytes | None, bytes]]:
        """Like ``read`` for a topic named in full (a changelog, say); tombstones as None."""
        return asyncio.run(self._read(topic, quiet_seconds, 60.0, 0))

    def first_arrival(self, name: str, timeout: float = 60.0) -> tuple[bytes, float]:
        """The first record of the topic and the wall-clock time it could be read."""
        return asyncio.run(self._first(self.topic(name), timeout))

    async def _first(self, topic: str, timeout: float) -> tuple[bytes, float]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=self.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    **self.kafka_options)
        await consumer.start()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=100)
                for batch in batches.values():
                    for record in batch:
                        return record.value, time.time()
        finally:
            await consumer.stop()
        raise AssertionError(f"nothing on {topic} within {timeout}s: {self.logs()[-2000:]}")

    async def _read(self, topic: str, quiet: float, timeout: float,
                    at_least: int) -> list[tuple[bytes | None, bytes]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest",
            enable_auto_commit=False, isolation_level="read_committed", **self.kafka_options,
        )
        await consumer.start()
        records: list[tuple[bytes | None, bytes]] = []
        # Repeats (at least once) do not count: a pause while a rebalance recovers
        # state must not end the read before every distinct record is in.
        distinct: set[bytes] = set()
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        try:
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                got = [r for batch in batches.values() for r in batch]
                if got:
                    records.extend((r.key, r.value) for r in got)
                    distinct.update(r.value for r in got)
                    last = time.monotonic()
                elif time.monotonic() - last > quiet and len(distinct) >= at_least:
                    break
        finally:
            await consumer.stop()
        return records

    def outputs(self, **kwargs: float) -> tuple[set[bytes], list[dict[str, object]]]:
        intents = {value for _, value in self.read("intents", **kwargs)}
        decisions = [orjson.loads(v) for _, v in self.read("decisions", quiet_seconds=1.0)]
        return intents, decisions

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.tmp.glob("worker-*.log"))


@contextmanager
def deployment(bootstrap: str, tmp: Path, **kwargs: object) -> Iterator[Deployment]:
    dep = Deployment(bootstrap, tmp, **kwargs)  # type: ignore[arg-type]
    try:
        yield dep
    finally:
        dep.stop_all()


def replay(dep: Deployment, events: Path, until: str, *flags: str,
           env: dict[str, str] | None = None) -> set[bytes]:
    out = dep.tmp / "replay-intents.jsonl"
    dep.cli("replay", str(events), "--until", until, "--out", str(out),
            "--decisions", str(dep.tmp / "replay-decisions.jsonl"), *flags, env=env)
    return {line for line in out.read_bytes().splitlines() if line}


def merge_stories(stories: list[Path], target: Path) -> Path:
    """All scenario stories as one file in event-time order (ties: story, then line)."""
    from datetime import datetime

    rows = []
    for s_index, story in enumerate(stories):
        for l_index, line in enumerate((story / "events.jsonl").read_bytes().splitlines()):
            if line.strip():
                ts = orjson.loads(line)["ts"]
                t = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
                rows.append((t, s_index, l_index, line))
    rows.sort()
    target.write_bytes(b"".join(r[3] + b"\n" for r in rows))
    return target
