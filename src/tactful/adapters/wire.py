"""The internal topics' wire format: msgpack envelopes around core messages.

Every envelope carries the event time and the tie-breaking sequence of the
input it came from, so a receiver that orders by (ts, seq) sees messages in
the order ``tactful replay`` would (see service/worker.py, stream clock).

A record on an internal topic is a *bundle*: a msgpack array of the envelopes one
input partition's batch sends to one partition, in order (``bundle``/``unpack_all``);
one Kafka record carries many messages instead of one each.

Every envelope also names where it was sent from: the input record being processed
(``origin`` = "topic:partition", ``offset``) and its place among that input's
messages (``index``). An input processed again after a crash or a rebalance sends
the same messages at the same positions, so a receiver drops a message whose
position it has passed: a repeat (see ``first_delivery``).
"""

from __future__ import annotations

import msgspec
from msgspec import Struct

from tactful.core.messages import AdoptSession, EraseSession, SessionFact, SkuSignal


class Tick(Struct, gc=False, frozen=True, tag="tick"):
    """Sent by every worker to each partition it owns: fire what is due by ``now``."""

    now: float


class Watermark(Struct, gc=False, frozen=True, tag="watermark"):
    """Upstream ``source`` will send nothing older than ``ts`` any more (stream clock)."""

    source: str
    ts: float


class Forwarded(Struct, gc=False, frozen=True, tag="forwarded"):
    """An input event that arrived on a partition other than the one its id is kept in
    (a producer with another partitioner, or a key that is not the event's id): the
    receiving scope applies it as if it had arrived there. ``event`` is its JSON."""

    event: bytes


Body = SessionFact | AdoptSession | SkuSignal | EraseSession | Tick | Watermark | Forwarded


class Envelope(Struct, gc=False, frozen=True, array_like=True):
    ts: float
    seq: str
    body: Body
    origin: str = ""  # "topic:partition" of the input it was sent for; "" outside one
    offset: int = -1
    index: int = -1


def first_delivery(received: dict[str, tuple[int, int]], envelope: Envelope) -> bool:
    """Whether ``envelope`` is new to a receiver that has taken ``received`` (the last
    position from each origin); notes its position if so. Messages from one origin
    arrive in the order they were sent, and a repeat carries its first position."""
    if not envelope.origin:
        return True
    position = (envelope.offset, envelope.index)
    last = received.get(envelope.origin)
    if last is not None and position <= last:
        return False
    received[envelope.origin] = position
    return True


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)
_bundle_decoder = msgspec.msgpack.Decoder(list[Envelope])


def pack(ts: float, seq: str, body: Body, origin: str = "", offset: int = -1,
         index: int = -1) -> bytes:
    return _encoder.encode(Envelope(ts, seq, body, origin, offset, index))


def unpack(data: bytes) -> Envelope:
    """Decode an envelope; ``msgspec.DecodeError`` on bytes no tactful worker wrote."""
    return _decoder.decode(data)


def envelope(ts: float, seq: str, body: Body, origin: str = "", offset: int = -1,
             index: int = -1) -> bytes:
    """One envelope's bytes, to go into a ``bundle``."""
    return _encoder.encode(Envelope(ts, seq, body, origin, offset, index))


def bundle(parts: list[bytes]) -> bytes:
    """The record value carrying the ``envelope`` bytes ``parts``, in order: a msgpack
    array of them, framed here so that a sender can size bundles as it fills them."""
    n = len(parts)
    if n < 16:
        head = bytes((0x90 | n,))
    elif n < 0x10000:
        head = b"\xdc" + n.to_bytes(2, "big")
    else:
        head = b"\xdd" + n.to_bytes(4, "big")
    return head + b"".join(parts)


def unpack_all(data: bytes) -> list[Envelope]:
    """The envelopes of an internal record: a bundle, or a single envelope as tactful
    wrote them before bundles; ``msgspec.DecodeError`` on bytes no tactful worker wrote."""
    try:
        return _bundle_decoder.decode(data)
    except msgspec.DecodeError:
        return [_decoder.decode(data)]
