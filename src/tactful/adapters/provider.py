"""SMS, push and phone: the provider interface, and the reference provider that writes
what would be sent, with no personal data.

A real provider (an SMS gateway, a push service, a call centre's queue) implements
``Provider.send`` and answers with a ``core.sending.Result``. ``OutboxProvider`` appends
one JSON line per message to a file: the channel, kind, topic, intent id and the text,
never the customer id, an address or a link (the links' tokens name the customer).
"""

from __future__ import annotations

from typing import Protocol

import orjson

from tactful.core.mail import item_line, template
from tactful.core.outputs import ContactIntent, iso
from tactful.core.sending import Result


class Provider(Protocol):
    async def send(self, intent: ContactIntent, address: str | None, now: float) -> Result:
        ...


def short_text(intent: ContactIntent) -> str:
    """The message of an SMS, push notification or call: the opening and the items."""
    return " ".join([template(intent.kind).opening, *(item_line(i) for i in intent.items)])


class OutboxProvider:
    """Writes what would be sent to a JSON-lines file (``TACTFUL_SENDER_OUTBOX``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def send(self, intent: ContactIntent, address: str | None, now: float) -> Result:
        line = orjson.dumps({
            "at": iso(now), "channel": intent.channel, "kind": intent.kind,
            "topic": intent.topic, "intent_id": intent.intent_id, "text": short_text(intent),
        })
        with open(self.path, "ab") as handle:
            handle.write(line + b"\n")
        return "delivered"
