"""Bytes to events and outputs to bytes.

Decoding validates in the same pass (msgspec Structs, see core/events.py);
checks JSON Schema cannot express (a real IANA time zone) follow. A message
may be one event or a JSON array of events sharing the message's key; a bad
element is reported alone.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec

from tactful.core.errors import BadEvent
from tactful.core.events import AnyEvent, Event, PreferencesSet, StorefrontEvent
from tactful.core.outputs import DeadLetter
from tactful.core.quiet_hours import is_zone

_one = msgspec.json.Decoder(AnyEvent)
_many = msgspec.json.Decoder(list[msgspec.Raw])
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Rejected:
    """One bad input: why, and its bytes (an array element's own bytes when batched)."""

    reason: str
    original: bytes
    index: int | None = None


def decode_event(data: bytes) -> Event:
    """One JSON object to a validated event; ``BadEvent`` says what is wrong."""
    try:
        event: Event = _one.decode(data)
    except msgspec.ValidationError as exc:
        if "got `float`" not in str(exc):
            raise BadEvent(_reason(str(exc))) from None
        event = _decode_integral_floats(data)
    except msgspec.DecodeError as exc:
        raise BadEvent(f"not valid JSON: {exc}") from None
    _check(event)
    return event


def decode_message(data: bytes) -> Iterator[Event | Rejected]:
    """A Kafka message value: one event, or an array of them in order."""
    if data[:1] != b"[" and data.lstrip()[:1] != b"[":
        try:
            yield decode_event(data)
        except BadEvent as exc:
            yield Rejected(exc.reason, data)
        return
    try:
        elements = _many.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        yield Rejected(f"not valid JSON: {exc}", data)
        return
    for index, raw in enumerate(elements):
        element = bytes(raw)
        try:
            yield decode_event(element)
        except BadEvent as exc:
            yield Rejected(exc.reason, element, index)


def _decode_integral_floats(data: bytes) -> Event:
    """Slow path: JSON Schema counts 2.0 as an integer, so the decoder does too."""

    def fix(value: object) -> object:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        return value

    try:
        event: Event = _one.decode(msgspec.json.encode(fix(msgspec.json.decode(data))))
    except msgspec.ValidationError as exc:
        raise BadEvent(_reason(str(exc))) from None
    return event


def _check(event: Event) -> None:
    if isinstance(event, StorefrontEvent):
        if event.identity is None and event.customer_id is not None:
            raise BadEvent(
                "a customer_id needs the identity that established it - at `$.identity`"
            )
    elif (
        isinstance(event, PreferencesSet)
        and event.timezone is not None
        and not is_zone(event.timezone)
    ):
        raise BadEvent(f"unknown time zone {event.timezone!r} - at `$.timezone`")


def _reason(message: str) -> str:
    if message.startswith("Invalid value") and "$.type" in message:
        return f"unknown type: {message}"
    return message


def dead_letter(rejected: Rejected, topic: str, partition: int | None, offset: int | None) -> bytes:
    record = DeadLetter(
        reason=rejected.reason,
        topic=topic,
        partition=partition,
        offset=offset,
        original=base64.b64encode(rejected.original).decode(),
        index=rejected.index,
    )
    return _encoder.encode(record)


def encode(record: msgspec.Struct) -> bytes:
    return _encoder.encode(record)
