"""The worker (stream clock) writes exactly the intents `tactful replay` writes, same input.

`tactful produce --until` ends every input partition with a clock marker; the worker then
has passed the same moment replay's clock runs out at. The workers' group is stable before
the input is produced; rebalances and crashes mid-stream are drilled in
test_worker_restart.py.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from datetime import datetime
from pathlib import Path

import msgspec
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import Deployment, deployment, merge_stories, replay

ROOT = Path(__file__).resolve().parents[2]
STORIES = sorted(p for p in (ROOT / "tests" / "scenarios").iterdir()
                 if (p / "events.jsonl").exists())
UNTIL = "2026-11-30T00:00:00Z"


@pytest.mark.parametrize("workers", [1, 2])
def test_scenario_stories(kafka_bootstrap: str, tmp_path: Path, workers: int) -> None:
    """Then, with two workers, the admin API: every customer's timeline, asked of either
    worker, is the one replay gives (SPEC §7: any worker answers, whichever owns the key)."""
    events = merge_stories(STORIES, tmp_path / "stories.jsonl")
    # With one worker, links on (SPEC §7: in the worker and in replay alike): the worker
    # reads the variables, replay the flags.
    env = {"TACTFUL_ADMIN_TOKEN": ADMIN_TOKEN, **LINKS} if workers == 2 else LINKS
    with deployment(kafka_bootstrap, tmp_path, extra_env=env) as dep:
        for _ in range(workers):
            dep.start_worker()
        dep.wait_ready(workers)
        dep.cli("produce", str(events), "--until", UNTIL)
        expected = replay(dep, events, UNTIL, "--public-url", LINKS["TACTFUL_PUBLIC_URL"],
                          "--link-secret", LINKS["TACTFUL_LINK_SECRET"],
                          env={"TACTFUL_PUBLIC_URL": "", "TACTFUL_LINK_SECRET": ""})
        signed = [orjson.loads(i) for i in expected]
        assert all(i["links"]["unsubscribe"].startswith("https://shop.example/t/u/")
                   for i in signed if "cancelled" not in i)
        assert expected, "the stories must produce intents"
        intents, _ = dep.outputs(at_least=len(expected))
        assert intents == expected, dep.logs()[-3000:]
        if workers == 1:
            # Without TACTFUL_ADMIN_TOKEN the admin API does not exist; the probes do.
            assert dep.get(0, "/customers/cust-ben/decisions")[0] == 404
            assert dep.get(0, "/healthz") == (200, b"ok\n")
            assert dep.get(0, "/readyz") == (200, b"ready\n")
        else:
            _check_explain(dep, events)


ADMIN_TOKEN = "test-admin-token-0123456789"
LINKS = {"TACTFUL_PUBLIC_URL": "https://shop.example/t",
         "TACTFUL_LINK_SECRET": "worker-equals-replay-link-secret"}


def _check_explain(dep: Deployment, events: Path) -> None:
    from tactful.core.engine import Engine
    from tactful.core.explain import timeline
    from tactful.core.pipeline import Pipeline
    from tactful.core.policy import load_policy
    from tactful.service.replay import replay_lines
    from tactful.service.worker import partition_of

    engine = Engine(load_policy())
    pipeline = Pipeline(engine)
    with events.open("rb") as lines:
        replay_lines(lines, engine, io.BytesIO(), io.BytesIO(), until=parse_ts(UNTIL),
                     pipeline=pipeline)
    customers = sorted({orjson.loads(line).get("customer_id") for line in
                        events.read_bytes().splitlines()} - {None})
    assert {partition_of(c.encode(), dep.partitions) for c in customers} == set(
        range(dep.partitions)), "the stories' customers must span every partition"
    # Each worker owns some of the customer partitions: some answers were forwarded.
    for slot in (0, 1):
        owned = re.findall(r'tactful_consumer_lag\{partition="(\d)",topic="customer-events"',
                           dep.get(slot, "/metrics")[1].decode())
        assert owned, f"worker {slot} owns no customer partition"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for customer in customers:
        want = orjson.loads(msgspec.json.encode(
            timeline(engine, customer, pipeline.customers.get(customer), parse_ts(UNTIL))))
        for slot in (0, 1):
            status, body = dep.get(slot, f"/customers/{customer}/decisions", auth)
            assert status == 200, (slot, customer, body)
            assert orjson.loads(body) == want, (slot, customer)
    assert any(orjson.loads(dep.get(0, f"/customers/{c}/decisions", auth)[1])["decisions"]
               for c in customers)
    _check_preference_pages(dep, engine, pipeline, customers)
    # Refused without the token, with a wrong one, for another method, for a bad id.
    path = f"/customers/{customers[0]}/decisions"
    assert dep.get(0, path)[0] == 401
    assert dep.get(1, path, {"Authorization": "Bearer not-the-token-000000"})[0] == 401
    assert dep.get(0, path, auth, method="POST")[0] == 405
    assert dep.get(0, f"/customers/{'x' * 300}/decisions", auth)[0] == 400
    # The command line, against a worker and from the file, prints the same timeline.
    one = customers[0]
    url = f"http://127.0.0.1:{dep.web_ports[1]}"
    from_worker = dep.cli("explain", one, "--url", url).stdout
    from_file = dep.cli("explain", one, "--events", str(events), "--until", UNTIL).stdout
    assert from_worker == from_file
    assert from_worker.startswith(f"customer {one}, as of {UNTIL}\n".encode())
    refused = dep.cli("explain", one, "--url", url, check=False,
                      env={"TACTFUL_ADMIN_TOKEN": ""})
    assert refused.returncode == 2 and b"TACTFUL_ADMIN_TOKEN" in refused.stderr


def _check_preference_pages(dep: Deployment, engine: object, pipeline: object,
                            customers: list[str]) -> None:
    """Each worker's preference page shows every customer's choices as replay's state
    holds them, whichever worker owns the customer (the other asks the owner)."""
    import time
    import urllib.request

    from tactful.core.links import LinkClaims, LinkSigner
    from tactful.core.preferences import choices_of

    signer = LinkSigner(LINKS["TACTFUL_PUBLIC_URL"], LINKS["TACTFUL_LINK_SECRET"].encode())
    shown = 0
    for customer in customers:
        st = pipeline.customers.get(customer)  # type: ignore[attr-defined]
        want = choices_of(st, time.time())
        token = signer.token(LinkClaims(customer, "email", "int-x", "preferences",
                                        int(time.time()) + 3600))
        for port in dep.public_ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/t/p/{token}",
                                        timeout=30) as r:
                body = r.read().decode()
            if st is None:
                assert "<form" not in body, customer
                continue
            shown += 1
            for channel, state in want.channels:
                box = re.search(rf'id="ch-{channel}" name="channel" value="{channel}"( checked)?',
                                body)
                assert (box is None) == (state == "never"), (customer, channel, port)
                assert box is None or bool(box.group(1)) == (state == "on"), (customer, channel)
            for topic in ("cart_reminders", "stock_alerts", "deals", "recommendations"):
                box = re.search(rf'value="{topic}"( checked)?', body)
                assert box is not None and bool(box.group(1)) == (topic not in want.topics_off)
    assert shown >= 2 * 4, "the stories' customers are shown on both workers"


def parse_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("workers", [1, 2])
def test_generated_workload(kafka_bootstrap: str, tmp_path: Path, workers: int) -> None:
    events = tmp_path / "workload.jsonl"
    with deployment(kafka_bootstrap, tmp_path) as dep:
        dep.cli("generate", "--customers", "500", "--events", "20000", "--seed", "5",
                "--out", str(events))
        for _ in range(workers):
            dep.start_worker()
        dep.wait_ready(workers)
        dep.cli("produce", str(events), "--until", "2026-06-30T00:00:00Z")
        expected = replay(dep, events, "2026-06-30T00:00:00Z")
        assert len(expected) > 300
        intents, decisions = dep.outputs(at_least=len(expected))
        assert intents == expected, dep.logs()[-3000:]
        assert decisions, "decisions are written too"
        _check_metrics(dep.metrics(), events, intents, dep.tmp / "replay-decisions.jsonl")


def _check_metrics(text: str, events: Path, intents: set[bytes], decisions: Path) -> None:
    """The workers' counters add up to what they wrote and read, and no label carries
    an id of the workload."""
    totals: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    names = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.add(sample.name)
            labels = tuple(sorted(sample.labels.items()))
            totals[(sample.name, labels)] = totals.get((sample.name, labels), 0.0) + sample.value
    for name in ("tactful_events_consumed_total", "tactful_decisions_total",
                 "tactful_intents_total", "tactful_processing_latency_seconds_bucket",
                 "tactful_timer_lateness_seconds_count", "tactful_consumer_lag",
                 "tactful_state_keys", "tactful_build_info"):
        assert name in names, name

    def by(name: str, *keys: str) -> Counter[tuple[str, ...]]:
        got: Counter[tuple[str, ...]] = Counter()
        for (sample, labels), value in totals.items():
            if sample == name:
                got[tuple(dict(labels)[k] for k in keys)] += int(value)
        return +got

    lines = [orjson.loads(line) for line in events.read_bytes().splitlines() if line]
    consumed = [e for line in lines for e in (line if isinstance(line, list) else [line])]
    assert by("tactful_events_consumed_total", "type") == Counter(
        (e["type"],) for e in consumed)
    written = [orjson.loads(raw) for raw in intents]
    assert by("tactful_intents_total", "kind", "channel") == Counter(
        (i["kind"], i["channel"]) for i in written if "cancelled" not in i)
    assert by("tactful_cancellations_total", "reason") == Counter(
        (i["reason"],) for i in written if "cancelled" in i)
    assert by("tactful_decisions_total", "kind", "channel", "outcome", "reason") == Counter(
        (d["kind"], d["channel"] or "none", d["outcome"], d["reason"] or "none")
        for d in (orjson.loads(raw) for raw in decisions.read_bytes().splitlines()))
    ids = re.findall(r"\b(?:cust|sess|sku|prod)-\d+|\b(?:int|dec)-[0-9a-f]{8}|[^\s\"]+@[^\s\"]+",
                     text)
    assert not ids, ids[:5]
