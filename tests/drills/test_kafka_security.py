"""Kafka security on a real broker: the local Kafka started with SASL_SSL (SCRAM-SHA-512,
TLS certificates made by ``kafka.sh`` at its first start), and the whole loop over it:
topic creation, ``tactful produce``, the worker and ``tactful send``, each connected by
the ``TACTFUL_*`` settings alone. Wrong credentials or a wrong CA refuse to start in one
line with a non-zero exit. Every log line and metric label of the run is then searched
for the run's customer and session ids, emails and phone numbers."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from tests.drills.pii import ids_of, leaks, metric_labels
from tests.drills.results import record
from tests.integration.conftest import KAFKA_SH
from tests.integration.harness import deployment
from tests.integration.test_sender_full_loop import story

USER, PASSWORD = "tactful", "drill-scram-secret-42"


@dataclass(frozen=True)
class SecureKafka:
    address: str
    cafile: Path

    def env(self, password: str = PASSWORD, cafile: Path | None = None) -> dict[str, str]:
        return {
            "TACTFUL_SECURITY_PROTOCOL": "SASL_SSL", "TACTFUL_SASL_MECHANISM": "SCRAM-SHA-512",
            "TACTFUL_SASL_USERNAME": USER, "TACTFUL_SASL_PASSWORD": password,
            "TACTFUL_SSL_CAFILE": str(cafile or self.cafile),
            "TACTFUL_CONNECT_TIMEOUT": "30",
        }

    def client_options(self) -> dict[str, object]:
        return {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": USER, "sasl_plain_password": PASSWORD,
                "ssl_context": ssl.create_default_context(cafile=str(self.cafile))}


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """A SASL_SSL broker of its own, on KAFKA_PORT + 2 (TACTFUL_TEST_SASL_PORT), in a
    fresh cache directory: certificates and users are made for this run."""
    port = os.environ.get("TACTFUL_TEST_SASL_PORT") or str(
        int(os.environ.get("KAFKA_PORT", "9092")) + 2)
    home = tmp_path_factory.mktemp("sasl-kafka")
    libs = Path(os.environ.get("TACTFUL_KAFKA_HOME") or KAFKA_SH.parent / ".kafka") / "libs"
    if libs.is_dir():
        (home / "libs").symlink_to(libs)  # the jars are fetched once
    env = {**os.environ, "KAFKA_PORT": port, "KAFKA_SECURITY": "sasl_ssl",
           "KAFKA_SASL_USERNAME": USER, "KAFKA_SASL_PASSWORD": PASSWORD,
           "TACTFUL_KAFKA_HOME": str(home)}
    env.pop("KAFKA_CONTROLLER_PORT", None)

    def kafka(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(KAFKA_SH), command], env=env, text=True,
                              capture_output=True, timeout=900, check=False)

    started = kafka("start")
    assert started.returncode == 0, started.stderr
    try:
        cafile = home / f"run-{port}-sasl_ssl" / "tls" / "ca.pem"
        assert cafile.is_file(), started.stderr
        yield SecureKafka(started.stdout.strip().splitlines()[-1], cafile)
    finally:
        kafka("stop")


def test_the_whole_loop_runs_over_sasl_ssl_and_logs_no_id(secure_kafka: SecureKafka,
                                                          tmp_path: Path) -> None:
    from tests.integration.smtp_inbox import SmtpServer

    directory = tmp_path / "directory.jsonl"
    directory.write_text('{"customer_id": "cust-ana", "email": "ana@example.org", '
                         '"phone": "+33 1 42 68 53 00"}\n'
                         '{"customer_id": "cust-bo", "email": "bo@example.org"}\n')
    with SmtpServer() as smtp, deployment(secure_kafka.address, tmp_path, partitions=2,
                                          clock="wall") as dep:
        smtp.inbox.refuse["bo@example.org"] = "550 5.1.1 no such user"
        dep.kafka_options = secure_kafka.client_options()
        dep.extra_env.update({
            **secure_kafka.env(),
            "TACTFUL_SMTP_HOST": "127.0.0.1", "TACTFUL_SMTP_PORT": str(smtp.port),
            "TACTFUL_SMTP_TLS": "none", "TACTFUL_SMTP_FROM": "Shop <news@shop.example>",
            "TACTFUL_SENDER_DIRECTORY": str(directory),
            "TACTFUL_SENDER_OUTBOX": str(tmp_path / "outbox.jsonl"),
            "TACTFUL_LOG_LEVEL": "info",  # every line the worker and sender write by default
        })
        events = tmp_path / "events.jsonl"
        events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in story(time.time())))
        dep.start_worker()
        dep.wait_ready(1)
        dep.start_worker(command=[sys.executable, "-m", "tactful.cli", "send"])
        dep.cli("produce", str(events))  # creates the input topics over SASL_SSL too
        intents = [orjson.loads(v) for _, v in dep.read("intents", at_least=2)]
        # the sender's delivered and bounced, written back over SASL_SSL
        feedback = [orjson.loads(v) for _, v in dep.read("feedback", at_least=2)]
        metrics = dep.get(0, "/metrics")[1].decode()  # the worker's (slot 1 is the sender)
        for proc in dep.workers:
            assert proc.poll() is None, dep.logs()[-3000:]
    assert sorted(i["customer_id"] for i in intents) == ["cust-ana", "cust-bo"]
    assert [m.recipients for m in smtp.inbox.mails] == [["ana@example.org"]]
    outcomes = sorted(f["type"] for f in feedback if f["type"] in ("delivered", "bounced"))
    assert outcomes == ["bounced", "delivered"], feedback

    logs = dep.logs()
    ids = ids_of([events])
    found_logs = leaks(logs, ids | {"ana@example.org", "bo@example.org"})
    found_labels = leaks(metric_labels(metrics), ids)
    record("kafka_security", {
        "protocol": "SASL_SSL", "mechanism": "SCRAM-SHA-512", "intents": len(intents),
        "mails": len(smtp.inbox.mails), "feedback": len(outcomes),
        "log_lines": logs.count("\n"), "ids_searched": len(ids),
        "ids_in_logs": len(found_logs["ids"]), "emails_in_logs": len(found_logs["emails"]),
        "phones_in_logs": len(found_logs["phones"]),
        "ids_in_metric_labels": len(found_labels["ids"]),
    })
    assert found_logs == {"ids": [], "emails": [], "phones": []}, found_logs
    assert found_labels == {"ids": [], "emails": [], "phones": []}, found_labels


BAD_LOGIN = "refused the login of TACTFUL_SASL_USERNAME (SCRAM-SHA-512)"
BAD_CA = "its TLS certificate does not verify against TACTFUL_SSL_CAFILE"


@pytest.mark.parametrize("command", ["worker", "produce", "send"])
@pytest.mark.parametrize("wrong", ["password", "cafile"])
def test_wrong_credentials_refuse_to_start_in_one_line(secure_kafka: SecureKafka,
                                                        tmp_path: Path, command: str,
                                                        wrong: str) -> None:
    directory = tmp_path / "directory.jsonl"
    directory.write_text('{"customer_id": "c", "email": "c@example.org"}\n')
    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id": "x1", "type": "stock_level", "ts": "2026-05-01T00:00:00Z",'
                      ' "sku": "k", "available": 3}\n')
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=another CA", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(other_ca)], check=True, capture_output=True)
    env = {**os.environ,
           **secure_kafka.env(password="not-the-password" if wrong == "password" else PASSWORD,
                              cafile=other_ca if wrong == "cafile" else None),
           "TACTFUL_BOOTSTRAP": secure_kafka.address, "TACTFUL_TOPIC_PREFIX": "refused.",
           "TACTFUL_APP_ID": "refused", "TACTFUL_DATA_DIR": str(tmp_path / "data"),
           "TACTFUL_SMTP_FROM": "Shop <news@shop.example>",
           "TACTFUL_SENDER_DIRECTORY": str(directory), "TACTFUL_WEB_PORT": "19399"}
    args = {"worker": ["worker"], "produce": ["produce", str(events)], "send": ["send"]}
    result = subprocess.run([sys.executable, "-m", "tactful.cli", *args[command]], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert (BAD_LOGIN if wrong == "password" else BAD_CA) in lines[0], lines
    assert PASSWORD not in result.stderr and "not-the-password" not in result.stderr
