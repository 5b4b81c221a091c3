"""The reference sender's settings, address directory and outbox provider."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from tactful.adapters.directory import DirectoryError, JsonLinesDirectory
from tactful.adapters.provider import OutboxProvider, short_text
from tactful.core.outputs import ConsentRef, ContactIntent, IntentItem, Links
from tactful.service.settings import SenderSettings, SettingsError, sender_from_env

INTENT = ContactIntent(
    intent_id="int-0123456789abcdef0123", customer_id="cust-42", channel="sms",
    kind="low_stock", items=[IntentItem("sku-1", 1, 9.5)],
    created_at="2026-05-04T12:00:00Z", send_after="2026-05-04T12:00:00Z",
    send_before="2026-05-05T12:00:00Z", topic="stock_alerts", reasons=[],
    consent=ConsentRef("sms", "2026-01-01T00:00:00Z", "signup"), policy_version="v1",
    links=Links("https://shop.example/u/tok", "https://shop.example/p/tok"),
)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    path = tmp_path / "directory.jsonl"
    path.write_text(
        '{"customer_id": "cust-42", "email": "ana@example.org", "phone": "+14155552671"}\n'
        "\n"
        '{"customer_id": "cust-7", "email": "bo@example.org", "note": "extra fields pass"}\n'
    )
    return path


def test_sender_settings_defaults_and_values(directory: Path) -> None:
    env = {"TACTFUL_SMTP_FROM": "Shop <news@shop.example>",
           "TACTFUL_SENDER_DIRECTORY": str(directory)}
    assert sender_from_env(env) == SenderSettings(
        smtp_from="Shop <news@shop.example>", directory=str(directory))
    env |= {"TACTFUL_SMTP_HOST": "mail.example", "TACTFUL_SMTP_PORT": "2525",
            "TACTFUL_SMTP_TLS": "tls", "TACTFUL_SMTP_USERNAME": "u",
            "TACTFUL_SMTP_PASSWORD": "p", "TACTFUL_SMTP_TIMEOUT": "3",
            "TACTFUL_SENDER_MAX_WAITING": "50", "TACTFUL_SMTP_ATTEMPTS": "3",
            "TACTFUL_SMTP_RETRY_SECONDS": "0.5", "TACTFUL_SENDER_OUTBOX": "/tmp/out.jsonl"}
    s = sender_from_env(env)
    assert (s.smtp_host, s.smtp_port, s.smtp_tls, s.smtp_username, s.smtp_password,
            s.smtp_timeout, s.max_waiting, s.smtp_attempts, s.retry_seconds, s.outbox) == (
        "mail.example", 2525, "tls", "u", "p", 3.0, 50, 3, 0.5, "/tmp/out.jsonl")


@pytest.mark.parametrize(("change", "message"), [
    ({"TACTFUL_SMTP_FROM": ""}, "TACTFUL_SMTP_FROM must be an address"),
    ({"TACTFUL_SENDER_DIRECTORY": ""}, "TACTFUL_SENDER_DIRECTORY must name"),
    ({"TACTFUL_SENDER_DIRECTORY": "/no/such/file"}, "/no/such/file does not exist"),
    ({"TACTFUL_SMTP_TLS": "ssl"}, "TACTFUL_SMTP_TLS must be one of none, starttls, tls"),
    ({"TACTFUL_SMTP_PORT": "0"}, "TACTFUL_SMTP_PORT must be between 1 and 65535"),
    ({"TACTFUL_SMTP_USERNAME": "u"}, "go together"),
    ({"TACTFUL_SENDER_MAX_WAITING": "0"}, "TACTFUL_SENDER_MAX_WAITING must be between"),
])
def test_a_bad_sender_setting_names_the_variable(directory: Path, change: dict[str, str],
                                                 message: str) -> None:
    env = {"TACTFUL_SMTP_FROM": "news@shop.example",
           "TACTFUL_SENDER_DIRECTORY": str(directory)} | change
    with pytest.raises(SettingsError, match=message):
        sender_from_env(env)


def test_the_directory_gives_each_channel_its_address(directory: Path) -> None:
    d = JsonLinesDirectory(str(directory))
    assert len(d) == 2
    assert d.address("cust-42", "email") == "ana@example.org"
    assert d.address("cust-42", "sms") == "+14155552671"  # an SMS goes to the phone
    assert d.address("cust-42", "push") is None
    assert d.address("cust-42", "fax") is None
    assert d.address("cust-42", "phone") == "+14155552671"
    assert d.address("cust-7", "phone") is None
    assert d.address("cust-unknown", "email") is None


def test_the_directory_is_read_again_when_the_file_changes(directory: Path) -> None:
    d = JsonLinesDirectory(str(directory))
    assert not d.refresh()
    directory.write_text('{"customer_id": "cust-42", "email": "new@example.org"}\n')
    assert d.refresh()
    assert d.address("cust-42", "email") == "new@example.org"
    assert d.address("cust-7", "email") is None


def test_a_bad_directory_line_is_named_by_its_number_without_its_content(
        tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"customer_id": "a", "email": "a@example.org"}\n'
                    '{"email": "secret@example.org"}\n')
    with pytest.raises(DirectoryError) as info:
        JsonLinesDirectory(str(path))
    assert str(info.value).startswith(f"{path}:2: ")
    assert "secret" not in str(info.value)


def test_the_outbox_writes_what_would_be_sent_without_personal_data(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.jsonl"
    provider = OutboxProvider(str(outbox))
    result = asyncio.run(provider.send(INTENT, "+14155552671", 1_777_896_030.0))
    assert result == "delivered"
    line = outbox.read_bytes()
    assert orjson.loads(line) == {
        "at": "2026-05-04T12:00:30Z", "channel": "sms", "kind": "low_stock",
        "topic": "stock_alerts", "intent_id": "int-0123456789abcdef0123",
        "text": "Only a few left of: 1 x sku-1 at 9.50",
    }
    for personal in (b"cust-42", b"+1415", b"tok"):
        assert personal not in line
    assert short_text(INTENT) == "Only a few left of: 1 x sku-1 at 9.50"


def test_every_sender_variable_is_in_the_readme_table_with_its_default() -> None:
    import inspect
    import re

    from tactful.service import settings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Reference sender: `tactful send`", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r'"(TACTFUL_[A-Z_]+)"', inspect.getsource(settings.sender_from_env)))
    assert len(names) == 14
    rows = {row.split("|")[1]: row.split("|")[2] for row in section.splitlines()
            if row.startswith("| `TACTFUL_")}
    for name in names:
        assert any(f"`{name}`" in cell for cell in rows), name
    defaults = SenderSettings("x@y", "d")
    for cell, default in rows.items():
        if "TACTFUL_SMTP_PORT" in cell:
            assert default.strip() == f"`{defaults.smtp_port}`"
        if "TACTFUL_SENDER_MAX_WAITING" in cell:
            assert default.strip() == f"`{defaults.max_waiting}`"
        if "TACTFUL_SMTP_TLS" in cell:
            assert default.strip() == f"`{defaults.smtp_tls}`"


def test_the_sender_refuses_a_bad_setting_in_one_line_before_touching_kafka(
        directory: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("TACTFUL_")}
    env |= {"TACTFUL_BOOTSTRAP": "127.0.0.1:1", "TACTFUL_SENDER_DIRECTORY": str(directory)}
    result = subprocess.run([sys.executable, "-m", "tactful.cli", "send"], env=env,
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "tactful: TACTFUL_SMTP_FROM must be an address such as "
        "'Shop <news@shop.example>', got ''\n")
    bad = directory.parent / "bad.jsonl"
    bad.write_text('{"customer_id": 7}\n')
    env |= {"TACTFUL_SMTP_FROM": "news@shop.example", "TACTFUL_SENDER_DIRECTORY": str(bad)}
    result = subprocess.run([sys.executable, "-m", "tactful.service.sender"], env=env,
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.decode() == (
        f"tactful: {bad}:1: not a JSON object with a customer_id and string addresses\n")
