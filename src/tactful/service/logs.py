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
_PHONE = re.compile(r"\+?\d[\d ()-]{7,}\d")
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


def redact(text: str) -> str:
    return _PHONE.sub("<phone>", _EMAIL.sub("<email>", text))


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
                entry[key] = value
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
