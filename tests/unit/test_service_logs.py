"""Log redaction is right both ways: personal data out, operational numbers kept."""

from __future__ import annotations

import logging

import orjson
import pytest

from tactful.service.logs import JsonFormatter, redact


@pytest.mark.parametrize("text", [
    "call 415.555.2671 now", "call (415) 555-2671", "call 415-555-2671", "+14155552671",
    "+33 1 42 68 53 00", "+44 20 7946 0958", "mail ana@example.com",
])
def test_personal_data_is_masked(text: str) -> None:
    masked = redact(text)
    assert "555" not in masked and "@" not in masked and "53 00" not in masked
    assert "<phone>" in masked or "<email>" in masked


@pytest.mark.parametrize("text", [
    "2026-12-02T10:24:35.123+00:00", "2026-12-02 10:24:35", "offset 123456789012",
    "at offset 4155552671", "sha 9f86d081884c7d659a2feaa0c55ad015", "partitions 0-3, 10-12",
    "tactful/service/worker.py:123 _fire_due", "took 1.234 s", "v2026.11-default+e1b213241660",
])
def test_operational_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_extra_fields_are_redacted_like_messages() -> None:
    record = logging.LogRecord("tactful", logging.WARNING, __file__, 1, "seen %s", ("x",), None)
    record.error = "KeyError('ana@example.com')"
    record.where = ["+33 1 42 68 53 00", "worker.py:12 run"]
    record.partition = 3
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry["error"] == "KeyError('<email>')"
    assert entry["where"] == ["<phone>", "worker.py:12 run"]
    assert entry["partition"] == 3
