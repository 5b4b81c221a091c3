"""The dashboard and the alert rules against a real Prometheus scraping a real worker.

promtool checks and unit-tests the rules; then a Prometheus server of the test's own
(loopback, its own port and storage, 1 s scrapes) scrapes a worker on the test broker
while a generated workload flows, and every PromQL expression of the dashboard and of
the alert rules is evaluated through its HTTP API.

The worker runs under the wall clock: the workload's events lie in the past, so its
triggers fire as soon as they are scheduled, late by months, and the timer-lateness
histogram (empty under the stream clock) has observations to show.

Prometheus comes from Debian's package (`make prometheus-tools`); without it the tests
fail, they do not skip.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import Deployment, deployment

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROM_DIR / "alerts.yml"
ALERTS_TEST = PROM_DIR / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "tactful.json"
# Grafana's range variable, replaced by a range that covers the whole test.
RATE_INTERVAL = "5m"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `make prometheus-tools` installs Debian's "
                    "prometheus package (prometheus and promtool)", pytrace=False)
    return path


def _run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    promtool = _tool("promtool")
    assert "SUCCESS: 5 rules found" in _run(promtool, "check", "rules", str(ALERTS))
    # The shipped config, with alerts.yml found beside it.
    assert "SUCCESS: 1 rule files found" in _run(promtool, "check", "config",
                                                 str(PROM_DIR / "prometheus.yml"))
    assert "SUCCESS" in _run(promtool, "test", "rules", str(ALERTS_TEST))


def _dashboard_exprs() -> list[tuple[str, str]]:
    data = json.loads(DASHBOARD.read_text())
    exprs = [(f"{p['title']} / {t['refId']}", t["expr"].replace("$__rate_interval",
                                                               RATE_INTERVAL))
             for p in data["panels"] for t in p["targets"]]
    assert not [e for _, e in exprs if "$" in e], "a Grafana variable left unreplaced"
    return exprs


def _alert_rules() -> dict[str, str]:
    data = yaml.safe_load(ALERTS.read_text())
    return {r["alert"]: r["expr"] for g in data["groups"] for r in g["rules"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    def __init__(self, port: int, log: Path) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.log = log

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:  # a bad query answers 400 with its error
            body = json.loads(exc.read())
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.get("/api/v1/query", **params)
        assert data["resultType"] == "vector", (expr, data)
        return list(data["result"])

    def value(self, expr: str, at: float | None = None) -> float:
        result = self.query(expr, at)
        assert len(result) == 1, (expr, result)
        return float(result[0]["value"][1])

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@contextmanager
def prometheus(tmp: Path, target_port: int) -> Iterator[Prometheus]:
    binary = _tool("prometheus")
    port = _free_port()
    config = tmp / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                   "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": "tactful", "metrics_path": "/metrics",
                            "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}],
    }))
    log = tmp / "prometheus.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp,
        )
    server = Prometheus(port, log)
    try:
        _until(lambda: _ready(server.base), 30, lambda: f"not ready: {server.logs()}")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _until(check: Callable[[], bool], timeout: float, why: Callable[[], str]) -> float:
    """Polls ``check`` until it holds; the time it first held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.time()
        time.sleep(0.25)
    raise AssertionError(why())


def _events(path: Path) -> int:
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
    return sum(len(line) if isinstance(line, list) else 1 for line in lines)


async def _send_invalid_json(dep: Deployment) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=dep.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(dep.topic("storefront"), b"{not json", key=b"k")
    finally:
        await producer.stop()


def test_prometheus_scrapes_the_worker_and_evaluates_every_expression(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    events = tmp_path / "workload.jsonl"
    with deployment(kafka_bootstrap, tmp_path, clock="wall") as dep:
        dep.cli("generate", "--customers", "100", "--events", "2000", "--seed", "3",
                "--out", str(events))
        lines = events.read_bytes().splitlines(keepends=True)
        first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
        first.write_bytes(b"".join(lines[:800]))
        second.write_bytes(b"".join(lines[800:]))
        n_first, n_all = _events(first), _events(events)

        dep.start_worker()
        with prometheus(tmp_path, dep.web_ports[0]) as prom:
            dep.wait_ready(1)
            consumed = "sum(tactful_events_consumed_total) or vector(0)"
            t0 = _until(lambda: bool(prom.query('up{job="tactful"} == 1')), 30,
                        lambda: f"the worker is not scraped: {prom.logs()}")

            # The counter moves while the workload flows, and adds up to what was sent.
            dep.cli("produce", str(first))
            t1 = _until(lambda: prom.value(consumed) == n_first, 60,
                        lambda: f"{prom.value(consumed)} of {n_first}: {dep.logs()[-2000:]}")
            asyncio.run(_send_invalid_json(dep))
            dep.cli("produce", str(second))
            t2 = _until(lambda: prom.value(consumed) == n_all, 60,
                        lambda: f"{prom.value(consumed)} of {n_all}: {dep.logs()[-2000:]}")
            assert prom.value(consumed, t0) == 0
            assert prom.value(consumed, t1) == n_first < prom.value(consumed, t2) == n_all
            _until(lambda: prom.value("sum(tactful_intents_total) or vector(0)") > 0
                   and prom.value("sum(tactful_timer_lateness_seconds_count)") > 0
                   and prom.value("sum(tactful_dead_letters_total) or vector(0)") == 1, 60,
                   lambda: f"no intents, late timers or dead letter: {dep.logs()[-2000:]}")

            # Every family the worker exposes is stored under the job's name.
            exposed = {s.name for f in text_string_to_metric_families(dep.metrics())
                       for s in f.samples}
            stored = {r["metric"]["__name__"] for r in prom.query(
                'group by (__name__) ({__name__=~"tactful_.+", job="tactful"})')}
            assert stored == exposed and "tactful_intents_total" in stored

            _check_dashboard(prom)
            _check_alerts(prom)


def _check_dashboard(prom: Prometheus) -> None:
    """Every dashboard query parses and returns a number; a counter's first sample
    needs a second one before rate() sees it, so the queries are retried a little."""
    pending = dict(_dashboard_exprs())

    def answered() -> bool:
        for name, expr in list(pending.items()):
            values = [float(r["value"][1]) for r in prom.query(expr)]
            if any(math.isfinite(v) for v in values):
                del pending[name]
        return not pending

    _until(answered, 20, lambda: f"no data for {pending}")


def _check_alerts(prom: Prometheus) -> None:
    """Every alert expression parses and evaluates here, and the server, which loaded
    alerts.yml, evaluates each rule with health ok. The workload's timers fire months
    late: TactfulTimersLate is pending (it fires after its `for`). The worker is up, and
    its intents, all written between two scrapes, count although increase() cannot see
    them."""
    rules = _alert_rules()
    for expr in rules.values():
        prom.query(expr)  # status success; may be empty

    def loaded() -> list[dict[str, Any]]:
        groups = prom.get("/api/v1/rules", type="alert")["groups"]
        return [r for g in groups for r in g["rules"]]

    def healthy() -> bool:
        got = {r["name"]: r for r in loaded()}
        return (set(got) == set(rules)
                and all(r["health"] == "ok" and not r.get("lastError") for r in got.values())
                and got["TactfulTimersLate"]["state"] == "pending")

    _until(healthy, 20, lambda: f"rules: {loaded()}")
    states = {r["name"]: r["state"] for r in loaded()}
    assert states["TactfulWorkerDown"] == states["TactfulNoIntents"] == "inactive", states
