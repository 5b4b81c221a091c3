"""The worker's web routes: ``/metrics``, the probes ``/healthz`` and ``/readyz``, and the
admin API (SPEC §7) ``GET /customers/{id}/decisions``, the customer's timeline for
support staff.

Any worker of the group answers: the one that owns the customer's partition reads the
timeline from its table; another forwards the request once to the owner, whose URL it
knows from the group's assignment (each worker advertises ``TACTFUL_ADVERTISED_URL``,
Faust's ``canonical_url``). A forwarded request carries ``tactful-routed``: a worker
that gets one and does not own the key (the group is moving partitions) answers 503
rather than forwarding again, so two workers with different views of the assignment
never pass a request back and forth.

The timeline is guarded by ``Authorization: Bearer <TACTFUL_ADMIN_TOKEN>`` (compared in
constant time); without the variable the route does not exist.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import faust
from faust.types import TP
from faust.web import Request, Response, View

from tactful.core.limits import LIMITS
from tactful.service.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger("tactful.admin")

ROUTED_HEADER = "tactful-routed"
JSON = "application/json"
FORWARD_TIMEOUT = 10.0  # seconds: the owner reads one key from its table


class Admin:
    """The routes of one worker. ``owner`` tells which worker URL owns a partition of
    the customers table (None: nobody yet), ``answer`` builds the timeline locally."""

    def __init__(self, app: Any, token: str, partition_of: Callable[[str], int],
                 changelog_topic: Callable[[], str], answer: Callable[[str, int], bytes]) -> None:
        self.app = app
        self.token = token.encode()
        self.partition_of = partition_of
        self.changelog_topic = changelog_topic
        self.answer = answer

    def authorized(self, request: Request) -> bool:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token)

    async def decisions(self, view: View, request: Request, customer_id: str) -> Response:
        if not self.authorized(request):
            return view.json({"error": "a valid admin bearer token is needed"}, status=401,
                             headers={"WWW-Authenticate": 'Bearer realm="tactful"'})
        if len(customer_id) > LIMITS.max_id_length or not customer_id.isprintable() \
                or not customer_id.strip():
            return view.json({"error": "not a customer id"}, status=400)
        p = self.partition_of(customer_id)
        topic = self.changelog_topic()
        if TP(topic, p) in self.app.assignor.assigned_actives():
            if self.app.rebalancing or self.app.in_recovery:
                return _unavailable(view, "the worker is recovering its state")
            return view.bytes(self.answer(customer_id, p), content_type=JSON)
        if request.headers.get(ROUTED_HEADER):
            return _unavailable(view, "the group is moving partitions")
        owner = self.owner(topic, p)
        if owner is None:
            return _unavailable(view, "no worker owns the customer's partition yet")
        return await self.forward(view, request, owner)

    def owner(self, topic: str, partition: int) -> str | None:
        for url, topics in self.app.assignor.changelog_distribution.items():
            if partition in topics.get(topic, ()):
                return str(url)
        return None

    async def forward(self, view: View, request: Request, owner: str) -> Response:
        url = owner.rstrip("/") + request.url.raw_path
        headers = {"Authorization": request.headers.get("Authorization", ""),
                   ROUTED_HEADER: "1", "Accept": JSON}
        try:
            async with self.app.http_client.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT),
            ) as response:
                body = await response.read()
                return view.bytes(body, content_type=response.content_type or JSON,
                                  status=response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("the owning worker did not answer an admin request",
                        extra={"error": type(exc).__name__})
            return _unavailable(view, "the owning worker did not answer")


def _unavailable(view: View, why: str) -> Response:
    return view.json({"error": why}, status=503, headers={"Retry-After": "1"})


def routes(app: faust.App, metrics: Metrics, token: str | None, partition_of: Callable[[str], int],
           changelog_topic: Callable[[], str], answer: Callable[[str, int], bytes]) -> None:
    """The worker's web routes: metrics, probes, and the timeline when ``token`` is set."""

    @app.page("/metrics")
    async def metrics_page(view: View, request: Request) -> Response:
        return view.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    @app.page("/healthz")
    async def healthz(view: View, request: Request) -> Response:
        return view.text("ok\n")

    @app.page("/readyz")
    async def readyz(view: View, request: Request) -> Response:
        if ready(app):
            return view.text("ready\n")
        return view.text("not ready: joining the group or recovering state\n", status=503)

    if token:
        api = Admin(app, token, partition_of, changelog_topic, answer)

        @app.page("/customers/{customer_id}/decisions")
        async def decisions(view: View, request: Request, customer_id: str) -> Response:
            return await api.decisions(view, request, customer_id)


def ready(app: Any) -> bool:
    """Whether the worker serves its partitions: the group is not rebalancing and the
    tables' first recovery is done."""
    recovery = app.tables.recovery
    return bool(recovery.completed.is_set() and not app.rebalancing and not app.in_recovery)
