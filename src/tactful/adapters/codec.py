"""Bytes to events and outputs to bytes.

Decoding is bounded: a record's size and nesting depth are checked before it
is parsed, its fields while it is parsed (msgspec Structs, see core/events.py,
whose bounds come from core/limits.py), and what JSON Schema cannot express
(a real IANA time zone, the timestamp window) right after. Nothing a record
or its headers contain raises anything out of this module but ``BadEvent``
(as a ``Rejected`` from ``decode_message``). A message may be one event or a
JSON array of events sharing the message's key; a bad element is reported
alone.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import msgspec

from tactful.core.errors import BadEvent
from tactful.core.events import (
    TEXT_FIELDS,
    TEXT_SINGLE_FIELDS,
    TOPIC_TYPES,
    TYPE_TOPIC,
    AnyEvent,
    ConsentGranted,
    ConsentRevoked,
    Event,
    PreferencesSet,
    Purchase,
    StorefrontEvent,
)
from tactful.core.jurisdictions import is_region
from tactful.core.limits import LIMITS
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
    check_shape(data)
    return _decode_event(data)


def _decode_event(data: bytes) -> Event:
    try:
        event: Event = _one.decode(data)
    except msgspec.ValidationError as exc:
        if "got `float`" not in str(exc):
            raise BadEvent(_reason(str(exc))) from None
        event = _decode_integral_floats(data)
    except msgspec.DecodeError as exc:
        raise BadEvent(f"not valid JSON: {exc}") from None
    except RecursionError:  # check_shape bounds the depth; this is the second line
        raise BadEvent(f"nested deeper than {LIMITS.max_depth} levels") from None
    _check(event)
    return event


FUTURE = "future_timestamp: ts lies further ahead of the processing clock than max_future_skew"


def decode_message(data: bytes, not_after: float = float("inf"),
                   topic: str | None = None) -> Iterator[Event | Rejected]:
    """A Kafka message value: one event, or an array of them in order. An event stamped
    later than ``not_after`` (the processing clock plus the policy's skew bound) is
    rejected as ``future_timestamp``. Read from an input ``topic`` (its short name), an
    event of a type another topic carries is rejected (``unknown type``): the worker
    places each event by its topic's key field, which another topic's types lack."""
    allowed = None if topic is None else _TOPIC_CLASSES[topic]
    try:
        check_shape(data)
    except BadEvent as exc:
        yield Rejected(exc.reason, data)
        return
    if data[:1] != b"[" and data.lstrip()[:1] != b"[":
        try:
            event = _decode_event(data)
        except BadEvent as exc:
            yield Rejected(exc.reason, data)
            return
        yield _admit(event, data, None, not_after, topic, allowed)
        return
    try:
        elements = _many.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        yield Rejected(f"not valid JSON: {exc}", data)
        return
    except RecursionError:
        yield Rejected(f"nested deeper than {LIMITS.max_depth} levels", data)
        return
    if not elements:  # a tracker that sends an empty batch is broken: say so
        yield Rejected("an empty array: a message holds an event or 1 or more events", data)
        return
    if len(elements) > LIMITS.max_batch:
        yield Rejected(f"an array of {len(elements)} events; at most {LIMITS.max_batch}", data)
        return
    for index, raw in enumerate(elements):
        element = bytes(raw)
        try:
            event = _decode_event(element)
        except BadEvent as exc:
            yield Rejected(exc.reason, element, index)
            continue
        yield _admit(event, element, index, not_after, topic, allowed)


_TOPIC_CLASSES = {topic: frozenset(classes) for topic, classes in TOPIC_TYPES.items()}


def _admit(event: Event, original: bytes, index: int | None, not_after: float,
           topic: str | None, allowed: frozenset[type[Event]] | None) -> Event | Rejected:
    if allowed is not None and type(event) not in allowed:
        kind = str(event.__struct_config__.tag)
        reason = (f"unknown type for topic {topic}: {kind} belongs on topic "
                  f"{TYPE_TOPIC[kind]} - at `$.type`")
        return Rejected(reason, original, index)
    return event if event.ts.timestamp() <= not_after else Rejected(FUTURE, original, index)


# A JSON string: the loop unrolled (runs of plain characters between escapes) matches
# exactly what ``"(?:[^"\\]|\\.)*"`` does, about twice as fast on long records.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_INNERMOST = re.compile(rb"\[\]|\{\}")
_OPENING = re.compile(rb"[\[{]+")


def check_shape(data: bytes) -> None:
    """Size and nesting depth, before anything parses ``data``: a parser recursing on
    100,000 nested arrays, or holding a 500 MB list, is what these bounds prevent."""
    if len(data) > LIMITS.max_bytes:
        raise BadEvent(f"{len(data)} bytes; a record holds at most {LIMITS.max_bytes}")
    # Each bracket opens at most one level: few brackets, shallow enough (the usual case).
    if data.count(b"[") + data.count(b"{") <= LIMITS.max_depth:
        return
    if nesting_depth(data) > LIMITS.max_depth:
        raise BadEvent(f"nested deeper than {LIMITS.max_depth} levels")


def nesting_depth(data: bytes) -> int:
    """How deep arrays and objects nest in JSON text (brackets in strings do not count),
    counted up to one past the limit. Each pass peels the innermost pairs off the
    brackets alone at C speed; text that stops balancing adds its longest run of
    opening brackets (the parser refuses it anyway, but must not recurse on it first)."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    depth = 0
    while brackets and depth <= LIMITS.max_depth:
        peeled = _INNERMOST.sub(b"", brackets)
        if len(peeled) == len(brackets):
            runs = _OPENING.findall(brackets)
            return depth + max((len(run) for run in runs), default=0)
        brackets = peeled
        depth += 1
    return depth


@dataclass(frozen=True, slots=True)
class RecordHeaders:
    """What tactful reads from an input record's headers."""

    clock: float | None  # ``tactful-clock``: a clock marker, stream time reaches this
    seq: str  # ``tactful-seq``: the record's line in the produced file ("" when absent)


CLOCK_HEADER = "tactful-clock"
SEQ_HEADER = "tactful-seq"
_SEQ = re.compile(r"^[0-9]{1,18}(\.[0-9]{1,9})?$")


def decode_headers(headers: object) -> RecordHeaders:
    """tactful's headers of an input record; other headers are ignored. ``BadEvent``
    for a header of tactful's that is not what tactful writes."""
    clock: float | None = None
    seq = ""
    if not headers:
        return RecordHeaders(None, "")
    items = headers.items() if isinstance(headers, dict) else headers
    try:
        pairs = list(items)  # type: ignore[call-overload]
    except TypeError:
        raise BadEvent("headers are not name/value pairs") from None
    for pair in pairs:
        try:
            name, value = pair
        except (TypeError, ValueError):
            raise BadEvent("headers are not name/value pairs") from None
        if name not in (CLOCK_HEADER, SEQ_HEADER):
            continue
        text = _header_text(name, value)
        if name == CLOCK_HEADER:
            clock = parse_timestamp(text, f"header {CLOCK_HEADER}")
        elif not _SEQ.match(text):
            raise BadEvent(f"header {SEQ_HEADER} must be LINE or LINE.INDEX, got {text[:20]!r}")
        else:
            seq = text
    return RecordHeaders(clock, seq)


def _header_text(name: str, value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, bytes | bytearray):
        raise BadEvent(f"header {name} is not bytes")
    if len(value) > LIMITS.max_header_bytes:
        raise BadEvent(f"header {name} is {len(value)} bytes; at most {LIMITS.max_header_bytes}")
    try:
        return bytes(value).decode("ascii")
    except UnicodeDecodeError:
        raise BadEvent(f"header {name} is not ASCII text") from None


def parse_timestamp(text: str, what: str) -> float:
    """An RFC 3339 timestamp with offset inside the limits' window, as POSIX seconds."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadEvent(f"{what} must be an RFC 3339 timestamp, got {text[:40]!r}") from None
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise BadEvent(f"{what} needs an offset (e.g. Z), got {text[:40]!r}")
    t = dt.timestamp()
    _check_window(t, what)
    return t


def _check_window(t: float, what: str) -> None:
    if not LIMITS.earliest_ts <= t < LIMITS.latest_ts:
        raise BadEvent(f"{what} lies outside 1970-01-01 to 2200-01-01")


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
    except msgspec.DecodeError as exc:
        raise BadEvent(f"not valid JSON: {exc}") from None
    return event


def _check(event: Event) -> None:
    """What the Structs cannot say: printable ids, the timestamp window, a real zone."""
    singles, lists, kind = _PLANS[type(event)]
    for value in singles(event):
        if value is not None and (value.isspace() or not value.isprintable()):
            name = next(n for n in TEXT_SINGLE_FIELDS if getattr(event, n, None) == value)
            raise BadEvent(f"must be printable text, not only blanks - at `$.{name}`")
    for name in lists:
        for value in getattr(event, name) or ():
            if not _printable(value):
                raise BadEvent(f"must be printable text, not only blanks - at `$.{name}`")
    if not _FIRST_YEAR <= event.ts.year < _END_YEAR:
        raise BadEvent("ts lies outside 1970-01-01 to 2200-01-01 - at `$.ts`")
    if kind is _PLAIN:
        return
    if kind is _STOREFRONT or kind is _PURCHASE:
        if event.identity is None and event.customer_id is not None:  # type: ignore[attr-defined]
            raise BadEvent(
                "a customer_id needs the identity that established it - at `$.identity`"
            )
        if kind is _PURCHASE:
            for item in event.items:  # type: ignore[attr-defined]
                if not _printable(item.sku):
                    raise BadEvent("must be printable text, not only blanks - at `$.items`")
    elif kind is _CONSENT:
        expires = event.expires_at  # type: ignore[attr-defined]
        if expires is not None:
            _check_window(expires.timestamp(), "expires_at - at `$.expires_at`")
    elif kind is _PREFERENCES:
        zone = event.timezone  # type: ignore[attr-defined]
        if zone is not None and not is_zone(zone):
            raise BadEvent(f"unknown time zone {zone!r} - at `$.timezone`")
        region = event.region  # type: ignore[attr-defined]
        if region is not None and not is_region(region):
            raise BadEvent(f"unknown ISO 3166 region {region!r} - at `$.region`")


_PLAIN, _STOREFRONT, _PURCHASE, _CONSENT, _PREFERENCES = "plain", "sf", "buy", "cons", "prefs"


def _kind(cls: type[Event]) -> str:
    if issubclass(cls, Purchase):
        return _PURCHASE
    if issubclass(cls, StorefrontEvent):
        return _STOREFRONT
    if issubclass(cls, ConsentGranted | ConsentRevoked):
        return _CONSENT
    return _PREFERENCES if issubclass(cls, PreferencesSet) else _PLAIN


# Per event type, decided once: its text fields and which further checks apply
# (isinstance on Structs costs more than the checks themselves).
_PLANS = {cls: (*TEXT_FIELDS[cls], _kind(cls)) for cls in TEXT_FIELDS}


_FIRST_YEAR, _END_YEAR = 1970, 2200  # LIMITS' window, by year: one attribute per event


def _printable(text: str) -> bool:
    """No control, format, separator or surrogate character (ASCII space aside), and not
    only blanks: an output carrying the text can always be written and read."""
    return text.isprintable() and not text.isspace()


def _reason(message: str) -> str:
    if message.startswith("Invalid value") and "$.type" in message:
        return f"unknown type: {message}"
    return message


# A dead letter carries at most this much of its original: a record near Kafka's 1 MB
# limit, in base64, would not fit in a record of the dead-letter topic, and failing to
# write it would stop the worker on that input again after every restart.
ORIGINAL_MAX = 256 * 1024


def dead_letter(rejected: Rejected, topic: str, partition: int | None, offset: int | None) -> bytes:
    original = rejected.original
    cut = len(original) > ORIGINAL_MAX
    record = DeadLetter(
        reason=rejected.reason,
        topic=topic,
        partition=partition,
        offset=offset,
        original=base64.b64encode(original[:ORIGINAL_MAX] if cut else original).decode(),
        index=rejected.index,
        original_size=len(original) if cut else None,
        original_sha256=hashlib.sha256(original).hexdigest() if cut else None,
    )
    return _encoder.encode(record)


def encode(record: msgspec.Struct) -> bytes:
    return _encoder.encode(record)
