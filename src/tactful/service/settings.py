"""Settings from the environment (12-factor). Every variable is listed in README.md.

A bad value refuses to start with the variable's name and what is wrong.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TypeVar

from tactful.adapters.kafka import KafkaConnection, TopicLayout
from tactful.core.errors import TactfulError
from tactful.core.messages import LOCAL_ERASURE_SECRET, ErasureKeys

_N = TypeVar("_N", int, float)


class SettingsError(TactfulError):
    """An environment variable has a value tactful cannot use."""


_CLOCKS = ("wall", "stream")
_GUARANTEES = ("at_least_once", "exactly_once")
_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class Settings:
    bootstrap: str = "127.0.0.1:9092"
    app_id: str = "tactful"
    topic_prefix: str = "tactful."
    partitions: int = 4
    replication: int = 1
    store: str = "memory://"
    data_dir: str = "./tactful-data"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    clock: str = "wall"
    tick_seconds: float = 1.0
    session_timeout: float = 30.0
    processing_guarantee: str = "at_least_once"
    log_level: str = "info"
    policy_file: str | None = None
    public_url: str | None = None
    link_secret: str | None = None
    link_secret_previous: str | None = None  # still verifies links during a rotation
    public_host: str = "127.0.0.1"  # the listener of the shopper's pages (/u, /p)
    public_port: int = 6067  # 0: no such listener
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    erasure_key: str | None = None
    erasure_key_previous: str | None = None
    connect_timeout: float = 60.0
    admin_token: str | None = None  # bearer token of the admin API; the API is off without it
    advertised_url: str | None = None  # where the other workers reach this one's web server

    @property
    def broker_url(self) -> str:
        hosts = [h.strip() for h in self.bootstrap.split(",") if h.strip()]
        return ";".join(h if "://" in h else f"kafka://{h}" for h in hosts)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def kafka(self) -> KafkaConnection:
        """The connection settings every Kafka client shares (the fields of the same
        names)."""
        return KafkaConnection(**{name: getattr(self, name) for name in _KAFKA_FIELDS})

    @property
    def topics(self) -> TopicLayout:
        return TopicLayout(self.topic_prefix, self.partitions, self.replication)


_KAFKA_FIELDS = tuple(f.name for f in fields(KafkaConnection))


def _number(env: Mapping[str, str], name: str, default: _N, lo: _N, hi: _N,
            parse: Callable[[str], _N], what: str, unit: str = "") -> _N:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {what}, got {raw!r}") from None
    if not lo <= value <= hi:
        def show(v: float) -> str:
            return f"{v:g}" if isinstance(v, float) else str(v)
        raise SettingsError(
            f"{name} must be between {show(lo)} and {show(hi)}{unit}, got {show(value)}"
        )
    return value


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    return _number(env, name, default, lo, hi, int, "a whole number")


def _seconds(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    return _number(env, name, default, lo, hi, float, "a number of seconds", " seconds")


def _choice(env: Mapping[str, str], name: str, default: str, options: tuple[str, ...]) -> str:
    raw = env.get(name) or default
    if raw not in options:
        raise SettingsError(f"{name} must be one of {', '.join(options)}, got {raw!r}")
    return raw


def from_env(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read ``TACTFUL_*`` variables; keyword overrides (CLI flags) win."""
    env = os.environ if env is None else env
    store = env.get("TACTFUL_STORE") or "memory://"
    if not (store.startswith("memory://") or store.startswith("rocksdb://")):
        raise SettingsError(f"TACTFUL_STORE must be memory:// or rocksdb://PATH, got {store!r}")
    tick = _seconds(env, "TACTFUL_TICK_SECONDS", 1.0, 0.01, 60.0)
    session_timeout = _seconds(env, "TACTFUL_SESSION_TIMEOUT", 30.0, 6.0, 300.0)
    values: dict[str, object] = {
        "bootstrap": env.get("TACTFUL_BOOTSTRAP") or "127.0.0.1:9092",
        "app_id": env.get("TACTFUL_APP_ID") or "tactful",
        "topic_prefix": env.get("TACTFUL_TOPIC_PREFIX", "tactful."),
        "partitions": _int(env, "TACTFUL_PARTITIONS", 4, 1, 10_000),
        "replication": _int(env, "TACTFUL_REPLICATION", 1, 1, 100),
        "store": store,
        "data_dir": env.get("TACTFUL_DATA_DIR") or "./tactful-data",
        "web_host": env.get("TACTFUL_WEB_HOST") or "127.0.0.1",
        "web_port": _int(env, "TACTFUL_WEB_PORT", 6066, 1, 65535),
        "clock": _choice(env, "TACTFUL_CLOCK", "wall", _CLOCKS),
        "tick_seconds": tick,
        "session_timeout": session_timeout,
        "processing_guarantee": _choice(
            env, "TACTFUL_PROCESSING_GUARANTEE", "at_least_once", _GUARANTEES
        ),
        "log_level": _choice(env, "TACTFUL_LOG_LEVEL", "info", _LEVELS),
        "policy_file": env.get("TACTFUL_POLICY") or None,
        "public_url": env.get("TACTFUL_PUBLIC_URL") or None,
        "link_secret": env.get("TACTFUL_LINK_SECRET") or None,
        "link_secret_previous": env.get("TACTFUL_LINK_SECRET_PREVIOUS") or None,
        "public_host": env.get("TACTFUL_PUBLIC_HOST") or "127.0.0.1",
        "public_port": _int(env, "TACTFUL_PUBLIC_PORT", 6067, 0, 65535),
        "security_protocol": _choice(env, "TACTFUL_SECURITY_PROTOCOL", "PLAINTEXT", _PROTOCOLS),
        "sasl_mechanism": _choice(env, "TACTFUL_SASL_MECHANISM", "PLAIN", _MECHANISMS),
        "sasl_username": env.get("TACTFUL_SASL_USERNAME") or None,
        "sasl_password": env.get("TACTFUL_SASL_PASSWORD") or None,
        "ssl_cafile": env.get("TACTFUL_SSL_CAFILE") or None,
        "ssl_certfile": env.get("TACTFUL_SSL_CERTFILE") or None,
        "ssl_keyfile": env.get("TACTFUL_SSL_KEYFILE") or None,
        "erasure_key": env.get("TACTFUL_ERASURE_KEY") or None,
        "erasure_key_previous": env.get("TACTFUL_ERASURE_KEY_PREVIOUS") or None,
        "admin_token": env.get("TACTFUL_ADMIN_TOKEN") or None,
        "advertised_url": env.get("TACTFUL_ADVERTISED_URL") or None,
    }
    values["connect_timeout"] = _seconds(env, "TACTFUL_CONNECT_TIMEOUT", 60.0, 1.0, 600.0)
    _check_bootstrap(str(values["bootstrap"]))
    for name in ("TACTFUL_SSL_CAFILE", "TACTFUL_SSL_CERTFILE", "TACTFUL_SSL_KEYFILE"):
        path = env.get(name)
        if path and not os.access(path, os.R_OK):
            why = "does not exist" if not os.path.exists(path) else "cannot be read"
            raise SettingsError(f"{name}: {path} {why}")
    if env.get("TACTFUL_SSL_KEYFILE") and not env.get("TACTFUL_SSL_CERTFILE"):
        raise SettingsError("TACTFUL_SSL_KEYFILE needs TACTFUL_SSL_CERTFILE")
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.processing_guarantee == "exactly_once" and not settings.store.startswith("memory://"):
        raise SettingsError(
            "TACTFUL_PROCESSING_GUARANTEE=exactly_once needs TACTFUL_STORE=memory:// "
            "(a RocksDB store would keep writes of aborted transactions after a rebalance)"
        )
    if settings.public_url and not settings.link_secret:
        raise SettingsError("TACTFUL_PUBLIC_URL needs TACTFUL_LINK_SECRET to sign links")
    check_links(settings.public_url, settings.link_secret, settings.link_secret_previous)
    if settings.security_protocol.startswith("SASL") and not (
        settings.sasl_username and settings.sasl_password
    ):
        raise SettingsError("SASL needs TACTFUL_SASL_USERNAME and TACTFUL_SASL_PASSWORD")
    if settings.admin_token is not None and len(settings.admin_token) < 16:
        raise SettingsError("TACTFUL_ADMIN_TOKEN must be at least 16 characters")
    if settings.advertised_url is not None and not _URL.match(settings.advertised_url):
        raise SettingsError(
            f"TACTFUL_ADVERTISED_URL must be http://host:port, got {settings.advertised_url!r}")
    return settings


_URL = re.compile(r"^https?://[^/\s:]+(?::\d{1,5})?/?$")
_PUBLIC_URL = re.compile(r"^https?://[^/\s:?#]+(?::\d{1,5})?(?:/[^\s?#]*)?$")


def check_links(public_url: str | None, secret: str | None, previous: str | None) -> None:
    """The link settings (worker and replay alike): a public URL of http(s) with no query,
    secrets of at least 16 characters, a previous secret only beside a current one."""
    if public_url is not None and not _PUBLIC_URL.match(public_url):
        raise SettingsError(
            f"TACTFUL_PUBLIC_URL must be http(s)://host[:port][/path], got {public_url!r}")
    if secret is not None and len(secret) < 16:
        raise SettingsError("TACTFUL_LINK_SECRET must be at least 16 characters")
    if previous is not None:
        if secret is None:
            raise SettingsError("TACTFUL_LINK_SECRET_PREVIOUS needs TACTFUL_LINK_SECRET")
        if len(previous) < 16:
            raise SettingsError("TACTFUL_LINK_SECRET_PREVIOUS must be at least 16 characters")


def advertised_url(settings: Settings) -> str:
    """The URL the other workers of the group use to reach this worker's web server
    (the admin API routes a customer's request to the worker that owns it). Without
    ``TACTFUL_ADVERTISED_URL``: the web host, or this machine's name when the server
    listens on every interface."""
    if settings.advertised_url:
        return settings.advertised_url.rstrip("/")
    host = settings.web_host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 (a comparison, not a bind)
        host = socket.gethostname()
    return f"http://{host}:{settings.web_port}"


_HOST_PORT = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$")


def _check_bootstrap(bootstrap: str) -> None:
    """Every server is ``host:port`` (an IPv6 address in brackets), port 1-65535."""
    hosts = [h.strip() for h in bootstrap.split(",")]
    for host in hosts:
        plain = host.split("://", 1)[-1]
        m = _HOST_PORT.match(plain)
        if not m or not 1 <= int(m.group(1)) <= 65535:
            raise SettingsError(
                f"TACTFUL_BOOTSTRAP must be host:port[,host:port...], got {bootstrap!r}")


_LOOPBACK = ("127.", "localhost", "[::1]", "::1")


def only_loopback(bootstrap: str) -> bool:
    """Whether every bootstrap server is on this machine (a local run)."""
    hosts = [h.strip().split("://")[-1] for h in bootstrap.split(",") if h.strip()]
    return bool(hosts) and all(h.startswith(_LOOPBACK) for h in hosts)


def erasure_keys(settings: Settings) -> ErasureKeys:
    """The secret erasure marks are keyed by (SPEC §4.13). A worker of a real cluster
    refuses to start without ``TACTFUL_ERASURE_KEY``; a local run (every bootstrap server
    on loopback) falls back to a fixed, documented local key."""
    if settings.erasure_key:
        if len(settings.erasure_key) < 16:
            raise SettingsError("TACTFUL_ERASURE_KEY must be at least 16 characters")
        previous = settings.erasure_key_previous
        return ErasureKeys(settings.erasure_key.encode(), previous.encode() if previous else None)
    if settings.erasure_key_previous:
        raise SettingsError("TACTFUL_ERASURE_KEY_PREVIOUS needs TACTFUL_ERASURE_KEY")
    if only_loopback(settings.bootstrap):
        return ErasureKeys(LOCAL_ERASURE_SECRET)
    raise SettingsError(
        "TACTFUL_ERASURE_KEY must be set: erasure marks are keyed by it "
        "(a long random string, kept secret; see README, Erasure)"
    )


# --- tactful send (the reference sender) ---------------------------------------------

_SMTP_TLS = ("none", "starttls", "tls")


@dataclass(frozen=True, slots=True)
class SenderSettings:
    """The settings of ``tactful send`` beside the shared ones (Kafka, topics, app id)."""

    smtp_from: str
    directory: str
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 587
    smtp_tls: str = "starttls"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_timeout: float = 30.0
    smtp_cafile: str | None = None
    smtp_attempts: int = 8
    retry_seconds: float = 5.0
    outbox: str = "./tactful-outbox.jsonl"
    max_waiting: int = 10_000
    metrics_port: int = 0  # Prometheus metrics on TACTFUL_WEB_HOST; 0: none


def sender_from_env(env: Mapping[str, str] | None = None) -> SenderSettings:
    """Read the sender's ``TACTFUL_SMTP_*`` and ``TACTFUL_SENDER_*`` variables."""
    env = os.environ if env is None else env
    smtp_from = env.get("TACTFUL_SMTP_FROM") or ""
    if "@" not in smtp_from:
        raise SettingsError(
            f"TACTFUL_SMTP_FROM must be an address such as 'Shop <news@shop.example>', "
            f"got {smtp_from!r}")
    directory = env.get("TACTFUL_SENDER_DIRECTORY") or ""
    if not directory:
        raise SettingsError("TACTFUL_SENDER_DIRECTORY must name the JSON-lines file of "
                            "customer addresses")
    if not os.access(directory, os.R_OK):
        why = "does not exist" if not os.path.exists(directory) else "cannot be read"
        raise SettingsError(f"TACTFUL_SENDER_DIRECTORY: {directory} {why}")
    cafile = env.get("TACTFUL_SMTP_CAFILE") or None
    if cafile and not os.access(cafile, os.R_OK):
        raise SettingsError(f"TACTFUL_SMTP_CAFILE: {cafile} cannot be read")
    username = env.get("TACTFUL_SMTP_USERNAME") or None
    password = env.get("TACTFUL_SMTP_PASSWORD") or None
    if (username is None) != (password is None):
        raise SettingsError("TACTFUL_SMTP_USERNAME and TACTFUL_SMTP_PASSWORD go together")
    return SenderSettings(
        smtp_from=smtp_from,
        directory=directory,
        smtp_host=env.get("TACTFUL_SMTP_HOST") or "127.0.0.1",
        smtp_port=_int(env, "TACTFUL_SMTP_PORT", 587, 1, 65535),
        smtp_tls=_choice(env, "TACTFUL_SMTP_TLS", "starttls", _SMTP_TLS),
        smtp_username=username,
        smtp_password=password,
        smtp_timeout=_seconds(env, "TACTFUL_SMTP_TIMEOUT", 30.0, 1.0, 600.0),
        smtp_cafile=cafile,
        smtp_attempts=_int(env, "TACTFUL_SMTP_ATTEMPTS", 8, 1, 100),
        retry_seconds=_seconds(env, "TACTFUL_SMTP_RETRY_SECONDS", 5.0, 0.01, 3600.0),
        outbox=env.get("TACTFUL_SENDER_OUTBOX") or "./tactful-outbox.jsonl",
        max_waiting=_int(env, "TACTFUL_SENDER_MAX_WAITING", 10_000, 1, 1_000_000),
        metrics_port=_int(env, "TACTFUL_SENDER_METRICS_PORT", 0, 0, 65535),
    )
