"""How every Kafka client of tactful connects: one description, built once from the
settings by the composition root (``service.bootstrap``), used by the worker's Faust
app, its transactional state producer, topic creation and ``tactful produce`` alike,
so that TLS and SASL are configured in one place."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    bootstrap: str  # host:port[,host:port...]
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    connect_timeout: float = 60.0  # seconds an unreachable broker is retried at start

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of ``SSL`` / ``SASL_SSL`` (a client certificate if given)."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context

    def client_options(self) -> dict[str, Any]:
        """aiokafka keyword options (producer, consumer, admin) for the security protocol."""
        if self.security_protocol == "PLAINTEXT":
            return {}
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        if self.sasl:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password
        return options


@dataclass(frozen=True, slots=True)
class TopicLayout:
    """Where tactful's topics are and how they are made: a name prefix, and the partition
    count and replication every co-partitioned topic is created with."""

    prefix: str = "tactful."
    partitions: int = 4
    replication: int = 1

    def name(self, short: str) -> str:
        return f"{self.prefix}{short}"
