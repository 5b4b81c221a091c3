"""The composition root builds one worker from the environment: its engine, its Kafka
connection, its web routes and its metrics."""

from __future__ import annotations

import pytest

from tactful.core.errors import PolicyError
from tactful.service.bootstrap import build_worker, configure
from tactful.service.settings import SettingsError


def test_the_admin_route_exists_only_with_a_token() -> None:
    base = {"TACTFUL_APP_ID": "boot-a"}
    without = build_worker(configure(base, worker=True))
    with_token = build_worker(configure({**base, "TACTFUL_ADMIN_TOKEN": "t" * 16}, worker=True))
    probes = {"/metrics", "/healthz", "/readyz"}
    assert probes <= _paths(without)
    assert "/customers/{customer_id}/decisions" not in _paths(without)
    assert probes | {"/customers/{customer_id}/decisions"} <= _paths(with_token)


def _paths(worker: object) -> set[str]:
    """The paths the worker's web server will serve (Faust's view table)."""
    return set(worker.app.web.views)  # type: ignore[attr-defined]


def test_metrics_show_every_intent_the_policy_can_produce_from_the_start() -> None:
    worker = build_worker(configure({"TACTFUL_APP_ID": "boot-b"}, worker=True))
    worker.metrics.watch(lambda: (), lambda: ())  # no consumer runs here to read lag from
    text = worker.metrics.exposition().decode()
    # The default policy: abandoned_cart on email, push, sms; assist_offer by phone.
    for kind, channel in (("abandoned_cart", "email"), ("abandoned_cart", "sms"),
                          ("assist_offer", "phone")):
        assert f'tactful_intents_total{{channel="{channel}",kind="{kind}"}} 0.0' in text
    assert 'tactful_events_consumed_total{topic="consent",type="erase_requested"} 0.0' in text


def test_the_kafka_connection_is_described_once_for_every_client() -> None:
    parts = configure({"TACTFUL_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                       "TACTFUL_SASL_MECHANISM": "SCRAM-SHA-512",
                       "TACTFUL_SASL_USERNAME": "svc", "TACTFUL_SASL_PASSWORD": "pw",
                       "TACTFUL_TOPIC_PREFIX": "shop.", "TACTFUL_PARTITIONS": "12"})
    assert parts.kafka.client_options() == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc", "sasl_plain_password": "pw"}
    assert parts.topics.name("intents") == "shop.intents" and parts.topics.partitions == 12


def test_a_worker_of_a_real_cluster_is_refused_without_erasure_keys() -> None:
    remote = {"TACTFUL_BOOTSTRAP": "kafka-1.example:9092"}
    assert configure(remote).settings.bootstrap == "kafka-1.example:9092"  # produce: fine
    with pytest.raises(SettingsError, match="TACTFUL_ERASURE_KEY"):
        configure(remote, worker=True)


def test_a_bad_policy_file_is_refused_before_anything_connects(tmp_path: object) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "p.toml"
    bad.write_text('version = "x"\n')
    with pytest.raises(PolicyError):
        configure({"TACTFUL_POLICY": str(bad)})
