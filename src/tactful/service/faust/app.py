"""The Faust app factory: one place that turns ``Settings`` into a configured ``faust.App``.

Tuning follows measurements of Faust's per-message cost (see README,
"Performance"): a producer that lingers and batches, no debug logging, and
the Cython speed-ups Faust ships.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
from faust.types import TransportT

from tactful.adapters.kafka import KafkaConnection
from tactful.service.faust.feed import BatchFeed
from tactful.service.faust.gate import ChangelogGate, CommitBarrier, GatedTable, GatedTransport
from tactful.service.faust.recovery import CommittedTableManager
from tactful.service.settings import Settings, advertised_url
from tactful.service.state_commit import StateTransactions


class TactfulApp(faust.App):
    """A Faust app whose commits keep outputs ahead of state (see ``gate``)."""

    changelog_gate: ChangelogGate | None = None
    commit_barrier: CommitBarrier | None = None
    state_transactions: StateTransactions | None = None
    # topic name -> the feed its records go to, a topic-partition's fetch at a time
    batch_feeds: dict[str, BatchFeed]

    def _new_transport(self) -> TransportT:
        return GatedTransport(self.conf.broker_consumer, self)


def _credentials(kafka: KafkaConnection) -> Any:
    context = kafka.ssl_context()
    if kafka.sasl:
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def store_url(settings: Settings) -> str:
    """Faust's store URL: ``memory://`` or ``rocksdb://`` (rocksdict backend)."""
    if settings.store.startswith("rocksdb://"):
        return "rocksdb://"
    return "memory://"


def create_app(settings: Settings, app_id: str | None = None, **extra: Any) -> TactfulApp:
    """A Faust app wired to the settings; agents and tables are added by the caller."""
    data_dir = settings.data_dir
    if settings.store.startswith("rocksdb://") and len(settings.store) > len("rocksdb://"):
        data_dir = settings.store[len("rocksdb://"):]
    options: dict[str, Any] = {
        "broker": settings.broker_url,
        "store": store_url(settings),
        "datadir": str(Path(data_dir)),
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication,
        "processing_guarantee": settings.processing_guarantee,
        "web_host": settings.web_host,
        "web_port": settings.web_port,
        "web_bind": settings.web_host,
        # Where the other workers reach this one: the admin API routes to a key's owner.
        "canonical_url": advertised_url(settings),
        # Short: each unit of a batch sends its outputs and bundles together anyway, and
        # a stock drop crosses two hops before its intent is out (latency, BENCHMARKS).
        "producer_linger": 0.005,
        "producer_max_batch_size": 1024 * 1024,
        "producer_acks": -1,
        "broker_commit_interval": 1.0,
        # A worker that dies without leaving the group holds its partitions this long.
        "broker_session_timeout": settings.session_timeout,
        "broker_heartbeat_interval": min(3.0, settings.session_timeout / 4),
        "consumer_auto_offset_reset": "earliest",
        "key_serializer": "raw",
        "value_serializer": "raw",
        "table_cleanup_interval": 3600.0,
        "topic_allow_declare": True,
        # A rebalance or a stop waits for the event each agent is working on: the
        # engine's state and the outputs it computed leave together (see ``gate``).
        "stream_wait_empty": True,
        "Table": GatedTable,
        "TableManager": CommittedTableManager,
        "web_graph_enabled": False,
        "web_stats_enabled": False,
        "web_tables_enabled": False,
    }
    credentials = _credentials(settings.kafka)
    if credentials is not None:
        options["broker_credentials"] = credentials
    options.update(extra)
    app = TactfulApp(app_id or settings.app_id, **options)
    app.batch_feeds = {}
    exactly_once = settings.processing_guarantee == "exactly_once"
    app.changelog_gate = ChangelogGate(flush_outputs=not exactly_once)
    if exactly_once:
        app.commit_barrier = CommitBarrier()
    else:
        app.state_transactions = StateTransactions(
            lambda tid: state_producer(app, tid), app.conf.id, app.conf.id)
    return app


def state_producer(app: faust.App, transactional_id: str) -> Any:
    """A transactional producer with the app's connection settings (``state_commit``)."""
    import aiokafka

    producer = app.producer
    options = {
        **producer._settings_default(),  # type: ignore[attr-defined]
        **producer._settings_auth(),  # type: ignore[attr-defined]
        "acks": "all",
        "enable_idempotence": True,
    }
    return aiokafka.AIOKafkaProducer(**options, transactional_id=transactional_id)


# RocksDB (``TACTFUL_STORE=rocksdb://``): Faust opens one database per table partition,
# each by default with up to 3 write buffers of 64 MiB and a block cache of up to 2 GiB,
# so a worker's memory grew with its partitions (6 tables x 32 partitions: tens of GiB at
# worst). Bounded here: 2 x 16 MiB of write buffers and 32 MiB of block cache each
# (BENCHMARKS.md, "Memory per live customer"). The memory store ignores them.
ROCKSDB_OPTIONS: dict[str, int] = {
    "write_buffer_size": 16 * 2**20,
    "max_write_buffer_number": 2,
    "block_cache_size": 32 * 2**20,
    "block_cache_compressed_size": 8 * 2**20,
}


def bytes_table(app: faust.App, name: str, partitions: int | None = None, **options: Any) -> Any:
    """A changelogged table of bytes -> bytes; tactful encodes its own state (msgpack).

    ``key_type=bytes`` is what makes Faust use the raw codec for the changelog;
    an untyped table would serialize keys and values as JSON.
    """
    options.setdefault("options", ROCKSDB_OPTIONS)
    return app.Table(
        name, default=None, partitions=partitions, key_type=bytes, value_type=bytes, **options
    )
