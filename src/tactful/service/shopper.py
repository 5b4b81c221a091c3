"""The worker's side of the shopper's pages: where the preference center reads a
customer's choices, and how the pages' events reach the consent topic.

The choices live in the customers table, split over the group by partition. The worker
that owns the customer's partition reads its own table; another asks the owner once, on
the owner's worker web port (``GET /links/choices/{token}``, header ``tactful-routed``),
as the admin API routes a timeline. That route is authorised by the link token itself,
verified again by the owner, and answers nothing a holder of the link does not see on the
page. A routed request that reaches a worker not owning the key gets 503 (the group is
moving partitions), never forwarded again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from faust.types import TP
from faust.web import Request, Response, View

from tactful.adapters.kafka import KafkaConnection
from tactful.core.errors import TransientError
from tactful.core.links import LinkClaims, LinkSigner, Verified
from tactful.core.preferences import Choices, choices_of
from tactful.core.state import CustomerState, decode_state
from tactful.service.admin import ROUTED_HEADER
from tactful.service.public import Unavailable

log = logging.getLogger("tactful.public")

CHOICES_PATH = "/links/choices/{token}"
FORWARD_TIMEOUT = 10.0
SEND_TIMEOUT = 15.0  # seconds a page waits for the broker's acknowledgement


class _Wire(msgspec.Struct, frozen=True):
    known: bool
    channels: list[tuple[str, str]] = []
    topics_off: list[str] = []
    quiet: tuple[str, str] | None = None
    timezone: str | None = None
    region: str | None = None


def to_json(c: Choices | None) -> bytes:
    if c is None:
        return msgspec.json.encode(_Wire(False))
    return msgspec.json.encode(_Wire(True, [tuple(x) for x in c.channels],  # type: ignore[misc]
                                     sorted(c.topics_off), c.quiet, c.timezone, c.region))


def from_json(raw: bytes) -> Choices | None:
    w = msgspec.json.decode(raw, type=_Wire)
    if not w.known:
        return None
    return Choices(tuple((a, b) for a, b in w.channels), frozenset(w.topics_off),  # type: ignore[misc]
                   w.quiet, w.timezone, w.region)


class ChoicesRouter:
    """Reads a customer's choices from the owning worker's table."""

    def __init__(self, app: Any, table: Any, partition_of: Callable[[str], int],
                 signer: LinkSigner) -> None:
        self.app = app
        self.table = table
        self.partition_of = partition_of
        self.signer = signer

    def _owned(self, partition: int) -> bool:
        topic = self.table.changelog_topic.get_topic_name()
        return TP(topic, partition) in self.app.assignor.assigned_actives()

    def _local(self, customer_id: str) -> Choices | None:
        if self.app.rebalancing or self.app.in_recovery:
            raise Unavailable
        raw = self.table.get(customer_id.encode())
        st = decode_state(CustomerState, raw) if raw is not None else None
        return None if st is None else choices_of(st, time.time())

    async def __call__(self, claims: LinkClaims, token: str) -> Choices | None:
        p = self.partition_of(claims.customer_id)
        if self._owned(p):
            return self._local(claims.customer_id)
        owner = self._owner(p)
        if owner is None:
            raise Unavailable
        url = owner.rstrip("/") + CHOICES_PATH.format(token=token)
        try:
            async with self.app.http_client.get(
                url, headers={ROUTED_HEADER: "1"},
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT),
            ) as response:
                if response.status != 200:
                    raise Unavailable
                return from_json(await response.read())
        except (aiohttp.ClientError, TimeoutError, msgspec.ValidationError,
                msgspec.DecodeError) as exc:
            log.warning("the owning worker did not answer a preference request",
                        extra={"error": type(exc).__name__})
            raise Unavailable from None

    def _owner(self, partition: int) -> str | None:
        topic = self.table.changelog_topic.get_topic_name()
        for url, topics in self.app.assignor.changelog_distribution.items():
            if partition in topics.get(topic, ()):
                return str(url)
        return None

    def route(self) -> None:
        """``GET /links/choices/{token}`` on the worker web port, for the other workers."""

        @self.app.page(CHOICES_PATH)  # type: ignore[untyped-decorator]
        async def choices(view: View, request: Request, token: str) -> Response:
            verdict = self.signer.verify(token, "preferences", time.time())
            if not isinstance(verdict, Verified):
                return view.json({"error": "not a valid preference link"}, status=403)
            p = self.partition_of(verdict.claims.customer_id)
            if not self._owned(p):
                return view.json({"error": "not the owner"}, status=503,
                                 headers={"Retry-After": "1"})
            try:
                found = self._local(verdict.claims.customer_id)
            except Unavailable:
                return view.json({"error": "recovering"}, status=503,
                                 headers={"Retry-After": "1"})
            return view.bytes(to_json(found), content_type="application/json")


class ConsentProducer:
    """The pages' events to the consent topic, each acknowledged by every in-sync
    replica before the page answers (the worker's own producer batches and may sit in a
    transaction; this one is the pages' alone)."""

    def __init__(self, kafka: KafkaConnection, topic: str, client_id: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.kafka.bootstrap, client_id=self.client_id, acks="all",
            enable_idempotence=True, linger_ms=0, request_timeout_ms=int(SEND_TIMEOUT * 1000),
            **self.kafka.client_options())
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def __call__(self, records: list[tuple[bytes, bytes]]) -> None:
        producer = self._producer
        if producer is None:
            raise TransientError("the pages' producer is not running")
        try:
            futures = [await producer.send(self.topic, value, key=key) for key, value in records]
            for future in futures:
                await future
        except KafkaError as exc:
            log.warning("an event of the shopper's pages was not acknowledged",
                        extra={"error": type(exc).__name__})
            raise TransientError("the consent topic did not acknowledge") from None
