"""The composition root: the one place that reads the environment and wires tactful's
parts together (settings, policy, erasure keys, link signing, the engine, the Kafka
connection every client shares, the Faust app, its web routes and its metrics).

``cli.py`` and ``service.demo`` start here; nothing below ``service/`` reads the
environment, and ``adapters/`` is handed what it needs (``KafkaConnection``,
``TopicLayout``) rather than the settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tactful import __version__
from tactful.adapters.kafka import KafkaConnection, TopicLayout
from tactful.core.engine import Engine
from tactful.core.events import TYPE_TOPIC
from tactful.core.links import LinkSigner, link_signer
from tactful.core.policy import Policy, load_policy
from tactful.service import admin
from tactful.service import worker as worker_module
from tactful.service.faust.app import create_app
from tactful.service.metrics import Metrics
from tactful.service.settings import Settings, erasure_keys, from_env


@dataclass(frozen=True, slots=True)
class Parts:
    """What every command of a deployment shares, read once."""

    settings: Settings
    policy: Policy

    @property
    def kafka(self) -> KafkaConnection:
        return self.settings.kafka

    @property
    def topics(self) -> TopicLayout:
        return self.settings.topics

    def signer(self) -> LinkSigner | None:
        """The deployment's link signer; None unless a public URL and a secret are set."""
        return link_signer(self.settings.public_url, self.settings.link_secret,
                           self.settings.link_secret_previous)

    def engine(self) -> Engine:
        """The engine with the deployment's erasure keys and link signing."""
        return Engine(self.policy, self.signer(), erasure_keys(self.settings))


def configure(env: Mapping[str, str] | None = None, *, worker: bool = False,
              **overrides: object) -> Parts:
    """Settings from ``env`` (default: the process environment) with ``overrides`` (CLI
    flags) winning, and the policy file they name. Raises ``SettingsError`` or
    ``PolicyError``, each naming what is wrong, before anything connects; for a
    ``worker``, also when its erasure keys are missing or too short."""
    settings = from_env(env, **overrides)
    if worker:
        erasure_keys(settings)
    return Parts(settings, load_policy(settings.policy_file))


def build_worker(parts: Parts) -> worker_module.Worker:
    """The Faust app with tactful's agents, tables, web routes and metrics."""
    settings = parts.settings
    app = create_app(settings)
    metrics = Metrics(__version__, parts.policy.version)
    metrics.start_at_zero(
        [(kind, channel) for kind, trigger in parts.policy.triggers.items()
         for channel in trigger.channels],
        [(topic, type_) for type_, topic in TYPE_TOPIC.items()],
    )
    worker = worker_module.Worker(settings, parts.engine(), app, metrics)
    admin.routes(
        app, metrics, settings.admin_token,
        lambda key: worker_module.partition_of(key.encode(), settings.partitions),
        worker.customers.changelog_topic.get_topic_name, worker.explain,
    )
    signer = parts.signer()
    if signer is not None:
        shopper_pages(parts, worker, signer)
    return worker


def shopper_pages(parts: Parts, worker: worker_module.Worker, signer: LinkSigner) -> None:
    """The owner's choices route on the worker port and, unless ``TACTFUL_PUBLIC_PORT`` is
    0, the shopper's pages on their own listener (README, "Unsubscribe and preferences")."""
    from tactful.service.public import Listener, PublicPages
    from tactful.service.shopper import ChoicesRouter, ConsentProducer

    settings = parts.settings
    app = worker.app
    router = ChoicesRouter(
        app, worker.customers,
        lambda key: worker_module.partition_of(key.encode(), settings.partitions), signer)
    router.route()
    if not settings.public_port:
        return
    consent = settings.topic("consent")
    producer = ConsentProducer(parts.kafka, consent, f"{settings.app_id}-pages")
    listener = Listener(PublicPages(signer, router, producer, consent),
                        settings.public_host, settings.public_port)

    @app.task  # type: ignore[untyped-decorator]
    async def public_listener() -> None:
        await producer.start()
        await listener.start()
        try:
            await asyncio.Event().wait()
        finally:
            await listener.stop()
            await producer.stop()


def run_worker(parts: Parts, on_ready: Callable[[], None] | None = None) -> int:
    """Create the topics, then run the Faust worker until it is stopped."""
    from faust.worker import Worker as FaustWorker

    from tactful.adapters.topics import ensure_topics
    from tactful.service.local_state import close_local_state, open_local_state
    from tactful.service.logs import logging_config

    settings = parts.settings
    worker = build_worker(parts)
    kafka = parts.kafka
    asyncio.run(ensure_topics(kafka.bootstrap, worker.topic_specs(), kafka.client_options(),
                              kafka.connect_timeout))
    level = {"debug": "debug", "info": "info", "warning": "warn", "error": "error"}
    faust_worker = FaustWorker(
        worker.app,
        loglevel=level[settings.log_level],
        quiet=True,
        redirect_stdouts=False,
        logging_config=logging_config(settings.log_level),
    )
    rocksdb = settings.store.startswith("rocksdb://")
    tabledir = Path(worker.app.conf.tabledir)
    if rocksdb:
        open_local_state(tabledir)
    if on_ready is not None:
        on_ready()
    try:
        faust_worker.execute_from_commandline()
    except SystemExit as stop:
        if rocksdb and stop.code in (0, None):
            close_local_state(tabledir)
        raise
    return 0
