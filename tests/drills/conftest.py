"""The drills use the integration tests' broker fixtures."""

from tests.integration.conftest import kafka_bootstrap, local_kafka

__all__ = ["kafka_bootstrap", "local_kafka"]
