"""What a run must never write to its logs or metric labels: the customer and session ids
of its input, email addresses and phone numbers (README, "Privacy in logs")."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import orjson

_TOKEN = re.compile(r"[A-Za-z0-9_.:-]+")
EMAIL = re.compile(r"[A-Za-z0-9_.+-]+@[A-Za-z0-9-]+\.[A-Za-z0-9.-]*[A-Za-z]")
# International with a leading +, and North American 3-3-4 with separators.
PHONE = re.compile(r"\+\d[\d ().-]{7,}\d|\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b")


def ids_of(events: Iterable[Path], fields: tuple[str, ...] = ("customer_id", "session_id")
           ) -> set[str]:
    """Every customer and session id of the events files (JSON lines, arrays too)."""
    found: set[str] = set()
    for path in events:
        for line in path.read_bytes().splitlines():
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            for event in doc if isinstance(doc, list) else [doc]:
                if isinstance(event, dict):
                    found.update(str(event[f]) for f in fields if event.get(f))
    return found


def leaks(text: str, ids: set[str]) -> dict[str, list[str]]:
    """The ids, emails and phone numbers found in ``text`` (whole tokens: ``cust-1`` is
    not found in ``cust-12``)."""
    tokens = {t.strip(".:") for t in _TOKEN.findall(text)}
    return {
        "ids": sorted(ids & tokens)[:20],
        "emails": sorted(set(EMAIL.findall(text)))[:20],
        "phones": sorted(set(PHONE.findall(text)))[:20],
    }


def metric_labels(exposition: str) -> str:
    """Only the label sets of a Prometheus exposition (values and help text left out)."""
    return "\n".join(m.group(1) for m in re.finditer(r"^\w+\{(.*)\}", exposition, re.M))
