"""Create the topics tactful needs before the Faust worker subscribes to them.

Faust can declare topics itself, but its consumer may subscribe before the new
topic's metadata reaches it and then ignore the topic until the next metadata
refresh; creating them first avoids that window.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, SaslAuthenticationFailed, TopicAlreadyExistsError

from tactful.core.errors import KafkaRefused, TopicMismatch, TransientError

log = logging.getLogger("tactful.topics")


@contextmanager
def _quiet_client() -> Iterator[None]:
    """aiokafka logs each failed connection attempt in raw lines (and a refused login as
    a connection error): while tactful connects, it logs one line per retry itself, then
    the outcome."""
    client = logging.getLogger("aiokafka")
    level = client.level
    client.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        client.setLevel(level)


def check_partitions(specs: list[TopicSpec], described: list[dict[str, Any]]) -> None:
    """Refuse an existing topic whose partition count is not the deployment's: the
    tables and their inputs are co-partitioned (a key's records and its state are in the
    partition of the same number), and a topic with another count would silently send a
    key's records to a partition whose state is another key's."""
    wanted = {s.name: s.partitions for s in specs if s.copartitioned}
    for topic in described:
        name = topic.get("topic", topic.get("name"))
        partitions = len(topic.get("partitions") or [])
        if name in wanted and partitions and partitions != wanted[name]:
            raise TopicMismatch(
                f"topic {name} has {partitions} partitions, TACTFUL_PARTITIONS is "
                f"{wanted[name]}: every tactful topic needs the same count (add partitions "
                f"to the topic, or set TACTFUL_PARTITIONS to match)")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int = 1
    configs: dict[str, str] = field(default_factory=dict)
    # Inputs, internal topics and changelogs are co-partitioned with the tables: an
    # existing one must have ``partitions``. Outputs may have any count.
    copartitioned: bool = True


async def ensure_topics(
    bootstrap: str, specs: list[TopicSpec], client_options: dict[str, Any] | None = None,
    timeout: float = 60.0,
) -> list[str]:
    """Create the missing topics; return the names created. Existing topics are left
    alone, but one whose partition count differs from its spec's is refused
    (``TopicMismatch``)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(client_options or {}))
    deadline = asyncio.get_running_loop().time() + timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            with _quiet_client():
                await admin.start()
            break
        except KafkaError as exc:
            if client_options:
                await check_login(bootstrap, client_options)
            if asyncio.get_running_loop().time() > deadline:
                raise TransientError(
                    f"Kafka at {bootstrap} did not answer within {timeout:g} s "
                    f"({attempt} attempts; TACTFUL_BOOTSTRAP, TACTFUL_CONNECT_TIMEOUT): "
                    f"{type(exc).__name__}"
                ) from None
            log.warning("Kafka does not answer yet; retrying",
                        extra={"attempt": attempt, "error": type(exc).__name__})
            await asyncio.sleep(min(2.0, 0.25 * 2 ** min(attempt, 3)))
    try:
        existing = set(await admin.list_topics())
        present = [s.name for s in specs if s.copartitioned and s.name in existing]
        if present:
            check_partitions(specs, await admin.describe_topics(present))
        missing = [s for s in specs if s.name not in existing]
        if missing:
            new = [NewTopic(s.name, s.partitions, s.replication, topic_configs=s.configs)
                   for s in missing]
            response = await admin.create_topics(new)
            for name, code, message in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise TransientError(f"could not create topic {name}: {code} {message}")
        # Wait until the broker lists them all, so a consumer sees them at once.
        while True:
            listed = set(await admin.list_topics())
            if all(s.name in listed for s in specs):
                break
            if asyncio.get_running_loop().time() > deadline:
                raise TransientError("topics were created but are not listed yet")
            await asyncio.sleep(0.2)
        return [s.name for s in missing]
    finally:
        await admin.close()


async def check_login(bootstrap: str, client_options: dict[str, Any]) -> None:
    """After a failed start under TLS or SASL: raise ``KafkaRefused`` when a broker
    answers but refuses the login or its certificate does not verify. aiokafka folds
    both into a connection error that would be retried until the connect timeout."""
    host, _, port = bootstrap.split(",", maxsplit=1)[0].strip().split("://")[-1].rpartition(":")
    options = {k: v for k, v in client_options.items()
               if k in ("security_protocol", "ssl_context", "sasl_mechanism",
                        "sasl_plain_username", "sasl_plain_password")}
    try:
        conn = await create_conn(host.strip("[]"), int(port), **options)
    except SaslAuthenticationFailed:
        raise KafkaRefused(
            f"Kafka at {bootstrap} refused the login of TACTFUL_SASL_USERNAME "
            f"({options.get('sasl_mechanism')}): wrong user or TACTFUL_SASL_PASSWORD"
        ) from None
    except ssl.SSLCertVerificationError:
        raise KafkaRefused(
            f"Kafka at {bootstrap}: its TLS certificate does not verify against "
            "TACTFUL_SSL_CAFILE (or the system CAs)"
        ) from None
    except (TimeoutError, OSError, KafkaError):
        return  # not reachable yet: the caller retries
    conn.close()
