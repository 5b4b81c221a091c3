"""The internal topics' wire format: msgpack envelopes around core messages.

Every envelope carries the event time and the tie-breaking sequence of the
input it came from, so a receiver that orders by (ts, seq) sees messages in
the order ``tactful replay`` would (see service/worker.py, stream clock).
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


Body = SessionFact | AdoptSession | SkuSignal | EraseSession | Tick | Watermark


class Envelope(Struct, gc=False, frozen=True, array_like=True):
    ts: float
    seq: str
    body: Body


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)


def pack(ts: float, seq: str, body: Body) -> bytes:
    return _encoder.encode(Envelope(ts, seq, body))


def unpack(data: bytes) -> Envelope:
    """Decode an envelope; ``msgspec.DecodeError`` on bytes no tactful worker wrote."""
    return _decoder.decode(data)
