"""The app factory on a real broker: topics created, an agent consumes, a table survives restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

HERE = Path(__file__).parent


def _start_worker(
    bootstrap: str, env_extra: dict[str, str], tmp: Path, port: int
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(env_extra)
    env.update({
        "TACTFUL_BOOTSTRAP": bootstrap,
        "TACTFUL_WEB_PORT": str(port),
        "TACTFUL_DATA_DIR": str(tmp / "data"),
    })
    log = open(tmp / f"worker-{port}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, str(HERE / "smoke_app.py"), "worker", "-l", "warn",
         "--web-port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
    )


async def _await_reply(consumer: AIOKafkaConsumer, want_prefix: bytes, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for batch in batches.values():
            for record in batch:
                if record.value.startswith(want_prefix):
                    return record.value
    raise AssertionError(f"no reply starting with {want_prefix!r} within {timeout}s")


async def test_table_survives_worker_restart(kafka_bootstrap: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    names = {
        "SMOKE_APP_ID": f"tactful-smoke-{suffix}",
        "SMOKE_IN": f"tactful.test.smoke-in-{suffix}",
        "SMOKE_OUT": f"tactful.test.smoke-out-{suffix}",
    }
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    worker = _start_worker(kafka_bootstrap, names, tmp_path, 16801)
    try:
        # The worker declares its topics (input, output, the table's changelog) itself.
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            deadline = time.monotonic() + 60
            changelog = f"{names['SMOKE_APP_ID']}-smoke-changelog"
            while time.monotonic() < deadline:
                topics = set(await admin.list_topics())
                if {names["SMOKE_IN"], names["SMOKE_OUT"], changelog} <= topics:
                    break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError(f"worker did not create its topics: {sorted(topics)}")
        finally:
            await admin.close()
        consumer.subscribe([names["SMOKE_OUT"]])
        await consumer.start()
        await producer.send_and_wait(names["SMOKE_IN"], key=b"k1", value=b"v1")
        assert await _await_reply(consumer, b"stored:", 60) == b"stored:v1"

        # Let the worker finish starting (and commit once) before it is stopped: this test is
        # about changelog recovery, the crash drills are in test_worker_restart.
        await asyncio.sleep(3)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) is not None

        # A fresh worker (memory store: nothing on disk) must recover the table from its changelog.
        worker = _start_worker(kafka_bootstrap, names, tmp_path, 16802)
        await producer.send_and_wait(names["SMOKE_IN"], key=b"k1", value=b"?")
        try:
            reply = await _await_reply(consumer, b"held:", 90)
        except AssertionError as exc:
            logs = "\n".join(p.read_text(errors="replace")[-1500:]
                             for p in sorted(tmp_path.glob("worker-*.log")))
            raise AssertionError(f"{exc}\n{logs}") from None
        assert reply == b"held:v1"
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        await consumer.stop()
        await producer.stop()
