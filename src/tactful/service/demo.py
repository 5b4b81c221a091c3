"""``make demo``: a real worker on the local Kafka, a short story, the outcome as a table.

The story (``tactful/demo/story.jsonl``): a verified shopper abandons a cart
(email at 4 h); a wife's cart seen only through an IP match to her husband's
account (no contact, ever); two Berlin carts going idle at 3 a.m. (SMS deferred
to 08:00, one cancelled by a purchase); a shopper who says "stop" before a
deferred SMS goes out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import uuid
from importlib import resources
from pathlib import Path
from tempfile import TemporaryDirectory

import orjson
from aiokafka import AIOKafkaConsumer

from tactful.adapters.producer import produce_file
from tactful.adapters.topics import TopicSpec, ensure_topics
from tactful.service.settings import from_env

UNTIL = "2026-06-30T00:00:00Z"


def main() -> int:
    if not os.environ.get("TACTFUL_BOOTSTRAP"):
        print("tactful demo: set TACTFUL_BOOTSTRAP (make demo starts a local Kafka)",
              file=sys.stderr)
        return 2
    # A fresh broker answers the first offset fetches with NotLeaderForPartition; aiokafka
    # retries them and logs each: the demo reports its own outcome.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    run = uuid.uuid4().hex[:6]
    env = dict(os.environ)
    env.update({
        "TACTFUL_TOPIC_PREFIX": f"demo{run}.",
        "TACTFUL_APP_ID": f"tactful-demo-{run}",
        "TACTFUL_TICK_SECONDS": "0.3",
        "TACTFUL_LOG_LEVEL": "warning",
        "TACTFUL_WEB_PORT": env.get("TACTFUL_WEB_PORT", "6067"),
    })
    settings = from_env(env)
    story = resources.files("tactful") / "demo" / "story.jsonl"
    with TemporaryDirectory() as tmp, resources.as_file(story) as story_path:
        env["TACTFUL_DATA_DIR"] = str(Path(tmp) / "data")
        log_path = Path(tmp) / "worker.log"
        print("demo: starting the worker (stream clock) ...", file=sys.stderr)
        with open(log_path, "wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "tactful.cli", "worker", "--clock", "stream"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
            try:
                print(f"demo: producing {story_path.name} ...", file=sys.stderr)
                until = datetime_ts(UNTIL)
                asyncio.run(produce_file(str(story_path), settings.kafka, settings.topics,
                                         until))
                intents, decisions = asyncio.run(_collect(settings.bootstrap, env))
            finally:
                worker.terminate()
                try:
                    worker.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    worker.kill()
    print(render(intents, decisions))
    return 0 if intents else 1


def datetime_ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def _collect(bootstrap: str, env: dict[str, str]) -> tuple[list[dict[str, object]],
                                                               list[dict[str, object]]]:
    prefix = env["TACTFUL_TOPIC_PREFIX"]
    settings = from_env(env)
    # The worker creates them too; created here first, the reader does not start on
    # topics that do not exist yet.
    await ensure_topics(bootstrap, [
        TopicSpec(f"{prefix}{name}", settings.partitions, settings.replication)
        for name in ("intents", "decisions")
    ])
    consumer = AIOKafkaConsumer(
        f"{prefix}intents", f"{prefix}decisions", bootstrap_servers=bootstrap,
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    intents: list[dict[str, object]] = []
    decisions: list[dict[str, object]] = []
    deadline = time.monotonic() + 120
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                target = intents if tp.topic.endswith("intents") else decisions
                target.extend(orjson.loads(r.value) for r in records)
                last = time.monotonic()
            if decisions and time.monotonic() - last > 5:
                break
    finally:
        await consumer.stop()
    return intents, decisions


def render(intents: list[dict[str, object]], decisions: list[dict[str, object]]) -> str:
    lines = ["", "Contact intents (what senders may deliver, and when):", ""]
    created = {i["intent_id"]: str(i["created_at"]) for i in intents if not i.get("cancelled")}
    intents = sorted(
        intents, key=lambda i: (created.get(str(i["intent_id"]), ""), bool(i.get("cancelled")))
    )
    head = (f"{'customer':<14}{'kind':<16}{'channel':<8}{'created (UTC)':<22}"
            f"{'send after (UTC)':<22}")
    lines.append(head)
    lines.append("-" * len(head))
    for i in intents:
        if i.get("cancelled"):
            lines.append(f"{'':<14}{'  ^ cancelled':<16}{i['channel']!s:<8}"
                         f"{i['at']!s:<22}reason: {i['reason']}")
            continue
        lines.append(f"{i['customer_id']!s:<14}{i['kind']!s:<16}{i['channel']!s:<8}"
                     f"{i['created_at']!s:<22}{i['send_after']!s:<22}")
    lines += ["", "Decisions that did not contact anyone (suppressed, cancelled, deferred):", ""]
    head = f"{'who':<24}{'kind':<16}{'outcome':<12}{'reason':<22}{'at (UTC)':<22}"
    lines.append(head)
    lines.append("-" * len(head))
    for d in sorted(decisions, key=lambda d: str(d["at"])):
        if d["outcome"] == "emitted":
            continue
        who = d["customer_id"] or f"session {d.get('session_id')}"
        lines.append(f"{who!s:<24}{d['kind']!s:<16}{d['outcome']!s:<12}"
                     f"{d['reason'] or '-'!s:<22}{d['at']!s:<22}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
