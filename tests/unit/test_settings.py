"""Settings from the environment: README's table of defaults, and a bad value refused
with the variable's name and what is wrong (the CLI prints it and exits 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tactful.service.settings import Settings, SettingsError, from_env


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    settings = from_env({})
    assert settings == Settings()
    assert (settings.bootstrap, settings.partitions, settings.store, settings.clock) == (
        "127.0.0.1:9092", 4, "memory://", "wall")
    assert settings.session_timeout == 30.0 and settings.tick_seconds == 1.0
    assert settings.processing_guarantee == "at_least_once"


def test_values_are_read_and_flags_win_over_the_environment() -> None:
    env = {
        "TACTFUL_BOOTSTRAP": "k1:9092, k2:9093",
        "TACTFUL_PARTITIONS": "12",
        "TACTFUL_TICK_SECONDS": "0.25",
        "TACTFUL_SESSION_TIMEOUT": "45",
        "TACTFUL_CLOCK": "wall",
        "TACTFUL_STORE": "rocksdb:///var/lib/tactful",
        "TACTFUL_TOPIC_PREFIX": "",
    }
    settings = from_env(env, clock="stream")
    assert settings.partitions == 12 and settings.tick_seconds == 0.25
    assert settings.session_timeout == 45.0
    assert settings.clock == "stream"
    assert settings.broker_url == "kafka://k1:9092;kafka://k2:9093"
    assert settings.topic("intents") == "intents"  # an empty prefix is allowed


@pytest.mark.parametrize(("name", "value", "message"), [
    ("TACTFUL_PARTITIONS", "four", "TACTFUL_PARTITIONS must be a whole number, got 'four'"),
    ("TACTFUL_PARTITIONS", "0", "TACTFUL_PARTITIONS must be between 1 and 10000, got 0"),
    ("TACTFUL_WEB_PORT", "70000", "TACTFUL_WEB_PORT must be between 1 and 65535, got 70000"),
    ("TACTFUL_TICK_SECONDS", "soon",
     "TACTFUL_TICK_SECONDS must be a number of seconds, got 'soon'"),
    ("TACTFUL_SESSION_TIMEOUT", "2",
     "TACTFUL_SESSION_TIMEOUT must be between 6 and 300 seconds, got 2"),
    ("TACTFUL_TICK_SECONDS", "0.001",
     "TACTFUL_TICK_SECONDS must be between 0.01 and 60 seconds, got 0.001"),
    ("TACTFUL_CLOCK", "sundial", "TACTFUL_CLOCK must be one of wall, stream, got 'sundial'"),
    ("TACTFUL_PROCESSING_GUARANTEE", "maybe",
     "TACTFUL_PROCESSING_GUARANTEE must be one of at_least_once, exactly_once, got 'maybe'"),
    ("TACTFUL_STORE", "redis://x", "TACTFUL_STORE must be memory:// or rocksdb://PATH"),
])
def test_a_bad_value_names_the_variable_and_the_problem(name: str, value: str,
                                                        message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        from_env({name: value})
    assert str(caught.value).startswith(message)


def test_exactly_once_needs_the_memory_store() -> None:
    with pytest.raises(SettingsError, match="exactly_once needs TACTFUL_STORE=memory://"):
        from_env({"TACTFUL_PROCESSING_GUARANTEE": "exactly_once",
                  "TACTFUL_STORE": "rocksdb://"})
    assert from_env({"TACTFUL_PROCESSING_GUARANTEE": "exactly_once"}).store == "memory://"


def test_links_need_a_secret_and_sasl_needs_credentials() -> None:
    with pytest.raises(SettingsError, match="TACTFUL_LINK_SECRET"):
        from_env({"TACTFUL_PUBLIC_URL": "https://shop.example/"})
    with pytest.raises(SettingsError, match="TACTFUL_SASL_USERNAME"):
        from_env({"TACTFUL_SECURITY_PROTOCOL": "SASL_SSL"})
    ok = from_env({"TACTFUL_SECURITY_PROTOCOL": "SASL_SSL", "TACTFUL_SASL_USERNAME": "u",
                   "TACTFUL_SASL_PASSWORD": "p"})
    assert ok.security_protocol == "SASL_SSL"


def test_the_worker_refuses_a_bad_setting_in_one_line_before_touching_kafka() -> None:
    env = {"TACTFUL_PARTITIONS": "lots", "TACTFUL_BOOTSTRAP": "127.0.0.1:1", "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-m", "tactful.cli", "worker"], env=env, capture_output=True,
        timeout=60, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.decode().strip().splitlines() == [
        "tactful: TACTFUL_PARTITIONS must be a whole number, got 'lots'"
    ]


def test_the_admin_token_is_long_enough_and_the_advertised_url_is_a_url() -> None:
    from tactful.service.settings import advertised_url

    with pytest.raises(SettingsError, match="TACTFUL_ADMIN_TOKEN must be at least 16"):
        from_env({"TACTFUL_ADMIN_TOKEN": "short"})
    assert from_env({"TACTFUL_ADMIN_TOKEN": "x" * 16}).admin_token == "x" * 16
    assert from_env({}).admin_token is None
    for bad in ("tactful-0:6066", "ftp://a:1", "http://a:1/path"):
        with pytest.raises(SettingsError, match="TACTFUL_ADVERTISED_URL"):
            from_env({"TACTFUL_ADVERTISED_URL": bad})
    given = from_env({"TACTFUL_ADVERTISED_URL": "http://tactful-0.tactful.shop.svc:6066/"})
    assert advertised_url(given) == "http://tactful-0.tactful.shop.svc:6066"
    local = from_env({"TACTFUL_WEB_HOST": "127.0.0.1", "TACTFUL_WEB_PORT": "7001"})
    assert advertised_url(local) == "http://127.0.0.1:7001"
    import socket

    everywhere = from_env({"TACTFUL_WEB_HOST": "0.0.0.0"})
    assert advertised_url(everywhere) == f"http://{socket.gethostname()}:6066"


def test_link_settings_are_checked_before_anything_starts() -> None:
    secret = "a-link-secret-0123"
    ok = from_env({"TACTFUL_PUBLIC_URL": "https://shop.example/prefs",
                   "TACTFUL_LINK_SECRET": secret, "TACTFUL_LINK_SECRET_PREVIOUS": "b" * 16,
                   "TACTFUL_PUBLIC_PORT": "7070", "TACTFUL_PUBLIC_HOST": "0.0.0.0"})
    assert (ok.link_secret, ok.link_secret_previous, ok.public_port, ok.public_host) == (
        secret, "b" * 16, 7070, "0.0.0.0")
    assert from_env({}).public_port == 6067
    bad = [
        ({"TACTFUL_PUBLIC_URL": "shop.example", "TACTFUL_LINK_SECRET": secret},
         "TACTFUL_PUBLIC_URL must be http(s)://"),
        ({"TACTFUL_PUBLIC_URL": "https://shop.example/?a=b", "TACTFUL_LINK_SECRET": secret},
         "TACTFUL_PUBLIC_URL must be http(s)://"),
        ({"TACTFUL_LINK_SECRET": "short"}, "TACTFUL_LINK_SECRET must be at least 16"),
        ({"TACTFUL_LINK_SECRET_PREVIOUS": "b" * 16}, "TACTFUL_LINK_SECRET_PREVIOUS needs"),
        ({"TACTFUL_LINK_SECRET": secret, "TACTFUL_LINK_SECRET_PREVIOUS": "b"},
         "TACTFUL_LINK_SECRET_PREVIOUS must be at least 16"),
        ({"TACTFUL_PUBLIC_PORT": "70000"}, "TACTFUL_PUBLIC_PORT must be between 0 and 65535"),
    ]
    for env, message in bad:
        with pytest.raises(SettingsError) as caught:
            from_env(env)
        assert str(caught.value).startswith(message), (env, caught.value)
