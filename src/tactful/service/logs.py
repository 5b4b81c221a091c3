"""Structured JSON logs, one object per line.

tactful's own log calls never pass customer or session ids, emails or phone
numbers; ``redact`` is a second line of defence for messages from libraries.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import orjson

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
# Phone numbers as people write them: international with a leading "+" (+33 1 42 68 53 00,
# +14155552671), or North American 3-3-4 with separators (415.555.2671, (415) 555-2671).
# Not dates (2026-12-02), times, offsets (+00:00), hex, or bare runs of digits (Kafka
# offsets, counts): those carry no one's number and the logs need them.
_PHONE = re.compile(
    r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![\w:])"
    r"|(?<![\w.(-])\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?![\w.-]?\d)"
)
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


def redact(text: str) -> str:
    return _PHONE.sub("<phone>", _EMAIL.sub("<email>", text))


def redact_value(value: object) -> object:
    """An extra field as it is logged: strings redacted, inside lists and dicts too."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = redact_value(value)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


def logging_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the worker: JSON on stderr, quiet libraries."""
    level_name = {"warning": "WARNING"}.get(level, level.upper())
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "tactful.service.logs.JsonFormatter"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json",
                       "stream": "ext://sys.stderr"},
        },
        "root": {"level": level_name, "handlers": ["stderr"]},
        "loggers": {
            "aiokafka": {"level": "WARNING"},
            "faust": {"level": max(level_name, "INFO", key=_rank)},
            "mode": {"level": "WARNING"},
        },
    }


def _rank(name: str) -> int:
    return logging.getLevelName(name) if isinstance(logging.getLevelName(name), int) else 0
